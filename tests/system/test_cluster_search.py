"""Searches on three search head cluster members at once spend one API budget (issue 14), end to end.

Each member is a splunkd stand-in of its own (``SearchHeadCluster``: own SPLUNK_HOME and server name,
one shared KV store); the command runs as a subprocess per search, as splunkd runs it; the Defender
stand-in enforces the real 100 calls a minute. 300 cold IPs take a little over two minutes.
"""

import threading

import pytest

from defender_ipstats.splunk.clusterbudget import MAX_BATCH
from harness import APP_ROOT, COMMAND_PYTHON, AppHarness, events
from standins import dataset
from standins.defender import DefenderStandin
from standins.splunkd import SearchHeadCluster
from windows import busiest_window

SEARCHES_PER_MEMBER = 2


@pytest.mark.slow
def test_searches_on_three_members_share_the_per_minute_budget(tmp_path):
    ips = dataset.ips(300, seed=1416)
    with SearchHeadCluster(3, apps={"TA-defender-ipstats": APP_ROOT}, python=COMMAND_PYTHON) as cluster, \
            DefenderStandin() as defender:
        members = [AppHarness(member, defender, tmp_path / member.server_name) for member in cluster.members]
        for member in members:
            member.configure_account()
        slices = [ips[index::len(members) * SEARCHES_PER_MEMBER] for index in range(len(members) * SEARCHES_PER_MEMBER)]
        runs = [None] * len(slices)

        def search(index):
            member = members[index % len(members)]
            runs[index] = member.search(["field=src_ip", "backend=ipstats", "maxwait=200"], [events(slices[index])],
                                        timeout=300)

        threads = [threading.Thread(target=search, args=(index,)) for index in range(len(slices))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        calls = [r for r in defender.api_requests if "/api/ips/" in r.path]
        assert defender.throttled == 0
        assert busiest_window([r.time for r in calls], 60.0) <= 100
        assert sorted(r.ip for r in calls) == sorted(ips), "every IP looked up once, by one member"
        for index, run in enumerate(runs):
            statuses = {record["defender_status"] for record in run.records}
            assert len(run.records) == len(slices[index]) and statuses <= {"found", "not_seen"}, run.stderr[-2000:]
            assert not [text for _, text in run.messages if "budget" in text], run.messages
        documents = [doc for doc in cluster.members[0].kv_documents("defenderipstats_budget") if "n" in doc]
        slots = [doc for doc in documents if doc["budget"].startswith("ipstats|")]
        # one stamped slot per call, cluster-wide, and a few a search claimed but did not need (a slot
        # given back stays, without a stamp)
        stamped = [doc for doc in slots if "at" in doc]
        assert 300 <= len(stamped) <= 300 + len(runs) * (MAX_BATCH - 1)
        assert sorted(doc["n"] for doc in slots) == list(range(len(slots))), "no number taken twice, none skipped"
        # and the searching user's own share of the hour (user_share_percent), numbered the same way
        own = [doc for doc in documents if doc["budget"].startswith("ipstats-user-") and "at" in doc]
        assert len(own) == 300 and {doc["user"] for doc in own} == {"admin"}
