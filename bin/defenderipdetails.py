#!/usr/bin/env python
"""Entry point splunkd runs for | defenderipdetails (commands.conf). Wiring only."""

import os
import sys

APP_LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib")
if APP_LIB not in sys.path:
    sys.path.insert(0, APP_LIB)

from splunklib.searchcommands import dispatch  # noqa: E402

from defender_ipstats.search.details_command import DefenderIpDetailsCommand  # noqa: E402

if __name__ == "__main__":
    dispatch(DefenderIpDetailsCommand, sys.argv, sys.stdin, sys.stdout, __name__)
