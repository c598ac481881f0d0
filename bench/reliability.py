"""Reliability report (make reliability): the fault matrix of tests/support/faults.py, one table.

Each scenario runs in fresh stand-ins (splunkd, Defender + Entra ID on 127.0.0.1) with a fresh
SPLUNK_HOME, the command as a subprocess over protocol v2, exactly as in tests/system/test_reliability.py,
which asserts what this prints. Columns: events in/out (and whether they came out in order and
untouched), API calls the Defender stand-in received, 429s it sent, cache entries written, bad cache
entries (anything but a true found/not_seen answer), leaks (the client secret or an issued token in
results, messages, files under SPLUNK_HOME or the KV store), and requests off the one API path.

Usage: python bench/reliability.py [--quick]   (--quick leaves out the 4-process minute-long case)
Exit status 1 when a scenario breaks one of those promises.
"""

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests", "support"), os.path.join(ROOT, "tests"), os.path.join(ROOT, "lib")]

import faults  # noqa: E402
from harness import AppHarness  # noqa: E402
from standins.defender import DefenderStandin  # noqa: E402
from standins.splunkd import SplunkdStandin  # noqa: E402

COLUMNS = ["scenario", "events in", "events out", "in order", "API calls", "429s received",
           "cache entries written", "bad cache entries", "leaks found", "off-path requests", "seconds"]


def run_scenario(scenario):
    with tempfile.TemporaryDirectory(prefix="defenderipstats-reliability-") as workdir, \
            SplunkdStandin(apps={"TA-defender-ipstats": ROOT}) as splunkd, DefenderStandin() as defender:
        app = AppHarness(splunkd, defender, workdir)
        app.configure_account()
        started = time.monotonic()
        outcome = scenario(app)
        row = outcome.row()
        row["seconds"] = "%.1f" % (time.monotonic() - started)
        return outcome, row


def broken(outcome):
    return (outcome.events_in != outcome.events_out or not outcome.in_order or outcome.bad_cache_entries
            or outcome.leaks or outcome.off_path or any(run.returncode != 0 for run in outcome.runs))


def print_table(rows):
    widths = [max(len(str(c)), *(len(str(r[c])) for r in rows)) for c in COLUMNS]
    line = lambda cells: "| " + " | ".join(str(v).ljust(w) for v, w in zip(cells, widths)) + " |"  # noqa: E731
    print(line(COLUMNS))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line([row[c] for c in COLUMNS]))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="leave out the 4-process case (about a minute)")
    options = parser.parse_args()
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)
    scenarios = list(faults.MATRIX) + [faults.hostile_input]
    if not options.quick:
        scenarios.append(faults.four_searches_at_once)
    rows, failures = [], []
    for scenario in scenarios:
        print("running: %s" % scenario.__name__, file=sys.stderr, flush=True)
        outcome, row = run_scenario(scenario)
        rows.append(row)
        if broken(outcome):
            failures.append((outcome.scenario, outcome.bad_cache_entries[:3], outcome.leaks[:3], outcome.off_path[:3]))
    print_table(rows)
    for failure in failures:
        print("BROKEN: %s bad cache %r leaks %r off-path %r" % failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
