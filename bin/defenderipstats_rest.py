"""The app's privileged service in splunkd (restmap.conf, scripttype = persist). Wiring only.

splunkd loads this file into its persistent handler process and, per request, creates the class
below (it derives from PersistentServerConnectionApplication) and calls ``handle`` with the request
as JSON. The work is in ``defender_ipstats.service``.
"""

import json
import os
import sys

APP_LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib")
if APP_LIB not in sys.path:
    sys.path.insert(0, APP_LIB)

from splunk.persistconn.application import PersistentServerConnectionApplication  # noqa: E402

from defender_ipstats.service import router  # noqa: E402
from defender_ipstats.splunk.logs import get_logger  # noqa: E402


class DefenderIpStatsRestHandler(PersistentServerConnectionApplication):
    def __init__(self, command_line=None, command_arg=None):
        PersistentServerConnectionApplication.__init__(self)

    def handle(self, in_string):
        try:
            request = json.loads(in_string.decode("utf-8") if isinstance(in_string, bytes) else in_string)
        except ValueError:
            return router.reply(400, {"error": "the request is not JSON"})
        return router.handle(request, get_logger())
