"""The job claim and run of service/hunting_jobs.py over an in-memory KV store whose inserts are serialised
(a taken ``_key`` is refused) and whose reads may lag; a fake query and limiter."""

import logging
import threading

from defender_ipstats.core.model import FOUND, SOURCE_HUNTING, IpStats
from defender_ipstats.core.outcomes import HuntingFailure, QuotaExceeded
from defender_ipstats.service import hunting_jobs as hj


class Store:
    def __init__(self, lagging=False):
        self.docs, self.lagging, self.lock = {}, lagging, threading.Lock()

    def insert(self, document):
        with self.lock:
            if document["_key"] in self.docs:
                return False
            self.docs[document["_key"]] = dict(document)
            return True

    def get(self, key):
        return None if self.lagging else self.docs.get(key)

    def update(self, key, document):
        self.docs[key] = dict(document)


class Limiter:
    def __init__(self):
        self.paused, self.completions = [], 0

    def try_acquire(self):
        return 0.0

    def completed(self):
        self.completions += 1

    def pause_for(self, seconds):
        self.paused.append(seconds)


class Cache:
    def __init__(self):
        self.written = []

    def put_many(self, results):
        self.written.extend(results)


def found(ips):
    return {ip: IpStats(ip=ip, status=FOUND, prevalence=1, source=SOURCE_HUNTING) for ip in ips}


def test_the_job_id_is_the_batch_whatever_its_order():
    assert hj.job_id("a", 720, "hunting", ["1.1.1.1", "2.2.2.2"]) == hj.job_id("a", 720, "hunting",
                                                                                 ["2.2.2.2", "1.1.1.1"])
    assert hj.job_id("a", 720, "hunting", ["1.1.1.1"]) != hj.job_id("a", 24, "hunting", ["1.1.1.1"])


def test_only_the_insert_that_gets_the_key_runs_even_when_reads_lag():
    store = Store(lagging=True)  # nobody sees the others' runs: only the inserts decide
    outcomes = [hj.claim(store, "j", {}, lambda: True, clock=lambda: 100.0).outcome for _ in range(5)]
    assert outcomes == ["run"] + ["running"] * 4


def test_a_run_whose_lease_ran_out_is_taken_over_by_the_next_generation():
    store = Store()
    assert hj.claim(store, "j", {}, lambda: True, clock=lambda: 100.0).key == "j.1"
    assert hj.claim(store, "j", {}, lambda: True, clock=lambda: 100.0 + hj.LEASE_SECONDS - 1).outcome == "running"
    taken = hj.claim(store, "j", {}, lambda: True, clock=lambda: 100.0 + hj.LEASE_SECONDS + 1)
    assert (taken.outcome, taken.key) == ("run", "j.2")


def test_no_budget_claims_nothing():
    store = Store()
    assert hj.claim(store, "j", {}, lambda: False, clock=lambda: 1.0).outcome == "busy" and store.docs == {}


def run_job(answers, batch):
    store, limiter, cache = Store(), Limiter(), Cache()
    asked = []

    def query(part):
        asked.append(list(part))
        return answers.pop(0)(part)

    hj.claim(store, "j", {}, lambda: True)
    hj.JobRun(store, "j.1", {}, query, batch, cache, limiter, logging.getLogger("t"), heartbeat=60).run()
    return store.docs["j.1"], asked, limiter, cache


def test_a_batch_that_timed_out_is_split_in_two_and_each_half_tried_once():
    timeout = HuntingFailure("hunting query rejected (400): Query exceeded the timeout period.")
    doc, asked, limiter, cache = run_job([lambda p: timeout, found, found], ["a", "b", "c", "d"])
    assert asked == [["a", "b", "c", "d"], ["a", "b"], ["c", "d"]]
    assert doc["state"] == "finished" and sorted(s.ip for s in cache.written) == ["a", "b", "c", "d"]
    assert limiter.completions == 3


def test_a_half_that_times_out_again_fails_without_another_split():
    timeout = HuntingFailure("hunting query timed out after 190 s")
    doc, asked, _, cache = run_job([lambda p: timeout, lambda p: timeout], ["a", "b"])
    assert asked == [["a", "b"], ["a"]] and doc["state"] == "failed" and cache.written == []


def test_a_quota_answer_pauses_the_shared_budget_for_its_retry_after_else_a_whole_cpu_cycle():
    doc, _, limiter, _ = run_job([lambda p: QuotaExceeded(429, 7.0, "q")], ["a"])
    assert limiter.paused == [7.0] and doc["state"] == "released" and doc["quota"] == 1
    _, _, limiter, _ = run_job([lambda p: QuotaExceeded(400, None, "q")], ["a"])
    assert limiter.paused == [900.0]
