"""The pure lookup core: normalise, dedupe, split cached/missing, fetch, merge."""

import pytest

from defender_ipstats.core.lookup import ChunkEnricher, Normaliser, Resolver, distinct_ips, normalise_ip
from defender_ipstats.core.model import ERROR, FOUND, INVALID, NOT_SEEN, SOURCE_API, SOURCE_CACHE, IpStats

NAMES = ["defender_" + s for s in ("ip", "prevalence", "first_seen", "last_seen", "status", "source", "error")]


@pytest.mark.parametrize("value, expected", [
    ("10.0.0.1", "10.0.0.1"),
    (" 10.0.0.1 ", "10.0.0.1"),
    ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
    ("2001:DB8::1", "2001:db8::1"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("fe80::1%eth0", "fe80::1"),
    ("fe80::1%25", "fe80::1"),
    ("::", "::"),
    ("0.0.0.0", "0.0.0.0"),
    ("192.168.1.1", "192.168.1.1"),  # private IPs are looked up like any other
])
def test_normalise_valid(value, expected):
    assert normalise_ip(value) == expected


@pytest.mark.parametrize("value", [
    "", " ", "abc", "1.2.3", "1.2.3.4.5", "256.1.1.1", "010.1.1.1", "1.2.3.4/24", "../1.2.3.4",
    "1.2.3.4?x=1", "1.2.3.4#", "%2e%2e", "1.2.3.4\r\nHost: x", "１.２.３.４", "x" * 5000, "[::1]", None, 16909060,
    "1.2.3.4 5.6.7.8", "10.0.0.1%2e", "10.0.0.1%eth0", "10.0.0.1%2f..%2f",  # IPv4 has no zone id
    "fe80::1%", " fe80::1% ", "::ffff:192.0.2.7%",  # an empty zone id is no zone id
])
def test_normalise_invalid(value):
    assert normalise_ip(value) is None


def test_normalise_gives_only_canonical_ips_for_any_text():
    """In-process property (shrinks on failure): whatever the text, the result is None or an IP in
    its one canonical spelling, which is all that may reach a URL."""
    import ipaddress

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from defender_ipstats.core.lookup import is_canonical_ip

    pieces = st.sampled_from(["../", "%2e", "%", "?", "#", " ", "\r\n", "/", ":", "::", ".", "%eth0", "\u00a0"])
    ip = st.ip_addresses().map(str)
    text = st.one_of(st.text(), ip, st.tuples(pieces, ip, pieces).map("".join),
                     st.tuples(ip, pieces, st.integers(0, 40)).map(lambda t: t[0][:t[2]] + t[1] + t[0][t[2]:]))

    @settings(max_examples=500, derandomize=True, database=None, deadline=None)
    @given(text)
    def check(value):
        canonical = normalise_ip(value)
        if canonical is not None:
            assert is_canonical_ip(canonical)
            assert str(ipaddress.ip_address(canonical)) == canonical
            assert not set(canonical) - set("0123456789abcdef.:")

    check()


def test_an_empty_zone_id_is_invalid_and_a_zone_id_is_dropped_for_any_ipv6():
    """In-process property: any IPv6 with a non-empty zone id is looked up as the IPv6 alone; with a
    bare "%" (the zone id empty, spaces around or not) it is no IP at all."""
    import ipaddress

    from hypothesis import given, settings
    from hypothesis import strategies as st

    zone = st.text(st.characters(blacklist_characters="%", blacklist_categories=("Cs",)), min_size=1, max_size=20)
    zone = zone.filter(lambda text: text.strip() == text)
    spaces = st.sampled_from(["", " ", "\t"])

    @settings(max_examples=300, derandomize=True, database=None, deadline=None)
    @given(st.ip_addresses(v=6), zone, spaces)
    def check(address, zone_id, space):
        bare = normalise_ip(str(address))
        assert bare is not None and ipaddress.ip_address(bare) is not None
        assert normalise_ip(space + str(address) + "%" + space) is None
        assert normalise_ip(space + str(address) + "%" + zone_id + space) == bare

    check()


def test_normaliser_memo_is_bounded_and_consistent():
    normalise = Normaliser(max_entries=3)
    values = ["1.1.1.1", "2.2.2.2", "bad", "::ffff:1.1.1.1", "1.1.1.1"]
    assert [normalise(v) for v in values] == ["1.1.1.1", "2.2.2.2", None, "1.1.1.1", "1.1.1.1"]
    assert len(normalise._memo) <= 3


def test_distinct_keeps_first_seen_order_and_dedupes_across_forms():
    values = ["10.0.0.2", ["10.0.0.1", "::ffff:10.0.0.2"], "", None, "junk", "10.0.0.1", ["2001:db8::1"]]
    assert distinct_ips(values, normalise_ip) == ["10.0.0.2", "10.0.0.1", "2001:db8::1"]


class FakeCache:
    def __init__(self, entries=None, fail=False):
        self.entries = dict(entries or {})
        self.gets, self.puts = [], []
        self.fail = fail

    def get_many(self, ips):
        self.gets.append(list(ips))
        if self.fail:
            raise RuntimeError("kv down")
        return {ip: self.entries[ip] for ip in ips if ip in self.entries}

    def put_many(self, results):
        self.puts.append(list(results))


class FakeFetcher:
    def __init__(self, answer=None):
        self.calls = []
        self.answer = answer or (lambda ip: IpStats(ip=ip, status=FOUND, prevalence=len(ip), source=SOURCE_API))

    def fetch_many(self, ips):
        self.calls.append(list(ips))
        return {ip: self.answer(ip) for ip in ips}


def found(ip, n=5):
    return IpStats(ip=ip, status=FOUND, prevalence=n, first_seen="2026-01-01T00:00:00Z",
                   last_seen="2026-02-01T00:00:00Z", source=SOURCE_API, fetched_at=1.0)


def test_resolver_splits_cached_and_missing_and_caches_only_good_answers():
    cache = FakeCache({"1.1.1.1": found("1.1.1.1")})

    def answer(ip):
        if ip == "3.3.3.3":
            return IpStats(ip=ip, status=ERROR, source=SOURCE_API, error="Defender API error 500")
        return IpStats(ip=ip, status=NOT_SEEN, prevalence=0, source=SOURCE_API, fetched_at=2.0)

    fetcher = FakeFetcher(answer)
    answers = Resolver(cache, fetcher, "use").resolve(["1.1.1.1", "2.2.2.2", "3.3.3.3"])
    assert fetcher.calls == [["2.2.2.2", "3.3.3.3"]]
    assert answers["1.1.1.1"].source == SOURCE_CACHE
    assert answers["2.2.2.2"].status == NOT_SEEN
    assert [s.ip for s in cache.puts[0]] == ["2.2.2.2"]  # the error is never cached


@pytest.mark.parametrize("mode, reads, writes", [("use", 1, 0), ("refresh", 0, 1), ("off", 0, 0)])
def test_resolver_cache_modes(mode, reads, writes):
    cache = FakeCache({"1.1.1.1": found("1.1.1.1")})
    fetcher = FakeFetcher()
    Resolver(cache, fetcher, mode).resolve(["1.1.1.1"])
    assert len(cache.gets) == reads
    assert len(cache.puts) == writes
    assert fetcher.calls == ([] if mode == "use" else [["1.1.1.1"]])


def test_enricher_keeps_every_event_in_order_and_adds_every_field():
    fetcher = FakeFetcher()
    enricher = ChunkEnricher("src", "defender_", Resolver(None, fetcher, "off").resolve)
    records = [
        {"_raw": "a", "src": "10.0.0.1"},
        {"_raw": "b", "src": ""},
        {"_raw": "c"},
        {"_raw": "d", "src": "not an ip"},
        {"_raw": "e", "src": "::ffff:10.0.0.1"},
    ]
    originals = [dict(r) for r in records]
    answers = enricher.enrich(records)
    out = records
    assert len(out) == 5 and set(answers) == {"10.0.0.1"}
    for before, after in zip(originals, out):
        assert {k: after[k] for k in before} == before  # own fields untouched
        assert all(name in after for name in NAMES)
    assert fetcher.calls == [["10.0.0.1"]]  # deduplicated across forms
    assert out[0]["defender_status"] == FOUND and out[0]["defender_ip"] == "10.0.0.1"
    assert out[4]["defender_ip"] == "10.0.0.1" and out[4]["defender_prevalence"] == str(len("10.0.0.1"))
    assert all(out[i][n] == "" for i in (1, 2) for n in NAMES)
    assert out[3]["defender_status"] == INVALID and out[3]["defender_ip"] == ""


def test_enricher_aligns_multivalue_outputs():
    enricher = ChunkEnricher("dest", "x_", Resolver(None, FakeFetcher(), "off").resolve)
    record = {"dest": ["10.0.0.1", "bogus", "", "10.0.0.2"]}
    enricher.enrich([record])
    assert record["x_ip"] == ["10.0.0.1", "", "", "10.0.0.2"]
    assert record["x_status"] == [FOUND, INVALID, "", FOUND]
    assert len(record["x_error"]) == 4


def test_enricher_never_loses_a_chunk_when_resolution_fails():
    seen = []

    def broken(ips):
        raise RuntimeError("boom")

    enricher = ChunkEnricher("src", "defender_", broken, on_error=seen.append)
    records = [{"src": "10.0.0.%d" % i} for i in range(5)] + [{"src": "junk"}]
    enricher.enrich(records)
    assert len(seen) == 1
    assert [r["defender_status"] for r in records] == [ERROR] * 5 + [INVALID]
    assert records[0]["defender_error"] == "internal error: RuntimeError"


def test_invalid_values_never_reach_the_fetcher():
    fetcher = FakeFetcher()
    enricher = ChunkEnricher("src", "defender_", Resolver(None, fetcher, "off").resolve)
    enricher.enrich([{"src": v} for v in ("../etc", "1.2.3.4/32", "%2e", "a b")])
    assert fetcher.calls == []
