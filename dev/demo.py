"""The demo: the real command, over protocol v2, against local stand-ins for splunkd and Defender.

Started by `make demo`. It starts the stand-ins on 127.0.0.1, configures an account through
splunkd's REST API as an admin would, sends sample events through `| defenderipstats field=src_ip`
twice (cold, then warm from the KV store cache), prints the enriched events, and stops everything.
"""

import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests", "support"), os.path.join(ROOT, "tests"), os.path.join(ROOT, "lib")]

from harness import ACCOUNT, AppHarness, events  # noqa: E402
from standins import dataset  # noqa: E402
from standins.defender import DefenderStandin  # noqa: E402
from standins.splunkd import SplunkdStandin  # noqa: E402

COLUMNS = ("src_ip", "defender_ip", "defender_prevalence", "defender_first_seen", "defender_last_seen",
           "defender_status", "defender_source")


def sample_values():
    found = dataset.ips(4, status="found", seed=2026)
    unseen = dataset.ips(1, status="not_seen", seed=2026)
    v6 = dataset.ips(1, status="found", seed=2026, family=6)
    return [found[0], found[1], "::ffff:" + found[0], unseen[0], v6[0], "10.1.2.300", "", found[2],
            [found[3], found[1]], found[0]]


def show(title, records):
    print("\n" + title)
    rows = [[_cell(record.get(column, "")) for column in COLUMNS] for record in records]
    widths = [max(len(column), *(len(row[i]) for row in rows)) for i, column in enumerate(COLUMNS)]
    print("  ".join(column.ljust(width) for column, width in zip(COLUMNS, widths)))
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))


def _cell(value):
    if isinstance(value, list):
        return "|".join(value)
    return str(value)


def main():
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # the demo's CA is the stand-in's own
        os.environ.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="defenderipstats-demo-") as workdir, \
            SplunkdStandin(apps={"TA-defender-ipstats": ROOT}) as splunkd, DefenderStandin() as defender:
        print("splunkd stand-in:           %s" % splunkd.base_url)
        print("Defender + Entra stand-in:  %s (TLS, throwaway CA)" % defender.base_url)
        app = AppHarness(splunkd, defender, workdir)
        print("\nConfiguring account '%s' through REST, as an admin would:" % ACCOUNT)
        print("  POST configs/conf-defenderipstats_accounts  name=%s tenant_id=... client_id=... "
              "api_url=... authority=... ca_bundle=..." % ACCOUNT)
        print("  POST storage/passwords                      name=%s realm=TA-defender-ipstats "
              "password=********" % ACCOUNT)
        app.configure_account(ACCOUNT)

        sample = events(sample_values())
        first = app.search(["field=src_ip"], [sample])
        cold_calls = defender.api_calls()
        show("| defenderipstats field=src_ip   (cold: %d API calls for %d events)" % (cold_calls, len(sample)),
             first.records)
        for level, text in first.messages:
            print("  search message [%s] %s" % (level, text))

        defender.reset_counters()
        second = app.search(["field=src_ip"], [sample])
        show("The same search again   (warm: %d API calls, answered from the KV store cache)"
             % defender.api_calls(), second.records)
        print("\nKV store collection defenderipstats_cache now holds %d documents." % len(app.cache_documents()))
        print("Log: %s" % os.path.join(app.splunk_home, "var", "log", "splunk", "defenderipstats.log"))
        summary = [line for line in app.log_text().splitlines() if "api_calls=" in line]
        for line in summary:
            print("  " + line.split(" - ", 1)[-1])
        ok = (len(first.records) == len(sample) and second.records and defender.api_calls() == 0
              and first.returncode == 0 and second.returncode == 0)
    print("\nDemo %s; stand-ins stopped." % ("finished" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
