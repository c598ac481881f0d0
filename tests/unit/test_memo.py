"""One search's memory of its answers (search.memo): a later chunk never asks again, within a bound."""

import gc
import json
import tracemalloc

from defender_ipstats.core.lookup import ChunkEnricher
from defender_ipstats.core.model import ERROR, FOUND, NOT_SEEN, SOURCE_API, IpStats, pending, rate_limited
from defender_ipstats.search.memo import MAX_ANSWERS, SearchMemo


class CountingResolve:
    """The search's resolve behind the memo: answers every IP, and remembers what it was asked."""

    def __init__(self, answer=None):
        self.calls = []
        self.answer = answer or (lambda ip: IpStats(ip=ip, status=FOUND, prevalence=3, source=SOURCE_API,
                                                     first_seen="2026-10-30T22:24:16Z",
                                                     last_seen="2026-11-25T21:04:14Z", fetched_at=1.0))

    def __call__(self, ips):
        self.calls.append(list(ips))
        return {ip: self.answer(ip) for ip in ips}

    @property
    def asked(self):
        return [ip for call in self.calls for ip in call]


def test_a_later_chunk_never_asks_again_for_an_ip_the_search_has():
    resolve = CountingResolve()
    memo = SearchMemo(resolve)
    first = memo.resolve(["1.1.1.1", "2.2.2.2"])
    second = memo.resolve(["2.2.2.2", "3.3.3.3", "1.1.1.1"])
    assert resolve.calls == [["1.1.1.1", "2.2.2.2"], ["3.3.3.3"]]
    assert set(second) == {"1.1.1.1", "2.2.2.2", "3.3.3.3"}
    assert second["1.1.1.1"] is first["1.1.1.1"]  # the same answer, source and all, in every chunk
    assert memo.reused == 2
    assert memo.resolve(["3.3.3.3", "1.1.1.1"]).keys() == {"3.3.3.3", "1.1.1.1"}
    assert len(resolve.calls) == 2  # a chunk of known IPs makes no request at all


def test_chunks_through_the_enricher_cost_one_lookup_per_ip():
    resolve = CountingResolve()
    enricher = ChunkEnricher("src", "defender_", SearchMemo(resolve).resolve)
    ips = ["10.0.0.%d" % i for i in range(110)]
    for chunk in (ips[:50], ips[30:80] + ips[:10], ips[60:], ips):
        records = [{"src": ip} for ip in chunk]
        enricher.enrich(records)
        assert [r["defender_ip"] for r in records] == chunk
        assert {r["defender_status"] for r in records} == {FOUND}
    assert sorted(resolve.asked) == sorted(ips)


def test_rate_limited_and_pending_are_asked_again_errors_are_not():
    def answer(ip):
        if ip == "1.1.1.1":
            return rate_limited(ip, "API budget used up; it returns in about 30 s")
        if ip == "2.2.2.2":
            return pending(ip)
        if ip == "3.3.3.3":
            return IpStats(ip=ip, status=ERROR, source=SOURCE_API, error="Defender API error 500")
        return IpStats(ip=ip, status=NOT_SEEN, prevalence=0, source=SOURCE_API, fetched_at=1.0)

    resolve = CountingResolve(answer)
    memo = SearchMemo(resolve)
    ips = ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"]
    memo.resolve(ips)
    again = memo.resolve(ips)
    assert resolve.calls == [ips, ["1.1.1.1", "2.2.2.2"]]  # budget may have returned: asked again
    assert again["3.3.3.3"].status == ERROR and again["4.4.4.4"].status == NOT_SEEN


def test_the_memory_keeps_the_most_recently_seen_answers_within_its_bound():
    resolve = CountingResolve()
    memo = SearchMemo(resolve, max_answers=3)
    memo.resolve(["1.1.1.1", "2.2.2.2", "3.3.3.3"])
    memo.resolve(["1.1.1.1"])  # seen again: now the most recent
    memo.resolve(["4.4.4.4", "5.5.5.5"])  # two more than the bound: the two least recently seen go
    assert len(memo) == 3 and memo.forgotten == 2
    memo.resolve(["1.1.1.1", "4.4.4.4", "5.5.5.5"])
    assert len(resolve.calls) == 2  # all three still known
    memo.resolve(["2.2.2.2"])  # forgotten: resolved again (from the KV store cache in cache=use)
    assert resolve.calls[-1] == ["2.2.2.2"] and len(memo) == 3


def test_a_search_of_many_distinct_ips_keeps_its_memory_flat():
    """The default bound, in answers and in bytes: three times MAX_ANSWERS distinct IPs, each answer
    decoded from JSON as the service's are, take no more memory than MAX_ANSWERS do, and that stays
    under the 40 MB the module says."""
    template = ('{"ip": "%s", "status": "found", "prevalence": 35233, "first_seen": "2026-10-30T22:24:16.1234567Z",'
                ' "last_seen": "2026-11-25T21:04:14.1234567Z", "source": "api", "error": "", "basis": "ipstats",'
                ' "fetched_at": 1764201600.25}')

    def answer(ip):
        item = json.loads(template % ip)
        return IpStats(ip=item["ip"], status=item["status"], prevalence=item["prevalence"],
                       first_seen=item["first_seen"], last_seen=item["last_seen"], source=item["source"],
                       error=item["error"], fetched_at=item["fetched_at"], basis=item["basis"])

    resolve = CountingResolve(answer)
    memo = SearchMemo(resolve)
    chunk = 5000

    def feed(first):
        for start in range(first, first + MAX_ANSWERS, chunk):
            memo.resolve(["2001:db8:%x:%x::%x" % (i // 65536, i % 65536, i * 7919 % 65536)
                          for i in range(start, start + chunk)])
            resolve.calls.clear()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        used = [feed(round * MAX_ANSWERS) for round in range(3)]
    finally:
        tracemalloc.stop()
    assert len(memo) == MAX_ANSWERS and memo.forgotten == 2 * MAX_ANSWERS
    assert used[0] < 40_000_000, used
    assert max(used) < used[0] * 1.3, used  # flat (an unbounded memory would be 2 and 3 times as big)
