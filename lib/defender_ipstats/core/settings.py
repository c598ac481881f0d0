"""The app's settings (defenderipstats.conf [settings]): parsed and validated from plain strings.

splunkd hands everything over as text; this module turns it into typed, checked values with
messages an admin can act on. No I/O here (``splunk.conf`` reads the text). Accounts live in
``core.accounts``, the command's options in ``core.options``.
"""

from dataclasses import dataclass
from typing import Mapping

from .errors import ConfigurationError

LOOKBACK_RANGE = (1, 720)
CACHE_MODES = ("use", "refresh", "off")
BACKENDS = ("ipstats", "hunting", "auto")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_WAIT_LIMIT = 3600
# Beyond a day, cache=refresh would be cache=use with the default cache_ttl.
REFRESH_MIN_AGE_RANGE = (0, 86400)


def parse_int(name: str, text, low: int, high: int, what: str = "a whole number", where: str = "") -> int:
    value = str(text).strip() if text is not None else ""
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise ConfigurationError(
            "%s%s must be %s from %d to %d, not %r." % (where, name, what, low, high, value)
        )
    return number


def parse_choice(name: str, text, choices, where: str = "") -> str:
    value = str(text).strip().lower() if text is not None else ""
    if value not in choices:
        raise ConfigurationError("%s%s must be one of %s, not %r." % (where, name, "|".join(choices), value))
    return value


@dataclass(frozen=True)
class Settings:
    default_account: str = ""  # empty: the one configured account
    lookback_hours: int = 720
    cache_ttl: int = 86400
    not_seen_ttl: int = 3600
    max_wait: int = 60
    rate_per_minute: int = 100
    rate_per_hour: int = 1500
    log_level: str = "INFO"
    backend: str = "auto"
    # Microsoft documents "at least 45 calls a minute" per tenant for Graph's advanced hunting; 1,500 an
    # hour is the older Defender for Endpoint API's figure, kept as a cautious hourly cap.
    hunting_rate_per_minute: int = 45
    hunting_rate_per_hour: int = 1500
    refresh_min_age: int = 300  # cache=refresh re-fetches only answers older than this (seconds)
    # No single user spends more than this share of an account's hourly per-IP or hunting budget.
    user_share_percent: int = 50
    alert_indexes: str = "main"  # as written: core.alert_indexes parses it, for the alert action only
    details_ttl: int = 3600  # seconds a defenderipdetails answer stays fresh

    @classmethod
    def from_conf(cls, stanza: Mapping[str, str]) -> "Settings":
        where = "defenderipstats.conf [settings] "

        def get(key, default):
            value = stanza.get(key)
            return default if value is None or str(value).strip() == "" else value

        defaults = cls()
        return cls(
            default_account=str(get("default_account", defaults.default_account)).strip(),
            lookback_hours=parse_int("lookback_hours", get("lookback_hours", defaults.lookback_hours),
                                     *LOOKBACK_RANGE, what="a number of hours", where=where),
            cache_ttl=parse_int("cache_ttl", get("cache_ttl", defaults.cache_ttl), 0, 10 ** 9,
                                what="a number of seconds", where=where),
            not_seen_ttl=parse_int("not_seen_ttl", get("not_seen_ttl", defaults.not_seen_ttl), 0, 10 ** 9,
                                   what="a number of seconds", where=where),
            max_wait=parse_int("max_wait", get("max_wait", defaults.max_wait), 0, MAX_WAIT_LIMIT,
                               what="a number of seconds", where=where),
            rate_per_minute=parse_int("rate_per_minute", get("rate_per_minute", defaults.rate_per_minute),
                                      1, 100_000, where=where),
            rate_per_hour=parse_int("rate_per_hour", get("rate_per_hour", defaults.rate_per_hour),
                                    1, 1_000_000, where=where),
            log_level=_parse_level(get("log_level", defaults.log_level), where),
            backend=parse_choice("backend", get("backend", defaults.backend), BACKENDS, where),
            hunting_rate_per_minute=parse_int(
                "hunting_rate_per_minute", get("hunting_rate_per_minute", defaults.hunting_rate_per_minute),
                1, 100_000, where=where),
            hunting_rate_per_hour=parse_int(
                "hunting_rate_per_hour", get("hunting_rate_per_hour", defaults.hunting_rate_per_hour),
                1, 1_000_000, where=where),
            refresh_min_age=parse_int("refresh_min_age", get("refresh_min_age", defaults.refresh_min_age),
                                      *REFRESH_MIN_AGE_RANGE, what="a number of seconds", where=where),
            user_share_percent=parse_int(
                "user_share_percent", get("user_share_percent", defaults.user_share_percent), 1, 100,
                what="a percentage", where=where),
            alert_indexes=str(get("alert_indexes", defaults.alert_indexes)).strip(),
            details_ttl=parse_int("details_ttl", get("details_ttl", defaults.details_ttl), 0, 10 ** 9,
                                  what="a number of seconds", where=where),
        )


def _parse_level(text, where):
    value = str(text).strip().upper()
    if value not in LOG_LEVELS:
        raise ConfigurationError("%slog_level must be one of %s, not %r." % (where, "|".join(LOG_LEVELS), value))
    return value
