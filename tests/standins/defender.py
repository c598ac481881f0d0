"""A local HTTPS stand-in for Microsoft Entra ID (client credentials) and the
Defender for Endpoint ``GET /api/ips/{ip}/stats`` API, for tests only.

Usage::

    with DefenderStandin() as mde:
        app = msal.ConfidentialClientApplication(
            DEFAULT_CLIENT_ID, client_credential=DEFAULT_SECRET,
            authority=mde.authority(), instance_discovery=False, verify=mde.ca_bundle)
        token = app.acquire_token_for_client(scopes=[DEFENDER_SCOPE])["access_token"]
        requests.get(mde.base_url + "/api/ips/10.1.2.3/stats?lookBackHours=48",
                     headers={"Authorization": "Bearer " + token}, verify=mde.ca_bundle)

The server is the standard library's ``ThreadingHTTPServer`` (HTTP/1.1 with
keep-alive) behind TLS from a throwaway ``trustme`` CA; it listens on
127.0.0.1, port 0. Statistics come from :mod:`dataset` (a pure function the tests
import too). Behaviour follows Microsoft's public docs (get-ip-statistics.md,
common-errors.md) and the error replies Entra ID is known to send.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
import uuid
from collections import deque
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union
from urllib.parse import parse_qs, unquote, unquote_plus

try:  # works both as ``tests.standins.defender`` and with tests/standins on sys.path
    from . import dataset as _dataset
    from . import hunting as _hunting
except ImportError:  # pragma: no cover
    import dataset as _dataset  # type: ignore
    import hunting as _hunting  # type: ignore

__all__ = [
    "DefenderStandin",
    "ManualClock",
    "ApiRecord",
    "TokenRecord",
    "DEFAULT_TENANT",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_SECRET",
    "DEFENDER_SCOPE",
    "GRAPH_SCOPE",
    "MTP_SCOPE",
    "IP_READ_ALL",
    "THREAT_HUNTING_READ_ALL",
]

DEFAULT_TENANT = "11111111-2222-3333-4444-555555555555"
DEFAULT_CLIENT_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
DEFAULT_SECRET = "s3cr3t-standin-value"
DEFENDER_SCOPE = "https://api.securitycenter.microsoft.com/.default"
#: Microsoft Threat Protection: a *different* resource than the MDE API (a common mistake).
MTP_SCOPE = "https://api.security.microsoft.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
IP_READ_ALL = "Ip.Read.All"
THREAT_HUNTING_READ_ALL = "ThreatHunting.Read.All"
DEFAULT_ROLES = (IP_READ_ALL, THREAT_HUNTING_READ_ALL)

_AAD_PUBLIC_HOST = "login.microsoftonline.com"
_API_CONTENT_TYPE = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"
_AAD_CONTENT_TYPE = "application/json; charset=utf-8"
_CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

_STATUS_FAULT_CODES = {
    400: ("BadRequest", "General Bad Request error message."),
    401: ("Unauthorized", "Unauthorized (invalid or expired authorization header)."),
    403: ("Forbidden", "Missing application roles. API required roles: Ip.Read.All"),
    404: ("NotFound", "General Not Found error message."),
    429: ("TooManyRequests", "API calls quota exceeded! maximum allowed 100 per 00:01:00"),
    500: ("InternalServerError", "An error has occurred."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable."),
}


# --------------------------------------------------------------------------- records

class _Record:
    """Attribute access plus ``record["field"]`` for convenience in tests."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def as_dict(self) -> Dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __repr__(self) -> str:
        return "%s(%s)" % (type(self).__name__, ", ".join(
            "%s=%r" % (k, getattr(self, k)) for k in self.__slots__ if k != "token"))


class ApiRecord(_Record):
    """One request to the API host (anything not under ``/<tenant>/``).

    ``path`` is the request target exactly as received (with the query string);
    ``status`` is the HTTP status sent, or ``None`` when the connection was reset
    (fault ``"reset"``) or the client went away; ``token`` is the bearer token sent
    (or ``None``); ``tenant``/``client_id`` are those of a known token; ``fault`` is
    the injected fault that this call consumed, if any; ``time`` is ``time.time()``
    when the request arrived.
    """

    __slots__ = ("method", "path", "status", "token", "tenant", "client_id", "ip",
                 "lookback", "fault", "time")

    def __init__(self, method: str, path: str, time_: float) -> None:
        self.method = method
        self.path = path
        self.status = None  # type: Optional[int]
        self.token = None  # type: Optional[str]
        self.tenant = None  # type: Optional[str]
        self.client_id = None  # type: Optional[str]
        self.ip = None  # type: Optional[str]
        self.lookback = None  # type: Optional[str]
        self.fault = None  # type: Optional[Union[int, str]]
        self.time = time_


class TokenRecord(_Record):
    """One POST to a token endpoint. ``credential`` is ``"secret"``,
    ``"certificate"`` or ``None``; ``error`` the OAuth error sent, if any."""

    __slots__ = ("tenant", "client_id", "grant_type", "scope", "status", "error",
                 "error_code", "credential", "fault", "time")

    def __init__(self, tenant: str, time_: float) -> None:
        self.tenant = tenant
        self.client_id = None  # type: Optional[str]
        self.grant_type = None  # type: Optional[str]
        self.scope = None  # type: Optional[str]
        self.status = None  # type: Optional[int]
        self.error = None  # type: Optional[str]
        self.error_code = None  # type: Optional[int]
        self.credential = None  # type: Optional[str]
        self.fault = None  # type: Optional[Union[int, str]]
        self.time = time_


