"""Two accounts in two clouds, side by side in one search, end to end with no host override.

The accounts name only their cloud (``cloud = eu`` and ``cloud = gcc-high``): the API host, sign-in
authority and token scope come from the app's cloud table. Their requests really go to
``eu.api.security.microsoft.com``, ``login.microsoftonline.com``, ``api-gov.securitycenter.microsoft.us``
and ``login.microsoftonline.us``: a local CONNECT proxy (the accounts' ``proxy_url``) resolves those
names to two Defender/Entra ID stand-ins, one per cloud, each with a TLS certificate for its names,
its own tenant, token service and data. The search is

    | defenderipstats field=src_ip account=contoso_eu prefix=eu_
    | defenderipstats field=src_ip account=fabrikam_gov prefix=gov_
"""

import pytest

from defender_ipstats.core.clouds import CLOUDS
from harness import events
from standins import dataset
from standins.defender import DefenderStandin
from standins.proxy import ConnectProxy

EU_TENANT, EU_CLIENT, EU_SECRET = ("0a0a0a0a-1111-2222-3333-e00000000001", "c1c1c1c1-aaaa-bbbb-cccc-000000000e01",
                                   "eu-s3cret")
GOV_TENANT, GOV_CLIENT, GOV_SECRET = ("0b0b0b0b-1111-2222-3333-900000000002", "c2c2c2c2-aaaa-bbbb-cccc-000000000902",
                                      "gov-s3cret")
GOV_SCOPE = CLOUDS["gcc-high"].scope


def _gov_data(ip, lookback_hours):
    """The government tenant's devices: other numbers than the commercial tenant's for the same IPs."""
    stats = dataset.ip_stats(ip, lookback_hours)
    if stats and stats["organizationPrevalence"]:
        stats = dict(stats, organizationPrevalence=stats["organizationPrevalence"] + 7000)
    return stats


def _host(url):
    return url.split("://", 1)[1]


@pytest.fixture
def two_clouds():
    eu = DefenderStandin(tenants={EU_TENANT: {EU_CLIENT: EU_SECRET}},
                         hostnames=[_host(CLOUDS["eu"].api_url), CLOUDS["eu"].login_host]).start()
    gov = DefenderStandin(tenants={GOV_TENANT: {GOV_CLIENT: GOV_SECRET}}, scopes=(GOV_SCOPE,), dataset=_gov_data,
                          hostnames=[_host(CLOUDS["gcc-high"].api_url), CLOUDS["gcc-high"].login_host]).start()
    routes = {name: ("127.0.0.1", standin.port) for standin in (eu, gov) for name in standin.hostnames}
    proxy = ConnectProxy(routes=routes).start()
    try:
        yield eu, gov, proxy
    finally:
        proxy.stop()
        eu.stop()
        gov.stop()


def test_two_accounts_in_two_clouds_enrich_one_search_side_by_side(bare_app, two_clouds):
    eu, gov, proxy = two_clouds
    app = bare_app
    app.set_stanza("defenderipstats_accounts", "contoso_eu", tenant_id=EU_TENANT, client_id=EU_CLIENT,
                   cloud="eu", ca_bundle=eu.ca_bundle, proxy_url=proxy.url)
    app.set_secret("contoso_eu", EU_SECRET)
    app.set_stanza("defenderipstats_accounts", "fabrikam_gov", tenant_id=GOV_TENANT, client_id=GOV_CLIENT,
                   cloud="gcc-high", ca_bundle=gov.ca_bundle, proxy_url=proxy.url)
    app.set_secret("fabrikam_gov", GOV_SECRET)

    ips = dataset.ips(3, status="found", seed=61) + dataset.ips(1, status="not_seen", seed=61)
    sent = events(ips)
    sid = app.new_sid()
    first = app.search(["field=src_ip", "account=contoso_eu", "prefix=eu_"], [sent], sid=sid)
    assert first.errors == [], first.errors
    second = app.search(["field=src_ip", "account=fabrikam_gov", "prefix=gov_"], [first.records], sid=sid)
    assert second.errors == [], second.errors

    assert len(second.records) == len(sent)
    for record, ip in zip(second.records, ips):
        commercial, government = dataset.ip_stats(ip), _gov_data(ip, 720)
        assert record["src_ip"] == ip
        assert record["eu_prevalence"] == str(commercial["organizationPrevalence"])
        assert record["gov_prevalence"] == str(government["organizationPrevalence"])
        assert record["eu_status"] == record["gov_status"] == ("found" if commercial["organizationPrevalence"]
                                                               else "not_seen")
        assert record["eu_source"] == record["gov_source"] == "api"

    # Each account went to its own cloud's hosts, through the proxy, and nowhere else.
    assert proxy.targets() == sorted(["eu.api.security.microsoft.com:443", "login.microsoftonline.com:443",
                                      "api-gov.securitycenter.microsoft.us:443", "login.microsoftonline.us:443"])
    assert [(t.tenant, t.scope) for t in eu.token_requests] == [(EU_TENANT, CLOUDS["eu"].scope)]
    assert [(t.tenant, t.scope) for t in gov.token_requests] == [(GOV_TENANT, GOV_SCOPE)]
    assert eu.api_calls() == gov.api_calls() == len(ips)
    assert set(eu.peers) == set(gov.peers) == {proxy.source_ip}

    # The cache keeps the two tenants apart.
    cached = {(d["account"], d["ip"]): d["prevalence"] for d in app.cache_documents()}
    assert {account for account, _ in cached} == {"contoso_eu", "fabrikam_gov"}
    assert cached[("fabrikam_gov", ips[0])] == cached[("contoso_eu", ips[0])] + 7000


def test_a_token_for_one_cloud_is_refused_by_the_other(two_clouds):
    """The stand-ins are separate clouds: a commercial token means nothing to the government API."""
    import requests

    eu, gov, _ = two_clouds
    token = eu.issue_token(tenant=EU_TENANT, client_id=EU_CLIENT)
    response = requests.get(gov.base_url + "/api/ips/10.1.2.3/stats", headers={"Authorization": "Bearer " + token},
                            verify=gov.ca_bundle, timeout=10)
    assert response.status_code == 401
