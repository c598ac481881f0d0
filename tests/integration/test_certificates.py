"""Certificate credentials: msal signs the client assertion with the stored PEM key; Entra ID's stand-in
checks its signature, audience and expiry against the registered certificate.

The command runs here in the dev venv (PyJWT signs with cryptography) and, in the package stage, on bare
Python 3.9 and 3.13 where cryptography is absent and the app's pure-Python RS256 signs instead.
"""

import datetime
import hashlib

import pytest

from defender_ipstats.core.errors import CredentialError
from defender_ipstats.microsoft import certs
from harness import events, expected_fields
from standins import dataset
from standins.defender import DEFAULT_CLIENT_ID, DEFAULT_TENANT, DefenderStandin


def make_certificate(bits=2048, pkcs1=False):
    """(private key PEM, certificate PEM, SHA-1 thumbprint hex) of a fresh self-signed certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "defenderipstats-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL if pkcs1
                                else serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    thumbprint = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return key_pem, cert_pem, thumbprint


@pytest.fixture(scope="module")
def certificate():
    return make_certificate()


# -- the pure-Python signer -------------------------------------------------------------------------

@pytest.mark.parametrize("pkcs1", [False, True])
def test_pure_python_signature_is_byte_for_byte_cryptographys(pkcs1):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    key_pem, _, _ = make_certificate(pkcs1=pkcs1)
    reference = serialization.load_pem_private_key(key_pem.encode(), password=None)
    ours = certs.RsaPrivateKey.from_pem(key_pem)
    for message in (b"", b"header.payload", bytes(range(256)) * 40):
        signature = ours.sign_sha256(message)
        assert signature == reference.sign(message, padding.PKCS1v15(), hashes.SHA256())
        assert ours.verify_sha256(message, signature)
        assert not ours.verify_sha256(message + b"x", signature)


def test_key_is_found_in_a_bundle_with_the_certificate(certificate):
    key_pem, cert_pem, thumbprint = certificate
    credential = certs.certificate_credential(cert_pem + "\n" + key_pem, thumbprint.upper())
    assert credential["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert credential["thumbprint"] == thumbprint


@pytest.mark.parametrize("pem, reason", [
    ("", "no PEM private key"),
    ("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----", "encrypted"),
    ("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----", "RSA key"),
    ("-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----", "could not be read"),
])
def test_unusable_keys_are_one_clear_error(pem, reason):
    with pytest.raises(CredentialError, match=reason):
        certs.certificate_credential(pem, "a" * 40)


def test_short_keys_are_refused():
    key_pem, _, _ = make_certificate(bits=1024)
    with pytest.raises(CredentialError, match="2048 bits"):
        certs.RsaPrivateKey.from_pem(key_pem)


@pytest.mark.parametrize("text, ok", [("AB:CD:" * 10, True), ("ab cd " * 10, True), ("0" * 40, True),
                                      ("g" * 40, False), ("0" * 64, False), ("AB:CD" * 9, False)])
def test_thumbprints(text, ok):
    if ok:
        assert certs.normalise_thumbprint(text) == text.replace(" ", "").replace(":", "").lower()
    else:
        with pytest.raises(ValueError):
            certs.normalise_thumbprint(text)


def test_msal_signs_with_the_pure_python_rs256_when_cryptography_is_absent(certificate):
    """PyJWT without cryptography, as on bare Python: the app's RS256 registers and msal signs with it."""
    import jwt
    import msal

    from defender_ipstats.microsoft.http import AppSession

    key_pem, cert_pem, thumbprint = certificate
    standin = DefenderStandin(tenants={DEFAULT_TENANT: {DEFAULT_CLIENT_ID: {"certificate": cert_pem}}}).start()
    original = jwt.api_jws._jws_global_obj._algorithms.get("RS256")
    try:
        jwt.unregister_algorithm("RS256")
        certs._registered = False
        assert certs.ensure_rs256() == "pure-python"
        app = msal.ConfidentialClientApplication(
            DEFAULT_CLIENT_ID, client_credential=certs.certificate_credential(key_pem, thumbprint),
            authority=standin.authority(), instance_discovery=False,
            http_client=AppSession(verify=standin.ca_bundle))
        result = app.acquire_token_for_client(scopes=["https://api.securitycenter.microsoft.com/.default"])
        assert "access_token" in result, result
        assert standin.token_requests[-1].credential == "certificate"
    finally:
        jwt.unregister_algorithm("RS256")
        jwt.register_algorithm("RS256", original)
        certs._registered = False
        standin.stop()


# -- end to end ---------------------------------------------------------------------------------------

def _certificate_app(splunkd, tmp_path, cert_pem):
    from harness import AppHarness

    defender = DefenderStandin(tenants={DEFAULT_TENANT: {DEFAULT_CLIENT_ID: {"certificate": cert_pem}}}).start()
    return AppHarness(splunkd, defender, tmp_path)


def test_certificate_account_enriches_events(splunkd, tmp_path, certificate):
    key_pem, cert_pem, thumbprint = certificate
    app = _certificate_app(splunkd, tmp_path, cert_pem)
    try:
        app.configure_account(secret=key_pem, auth="certificate", certificate_thumbprint=thumbprint)
        ips = dataset.ips(3, status="found", seed=41)
        run = app.search(["field=src_ip", "backend=ipstats"], [events(ips)])
        assert run.returncode == 0, run.stderr
        assert run.errors == []
        for record, ip in zip(run.records, ips):
            assert {k: record[k] for k in expected_fields(ip)} == expected_fields(ip)
        assert [r.credential for r in app.defender.token_requests] == ["certificate"]
        assert app.defender.token_calls(status=200) == 1
        assert key_pem.strip().splitlines()[1] not in app.log_text()
    finally:
        app.defender.stop()


def test_unregistered_certificate_is_one_clear_error(splunkd, tmp_path, certificate):
    _, cert_pem, _ = certificate
    other_key, _, other_thumbprint = make_certificate()
    app = _certificate_app(splunkd, tmp_path, cert_pem)
    try:
        app.configure_account(secret=other_key, auth="certificate", certificate_thumbprint=other_thumbprint)
        sent = events(dataset.ips(2, status="found", seed=42))
        run = app.search(["field=src_ip", "backend=ipstats"], [sent])
        assert len(run.records) == len(sent)
        assert any("certificate was not accepted" in text for text in run.errors), run.errors
        assert other_key.strip().splitlines()[1] not in repr(run.messages) + app.log_text()
    finally:
        app.defender.stop()


def test_certificate_account_needs_a_thumbprint(app):
    app.configure_account(auth="certificate", certificate_thumbprint="")
    run = app.search(["field=src_ip"], [events(["10.0.0.1"])])
    assert any("certificate_thumbprint" in text for text in run.errors), run.errors
