"""Certificate credentials: the PEM private key and SHA-1 thumbprint that msal signs a client assertion with.

msal builds the client assertion (claims, audience, expiry, ``x5t`` header) and has PyJWT sign it with
RS256. PyJWT signs RS256 with ``cryptography`` when that is importable (Splunk's own Python usually has
it). The app does not vendor ``cryptography`` (compiled code, one build per OS and CPU), so where it is
absent this module registers an RS256 signer of its own with PyJWT, in pure Python: RSASSA-PKCS1-v1_5
with SHA-256 (RFC 8017, 8.2), which is deterministic, so its signatures are byte for byte those of
``cryptography`` (a unit test compares them). The private-key operation uses the CRT with random
blinding, and every signature is checked with the public key before it leaves (a faulty CRT result
would otherwise reveal the key).

Supported keys: unencrypted RSA, PKCS#1 (``BEGIN RSA PRIVATE KEY``) or PKCS#8 (``BEGIN PRIVATE KEY``),
2048 bits or more. A PEM bundle holding the certificate too is fine: the key block is taken from it.
"""

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import threading

from ..core.accounts import normalise_thumbprint
from ..core.errors import CredentialError

_PEM_BLOCK = re.compile(
    r"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)
_RSA_OID = bytes.fromhex("2a864886f70d010101")  # 1.2.840.113549.1.1.1 rsaEncryption
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
MIN_KEY_BITS = 2048


def private_key_block(pem: str) -> str:
    """The private-key PEM block of ``pem`` (which may also hold certificates)."""
    text = str(pem or "").replace("\r\n", "\n").replace("\\n", "\n")
    for match in _PEM_BLOCK.finditer(text):
        label = match.group(1)
        if label in ("RSA PRIVATE KEY", "PRIVATE KEY"):
            return match.group(0).strip() + "\n"
        if label == "ENCRYPTED PRIVATE KEY" or "Proc-Type: 4,ENCRYPTED" in match.group(2):
            raise CredentialError("The certificate key is encrypted; store it unencrypted (Splunk's credential "
                                  "store encrypts it at rest), e.g. openssl pkey -in key.pem -out plain.pem.")
        if label in ("EC PRIVATE KEY", "DSA PRIVATE KEY", "OPENSSH PRIVATE KEY"):
            raise CredentialError("The certificate key must be an RSA key (found %s)." % label.split()[0])
    raise CredentialError("The stored certificate credential holds no PEM private key "
                          "(-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----).")


# -- DER ------------------------------------------------------------------------------------------------

def _read_tlv(data: bytes, pos: int):
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, data[pos:end], end


def _sequence_items(data: bytes):
    items, pos = [], 0
    while pos < len(data):
        tag, value, pos = _read_tlv(data, pos)
        items.append((tag, value))
    return items


def _integers(data: bytes, count: int):
    tag, body, _ = _read_tlv(data, 0)
    if tag != 0x30:
        raise ValueError("not a DER SEQUENCE")
    items = _sequence_items(body)
    if len(items) < count or any(t != 0x02 for t, _ in items[:count]):
        raise ValueError("not an RSA private key")
    return [int.from_bytes(v, "big", signed=True) for _, v in items[:count]]


class RsaPrivateKey:
    """An RSA private key's numbers, from PKCS#1 or PKCS#8 PEM."""

    def __init__(self, n, e, d, p, q, dp, dq, qinv):
        self.n, self.e, self.d, self.p, self.q = n, e, d, p, q
        self.dp, self.dq, self.qinv = dp, dq, qinv
        self.size = (n.bit_length() + 7) // 8
        self._lock = threading.Lock()

    @classmethod
    def from_pem(cls, pem) -> "RsaPrivateKey":
        if isinstance(pem, bytes):
            pem = pem.decode("ascii", "replace")
        block = private_key_block(pem)
        match = _PEM_BLOCK.search(block)
        try:
            der = base64.b64decode("".join(match.group(2).split()), validate=True)
            if match.group(1) == "PRIVATE KEY":  # PKCS#8: SEQUENCE { version, AlgorithmIdentifier, OCTET STRING }
                tag, body, _ = _read_tlv(der, 0)
                items = _sequence_items(body) if tag == 0x30 else []
                if len(items) < 3 or items[1][0] != 0x30 or items[2][0] != 0x04:
                    raise ValueError("not a PKCS#8 key")
                algorithm = _sequence_items(items[1][1])
                if not algorithm or algorithm[0] != (0x06, _RSA_OID):
                    raise CredentialError("The certificate key must be an RSA key.")
                der = items[2][1]
            version, n, e, d, p, q, dp, dq, qinv = _integers(der, 9)
        except (binascii.Error, ValueError) as error:
            raise CredentialError("The certificate key could not be read (%s)." % error)
        if version != 0 or p * q != n or n.bit_length() < MIN_KEY_BITS:
            raise CredentialError("The certificate key is not a usable RSA key of %d bits or more." % MIN_KEY_BITS)
        return cls(n, e, d, p, q, dp, dq, qinv)

    def _private_op(self, m: int) -> int:
        # Blinding: sign m * r^e instead of m, then divide by r; the timing of pow() then says nothing
        # about m. CRT: two half-size exponentiations.
        while True:
            r = secrets.randbelow(self.n - 2) + 2
            try:
                r_inv = pow(r, -1, self.n)
                break
            except ValueError:  # r shares a factor with n: astronomically unlikely
                continue
        blinded = (m * pow(r, self.e, self.n)) % self.n
        s1 = pow(blinded, self.dp, self.p)
        s2 = pow(blinded, self.dq, self.q)
        h = (self.qinv * (s1 - s2)) % self.p
        return ((s2 + h * self.q) * r_inv) % self.n

    def sign_sha256(self, message: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 signature of ``message`` with SHA-256."""
        encoded = _emsa_pkcs1_v15(hashlib.sha256(message).digest(), self.size)
        m = int.from_bytes(encoded, "big")
        with self._lock:
            s = self._private_op(m)
        if pow(s, self.e, self.n) != m:  # never release a faulty signature
            raise CredentialError("RSA signing failed its own check.")
        return s.to_bytes(self.size, "big")

    def verify_sha256(self, message: bytes, signature: bytes) -> bool:
        if len(signature) != self.size:
            return False
        s = int.from_bytes(signature, "big")
        if s >= self.n:
            return False
        expected = _emsa_pkcs1_v15(hashlib.sha256(message).digest(), self.size)
        return hmac.compare_digest(pow(s, self.e, self.n).to_bytes(self.size, "big"), expected)


def _emsa_pkcs1_v15(digest: bytes, size: int) -> bytes:
    t = _SHA256_DIGEST_INFO + digest
    if size < len(t) + 11:
        raise CredentialError("The certificate key is too short.")
    return b"\x00\x01" + b"\xff" * (size - len(t) - 3) + b"\x00" + t


# -- PyJWT ----------------------------------------------------------------------------------------------

_registered = False
_register_lock = threading.Lock()


def ensure_rs256() -> str:
    """Make sure PyJWT can sign RS256: "cryptography" when PyJWT has it, else "pure-python" (registered here)."""
    global _registered
    import jwt  # at first use: only certificate accounts sign with PyJWT
    from jwt.algorithms import Algorithm

    with _register_lock:
        if _registered:
            return "pure-python"

        class PurePythonRS256(Algorithm):
            def prepare_key(self, key):
                if isinstance(key, RsaPrivateKey):
                    return key
                return RsaPrivateKey.from_pem(key)

            def sign(self, msg, key):
                return key.sign_sha256(msg)

            def verify(self, msg, key, sig):
                return isinstance(key, RsaPrivateKey) and key.verify_sha256(msg, sig)

            @staticmethod
            def to_jwk(key_obj, as_dict=False):
                raise NotImplementedError("not used")

            @staticmethod
            def from_jwk(jwk):
                raise NotImplementedError("not used")

        try:
            jwt.register_algorithm("RS256", PurePythonRS256())
        except ValueError:  # "Algorithm already has a handler": PyJWT signs with cryptography
            return "cryptography"
        _registered = True
        return "pure-python"


def certificate_credential(pem: str, thumbprint: str) -> dict:
    """msal's ``client_credential`` for a certificate, checked early so a bad key is one clear error."""
    block = private_key_block(pem)
    RsaPrivateKey.from_pem(block)  # readable, RSA, big enough
    try:
        sha1 = normalise_thumbprint(thumbprint)
    except ValueError as error:
        raise CredentialError(str(error))
    ensure_rs256()
    return {"private_key": block, "thumbprint": sha1}
