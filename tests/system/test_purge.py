"""The scheduled purge of the KV store cache (savedsearches.conf), run without a Splunk.

The purge is plain SPL (inputlookup | eval | where | outputlookup, with the TTLs read through
| rest). tests/support/spl.py runs exactly that text: every command and eval function it uses is
implemented there with Splunk's semantics (null propagates; where keeps rows that are true;
outputlookup without append replaces the collection and keeps _key), against the splunkd
stand-in's REST API and KV store. What it cannot show: that Splunk's own parser accepts the
text, and Splunk's scheduler; those need a Splunk (see docs/package.md, "What is tested without Splunk").
"""

import io
import json
import os
import time

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from spl import app_pipeline, commands, expand_macros, pipeline

from defender_ipstats.splunk.kvcache import KVStoreCache, cache_key
from harness import APP, APP_ROOT, events
from standins import dataset
from standins.splunkd import parse_conf_file

PURGE = "Defender IP stats - Purge expired cache entries"
PURGE_RESTRICTED = "Defender IP stats - Purge expired restricted cache entries"
COLLECTION = "defenderipstats_cache"
RESTRICTED = "defenderipstats_cache_restricted"


def conf(name):
    return parse_conf_file(os.path.join(APP_ROOT, "default", name + ".conf"))


def purge_search(name: str = PURGE) -> str:
    """The saved search's SPL with its macros expanded, as splunkd runs it."""
    return expand_macros(conf("savedsearches")[name]["search"], conf("macros"))


def make_pipeline(service, clock):
    return app_pipeline(service, APP, conf("transforms"), conf("collections"), clock=clock)


def reader(cache_ttl, not_seen_ttl):
    return KVStoreCache(None, "default", 720, cache_ttl, not_seen_ttl)


def command_would_use(document, now, cache_ttl, not_seen_ttl) -> bool:
    return reader(cache_ttl, not_seen_ttl)._from_document(document, now) is not None


# -- the saved search itself -------------------------------------------------------------
@pytest.mark.parametrize("name, collection", [(PURGE, COLLECTION), (PURGE_RESTRICTED, RESTRICTED)])
def test_purge_is_an_enabled_scheduled_search_over_the_cache(name, collection):
    stanza = conf("savedsearches")[name]
    assert stanza.get("disabled", "0") in ("0", "false")
    assert stanza["enableSched"] in ("1", "true")
    minute, hour, *rest = stanza["cron_schedule"].split()
    assert len(rest) == 3 and minute.isdigit()  # not every minute: a fixed minute of some hours
    names = [name for name, _ in commands(purge_search(name))]
    top = pipeline(purge_search(name))
    assert top[0].split() == ["inputlookup", collection]
    assert top[-1].split()[0] == "outputlookup" and top[-1].split()[-1] == collection
    assert "defenderipstats" not in names  # maintenance only: no API call


def test_the_lookup_shows_every_field_the_command_writes():
    """inputlookup returns only transforms.conf's fields_list: a field missing there would be lost
    by every purge (outputlookup rewrites the documents from what inputlookup returned)."""
    from defender_ipstats.core.model import FOUND, SOURCE_API, IpStats

    document = reader(60, 60)._to_document(IpStats(ip="192.0.2.1", status=FOUND, prevalence=1,
                                                    first_seen="x", last_seen="y", source=SOURCE_API,
                                                    fetched_at=1.0))
    fields = [f.strip() for f in conf("transforms")[COLLECTION]["fields_list"].split(",")]
    assert set(document) <= set(fields)


