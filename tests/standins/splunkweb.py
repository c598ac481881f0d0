"""A Splunk Web stand-in, for browser tests of the app's setup page. Stdlib only.

It serves what a browser gets from Splunk Web for an app, at Splunk Web's URL shapes:

* ``/en-US/app/<app>/`` redirects to the app's setup view (app.conf ``[ui] setup_view``) while
  ``[install] is_configured`` is false, as Splunk Web does for an app that is not configured;
* ``/en-US/app/<app>/<view>``: the Simple XML view rendered to a page: its label and description, the
  content of its ``<html>`` panels, its ``stylesheet`` and ``script`` (the dashboard's rendering itself
  is Splunk's and is not modelled);
* ``/en-US/static/app/<app>/<file>``: the app's ``appserver/static`` files;
* ``/en-US/splunkd/__raw/<splunkd path>``: splunkd's REST API through Splunk Web, only for the
  endpoints an app exposes (web.conf ``[expose:*]`` ``pattern``/``methods``), authenticated with the
  session in the ``splunkd_<port>`` cookie, and - for anything but GET - only with the
  ``X-Splunk-Form-Key`` header equal to the ``splunkweb_csrf_token_<port>`` cookie (Splunk Web's CSRF
  protection).

``login(user, password)`` gives the cookies a browser gets after signing in.
"""

from __future__ import annotations

import fnmatch
import os
import secrets
import threading
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from html import escape
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional

from .splunkd import parse_conf_file

LOCALE = "en-US"


class SplunkWebStandin:
    def __init__(self, splunkd, app: str, app_root: str):
        self.splunkd = splunkd
        self.app = app
        self.app_root = app_root
        self._server: Optional[ThreadingHTTPServer] = None
        self._csrf: Dict[str, str] = {}  # session key -> CSRF token
        self.proxied: List[tuple] = []  # (method, path, status) of every __raw request

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> SplunkWebStandin:
        web = self

        class Handler(_Handler):
            owner = web

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    def login(self, username: str, password: str) -> Dict[str, str]:
        """The cookies Splunk Web sets after a successful sign-in."""
        user = self.splunkd.users.get(username)
        if user is None or user["password"] != password:
            raise PermissionError("login failed")
        session = self.splunkd.new_session_key(username)
        csrf = secrets.token_hex(16)
        self._csrf[session] = csrf
        return {"splunkd_%d" % self.port: session, "splunkweb_csrf_token_%d" % self.port: csrf}

    # ------------------------------------------------------------------ app files
    def _conf(self, name: str) -> dict:
        path = os.path.join(self.app_root, "default", name + ".conf")
        return parse_conf_file(path) if os.path.isfile(path) else {}

    def _exposed(self, rest_path: str, method: str) -> bool:
        for stanza, values in self._conf("web").items():
            if stanza.startswith("expose:") and fnmatch.fnmatchcase(rest_path, values.get("pattern", "")):
                methods = [m.strip().upper() for m in values.get("methods", "GET").split(",")]
                if method in methods:
                    return True
        return False

    def render_view(self, view: str) -> Optional[str]:
        path = os.path.join(self.app_root, "default", "data", "ui", "views", view + ".xml")
        if not os.path.isfile(path):
            return None
        root = ET.parse(path).getroot()
        static = "/%s/static/app/%s/" % (LOCALE, self.app)
        label = root.findtext("label") or view
        panels = []
        for html in root.iter("html"):
            panels.append((html.text or "") + "".join(ET.tostring(child, encoding="unicode") for child in html))
        head = ['<meta charset="utf-8">', "<title>%s | Splunk</title>" % escape(label)]
        for sheet in (root.get("stylesheet") or "").split(","):
            if sheet.strip():
                head.append('<link rel="stylesheet" href="%s%s">' % (static, escape(sheet.strip())))
        scripts = ['<script src="%s%s"></script>' % (static, escape(s.strip()))
                   for s in (root.get("script") or "").split(",") if s.strip()]
        label_of_app = self._conf("app").get("ui", {}).get("label", self.app)
        return ("<!DOCTYPE html>\n<html><head>%s</head><body>\n<header class=\"app-bar\">%s</header>\n"
                "<h1 class=\"dashboard-title\">%s</h1><p class=\"dashboard-description\">%s</p>\n"
                "<div class=\"dashboard-body\">%s</div>\n%s\n</body></html>\n"
                % ("".join(head), escape(label_of_app), escape(label), escape(root.findtext("description") or ""),
                   "".join('<div class="dashboard-panel">%s</div>' % p for p in panels), "".join(scripts)))


