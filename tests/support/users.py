"""The attackers of the least-privilege tests: an analyst with only the app's role, and a plain user."""

ANALYST, ANALYST_PW = "analyst", "analyst-pw"
PLAIN, PLAIN_PW = "plain", "plain-pw"


def add_analyst_and_plain_user(splunkd) -> None:
    splunkd.add_user(ANALYST, ANALYST_PW, roles=["defenderipstats_user"])
    splunkd.add_user(PLAIN, PLAIN_PW, roles=["user"])
