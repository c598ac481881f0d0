"""Runs a search command script and reports its own CPU time and peak RSS on stderr at exit.

Usage: BENCH_TARGET=<script> python rusage_wrapper.py [args] — the benchmark puts this in front of both the app's
command and the trivial baseline, so each figure belongs to exactly one process.
"""

import atexit
import os
import resource
import runpy
import sys


def _report():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    sys.stderr.write("RUSAGE cpu=%.6f maxrss_kb=%d\n" % (usage.ru_utime + usage.ru_stime, usage.ru_maxrss))
    sys.stderr.flush()


atexit.register(_report)
script = os.environ["BENCH_TARGET"]
sys.argv = [script] + sys.argv[1:]
runpy.run_path(script, run_name="__main__")
