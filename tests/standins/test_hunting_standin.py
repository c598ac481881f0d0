"""The Graph hunting stand-in runs KQL for what it means: equivalent queries get the same answer,
a query that misses the table's spellings misses rows, and what it cannot run is Graph's 400."""

import msal
import pytest
import requests

from standins import dataset, device_events
from standins.defender import DEFAULT_CLIENT_ID, DEFAULT_SECRET, GRAPH_SCOPE, DefenderStandin

IPS = dataset.ips(120, seed=60, family="mixed")


@pytest.fixture(scope="module")
def graph():
    with pytest.MonkeyPatch.context() as env, DefenderStandin() as standin:
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # requests lets these override verify=
            env.delenv(name, raising=False)
        standin.set_limits(rate_per_minute=10000, rate_per_hour=100000)
        standin.hunting.rate_per_minute = standin.hunting.rate_per_hour = 100000
        app = msal.ConfidentialClientApplication(DEFAULT_CLIENT_ID, client_credential=DEFAULT_SECRET,
                                                 authority=standin.authority(), instance_discovery=False,
                                                 verify=standin.ca_bundle)
        token = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])["access_token"]

        def run(query, timespan=None):
            body = {"Query": query} if timespan is None else {"Query": query, "Timespan": timespan}
            return requests.post(standin.base_url + "/v1.0/security/runHuntingQuery", json=body, timeout=30,
                                 headers={"Authorization": "Bearer " + token}, verify=standin.ca_bundle)
        yield run


def listed(ips, mapped=True):
    return ", ".join('"%s"' % form for ip in ips
                     for form in ([ip, "::ffff:" + ip] if mapped and ":" not in ip else [ip]))


def by_ip(response, count_column="DeviceCount"):
    assert response.status_code == 200, response.text
    return {row["RemoteIP"]: row[count_column] for row in response.json()["results"]}


def expected_counts(hours):
    return {ip: e["devices"] for ip, e in ((ip, device_events.expected(ip, hours)) for ip in IPS) if e}


def test_the_apps_shape_and_an_equivalent_query_agree_with_the_table(graph):
    folded = 'tolower(iff(RemoteIP startswith "::ffff:", substring(RemoteIP, 7), RemoteIP))'
    two_steps = ("DeviceNetworkEvents | where Timestamp > ago(72h) | where RemoteIP in~ (%s)"
                 " | extend IP = %s | summarize FirstSeen = min(Timestamp), LastSeen = max(Timestamp) by IP, DeviceId"
                 " | summarize DeviceCount = count(), FirstSeen = min(FirstSeen), LastSeen = max(LastSeen)"
                 " by RemoteIP = IP" % (listed(IPS), folded))
    with_dcount = ("DeviceNetworkEvents | where RemoteIP in~ (%s) and Timestamp >= now() - 72h"
                   " | summarize DeviceCount = dcount(DeviceId) by RemoteIP = %s" % (listed(IPS), folded))
    assert by_ip(graph(two_steps)) == by_ip(graph(with_dcount)) == expected_counts(72)
    assert expected_counts(72)  # not vacuous


def test_timespan_limits_the_rows(graph):
    query = ("DeviceNetworkEvents | where RemoteIP in~ (%s) | summarize DeviceCount = dcount(DeviceId)"
             ' by RemoteIP = tolower(iff(RemoteIP startswith "::ffff:", substring(RemoteIP, 7), RemoteIP))'
             % listed(IPS))
    assert by_ip(graph(query, timespan="PT24H")) == expected_counts(24) != expected_counts(720)


def test_a_query_that_misses_spellings_misses_rows(graph):
    # exact `in` on the canonical forms only, without the IPv4-mapped form: rows stored otherwise are lost
    query = ("DeviceNetworkEvents | where RemoteIP in (%s) | summarize DeviceCount = dcount(DeviceId) by RemoteIP"
             % listed(IPS, mapped=False))
    answered = by_ip(graph(query))
    full = expected_counts(720)
    assert set(answered) <= set(full)
    assert sum(answered.values()) < sum(full.values())


@pytest.mark.parametrize("query", [
    "DeviceNetworkEvents | where RemoteIp in~ (\"10.0.0.1\") | summarize count() by RemoteIP",
    "DeviceNetworkEvents | where RemoteIP in~ (\"10.0.0.1\") | sumarize count() by RemoteIP",
    "DeviceNetworkEvents | where RemoteIP in~ (\"10.0.0.1\") | extend X = substr(RemoteIP, 7)",
    "DeviceNetworkEvents | where RemoteIP in~ (\"10.0.0.1\"",
    "DeviceNetworkEvent | where RemoteIP in~ (\"10.0.0.1\")",
    "DeviceNetworkEvents | where Timestamp > ago(1h)",  # no IP list: the stand-in's table is unbounded
])
def test_what_cannot_run_is_a_400(graph, query):
    response = graph(query)
    assert response.status_code == 400 and response.json()["error"]["message"]