class ManualClock:
    """A settable monotonic clock for ``DefenderStandin(clock=...)``."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += float(seconds)


class _Client:
    __slots__ = ("client_id", "secret", "certificate", "sha1", "sha256", "roles")

    def __init__(self, client_id: str, secret: Optional[str], certificate: Optional[Union[str, bytes]],
                 roles: Iterable[str]) -> None:
        self.client_id = client_id
        self.secret = secret
        self.certificate = None
        self.sha1 = self.sha256 = None  # type: Optional[bytes]
        if certificate:
            from cryptography import x509  # lazy: only needed for certificate clients
            from cryptography.hazmat.primitives import serialization

            pem = certificate.encode("ascii") if isinstance(certificate, str) else certificate
            cert = x509.load_pem_x509_certificate(pem)
            der = cert.public_bytes(serialization.Encoding.DER)
            self.certificate = cert
            self.sha1 = hashlib.sha1(der).digest()
            self.sha256 = hashlib.sha256(der).digest()
        self.roles = tuple(roles)


class _Token:
    __slots__ = ("tenant", "client_id", "scope", "resource", "roles", "expires_at", "expired")

    def __init__(self, tenant: str, client_id: str, scope: str, roles: Tuple[str, ...],
                 expires_at: float) -> None:
        self.tenant = tenant
        self.client_id = client_id
        self.scope = scope
        self.resource = scope[: -len("/.default")] if scope.endswith("/.default") else scope
        self.roles = roles
        self.expires_at = expires_at
        self.expired = False


class _Reset(Exception):
    """Raised inside the handler to drop the connection with a TCP reset."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _timespan(seconds: float) -> str:
    s = int(round(seconds))
    return "%02d:%02d:%02d" % (s // 3600, (s % 3600) // 60, s % 60)


def _parse_fault(fault: Union[int, str]) -> Union[int, str]:
    if isinstance(fault, bool):
        raise ValueError("bad fault %r" % (fault,))
    if isinstance(fault, int):
        if not 400 <= fault <= 599:
            raise ValueError("fault status must be 4xx or 5xx, got %r" % (fault,))
        return fault
    if isinstance(fault, str):
        if fault in ("malformed", "schema_invalid", "expire_tokens", "reset"):
            return fault
        if fault.startswith("slow:"):
            seconds = float(fault[5:])
            if not 0 <= seconds <= 600:
                raise ValueError("slow seconds must be in 0..600")
            return fault
        if fault.isdigit():
            return _parse_fault(int(fault))
    raise ValueError("unknown fault %r" % (fault,))


# --------------------------------------------------------------------------- server

class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, standin: DefenderStandin, ssl_ctx: ssl.SSLContext) -> None:
        self.standin = standin
        self.ssl_ctx = ssl_ctx
        ThreadingHTTPServer.__init__(self, ("127.0.0.1", 0), _Handler)

    def finish_request(self, request: socket.socket, client_address: Any) -> None:
        # The TLS handshake runs here, in the per-connection thread, so a slow or
        # broken client never blocks the accept loop.
        st = self.standin
        try:
            request.settimeout(st.handshake_timeout)
            conn = self.ssl_ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            st._note_tls_error(exc)
            return
        st._track(conn, True)
        try:
            conn.settimeout(st.idle_timeout)
            self.RequestHandlerClass(conn, client_address, self)
        except _Reset:
            pass
        except (OSError, ssl.SSLError, ValueError):
            pass  # client went away, timed out, or we closed it at stop()
        except Exception as exc:  # a bug in the stand-in: keep it visible to tests
            st.handler_errors.append(repr(exc))
        finally:
            st._track(conn, False)
            try:
                conn.close()
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:  # pragma: no cover
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "DefenderStandin/1.0"
    sys_version = ""
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    # -- plumbing ---------------------------------------------------------------
    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length:
            try:
                n = int(length)
            except ValueError:
                n = 0
            return self.rfile.read(n) if n > 0 else b""
        return b""

    def _send(self, status: int, body: bytes, content_type: str,
              headers: Optional[Dict[str, str]] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, obj: Any, content_type: str,
                   headers: Optional[Dict[str, str]] = None) -> None:
        self._send(status, json.dumps(obj, separators=(",", ":")).encode("utf-8"),
                   content_type, headers)

    def _reset(self) -> None:
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        raise _Reset()

    def _dispatch(self) -> None:
        st = self.server.standin
        with st._lock:
            st.peers.append(self.client_address[0])
        path = self.path.split("?", 1)[0]
        parts = [p for p in path.split("/") if p != ""]
        if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            if self.command in ("GET", "HEAD"):
                return st._handle_discovery(self, parts[0])
            return st._handle_method_not_allowed(self)
        if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
            body = self._read_body()
            if self.command == "POST":
                return st._handle_token(self, parts[0], body)
            return st._handle_method_not_allowed(self)
        if path == _hunting.HUNTING_PATH:
            return st.hunting.handle(self, self._read_body())
        self._read_body()
        return st._handle_api(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch


# --------------------------------------------------------------------------- stand-in

class DefenderStandin:
    """Entra ID client-credentials token service + Defender IP statistics API.

    Parameters
    ----------
    tenants: ``{tenant_id: {client_id: secret}}``. A client value may also be a
        dict ``{"secret": str|None, "certificate": PEM|None, "roles": [...]}``
        (``roles`` default: ``Ip.Read.All`` and ``ThreatHunting.Read.All``).
        Default: one tenant ``DEFAULT_TENANT`` with ``DEFAULT_CLIENT_ID`` /
        ``DEFAULT_SECRET``. Tenant ids are matched case-insensitively.
    scopes: the token scopes that give Defender API tokens.
    other_scopes: further resources the token service knows; their tokens get
        403 at the API (default: ``api.security.microsoft.com`` - a different
        resource than the MDE API - and Microsoft Graph). Any other
        ``<resource>/.default`` gets ``invalid_resource`` (AADSTS500011).
    rate_per_minute, rate_per_hour: sliding-window quotas per (tenant, client).
    token_lifetime: seconds; ``expires_in``/``ext_expires_in`` of issued tokens.
    not_seen_mode: ``"zero"`` (200, prevalence 0, null dates) or ``"404"``.
    clock: monotonic time source for token expiry and rate windows
        (default ``time.monotonic``; see :class:`ManualClock`).
    window_seconds: lengths of the two rate windows (default 60 and 3600 s).
    throttled_calls_count: when True, calls answered 429 also take a place in
        the windows (models "resubmitting early prolongs the throttling").
    throttle_code: the ``error.code`` of a 429 (``"TooManyRequests"`` per
        common-errors.md; ``"429"`` has been observed in the wild).
    dataset: ``f(ip, lookback_hours) -> dict | None``, default
        :func:`dataset.ip_stats`.
    org_prevalence_field: include the undocumented ``orgPrevalence`` string.
    tenant_aliases: ``{"contoso.onmicrosoft.com": tenant_id}``.
    """

    def __init__(
        self,
        tenants: Optional[Dict[str, Dict[str, Any]]] = None,
        scopes: Iterable[str] = (DEFENDER_SCOPE,),
        rate_per_minute: int = 100,
        rate_per_hour: int = 1500,
        token_lifetime: int = 3599,
        not_seen_mode: str = "zero",
        clock: Optional[Callable[[], float]] = None,
        window_seconds: Tuple[float, float] = (60.0, 3600.0),
        throttled_calls_count: bool = False,
        throttle_code: str = "TooManyRequests",
        other_scopes: Iterable[str] = (MTP_SCOPE, GRAPH_SCOPE),
        dataset: Optional[Callable[[str, int], Optional[Dict[str, Any]]]] = None,
        org_prevalence_field: bool = True,
        tenant_aliases: Optional[Dict[str, str]] = None,
        hostnames: Iterable[str] = (),
    ) -> None:
        if not_seen_mode not in ("zero", "404"):
            raise ValueError("not_seen_mode must be 'zero' or '404'")
        if tenants is None:
            tenants = {DEFAULT_TENANT: {DEFAULT_CLIENT_ID: DEFAULT_SECRET}}
        self._lock = threading.RLock()
        self._tenants = {}  # type: Dict[str, Dict[str, _Client]]
        self._tenant_names = {}  # type: Dict[str, str]  # lower -> as configured
        for tenant, clients in tenants.items():
            self._tenant_names[tenant.lower()] = tenant
            self._tenants[tenant] = {}
            for client_id, value in (clients or {}).items():
                self._tenants[tenant][client_id.lower()] = self._make_client(client_id, value)
        for alias, tenant in (tenant_aliases or {}).items():
            if tenant.lower() not in self._tenant_names:
                raise ValueError("alias %r points at an unknown tenant" % alias)
            self._tenant_names[alias.lower()] = self._tenant_names[tenant.lower()]
        self.scopes = tuple(scopes)
        self.other_scopes = tuple(other_scopes)
        self.rate_per_minute = int(rate_per_minute)
        self.rate_per_hour = int(rate_per_hour)
        self.token_lifetime = int(token_lifetime)
        self.not_seen_mode = not_seen_mode
        self.clock = clock or time.monotonic
        self.window_seconds = (float(window_seconds[0]), float(window_seconds[1]))
        self.throttled_calls_count = throttled_calls_count
        self.throttle_code = throttle_code
        self.dataset = dataset or _dataset.ip_stats
        self.org_prevalence_field = org_prevalence_field
        self.handshake_timeout = 10.0
        self.idle_timeout = 30.0
        # Extra names this stand-in answers as (a test proxy routes them here): in its TLS certificate,
        # and taken from the Host header for the discovery document and assertion audiences.
        self.hostnames = tuple(name.lower() for name in hostnames)
        self.peers = []  # type: List[str]  # client address of every request, in order

        self.api_requests = []  # type: List[ApiRecord]
        self.token_requests = []  # type: List[TokenRecord]
        self.discovery_requests = []  # type: List[str]  # tenant segment as requested
        self.issued_tokens = []  # type: List[str]
        self.tls_errors = []  # type: List[str]
        self.handler_errors = []  # type: List[str]
        self._tokens = {}  # type: Dict[str, _Token]
        self._faults = deque()  # type: Deque[Union[int, str]]
        self._token_faults = deque()  # type: Deque[Union[int, str]]
        self._windows = {}  # type: Dict[Tuple[str, str], Tuple[Deque[float], Deque[float]]]
        self._overrides = {}  # type: Dict[str, Optional[Dict[str, Any]]]
        self._conns = set()  # type: set
        self.hunting = _hunting.HuntingService(self)  # Graph runHuntingQuery on the same host
        self.retired_status = None  # type: Optional[int]  # set_retired(): the per-IP endpoint is gone
        self._stopping = threading.Event()
        self._server = None  # type: Optional[_TLSServer]
        self._thread = None  # type: Optional[threading.Thread]
        self._tmpdir = None  # type: Optional[str]
        self.ca = None  # trustme.CA once started
        self.port = None  # type: Optional[int]

    # ------------------------------------------------------------ lifecycle
    def start(self) -> DefenderStandin:
        import trustme  # test-only dependency

        if self._server is not None:
            return self
        self.ca = trustme.CA()
        leaf = self.ca.issue_cert("127.0.0.1", "localhost", *self.hostnames)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        leaf.configure_cert(ctx)
        self._tmpdir = tempfile.mkdtemp(prefix="defender-standin-")
        self._ca_path = os.path.join(self._tmpdir, "ca.pem")
        self.ca.cert_pem.write_to_path(self._ca_path)
        self._stopping.clear()
        self._server = _TLSServer(self, ctx)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
            name="defender-standin-%d" % self.port, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(5)
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> DefenderStandin:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:<port>`` - the app's ``api_url`` (no ``/api``)."""
        self._require_started()
        return "https://127.0.0.1:%d" % self.port

    def authority(self, tenant: Optional[str] = None) -> str:
        """``https://127.0.0.1:<port>/<tenant>`` (default: the first tenant)."""
        return "%s/%s" % (self.base_url, tenant or self.default_tenant)

    def token_endpoint(self, tenant: Optional[str] = None) -> str:
        return "%s/oauth2/v2.0/token" % self.authority(tenant)

    @property
    def ca_bundle(self) -> str:
        """Path of the PEM file of the throwaway CA (exists while started)."""
        self._require_started()
        return self._ca_path

    @property
    def ca_pem(self) -> bytes:
        self._require_started()
        return self.ca.cert_pem.bytes()

    @property
    def default_tenant(self) -> str:
        return next(iter(self._tenants))

    @property
    def default_client_id(self) -> str:
        return next(iter(self._tenants[self.default_tenant].values())).client_id

    def _require_started(self) -> None:
        if self._server is None:
            raise RuntimeError("DefenderStandin is not started")

    # ------------------------------------------------------------ configuration
    @staticmethod
    def _make_client(client_id: str, value: Any) -> _Client:
        if value is None or isinstance(value, str):
            return _Client(client_id, value, None, DEFAULT_ROLES)
        if isinstance(value, dict):
            unknown = set(value) - {"secret", "certificate", "roles"}
            if unknown:
                raise ValueError("unknown client settings %r" % sorted(unknown))
            return _Client(client_id, value.get("secret"), value.get("certificate"),
                           value.get("roles", DEFAULT_ROLES))
        raise TypeError("client value must be a secret string or a dict")

    def add_client(self, client_id: str, secret: Optional[str] = None, tenant: Optional[str] = None,
                   certificate: Optional[Union[str, bytes]] = None,
                   roles: Iterable[str] = DEFAULT_ROLES) -> None:
        """Register (or replace) an app registration in ``tenant`` (created if new)."""
        with self._lock:
            tenant = tenant or self.default_tenant
            canon = self._tenant_names.get(tenant.lower())
            if canon is None:
                self._tenant_names[tenant.lower()] = canon = tenant
                self._tenants[tenant] = {}
            self._tenants[canon][client_id.lower()] = _Client(client_id, secret, certificate, roles)

    def set_roles(self, client_id: str, roles: Iterable[str], tenant: Optional[str] = None) -> None:
        """Change the app roles granted to a client. Like Entra ID, roles are
        baked into tokens when issued: tokens already issued keep their roles."""
        with self._lock:
            self._find_client(tenant or self.default_tenant, client_id).roles = tuple(roles)

    def _find_client(self, tenant: str, client_id: str) -> _Client:
        canon = self._tenant_names[tenant.lower()]
        return self._tenants[canon][client_id.lower()]

    def set_limits(self, rate_per_minute: Optional[int] = None, rate_per_hour: Optional[int] = None) -> None:
        """Change the quotas; calls already in the windows still count."""
        with self._lock:
            if rate_per_minute is not None:
                self.rate_per_minute = int(rate_per_minute)
            if rate_per_hour is not None:
                self.rate_per_hour = int(rate_per_hour)

    def reset_rate_limits(self) -> None:
        """Empty the rate windows of every (tenant, client)."""
        with self._lock:
            self._windows.clear()

    def override(self, ip: str, stats: Optional[Dict[str, Any]]) -> None:
        """Answer ``ip`` (any spelling) with ``stats`` instead of the dataset, for
        every look-back: ``{"organizationPrevalence", "orgFirstSeen",
        "orgLastSeen"}``; ``None`` removes the override."""
        key = _dataset.canonical(ip)
        with self._lock:
            if stats is None:
                self._overrides.pop(key, None)
            else:
                self._overrides[key] = dict(stats)

    # ------------------------------------------------------------ faults
    def inject(self, fault: Union[int, str], times: int = 1) -> None:
        """Queue ``fault`` for the next ``times`` API calls (in order, after the
        faults already queued). Faults: an HTTP status (400, 401, 403, 404, 429,
        500, 502, 503, 504, ...; 429 carries ``Retry-After: 1``); ``"slow:<s>"``
        (wait s seconds, then answer normally); ``"malformed"`` (200 with invalid
        JSON); ``"schema_invalid"`` (200, valid JSON with missing and mistyped
        fields); ``"expire_tokens"`` (every token issued so far expires, then the
        call is answered normally - so 401); ``"reset"`` (TCP reset, no reply).
        A fault is consumed before authentication and, except for ``slow`` and
        ``expire_tokens``, takes no place in the rate windows."""
        parsed = _parse_fault(fault)
        with self._lock:
            self._faults.extend([parsed] * int(times))

    def inject_token_fault(self, fault: Union[int, str], times: int = 1) -> None:
        """Like :meth:`inject` for the token endpoint: a status (Entra-style JSON
        error, 429/503 with ``Retry-After: 1``), ``"slow:<s>"``, ``"malformed"``
        or ``"reset"``."""
        parsed = _parse_fault(fault)
        if parsed in ("schema_invalid", "expire_tokens"):
            raise ValueError("fault %r does not apply to the token endpoint" % (fault,))
        with self._lock:
            self._token_faults.extend([parsed] * int(times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._token_faults.clear()

    @property
    def pending_faults(self) -> List[Union[int, str]]:
        with self._lock:
            return list(self._faults)

    # ------------------------------------------------------------ tokens
    def issue_token(self, tenant: Optional[str] = None, client_id: Optional[str] = None,
                    scope: str = DEFENDER_SCOPE, lifetime: Optional[int] = None) -> str:
        """Issue a token without HTTP (recorded in ``issued_tokens``)."""
        tenant = tenant or self.default_tenant
        client = self._find_client(tenant, client_id or self.default_client_id)
        return self._new_token(self._tenant_names[tenant.lower()], client, scope, lifetime)

    def expire_tokens(self) -> None:
        """Every token issued so far becomes expired (401 at the API)."""
        with self._lock:
            for tok in self._tokens.values():
                tok.expired = True

    def token_info(self, token: str) -> Optional[Dict[str, Any]]:
        """What the stand-in knows of an access token (for other stand-ins)."""
        with self._lock:
            tok = self._tokens.get(token)
            if tok is None:
                return None
            return {
                "tenant": tok.tenant, "client_id": tok.client_id, "scope": tok.scope,
                "audience": tok.resource, "roles": list(tok.roles),
                "expired": self._is_expired(tok),
            }

    def _is_expired(self, tok: _Token) -> bool:
        return tok.expired or self.clock() >= tok.expires_at

    def _new_token(self, tenant: str, client: _Client, scope: str, lifetime: Optional[int] = None) -> str:
        lifetime = self.token_lifetime if lifetime is None else int(lifetime)
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5t": "c3RhbmRpbg", "kid": "c3RhbmRpbg"}
        resource = scope[: -len("/.default")] if scope.endswith("/.default") else scope
        payload = {
            "aud": resource, "iss": "https://sts.windows.net/%s/" % tenant,
            "iat": now, "nbf": now, "exp": now + lifetime,
            "aio": _b64url(secrets.token_bytes(12)), "appid": client.client_id, "appidacr": "1",
            "idp": "https://sts.windows.net/%s/" % tenant, "idtyp": "app",
            "oid": str(uuid.uuid4()), "roles": list(client.roles), "sub": client.client_id,
            "tid": tenant, "uti": _b64url(secrets.token_bytes(16)), "ver": "1.0",
        }
        token = ".".join([
            _b64url(json.dumps(header, separators=(",", ":")).encode()),
            _b64url(json.dumps(payload, separators=(",", ":")).encode()),
            _b64url(secrets.token_bytes(64)),
        ])
        with self._lock:
            self._tokens[token] = _Token(tenant, client.client_id, scope, client.roles,
                                         self.clock() + lifetime)
            self.issued_tokens.append(token)
        return token

    # ------------------------------------------------------------ counters
    def api_calls(self, status: Optional[Union[int, Iterable[int]]] = None) -> int:
        """Number of API requests, all or with the given status (or statuses)."""
        with self._lock:
            if status is None:
                return len(self.api_requests)
            wanted = {status} if isinstance(status, int) else set(status)
            return sum(1 for r in self.api_requests if r.status in wanted)

    @property
    def throttled(self) -> int:
        """How many 429 replies the API sent (including injected ones)."""
        return self.api_calls(429)

    def token_calls(self, status: Optional[int] = None) -> int:
        with self._lock:
            return sum(1 for r in self.token_requests if status is None or r.status == status)

    def reset_counters(self) -> None:
        """Clear the request logs (``issued_tokens`` and rate windows are kept)."""
        with self._lock:
            del self.api_requests[:]
            del self.token_requests[:]
            del self.discovery_requests[:]
            del self.tls_errors[:]

    # ------------------------------------------------------------ internals
    def _track(self, conn: Any, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _note_tls_error(self, exc: BaseException) -> None:
        with self._lock:
            self.tls_errors.append(repr(exc))

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _host(self, handler: _Handler) -> str:
        host = handler.headers.get("Host") or ""
        if host in ("127.0.0.1:%d" % self.port, "localhost:%d" % self.port):
            return "https://" + host
        name = host.lower()[:-len(":443")] if host.endswith(":443") else host.lower()
        if name in self.hostnames:
            return "https://" + name
        return self.base_url

    def _resolve_tenant(self, tenant: str) -> Optional[str]:
        with self._lock:
            return self._tenant_names.get(tenant.lower())

    # ---- Entra ID: discovery
    def _handle_discovery(self, h: _Handler, tenant_in_path: str) -> None:
        with self._lock:
            self.discovery_requests.append(tenant_in_path)
        tenant = self._resolve_tenant(tenant_in_path)
        if tenant is None:
            return self._aad_error(h, 400, "invalid_tenant", 90002, self._tenant_not_found(tenant_in_path))
        base = "%s/%s" % (self._host(h), tenant)
        doc = {
            "token_endpoint": base + "/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "jwks_uri": base + "/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": "https://%s/%s/v2.0" % (_AAD_PUBLIC_HOST, tenant),
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": base + "/oauth2/v2.0/authorize",
            "device_authorization_endpoint": base + "/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": base + "/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "ver"],
            "kerberos_endpoint": base + "/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }
        h._send_json(200, doc, _AAD_CONTENT_TYPE, {"Cache-Control": "max-age=86400, private"})

    @staticmethod
    def _tenant_not_found(tenant: str) -> str:
        return ("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are "
                "signing into the correct cloud. Check with your subscription administrator, this "
                "may happen if there are no active subscriptions for the tenant." % tenant)

    def _aad_error(self, h: _Handler, status: int, error: str, code: int, message: str,
                   record: Optional[TokenRecord] = None,
                   headers: Optional[Dict[str, str]] = None) -> None:
        trace_id = str(uuid.uuid4())
        correlation_id = h.headers.get("client-request-id") or str(uuid.uuid4())
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        body = {
            "error": error,
            "error_description": "AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s"
                                 % (code, message, trace_id, correlation_id, stamp),
            "error_codes": [code],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": "https://%s/error?code=%d" % (_AAD_PUBLIC_HOST, code),
        }
        if record is not None:
            record.status, record.error, record.error_code = status, error, code
        hdrs = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache",
                "x-ms-request-id": trace_id}
        hdrs.update(headers or {})
        h._send_json(status, body, _AAD_CONTENT_TYPE, hdrs)

    # ---- Entra ID: token endpoint
    def _handle_token(self, h: _Handler, tenant_in_path: str, raw_body: bytes) -> None:
        rec = TokenRecord(tenant_in_path, time.time())
        with self._lock:
            self.token_requests.append(rec)
            fault = self._token_faults.popleft() if self._token_faults else None
        try:
            form = {k: v[0] for k, v in parse_qs(raw_body.decode("utf-8", "replace"),
                                                 keep_blank_values=True).items()}
        except Exception:
            form = {}
        rec.grant_type = form.get("grant_type")
        rec.scope = form.get("scope")
        client_id = form.get("client_id")
        secret = form.get("client_secret")
        auth = h.headers.get("Authorization") or ""
        if auth[:6].lower() == "basic ":
            try:
                user, _, pwd = base64.b64decode(auth[6:].strip()).decode("utf-8").partition(":")
                client_id = client_id or unquote_plus(user)
                secret = unquote_plus(pwd)
            except Exception:
                pass
        rec.client_id = client_id

        if fault is not None:
            rec.fault = fault
            if isinstance(fault, str) and fault.startswith("slow:"):
                self._sleep(float(fault[5:]))
            elif fault == "reset":
                h._reset()
            elif fault == "malformed":
                rec.status = 200
                return h._send(200, b'{"token_type":"Bearer","expires_in":35', _AAD_CONTENT_TYPE)
            else:
                status = int(fault)
                extra = {"Retry-After": "1"} if status in (429, 503) else None
                if status >= 500:
                    return self._aad_error(h, status, "temporarily_unavailable", 90033,
                                           "A transient error has occurred. Please try again.", rec, extra)
                if status == 429:
                    return self._aad_error(h, 429, "temporarily_unavailable", 50196,
                                           "The server terminated an operation because it encountered "
                                           "a client request loop.", rec, extra)
                return self._aad_error(h, status, "invalid_request", 90100,
                                       "Invalid request (injected fault).", rec)

        tenant = self._resolve_tenant(tenant_in_path)
        if tenant is None:
            return self._aad_error(h, 400, "invalid_request", 90002,
                                   self._tenant_not_found(tenant_in_path), rec)
        rec.tenant = tenant
        grant = form.get("grant_type")
        if not grant:
            return self._aad_error(h, 400, "invalid_request", 900144,
                                   "The request body must contain the following parameter: 'grant_type'.", rec)
        if grant != "client_credentials":
            return self._aad_error(h, 400, "unsupported_grant_type", 70003,
                                   "The app requested an unsupported grant type '%s'." % grant, rec)
        if not client_id:
            return self._aad_error(h, 400, "invalid_request", 900144,
                                   "The request body must contain the following parameter: 'client_id'.", rec)
        with self._lock:
            client = self._tenants[tenant].get(client_id.lower())
        if client is None:
            return self._aad_error(
                h, 400, "unauthorized_client", 700016,
                "Application with identifier '%s' was not found in the directory '%s'. This can happen "
                "if the application has not been installed by the administrator of the tenant or "
                "consented to by any user in the tenant. You may have sent your authentication "
                "request to the wrong tenant." % (client_id, tenant), rec)

        assertion = form.get("client_assertion")
        if assertion:
            rec.credential = "certificate"
            if form.get("client_assertion_type") != _CLIENT_ASSERTION_TYPE:
                return self._aad_error(h, 400, "invalid_request", 50027,
                                       "Invalid client_assertion_type; expected '%s'." % _CLIENT_ASSERTION_TYPE, rec)
            problem = self._check_assertion(h, tenant, tenant_in_path, client, assertion)
            if problem is not None:
                return self._aad_error(h, 401, "invalid_client", problem[0], problem[1], rec)
        elif secret is not None and secret != "":
            rec.credential = "secret"
            if client.secret is None or not hmac.compare_digest(secret.encode("utf-8"),
                                                                client.secret.encode("utf-8")):
                return self._aad_error(
                    h, 401, "invalid_client", 7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is "
                    "the client secret value, not the client secret ID, for a secret added to app "
                    "'%s'." % client.client_id, rec)
        else:
            return self._aad_error(h, 401, "invalid_client", 7000218,
                                   "The request body must contain the following parameter: "
                                   "'client_assertion' or 'client_secret'.", rec)

        scope = (form.get("scope") or "").strip()
        if not scope:
            return self._aad_error(h, 400, "invalid_request", 900144,
                                   "The request body must contain the following parameter: 'scope'.", rec)
        scope_list = scope.split()
        if len(scope_list) != 1 or not scope_list[0].endswith("/.default"):
            return self._aad_error(
                h, 400, "invalid_scope", 70011,
                "The provided request must include a 'scope' input parameter. The provided value for "
                "the input parameter 'scope' is not valid. The scope %s is not valid." % scope, rec)
        scope = scope_list[0]
        known = {s.lower(): s for s in self.scopes + self.other_scopes}
        if scope.lower() not in known:
            return self._aad_error(
                h, 400, "invalid_resource", 500011,
                "The resource principal named %s was not found in the tenant named %s. This can "
                "happen if the application has not been installed by the administrator of the "
                "tenant or consented to by any user in the tenant. You might have sent your "
                "authentication request to the wrong tenant." % (scope[: -len("/.default")], tenant), rec)
        token = self._new_token(tenant, client, known[scope.lower()])
        rec.status = 200
        h._send_json(200, {
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": token,
        }, _AAD_CONTENT_TYPE, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})

    def _check_assertion(self, h: _Handler, tenant: str, tenant_in_path: str, client: _Client,
                         assertion: str) -> Optional[Tuple[int, str]]:
        import jwt  # PyJWT, a dependency of msal

        if client.certificate is None:
            return 700027, ("The certificate with identifier used to sign the client assertion is not "
                            "registered on application. [Reason - The key was not found.]")
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            return 50027, "JWT token is invalid or malformed."
        # base64url, with or without padding (msal keeps the '=')
        x5t = str(header.get("x5t") or "").rstrip("=")
        x5t256 = str(header.get("x5t#S256") or "").rstrip("=")
        if not ((x5t and x5t == _b64url(client.sha1)) or (x5t256 and x5t256 == _b64url(client.sha256))):
            return 700027, ("The certificate with identifier used to sign the client assertion is not "
                            "registered on application. [Reason - The key was not found., Thumbprint of "
                            "key used by client: '%s']" % (x5t or x5t256))
        audiences = []
        for t in {tenant, tenant_in_path}:
            audiences.append("%s/%s/oauth2/v2.0/token" % (self._host(h), t))
            audiences.append("%s/%s/oauth2/v2.0/token" % (self.base_url, t))
            audiences.append("https://%s/%s/oauth2/v2.0/token" % (_AAD_PUBLIC_HOST, t))
        try:
            # A PyJWT of its own: the app under test may register algorithms with PyJWT's global one.
            claims = jwt.PyJWT().decode(assertion, client.certificate.public_key(),
                                algorithms=["RS256", "PS256"], audience=audiences,
                                options={"require": ["exp", "aud", "iss", "sub"]})
        except jwt.ExpiredSignatureError:
            return 700024, "Client assertion is not within its valid time range."
        except jwt.InvalidSignatureError:
            return 700027, "Client assertion failed signature validation."
        except jwt.InvalidAudienceError:
            return 700212, "Client assertion audience claim does not match the token endpoint."
        except jwt.PyJWTError:
            return 50027, "JWT token is invalid or malformed."
        if str(claims.get("iss", "")).lower() != client.client_id.lower() or \
                str(claims.get("sub", "")).lower() != client.client_id.lower():
            return 700021, "Client assertion application identifier doesn't match 'client_id' parameter."
        return None

    def _handle_method_not_allowed(self, h: _Handler) -> None:
        h._send_json(405, {"error": {"code": "MethodNotAllowed",
                                     "message": "The requested resource does not support http method '%s'."
                                                % h.command, "target": str(uuid.uuid4())}},
                     _API_CONTENT_TYPE, {"Allow": "GET"})

    # ---- Defender API
    def _api_error(self, h: _Handler, rec: ApiRecord, status: int, code: str, message: str,
                   headers: Optional[Dict[str, str]] = None) -> None:
        rec.status = status
        h._send_json(status, {"error": {"code": code, "message": message, "target": str(uuid.uuid4())}},
                     _API_CONTENT_TYPE, headers)

    def _handle_api(self, h: _Handler) -> None:
        rec = ApiRecord(h.command, h.path, time.time())
        with self._lock:
            self.api_requests.append(rec)
            fault = self._faults.popleft() if self._faults else None
        try:
            self._api(h, rec, fault)
        except _Reset:
            rec.status = None
            raise

    def _api(self, h: _Handler, rec: ApiRecord, fault: Optional[Union[int, str]]) -> None:
        path, _, query = h.path.partition("?")
        parts = path.split("/")
        # ['', 'api', 'ips', '<ip>', 'stats'] (trailing slash tolerated)
        if parts and parts[-1] == "" and len(parts) > 1:
            parts = parts[:-1]
        is_stats = (len(parts) == 5 and parts[0] == "" and parts[1].lower() == "api"
                    and parts[2].lower() == "ips" and parts[4].lower() == "stats")
        auth = h.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        rec.token = token
        if is_stats:
            rec.ip = unquote(parts[3])
        lookback_values = None  # type: Optional[List[str]]
        for k, v in parse_qs(query, keep_blank_values=True).items():
            if k.lower() == "lookbackhours":
                lookback_values = (lookback_values or []) + v
        if lookback_values:
            rec.lookback = lookback_values[0]

        if fault is not None:
            rec.fault = fault
            if isinstance(fault, str) and fault.startswith("slow:"):
                self._sleep(float(fault[5:]))
            elif fault == "expire_tokens":
                self.expire_tokens()
            elif fault == "reset":
                h._reset()
            elif fault == "malformed":
                rec.status = 200
                return h._send(200, ('{"@odata.context":"%s","ipAddress":"%s","organizationPrevalence":12,'
                                     '"orgFirstSeen":"2026-11-2' % (_dataset.ODATA_CONTEXT, rec.ip or ""))
                               .encode("utf-8"), _API_CONTENT_TYPE)
            elif fault == "schema_invalid":
                rec.status = 200
                return h._send_json(200, {
                    "@odata.context": _dataset.ODATA_CONTEXT,
                    "ipAddress": rec.ip,
                    "organizationPrevalence": "a lot",
                    "orgLastSeen": 1764201600,
                }, _API_CONTENT_TYPE)
            else:
                return self._status_fault(h, rec, int(fault))

        if not is_stats:
            return self._api_error(h, rec, 404, "NotFound",
                                   "No HTTP resource was found that matches the request URI '%s'." % path)
        if h.command not in ("GET", "HEAD"):
            rec.status = 405
            return self._handle_method_not_allowed(h)
        if self.retired_status is not None:  # after the Defender for Endpoint API's retirement
            if self.retired_status == 410:
                return self._api_error(h, rec, 410, "Gone", "This API has been retired. Use the Microsoft "
                                                            "Graph security API.")
            return self._api_error(h, rec, self.retired_status, "NotFound", "Resource not found.")

        # authentication
        www = {"WWW-Authenticate": 'Bearer authorization_uri="https://%s/%s/oauth2/authorize", '
                                  'error="invalid_token"' % (_AAD_PUBLIC_HOST, self.default_tenant)}
        if not token:
            return self._api_error(h, rec, 401, "Unauthorized",
                                   "Authorization header is missing or is not a Bearer token.",
                                   {"WWW-Authenticate": "Bearer"})
        with self._lock:
            tok = self._tokens.get(token)
        if tok is None:
            return self._api_error(h, rec, 401, "Unauthorized", "The access token is invalid.", www)
        rec.tenant, rec.client_id = tok.tenant, tok.client_id
        if self._is_expired(tok):
            return self._api_error(h, rec, 401, "Unauthorized", "The access token has expired.", www)

        # quota
        throttle = self._admit((tok.tenant, tok.client_id.lower()))
        if throttle is not None:
            retry_after, message = throttle
            return self._api_error(h, rec, 429, self.throttle_code, message,
                                   {"Retry-After": str(retry_after)})

        # authorisation
        if tok.scope.lower() not in {s.lower() for s in self.scopes} or IP_READ_ALL not in tok.roles:
            return self._api_error(h, rec, 403, "Forbidden",
                                   "Missing application roles. API required roles: Ip.Read.All")

        # validation
        ip_text = rec.ip or ""
        try:
            key = _dataset.canonical(ip_text)
        except ValueError:
            return self._api_error(h, rec, 400, "InvalidIpAddress", "IP address %s is invalid." % ip_text)
        if lookback_values is None:
            lookback = _dataset.MAX_LOOKBACK_HOURS
        else:
            raw = lookback_values[0].strip()
            ok = len(lookback_values) == 1 and re.fullmatch(r"[+-]?[0-9]{1,9}", raw) is not None
            lookback = int(raw) if ok else 0
            if not 1 <= lookback <= _dataset.MAX_LOOKBACK_HOURS:
                return self._api_error(
                    h, rec, 400, "BadRequest",
                    "Invalid input lookBackHours: '%s'. Value must be an integer between 1 and 720."
                    % ",".join(lookback_values))

        with self._lock:
            has_override = key in self._overrides
            stats = self._overrides.get(key)
        if not has_override:
            stats = self.dataset(ip_text, lookback)
        if stats is None:  # a custom dataset may refuse an IP
            return self._api_error(h, rec, 400, "InvalidIpAddress", "IP address %s is invalid." % ip_text)
        prevalence = int(stats.get("organizationPrevalence") or 0)
        if prevalence == 0 and self.not_seen_mode == "404":
            return self._api_error(h, rec, 404, "NotFound", "IP %s was not found." % ip_text)
        body = {
            "@odata.context": _dataset.ODATA_CONTEXT,
            "ipAddress": ip_text,
            "organizationPrevalence": prevalence,
        }  # type: Dict[str, Any]
        if self.org_prevalence_field:
            body["orgPrevalence"] = str(prevalence)
        body["orgFirstSeen"] = stats.get("orgFirstSeen")
        body["orgLastSeen"] = stats.get("orgLastSeen")
        rec.status = 200
        h._send_json(200, body, _API_CONTENT_TYPE, {"OData-Version": "4.0", "request-id": str(uuid.uuid4())})

    def set_retired(self, status: Optional[int] = 410) -> None:
        """Make the per-IP endpoint answer as retired (410 Gone, or 404), or None to bring it back."""
        self.retired_status = status

    def _status_fault(self, h: _Handler, rec: ApiRecord, status: int) -> None:
        if status in (502, 504):
            rec.status = status
            text = "Bad Gateway" if status == 502 else "Gateway Timeout"
            body = ("<html><head><title>%d %s</title></head><body><h1>%d %s</h1></body></html>"
                    % (status, text, status, text)).encode("ascii")
            return h._send(status, body, "text/html")
        code, message = _STATUS_FAULT_CODES.get(status, ("Error", "Injected error."))
        headers = None
        if status == 429:
            code = self.throttle_code
            message = "API calls quota exceeded! maximum allowed %d per %s" % (
                self.rate_per_minute, _timespan(self.window_seconds[0]))
            headers = {"Retry-After": "1"}
        elif status == 401:
            headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        return self._api_error(h, rec, status, code, message, headers)

    def _admit(self, key: Tuple[str, str]) -> Optional[Tuple[int, str]]:
        """Take a place in both windows, or return (Retry-After, message)."""
        with self._lock:
            now = self.clock()
            wm, wh = self.window_seconds
            minute, hour = self._windows.setdefault(key, (deque(), deque()))
            while minute and minute[0] <= now - wm:
                minute.popleft()
            while hour and hour[0] <= now - wh:
                hour.popleft()
            over_m = len(minute) >= self.rate_per_minute
            over_h = len(hour) >= self.rate_per_hour
            if not over_m and not over_h:
                minute.append(now)
                hour.append(now)
                return None
            waits = []
            for over, window, limit, length in ((over_m, minute, self.rate_per_minute, wm),
                                                (over_h, hour, self.rate_per_hour, wh)):
                if over:
                    if limit <= 0:
                        waits.append(length)
                    else:  # the entry whose departure leaves a free place
                        waits.append(window[len(window) - limit] + length - now)
            retry_after = max(1, int(math.ceil(max(waits) - 1e-9)))
            if over_h:
                message = "API calls quota exceeded! maximum allowed %d per %s" % (
                    self.rate_per_hour, _timespan(wh))
            else:
                message = "API calls quota exceeded! maximum allowed %d per %s" % (
                    self.rate_per_minute, _timespan(wm))
            if self.throttled_calls_count:
                minute.append(now)
                hour.append(now)
            return retry_after, message
