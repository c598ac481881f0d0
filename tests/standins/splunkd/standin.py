"""SplunkdStandin: set-up, lifecycle, sessions, test-side state and dispatching; the endpoint groups
are mixins in the sibling modules."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import socket
import sys
import threading
import time
import uuid
from http.cookies import CookieError, SimpleCookie
from http.server import ThreadingHTTPServer
from typing import Any, Dict, Iterable, List, Optional, Tuple
from urllib.parse import unquote, unquote_plus

from .conf import ConfFile, _conf_str, _parse_meta, parse_conf_file
from .configs import ConfEndpoints
from .credentials import _cred_name
from .driver import _PersistentDriver
from .jobs import JobEndpoints
from .kvstore import KVStoreEndpoints
from .layers import ConfLayers
from .model import _REPO_ROOT, DEFAULT_APP, RequestRecord, _Ctx, _Fault, _Reply, _Request
from .passwords import PasswordEndpoints
from .rendering import _REASONS, Rendering, _error_body
from .roles import DEFAULT_ROLES
from .savedsearches import SavedSearchEndpoints
from .scripts import CustomRestEndpoints
from .server import _Handler, _read_chunked
from .shcluster import ClusterEndpoints
from .system import SystemEndpoints


class SplunkdStandin(ConfLayers, Rendering, SystemEndpoints, JobEndpoints, ConfEndpoints, PasswordEndpoints,
                     KVStoreEndpoints, CustomRestEndpoints, ClusterEndpoints, SavedSearchEndpoints):
    """A splunkd stand-in on ``http://127.0.0.1:<port>``.  See the package docstring."""

    def __init__(self, apps: Optional[Dict[str, Optional[str]]] = None,
                 users: Optional[Dict[str, Dict[str, Any]]] = None,
                 roles: Optional[Dict[str, Iterable[str]]] = None,
                 version: str = "9.0.9",
                 max_documents_per_batch_save: int = 1000,
                 max_rows_per_query: int = 50000,
                 server_name: str = "splunk-standin",
                 python: Optional[str] = None,
                 splunk_home: Optional[str] = None,
                 cluster: Optional[Any] = None):  # a shcluster.SearchHeadCluster
        self._lock = threading.RLock()
        # A member of a search head cluster shares the cluster's KV store (see cluster.SearchHeadCluster).
        self.cluster = cluster
        self.python = python or sys.executable
        self.splunk_home = splunk_home
        self.role_imports: Dict[str, List[str]] = {}
        self.custom_capabilities: List[str] = []
        # Persistent REST handler processes, per (driver, python): several when requests overlap, as
        # splunkd may run several; with recycle_handlers each process ends after one request, as
        # splunkd may not keep one alive. Either way the app must not depend on a process's memory.
        self._drivers: Dict[Tuple[str, ...], List[_PersistentDriver]] = {}
        self._drivers_free = threading.Condition(threading.Lock())
        self.handler_processes = 4
        self.recycle_handlers = False
        self.version = version
        self.build = hashlib.sha1(version.encode()).hexdigest()[:12]
        self.server_name = server_name
        self.guid = str(uuid.uuid5(uuid.NAMESPACE_DNS, server_name)).upper()
        self._started = time.time()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self.host = "127.0.0.1"
        self.port = 0

        self.roles: Dict[str, List[str]] = {k: list(v) for k, v in DEFAULT_ROLES.items()}
        for role, caps in (roles or {}).items():
            self.roles[role] = sorted(set(caps))
        # The user splunkd's system session keys (passSystemAuth) belong to.
        self.system_user = "splunk-system-user"
        if users is None:
            users = {"admin": {"password": "changeme", "roles": ["admin"]}}
        self.users: Dict[str, Dict[str, Any]] = {}
        for name, spec in users.items():
            self.add_user(name, spec.get("password", "changeme"), spec.get("roles", ["user"]),
                          default_app=spec.get("default_app", "search"),
                          capabilities=spec.get("capabilities", ()))
        self.add_user(self.system_user, secrets.token_urlsafe(24), ["splunk-system-role"])

        self._sessions: Dict[str, str] = {}
        self._tokens: Dict[str, str] = {}
        # (kind, a, b) -> {conf: {stanza: {key: value}}}
        #   ("app", app, "default"|"local"), ("user", user, app)
        self._layers: Dict[Tuple[str, str, str], Dict[str, ConfFile]] = {}
        # (app, "default"|"local") -> {meta stanza: {key: value}}
        self._meta: Dict[Tuple[str, str], Dict[str, Dict[str, str]]] = {}
        self._apps: Dict[str, Optional[str]] = {}
        self._kv: Dict[Tuple[str, str], Dict[str, Dict[str, Any]]] = cluster.kv_data if cluster else {}
        self._kv_lock = cluster.kv_lock if cluster else self._lock
        self._messages: Dict[str, Dict[str, Any]] = {}
        self.messages: List[Dict[str, Any]] = []
        self.requests: List[RequestRecord] = []
        self._faults: List[_Fault] = []
        self._settings: Dict[str, str] = {}
        self.restarts = 0
        self._jobs: Dict[str, Dict[str, Any]] = {}

        self._install_builtin_apps(max_documents_per_batch_save, max_rows_per_query)
        if apps is None:
            apps = {DEFAULT_APP: _REPO_ROOT}
        for name, folder in apps.items():
            self.add_app(name, folder)

    # ---------------------------------------------------------------- set-up

    def _install_builtin_apps(self, max_batch: int, max_rows: int) -> None:
        self._apps["system"] = None
        self._apps["search"] = None
        system = self._layers.setdefault(("app", "system", "default"), {})
        system["limits"] = {"kvstore": {
            "max_documents_per_batch_save": str(max_batch),
            "max_rows_per_query": str(max_rows),
            "max_queries_per_batch": "1000",
            "max_size_per_batch_save_mb": "50",
            "max_size_per_result_mb": "50",
        }}
        system["server"] = {
            "general": {"serverName": self.server_name},
            "proxyConfig": {"no_proxy": "localhost, 127.0.0.1, ::1"},
        }
        system["app"] = {"ui": {"label": "System", "is_visible": "0"}}
        self._meta[("system", "default")] = {"": {"access": "read : [ * ], write : [ admin ]",
                                                  "export": "system"}}
        search = self._layers.setdefault(("app", "search", "default"), {})
        search["app"] = {"ui": {"label": "Search & Reporting", "is_visible": "1"},
                         "launcher": {"version": self.version, "author": "Splunk"}}
        self._meta[("search", "default")] = {"": {"access": "read : [ * ], write : [ admin, power ]"}}

    def add_app(self, name: str, folder: Optional[str] = None) -> None:
        """Add an app; parse ``folder/default/*.conf`` and ``folder/metadata/default.meta``."""
        with self._lock:
            self._apps[name] = folder
            layer = self._layers.setdefault(("app", name, "default"), {})
            if folder:
                default_dir = os.path.join(folder, "default")
                if os.path.isdir(default_dir):
                    for entry in sorted(os.listdir(default_dir)):
                        if entry.endswith(".conf") and os.path.isfile(os.path.join(default_dir, entry)):
                            layer[entry[:-5]] = parse_conf_file(os.path.join(default_dir, entry))
                meta = os.path.join(folder, "metadata", "default.meta")
                if os.path.isfile(meta):
                    self._meta[(name, "default")] = _parse_meta(meta)
            self._load_authorize(layer.get("authorize", {}))

    def _load_authorize(self, authorize: ConfFile) -> None:
        """Roles and capabilities an app defines or extends (authorize.conf)."""
        for stanza, values in authorize.items():
            if stanza.startswith("capability::"):
                if stanza[12:] not in self.custom_capabilities:
                    self.custom_capabilities.append(stanza[12:])
            elif stanza.startswith("role_"):
                role = stanza[5:]
                caps = set(self.roles.get(role, ()))
                for key, value in values.items():
                    if key == "importRoles":
                        self.role_imports[role] = [r.strip() for r in value.split(";") if r.strip()]
                    elif value.strip().lower() == "enabled":
                        caps.add(key)
                    elif value.strip().lower() == "disabled":
                        caps.discard(key)
                self.roles[role] = sorted(caps)

    def add_user(self, username: str, password: str = "changeme", roles: Iterable[str] = ("user",),
                 default_app: str = "search", capabilities: Iterable[str] = ()) -> None:
        with self._lock:
            self.users[username] = {"password": password, "roles": list(roles),
                                    "default_app": default_app, "capabilities": list(capabilities)}

    def roles_of(self, username: str) -> List[str]:
        """The user's roles and, transitively, the roles they import."""
        seen: List[str] = []
        todo = list(self.users.get(username, {}).get("roles", ()))
        while todo:
            role = todo.pop(0)
            if role not in seen:
                seen.append(role)
                todo.extend(self.role_imports.get(role, ()))
        return seen

    def capabilities_of(self, username: str) -> List[str]:
        user = self.users.get(username, {})
        caps = set(user.get("capabilities", ()))
        for role in self.roles_of(username):
            caps.update(self.roles.get(role, ()))
        return sorted(caps)

    # ------------------------------------------------------------- lifecycle

    def start(self) -> SplunkdStandin:
        if self._server is not None:
            return self
        standin = self

        class Handler(_Handler):
            owner = standin

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="splunkd-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.stop_handlers()

    def stop_handlers(self) -> None:
        """End the persistent REST handler processes (the next request starts them again)."""
        with self._drivers_free:
            drivers = [driver for pool in self._drivers.values() for driver in pool]
        for driver in drivers:
            driver.stop()

    @property
    def handler_starts(self) -> int:
        """How many persistent REST handler processes were started."""
        with self._drivers_free:
            return sum(d.starts for pool in self._drivers.values() for d in pool)

    def _take_driver(self, key: Tuple[str, ...]) -> _PersistentDriver:
        """An idle handler process for ``key``, a new one while fewer than handler_processes run, else
        the first to become idle."""
        with self._drivers_free:
            while True:
                pool = self._drivers.setdefault(key, [])
                driver = next((d for d in pool if not d.busy), None)
                if driver is None and len(pool) < max(1, self.handler_processes):
                    driver = _PersistentDriver(self)
                    pool.append(driver)
                if driver is not None:
                    driver.busy = True
                    return driver
                self._drivers_free.wait()

    def _give_back_driver(self, driver: _PersistentDriver) -> None:
        if self.recycle_handlers:
            driver.stop()
        with self._drivers_free:
            driver.busy = False
            self._drivers_free.notify()

    def __enter__(self) -> SplunkdStandin:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    splunkd_uri = base_url

    # -------------------------------------------------------------- sessions

    def new_session_key(self, username: str = "admin") -> str:
        """A session key for ``username``, as splunkd puts in ``searchinfo.session_key``."""
        if username not in self.users:
            raise KeyError("unknown user: %s" % username)
        key = secrets.token_urlsafe(48)
        with self._lock:
            self._sessions[key] = username
        return key

    def new_token(self, username: str = "admin") -> str:
        """An (opaque) authentication token usable as ``Authorization: Bearer <token>``."""
        if username not in self.users:
            raise KeyError("unknown user: %s" % username)
        token = "eyJ" + secrets.token_urlsafe(60)
        with self._lock:
            self._tokens[token] = username
        return token

    def expire_session(self, key: str) -> None:
        with self._lock:
            self._sessions.pop(key, None)

    def searchinfo(self, username: str = "admin", app: str = DEFAULT_APP) -> Dict[str, str]:
        """The connection part of a protocol-v2 ``searchinfo`` pointing at this stand-in."""
        return {"splunkd_uri": self.base_url, "session_key": self.new_session_key(username),
                "app": app, "owner": username, "username": username,
                "splunk_version": self.version}

    # ------------------------------------------------------- test-side state

    def conf(self, conf_file: str, stanza: str, app: str = DEFAULT_APP, owner: str = "nobody") -> Dict[str, str]:
        """The merged settings of ``[stanza]`` as seen from ``app`` (KeyError when absent)."""
        with self._lock:
            view = self._view(conf_file, owner, app, stanza)
            if view is None:
                raise KeyError("%s.conf [%s] is not visible from app %s" % (conf_file, stanza, app))
            return dict(view.values)

    def set_conf(self, conf_file: str, stanza: str, app: str = DEFAULT_APP, layer: str = "local",
                 owner: Optional[str] = None, **settings: Any) -> None:
        """Write settings into ``app``'s local (or ``layer="default"``) layer, or a user's layer."""
        with self._lock:
            key = ("user", owner, app) if owner and owner != "nobody" else ("app", app, layer)
            if app not in self._apps:
                self._apps[app] = None
            target = self._layers.setdefault(key, {}).setdefault(conf_file, {}).setdefault(stanza, {})
            for name, value in settings.items():
                target[name] = _conf_str(value)

    def delete_conf(self, conf_file: str, stanza: str, app: str = DEFAULT_APP, layer: str = "local",
                    owner: Optional[str] = None) -> None:
        with self._lock:
            key = ("user", owner, app) if owner and owner != "nobody" else ("app", app, layer)
            self._layers.get(key, {}).get(conf_file, {}).pop(stanza, None)

    def set_meta(self, app: str, stanza: str, **settings: str) -> None:
        """Set ``metadata/local.meta`` settings of an object or conf file.

        ``set_meta(app, "collections/x", access="read : [ * ], write : [ * ]", export="system")``
        """
        with self._lock:
            self._meta.setdefault((app, "local"), {}).setdefault(stanza, {}).update(settings)

    def set_password(self, realm: str, username: str, password: str, app: str = DEFAULT_APP,
                     owner: Optional[str] = None) -> None:
        """Store a credential as ``storage/passwords`` would (``[credential:realm:user:]``)."""
        self.set_conf("passwords", "credential:" + _cred_name(realm, username), app=app,
                      owner=owner, password=password)

    def password(self, realm: str, username: str, app: str = DEFAULT_APP) -> Optional[str]:
        """The clear password of a credential visible from ``app`` (None when absent)."""
        try:
            return self.conf("passwords", "credential:" + _cred_name(realm, username), app=app).get("password")
        except KeyError:
            return None

    def kv_documents(self, collection: str, app: str = DEFAULT_APP) -> List[Dict[str, Any]]:
        """Copies of the documents of a collection (with ``_key`` and ``_user``)."""
        with self._lock, self._kv_lock:
            store = self._kv.get((app, collection), {})
            return [self._render_doc(doc, key) for key, doc in store.items()]

    def kv_insert(self, collection: str, documents: Iterable[Dict[str, Any]], app: str = DEFAULT_APP) -> List[str]:
        """Upsert documents straight into a collection's data (no HTTP; types converted)."""
        with self._lock, self._kv_lock:
            config = self._view("collections", "nobody", app, collection)
            store = self._kv.setdefault((app, collection), {})
            keys = []
            for document in documents:
                doc = self._typed_doc(dict(document), config.values if config else {})
                key = str(doc.pop("_key", None) or self._new_kv_key())
                doc.pop("_user", None)
                store[key] = doc
                keys.append(key)
            return keys

    def create_job(self, sid: str, owner: str = "admin", app: str = DEFAULT_APP,
                   search: str = "| makeresults") -> None:
        """A running search job, as splunkd has one for every search that runs a command."""
        now = time.time()
        with self._lock:
            self._jobs[sid] = {"sid": sid, "owner": owner, "app": app, "search": search, "created": now,
                               "dispatchState": "RUNNING", "isFinalized": False, "isPaused": False,
                               "isFailed": False, "isDone": False}

    def cancel_job(self, sid: str) -> None:
        """As ``control action=cancel``: the job is deleted."""
        with self._lock:
            self._jobs.pop(sid, None)

    def finalize_job(self, sid: str) -> None:
        """As ``control action=finalize``: the search stops reading events and finishes."""
        with self._lock:
            job = self._jobs[sid]
            job.update(isFinalized=True, dispatchState="FINALIZING")

    def job_state(self, sid: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            job = self._jobs.get(sid)
            return dict(job) if job else None

    def kv_clear(self, collection: str, app: str = DEFAULT_APP) -> None:
        with self._lock, self._kv_lock:
            self._kv.pop((app, collection), None)

    def reset_requests(self) -> None:
        with self._lock:
            self.requests = []

    def count(self, method: Optional[str] = None, path_contains: Optional[str] = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests
                       if (method is None or r.method == method.upper())
                       and (path_contains is None or path_contains in r.path))

    def inject_fault(self, path_regex: str, status: Optional[int] = 500, delay: float = 0.0,
                     times: Optional[int] = None, method: Optional[str] = None,
                     message: Optional[str] = None) -> _Fault:
        """Answer requests whose decoded path matches ``path_regex`` (``re.search``).

        ``status`` >= 400: splunkd's error body with that status (``message`` or the
        reason phrase), after sleeping ``delay`` seconds.  ``status=None``: sleep,
        then answer normally (a slow splunkd).  ``status=0``: close the connection
        without answering.  ``times=None``: forever, else that many requests.
        """
        fault = _Fault(path_regex, status, delay, times, method, message)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = []


    # ============================================================ dispatching

    def _handle(self, handler: _Handler, method: str) -> None:
        started = time.monotonic()
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length > 0 else b""
        if (handler.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            body = _read_chunked(handler.rfile)
        req = _Request(method, handler.path, handler.headers, body)
        decoded_path = unquote(req.path)
        req.client_ip = handler.client_address[0]
        with self._lock:
            req.username = self._identify(req)
            fault = self._take_fault(method, decoded_path)
            script = self._match_script(req) if fault is None or fault.status is None else None
        result: Optional[_Reply] = None
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.status is not None:
            if fault.status != 0:
                text = fault.message or _REASONS.get(fault.status, "Error")
                result = _Reply(fault.status, *_error_body(text, req.output_mode))
        elif script is not None:
            # Outside the stand-in's lock: the handler calls splunkd back with its system session.
            try:
                self._call_script(req, *script)
                raise _Reply(500, *_error_body("no answer", req.output_mode))
            except _Reply as reply:
                result = reply
            except Exception as exc:
                result = _Reply(500, *_error_body("Internal error in stand-in: %r" % (exc,), req.output_mode))
        else:
            with self._lock:
                try:
                    self._dispatch(req)
                    raise _Reply(404, *_error_body("Not Found", req.output_mode))
                except _Reply as reply:
                    result = reply
                except Exception as exc:  # a bug here must show up as splunkd's 500
                    result = _Reply(500, *_error_body("Internal error in stand-in: %r" % (exc,), req.output_mode))
        # Record before answering, so a client never sees its answer before the record.
        with self._lock:
            self.requests.append(RequestRecord(
                method=method, path=decoded_path, query=req.query,
                status=result.status if result is not None else 0,
                username=req.username,
                duration=time.monotonic() - started, params=req.params, body=body))
        if result is None:  # injected fault with status 0: drop the connection
            handler.close_connection = True
            try:
                handler.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._send(handler, result.status, result.body, result.content_type, result.headers,
                   head_only=(method == "HEAD"))

    def _send(self, handler: _Handler, status: int, body: bytes, content_type: str,
              headers: List[Tuple[str, str]], head_only: bool = False) -> None:
        try:
            handler.send_response(status, _REASONS.get(status))
            handler.send_header("Server", "Splunkd")
            handler.send_header("Date", handler.date_time_string())
            handler.send_header("Expires", "Thu, 26 Oct 1978 00:00:00 GMT")
            handler.send_header("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0")
            handler.send_header("X-Content-Type-Options", "nosniff")
            handler.send_header("X-Frame-Options", "SAMEORIGIN")
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(body)))
            handler.send_header("Connection", "Close")
            for name, value in headers:
                handler.send_header(name, value)
            handler.end_headers()
            if body and not head_only:
                handler.wfile.write(body)
            handler.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _take_fault(self, method: str, path: str) -> Optional[_Fault]:
        for fault in self._faults:
            if fault.remaining is not None and fault.remaining <= 0:
                continue
            if fault.method and fault.method != method:
                continue
            if fault.regex.search(path):
                if fault.remaining is not None:
                    fault.remaining -= 1
                fault.hits += 1
                return fault
        return None

    def _identify(self, req: _Request) -> Optional[str]:
        auth = req.headers.get("Authorization") or ""
        scheme, _, credential = auth.strip().partition(" ")
        credential = credential.strip()
        scheme = scheme.lower()
        if scheme == "splunk" and credential in self._sessions:
            return self._sessions[credential]
        if scheme == "bearer" and credential in self._tokens:
            return self._tokens[credential]
        if scheme == "basic":
            try:
                decoded = base64.b64decode(credential, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            user, _, password = decoded.partition(":")
            if user in self.users and self.users[user]["password"] == password:
                return user
        cookie_header = req.headers.get("Cookie")
        if cookie_header:
            try:
                cookies = SimpleCookie(cookie_header)
            except CookieError:
                cookies = SimpleCookie()
            for name, morsel in cookies.items():
                if name.startswith("splunkd_") and morsel.value in self._sessions:
                    return self._sessions[morsel.value]
        return None

    def _fail(self, req: _Request, status: int, text: str, msg_type: str = "ERROR",
              code: Optional[str] = None, json_always: bool = False) -> None:
        body, ctype = _error_body(text, "json" if json_always else req.output_mode, msg_type, code)
        raise _Reply(status, body, ctype)

    def _dispatch(self, req: _Request) -> None:
        path = req.path
        segments = path.split("/")
        # ['', 'services', ...] or ['', 'servicesNS', owner, app, ...]
        if len(segments) >= 2 and segments[1] == "services":
            rest_raw = segments[2:]
            ns: Optional[Tuple[str, str]] = None
        elif len(segments) >= 4 and segments[1] == "servicesNS":
            ns = (unquote_plus(segments[2]), unquote_plus(segments[3]))
            rest_raw = segments[4:]
        else:
            self._fail(req, 404, "Not Found")
            return
        while rest_raw and rest_raw[-1] == "":
            rest_raw = rest_raw[:-1]
        rest = [unquote_plus(s) for s in rest_raw]

        if rest[:2] == ["auth", "login"]:
            self._ep_login(req)
        if req.username is None:
            self._fail(req, 401, "call not properly authenticated", msg_type="WARN")
        user = req.username
        if ns is None:
            owner, app = user, self.users[user].get("default_app", "search")
            explicit = False
        else:
            owner, app = ns
            explicit = True
            if app != "-" and app not in self._apps:
                self._fail(req, 404, "Application does not exist: %s" % app)
        ctx = _Ctx(owner, app, explicit, ns)

        head = rest[0] if rest else ""
        if rest[:2] == ["server", "info"]:
            self._ep_server_info(req, rest)
        if rest[:2] == ["server", "settings"]:
            self._ep_server_settings(req, rest)
        if rest[:3] == ["server", "control", "restart"]:
            self._ep_restart(req)
        if rest[:2] == ["authorization", "capabilities"]:
            self._ep_capabilities(req)
        if rest[:2] == ["authentication", "current-context"]:
            self._ep_current_context(req, rest)
        if head == "messages":
            self._ep_messages(req, rest)
        if rest[:2] == ["apps", "local"]:
            self._ep_apps(req, rest, ctx)
        if rest[:2] == ["kvstore", "status"]:
            self._ep_kvstore_status(req)
        if head == "shcluster":
            self._ep_shcluster(req, rest)
        if head == "configs" and len(rest) >= 2 and rest[1].startswith("conf-"):
            self._ep_configs(req, ctx, rest[1][5:], rest[2:], rest_raw[2:])
        if head == "properties":
            self._ep_properties(req, ctx, rest[1:])
        if rest[:2] == ["storage", "passwords"]:
            raw_name = "/".join(rest_raw[2:])
            self._ep_passwords(req, ctx, unquote_plus(raw_name) if raw_name else None)
        if rest[:3] == ["storage", "collections", "config"]:
            self._ep_collections_config(req, ctx, rest[3:], rest_raw[3:])
        if rest[:3] == ["storage", "collections", "data"] and len(rest) >= 4:
            with self._kv_lock:  # one store for every member of a cluster: its writes are serialised
                self._refuse_if_kv_down(req)
                self._ep_collections_data(req, ctx, rest[3], rest[4:])
        if rest[:2] == ["search", "jobs"]:
            self._ep_jobs(req, rest[2:])
        if rest[:3] == ["search", "v2", "jobs"]:  # splunklib uses v2 from Splunk 9.0.2 on; same job entries
            self._ep_jobs(req, rest[3:])
        if rest[:2] == ["saved", "searches"]:
            self._ep_saved_searches(req, ctx, rest[2:])
