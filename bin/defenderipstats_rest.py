"""The app's REST endpoints in splunkd (restmap.conf, scripttype = persist). Wiring only.

splunkd loads this file into its persistent handler process and, per request, creates the one class
below that derives from PersistentServerConnectionApplication and calls ``handle`` with the request
as JSON. The work is in ``defender_ipstats.broker``.
"""

import json
import os
import sys

APP_LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib")
if APP_LIB not in sys.path:
    sys.path.insert(0, APP_LIB)

from splunk.persistconn.application import PersistentServerConnectionApplication  # noqa: E402

from defender_ipstats import broker  # noqa: E402
from defender_ipstats.logs import get_logger  # noqa: E402


class DefenderIpStatsRestHandler(PersistentServerConnectionApplication):
    def __init__(self, command_line=None, command_arg=None):
        PersistentServerConnectionApplication.__init__(self)

    def handle(self, in_string):
        logger = get_logger()
        try:
            request = json.loads(in_string.decode("utf-8") if isinstance(in_string, bytes) else in_string)
        except ValueError:
            return broker.reply(400, {"error": "the request is not JSON"})
        try:
            return broker.handle(request, logger)
        except Exception as error:  # never let splunkd see a dead handler
            logger.exception("REST handler failed")
            return broker.error_reply(error)
