"""Deterministic IP statistics used by the Defender stand-in and by the tests.

Everything here is a pure function of the canonical IP text and the look-back
hours: no clock, no randomness, no Python ``hash()``. The tests import this
module to compute the values the app should output.

Model (per canonical IP, from a SHA-256 of a fixed prefix + the IP):

* About 70 % of IPs have activity in the 30 days (720 h) before ``REFERENCE_NOW``;
  the other 30 % were never seen (prevalence 0, null dates) for any look-back.
* An active IP has a base prevalence ``P`` (1..70000, about 12 % of them tiny,
  1..3) and an activity interval: its last connection ``last_age`` and first
  connection ``first_age`` before ``REFERENCE_NOW`` (``0 < last_age <=
  first_age < 720 h``). About 60 % of active IPs were last seen in the last
  48 hours.
* For a look-back of ``L`` hours (window ``(REFERENCE_NOW - L h, REFERENCE_NOW]``):
  - if ``last_age >= L h`` the IP is not seen (prevalence 0, null dates);
  - otherwise ``orgLastSeen = REFERENCE_NOW - last_age`` and ``orgFirstSeen`` is
    the first connection clipped to the window (the window start + 1 s when
    clipped), and the prevalence is ``P`` scaled by the part of the activity
    interval inside the window (rounded up, at least 1).
  Prevalence is non-decreasing in ``L`` and equals ``P`` at ``L = 720``.
* About 10 % of active IPs have sub-second timestamps written like .NET does
  (``2021-08-02T10:18:39.9233319Z``: up to 7 fractional digits, trailing zeros
  trimmed, so most have exactly 7); the rest have whole seconds
  (``2026-11-26T13:36:06Z``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import ipaddress
from typing import Dict, List, Optional, Union

__all__ = [
    "REFERENCE_NOW",
    "ODATA_CONTEXT",
    "MAX_LOOKBACK_HOURS",
    "canonical",
    "ip_stats",
    "status_of",
    "api_body",
    "ips",
    "has_fractional_timestamps",
    "activity",
]

#: The fixed "now" of the dataset; results never depend on the real clock.
REFERENCE_NOW = _dt.datetime(2026, 11, 27, 0, 0, 0, tzinfo=_dt.timezone.utc)
MAX_LOOKBACK_HOURS = 720
ODATA_CONTEXT = (
    "https://api.security.microsoft.com/api/$metadata"
    "#microsoft.windowsDefenderATP.api.InOrgIPStats"
)

_SALT = b"TA-defender-ipstats stand-in dataset v1\x00"
_TICKS_PER_SECOND = 10 ** 7  # .NET ticks (100 ns)
_HOUR_TICKS = 3600 * _TICKS_PER_SECOND
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_NOW_EPOCH_SECONDS = int((REFERENCE_NOW - _EPOCH).total_seconds())
_FULL_WINDOW_SECONDS = MAX_LOOKBACK_HOURS * 3600


def canonical(ip: str) -> str:
    """Return the canonical text of an IP address, or raise ``ValueError``.

    Surrounding whitespace and an IPv6 zone id (``%eth0``) are dropped, IPv4-mapped
    IPv6 (``::ffff:1.2.3.4``) becomes the IPv4 address, IPv6 is compressed and
    lower case. An empty zone id (``fe80::1%``) is no IP.
    """
    if not isinstance(ip, str):
        raise ValueError("not an IP address: %r" % (ip,))
    text = ip.strip()
    if "%" in text and ":" in text:  # IPv6 zone id; never valid on IPv4
        text, _, zone = text.partition("%")
        if not zone:
            raise ValueError("an empty zone id: %r" % (ip,))
    addr = ipaddress.ip_address(text)  # raises ValueError
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


def _int(b: bytes) -> int:
    return int.from_bytes(b, "big")


class _Profile:
    """The clock-free activity profile of one canonical IP."""

    __slots__ = ("active", "prevalence", "last_age", "first_age", "fractional", "first_frac")

    def __init__(self, ip_canonical: str) -> None:
        h = hashlib.sha256(_SALT + ip_canonical.encode("ascii")).digest()
        self.active = _int(h[0:2]) % 100 < 70
        if h[2] % 100 < 12:
            self.prevalence = 1 + h[3] % 3
        else:
            digits = 1 + h[3] % 5
            self.prevalence = 1 + _int(h[4:8]) % min(70000, 10 ** digits)
        if h[8] % 100 < 60:
            last_s = 1 + _int(h[9:13]) % (48 * 3600 - 1)
        else:
            last_s = 1 + _int(h[9:13]) % (_FULL_WINDOW_SECONDS - 1)
        first_s = last_s + _int(h[13:17]) % (_FULL_WINDOW_SECONDS - last_s)
        self.fractional = h[17] % 100 < 10
        last_frac = 1 + _int(h[18:22]) % (_TICKS_PER_SECOND - 1) if self.fractional else 0
        self.first_frac = 1 + _int(h[22:26]) % (_TICKS_PER_SECOND - 1) if self.fractional else 0
        # Ages in ticks before REFERENCE_NOW; REFERENCE_NOW has no fraction, so the
        # fraction of the timestamp is the subtracted amount.
        self.last_age = last_s * _TICKS_PER_SECOND - last_frac
        self.first_age = max(first_s * _TICKS_PER_SECOND - self.first_frac, self.last_age)


def _format_ticks_before_now(age_ticks: int) -> str:
    abs_ticks = _NOW_EPOCH_SECONDS * _TICKS_PER_SECOND - age_ticks
    seconds, frac = divmod(abs_ticks, _TICKS_PER_SECOND)
    text = (_EPOCH + _dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + ("%07d" % frac).rstrip("0")
    return text + "Z"


def _check_lookback(lookback_hours: int) -> int:
    if isinstance(lookback_hours, bool) or not isinstance(lookback_hours, int):
        raise ValueError("lookback_hours must be an int, got %r" % (lookback_hours,))
    if not 1 <= lookback_hours <= MAX_LOOKBACK_HOURS:
        raise ValueError("lookback_hours must be in 1..720, got %r" % (lookback_hours,))
    return lookback_hours


def ip_stats(ip: str, lookback_hours: int = MAX_LOOKBACK_HOURS) -> Optional[Dict[str, object]]:
    """Statistics of ``ip`` for a look-back of ``lookback_hours`` (1..720).

    Returns ``None`` when ``ip`` is not an IP address (the API answers 400
    ``InvalidIpAddress``), else ``{"organizationPrevalence": int,
    "orgFirstSeen": str | None, "orgLastSeen": str | None}``; prevalence 0 with
    null dates means "not seen". Raises ``ValueError`` for a look-back outside
    1..720.
    """
    _check_lookback(lookback_hours)
    try:
        key = canonical(ip)
    except ValueError:
        return None
    p = _Profile(key)
    window = lookback_hours * _HOUR_TICKS
    if not p.active or p.last_age >= window:
        return {"organizationPrevalence": 0, "orgFirstSeen": None, "orgLastSeen": None}
    clip = window - _TICKS_PER_SECOND + p.first_frac  # window start + 1 s (+ fraction); < window
    first_age = max(p.last_age, min(p.first_age, clip))
    span = p.first_age - p.last_age
    if span <= 0:
        prevalence = p.prevalence
    else:
        covered = first_age - p.last_age
        prevalence = max(1, -(-p.prevalence * covered // span))
    return {
        "organizationPrevalence": prevalence,
        "orgFirstSeen": _format_ticks_before_now(first_age),
        "orgLastSeen": _format_ticks_before_now(p.last_age),
    }


def activity(ip: str) -> Optional[Dict[str, object]]:
    """The clock-free activity of a canonical IP (``active``, ``prevalence``, and ``last_age``/``first_age``
    in ticks before ``REFERENCE_NOW``), for the stand-in's event table; ``None`` for a non-IP."""
    try:
        p = _Profile(canonical(ip))
    except ValueError:
        return None
    return {"active": p.active, "prevalence": p.prevalence, "last_age": p.last_age, "first_age": p.first_age}


