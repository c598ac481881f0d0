"""The backend router (ipstats / hunting / auto), with fake fetchers."""

from defender_ipstats.core.backends import SWITCH_NOTE, BackendRouter
from defender_ipstats.core.errors import AuthorizationError
from defender_ipstats.core.fetcher import RETIRED_REASON
from defender_ipstats.core.model import FOUND, NOT_SEEN, RATE_LIMITED, SOURCE_API, SOURCE_HUNTING, IpStats, failed


class Fake:
    def __init__(self, answer, fatal=None, client=None):
        self.answer, self.fatal, self.client = answer, fatal, client
        self.asked = []

    def fetch_many(self, ips):
        self.asked.append(list(ips))
        return {ip: self.answer(ip) for ip in ips}


class Client:
    looks_retired = False


def api(ip):
    return IpStats(ip=ip, status=FOUND, prevalence=1, source=SOURCE_API)


def hunted(ip):
    return IpStats(ip=ip, status=FOUND, prevalence=2, source=SOURCE_HUNTING)


def router(per_ip_answer=api, hunting=None, threshold=3):
    said = []
    client = Client()
    per_ip = Fake(per_ip_answer, client=client)
    no_wait = Fake(per_ip_answer, client=client)
    hunting = hunting or Fake(hunted)
    r = BackendRouter("auto", lambda level, text: said.append((level, text)), per_ip=per_ip,
                      per_ip_no_wait=no_wait, hunting=hunting, threshold=threshold)
    return r, per_ip, no_wait, hunting, said, client


def test_auto_few_ips_use_the_per_ip_endpoint():
    r, per_ip, no_wait, hunting, said, _ = router()
    answers = r.fetch_many(["1.1.1.1", "2.2.2.2"])
    assert {a.source for a in answers.values()} == {SOURCE_API}
    assert hunting.asked == [] and said == []


def test_auto_many_ips_use_hunting():
    r, per_ip, no_wait, hunting, said, _ = router()
    ips = ["10.0.0.%d" % i for i in range(10)]
    answers = r.fetch_many(ips)
    assert {a.source for a in answers.values()} == {SOURCE_HUNTING}
    assert no_wait.asked == [] and hunting.asked == [ips]
    assert said == [("INFO", SWITCH_NOTE)] and "distinct devices" in SWITCH_NOTE
    r.fetch_many(["10.1.0.%d" % i for i in range(10)])
    assert len(said) == 1


def test_auto_spills_rate_limited_ips_to_hunting():
    r, per_ip, no_wait, hunting, said, _ = router(
        per_ip_answer=lambda ip: api(ip) if ip == "1.1.1.1" else IpStats(ip=ip, status=RATE_LIMITED))
    answers = r.fetch_many(["1.1.1.1", "2.2.2.2"])
    assert answers["2.2.2.2"].source == SOURCE_HUNTING and hunting.asked == [["2.2.2.2"]]


def test_auto_switches_for_good_when_the_endpoint_is_retired():
    r, per_ip, no_wait, hunting, said, client = router(per_ip_answer=lambda ip: failed(ip, RETIRED_REASON))
    client.looks_retired = True
    answers = r.fetch_many(["1.1.1.1"])
    assert answers["1.1.1.1"].source == SOURCE_HUNTING
    assert [level for level, _ in said] == ["WARN", "INFO"] and "retired" in said[0][1]
    assert said[1][1] == SWITCH_NOTE
    r.fetch_many(["2.2.2.2"])  # later chunks go straight to hunting
    assert no_wait.asked == [["1.1.1.1"]]
    assert len(said) == 2  # the note about hunting's figures is said once


def test_auto_retired_by_404s_asks_hunting_again_for_the_not_seen():
    r, per_ip, no_wait, hunting, said, client = router(
        per_ip_answer=lambda ip: IpStats(ip=ip, status=NOT_SEEN, prevalence=0, source=SOURCE_API))
    client.looks_retired = True
    answers = r.fetch_many(["1.1.1.1", "2.2.2.2"])
    assert {a.source for a in answers.values()} == {SOURCE_HUNTING}


def test_auto_without_the_graph_permission_stays_per_ip_and_says_so_once():
    hunting = Fake(lambda ip: failed(ip, "hunting unavailable", SOURCE_HUNTING),
                   fatal=AuthorizationError("Microsoft Graph refused (403): ThreatHunting.Read.All"))
    r, per_ip, no_wait, _, said, _ = router(hunting=hunting)
    ips = ["10.0.0.%d" % i for i in range(10)]
    answers = r.fetch_many(ips)
    assert {a.source for a in answers.values()} == {SOURCE_API}
    r.fetch_many(["10.1.0.%d" % i for i in range(10)])
    assert len(said) == 1 and "ThreatHunting.Read.All" in said[0][1]
    assert len(hunting.asked) == 1
