"""The KV store cache (collection ``defenderipstats_cache``).

Answers are kept per (account, look-back, basis, IP): ``backend=ipstats`` reads only ``ipstats``
answers, ``hunting`` only ``hunting`` ones, ``auto`` both in the same request (a fresh ``ipstats``
answer first), so one backend's figures never replace the other's. Documents of the layout before the
basis (key ``account|lookback|ip``, no ``basis`` field) are never read: they age out and the purge
removes them.

Per chunk: one ``batch_find`` request that looks up all the chunk's keys (``$or`` of
``_key``s, in pages of PAGE_KEYS keys inside that one request) and ``batch_save`` in
batches of at most BATCH_SAVE documents. Freshness is checked on read, never trusted to a
purge job. Only found/not_seen answers are ever written.
"""

import json
import time
from typing import Dict, Iterable, List

from splunklib import binding

from .. import APP_NAME
from ..core.model import BASES_OF_BACKEND, FOUND, NOT_SEEN, SOURCE_CACHE, IpStats

COLLECTION = "defenderipstats_cache"
# Answers learnt through an account with allowed_roles: readable by the admin roles and the privileged
# service only (metadata/default.meta), which hands them to the account's allowed callers.
RESTRICTED_COLLECTION = "defenderipstats_cache_restricted"
PAGE_KEYS = 1000
BATCH_SAVE = 1000
GET_PAGE_KEYS = 100  # keys per GET when batch_find is refused: the query stays a few kB in the URL
FIELDS = ("_key", "ip", "status", "prevalence", "first_seen", "last_seen", "fetched_at", "source", "basis")


def stats_document(stats: IpStats, account: str, lookback_hours: int, now: float) -> dict:
    """One IP's answer as the KV store keeps it (the cache and the published lookup alike), no ``_key``."""
    return {
        "ip": stats.ip,
        "account": account,
        "lookback_hours": int(lookback_hours),
        "prevalence": stats.prevalence if stats.prevalence is not None else 0,
        "first_seen": stats.first_seen or "",
        "last_seen": stats.last_seen or "",
        "status": stats.status,
        "source": stats.source,
        "basis": stats.basis,
        "fetched_at": stats.fetched_at if stats.fetched_at is not None else now,
    }


def collection_for(account) -> str:
    """Where an account's answers are kept: apart from the searchers' collection when only some roles
    may use the account (an ``Account`` from ``core.accounts``)."""
    return RESTRICTED_COLLECTION if account.restricted else COLLECTION


def forget_account(service, account: str, collection: str = COLLECTION) -> None:
    """Deletes every answer of ``account`` from ``collection`` (one KV store request): what an account
    learnt before an admin limited it to certain roles must not stay where every searcher reads."""
    service.delete("storage/collections/data/%s" % collection, owner="nobody", app=APP_NAME,
                   query=json.dumps({"account": account}))


def cache_key(account: str, lookback_hours: int, basis: str, ip: str) -> str:
    return "%s|%d|%s|%s" % (account, lookback_hours, basis, ip)


