"""Hunting queries as jobs (issue 19): queries of a minute and more, a handler process killed mid-job,
two searches sharing one job per batch, Graph's quota pausing every process.

The command runs over protocol v2 against the stand-ins, as in test_hunting.py; the Graph stand-in's
query time grows with the IPs and the look-back (``seconds_per_ip_hour``).
"""

import threading
import time

import pytest
from test_hunting import assert_answers_the_table

from defender_ipstats.microsoft.graph_hunting import batches
from defender_ipstats.service.hunting_jobs import COLLECTION, LEASE_SECONDS
from harness import APP, events
from standins import dataset


@pytest.fixture
def hunting_app(app):
    app.configure_account(graph_url=app.defender.base_url)
    app.settings(rate_per_minute="10000", rate_per_hour="100000")
    app.defender.set_limits(rate_per_minute=10000, rate_per_hour=100000)
    return app


def queries_of(app):
    return [r for r in app.defender.hunting.requests if r.status]


def job_documents(app):
    return app.splunkd.kv_documents(COLLECTION, app=APP)


def test_five_thousand_cold_ips_with_queries_of_a_minute_end_found_each_batch_queried_once(hunting_app):
    app = hunting_app
    ips = dataset.ips(5000, seed=61)
    # the search sends 2,500 IPs a request; the service cuts each request's IPs into its batches
    cut = [batch for start in range(0, len(ips), 2500) for batch in batches(sorted(ips[start:start + 2500]))]
    # about 60 s a query of the largest batch (720 h): 40-120 s each
    app.defender.hunting.seconds_per_ip_hour = 60.0 / (max(len(b) for b in cut) * 720)
    started = time.monotonic()
    run = app.search(["field=src_ip", "backend=hunting", "lookbackhours=720", "maxwait=600"], [events(ips)],
                     timeout=400)
    elapsed = time.monotonic() - started
    assert run.errors == [] and len(run.records) == len(ips)
    for record, ip in zip(run.records, ips):
        assert_answers_the_table(record, ip, 720)
    queried = queries_of(app)
    assert len(queried) == len(cut) and {r.status for r in queried} == {200}  # none abandoned and repeated
    asked = [dataset.canonical(literal) for r in queried for literal in r.ips]
    assert set(asked) == set(ips)
    assert app.defender.hunting.most_running >= 2  # the batches ran side by side
    assert elapsed < 300
    # a job writes its answers, then its end state: the search may be done a moment before the record
    deadline = time.monotonic() + 20
    while {d["state"] for d in job_documents(app)} != {"finished"} and time.monotonic() < deadline:
        time.sleep(0.5)
    assert {d["state"] for d in job_documents(app)} == {"finished"}


def test_a_handler_killed_mid_job_is_taken_over_after_its_lease_and_runs_once_at_a_time(hunting_app):
    app = hunting_app
    ips = dataset.ips(200, seed=62)
    app.defender.hunting.seconds_per_ip_hour = 8.0 / (200 * 24)  # 8 s a query
    result = {}
    search = threading.Thread(target=lambda: result.update(run=app.search(
        ["field=src_ip", "backend=hunting", "lookbackhours=24", "maxwait=300"], [events(ips)], timeout=300)))
    search.start()
    deadline = time.monotonic() + 30
    while app.defender.hunting.running == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert app.defender.hunting.running == 1
    app.splunkd.stop_handlers()  # the process that runs the job dies; the next request starts another
    search.join(300)
    run = result["run"]
    assert run.errors == []
    for record, ip in zip(run.records, ips):
        assert_answers_the_table(record, ip, 24)
    first, second = app.defender.hunting.requests
    assert second.time - first.time >= LEASE_SECONDS - 1  # taken over only once the lease ran out
    assert app.defender.hunting.most_running == 1  # never two runs of the job at once
    states = {int(d["generation"]): d["state"] for d in job_documents(app)}
    assert states == {1: "running", 2: "finished"}  # the dead owner's run, and the one that finished


