"""Custom REST endpoints of apps (``restmap.conf`` ``[script:*]``, ``scripttype = persist``): matching,
capability checks, and the request as splunkd hands it to a persistent handler."""

from __future__ import annotations

import base64
import json
import os
import re
from typing import Any, Dict, Optional, Tuple
from urllib.parse import unquote_plus

from .model import _Reply, _Request


class CustomRestEndpoints:
    """restmap.conf script endpoints of SplunkdStandin."""

    # ======================================================= custom REST (restmap.conf)

    def _match_script(self, req: _Request) -> Optional[Tuple[Any, ...]]:
        """(app, stanza, conf, rest_path, path_info, ns) of the [script:*] endpoint for this request."""
        if req.username is None:
            return None  # dispatch answers 401
        segments = req.path.split("/")
        if len(segments) >= 2 and segments[1] == "services":
            rest_raw, ns = segments[2:], None
        elif len(segments) >= 4 and segments[1] == "servicesNS":
            rest_raw, ns = segments[4:], (unquote_plus(segments[2]), unquote_plus(segments[3]))
        else:
            return None
        rest_path = "/" + "/".join(unquote_plus(p) for p in rest_raw if p != "")
        for app in sorted(self._apps):
            restmap = self._layer(("app", app, "default")).get("restmap", {})
            for stanza, conf in restmap.items():
                match = (conf.get("match") or "").rstrip("/")
                if not stanza.startswith("script:") or not match or conf.get("scripttype") != "persist":
                    continue
                if rest_path == match or rest_path.startswith(match + "/"):
                    return app, stanza, conf, rest_path, rest_path[len(match):].lstrip("/"), ns
        return None

    def _capability_allows(self, user: str, expression: str) -> bool:
        caps = set(self.capabilities_of(user))
        tokens = re.findall(r"\(|\)|[^\s()]+", expression)
        position = [0]

        def peek():
            return tokens[position[0]] if position[0] < len(tokens) else None

        def take():
            position[0] += 1
            return tokens[position[0] - 1]

        def atom():
            token = take()
            if token == "(":
                value = either()
                take()  # ")"
                return value
            return token in caps

        def both():
            value = atom()
            while peek() == "and":
                take()
                value = atom() and value
            return value

        def either():
            value = both()
            while peek() == "or":
                take()
                value = both() or value
            return value

        return either()

    def _call_script(self, req: _Request, app: str, stanza: str, conf: Dict[str, str], rest_path: str,
                     path_info: str, ns: Optional[Tuple[str, str]]) -> None:
        user = req.username or ""
        capability = conf.get("capability." + req.method.lower()) or conf.get("capability")
        if capability and not self._capability_allows(user, capability):
            self._fail(req, 403, "You (user=%s) do not have permission to perform this operation "
                                 "(requires capability: %s)." % (user, capability))
        if ns is not None and ns[1] != "-" and ns[1] not in self._apps:
            self._fail(req, 404, "Application does not exist: %s" % ns[1])

        def flag(name, default):
            return str(conf.get(name, default)).strip().lower() in ("1", "true", "t", "yes", "y")

        def pairs(params):
            out = []
            for key, value in params.items():
                for item in value if isinstance(value, list) else [value]:
                    out.append([key, item])
            return out

        request: Dict[str, Any] = {
            "output_mode": req.output_mode, "output_mode_explicit": req.param("output_mode") is not None,
            "server": {"rest_uri": self.base_url, "hostname": self.server_name, "servername": self.server_name,
                       "guid": self.guid},
            "restmap": {"name": stanza, "conf": dict(conf)},
            "query": pairs(req.query), "connection": {"src_ip": getattr(req, "client_ip", "127.0.0.1"),
                                                      "ssl": False, "listening_port": self.port},
            "rest_path": rest_path, "lang": "en-US", "method": req.method,
        }
        if path_info:
            request["path_info"] = path_info
        if ns is not None:
            request["ns"] = {"app": ns[1], "user": ns[0]}
        if req.method in ("POST", "PUT"):
            request["form"] = pairs(req.form)
        if flag("passSession", "true"):
            auth = (req.headers.get("Authorization") or "").split(" ", 1)
            token = auth[1].strip() if len(auth) == 2 and auth[0].lower() == "splunk" else None
            request["session"] = {"user": user, "authtoken": token or self.new_session_key(user)}
        if str(conf.get("passPayload", "false")).strip().lower() == "base64":
            request["payload_base64"] = base64.b64encode(req.body).decode("ascii")
        elif flag("passPayload", "false"):
            request["payload"] = req.body.decode("utf-8", "replace")
        if flag("passHttpHeaders", "false"):
            request["headers"] = [[k, v] for k, v in req.headers.items()]
        if flag("passHttpCookies", "false"):
            request["cookies"] = []
        if flag("passSystemAuth", "false"):
            request["system_authtoken"] = self.new_session_key(self.system_user)
        folder = self._apps.get(app) or ""
        script = os.path.join(folder, "bin", conf.get("script", ""))
        command = [script] + [conf[k] for k in sorted(k for k in conf if k.startswith("script.arg."))]
        driver = self._take_driver((conf.get("driver", "appserver"), self.python))
        try:
            answer = driver.call(command, conf.get("script.param", ""), json.dumps(request).encode("utf-8"))
        finally:
            self._give_back_driver(driver)
        try:
            reply = json.loads(answer.decode("utf-8")) if answer else {}
        except ValueError:
            reply = {"payload": answer.decode("utf-8", "replace")}
        if not isinstance(reply, dict):
            reply = {"payload": reply}
        status = int(reply.get("status", 200))
        payload = reply.get("payload", "")
        if "payload_base64" in reply:
            body = base64.b64decode(reply["payload_base64"])
        elif isinstance(payload, (dict, list)):
            body = json.dumps(payload).encode("utf-8")
        else:
            body = str(payload).encode("utf-8")
        headers = [(str(k), str(v)) for k, v in (reply.get("headers") or {}).items()
                   if str(k).lower() not in ("content-length", "content-type")]
        content_type = next((str(v) for k, v in (reply.get("headers") or {}).items()
                             if str(k).lower() == "content-type"), "application/json; charset=UTF-8")
        raise _Reply(status, body, content_type, headers)
