"""The published lookup: ``| lookup defenderipstats ip`` answers from here, with no API call.

The cache (``cache.py``) keeps one document per (account, look-back, IP), so a lookup on it would
return several rows for one IP. The published collection ``defenderipstats_published`` keeps one
document per IP (``_key`` = the canonical IP), for the default account and the default look-back
only, which is what the search command answers when it is given neither ``account=`` nor
``lookbackhours=``. Its ``basis`` column says which figure a row carries: a fresh ``ipstats`` answer
is never replaced by a ``hunting`` one (the figure ``backend=auto`` would answer).

Who writes it: the privileged service, with its system session, next to every cache write
(``publish``); and the scheduled search *Defender IP stats - Rebuild the published lookup*, which
rewrites it from the fresh cache entries of the current default (so entries expire, and a changed
default account or look-back takes effect within its period). Only admin roles may write it
(``metadata/default.meta``); every role may read it.
"""

import json
import time
from typing import Iterable, Optional, Tuple

from .. import APP_NAME
from ..core.model import BASIS_IPSTATS, CACHEABLE_STATUSES, FOUND
from .kvcache import stats_document

COLLECTION = "defenderipstats_published"
BATCH_SAVE = 1000

# The (account, look-back) whose rows this process last made the only ones in the collection.
_current: Optional[Tuple[str, int]] = None


def is_published(account: str, lookback_hours: int, settings) -> bool:
    """True when answers for this account and look-back are the ones the lookup publishes."""
    return account == settings.default_account and int(lookback_hours) == int(settings.lookback_hours)


def document(stats, account: str, lookback_hours: int, now: float) -> dict:
    """The cache's document of one answer, keyed by the IP alone: one row per IP in the lookup."""
    return dict(stats_document(stats, account, lookback_hours, now), _key=stats.ip)


def publish(service, stats_list: Iterable, account: str, lookback_hours: int, settings,
            clock=time.time) -> int:
    """Writes the found/not_seen answers of the default account and look-back; returns how many.

    ``service``: a splunklib Service with the system session (the privileged service's own).
    Answers for another account or look-back are not published (0). The first write for a
    default that differs from the one this process last wrote also removes the rows of any
    other account or look-back, so a changed default never mixes with the old one.
    """
    global _current
    if not is_published(account, lookback_hours, settings):
        return 0
    now = clock()
    documents = [document(stats, account, lookback_hours, now)
                 for stats in stats_list if stats.status in CACHEABLE_STATUSES and stats.ip]
    if not documents:
        return 0
    if _current != (account, int(lookback_hours)):
        retire_others(service, account, lookback_hours)
        _current = (account, int(lookback_hours))
    documents = _without_demoted(service, documents, settings, now)
    for start in range(0, len(documents), BATCH_SAVE):
        _request(service, "post", "batch_save", body=json.dumps(documents[start:start + BATCH_SAVE]))
    return len(documents)


def forget() -> None:
    """The next ``publish`` removes other accounts' and look-backs' rows again (call after the
    settings changed, or in a new process; a fresh process starts this way)."""
    global _current
    _current = None


def retire_others(service, account: str, lookback_hours: int) -> None:
    """Deletes the rows of every other account or look-back (one KV store request)."""
    query = {"$or": [{"account": {"$ne": account}}, {"lookback_hours": {"$ne": int(lookback_hours)}}]}
    _request(service, "delete", "", query=json.dumps(query))


def _without_demoted(service, documents, settings, now: float):
    """``documents`` but the hunting answers for IPs whose published row is a fresh ipstats answer."""
    hunting = [doc["_key"] for doc in documents if doc["basis"] != BASIS_IPSTATS]
    if not hunting:
        return documents
    query = {"$and": [{"basis": BASIS_IPSTATS}, {"$or": [{"_key": key} for key in hunting]}]}
    rows = json.loads(_request(service, "post", "batch_find",
                               body=json.dumps([{"query": query, "fields": "_key,status,fetched_at"}])) or "[]")
    kept = set()
    for row in (rows[0] if rows else None) or []:
        try:
            fetched_at = float(row.get("fetched_at"))
        except (TypeError, ValueError):
            continue
        ttl = settings.cache_ttl if row.get("status") == FOUND else settings.not_seen_ttl
        if fetched_at + ttl > now:
            kept.add(row.get("_key"))
    return [doc for doc in documents if doc["basis"] == BASIS_IPSTATS or doc["_key"] not in kept]


def _request(service, method: str, endpoint: str, body: Optional[str] = None, **query):
    path = "storage/collections/data/%s" % COLLECTION + ("/" + endpoint if endpoint else "")
    if method == "post":
        response = service.post(path, owner="nobody", app=APP_NAME,
                                headers=[("Content-Type", "application/json")], body=body)
    else:
        response = service.delete(path, owner="nobody", app=APP_NAME, **query)
    return response.body.read().decode("utf-8")