# -- against the stand-in, with documents the real command wrote -----------------------------
def test_purge_removes_expired_entries_and_the_command_still_uses_the_rest(app):
    app.settings(cache_ttl="7200", not_seen_ttl="600")
    found = dataset.ips(3, status="found", seed=71)
    unseen = dataset.ips(2, status="not_seen", seed=71)
    first = app.search(["field=src_ip"], [events(found + unseen)])
    assert first.returncode == 0, first.stderr
    assert app.defender.api_calls() == 5

    now = time.time()
    written = {doc["ip"]: doc for doc in app.cache_documents()}
    assert set(written) == set(found + unseen)
    aged = {found[0]: now - 7300, unseen[0]: now - 700,   # expired under the settings' TTLs
            found[1]: now - 7000, unseen[1]: now - 500}    # old, but still fresh
    junk = [
        {"_key": cache_key("default", 720, "ipstats", "10.0.0.1"), "ip": "10.0.0.1", "account": "default",
         "lookback_hours": 720, "status": "error", "fetched_at": now},            # never cached
        {"_key": cache_key("default", 720, "ipstats", "10.0.0.2"), "ip": "10.0.0.2", "account": "default",
         "lookback_hours": 720, "status": "found", "prevalence": 1},               # no fetched_at
        {"_key": cache_key("default", 720, "ipstats", "10.0.0.3"), "ip": "10.0.0.3", "account": "default",
         "lookback_hours": 720, "status": "found", "prevalence": 1, "fetched_at": now + 3600},  # future
        {"_key": cache_key("other", 24, "ipstats", "10.0.0.4"), "ip": "10.0.0.4", "account": "other",
         "lookback_hours": 24, "status": "not_seen", "prevalence": 0, "fetched_at": now - 60},  # fresh
    ]
    seeded = []
    for ip, doc in written.items():
        doc = {k: v for k, v in doc.items() if k != "_user"}
        if ip in aged:
            doc["fetched_at"] = aged[ip]
        seeded.append(doc)
    app.splunkd.kv_clear(COLLECTION, app=APP)
    app.splunkd.kv_insert(COLLECTION, seeded + junk, app=APP)
    before = {doc["_key"]: doc for doc in app.cache_documents()}

    purge = make_pipeline(app.admin, clock=lambda: now)
    purge.run(purge_search())
    assert purge.trace.count("rest") == 2  # both TTLs read from defenderipstats.conf through REST

    after = {doc["_key"]: doc for doc in app.cache_documents()}
    expected = {key for key, doc in before.items() if command_would_use(doc, now, 7200, 600)}
    assert set(after) == expected
    assert {after[k]["ip"] for k in after} == {found[1], found[2], unseen[1], "10.0.0.4"}
    for key, doc in after.items():  # the survivors come back as they were, with their types
        for field in ("ip", "account", "lookback_hours", "prevalence", "first_seen", "last_seen", "status",
                      "source"):
            assert doc.get(field) == before[key].get(field) or (doc.get(field) in (None, "") and
                                                                before[key].get(field) in (None, "")), field
        assert float(doc["fetched_at"]) == pytest.approx(float(before[key]["fetched_at"]))

    # The command reads the rewritten documents: the fresh ones from the cache, the purged ones again.
    app.defender.reset_counters()
    again = app.search(["field=src_ip"], [events(found + unseen)])
    assert again.returncode == 0, again.stderr
    sources = {r["src_ip"]: r["defender_source"] for r in again.records}
    assert sources == {found[0]: "api", unseen[0]: "api", found[1]: "cache", found[2]: "cache",
                       unseen[1]: "cache"}
    assert app.defender.api_calls() == 2


@pytest.mark.parametrize("name, collection", [(PURGE, COLLECTION), (PURGE_RESTRICTED, RESTRICTED)])
def test_purge_of_only_expired_entries_empties_the_collection(app, name, collection):
    now = time.time()
    fresh = {"_key": "fresh", "ip": "10.0.0.9", "account": "default", "lookback_hours": 720, "status": "found",
             "prevalence": 2, "fetched_at": now}
    other = RESTRICTED if collection == COLLECTION else COLLECTION
    app.splunkd.kv_insert(other, [dict(fresh, fetched_at=now - 90000)], app=APP)
    app.splunkd.kv_insert(collection, [
        {"_key": cache_key("default", 720, "ipstats", "10.0.0.%d" % i), "ip": "10.0.0.%d" % i, "account": "default",
         "lookback_hours": 720, "status": "found", "prevalence": 2, "fetched_at": now - 90000}
        for i in range(1, 4)] + [fresh], app=APP)
    make_pipeline(app.admin, clock=lambda: now).run(purge_search(name))
    assert [d["_key"] for d in app.splunkd.kv_documents(collection, app=APP)] == ["fresh"]
    assert len(app.splunkd.kv_documents(other, app=APP)) == 1  # each search purges its own collection


