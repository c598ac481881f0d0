"""Benchmark of the defenderipstats command (make bench). Prints figures and ratios; asserts nothing.

Everything runs against the project's stand-ins on 127.0.0.1, with the command as a subprocess over
protocol v2, as in the tests. Figures:

- warm cache: events per CPU-second of the command vs the trivial splunklib streaming command that
  adds one field (tests/fixtures/trivial_command.py), same events, same run; 200,000 events with
  1,000 distinct IPs, and 1,000,000 events;
- cold: API calls vs distinct cold IPs, KV store requests per chunk vs 2 + ceil(misses/1000);
- bulk cold: API calls and wall time to enrich 5,000 distinct cold IPs with each backend (the per-IP
  one against an unthrottled stand-in, with the time the real 1,500/h budget would take);
- peak RSS of the command process for 1,000,000 events in 50,000-row chunks.

Usage: python bench/bench.py [--quick]
"""

import argparse
import math
import os
import re
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests"), os.path.join(ROOT, "lib")]

from harness import COMMAND, AppHarness  # noqa: E402
from protocol import run_command  # noqa: E402
from standins import dataset  # noqa: E402
from standins.defender import DefenderStandin  # noqa: E402
from standins.splunkd import SplunkdStandin  # noqa: E402

WRAPPER = os.path.join(ROOT, "bench", "rusage_wrapper.py")
TRIVIAL = os.path.join(ROOT, "tests", "fixtures", "trivial_command.py")
CHUNK = 50_000


def make_chunks(total, ips):
    chunks, index = [], 0
    while index < total:
        size = min(CHUNK, total - index)
        chunk = []
        for i in range(index, index + size):
            chunk.append({"_time": str(1764201600 + i), "host": "fw-%d" % (i % 7), "action": "allowed",
                          "src_ip": ips[(i * 7919) % len(ips)], "bytes": str(i % 65536)})
        chunks.append(chunk)
        index += size
    return chunks


def measured(script, args, chunks, app, env):
    """Run one search through the rusage wrapper; return (cpu seconds, peak RSS MB, run)."""
    wrapper_args = dict(python=sys.executable, env=env, cwd=app.dispatch, timeout=1800,
                        splunkd_uri=app.splunkd.base_url, session_key=app.splunkd.new_session_key("admin"))
    run = _run_wrapped(script, args, chunks, wrapper_args)
    match = re.search(r"RUSAGE cpu=([\d.]+) maxrss_kb=(\d+)", run.stderr)
    if run.returncode != 0 or not match:
        raise SystemExit("benchmark run failed: rc=%s %s" % (run.returncode, run.stderr[-2000:]))
    return float(match.group(1)), int(match.group(2)) / 1024.0, run