class _Handler(BaseHTTPRequestHandler):
    owner: SplunkWebStandin
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - quiet
        return

    def _send(self, status: int, body: bytes, content_type: str = "text/html; charset=utf-8", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _cookies(self) -> Dict[str, str]:
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("Cookie") or "")
        except Exception:
            return {}
        return {name: morsel.value for name, morsel in cookie.items()}

    def _dispatch(self):
        web = self.owner
        path, _, query = self.path.partition("?")
        prefix = "/%s/" % LOCALE
        if not path.startswith(prefix):
            return self._send(303, b"", headers=[("Location", prefix + "app/%s/" % web.app)])
        rest = path[len(prefix):]
        if rest.startswith("splunkd/__raw/"):
            return self._proxy(rest[len("splunkd/__raw"):], query)
        if rest.startswith("static/app/%s/" % web.app):
            relative = rest[len("static/app/%s/" % web.app):]
            folder = os.path.realpath(os.path.join(web.app_root, "appserver", "static"))
            file_path = os.path.realpath(os.path.join(folder, relative))
            if not file_path.startswith(folder + os.sep) or not os.path.isfile(file_path):
                return self._send(404, b"Not Found", "text/plain")
            kind = {".js": "application/javascript", ".css": "text/css", ".png": "image/png"}.get(
                os.path.splitext(file_path)[1], "application/octet-stream")
            with open(file_path, "rb") as handle:
                return self._send(200, handle.read(), kind)
        if rest.startswith("app/%s" % web.app):
            session = self._cookies().get("splunkd_%d" % web.port)
            if session not in web._csrf:
                return self._send(303, b"", headers=[("Location", prefix + "account/login")])
            view = rest[len("app/%s" % web.app):].strip("/")
            if not view:
                conf = web._conf("app")
                configured = conf.get("install", {}).get("is_configured", "false").lower() in ("1", "true")
                setup = conf.get("ui", {}).get("setup_view")
                view = setup if setup and not configured else "defenderipstats_overview"
                return self._send(303, b"", headers=[("Location", prefix + "app/%s/%s" % (web.app, view))])
            page = web.render_view(view)
            if page is None:
                return self._send(404, b"Not Found", "text/plain")
            return self._send(200, page.encode("utf-8"))
        return self._send(404, b"Not Found", "text/plain")

    def _proxy(self, splunkd_path: str, query: str):
        web = self.owner
        cookies = self._cookies()
        session = cookies.get("splunkd_%d" % web.port)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        parts = [p for p in splunkd_path.split("/") if p]
        endpoint = "/".join(parts[3:] if parts[:1] == ["servicesNS"] else parts[1:])
        status = 0
        try:
            if session not in web._csrf:
                status = 401
                return self._send(401, b'{"messages":[{"type":"ERROR","text":"not logged in"}]}', "application/json")
            if self.command != "GET" and self.headers.get("X-Splunk-Form-Key") != web._csrf[session]:
                status = 401
                return self._send(401, b'{"messages":[{"type":"ERROR","text":"Splunk cannot authenticate the '
                                       b'request. CSRF validation failed."}]}', "application/json")
            if not web._exposed(endpoint, self.command):
                status = 404
                return self._send(404, b'{"messages":[{"type":"ERROR","text":"Not Found"}]}', "application/json")
            request = urllib.request.Request(web.splunkd.base_url + splunkd_path + ("?" + query if query else ""),
                                             data=body, method=self.command)
            request.add_header("Authorization", "Splunk " + session)
            if body is not None:
                request.add_header("Content-Type", self.headers.get("Content-Type")
                                   or "application/x-www-form-urlencoded")
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    status = response.status
                    return self._send(status, response.read(), response.headers.get("Content-Type") or "")
            except urllib.error.HTTPError as error:
                status = error.code
                return self._send(status, error.read(), error.headers.get("Content-Type") or "")
        finally:
            web.proxied.append((self.command, splunkd_path, status))

    do_GET = do_POST = do_DELETE = do_HEAD = _dispatch
