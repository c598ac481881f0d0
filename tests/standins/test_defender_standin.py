"""Tests of the Defender/Entra ID stand-in and its dataset, with real msal and requests."""

import datetime as dt
import hashlib
import re
import time
import uuid

import msal
import pytest
import requests

from standins import dataset
from standins.defender import (
    DEFAULT_CLIENT_ID,
    DEFAULT_SECRET,
    DEFAULT_TENANT,
    DEFENDER_SCOPE,
    GRAPH_SCOPE,
    MTP_SCOPE,
    DefenderStandin,
    ManualClock,
)

ODATA = "https://api.security.microsoft.com/api/$metadata#microsoft.windowsDefenderATP.api.InOrgIPStats"
BODY_KEYS = ["@odata.context", "ipAddress", "organizationPrevalence", "orgPrevalence", "orgFirstSeen", "orgLastSeen"]
TS_RE = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,7}))?Z$")


@pytest.fixture(autouse=True)
def _no_env_ca_bundle(monkeypatch):
    # requests lets these override an explicit Session.verify (msal's verify=).
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def mde():
    with DefenderStandin() as standin:
        yield standin
    assert not standin.handler_errors


def msal_app(mde, client_id=DEFAULT_CLIENT_ID, credential=DEFAULT_SECRET, tenant=None):
    return msal.ConfidentialClientApplication(
        client_id, client_credential=credential, authority=mde.authority(tenant),
        instance_discovery=False, verify=mde.ca_bundle)


def get_token(mde, scope=DEFENDER_SCOPE, **kwargs):
    result = msal_app(mde, **kwargs).acquire_token_for_client(scopes=[scope])
    assert "access_token" in result, result
    return result["access_token"]


def stats(mde, ip, token, lookback=None, **kwargs):
    url = "%s/api/ips/%s/stats" % (mde.base_url, ip)
    if lookback is not None:
        url += "?lookBackHours=%s" % lookback
    headers = {"Authorization": "Bearer " + token} if token else {}
    kwargs.setdefault("timeout", 10)
    return requests.get(url, headers=headers, verify=mde.ca_bundle, **kwargs)


def post_token(mde, data, tenant=None, **kwargs):
    return requests.post(mde.token_endpoint(tenant), data=data, verify=mde.ca_bundle, timeout=10, **kwargs)


def assert_envelope(resp, status, code):
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] == code
    assert isinstance(err["message"], str) and err["message"]
    uuid.UUID(err["target"])
    return err


def ticks(ts):
    m = TS_RE.match(ts)
    assert m, ts
    whole = dt.datetime(*[int(g) for g in m.groups()[:6]], tzinfo=dt.timezone.utc)
    frac = (m.group(7) or "").ljust(7, "0")
    return int((whole - dataset.REFERENCE_NOW).total_seconds()) * 10 ** 7 + int(frac or 0)


# ----------------------------------------------------------------------------- Entra ID

def test_discovery_document(mde):
    resp = requests.get(mde.authority() + "/v2.0/.well-known/openid-configuration", verify=mde.ca_bundle)
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["issuer"] == "https://login.microsoftonline.com/%s/v2.0" % DEFAULT_TENANT
    assert doc["token_endpoint"] == mde.token_endpoint()
    assert doc["authorization_endpoint"].startswith(mde.authority() + "/")
    assert mde.discovery_requests == [DEFAULT_TENANT]


def test_discovery_unknown_tenant(mde):
    resp = requests.get(mde.authority("no-such-tenant") + "/v2.0/.well-known/openid-configuration",
                        verify=mde.ca_bundle)
    assert resp.status_code == 400
    body = resp.json()
    assert body["error"] == "invalid_tenant" and body["error_codes"] == [90002]
    with pytest.raises(ValueError):
        msal_app(mde, tenant="no-such-tenant")


def test_tenant_alias_resolves_to_guid():
    with DefenderStandin(tenant_aliases={"contoso.onmicrosoft.com": DEFAULT_TENANT}) as mde:
        doc = requests.get(mde.authority("contoso.onmicrosoft.com") + "/v2.0/.well-known/openid-configuration",
                           verify=mde.ca_bundle).json()
        assert doc["token_endpoint"] == mde.token_endpoint(DEFAULT_TENANT)
        assert get_token(mde, tenant="contoso.onmicrosoft.com")


