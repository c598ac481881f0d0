"""The search command's options, after defaults from settings are applied and values checked."""

from dataclasses import dataclass
from typing import Mapping, Optional

from .accounts import check_account_name
from .errors import ConfigurationError
from .settings import BACKENDS, CACHE_MODES, LOOKBACK_RANGE, MAX_WAIT_LIMIT, Settings, parse_choice, parse_int

DEFAULT_PREFIX = "defender_"


@dataclass(frozen=True)
class Options:
    """The command's options after defaults from settings are applied and values checked."""

    field: str
    lookback_hours: int
    account: str
    prefix: str
    cache: str
    max_wait: int
    backend: str

    @classmethod
    def resolve(cls, raw: Mapping[str, Optional[str]], settings: Settings) -> "Options":
        def given(name):
            value = raw.get(name)
            return None if value is None else str(value)

        field_name = (given("field") or "").strip()
        if not field_name:
            raise ConfigurationError('A value for "field" is required, e.g. | defenderipstats field=src_ip')
        lookback = given("lookbackhours")
        lookback_hours = (
            settings.lookback_hours if lookback is None
            else parse_int("lookbackhours", lookback, *LOOKBACK_RANGE, what="a number of hours")
        )
        maxwait = given("maxwait")
        max_wait = (
            settings.max_wait if maxwait is None
            else parse_int("maxwait", maxwait, 0, MAX_WAIT_LIMIT, what="a number of seconds")
        )
        prefix = given("prefix")
        if prefix is None:
            prefix = DEFAULT_PREFIX
        if prefix.startswith("_") or any(ch in prefix for ch in " \t\r\n\"'=,|"):
            raise ConfigurationError(
                "prefix must be usable in a field name (no spaces, quotes, '=', ',' or '|', "
                "and not starting with '_'), not %r." % prefix
            )
        cache = given("cache")
        backend = given("backend")
        account = given("account")
        account = settings.default_account if account is None else check_account_name(account.strip(), "account")
        return cls(
            field=field_name,
            lookback_hours=lookback_hours,
            account=account,
            prefix=prefix,
            cache="use" if cache is None else parse_choice("cache", cache, CACHE_MODES),
            max_wait=max_wait,
            backend=settings.backend if backend is None else parse_choice("backend", backend, BACKENDS),
        )
