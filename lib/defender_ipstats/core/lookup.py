"""The lookup core: normalise -> dedupe -> split cached/missing -> fetch -> merge.

Pure logic: the cache and the fetcher are small objects passed in, so this module is
tested without any server. Nothing here does I/O of its own.
"""

import ipaddress
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from .model import INVALID, OUTPUT_SUFFIXES, SOURCE_CACHE, IpStats, failed

# Longer than any textual IP (an IPv6 with an IPv4 tail and a zone id is < 64 chars);
# anything longer is rejected before the parser sees it.
MAX_IP_TEXT = 100


def is_canonical_ip(text: str) -> bool:
    """``text`` is an IP exactly as ``normalise_ip`` writes it (what may reach a URL or a query)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        return False
    return str(address) == text


def normalise_ip(value) -> Optional[str]:
    """The canonical text of an IP, or None when ``value`` is not one.

    IPv6 is compressed, an IPv4-mapped IPv6 becomes the IPv4 and a zone id is dropped; an empty
    zone id ("fe80::1%") makes it no IP. Only this canonical text ever reaches a URL or a query.
    """
    if not isinstance(value, str) or not value or len(value) > MAX_IP_TEXT:
        return None
    text = value.strip()
    if "%" in text and ":" in text:  # an IPv6 zone id; IPv4 has none ("10.0.0.1%2e" is no IP)
        text, _, zone = text.partition("%")
        if not zone:
            return None
    if not text or not text.isascii():
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.version == 6:
        mapped = address.ipv4_mapped
        if mapped is not None:
            return str(mapped)
        return address.compressed
    return str(address)


INVALID_STATS = IpStats(ip="", status=INVALID)
EMPTY_VALUES = ("",) * len(OUTPUT_SUFFIXES)


class Normaliser:
    """normalise_ip with a memo, since a search sees the same few values again and again."""

    def __init__(self, max_entries: int = 200_000):
        self._memo: Dict[str, Optional[str]] = {}
        self._max_entries = max_entries

    def __call__(self, value: str) -> Optional[str]:
        try:
            return self._memo[value]
        except KeyError:
            pass
        canonical = normalise_ip(value)
        if len(self._memo) >= self._max_entries:
            self._memo.clear()
        self._memo[value] = canonical
        return canonical


def distinct_ips(values: Iterable, normalise: Callable[[str], Optional[str]]) -> List[str]:
    """The distinct canonical IPs among field values (str or list of str), first-seen order."""
    seen = {}
    for value in values:
        if isinstance(value, list):
            for item in value:
                canonical = normalise(item)
                if canonical is not None:
                    seen[canonical] = None
        elif value:
            canonical = normalise(value)
            if canonical is not None:
                seen[canonical] = None
    return list(seen)


class Resolver:
    """Answers a set of canonical IPs from the cache, then from the fetcher for the rest.

    ``cache`` has ``get_many(ips) -> {ip: IpStats}`` (fresh entries only) and
    ``put_many(list of IpStats)``; ``fetch`` is ``fetch_many(ips) -> {ip: IpStats}`` giving
    an answer for every IP it was asked. ``mode`` is the command's ``cache`` option. ``store``
    False: the cache is only read here (the search's side; the privileged service writes it).
    """

    def __init__(self, cache, fetcher, mode: str = "use", store: bool = True):
        self.cache = cache
        self.fetcher = fetcher
        self.mode = mode
        self.store = store

    def resolve(self, ips: List[str]) -> Dict[str, IpStats]:
        answers: Dict[str, IpStats] = {}
        if not ips:
            return answers
        if self.mode == "use" and self.cache is not None:
            for ip, stats in self.cache.get_many(ips).items():
                answers[ip] = _as_cached(stats)
        missing = [ip for ip in ips if ip not in answers]
        if missing:
            fetched = self.fetcher.fetch_many(missing)
            answers.update(fetched)
            if self.store and self.mode != "off" and self.cache is not None:
                to_store = [fetched[ip] for ip in missing if ip in fetched and fetched[ip].cacheable]
                if to_store:
                    self.cache.put_many(to_store)
        return answers


def _as_cached(stats: IpStats) -> IpStats:
    if stats.source == SOURCE_CACHE:
        return stats
    return IpStats(
        ip=stats.ip,
        status=stats.status,
        prevalence=stats.prevalence,
        first_seen=stats.first_seen,
        last_seen=stats.last_seen,
        source=SOURCE_CACHE,
        fetched_at=stats.fetched_at,
        basis=stats.basis,
    )


class ChunkEnricher:
    """Adds the output fields to every record of a chunk, in place, keeping order and count.

    ``resolve(list of canonical IPs) -> {ip: IpStats}`` is called once per chunk with the
    chunk's distinct IPs. If it raises, every IP of the chunk is marked ``error`` and the
    events still go out; ``on_error(exception)`` is told.
    """

    def __init__(self, field: str, prefix: str, resolve: Callable, on_error: Callable = None,
                 normalise: Callable = None):
        self.field = field
        self.names = tuple(prefix + suffix for suffix in OUTPUT_SUFFIXES)
        self.resolve = resolve
        self.on_error = on_error
        self.normalise = normalise or Normaliser()

    def resolve_values(self, values: List) -> Tuple[Dict[str, IpStats], Dict[str, tuple]]:
        """The answers for the distinct IPs among ``values``, and the output values of each raw value.

        ``values`` are the field's values of a chunk's events: a string, a list of strings
        (multivalue), or None (field missing). Returns ``(answers, row_of)``: ``answers`` maps
        each distinct canonical IP to its IpStats; ``row_of`` maps every non-empty raw value (and
        every item of a multivalue, empty ones included) to its output values, in OUTPUT_SUFFIXES
        order. Empty and missing values are not in ``row_of``: their outputs are EMPTY_VALUES.
        """
        normalise = self.normalise
        # Each distinct raw value is normalised once per chunk (and memoised across chunks).
        canonical_of: Dict[str, Optional[str]] = {}
        for value in values:
            if type(value) is list:
                for item in value:
                    if item not in canonical_of:
                        canonical_of[item] = normalise(item) if item else None
            elif value and value not in canonical_of:
                canonical_of[value] = normalise(value)
        ips = list(dict.fromkeys(ip for ip in canonical_of.values() if ip is not None))
        try:
            answers = self.resolve(ips) if ips else {}
        except Exception as error:  # a failing chunk must never lose its events
            if self.on_error is not None:
                self.on_error(error)
            reason = "internal error: %s" % type(error).__name__
            answers = {ip: failed(ip, reason) for ip in ips}
        row_of = {}
        for raw, ip in canonical_of.items():
            if not raw:
                row_of[raw] = EMPTY_VALUES
            elif ip is None:
                row_of[raw] = INVALID_ROW
            else:
                stats = answers.get(ip)
                if stats is None:  # the resolver must answer every IP; be safe if it did not
                    stats = failed(ip, "no answer")
                row_of[raw] = stats.output_values()
        return answers, row_of

    def enrich(self, records: List[dict]) -> Dict[str, IpStats]:
        """Enrich ``records`` (dicts) in place; return the answers for the chunk's distinct IPs."""
        field = self.field
        values = [record.get(field) for record in records]
        answers, row_of = self.resolve_values(values)
        names = self.names
        for record, value in zip(records, values):
            if not value:
                record.update(zip(names, EMPTY_VALUES))
            elif type(value) is list:
                columns = [row_of[item] for item in value]
                for index, name in enumerate(names):
                    record[name] = [column[index] for column in columns]
            else:
                record.update(zip(names, row_of[value]))
        return answers


INVALID_ROW = INVALID_STATS.output_values()