def test_msal_token_success(mde):
    result = msal_app(mde).acquire_token_for_client(scopes=[DEFENDER_SCOPE])
    assert result["token_type"] == "Bearer"
    assert result["expires_in"] == 3599
    token = result["access_token"]
    assert mde.issued_tokens == [token]
    rec = mde.token_requests[-1]
    assert (rec.tenant, rec.client_id, rec.grant_type, rec.scope, rec.status, rec.credential) == (
        DEFAULT_TENANT, DEFAULT_CLIENT_ID, "client_credentials", DEFENDER_SCOPE, 200, "secret")
    info = mde.token_info(token)
    assert info["audience"] == "https://api.securitycenter.microsoft.com"
    assert "Ip.Read.All" in info["roles"] and not info["expired"]


@pytest.mark.parametrize("client_id,secret,scope,status,error,code", [
    ("99999999-0000-0000-0000-000000000000", DEFAULT_SECRET, DEFENDER_SCOPE, 400, "unauthorized_client", 700016),
    (DEFAULT_CLIENT_ID, "wrong-secret", DEFENDER_SCOPE, 401, "invalid_client", 7000215),
    (DEFAULT_CLIENT_ID, DEFAULT_SECRET, "https://api.securitycenter.microsoft.com/Ip.Read.All",
     400, "invalid_scope", 70011),
    (DEFAULT_CLIENT_ID, DEFAULT_SECRET, "https://example.invalid/.default", 400, "invalid_resource", 500011),
])
def test_token_errors_via_msal(mde, client_id, secret, scope, status, error, code):
    result = msal_app(mde, client_id=client_id, credential=secret).acquire_token_for_client(scopes=[scope])
    assert "access_token" not in result
    assert result["error"] == error
    assert code in result["error_codes"]
    assert result["error_description"].startswith("AADSTS%d: " % code)
    for key in ("timestamp", "trace_id", "correlation_id"):
        assert result[key]
    assert mde.token_requests[-1].status == status
    assert mde.token_requests[-1].error_code == code
    assert mde.issued_tokens == []


