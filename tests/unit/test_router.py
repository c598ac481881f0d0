"""The service's router: every failure is an answer, and an unexpected one says no more than its type."""

import json

from defender_ipstats.service import router


class ListLogger:
    def __init__(self):
        self.lines = []

    def warning(self, text, *args):
        self.lines.append(text % args)

    def exception(self, text, *args):
        self.lines.append(text % args)


def test_an_unexpected_failure_is_a_500_naming_only_its_type():
    # splunkd's URI for its own REST API, broken: the service fails where nothing expected it to
    secretish = "s3cr3t-in-a-message"
    request = {"method": "GET", "restmap": {"name": router.LOOKUP}, "session": {"user": "analyst", "authtoken": "k"},
               "system_authtoken": "sys", "server": {"rest_uri": "https://[%s" % secretish}}
    logger = ListLogger()
    answer = router.handle(request, logger)
    assert answer["status"] == 500
    assert json.loads(answer["payload"]) == {
        "error": "internal error in the app's service (ValueError); see defenderipstats.log", "kind": "internal"}
    assert secretish not in answer["payload"] and "Invalid IPv6" not in answer["payload"]
    assert logger.lines and "failed" in logger.lines[0]  # the details are the log's


def test_an_unknown_endpoint_is_a_404():
    answer = router.handle({"method": "GET", "restmap": {"name": "script:other"}}, ListLogger())
    assert answer["status"] == 404