class KVStoreCache:
    def __init__(self, service, account: str, lookback_hours: int, ttl: int, not_seen_ttl: int,
                 clock=time.time, collection: str = COLLECTION, backend: str = "auto", max_age=None):
        """``max_age``: seconds; an answer older than that is not fresh, whatever its TTL (cache=refresh)."""
        self.service = service
        self.account = account
        self.lookback_hours = lookback_hours
        self.bases = BASES_OF_BACKEND[backend]  # read in this order of preference; written: only these
        self.ttl = ttl
        self.not_seen_ttl = not_seen_ttl
        self.max_age = max_age
        self.clock = clock
        self.path = "storage/collections/data/%s/" % collection
        self.requests = 0
        self.hits = 0
        self.stale = 0
        self.find_with_get = False

    # -- reading --------------------------------------------------------------------
    def get_many(self, ips: List[str]) -> Dict[str, IpStats]:
        keys = [cache_key(self.account, self.lookback_hours, basis, ip) for ip in ips for basis in self.bases]
        queries = [
            {"query": {"$or": [{"_key": key} for key in keys[start:start + PAGE_KEYS]]},
             "fields": ",".join(FIELDS), "limit": PAGE_KEYS}
            for start in range(0, len(keys), PAGE_KEYS)
        ]
        if not queries:
            return {}
        pages = self._find(queries)
        now = self.clock()
        found: Dict[str, IpStats] = {}
        wanted = set(ips)
        rank = {basis: index for index, basis in enumerate(self.bases)}
        for page in pages or []:
            for document in page or []:
                stats = self._from_document(document, now)
                if stats is None or stats.ip not in wanted or stats.basis not in rank:
                    continue
                if document.get("_key") != cache_key(self.account, self.lookback_hours, stats.basis, stats.ip):
                    continue  # a document of another layout or one whose fields do not match its key
                held = found.get(stats.ip)
                if held is None or rank[stats.basis] < rank[held.basis]:
                    found[stats.ip] = stats
        self.hits += len(found)
        return found

    def _find(self, queries):
        """``batch_find`` (one POST for every page); where splunkd refuses it to a read-only role, plain
        GETs with a smaller ``$or`` each, so the URL stays short."""
        if not self.find_with_get:
            try:
                return self._post_json("batch_find", queries)
            except binding.HTTPError as error:
                if error.status != 403:
                    raise
                self.find_with_get = True  # a role that may read but not write the collection
        pages = []
        for query in queries:
            keys = query["query"]["$or"]
            for start in range(0, len(keys), GET_PAGE_KEYS):
                self.requests += 1
                response = self.service.get(self.path, owner="nobody", app=APP_NAME, output_mode="json",
                                            query=json.dumps({"$or": keys[start:start + GET_PAGE_KEYS]}),
                                            fields=query["fields"], limit=GET_PAGE_KEYS)
                pages.append(json.loads(response.body.read().decode("utf-8") or "[]"))
        return pages

    def _from_document(self, document: dict, now: float):
        status = document.get("status")
        if status not in (FOUND, NOT_SEEN):
            return None
        try:
            fetched_at = float(document.get("fetched_at"))
        except (TypeError, ValueError):
            return None
        ttl = self.ttl if status == FOUND else self.not_seen_ttl
        if self.max_age is not None:
            ttl = min(ttl, self.max_age)
        if fetched_at + ttl <= now or fetched_at > now + 300:
            self.stale += 1
            return None
        prevalence = document.get("prevalence")
        try:
            prevalence = None if prevalence in (None, "") else int(prevalence)
        except (TypeError, ValueError):
            return None
        return IpStats(
            ip=str(document.get("ip") or ""),
            status=status,
            prevalence=prevalence,
            first_seen=document.get("first_seen") or None,
            last_seen=document.get("last_seen") or None,
            source=SOURCE_CACHE,
            fetched_at=fetched_at,
            basis=str(document.get("basis") or ""),
        )

    # -- writing --------------------------------------------------------------------
    def put_many(self, results: Iterable[IpStats]) -> None:
        documents = [self._to_document(stats) for stats in results if stats.cacheable and stats.basis in self.bases]
        for start in range(0, len(documents), BATCH_SAVE):
            self._post_json("batch_save", documents[start:start + BATCH_SAVE])

    def _to_document(self, stats: IpStats) -> dict:
        return dict(stats_document(stats, self.account, self.lookback_hours, self.clock()),
                    _key=cache_key(self.account, self.lookback_hours, stats.basis, stats.ip))

    def _post_json(self, endpoint: str, payload):
        self.requests += 1
        response = self.service.post(
            self.path + endpoint,
            owner="nobody",
            app=APP_NAME,
            headers=[("Content-Type", "application/json")],
            body=json.dumps(payload),
        )
        text = response.body.read().decode("utf-8")
        return json.loads(text) if text.strip() else None


class SafeCache:
    """The KV store cache, or nothing: a failing KV store costs one warning, not the lookups."""

    def __init__(self, cache, warn, logger):
        self.cache = cache
        self.warn = warn
        self.logger = logger
        self.failed = False

    @property
    def hits(self) -> int:
        return self.cache.hits

    def _fail(self, what, error):
        self.failed = True
        self.logger.warning("KV store %s failed, continuing without the cache: %s", what, describe_failure(error))
        self.warn("The KV store cache is unavailable (%s); this search continues without it."
                  % describe_failure(error))

    def get_many(self, ips):
        if self.failed:
            return {}
        try:
            return self.cache.get_many(ips)
        except Exception as error:  # any KV store trouble: carry on uncached
            self._fail("read", error)
            return {}

    def put_many(self, results):
        if self.failed:
            return
        try:
            self.cache.put_many(results)
        except Exception as error:
            self._fail("write", error)


def describe_failure(error) -> str:
    """A short, secret-free description of a splunkd/KV store failure."""
    status = getattr(error, "status", None)
    if status:
        return "splunkd answered %s" % status
    text = str(error).splitlines()[0] if str(error) else ""
    return ("%s: %s" % (type(error).__name__, text))[:120] if text else type(error).__name__
