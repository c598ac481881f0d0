"""KVStoreCache over real HTTP against the splunkd stand-in's KV store."""

import time

import pytest

from defender_ipstats.core.model import (
    BASIS_HUNTING,
    BASIS_IPSTATS,
    ERROR,
    FOUND,
    NOT_SEEN,
    SOURCE_API,
    SOURCE_HUNTING,
    IpStats,
)
from defender_ipstats.splunk import rest as splunkd_rest
from defender_ipstats.splunk.kvcache import BATCH_SAVE, KVStoreCache, cache_key
from standins import dataset


@pytest.fixture
def service(splunkd):
    return splunkd_rest.connect(splunkd.base_url, splunkd.new_session_key("admin"))


def stats(ip, status=FOUND, fetched_at=None):
    return IpStats(ip=ip, status=status, prevalence=5 if status == FOUND else 0,
                   first_seen="2026-11-01T00:00:00.1234567Z" if status == FOUND else None,
                   last_seen="2026-11-02T00:00:00Z" if status == FOUND else None,
                   source=SOURCE_API, fetched_at=fetched_at or time.time())


def test_round_trip_and_keys(splunkd, service):
    cache = KVStoreCache(service, "default", 720, ttl=3600, not_seen_ttl=60)
    ips = dataset.ips(3, seed=30) + ["2001:db8::1"]
    cache.put_many([stats(ip) for ip in ips[:3]] + [stats(ips[3], NOT_SEEN)])
    docs = {doc["_key"]: doc for doc in splunkd.kv_documents("defenderipstats_cache")}
    assert set(docs) == {cache_key("default", 720, "ipstats", ip) for ip in ips}
    doc = docs[cache_key("default", 720, "ipstats", ips[0])]
    assert {k: doc[k] for k in ("ip", "account", "lookback_hours", "status", "source")} == {
        "ip": ips[0], "account": "default", "lookback_hours": 720, "status": "found", "source": "api"}
    got = cache.get_many(ips + ["10.9.9.9"])
    assert set(got) == set(ips)
    assert got[ips[0]].first_seen == "2026-11-01T00:00:00.1234567Z" and got[ips[0]].source == "cache"
    assert got[ips[3]].status == NOT_SEEN and got[ips[3]].first_seen is None


def test_other_account_or_lookback_is_another_entry(service):
    KVStoreCache(service, "default", 720, 3600, 60).put_many([stats("10.0.0.1")])
    assert KVStoreCache(service, "other", 720, 3600, 60).get_many(["10.0.0.1"]) == {}
    assert KVStoreCache(service, "default", 24, 3600, 60).get_many(["10.0.0.1"]) == {}


def test_freshness_is_checked_on_read(service):
    cache = KVStoreCache(service, "default", 720, ttl=100, not_seen_ttl=10)
    now = time.time()
    cache.put_many([stats("10.0.0.1", fetched_at=now - 50), stats("10.0.0.2", fetched_at=now - 150),
                    stats("10.0.0.3", NOT_SEEN, fetched_at=now - 5), stats("10.0.0.4", NOT_SEEN, fetched_at=now - 20)])
    assert sorted(cache.get_many(["10.0.0.%d" % i for i in range(1, 5)])) == ["10.0.0.1", "10.0.0.3"]
    assert cache.stale == 2


def test_max_age_caps_every_answer_s_freshness(service):
    """cache=refresh's reader: an answer older than max_age is not fresh, whatever its TTL; within both
    it is (max_age caps the TTL, never stretches it)."""
    now = time.time()
    KVStoreCache(service, "default", 720, 3600, 60).put_many([
        stats("10.0.1.1", fetched_at=now - 30), stats("10.0.1.2", fetched_at=now - 400),
        stats("10.0.1.3", NOT_SEEN, fetched_at=now - 30), stats("10.0.1.4", NOT_SEEN, fetched_at=now - 100)])
    ips = ["10.0.1.%d" % i for i in range(1, 5)]
    assert sorted(KVStoreCache(service, "default", 720, 3600, 60).get_many(ips)) == ["10.0.1.1", "10.0.1.2",
                                                                                   "10.0.1.3"]
    refresh = KVStoreCache(service, "default", 720, 3600, 60, max_age=300)
    assert sorted(refresh.get_many(ips)) == ["10.0.1.1", "10.0.1.3"]
    assert KVStoreCache(service, "default", 720, 3600, 60, max_age=0).get_many(ips) == {}


def test_errors_are_never_written(splunkd, service):
    cache = KVStoreCache(service, "default", 720, 3600, 60)
    cache.put_many([IpStats(ip="10.0.0.1", status=ERROR, error="x"), stats("10.0.0.2")])
    assert [d["ip"] for d in splunkd.kv_documents("defenderipstats_cache")] == ["10.0.0.2"]


