"""A small HTTP CONNECT forward proxy for tests: counts the tunnels it makes, and can route names.

Stdlib only. ``ConnectProxy`` listens on 127.0.0.1 (port chosen by the OS) and answers ``CONNECT
host:port`` the way an egress proxy does (Squid's replies): ``200 Connection established`` and then
relays bytes both ways, so TLS stays end to end between the client and the server. It can

* require Basic credentials (``407 Proxy Authentication Required`` without them or with wrong ones);
* refuse every tunnel (``refuse=403``) or tunnels to some hosts (``deny={"host"}``);
* route host names to local stand-ins (``routes={"login.microsoftonline.us": ("127.0.0.1", 4443)}``),
  the way the proxy's own DNS would resolve them: the client never resolves a routed name itself;
* open its upstream connections from its own address (``127.0.0.2`` by default), so a stand-in can
  tell a request that came through the proxy from one that did not.

Anything but CONNECT gets ``405``: the app only speaks HTTPS.
"""

from __future__ import annotations

import base64
import binascii
import select
import socket
import threading
import time
from socketserver import StreamRequestHandler, ThreadingTCPServer
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple

__all__ = ["ConnectProxy", "Tunnel", "PROXY_SOURCE_IP"]

PROXY_SOURCE_IP = "127.0.0.2"


class Tunnel(NamedTuple):
    target: str  # host:port as the client asked for it
    status: int  # what the proxy answered the CONNECT with
    user: Optional[str]  # the proxy user that authenticated, if any
    time: float


class _Server(ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, proxy: ConnectProxy):
        self.proxy = proxy
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(StreamRequestHandler):
    timeout = 30
    rbufsize = 0  # unbuffered: nothing the client sends after the CONNECT head is left in a buffer

    def handle(self) -> None:
        proxy: ConnectProxy = self.server.proxy
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.rfile.readline(8192)
            if not chunk:
                return
            head += chunk
            if len(head) > 65536:
                return self._reply(431, "Request Header Fields Too Large")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3:
            return self._reply(400, "Bad Request")
        method, target, _ = parts
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if method.upper() != "CONNECT":
            return self._reply(405, "Method Not Allowed")
        host, sep, port_text = target.rpartition(":")
        host = host.strip("[]")
        if not sep or not port_text.isdigit():
            return self._reply(400, "Bad Request")
        user = None
        if proxy.credentials is not None:
            user = proxy._authenticate(headers.get("proxy-authorization", ""))
            if user is None:
                proxy._record(target, 407, None)
                return self._reply(407, "Proxy Authentication Required",
                                   [("Proxy-Authenticate", 'Basic realm="standin-proxy"')])
        if proxy.refuse or host.lower() in proxy.deny:
            status = proxy.refuse or 403
            proxy._record(target, status, user)
            return self._reply(status, "Forbidden" if status == 403 else "Refused")
        address = proxy._resolve(host, int(port_text))
        if address is None:
            proxy._record(target, 502, user)
            return self._reply(502, "Bad Gateway")
        try:
            upstream = socket.create_connection(address, timeout=10, source_address=proxy._source)
        except OSError:
            proxy._record(target, 502, user)
            return self._reply(502, "Bad Gateway")
        proxy._record(target, 200, user)
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        with proxy._lock:
            proxy._open.add(upstream)
            proxy._open.add(self.connection)
        try:
            self._relay(upstream)
        finally:
            with proxy._lock:
                proxy._open.discard(upstream)
                proxy._open.discard(self.connection)
            upstream.close()

    def _relay(self, upstream: socket.socket) -> None:
        client = self.connection
        sockets = [client, upstream]
        while True:
            try:
                readable, _, broken = select.select(sockets, [], sockets, 30)
            except (OSError, ValueError):
                return
            if broken or not readable:
                return
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                try:
                    (upstream if sock is client else client).sendall(data)
                except OSError:
                    return

    def _reply(self, status: int, reason: str, headers: Iterable[Tuple[str, str]] = ()) -> None:
        lines = ["HTTP/1.1 %d %s" % (status, reason), "Content-Length: 0", "Connection: close"]
        lines += ["%s: %s" % item for item in headers]
        try:
            self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            self.wfile.flush()
        except OSError:
            pass


class ConnectProxy:
    """See the module docstring. ``url`` is ``http://127.0.0.1:<port>`` once started."""

    def __init__(self, routes: Optional[Dict[str, Tuple[str, int]]] = None,
                 credentials: Optional[Tuple[str, str]] = None, refuse: Optional[int] = None,
                 deny: Iterable[str] = (), source_ip: Optional[str] = PROXY_SOURCE_IP):
        self.routes = {name.lower(): address for name, address in (routes or {}).items()}
        self.credentials = credentials
        self.refuse = refuse
        self.deny = {name.lower() for name in deny}
        self.tunnels: List[Tunnel] = []
        self._lock = threading.Lock()
        self._open = set()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._source = None
        if source_ip:
            try:  # every 127/8 address is this host's on Linux; elsewhere connect from the default one
                probe = socket.socket()
                probe.bind((source_ip, 0))
                probe.close()
                self._source = (source_ip, 0)
            except OSError:
                self._source = None
        self.source_ip = self._source[0] if self._source else None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ConnectProxy:
        if self._server is None:
            self._server = _Server(self)
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="connect-proxy", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> ConnectProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    # ------------------------------------------------------------------ what it saw
    def count(self, host: Optional[str] = None, status: Optional[int] = 200) -> int:
        """Tunnels made (status 200), or CONNECTs answered ``status``; to ``host`` (with or without port)."""
        with self._lock:
            return sum(1 for t in self.tunnels
                       if (status is None or t.status == status)
                       and (host is None or t.target == host or t.target.rpartition(":")[0] == host))

    def targets(self, status: Optional[int] = 200) -> List[str]:
        with self._lock:
            return sorted({t.target for t in self.tunnels if status is None or t.status == status})

    def reset(self) -> None:
        with self._lock:
            del self.tunnels[:]

    # ------------------------------------------------------------------ internals
    def _record(self, target: str, status: int, user: Optional[str]) -> None:
        with self._lock:
            self.tunnels.append(Tunnel(target, status, user, time.time()))

    def _authenticate(self, header: str) -> Optional[str]:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user if (user, password) == tuple(self.credentials) else None

    def _resolve(self, host: str, port: int) -> Optional[Tuple[str, int]]:
        for key in ("%s:%d" % (host.lower(), port), host.lower()):
            if key in self.routes:
                return self.routes[key]
        if host in ("127.0.0.1", "localhost"):
            return ("127.0.0.1", port)
        return None  # the proxy's "DNS" knows nothing else: tests never leave this machine
