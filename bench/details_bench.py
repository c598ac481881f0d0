"""The IP investigation's time (``| defenderipdetails``, issue 21): one IP cold (one hunting query through
the app's service) and warm (the answer kept for details_ttl, no query), with the command as a subprocess
over protocol v2 against the stand-ins, as in tests/system/test_details.py.

Beside each wall time: the service's own time for its request (the splunkd stand-in's record of the POST
defenderipstats/details) and, for the cold run, the stand-in's KQL interpreter on the same query in this
process (the query time of the stand-in, to be taken apart from the app's).
"""

import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (os.path.join(ROOT, "tests", "support"), os.path.join(ROOT, "tests", "system"),
              os.path.join(ROOT, "tests"), os.path.join(ROOT, "lib")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from test_details import details, seen_ip  # noqa: E402

from harness import AppHarness  # noqa: E402
from standins import device_events, kql  # noqa: E402
from standins.defender import DefenderStandin  # noqa: E402
from standins.splunkd import SplunkdStandin  # noqa: E402

RUNS = 5


def _stand_in_query_ms(query, ip):
    def rows_for(literals):
        return [dict(row, Timestamp=kql.DateTime(row["Timestamp"])) for row in device_events.rows_for(ip)]

    started = time.perf_counter()
    kql.run(query, rows_for, device_events.SCHEMA, "DeviceNetworkEvents", device_events.NOW_TICKS)
    return (time.perf_counter() - started) * 1000


def details_times(rows, runs=RUNS):
    """Appends the cold and warm figures (medians of ``runs`` IPs) to ``rows``."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="defenderipstats-bench-details-") as workdir, \
            SplunkdStandin(apps={"TA-defender-ipstats": ROOT}) as splunkd, DefenderStandin() as defender:
        app = AppHarness(splunkd, defender, workdir)
        app.configure_account(graph_url=defender.base_url)
        app.settings(hunting_rate_per_minute="1000", hunting_rate_per_hour="100000")
        figures = {"cold": [], "warm": []}
        standin_ms = []
        for n in range(runs):
            ip = seen_ip("v4" if n % 2 else "v6", seed=900 + n)
            for kind in ("cold", "warm"):
                splunkd.reset_requests()
                started = time.perf_counter()
                run = details(app, ["ip=" + ip])
                wall = (time.perf_counter() - started) * 1000
                assert run.errors == [] and run.records, run.errors
                assert {r["source"] for r in run.records} == {"hunting" if kind == "cold" else "cache"}
                service = sum(r.duration for r in splunkd.requests if r.path.endswith("defenderipstats/details"))
                figures[kind].append((wall, service * 1000))
            standin_ms.append(_stand_in_query_ms(defender.hunting.requests[-1].query, ip))
        queries = defender.hunting.calls()
    for kind in ("cold", "warm"):
        wall = statistics.median(w for w, _ in figures[kind])
        service = statistics.median(s for _, s in figures[kind])
        note = "service request %.0f ms" % service
        if kind == "cold":
            note += "; of it the stand-in's KQL %.0f ms" % statistics.median(standin_ms)
        rows.append(("   defenderipdetails: one IP %s (median of %d)" % (kind, runs), "%.0f ms" % wall, note,
                     "", ""))
    rows.append(("   defenderipdetails: hunting queries, %d cold + %d warm" % (runs, runs), "%d" % queries, "",
                 "= %d" % runs, "yes" if queries == runs else "NO"))
    return rows


if __name__ == "__main__":
    for row in details_times([]):
        print("  ".join(str(cell) for cell in row).rstrip())