def test_requests_per_chunk_are_bounded(splunkd, service):
    cache = KVStoreCache(service, "default", 720, 3600, 60)
    ips = dataset.ips(2500, seed=31)
    splunkd.reset_requests()
    cache.put_many([stats(ip) for ip in ips])  # over the 1000-document batch_save cap
    assert splunkd.count(path_contains="batch_save") == -(-len(ips) // BATCH_SAVE)
    splunkd.reset_requests()
    found = cache.get_many(ips)
    assert len(found) == 2500
    assert splunkd.count(path_contains="storage/collections/data") == 1  # one batch_find, paged inside


def test_kv_store_errors_surface_to_the_caller(splunkd, service):
    from splunklib.binding import HTTPError

    splunkd.inject_fault("batch_find", status=503)
    with pytest.raises(HTTPError):
        KVStoreCache(service, "default", 720, 3600, 60).get_many(["10.0.0.1"])


def hunting_stats(ip, prevalence=1, fetched_at=None):
    return IpStats(ip=ip, status=FOUND, prevalence=prevalence, source=SOURCE_HUNTING,
                   fetched_at=fetched_at or time.time())


def test_each_backend_reads_and_writes_only_its_own_basis(splunkd, service):
    ipstats = KVStoreCache(service, "default", 720, 3600, 60, backend="ipstats")
    hunting = KVStoreCache(service, "default", 720, 3600, 60, backend="hunting")
    ipstats.put_many([stats("10.0.0.1")])  # prevalence 5, Defender's figure
    hunting.put_many([hunting_stats("10.0.0.1"), hunting_stats("10.0.0.2")])
    docs = {doc["_key"]: doc for doc in splunkd.kv_documents("defenderipstats_cache")}
    assert set(docs) == {cache_key("default", 720, "ipstats", "10.0.0.1"),
                         cache_key("default", 720, "hunting", "10.0.0.1"),
                         cache_key("default", 720, "hunting", "10.0.0.2")}
    assert docs[cache_key("default", 720, "ipstats", "10.0.0.1")]["prevalence"] == 5  # not replaced
    got = ipstats.get_many(["10.0.0.1", "10.0.0.2"])
    assert set(got) == {"10.0.0.1"} and got["10.0.0.1"].prevalence == 5 and got["10.0.0.1"].basis == BASIS_IPSTATS
    got = hunting.get_many(["10.0.0.1", "10.0.0.2"])
    assert {ip: s.prevalence for ip, s in got.items()} == {"10.0.0.1": 1, "10.0.0.2": 1}
    assert {s.basis for s in got.values()} == {BASIS_HUNTING}
    # A backend never writes the other's figures, even when handed them.
    ipstats.put_many([hunting_stats("10.0.0.3")])
    assert cache_key("default", 720, "hunting", "10.0.0.3") not in {
        doc["_key"] for doc in splunkd.kv_documents("defenderipstats_cache")}


def test_auto_prefers_a_fresh_ipstats_answer_in_one_request(splunkd, service):
    now = time.time()
    KVStoreCache(service, "default", 720, 100, 60, backend="ipstats").put_many(
        [stats("10.0.0.1", fetched_at=now - 10), stats("10.0.0.2", fetched_at=now - 500)])  # .2: stale
    KVStoreCache(service, "default", 720, 100, 60, backend="hunting").put_many(
        [hunting_stats(ip, fetched_at=now - 10) for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3")])
    auto = KVStoreCache(service, "default", 720, 100, 60, backend="auto")
    splunkd.reset_requests()
    got = auto.get_many(["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"])
    assert splunkd.count(path_contains="storage/collections/data") == 1
    assert {ip: (s.basis, s.prevalence) for ip, s in got.items()} == {
        "10.0.0.1": ("ipstats", 5), "10.0.0.2": ("hunting", 1), "10.0.0.3": ("hunting", 1)}


def test_documents_of_the_layout_without_basis_are_never_read(splunkd, service):
    splunkd.kv_insert("defenderipstats_cache", [
        {"_key": "default|720|10.0.0.1", "ip": "10.0.0.1", "account": "default", "lookback_hours": 720,
         "status": FOUND, "prevalence": 9, "source": "hunting", "fetched_at": time.time()},
        # a document whose basis does not match its key is not trusted either
        {"_key": cache_key("default", 720, "ipstats", "10.0.0.2"), "ip": "10.0.0.2", "account": "default",
         "lookback_hours": 720, "status": FOUND, "prevalence": 9, "basis": "hunting", "fetched_at": time.time()}],
        app="TA-defender-ipstats")
    for backend in ("ipstats", "hunting", "auto"):
        assert KVStoreCache(service, "default", 720, 3600, 60, backend=backend).get_many(
            ["10.0.0.1", "10.0.0.2"]) == {}
