"""``| defenderipdetails ip=<ip> [account=<name>] [lookbackhours=<1..720>]``: what Defender's own IP page
shows, from the app's service (``defenderipstats/details``), with the analyst's own session.

One row per device that communicated with the IP (up to 100, most recent first: ``row_type=device``)
and one per day with the distinct devices of that day (``row_type=day``); every row carries the IP's
overall figures. The service answers ``pending`` (with ``retry_in``) while budget is not free or a
query is still running: the command asks again, within the settings' ``max_wait``, then says to run
the search again. Every problem is one readable search error, never a traceback.
"""

import re
import time

from splunklib.searchcommands import Configuration, GeneratingCommand, Option

from ..core.errors import DefenderIpStatsError
from ..core.lookup import normalise_ip
from ..core.settings import LOOKBACK_RANGE, parse_int
from ..splunk import rest
from ..splunk.logs import get_logger
from .service_client import REQUEST_TIMEOUT, ServiceClient

OVERALL = ("ip", "account", "lookback_hours", "source", "ip_devices", "ip_first_seen", "ip_last_seen", "ip_url")
DEVICE = ("device_name", "device_id", "first_seen", "last_seen", "connections", "direction", "device_url")
DAY = ("day", "devices")
FIELDS = ("row_type",) + OVERALL + DEVICE + DAY
STILL_RUNNING = ("defenderipdetails: the hunting query for %s is still running or waiting for budget; "
                 "run the search again in a few minutes.")


@Configuration(distributed=False)
class DefenderIpDetailsCommand(GeneratingCommand):
    """| defenderipdetails ip=<ip> [account=<name>] [lookbackhours=<1..720>]"""

    ip = Option(require=True, doc="The IP to investigate (IPv4 or IPv6).")
    account = Option(doc="The configured account (tenant/app registration) to use.")
    lookbackhours = Option(doc="Look-back in hours, 1..720; default from settings.")

    sleep = staticmethod(time.sleep)
    clock = staticmethod(time.monotonic)

    def generate(self):
        logger = get_logger()
        try:
            ip = normalise_ip(str(self.ip or ""))
            if ip is None:
                raise DefenderIpStatsError("ip must be an IPv4 or IPv6 address, not %r." % str(self.ip or "")[:64])
            hours = None
            if self.lookbackhours not in (None, ""):
                hours = parse_int("lookbackhours", self.lookbackhours, *LOOKBACK_RANGE, what="a number of hours")
            answer = self._ask(ip, str(self.account or "").strip(), hours)
        except DefenderIpStatsError as error:
            logger.warning("defenderipdetails refused: %s", error)
            self.write_error(_prefixed(str(error)))
            return
        except Exception as error:  # never a traceback in the search
            logger.exception("defenderipdetails failed")
            self.write_error("defenderipdetails failed (internal error: %s). See defenderipstats.log."
                             % type(error).__name__)
            return
        if answer is None:
            return
        yield from rows_of(answer)
        if not answer.get("devices"):
            self.write_warning("defenderipdetails: no device of the organisation communicated with %s in the last "
                               "%s hours (advanced hunting, DeviceNetworkEvents)." % (ip, answer.get("lookback_hours")))

    def _ask(self, ip: str, account: str, hours):
        info = self.metadata.searchinfo
        service = rest.connect(info.splunkd_uri, info.session_key, timeout=REQUEST_TIMEOUT)
        client = ServiceClient(service)
        described = client.describe(account)  # the account (allowed_roles) and the settings
        settings = described.get("settings") or {}
        max_wait = parse_int("max_wait", settings.get("max_wait") or "60", 0, 3600)
        form = {"account": str(described.get("account") or account), "ip": ip}
        if hours is not None:
            form["lookback_hours"] = str(hours)
        deadline = self.clock() + max_wait
        while True:
            form["max_wait"] = "%.1f" % max(0.0, deadline - self.clock())
            answer = client.details(**form)
            status = answer.get("status")
            if status == "done":
                return answer
            if status == "pending":
                wait = max(0.5, float(answer.get("retry_in") or 1))
                if self.clock() + wait > deadline:
                    self.write_error(STILL_RUNNING % ip)
                    return None
                self.sleep(wait)
                continue
            raise DefenderIpStatsError(str(answer.get("error") or "the app's service gave no answer"))


def _prefixed(text: str) -> str:
    return text if text.startswith("defenderipdetails") else "defenderipdetails: " + text


def rows_of(answer: dict):
    """The device rows, then the day rows; every row with the IP's overall figures and every field."""
    portal = str(answer.get("portal") or "").rstrip("/")
    ip = str(answer.get("ip") or "")
    overall = {name: answer.get(name, "") for name in OVERALL}
    overall["ip_url"] = "%s/ip/%s/overview" % (portal, ip) if portal else ""
    empty = dict.fromkeys(FIELDS, "")
    for device in answer.get("devices") or []:
        row = dict(empty, row_type="device", **overall)
        row.update({name: device.get(name, "") for name in DEVICE if name != "device_url"})
        device_id = str(device.get("device_id") or "")
        linkable = portal and re.fullmatch(r"[0-9A-Za-z-]{1,64}", device_id)  # nothing else goes into a URL
        row["device_url"] = "%s/machines/v2/%s/overview" % (portal, device_id) if linkable else ""
        yield row
    for day in answer.get("days") or []:
        yield dict(empty, row_type="day", day=day.get("day", ""), devices=day.get("devices", 0), **overall)
