#!/usr/bin/env python
"""Entry point splunkd runs for the alert action "Defender IP statistics" (alert_actions.conf
[defenderipstats_alert]): ``python defenderipstats_alert.py --execute`` with the JSON payload on
stdin. Wiring only; the logic is in lib/defender_ipstats/search/alert.py."""

import os
import sys

APP_LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib")
if APP_LIB not in sys.path:
    sys.path.insert(0, APP_LIB)

from defender_ipstats.search.alert import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