def _run_wrapped(script, args, chunks, kwargs):
    env = dict(kwargs.pop("env"), BENCH_TARGET=script)  # the wrapper runs the script in its own process
    return run_command(WRAPPER, args, chunks, env=env, **kwargs)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller figures (a smoke run)")
    options = parser.parse_args()
    warm_events = 20_000 if options.quick else 200_000
    big_events = 100_000 if options.quick else 1_000_000
    distinct = 1000
    cold_distinct = 1000 if options.quick else 1500
    bulk_distinct = 5000

    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)
    rows = []
    with tempfile.TemporaryDirectory(prefix="defenderipstats-bench-") as workdir, \
            SplunkdStandin(apps={"TA-defender-ipstats": ROOT}) as splunkd, \
            DefenderStandin(rate_per_minute=10 ** 6, rate_per_hour=10 ** 7) as defender:
        app = AppHarness(splunkd, defender, workdir)
        app.configure_account()
        app.settings(rate_per_minute="100000", rate_per_hour="1000000")
        env = dict(os.environ, SPLUNK_HOME=app.splunk_home)

        # Cold: calls vs distinct IPs and KV store requests per chunk.
        cold_ips = dataset.ips(cold_distinct, seed=77)
        cold_chunks = [[{"src_ip": ip} for ip in cold_ips[i:i + 1000]] * 3 for i in range(0, cold_distinct, 1000)]
        splunkd.reset_requests()
        started = time.time()
        cold_run = app.search(["field=src_ip", "backend=ipstats"], cold_chunks, timeout=1800)
        cold_wall = time.time() - started
        calls = defender.api_calls()
        kv_requests = splunkd.count(path_contains="storage/collections/data")
        kv_allowed = sum(2 + math.ceil(len(set(r["src_ip"] for r in chunk)) / 1000) for chunk in cold_chunks)
        rows.append(("cold: API calls / distinct cold IPs", "%d / %d" % (calls, cold_distinct),
                     "%.2f" % (calls / cold_distinct), "target 1.00"))
        rows.append(("cold: KV store requests (%d chunks)" % len(cold_chunks), str(kv_requests),
                     "%.2f of allowed %d" % (kv_requests / kv_allowed, kv_allowed), "target <= 1.00"))
        rows.append(("cold: wall time, %d IPs (unthrottled stand-in)" % cold_distinct, "%.1f s" % cold_wall, "", ""))
        assert len(cold_run.records) == sum(len(c) for c in cold_chunks), (cold_run, cold_run.stderr[-2000:])

        # Bulk cold: 5,000 distinct IPs with each backend (issue: life after the per-IP API).
        bulk_ips = dataset.ips(bulk_distinct, seed=78)
        bulk_chunks = [[{"src_ip": ip} for ip in bulk_ips[i:i + 2500]] for i in range(0, bulk_distinct, 2500)]
        app.configure_account(graph_url=defender.base_url)
        for backend in ("ipstats", "hunting"):
            defender.reset_counters()
            hunting_before = defender.hunting.calls()
            started = time.time()
            run = app.search(["field=src_ip", "backend=" + backend, "cache=off"], bulk_chunks, timeout=1800)
            wall = time.time() - started
            calls = defender.api_calls() + defender.hunting.calls() - hunting_before
            enriched = sum(1 for r in run.records if r["defender_status"] in ("found", "not_seen"))
            note = ""
            if backend == "ipstats":
                note = "at the API's 1,500/h: >= %.1f h" % (bulk_distinct / 1500.0)
            rows.append(("bulk cold: %d IPs, backend=%s" % (bulk_distinct, backend),
                         "%d calls, %.1f s" % (calls, wall), "%d enriched" % enriched,
                         note or "target <= 5 calls, <= 60 s"))

        # Warm: the same distinct IPs, all cached.
        warm_ips = cold_ips[:distinct]
        for label, total in (("warm", warm_events), ("warm, large", big_events)):
            chunks = make_chunks(total, warm_ips)
            defender.reset_counters()
            splunkd.reset_requests()
            cmd_cpu, cmd_rss, run = measured(COMMAND, ["field=src_ip"], chunks, app, env)
            assert len(run.records) == total and defender.api_calls() == 0
            kv_per_chunk = splunkd.count(path_contains="storage/collections/data") / len(chunks)
            base_cpu, base_rss, _ = measured(TRIVIAL, [], chunks, app, env)
            ratio = (total / cmd_cpu) / (total / base_cpu)
            rows.append(("%s: %d events, %d distinct IPs" % (label, total, distinct),
                         "%.0f ev/CPU-s" % (total / cmd_cpu),
                         "%.2f x trivial (%.0f ev/CPU-s)" % (ratio, total / base_cpu), "target >= 0.50"))
            rows.append(("%s: peak RSS of the command" % label, "%.0f MB" % cmd_rss,
                         "trivial: %.0f MB" % base_rss, "target <= 150 MB"))
            rows.append(("%s: API calls; KV requests per chunk" % label, "%d; %.2f" % (defender.api_calls(),
                         kv_per_chunk), "", "target 0; <= 2"))
            del chunks, run

    width = max(len(r[0]) for r in rows)
    print("\n%s  %-22s  %-40s  %s" % ("figure".ljust(width), "value", "ratio", "target"))
    for name, value, ratio, target in rows:
        print("%s  %-22s  %-40s  %s" % (name.ljust(width), value, ratio, target))


if __name__ == "__main__":
    main()
