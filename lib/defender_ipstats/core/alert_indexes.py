"""Which indexes the alert action may write to: ``alert_indexes`` of defenderipstats.conf [settings].

The action writes its events as a stash file whose header names the index, and splunkd indexes a
stash file into whatever index it names: so the index is the admin's choice, not the alert owner's.
Kept apart from ``core.settings`` so that a mistyped list stops the alert action only, never a search.
"""

import re
from typing import Tuple

from .errors import ConfigurationError

DEFAULT = "main"
# Splunk index names: lower-case letters, digits, underscores and hyphens, not starting with an
# underscore or hyphen (internal indexes start with an underscore and are not for this).
INDEX_NAME = re.compile(r"[a-z0-9][a-z0-9_\-]{0,79}")


def parse_alert_indexes(text) -> Tuple[str, ...]:
    """The indexes of a ``;``-separated list, in order; empty or unset: ``main``."""
    value = str(text).strip() if text is not None else ""
    names = [name.strip() for name in (value or DEFAULT).split(";") if name.strip()]
    bad = [name for name in names if not INDEX_NAME.fullmatch(name)]
    if bad:
        raise ConfigurationError(
            "defenderipstats.conf [settings] alert_indexes must list index names separated by ';' (lower-case "
            "letters, digits, '_' and '-', not an internal index), not %r." % bad[0][:100])
    return tuple(names) or (DEFAULT,)
