"""The cloud table against Microsoft's documented hosts."""

import pytest

from defender_ipstats.core.accounts import Account
from defender_ipstats.core.clouds import CLOUDS

COMMERCIAL_SCOPE = "https://api.securitycenter.microsoft.com/.default"


@pytest.mark.parametrize("cloud, api, login, scope, graph", [
    ("global", "https://api.security.microsoft.com", "login.microsoftonline.com", COMMERCIAL_SCOPE,
     "https://graph.microsoft.com"),
    ("us", "https://us.api.security.microsoft.com", "login.microsoftonline.com", COMMERCIAL_SCOPE,
     "https://graph.microsoft.com"),
    ("eu", "https://eu.api.security.microsoft.com", "login.microsoftonline.com", COMMERCIAL_SCOPE,
     "https://graph.microsoft.com"),
    ("uk", "https://uk.api.security.microsoft.com", "login.microsoftonline.com", COMMERCIAL_SCOPE,
     "https://graph.microsoft.com"),
    ("au", "https://au.api.security.microsoft.com", "login.microsoftonline.com", COMMERCIAL_SCOPE,
     "https://graph.microsoft.com"),
    ("swa", "https://swa.api.security.microsoft.com", "login.microsoftonline.com", COMMERCIAL_SCOPE,
     "https://graph.microsoft.com"),
    ("ina", "https://ina.api.security.microsoft.com", "login.microsoftonline.com", COMMERCIAL_SCOPE,
     "https://graph.microsoft.com"),
    ("aea", "https://aea.api.security.microsoft.com", "login.microsoftonline.com", COMMERCIAL_SCOPE,
     "https://graph.microsoft.com"),
    ("gcc", "https://api-gcc.securitycenter.microsoft.us", "login.microsoftonline.com",
     "https://api-gcc.securitycenter.microsoft.us/.default", "https://graph.microsoft.com"),
    ("gcc-high", "https://api-gov.securitycenter.microsoft.us", "login.microsoftonline.us",
     "https://api-gov.securitycenter.microsoft.us/.default", "https://graph.microsoft.us"),
    ("dod", "https://api-gov.securitycenter.microsoft.us", "login.microsoftonline.us",
     "https://api-gov.securitycenter.microsoft.us/.default", "https://dod-graph.microsoft.us"),
])
def test_cloud_table(cloud, api, login, scope, graph):
    endpoints = CLOUDS[cloud]
    assert (endpoints.api_url, endpoints.login_host, endpoints.scope, endpoints.graph_url) == (api, login, scope, graph)
    account = Account.from_conf("a", {"tenant_id": "t1", "client_id": "c1", "cloud": cloud})
    assert account.effective_authority == "https://%s/t1" % login


def test_every_documented_cloud_is_known():
    assert set(CLOUDS) == {"global", "us", "eu", "uk", "au", "swa", "ina", "aea", "gcc", "gcc-high", "dod"}