def test_two_concurrent_searches_for_the_same_ips_share_one_query_per_batch(hunting_app):
    app = hunting_app
    ips = dataset.ips(2400, seed=63)
    cut = batches(ips)
    app.defender.hunting.seconds_per_ip_hour = 6.0 / (max(len(b) for b in cut) * 720)
    runs = []

    def one():
        runs.append(app.search(["field=src_ip", "backend=hunting", "maxwait=120"], [events(ips)], timeout=200))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(200)
    assert len(runs) == 2
    for run in runs:
        assert run.errors == []
        for record, ip in zip(run.records, ips):
            assert record["defender_status"] == dataset.status_of(ip)
    assert len(queries_of(app)) == len(cut)


def test_a_search_whose_maxwait_runs_out_gets_pending_and_the_job_still_caches(hunting_app):
    app = hunting_app
    ips = dataset.ips(50, seed=64)
    app.defender.hunting.seconds_per_ip_hour = 15.0 / (50 * 720)  # 15 s
    run = app.search(["field=src_ip", "backend=hunting", "maxwait=2"], [events(ips)], timeout=60)
    assert len(run.records) == len(ips) and run.errors == []
    assert {r["defender_status"] for r in run.records} == {"pending"}
    assert run.records[0]["defender_error"] == "hunting query still running; its answer will be cached"
    deadline = time.monotonic() + 40
    while len(app.cache_documents()) < len(ips) and time.monotonic() < deadline:
        time.sleep(0.5)
    again = app.search(["field=src_ip", "backend=hunting", "maxwait=0"], [events(ips)])
    assert [r["defender_status"] for r in again.records] == [dataset.status_of(ip) for ip in ips]
    assert {r["defender_source"] for r in again.records} == {"cache"}
    assert len(queries_of(app)) == 1


def test_a_quota_answer_pauses_every_process_until_graph_says_hunting_returns(hunting_app):
    app = hunting_app
    app.defender.hunting.inject(429, retry_after="6")
    groups = [dataset.ips(30, seed=65 + n) for n in range(3)]
    runs = []

    def one(ips):
        runs.append((ips, app.search(["field=src_ip", "backend=hunting", "maxwait=60"], [events(ips)], timeout=120)))

    threads = [threading.Thread(target=one, args=(ips,)) for ips in groups]
    for thread in threads:
        thread.start()
        time.sleep(0.3)
    for thread in threads:
        thread.join(120)
    assert len(runs) == 3
    for ips, run in runs:
        assert run.errors == []
        assert [r["defender_status"] for r in run.records] == [dataset.status_of(ip) for ip in ips]
    refused = [r for r in app.defender.hunting.requests if r.status == 429]
    assert len(refused) == 1
    later = [r for r in app.defender.hunting.requests if r.time > refused[0].time]
    assert later and min(r.time for r in later) - refused[0].time >= 5.9  # no process asked Graph earlier


def test_no_searcher_can_read_or_forge_a_hunting_job(hunting_app):
    """A forged job record (``finished``, or ``running`` with a fresh heartbeat) would hold a batch back
    from every search: the collection is the service's, not readable or writable by the app's role or a
    plain user."""
    import base64
    import json
    import urllib.error
    import urllib.request

    from users import ANALYST, ANALYST_PW, PLAIN, PLAIN_PW, add_analyst_and_plain_user

    app = hunting_app
    add_analyst_and_plain_user(app.splunkd)
    ips = dataset.ips(20, seed=64)
    app.search(["field=src_ip", "backend=hunting"], [events(ips)])
    assert job_documents(app)  # there is a record to read
    path = "/servicesNS/nobody/%s/storage/collections/data/%s" % (APP, COLLECTION)

    def kv(user, password, method, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(app.splunkd.base_url + path + "?output_mode=json", data=data, method=method)
        request.add_header("Authorization", "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode())
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    before = job_documents(app)
    for user, password in ((ANALYST, ANALYST_PW), (PLAIN, PLAIN_PW)):
        status, body = kv(user, password, "GET")
        assert status in (403, 404) and "heartbeat" not in body, (user, status)
        forged = {"_key": "forged.0", "state": "running", "heartbeat": time.time() + 3600, "job": "forged"}
        status, _ = kv(user, password, "POST", forged)
        assert status in (403, 404), (user, status)
        status, _ = kv(user, password, "DELETE")
        assert status in (403, 404), (user, status)
    assert job_documents(app) == before