def status_of(ip: str, lookback_hours: int = MAX_LOOKBACK_HOURS) -> str:
    """``"found"``, ``"not_seen"`` or ``"invalid"``, as the app should report it."""
    stats = ip_stats(ip, lookback_hours)
    if stats is None:
        return "invalid"
    return "found" if stats["organizationPrevalence"] else "not_seen"


def has_fractional_timestamps(ip: str) -> bool:
    """True when the IP's timestamps (if any) carry sub-second digits."""
    try:
        p = _Profile(canonical(ip))
    except ValueError:
        return False
    return p.active and p.fractional


def api_body(
    ip_as_sent: str,
    lookback_hours: int = MAX_LOOKBACK_HOURS,
    org_prevalence_field: bool = True,
) -> Optional[Dict[str, object]]:
    """The 200 body the stand-in returns for ``GET /api/ips/{ip_as_sent}/stats``.

    ``ipAddress`` echoes the IP as it was sent (URL-decoded). ``None`` for an
    invalid IP.
    """
    stats = ip_stats(ip_as_sent, lookback_hours)
    if stats is None:
        return None
    body = {  # type: Dict[str, object]
        "@odata.context": ODATA_CONTEXT,
        "ipAddress": ip_as_sent,
        "organizationPrevalence": stats["organizationPrevalence"],
    }
    if org_prevalence_field:
        body["orgPrevalence"] = str(stats["organizationPrevalence"])
    body["orgFirstSeen"] = stats["orgFirstSeen"]
    body["orgLastSeen"] = stats["orgLastSeen"]
    return body