def test_purge_removes_nothing_when_the_settings_cannot_be_read(app):
    """A failing | rest leaves 'eval found_ttl=,' behind: the search fails before outputlookup."""
    now = time.time()
    app.splunkd.kv_insert(COLLECTION, [
        {"_key": "k1", "ip": "10.0.0.1", "account": "default", "lookback_hours": 720, "status": "found",
         "prevalence": 2, "fetched_at": now - 90000}], app=APP)
    app.splunkd.inject_fault("conf-defenderipstats/settings", status=403)
    with pytest.raises(SyntaxError):  # Splunk: "Error in 'eval' command"
        make_pipeline(app.admin, clock=lambda: now).run(purge_search())
    assert [d["_key"] for d in app.cache_documents()] == ["k1"]


# -- the filter, for any document: same verdict as the command's reader ---------------------------
class _Body:
    def __init__(self, payload):
        self._data = json.dumps(payload).encode("utf-8")

    def read(self):
        return io.BytesIO(self._data).read()


class _Response:
    def __init__(self, payload):
        self.body = _Body(payload)


class MemorySplunkd:
    """Just the two REST resources the purge touches, in memory (for many quick runs)."""

    def __init__(self, settings, documents):
        self.settings = settings
        self.documents = {doc["_key"]: doc for doc in documents}

    def get(self, path, **_):
        if "configs/conf-defenderipstats/settings" in path:
            return _Response({"entry": [{"name": "settings", "content": self.settings}]})
        return _Response(list(self.documents.values()))

    def delete(self, path, **_):
        self.documents = {}

    def post(self, path, body, **_):
        for doc in json.loads(body):
            self.documents[doc["_key"]] = doc


_documents = st.lists(
    st.fixed_dictionaries({
        "status": st.sampled_from(["found", "not_seen", "error", "rate_limited", ""]),
        "fetched_at": st.one_of(
            st.integers(-200000, 2000).map(lambda offset: ("offset", offset)),
            st.floats(-200000, 2000, allow_nan=False).map(lambda offset: ("offset", offset)),
            st.integers(-2, 2).map(lambda delta: ("ttl_edge", delta)),       # just (un)expired
            st.integers(295, 305).map(lambda offset: ("offset", offset)),    # clock-skew limit
            st.sampled_from([("raw", "soon"), ("raw", ""), ("raw", None)])),
        "prevalence": st.integers(0, 70000),
    }),
    max_size=12)


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents=_documents, cache_ttl=st.integers(0, 200000), not_seen_ttl=st.integers(0, 200000))
def test_purge_keeps_exactly_what_the_command_would_still_use(documents, cache_ttl, not_seen_ttl):
    now = 1764201600.0
    docs = []
    for index, spec in enumerate(documents):
        kind, value = spec["fetched_at"]
        ttl = cache_ttl if spec["status"] == "found" else not_seen_ttl
        if kind == "offset":
            fetched_at = now + value
        elif kind == "ttl_edge":
            fetched_at = now - ttl + value
        else:
            fetched_at = value
        doc = {"_key": "k%d" % index, "ip": "10.0.0.%d" % index, "account": "default", "lookback_hours": 720,
               "status": spec["status"], "prevalence": spec["prevalence"]}
        if fetched_at is not None:
            doc["fetched_at"] = fetched_at
        docs.append(doc)
    store = MemorySplunkd({"cache_ttl": str(cache_ttl), "not_seen_ttl": str(not_seen_ttl)}, docs)
    make_pipeline(store, clock=lambda: now).run(purge_search())
    expected = {doc["_key"] for doc in docs if command_would_use(dict(doc), now, cache_ttl, not_seen_ttl)}
    assert set(store.documents) == expected
