"""A synthetic ``DeviceNetworkEvents`` table for the Graph stand-in, and its expected answers.

Rows are generated per canonical IP, deterministically (no clock, no randomness), from the same
activity profile as the per-IP dataset (``dataset.activity``): an IP the per-IP endpoint reports
as seen within a look-back has events within it, its latest event is the per-IP ``orgLastSeen``
and its earliest the unclipped ``orgFirstSeen``. The number of devices is small (1 to 8, never
more than the per-IP prevalence): hunting counts devices, which is not the per-IP figure.

What the rows carry, as DeviceNetworkEvents does (columns: ``SCHEMA``):

- ``Timestamp`` in .NET ticks: most events have 7-digit fractions;
- ``DeviceId``: 40 hex digits, from a fleet of 5,000 devices shared by all IPs;
- ``RemoteIP``: an IPv4 peer written plain or IPv4-mapped (``::ffff:a.b.c.d``) event by event;
  an IPv6 peer compressed, and now and then in upper case. Microsoft documents neither the mapped
  form nor the letter case; the stand-in has both so that a query must cope with them;
- duplicate rows (the same event twice), which DeviceNetworkEvents may hold (ReportId repeats);
- ``DeviceName``: the device's FQDN in lower case, one per device (``device_name``);
- ``ActionType``: one of the documented network action types, event by event (``ACTION_TYPES``):
  ``InboundConnectionAccepted`` is the one inbound kind, the ``Connection*`` attempts and successes
  are outbound, ``ConnectionFound`` (an active connection found) says no direction.
"""

import hashlib
from typing import Dict, List, Optional

try:
    from . import dataset as _dataset
except ImportError:  # pragma: no cover
    import dataset as _dataset  # type: ignore

TICKS_PER_SECOND = 10 ** 7
HOUR_TICKS = 3600 * TICKS_PER_SECOND
NOW_TICKS = int(_dataset.REFERENCE_NOW.timestamp()) * TICKS_PER_SECOND
FLEET = 5000
MAX_DEVICES = 8

# The documented columns the stand-in fills (advanced-hunting-devicenetworkevents-table.md).
SCHEMA = {"Timestamp": "datetime", "DeviceId": "string", "DeviceName": "string", "ActionType": "string",
          "RemoteIP": "string"}
DAY_TICKS = 86400 * TICKS_PER_SECOND
INBOUND = ("InboundConnectionAccepted",)
OUTBOUND = ("ConnectionSuccess", "ConnectionFailed", "ConnectionRequest", "ConnectionAttempt")
ACTION_TYPES = INBOUND + OUTBOUND + ("ConnectionFound",)


def device_id(n: int) -> str:
    return hashlib.sha1(b"device\x00%d" % n).hexdigest()


def device_name(device: str) -> str:
    """The FQDN of the device with id ``device``: lower case, as DeviceNetworkEvents writes it."""
    return "ws-%s.corp.contoso.com" % device[:6]


def _bytes(ip: str, n: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(b"events\x00%s\x00%d" % (ip.encode("ascii"), counter)).digest()
        counter += 1
    return out[:n]


def rows_for(ip: str) -> List[Dict[str, object]]:
    """The events to and from one IP (any spelling), as dicts with ticks for Timestamp."""
    try:
        canonical = _dataset.canonical(ip)
    except ValueError:
        return []
    activity = _dataset.activity(canonical)
    if not activity or not activity["active"]:
        return []
    h = _bytes(canonical, 256)
    devices = min(int(activity["prevalence"]), 1 + h[0] % MAX_DEVICES)
    ids: List[str] = []
    for k in range(devices):
        candidate = device_id(int.from_bytes(h[1 + 2 * k:3 + 2 * k], "big") % FLEET)
        while candidate in ids:
            candidate = device_id((int(candidate[:6], 16) + 1) % FLEET)
        ids.append(candidate)
    last_age, first_age = int(activity["last_age"]), int(activity["first_age"])
    span = first_age - last_age
    ages: List[tuple] = [(ids[0], last_age), (ids[-1], first_age)]  # the edges: per-IP last and first seen
    cursor = 20
    for device in ids:
        for _ in range(h[cursor] % 3):  # 0..2 more events per device, between the edges
            fraction = int.from_bytes(h[cursor + 1:cursor + 5], "big") / 2 ** 32
            ages.append((device, last_age + int(span * fraction)))
            cursor += 5
        cursor += 1
    rows = []
    for index, (device, age) in enumerate(ages):
        flag = h[(200 + index) % 256]
        if ":" in canonical:
            remote = canonical.upper() if flag % 4 == 0 else canonical
        else:
            remote = "::ffff:" + canonical if flag % 3 == 0 else canonical
        action = ACTION_TYPES[h[(100 + index) % 256] % len(ACTION_TYPES)]
        row = {"Timestamp": NOW_TICKS - age, "DeviceId": device, "DeviceName": device_name(device),
               "ActionType": action, "RemoteIP": remote}
        rows.append(row)
        if flag % 5 == 0:
            rows.append(dict(row))  # a duplicate row
    return rows


def expected(ip: str, lookback_hours: int) -> Optional[Dict[str, object]]:
    """What a correct query must answer for ``ip``: distinct devices with an event in the look-back
    (``Timestamp > now - lookback``), and the first and last such Timestamp (ticks); None when none."""
    since = NOW_TICKS - lookback_hours * HOUR_TICKS
    inside = [row for row in rows_for(ip) if row["Timestamp"] > since]
    if not inside:
        return None
    return {"devices": len({row["DeviceId"] for row in inside}),
            "first": min(row["Timestamp"] for row in inside), "last": max(row["Timestamp"] for row in inside)}


def expected_details(ip: str, lookback_hours: int, top: int = 100) -> Dict[str, object]:
    """What ``defenderipdetails`` must show for ``ip``, from the rows alone: per device (first, last,
    events, direction), the distinct devices per UTC day, and the overall figures; times in ticks."""
    since = NOW_TICKS - lookback_hours * HOUR_TICKS
    inside = [row for row in rows_for(ip) if row["Timestamp"] > since]
    devices: Dict[str, Dict[str, object]] = {}
    days: Dict[int, set] = {}
    for row in inside:
        entry = devices.setdefault(row["DeviceId"], {"device_id": row["DeviceId"], "device_name": row["DeviceName"],
                                                     "first": row["Timestamp"], "last": row["Timestamp"],
                                                     "connections": 0, "inbound": 0, "outbound": 0})
        entry["first"] = min(entry["first"], row["Timestamp"])
        entry["last"] = max(entry["last"], row["Timestamp"])
        entry["connections"] += 1
        entry["inbound"] += row["ActionType"] in INBOUND
        entry["outbound"] += row["ActionType"] in OUTBOUND
        days.setdefault(row["Timestamp"] // DAY_TICKS * DAY_TICKS, set()).add(row["DeviceId"])
    for entry in devices.values():
        entry["direction"] = ("both" if entry["inbound"] and entry["outbound"] else "inbound" if entry["inbound"]
                              else "outbound" if entry["outbound"] else "")
    ordered = sorted(devices.values(), key=lambda e: (-e["last"], e["device_id"]))[:top]
    return {"devices": ordered, "days": {day: len(ids) for day, ids in sorted(days.items())},
            "ip_devices": len(devices),
            "first": min((row["Timestamp"] for row in inside), default=None),
            "last": max((row["Timestamp"] for row in inside), default=None)}