def _candidate(seed: int, i: int, family: int) -> str:
    h = hashlib.sha256(b"ips\x00%d\x00%d\x00%d" % (seed, i, family)).digest()
    if family == 6:
        # 2001:db8::/32 (documentation prefix) + 96 hash bits
        value = (0x20010DB8 << 96) | _int(h[0:12])
        return str(ipaddress.IPv6Address(value))
    first = 1 + h[0] % 223  # 1..223, not 127 (loopback), no multicast/reserved
    if first == 127:
        first = 128
    return "%d.%d.%d.%d" % (first, h[1], h[2], 1 + h[3] % 254)


def ips(
    n: int,
    status: Optional[str] = None,
    seed: int = 0,
    lookback_hours: int = MAX_LOOKBACK_HOURS,
    family: Union[int, str] = 4,
) -> List[str]:
    """``n`` distinct IPs, deterministic for ``(status, seed, lookback_hours, family)``.

    ``status``: ``None`` (any valid IP), ``"found"``, ``"not_seen"`` (status for
    ``lookback_hours``) or ``"invalid"`` (strings that are not IP addresses, such
    as ``"300.12.7.9"``). ``family``: 4, 6 or ``"mixed"`` (alternating).
    IPs are canonical text; different seeds give (almost always) different IPs.
    """
    if status not in (None, "found", "not_seen", "invalid"):
        raise ValueError("status must be None, 'found', 'not_seen' or 'invalid'")
    if family not in (4, 6, "mixed"):
        raise ValueError("family must be 4, 6 or 'mixed'")
    _check_lookback(lookback_hours)
    out = []  # type: List[str]
    seen = set()
    i = 0
    while len(out) < n:
        fam = family if family != "mixed" else (4 if len(out) % 2 == 0 else 6)
        if status == "invalid":
            h = hashlib.sha256(b"invalid\x00%d\x00%d" % (seed, i)).digest()
            if fam == 6:
                cand = "2001:db8::%x::%x" % (_int(h[0:2]), _int(h[2:4]))  # two '::'
            else:
                cand = "%d.%d.%d.%d" % (256 + _int(h[0:2]) % 700, h[2], h[3], h[4])
        else:
            cand = _candidate(seed, i, fam)
            if status is not None and status_of(cand, lookback_hours) != status:
                cand = ""
        i += 1
        if cand and cand not in seen:
            seen.add(cand)
            out.append(cand)
    return out
