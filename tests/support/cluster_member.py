"""One search head cluster member's searches, as a process of its own (tests/test_cluster_budget.py).

Reads a JSON job on stdin: the member's splunkd (``splunkd_uri``, ``session_key``), its ``splunk_home``,
the Defender stand-in (``api_url``, ``ca_bundle``, ``token``), the budget's ``limits`` and ``searches``
(lists of IPs). Each search runs in its own thread with its own limiter from ``budget_for``, as each
search process does, and the app's real Fetcher and DefenderClient over HTTPS. Writes one JSON line:
every IP's status, each limiter's figures, and the messages the searches would show.
"""

import json
import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "lib"))

from defender_ipstats.core.fetcher import Fetcher  # noqa: E402
from defender_ipstats.core.gate import WaitAllowance  # noqa: E402
from defender_ipstats.microsoft.defender import DefenderClient  # noqa: E402
from defender_ipstats.microsoft.http import AppSession  # noqa: E402
from defender_ipstats.splunk.clusterbudget import budget_for  # noqa: E402
from defender_ipstats.splunk.rest import connect  # noqa: E402


class FixedToken:
    def __init__(self, token):
        self._token = token

    def token(self):
        return self._token

    def invalidate(self, stale=None):
        pass


def run_search(job, ips, out, index):
    messages = []
    service = connect(job["splunkd_uri"], job["session_key"])
    limiter = budget_for("ipstats", job["tenant_id"], job["client_id"], [tuple(x) for x in job["limits"]], service,
                         splunk_home=job["splunk_home"], say=lambda level, text: messages.append([level, text]))
    session = AppSession(verify=job["ca_bundle"], pool_size=4)
    client = DefenderClient(job["api_url"], FixedToken(job["token"]), session, timeout=10)
    fetcher = Fetcher(client, limiter, 720, WaitAllowance(job["max_wait"]), workers=4)
    results = fetcher.fetch_many(ips)
    out[index] = {
        "statuses": {ip: stats.status for ip, stats in results.items()},
        "calls": client.calls,
        "messages": messages,
        "limiter": type(limiter).__name__,
        "round_trips": getattr(getattr(limiter, "store", None), "round_trips", 0),
        "claimed": getattr(limiter, "claimed", 0),
        "conflicts": getattr(limiter, "conflicts", 0),
        "given_up": getattr(limiter, "given_up", 0),
        "on_share": bool(getattr(limiter, "on_share", False)),
    }


def main():
    job = json.loads(sys.stdin.read())
    out = [None] * len(job["searches"])
    threads = [threading.Thread(target=run_search, args=(job, ips, out, index))
               for index, ips in enumerate(job["searches"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sys.stdout.write(json.dumps({"searches": out}) + "\n")


if __name__ == "__main__":
    main()
