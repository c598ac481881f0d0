"""One IP's devices and days through advanced hunting (``| defenderipdetails``): what Defender's own IP
page shows, in one query over ``DeviceNetworkEvents``.

The query (checked by Kusto.Language in the tests) first summarizes the IP's events per device and
UTC day (``materialize``: the table is read once), then answers three kinds of rows in one union:

- ``device``: up to ``MAX_DEVICES`` devices, most recently seen first: name (the latest), first and
  last event, events, and how many were inbound (``InboundConnectionAccepted``) or outbound (the
  ``Connection*`` attempts and successes; ``ConnectionFound`` says no direction);
- ``day``: distinct devices per day (``bin(Timestamp, 1d)``);
- ``ip``: the IP's overall figures: distinct devices (all of them, not only the first 100), first and
  last event.

Devices are counted exactly (a summarize per device, then count()), as in the batch query. Only the
canonical IP (checked again here) and integers reach the query; an IPv4 is also matched written as
IPv4-mapped IPv6 (``::ffff:a.b.c.d``). Graph's answers are read by ``HuntingClient`` (quota, 403,
5xx, timeouts alike).
"""

from typing import Dict, List

from ..core.lookup import is_canonical_ip
from ..core.outcomes import HuntingFailure
from .graph_hunting import HuntingClient, _timestamp_key
from .http import LazyValidator

MAX_DEVICES = 100
INBOUND = ("InboundConnectionAccepted",)
OUTBOUND = ("ConnectionSuccess", "ConnectionFailed", "ConnectionRequest", "ConnectionAttempt")

_QUERY_TEMPLATE = (
    "let Hits = materialize(DeviceNetworkEvents"
    " | where Timestamp > ago(%(hours)dh)"
    " | where RemoteIP in~ (%(listed)s)"
    " | summarize Connections = count(), Inbound = countif(ActionType in (%(inbound)s)),"
    " Outbound = countif(ActionType in (%(outbound)s)), FirstSeen = min(Timestamp),"
    " arg_max(Timestamp, DeviceName) by DeviceId, Day = bin(Timestamp, 1d));"
    " union"
    " (Hits | summarize Connections = sum(Connections), Inbound = sum(Inbound), Outbound = sum(Outbound),"
    " FirstSeen = min(FirstSeen), arg_max(Timestamp, DeviceName) by DeviceId"
    " | top %(top)d by Timestamp desc"
    ' | project RowType = "device", DeviceId, DeviceName, FirstSeen, LastSeen = Timestamp, Connections,'
    " Inbound, Outbound),"
    ' (Hits | summarize Devices = count() by Day | project RowType = "day", Day, Devices),'
    " (Hits | summarize FirstSeen = min(FirstSeen), LastSeen = max(Timestamp) by DeviceId"
    " | summarize Devices = count(), FirstSeen = min(FirstSeen), LastSeen = max(LastSeen)"
    ' | project RowType = "ip", Devices, FirstSeen, LastSeen)'
)

_TIME = {"type": ["string", "null"]}
_COUNT = {"type": ["integer", "null"], "minimum": 0}
RESULT_SCHEMA = {
    "type": "object",
    "required": ["results"],
    "properties": {"results": {"type": "array", "items": {
        "type": "object",
        "required": ["RowType"],
        "properties": {
            "RowType": {"enum": ["device", "day", "ip"]},
            "DeviceId": {"type": ["string", "null"]}, "DeviceName": {"type": ["string", "null"]},
            "FirstSeen": _TIME, "LastSeen": _TIME, "Day": _TIME,
            "Connections": _COUNT, "Inbound": _COUNT, "Outbound": _COUNT, "Devices": _COUNT,
        },
    }}},
}
_validate = LazyValidator(RESULT_SCHEMA)


def _quoted(values) -> str:
    return ", ".join('"%s"' % value for value in values)


def build_details_query(ip: str, lookback_hours: int) -> str:
    if not is_canonical_ip(ip):
        raise ValueError("not a canonical IP")
    hours = int(lookback_hours)
    if not 1 <= hours <= 720:
        raise ValueError("lookback_hours out of range")
    listed = [ip] if ":" in ip else [ip, "::ffff:" + ip]
    return _QUERY_TEMPLATE % {"hours": hours, "listed": _quoted(listed), "inbound": _quoted(INBOUND),
                              "outbound": _quoted(OUTBOUND), "top": MAX_DEVICES}


def direction(inbound: int, outbound: int) -> str:
    """inbound, outbound, both, or empty: the events' action types do not say."""
    if inbound and outbound:
        return "both"
    return "inbound" if inbound else "outbound" if outbound else ""


class DetailsClient(HuntingClient):
    """The hunting client for one IP's details: ``query([ip], hours)`` answers ``{ip: details}`` (a plain
    dict, as the service caches and returns it) or a ``QuotaExceeded``/``HuntingFailure``."""

    def query(self, ips: List[str], lookback_hours: int):
        (ip,) = ips
        self.lookback_hours = int(lookback_hours)
        return self._run(ips, build_details_query(ip, lookback_hours), lookback_hours)

    def _parse(self, ips, response):
        document = self._document(response, _validate)
        if isinstance(document, HuntingFailure):
            return document
        return {ips[0]: details_of(ips[0], self.lookback_hours, document["results"], self.clock())}


def details_of(ip: str, lookback_hours: int, rows: List[dict], now: float) -> Dict[str, object]:
    devices, days = [], {}
    overall = {"ip_devices": 0, "ip_first_seen": "", "ip_last_seen": ""}
    for row in rows:
        kind = row["RowType"]
        if kind == "device" and row.get("DeviceId"):
            devices.append({"device_id": row["DeviceId"], "device_name": row.get("DeviceName") or "",
                            "first_seen": row.get("FirstSeen") or "", "last_seen": row.get("LastSeen") or "",
                            "connections": int(row.get("Connections") or 0),
                            "direction": direction(row.get("Inbound") or 0, row.get("Outbound") or 0)})
        elif kind == "day" and row.get("Day"):
            day = str(row["Day"])[:10]
            days[day] = days.get(day, 0) + int(row.get("Devices") or 0)
        elif kind == "ip":
            overall = {"ip_devices": int(row.get("Devices") or 0), "ip_first_seen": row.get("FirstSeen") or "",
                       "ip_last_seen": row.get("LastSeen") or ""}
    # most recent first; Graph's order of equal times is arbitrary, so the id decides between them
    devices.sort(key=lambda d: d["device_id"])
    devices.sort(key=lambda d: _timestamp_key(d["last_seen"]), reverse=True)
    return dict(overall, ip=ip, lookback_hours=int(lookback_hours), devices=devices[:MAX_DEVICES],
                days=[{"day": day, "devices": days[day]} for day in sorted(days)], fetched_at=now)