def test_token_errors_raw(mde):
    base = {"grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_SECRET, "scope": DEFENDER_SCOPE}
    resp = post_token(mde, base, tenant="22222222-0000-0000-0000-000000000000")
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_request" and resp.json()["error_codes"] == [90002]
    resp = post_token(mde, dict(base, grant_type="password"))
    assert (resp.status_code, resp.json()["error"]) == (400, "unsupported_grant_type")
    resp = post_token(mde, {k: v for k, v in base.items() if k != "client_secret"})
    assert (resp.status_code, resp.json()["error_codes"]) == (401, [7000218])
    # client_secret_basic is accepted too, and extra msal fields are ignored
    resp = post_token(mde, {"grant_type": "client_credentials", "scope": DEFENDER_SCOPE, "client_info": "1"},
                      auth=(DEFAULT_CLIENT_ID, DEFAULT_SECRET))
    assert resp.status_code == 200 and resp.json()["token_type"] == "Bearer"
    assert resp.json()["ext_expires_in"] == 3599


def _make_cert(common_name):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    thumb = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return key_pem, cert_pem, thumb


def test_certificate_credential(mde):
    key_pem, cert_pem, thumb = _make_cert("standin-client")
    other_key, _, other_thumb = _make_cert("other")
    cid = "cccccccc-0000-0000-0000-000000000001"
    mde.add_client(cid, certificate=cert_pem)
    # RS256 with the SHA-1 thumbprint (the app's auth = certificate)
    token = get_token(mde, client_id=cid, credential={"private_key": key_pem, "thumbprint": thumb})
    assert mde.token_requests[-1].credential == "certificate"
    assert stats(mde, "10.0.0.1", token).status_code == 200
    # PS256 with x5t#S256, when msal is given the public certificate
    assert get_token(mde, client_id=cid, credential={"private_key": key_pem, "public_certificate": cert_pem})
    # an unregistered certificate
    result = msal_app(mde, client_id=cid, credential={"private_key": other_key, "thumbprint": other_thumb}
                      ).acquire_token_for_client(scopes=[DEFENDER_SCOPE])
    assert result["error"] == "invalid_client" and 700027 in result["error_codes"]
    # the registered thumbprint, signed with another key
    result = msal_app(mde, client_id=cid, credential={"private_key": other_key, "thumbprint": thumb}
                      ).acquire_token_for_client(scopes=[DEFENDER_SCOPE])
    assert result["error"] == "invalid_client" and 700027 in result["error_codes"]


# ----------------------------------------------------------------------------- API: answers

def test_stats_found_matches_dataset(mde):
    token = get_token(mde)
    for ip in dataset.ips(5, "found", lookback_hours=48):
        resp = stats(mde, ip, token, 48)
        assert resp.status_code == 200
        body = resp.json()
        assert list(body) == BODY_KEYS
        assert body == dataset.api_body(ip, 48)
        assert body["@odata.context"] == ODATA
        assert body["organizationPrevalence"] > 0 and body["orgPrevalence"] == str(body["organizationPrevalence"])
    ip = dataset.ips(1, "found", seed=3)[0]
    assert stats(mde, ip, token).json() == dataset.api_body(ip, 720)  # default look-back


def test_stats_fractional_timestamps(mde):
    token = get_token(mde)
    ips = [ip for ip in dataset.ips(400, "found") if dataset.has_fractional_timestamps(ip)]
    assert ips
    seen_seven = False
    for ip in ips[:10]:
        body = stats(mde, ip, token, 720).json()
        assert TS_RE.match(body["orgLastSeen"]) and "." in body["orgLastSeen"]
        seen_seven = seen_seven or bool(re.search(r"\.\d{7}Z$", body["orgLastSeen"]))
    assert seen_seven


def test_stats_not_seen_zero_mode(mde):
    token = get_token(mde)
    ip = dataset.ips(1, "not_seen")[0]
    body = stats(mde, ip, token, 24).json()
    assert body == {"@odata.context": ODATA, "ipAddress": ip, "organizationPrevalence": 0,
                    "orgPrevalence": "0", "orgFirstSeen": None, "orgLastSeen": None}


def test_stats_not_seen_404_mode():
    with DefenderStandin(not_seen_mode="404") as mde:
        token = get_token(mde)
        assert_envelope(stats(mde, dataset.ips(1, "not_seen")[0], token), 404, "NotFound")
        assert stats(mde, dataset.ips(1, "found")[0], token).status_code == 200


def test_stats_ipv6_and_mapped(mde):
    token = get_token(mde)
    ip6 = dataset.ips(1, "found", family=6)[0]
    assert stats(mde, ip6, token).json() == dataset.api_body(ip6, 720)
    ip4 = dataset.ips(1, "found")[0]
    body = stats(mde, "::ffff:" + ip4, token).json()
    assert body["ipAddress"] == "::ffff:" + ip4
    assert body["organizationPrevalence"] == dataset.ip_stats(ip4, 720)["organizationPrevalence"]


@pytest.mark.parametrize("ip", ["not-an-ip", "300.1.1.1", "1.2.3", "2001:db8::1::2"])
def test_invalid_ip(mde, ip):
    err = assert_envelope(stats(mde, ip, get_token(mde)), 400, "InvalidIpAddress")
    assert ip in err["message"]


@pytest.mark.parametrize("lookback", ["0", "721", "abc", "1.5", "-3", "", "+-4"])
def test_bad_lookback(mde, lookback):
    assert_envelope(stats(mde, "10.1.1.1", get_token(mde), lookback), 400, "BadRequest")


def test_lookback_bounds_accepted(mde):
    token = get_token(mde)
    assert stats(mde, "10.1.1.1", token, 1).status_code == 200
    assert stats(mde, "10.1.1.1", token, 720).status_code == 200


# ----------------------------------------------------------------------------- API: auth

def test_401_without_valid_token(mde):
    assert_envelope(stats(mde, "10.1.1.1", None), 401, "Unauthorized")
    assert_envelope(stats(mde, "10.1.1.1", "not-a-token"), 401, "Unauthorized")
    resp = requests.get(mde.base_url + "/api/ips/10.1.1.1/stats", verify=mde.ca_bundle,
                        headers={"Authorization": "Basic " + DEFAULT_SECRET})
    assert_envelope(resp, 401, "Unauthorized")
    assert "WWW-Authenticate" in resp.headers
    assert DEFAULT_SECRET not in resp.text


def test_token_expiry_follows_the_clock():
    clock = ManualClock()
    with DefenderStandin(clock=clock, token_lifetime=600) as mde:
        result = msal_app(mde).acquire_token_for_client(scopes=[DEFENDER_SCOPE])
        assert result["expires_in"] == 600
        token = result["access_token"]
        assert stats(mde, "10.1.1.1", token).status_code == 200
        clock.advance(599)
        assert stats(mde, "10.1.1.1", token).status_code == 200
        clock.advance(1)
        assert_envelope(stats(mde, "10.1.1.1", token), 401, "Unauthorized")
        assert mde.token_info(token)["expired"]


@pytest.mark.parametrize("scope", [GRAPH_SCOPE, MTP_SCOPE])
def test_403_token_for_another_resource(mde, scope):
    err = assert_envelope(stats(mde, "10.1.1.1", get_token(mde, scope=scope)), 403, "Forbidden")
    assert err["message"] == "Missing application roles. API required roles: Ip.Read.All"


def test_403_client_without_role(mde):
    mde.add_client("dddddddd-0000-0000-0000-000000000001", "other-secret", roles=[])
    token = get_token(mde, client_id="dddddddd-0000-0000-0000-000000000001", credential="other-secret")
    assert_envelope(stats(mde, "10.1.1.1", token), 403, "Forbidden")
    # roles are baked into tokens when issued
    old = get_token(mde)
    mde.set_roles(DEFAULT_CLIENT_ID, ["ThreatHunting.Read.All"])
    assert stats(mde, "10.1.1.1", old).status_code == 200
    assert_envelope(stats(mde, "10.1.1.1", mde.issue_token()), 403, "Forbidden")


# ----------------------------------------------------------------------------- API: rate limits

def test_429_per_minute_sliding_window():
    clock = ManualClock()
    with DefenderStandin(rate_per_minute=3, clock=clock) as mde:
        token = mde.issue_token()
        for i in range(3):
            assert stats(mde, "10.0.0.%d" % i, token).status_code == 200
            clock.advance(10)
        resp = stats(mde, "10.0.0.9", token)
        err = assert_envelope(resp, 429, "TooManyRequests")
        assert err["message"] == "API calls quota exceeded! maximum allowed 3 per 00:01:00"
        assert resp.headers["Retry-After"] == "30"  # first call at t=0 leaves at t=60; now t=30
        clock.advance(29.5)
        assert stats(mde, "10.0.0.9", token).headers["Retry-After"] == "1"  # at least 1
        clock.advance(0.5)
        assert stats(mde, "10.0.0.9", token).status_code == 200
        assert mde.throttled == 2 and mde.api_calls(429) == 2 and mde.api_calls(200) == 4


def test_429_real_clock_retry_after():
    with DefenderStandin(rate_per_minute=2) as mde:
        token = mde.issue_token()
        assert [stats(mde, "10.0.0.1", token).status_code for _ in range(3)] == [200, 200, 429]
        retry = mde.api_requests[-1]
        assert retry.status == 429
        resp = stats(mde, "10.0.0.1", token)
        assert 1 <= int(resp.headers["Retry-After"]) <= 60


def test_429_hourly_and_set_limits():
    clock = ManualClock()
    with DefenderStandin(rate_per_minute=100, rate_per_hour=2, clock=clock) as mde:
        token = mde.issue_token()
        assert stats(mde, "10.0.0.1", token).status_code == 200
        clock.advance(100)
        assert stats(mde, "10.0.0.1", token).status_code == 200
        clock.advance(100)
        resp = stats(mde, "10.0.0.1", token)
        assert resp.json()["error"]["message"] == "API calls quota exceeded! maximum allowed 1500 per 01:00:00" \
            .replace("1500", "2")
        assert resp.headers["Retry-After"] == "3400"
        mde.set_limits(rate_per_hour=10, rate_per_minute=1)
        assert stats(mde, "10.0.0.1", token).status_code == 200
        resp = stats(mde, "10.0.0.1", token)
        assert resp.status_code == 429
        assert resp.json()["error"]["message"] == "API calls quota exceeded! maximum allowed 1 per 00:01:00"
        assert resp.headers["Retry-After"] == "60"
        clock.advance(60)
        assert stats(mde, "10.0.0.1", token).status_code == 200


def test_rate_limit_is_per_tenant_and_client():
    tenants = {DEFAULT_TENANT: {DEFAULT_CLIENT_ID: DEFAULT_SECRET, "c2": "s2"}, "t2": {DEFAULT_CLIENT_ID: "s3"}}
    with DefenderStandin(tenants=tenants, rate_per_minute=1) as mde:
        tokens = [mde.issue_token(), mde.issue_token(client_id="c2"), mde.issue_token(tenant="t2")]
        assert [stats(mde, "10.0.0.1", t).status_code for t in tokens] == [200, 200, 200]
        assert [stats(mde, "10.0.0.1", t).status_code for t in tokens] == [429, 429, 429]
        mde.reset_rate_limits()
        assert stats(mde, "10.0.0.1", tokens[0]).status_code == 200


def test_throttled_calls_prolong_throttling_when_enabled():
    clock = ManualClock()
    with DefenderStandin(rate_per_minute=1, clock=clock, throttled_calls_count=True, throttle_code="429") as mde:
        token = mde.issue_token()
        assert stats(mde, "10.0.0.1", token).status_code == 200
        clock.advance(30)
        assert_envelope(stats(mde, "10.0.0.1", token), 429, "429")
        clock.advance(31)  # the first call has left, the throttled one has not
        assert stats(mde, "10.0.0.1", token).status_code == 429
        clock.advance(60)
        assert stats(mde, "10.0.0.1", token).status_code == 200


# ----------------------------------------------------------------------------- faults

@pytest.mark.parametrize("status,code", [(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"),
                                         (404, "NotFound"), (429, "TooManyRequests"),
                                         (500, "InternalServerError"), (503, "ServiceUnavailable")])
def test_status_faults(mde, status, code):
    token = get_token(mde)
    mde.inject(status)
    resp = stats(mde, "10.0.0.1", token)
    assert_envelope(resp, status, code)
    if status == 429:
        assert resp.headers["Retry-After"] == "1"
    assert stats(mde, "10.0.0.1", token).status_code == 200  # consumed
    assert mde.api_requests[0].fault == status and mde.api_requests[1].fault is None


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_faults_are_html(mde, status):
    mde.inject(status)
    resp = stats(mde, "10.0.0.1", get_token(mde))
    assert resp.status_code == status and resp.headers["Content-Type"].startswith("text/html")


def test_fault_queue_order_and_clear(mde):
    token = get_token(mde)
    mde.inject(500, times=2)
    mde.inject("503")
    assert mde.pending_faults == [500, 500, 503]
    assert [stats(mde, "10.0.0.1", token).status_code for _ in range(4)] == [500, 500, 503, 200]
    mde.inject(500, times=3)
    mde.clear_faults()
    assert stats(mde, "10.0.0.1", token).status_code == 200
    for bad in ("bogus", 200, "slow:x", True):
        with pytest.raises(ValueError):
            mde.inject(bad)


def test_slow_fault(mde):
    token = get_token(mde)
    mde.inject("slow:0.3")
    started = time.monotonic()
    assert stats(mde, "10.0.0.1", token).status_code == 200
    assert time.monotonic() - started >= 0.3
    mde.inject("slow:1")
    with pytest.raises(requests.exceptions.ReadTimeout):
        stats(mde, "10.0.0.1", token, timeout=0.2)
    assert stats(mde, "10.0.0.1", token).status_code == 200


def test_malformed_and_schema_invalid_faults(mde):
    token = get_token(mde)
    mde.inject("malformed")
    mde.inject("schema_invalid")
    resp = stats(mde, "10.0.0.1", token)
    assert resp.status_code == 200
    with pytest.raises(ValueError):
        resp.json()
    resp = stats(mde, "10.0.0.1", token)
    body = resp.json()
    assert resp.status_code == 200 and "orgFirstSeen" not in body
    assert not isinstance(body["organizationPrevalence"], int)


def test_expire_tokens_fault(mde):
    token = get_token(mde)
    mde.inject("expire_tokens")
    assert_envelope(stats(mde, "10.0.0.1", token), 401, "Unauthorized")
    assert stats(mde, "10.0.0.1", token).status_code == 401  # stays expired
    fresh = get_token(mde)  # a new msal app has an empty cache
    assert stats(mde, "10.0.0.1", fresh).status_code == 200


def test_reset_fault(mde):
    token = get_token(mde)
    session = requests.Session()
    session.verify = mde.ca_bundle
    session.headers["Authorization"] = "Bearer " + token
    url = mde.base_url + "/api/ips/10.0.0.1/stats"
    assert session.get(url).status_code == 200  # a pooled keep-alive connection
    mde.inject("reset")
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get(url)
    assert session.get(url).status_code == 200
    assert [(r.status, r.fault) for r in mde.api_requests] == [(200, None), (None, "reset"), (200, None)]


def test_token_endpoint_faults(mde):
    data = {"grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_SECRET, "scope": DEFENDER_SCOPE}
    mde.inject_token_fault(503)
    mde.inject_token_fault("malformed")
    mde.inject_token_fault("reset")
    resp = post_token(mde, data)
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "1"
    assert resp.json()["error"] == "temporarily_unavailable"
    with pytest.raises(ValueError):
        post_token(mde, data).json()
    with pytest.raises(requests.exceptions.ConnectionError):
        post_token(mde, data)
    assert post_token(mde, data).status_code == 200
    assert [r.status for r in mde.token_requests] == [503, 200, None, 200]
    assert len(mde.issued_tokens) == 1


# ----------------------------------------------------------------------------- counters, TLS

def test_counters_and_records(mde):
    token = get_token(mde)
    stats(mde, "10.0.0.1", token, 24)
    stats(mde, "bad", token)
    stats(mde, "10.0.0.1", None)
    path = "/api/ips/10.0.0.2/stats?lookBackHours=24&$select=x"
    requests.get(mde.base_url + path, headers={"Authorization": "Bearer " + token}, verify=mde.ca_bundle)
    assert mde.api_calls() == 4
    assert mde.api_calls(200) == 2 and mde.api_calls([400, 401]) == 2
    first = mde.api_requests[0]
    assert first["path"] == "/api/ips/10.0.0.1/stats?lookBackHours=24"
    assert (first.status, first.token, first.tenant, first.client_id, first.ip, first.lookback) == (
        200, token, DEFAULT_TENANT, DEFAULT_CLIENT_ID, "10.0.0.1", "24")
    assert mde.api_requests[2].token is None
    assert mde.api_requests[3].path == path
    assert isinstance(first.time, float) and abs(first.time - time.time()) < 60
    assert mde.token_calls() == 1 and mde.token_calls(200) == 1
    mde.reset_counters()
    assert mde.api_calls() == 0 and mde.token_requests == [] and mde.issued_tokens == [token]


def test_tls_rejected_without_the_ca(mde):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(mde.base_url + "/api/ips/10.0.0.1/stats", timeout=10)  # certifi, not our CA
    deadline = time.monotonic() + 3
    while not mde.tls_errors and time.monotonic() < deadline:
        time.sleep(0.02)
    assert mde.tls_errors
    assert mde.api_calls() == 0


def test_certificate_names_and_stop(mde):
    resp = requests.get("https://localhost:%d/api/ips/10.0.0.1/stats" % mde.port,
                        headers={"Authorization": "Bearer " + mde.issue_token()}, verify=mde.ca_bundle, timeout=10)
    assert resp.status_code == 200
    ca_path, base = mde.ca_bundle, mde.base_url
    mde.stop()
    import os
    assert not os.path.exists(ca_path)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(base + "/api/ips/10.0.0.1/stats", verify=False, timeout=2)


def test_unknown_api_path(mde):
    resp = requests.get(mde.base_url + "/api/machines", verify=mde.ca_bundle,
                        headers={"Authorization": "Bearer " + mde.issue_token()})
    assert_envelope(resp, 404, "NotFound")


# ----------------------------------------------------------------------------- dataset

def test_dataset_is_pinned():
    # Guards against accidental changes: other tests compute expectations from this module.
    assert dataset.ip_stats("98.120.161.84", 720) == {
        "organizationPrevalence": 8, "orgFirstSeen": "2026-11-12T03:54:08Z", "orgLastSeen": "2026-11-26T05:34:28Z"}
    assert dataset.ip_stats("98.120.161.84", 24) == {
        "organizationPrevalence": 1, "orgFirstSeen": "2026-11-26T00:00:01Z", "orgLastSeen": "2026-11-26T05:34:28Z"}
    assert dataset.ip_stats("86.41.79.238", 720)["orgFirstSeen"] == "2026-11-12T11:00:04.6398131Z"
    assert dataset.ip_stats("101.83.250.29", 720) == {
        "organizationPrevalence": 0, "orgFirstSeen": None, "orgLastSeen": None}


def test_canonical():
    assert dataset.canonical("::ffff:10.1.2.3") == "10.1.2.3"
    assert dataset.canonical(" 2001:DB8:0:0::1 ") == "2001:db8::1"
    assert dataset.canonical("fe80::1%eth0") == "fe80::1"
    for bad in ("", "1.2.3", "10.1.2.3%eth0", "x", "2001:db8::1::2", "fe80::1%"):
        with pytest.raises(ValueError):
            dataset.canonical(bad)
    assert dataset.ip_stats("::ffff:98.120.161.84") == dataset.ip_stats("98.120.161.84")
    assert dataset.ip_stats("nope", 24) is None
    with pytest.raises(ValueError):
        dataset.ip_stats("10.0.0.1", 0)
    with pytest.raises(ValueError):
        dataset.ip_stats("10.0.0.1", 721)


def test_dataset_shape():
    all_ips = dataset.ips(3000)
    assert len(set(all_ips)) == 3000
    results = [dataset.ip_stats(ip, 720) for ip in all_ips]
    found = [r for r in results if r["organizationPrevalence"] > 0]
    assert 0.62 < len(found) / len(results) < 0.78
    prevalences = [r["organizationPrevalence"] for r in found]
    assert max(prevalences) <= 70000 and max(prevalences) > 10000
    assert sum(1 for p in prevalences if p <= 3) > 0.05 * len(found)
    assert all(r["orgFirstSeen"] is None and r["orgLastSeen"] is None
               for r in results if r["organizationPrevalence"] == 0)
    frac = [r for r in found if "." in r["orgLastSeen"]]
    assert 0.05 * len(found) < len(frac) < 0.2 * len(found)


@pytest.mark.parametrize("ip", dataset.ips(60, seed=7, family="mixed"))
def test_dataset_windows_and_monotonic(ip):
    previous = 0
    for lookback in (1, 2, 6, 24, 48, 72, 168, 336, 719, 720):
        r = dataset.ip_stats(ip, lookback)
        p = r["organizationPrevalence"]
        assert p >= previous
        previous = p
        if p:
            first, last = ticks(r["orgFirstSeen"]), ticks(r["orgLastSeen"])
            assert -lookback * 3600 * 10 ** 7 < first <= last < 0
        else:
            assert r["orgFirstSeen"] is None and r["orgLastSeen"] is None


def test_ips_helper():
    assert dataset.ips(20, "found", seed=1) == dataset.ips(20, "found", seed=1)
    assert set(dataset.ips(20, seed=1)).isdisjoint(dataset.ips(20, seed=2))
    for ip in dataset.ips(20, "found", lookback_hours=24):
        assert dataset.status_of(ip, 24) == "found"
    for ip in dataset.ips(20, "not_seen", family=6):
        assert dataset.status_of(ip) == "not_seen" and ":" in ip
    invalid = dataset.ips(20, "invalid", family="mixed")
    assert len(set(invalid)) == 20 and all(dataset.status_of(ip) == "invalid" for ip in invalid)
    assert all(dataset.canonical(ip) == ip for ip in dataset.ips(20, family="mixed"))
