"""Endpoints of the server itself: login, server info/settings/restart, capabilities, current
context, KV store status, messages and apps/local."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from typing import Any, Dict, List
from urllib.parse import quote

from .model import _Ctx, _Inst, _Reply, _Request
from .rendering import _Entry, _timestamp


class SystemEndpoints:
    """server/*, auth/login, authorization, authentication, messages, apps."""

    # ============================================================= endpoints

    def _ep_login(self, req: _Request) -> None:
        if req.method != "POST":
            self._fail(req, 405, "Method Not Allowed")
        username = req.param("username") or ""
        password = req.param("password") or ""
        user = self.users.get(username)
        if user is None or user["password"] != password:
            self._fail(req, 401, "Login failed", msg_type="WARN", code="incorrect_username_or_password")
        key = secrets.token_urlsafe(48)
        self._sessions[key] = username
        req.username = username
        headers = []
        if (req.param("cookie") or "") in ("1", "true"):
            headers.append(("Set-Cookie", "splunkd_%d=%s; Path=/; HttpOnly; Max-Age=3600" % (self.port, key)))
        if req.output_mode == "json":
            raise _Reply(200, json.dumps({"sessionKey": key, "message": "", "code": ""}).encode(),
                         "application/json; charset=UTF-8", headers)
        body = ("<response>\n  <sessionKey>%s</sessionKey>\n  <messages>\n    <msg code=\"\"></msg>\n"
                "  </messages>\n</response>\n" % key)
        raise _Reply(200, body.encode(), "text/xml; charset=UTF-8", headers)

    def _system_entry(self, name: str, href: str, content: Dict[str, Any]) -> _Entry:
        acl = {"app": "", "can_list": True, "can_write": False, "modifiable": False, "owner": "system",
               "perms": {"read": ["*"], "write": []}, "removable": False, "sharing": "system"}
        return _Entry(name, href, "system", content, {"list": href}, acl=acl)

    def _ep_server_info(self, req: _Request, rest: List[str]) -> None:
        if req.method not in ("GET", "HEAD") or len(rest) > 3 or (len(rest) == 3 and rest[2] != "server-info"):
            self._fail(req, 404 if req.method in ("GET", "HEAD") else 405, "Not Found"
                       if req.method in ("GET", "HEAD") else "Method Not Allowed")
        content = {
            "build": self.build, "cpu_arch": "x86_64", "guid": self.guid, "health_info": "green",
            "host": self.server_name, "host_fqdn": self.server_name, "isFree": "0", "isTrial": "0",
            "kvStoreStatus": self.cluster.kv_status if self.cluster else "ready",
            "licenseKeys": [hashlib.sha256(self.guid.encode()).hexdigest().upper()],
            "licenseSignature": hashlib.md5(self.guid.encode()).hexdigest(),
            "licenseState": "OK", "master_guid": self.guid, "mode": "normal",
            "numberOfCores": str(os.cpu_count() or 1), "os_build": "#1 SMP standin", "os_name": "Linux",
            "os_version": "standin",
            "product_type": "enterprise", "serverName": self.server_name,
            "server_roles": self._server_roles(),
            "startup_time": str(int(self._started)), "version": self.version,
        }
        entry = self._system_entry("server-info", "/services/server/info/server-info", content)
        self._feed(req, "server-info", "/services/server/info", [entry], links={})

    def _ep_server_settings(self, req: _Request, rest: List[str]) -> None:
        if req.method == "POST" and rest[2:] == ["settings"]:
            if not self._has_cap(req.username or "", "edit_server", "admin_all_objects"):
                self._fail(req, 403, "You (user=%s) do not have permission to perform this operation "
                                     "(requires capability: edit_server)." % req.username)
            self._settings.update(self._settings_from(req))
            # splunkd asks for a restart after server settings change.
            self._messages["restart_required"] = {
                "name": "restart_required", "value": "Splunk must be restarted for changes to take effect.",
                "severity": "warn", "help": "", "time": time.time(), "username": req.username}
        elif req.method not in ("GET", "HEAD") or len(rest) > 3 or rest[2:] not in ([], ["settings"]):
            self._fail(req, 405 if req.method not in ("GET", "HEAD") else 404,
                       "Method Not Allowed" if req.method not in ("GET", "HEAD") else "Not Found")
        content = {"SPLUNK_DB": "/opt/splunk/var/lib/splunk", "SPLUNK_HOME": "/opt/splunk",
                   "enableSplunkWebSSL": "1", "host": self.server_name, "httpport": "8000",
                   "mgmtHostPort": "127.0.0.1:%d" % self.port, "minFreeSpace": "5000",
                   "pass4SymmKey": "********", "serverName": self.server_name,
                   "sessionTimeout": "1h", "startwebserver": "0", "trustedIP": "127.0.0.1"}
        content.update(self._settings)
        entry = self._system_entry("settings", "/services/server/settings/settings", content)
        self._feed(req, "server-settings", "/services/server/settings", [entry], links={})

    def _ep_restart(self, req: _Request) -> None:
        """A restart is instantaneous here: it only clears the ``restart_required`` message."""
        if req.method != "POST":
            self._fail(req, 405, "Method Not Allowed")
        if not self._has_cap(req.username or "", "restart_splunkd"):
            self._fail(req, 403, "You (user=%s) do not have permission to perform this operation "
                                 "(requires capability: restart_splunkd)." % req.username)
        self._messages.pop("restart_required", None)
        self.restarts += 1
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<response>\n  <messages>\n'
                '    <msg type="INFO">Restart requested</msg>\n  </messages>\n</response>\n')
        raise _Reply(200, body.encode(), "text/xml; charset=UTF-8")

    def _ep_capabilities(self, req: _Request) -> None:
        if req.method not in ("GET", "HEAD"):
            self._fail(req, 405, "Method Not Allowed")
        caps = sorted({c for caps in self.roles.values() for c in caps})
        entry = self._system_entry("capabilities", "/services/authorization/capabilities/capabilities",
                                   {"capabilities": caps})
        self._feed(req, "capabilities", "/services/authorization/capabilities", [entry], links={})

    def _ep_current_context(self, req: _Request, rest: List[str]) -> None:
        if req.method not in ("GET", "HEAD"):
            self._fail(req, 405, "Method Not Allowed")
        user = req.username or ""
        info = self.users[user]
        content = {
            "capabilities": self.capabilities_of(user), "defaultApp": info.get("default_app", "search"),
            "defaultAppIsUserOverride": "0", "defaultAppSourceRole": "system", "email": "",
            "lockedOut": "0", "realname": "", "roles": list(info.get("roles", ())), "type": "Splunk",
            "tz": "", "username": user,
        }
        entry = self._system_entry("context", "/services/authentication/current-context/context", content)
        self._feed(req, "current-context", "/services/authentication/current-context", [entry], links={})

    def _ep_kvstore_status(self, req: _Request) -> None:
        if self.cluster is None:
            current = {"status": "ready", "replicationStatus": "KV store captain", "standalone": "1"}
        else:
            current = self.cluster.kv_status_of(self)
        content = {"current": dict(current, storageEngine="wiredTiger", port="8191")}
        entry = self._system_entry("status", "/services/kvstore/status/status", content)
        self._feed(req, "kvstore-status", "/services/kvstore/status", [entry], links={})

    # ------------------------------------------------------------- messages

    def _message_entry(self, name: str) -> _Entry:
        message = self._messages[name]
        content = {name: message["value"], "help": message.get("help", ""),
                   "message": message["value"], "server": self.server_name,
                   "severity": message.get("severity", "warn"),
                   "timeCreated_epochSecs": str(int(message["time"])),
                   "timeCreated_iso": _timestamp(message["time"])}
        href = "/services/messages/" + quote(name, safe="")
        acl = {"app": "search", "can_list": True, "can_write": True, "modifiable": False,
               "owner": "system", "perms": {"read": ["*"], "write": ["*"]}, "removable": True,
               "sharing": "system"}
        return _Entry(name, href, "system", content, {"list": href, "remove": href}, acl=acl)

    def _ep_messages(self, req: _Request, rest: List[str]) -> None:
        if len(rest) == 1:
            if req.method in ("GET", "HEAD"):
                entries = [self._message_entry(n) for n in self._messages]
                self._feed(req, "messages", "/services/messages", entries,
                           links={"create": "/services/messages/_new"})
            if req.method == "POST":
                name = req.param("name")
                value = req.param("value")
                if not name:
                    self._fail(req, 400, 'Cannot perform action "POST" without a target name to act on.')
                if value is None:
                    self._fail(req, 400, "Argument \"value\" is required")
                record = {"name": name, "value": value, "severity": req.param("severity") or "warn",
                          "help": req.param("help") or "", "time": time.time(),
                          "username": req.username}
                if record["severity"] not in ("info", "warn", "error"):
                    self._fail(req, 400, "Invalid value for argument severity: %s" % record["severity"])
                self._messages[name] = record
                self.messages.append(dict(record))
                self._feed(req, "messages", "/services/messages", [self._message_entry(name)],
                           links={"create": "/services/messages/_new"}, paginate=False, status=201)
            self._fail(req, 405, "Method Not Allowed")
        name = "/".join(rest[1:])
        if name not in self._messages:
            self._fail(req, 404, "Could not find object id=%s" % name)
        if req.method in ("GET", "HEAD"):
            self._feed(req, "messages", "/services/messages", [self._message_entry(name)],
                       links={"create": "/services/messages/_new"}, paginate=False)
        if req.method == "DELETE":
            del self._messages[name]
            entries = [self._message_entry(n) for n in self._messages]
            self._feed(req, "messages", "/services/messages", entries,
                       links={"create": "/services/messages/_new"})
        self._fail(req, 405, "Method Not Allowed")

    # ----------------------------------------------------------------- apps

    def _ep_apps(self, req: _Request, rest: List[str], ctx: _Ctx) -> None:
        if req.method not in ("GET", "HEAD"):
            self._fail(req, 405, "Method Not Allowed")
        names = sorted(self._apps) if len(rest) == 2 else ["/".join(rest[2:])]
        entries = []
        for name in names:
            if name not in self._apps:
                self._fail(req, 404, "Could not find object id=%s" % name)
            ui = self._merged("app", "nobody", name, "ui")
            launcher = self._merged("app", "nobody", name, "launcher")
            pkg = self._merged("app", "nobody", name, "package")
            ui_values = ui[1] if ui and ui[0].app == name else {}
            launcher_values = launcher[1] if launcher and launcher[0].app == name else {}
            pkg_values = pkg[1] if pkg and pkg[0].app == name else {}
            content = {"author": launcher_values.get("author", ""), "check_for_updates": "0",
                       "configured": "1", "description": launcher_values.get("description", ""),
                       "disabled": "0", "label": ui_values.get("label", name),
                       "version": launcher_values.get("version", ""),
                       "visible": ui_values.get("is_visible", "1"),
                       "details": pkg_values.get("id", name)}
            inst = _Inst(name, None)
            acl = self._acl(req.username or "", inst, "app", "")
            href = "/servicesNS/nobody/system/apps/local/" + quote(name, safe="")
            entries.append(_Entry(name, href, "nobody", content, {"list": href}, acl=acl))
        self._feed(req, "localapps", self._ns_prefix(ctx) + "apps/local", entries)
