"""Runs a search command script and reports its own CPU time and peak RSS on stderr at exit.

Usage: BENCH_TARGET=<script> python rusage_wrapper.py [args] — the benchmark puts this in front of both the app's
command and the trivial baseline, so each figure belongs to exactly one process.
"""

import atexit
import os
import resource
import runpy
import sys


def _peak_rss_kb():
    # VmHWM belongs to this program's own address space. ru_maxrss would not do: Linux carries it
    # over exec from the forked parent, so a large driver process would inflate every figure.
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _report():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    sys.stderr.write("RUSAGE cpu=%.6f maxrss_kb=%d\n" % (usage.ru_utime + usage.ru_stime, _peak_rss_kb()))
    sys.stderr.flush()


atexit.register(_report)
script = os.environ["BENCH_TARGET"]
sys.argv = [script] + sys.argv[1:]
runpy.run_path(script, run_name="__main__")
