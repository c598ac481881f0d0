"""A plain-HTTP stand-in for splunkd's REST API, for tests.

Stdlib only.  ``SplunkdStandin`` runs an ``http.server.ThreadingHTTPServer`` on
127.0.0.1 (port chosen by the OS) in a background thread and answers the
endpoints the app uses the way splunkd does: Atom XML by default, JSON with
``output_mode=json``, splunkd's status codes and error bodies, so splunklib's
own client code works against it unmodified.

Model
-----
* Configuration is layered like splunkd's: each app has a *default* layer
  (parsed from ``<app folder>/default/*.conf`` at start) and a *local* layer
  (REST writes), users have private layers per app
  (``etc/users/<user>/<app>/local``).  Reads resolve in the namespace of the
  URL: ``/servicesNS/<owner>/<app>/`` (``-`` wildcards allowed) or
  ``/services/`` (= the caller and the caller's default app).  Precedence in a
  concrete context: the user's layer, the app (local then default), the other
  apps (only what their metadata exports with ``export = system``), then
  ``system``.  Stanza values are merged across layers and the ``[default]``
  stanza fills keys a stanza lacks.  Wildcard reads list every instance
  separately (an entity name may then be ambiguous, as with splunkd).
* ``metadata/default.meta`` of each app is read for ``access`` and
  ``export``; REST writes do not create metadata (perms come from the
  hierarchy ``[conf/stanza]``, ``[conf]``, ``[]``).  When an app defines no
  access, objects are readable by everyone and writable by ``admin``.
* ``storage/passwords`` lives in the ``passwords`` conf file
  (``[credential:<realm>:<user>:]``), ``storage/collections/config`` in
  ``collections``; KV store data is kept per (app, collection) in memory.
* Users, roles and capabilities are small but real: ``admin`` has
  ``admin_all_objects``; ``user`` has neither ``list_storage_passwords`` nor
  ``admin_all_objects``.

Endpoints (under ``/services/`` and ``/servicesNS/<owner>/<app>/``): ``auth/login``,
``server/info``, ``server/settings``, ``server/control/restart`` (only clears the
``restart_required`` message), ``authentication/current-context``,
``authorization/capabilities``, ``messages``, ``apps/local`` (read only), ``kvstore/status``,
``configs/conf-<file>``, ``properties``, ``storage/passwords``, ``storage/collections/config``,
``storage/collections/data/<collection>`` (incl. ``batch_save`` and ``batch_find``),
``shcluster/member/info`` and ``shcluster/member/members`` (members of a ``SearchHeadCluster``; 503 elsewhere),
``search/jobs`` and ``search/v2/jobs`` (jobs the tests create with ``create_job``; ``<sid>``, ``<sid>/control`` with
``action=cancel|finalize|pause|unpause|touch``, ``DELETE <sid>``: cancel).  Anything
else is a 404 with splunkd's error body.

Roles come from ``DEFAULT_ROLES`` and from every app's ``authorize.conf`` (``[role_<name>]`` with
``<capability> = enabled`` and ``importRoles``, ``[capability::<name>]``); a user's capabilities and
the roles that object ACLs check include the imported roles.

Custom REST endpoints: an app's ``restmap.conf`` ``[script:<name>]`` stanzas with ``scripttype =
persist`` are served as splunkd serves them. A request whose path (after ``/services`` or
``/servicesNS/<owner>/<app>``) starts with the stanza's ``match`` is checked against ``capability`` /
``capability.<method>`` (``and``/``or``/parentheses; 403 with splunkd's text), then handed to a
persistent handler process, started on first use and kept (one per driver, as splunkd shares them):
``python persistconn_driver.py`` (``standins/splunk_python``, a stand-in of Splunk's
``splunk.persistconn``), which loads ``<app>/bin/<script>`` and speaks splunkd's packet protocol on its
stdin/stdout. The request is the JSON splunkd sends (``method``, ``rest_path``, ``path_info``,
``query``, ``form``, ``payload`` with ``passPayload``, ``session`` with ``passSession``, ``ns``,
``server``, ``connection``, ``restmap``, and ``system_authtoken`` - a session of
``splunk-system-user``, role ``splunk-system-role`` - with ``passSystemAuth``); the reply's
``status``, ``headers`` and ``payload`` become the HTTP answer. ``python`` and ``splunk_home`` of the
stand-in choose the interpreter and ``SPLUNK_HOME`` of the handler process.

Jobs: only their state is modelled (no search runs). A cancelled job is gone (``404 Unknown
sid.``, as splunkd answers once it deleted the job); a finalised one reports ``isFinalized``
and ``dispatchState`` FINALIZING.  A job is visible to its owner and to ``admin_all_objects``.

Known deviations: only ``default/`` of an app folder is read (never ``local/``); REST writes
do not record an owner in local.meta; error texts that were not confirmed from splunkd are
plausible wordings (KV store 404/409/400 texts in particular); KV ``_user`` is always
``nobody``; the KV store accepts the documented operators plus ``$in $nin $exists $eq`` and
rejects others with 400; ``batch_find`` accepts ``fields`` as a list or a comma string. Persistent
REST handlers: one process per driver, one request at a time (splunkd may run several processes for
one handler); only ``[script:*]`` stanzas with ``scripttype = persist`` of an app's default layer are
served; ``requireAuthentication = false`` and ``acceptFrom`` are not modelled.

Nothing is written to disk.
"""

from __future__ import annotations

import base64
import binascii
import copy
import fnmatch
import hashlib
import ipaddress
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Tuple
from urllib.parse import parse_qsl, quote, unquote, unquote_plus

__all__ = [
    "DEFAULT_APP",
    "RequestRecord",
    "SearchHeadCluster",
    "SplunkdStandin",
    "parse_conf_file",
    "parse_conf_text",
]

DEFAULT_APP = "TA-defender-ipstats"
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NS_ATOM = "http://www.w3.org/2005/Atom"
NS_REST = "http://dev.splunk.com/ns/rest"
NS_OPENSEARCH = "http://a9.com/-/spec/opensearch/1.1/"

# --------------------------------------------------------------------------------------
# .conf parsing
# --------------------------------------------------------------------------------------

ConfFile = Dict[str, Dict[str, str]]


def parse_conf_text(text: str) -> ConfFile:
    """Parse Splunk .conf text into ``{stanza: {key: value}}`` (insertion ordered).

    ``[stanza]`` headers, ``key = value`` lines (split on the first ``=``, both
    sides stripped), ``#`` comment lines, a trailing backslash continues the
    value on the next line (the line break is kept in the value).  Settings
    before the first stanza header belong to ``[default]``.  A repeated key
    wins over an earlier one; repeated stanzas merge.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    result: ConfFile = {}
    current = "default"
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1]
            result.setdefault(current, {})
            continue
        # Line continuation: a trailing backslash joins the next line.
        while line.rstrip().endswith("\\") and i < len(lines):
            line = line.rstrip()[:-1] + "\n" + lines[i]
            i += 1
        if line.rstrip().endswith("\\"):
            line = line.rstrip()[:-1]
        if "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        if not key:
            continue
        result.setdefault(current, {})[key] = value.strip()
    return result


def parse_conf_file(path: str) -> ConfFile:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return parse_conf_text(handle.read())


def _parse_meta(path: str) -> Dict[str, Dict[str, str]]:
    """Parse a .meta file; stanza names are URL-decoded (``[savedsearches/a%20b]``)."""
    parsed = parse_conf_file(path)
    return {unquote(name): values for name, values in parsed.items()}


def _parse_access(value: Optional[str]) -> Optional[Dict[str, List[str]]]:
    """``read : [ * ], write : [ admin, power ]`` -> {"read": ["*"], "write": [...]}"""
    if value is None:
        return None
    perms: Dict[str, List[str]] = {}
    for match in re.finditer(r"(\w+)\s*:\s*\[([^\]]*)\]", value):
        perms[match.group(1)] = [r.strip() for r in match.group(2).split(",") if r.strip()]
    perms.setdefault("read", [])
    perms.setdefault("write", [])
    return perms


# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------


class RequestRecord(NamedTuple):
    """One request as the stand-in saw it."""

    method: str
    path: str  # URL path, percent-decoded, without the query string
    query: Dict[str, Any]  # query-string parameters (a list where repeated)
    status: int  # 0 when the connection was dropped by an injected fault
    username: Optional[str]  # who the request authenticated as (None: not authenticated)
    duration: float  # seconds
    params: Dict[str, Any] = {}  # query + form parameters merged (what splunkd reads)
    body: bytes = b""


class _Fault:
    def __init__(self, regex, status, delay, times, method, message):
        self.regex = re.compile(regex)
        self.status = status
        self.delay = float(delay)
        self.remaining = times
        self.method = method.upper() if method else None
        self.message = message
        self.hits = 0


class _Reply(Exception):
    """Raised by handlers to answer with a status and a body."""

    def __init__(self, status: int, body: bytes = b"", content_type: str = "text/xml; charset=UTF-8",
                 headers: Optional[List[Tuple[str, str]]] = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or []


class _Inst(NamedTuple):
    """Where an object lives: an app (owner None: app level) or a user's private layer."""

    app: str
    owner: Optional[str]


class _View(NamedTuple):
    name: str
    inst: _Inst
    values: Dict[str, str]


# --------------------------------------------------------------------------------------
# Roles and capabilities
# --------------------------------------------------------------------------------------

_USER_CAPS = [
    "change_own_password", "get_metadata", "get_typeahead", "input_file", "list_inputs",
    "output_file", "request_remote_tok", "rest_apps_view", "rest_properties_get",
    "rest_properties_set", "schedule_search", "search", "list_all_objects",
]
_POWER_CAPS = _USER_CAPS + [
    "embed_report", "rtsearch", "schedule_rtsearch", "edit_sourcetypes", "accelerate_search",
]
_ADMIN_CAPS = _POWER_CAPS + [
    "admin_all_objects", "edit_storage_passwords", "list_storage_passwords", "edit_server",
    "edit_user", "edit_roles", "list_settings", "edit_kvstore", "list_users", "list_roles",
    "license_edit", "restart_splunkd", "delete_messages", "edit_token_http", "list_tokens_all",
    "edit_tokens_all", "dispatch_rest_to_indexers", "edit_local_apps", "install_apps",
]
DEFAULT_ROLES: Dict[str, List[str]] = {
    "admin": sorted(set(_ADMIN_CAPS)),
    "power": sorted(set(_POWER_CAPS)),
    "user": sorted(set(_USER_CAPS)),
    "splunk-system-role": sorted(set(_ADMIN_CAPS)),
}

_REASONS = {
    200: "OK", 201: "Created", 204: "No Content", 303: "See Other", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    409: "Conflict", 413: "Request Entity Too Large", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}

# --------------------------------------------------------------------------------------
# XML / JSON rendering
# --------------------------------------------------------------------------------------

_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(value: Any) -> str:
    text = _XML_BAD.sub("", str(value))
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _xml_attr(value: Any) -> str:
    return '"' + _xml_text(value).replace('"', "&quot;") + '"'


def _xml_value(value: Any, indent: str) -> str:
    if isinstance(value, dict):
        inner = indent + "  "
        parts = ["\n" + inner + "<s:dict>"]
        for key, val in value.items():
            parts.append("\n" + inner + "  <s:key name=" + _xml_attr(key) + ">"
                         + _xml_value(val, inner + "  ") + "</s:key>")
        parts.append("\n" + inner + "</s:dict>\n" + indent)
        return "".join(parts)
    if isinstance(value, (list, tuple)):
        inner = indent + "  "
        parts = ["\n" + inner + "<s:list>"]
        for item in value:
            parts.append("\n" + inner + "  <s:item>" + _xml_value(item, inner + "  ") + "</s:item>")
        parts.append("\n" + inner + "</s:list>\n" + indent)
        return "".join(parts)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return _xml_text(value)


def _error_body(text: str, output_mode: str, msg_type: str = "ERROR", code: Optional[str] = None) -> Tuple[bytes, str]:
    if output_mode == "json":
        message: Dict[str, Any] = {"type": msg_type, "text": text}
        if code is not None:
            message["code"] = code
        return json.dumps({"messages": [message]}).encode(), "application/json; charset=UTF-8"
    code_attr = "" if code is None else " code=" + _xml_attr(code)
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<response>\n  <messages>\n'
            '    <msg type=' + _xml_attr(msg_type) + code_attr + '>' + _xml_text(text)
            + '</msg>\n  </messages>\n</response>\n')
    return body.encode("utf-8"), "text/xml; charset=UTF-8"


def _timestamp(epoch: Optional[float] = None) -> str:
    moment = datetime.fromtimestamp(epoch if epoch is not None else time.time(), tz=timezone.utc)
    return moment.astimezone().isoformat(timespec="seconds")


class _Entry:
    """An Atom entry, renderable as XML or JSON."""

    def __init__(self, name: str, href: str, author: str, content: Any, links: Dict[str, str],
                 acl: Optional[Dict[str, Any]] = None, attributes: Optional[Dict[str, List[str]]] = None,
                 text_content: bool = False):
        self.name = name
        self.href = href
        self.author = author
        self.content = content
        self.links = links
        self.acl = acl
        self.attributes = attributes
        self.text_content = text_content

    def sort_key(self):
        return (self.name.lower(), self.name, self.acl.get("app", "") if self.acl else "")

    def flat_content(self) -> Dict[str, Any]:
        if self.text_content or not isinstance(self.content, dict):
            return {}
        return self.content


def _xml_content_dict(entry: _Entry) -> Dict[str, Any]:
    content = dict(entry.content)
    if entry.acl is not None:
        content["eai:acl"] = _acl_xml(entry.acl)
    if entry.attributes is not None:
        content["eai:attributes"] = {
            "optionalFields": entry.attributes.get("optional", []),
            "requiredFields": entry.attributes.get("required", []),
            "wildcardFields": entry.attributes.get("wildcard", []),
        }
    return {key: content[key] for key in sorted(content)}


def _acl_xml(acl: Dict[str, Any]) -> Dict[str, Any]:
    out = {}
    for key in sorted(acl):
        value = acl[key]
        if key == "perms" and value is not None:
            value = {k: value[k] for k in sorted(value)}
        out[key] = value
    return out


def _acl_json(acl: Dict[str, Any]) -> Dict[str, Any]:
    out = {}
    for key in sorted(acl):
        value = acl[key]
        if key.startswith("can_") or key in ("modifiable", "removable"):
            value = bool(value)
        out[key] = value
    return out


def _json_content_value(key: str, value: Any) -> Any:
    if key == "disabled" and isinstance(value, (str, bool, int)):
        return str(value).strip().lower() in ("1", "true", "t", "yes", "y")
    return value


# --------------------------------------------------------------------------------------
# KV store query engine (the MongoDB semantics splunkd passes through)
# --------------------------------------------------------------------------------------

_MISSING = object()


def _type_rank(value: Any) -> int:
    # BSON comparison order: null < numbers < strings < objects < arrays < booleans
    if value is None or value is _MISSING:
        return 1
    if isinstance(value, bool):
        return 8
    if isinstance(value, (int, float)):
        return 2
    if isinstance(value, str):
        return 3
    if isinstance(value, dict):
        return 4
    if isinstance(value, list):
        return 5
    return 9


def _bson_eq(left: Any, right: Any) -> bool:
    if _type_rank(left) != _type_rank(right):
        return False
    if isinstance(left, list):
        return len(left) == len(right) and all(_bson_eq(a, b) for a, b in zip(left, right))
    if isinstance(left, dict):
        return list(left.keys()) == list(right.keys()) and all(_bson_eq(left[k], right[k]) for k in left)
    if left is None or left is _MISSING:
        return True
    return left == right


def _sort_value(value: Any):
    rank = _type_rank(value)
    if rank == 1:
        return (1, 0)
    if rank in (2, 3, 8):
        return (rank, value)
    if rank == 4:
        return (4, json.dumps(value, sort_keys=True, default=str))
    if rank == 5:
        return (5, tuple(_sort_value(v) for v in value))
    return (9, str(value))


def _path_values(doc: Any, path: str) -> List[Any]:
    """Values reachable by a dotted path; arrays expand like MongoDB's."""
    current = [doc]
    for part in path.split("."):
        nxt = []
        for item in current:
            if isinstance(item, dict):
                if part in item:
                    nxt.append(item[part])
            elif isinstance(item, list):
                if part.isdigit() and int(part) < len(item):
                    nxt.append(item[int(part)])
                for element in item:
                    if isinstance(element, dict) and part in element:
                        nxt.append(element[part])
        current = nxt
    return current


def _candidates(doc: Any, path: str) -> List[Any]:
    out = []
    for value in _path_values(doc, path):
        out.append(value)
        if isinstance(value, list):
            out.extend(value)
    return out


class _QueryError(Exception):
    pass


_FIELD_OPERATORS = {"$gt", "$gte", "$lt", "$lte", "$ne", "$eq", "$in", "$nin", "$not", "$exists"}


def _compare(op: str, cand: Any, operand: Any) -> bool:
    """$gt/$gte/$lt/$lte: only values of the same BSON type bracket compare (MongoDB)."""
    if _type_rank(cand) != _type_rank(operand):
        return False
    left, right = _sort_value(cand), _sort_value(operand)
    if op == "$gt":
        return left > right
    if op == "$gte":
        return left >= right
    if op == "$lt":
        return left < right
    return left <= right


def _field_matches(doc: Dict[str, Any], path: str, condition: Any, convert) -> bool:
    cands = _candidates(doc, path)
    exists = bool(_path_values(doc, path))

    def eq(operand):
        operand = convert(path, operand)
        if operand is None and not exists:
            return True
        return any(_bson_eq(c, operand) for c in cands)

    if isinstance(condition, dict) and condition and all(k.startswith("$") for k in condition):
        for op, operand in condition.items():
            if op not in _FIELD_OPERATORS:
                raise _QueryError("Unsupported operator: " + op)
            if op == "$eq":
                ok = eq(operand)
            elif op == "$ne":
                ok = not eq(operand)
            elif op in ("$gt", "$gte", "$lt", "$lte"):
                operand = convert(path, operand)
                ok = any(_compare(op, c, operand) for c in cands)
            elif op in ("$in", "$nin"):
                if not isinstance(operand, list):
                    raise _QueryError(op + " needs an array")
                ok = any(eq(o) for o in operand)
                if op == "$nin":
                    ok = not ok
            elif op == "$exists":
                ok = exists == bool(operand)
            else:  # $not
                if not isinstance(operand, dict):
                    raise _QueryError("$not needs an object")
                ok = not _field_matches(doc, path, operand, convert)
            if not ok:
                return False
        return True
    return eq(condition)


def _keys_only(query: Any) -> Optional[List[str]]:
    """The keys of a query that only selects by ``_key`` equality ({"_key": k} or an $or of them)."""
    if not isinstance(query, dict) or len(query) != 1:
        return None
    clauses = query.get("$or", [query])
    if not isinstance(clauses, list) or not clauses:
        return None
    keys = []
    for clause in clauses:
        if not (isinstance(clause, dict) and len(clause) == 1 and isinstance(clause.get("_key"), str)):
            return None
        keys.append(clause["_key"])
    return keys


def _query_matches(doc: Dict[str, Any], query: Any, convert) -> bool:
    if not isinstance(query, dict):
        raise _QueryError("query must be a JSON object")
    for key, value in query.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise _QueryError(key + " needs a non-empty array")
            results = [_query_matches(doc, sub, convert) for sub in value]
            if (key == "$and" and not all(results)) or (key == "$or" and not any(results)):
                return False
        elif key == "$not":
            if not isinstance(value, dict):
                raise _QueryError("$not needs an object")
            if _query_matches(doc, value, convert):
                return False
        elif key.startswith("$"):
            raise _QueryError("Unsupported operator: " + key)
        elif not _field_matches(doc, key, value, convert):
            return False
    return True


def _bool_of(value: Any) -> Optional[bool]:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "t", "1", "yes", "y"):
            return True
        if lowered in ("false", "f", "0", "no", "n"):
            return False
    return None


def _number_of(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        if number != number or number in (float("inf"), float("-inf")):
            return None
        if number.is_integer() and abs(number) < 2 ** 53:
            return int(number)
        return number
    return None


def _convert_type(field_type: str, value: Any) -> Tuple[bool, Any]:
    """Convert ``value`` to a collection field type; (ok, converted)."""
    if value is None:
        return True, None
    field_type = field_type.strip().lower()
    if field_type in ("number", "time"):
        number = _number_of(value)
        return (number is not None), number
    if field_type == "bool":
        flag = _bool_of(value)
        return (flag is not None), flag
    if field_type == "string":
        if isinstance(value, bool):
            return True, "true" if value else "false"
        if isinstance(value, (int, float, str)):
            return True, value if isinstance(value, str) else json.dumps(value)
        return False, None
    if field_type == "array":
        return isinstance(value, list), value
    if field_type == "cidr":
        if not isinstance(value, str):
            return False, None
        try:
            ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            return False, None
        return True, value.strip()
    return True, value


def _set_path(doc: Dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        nxt = doc.get(part)
        if not isinstance(nxt, dict):
            return
        doc = nxt
    doc[parts[-1]] = value


def _del_path(doc: Dict[str, Any], path: str) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        nxt = doc.get(part)
        if not isinstance(nxt, dict):
            return
        doc = nxt
    doc.pop(parts[-1], None)


def _project(doc: Dict[str, Any], fields: Optional[str]) -> Dict[str, Any]:
    if not fields:
        return doc
    include, exclude = [], []
    for spec in fields.split(","):
        spec = spec.strip()
        if not spec:
            continue
        name, _, flag = spec.partition(":")
        name = name.strip()
        if name == "_id":
            name = "_key"
        if flag.strip() in ("0", "false"):
            exclude.append(name)
        else:
            include.append(name)
    if include:
        out: Dict[str, Any] = {}
        for name in include:
            if name in doc:
                out[name] = doc[name]
            elif "." in name:
                values = _path_values(doc, name)
                if values:
                    head = name.split(".")[0]
                    sub = out.setdefault(head, {})
                    if isinstance(sub, dict):
                        _nested_set(sub, name.split(".")[1:], values[0])
        if "_key" not in exclude and "_key" in doc:
            out["_key"] = doc["_key"]
        for name in exclude:
            out.pop(name, None)
        return out
    out = copy.deepcopy(doc)
    for name in exclude:
        _del_path(out, name)
    return out


def _nested_set(target: Dict[str, Any], parts: List[str], value: Any) -> None:
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


def _sort_docs(docs: List[Dict[str, Any]], sort: Optional[str]) -> List[Dict[str, Any]]:
    if not sort:
        return docs
    specs = []
    for spec in sort.split(","):
        spec = spec.strip()
        if not spec:
            continue
        name, _, direction = spec.partition(":")
        direction = direction.strip() or "1"
        if direction not in ("1", "-1"):
            raise _QueryError("Invalid sort direction: " + spec)
        specs.append((name.strip(), direction == "-1"))
    ordered = list(docs)
    for name, descending in reversed(specs):
        def key(doc, name=name, descending=descending):
            values = _path_values(doc, name)
            if not values:
                return _sort_value(None)
            value = values[0]
            if isinstance(value, list) and value:
                keys = [_sort_value(v) for v in value]
                return max(keys) if descending else min(keys)
            return _sort_value(value)
        ordered.sort(key=key, reverse=descending)
    return ordered


def _json_number_fix(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53:
        return int(value)
    if isinstance(value, dict):
        return {k: _json_number_fix(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_number_fix(v) for v in value]
    return value


# --------------------------------------------------------------------------------------
# Credential names
# --------------------------------------------------------------------------------------


def _escape_cred(part: str) -> str:
    return part.replace("\\", "\\\\").replace(":", "\\:")


def _cred_name(realm: str, username: str) -> str:
    return _escape_cred(realm) + ":" + _escape_cred(username) + ":"


def _split_cred_name(name: str) -> Optional[Tuple[str, str]]:
    parts: List[str] = []
    current: List[str] = []
    i = 0
    trailing_colon = False
    while i < len(name):
        char = name[i]
        if char == "\\" and i + 1 < len(name):
            current.append(name[i + 1])
            i += 2
            continue
        if char == ":":
            parts.append("".join(current))
            current = []
            i += 1
            trailing_colon = i == len(name)
            continue
        current.append(char)
        i += 1
    if not trailing_colon:
        parts.append("".join(current))
    if len(parts) == 1:
        return "", parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    return None


# --------------------------------------------------------------------------------------
# The stand-in
# --------------------------------------------------------------------------------------


class _Request:
    def __init__(self, method: str, raw_path: str, headers, body: bytes):
        self.method = method
        self.raw_path = raw_path
        self.headers = headers
        self.body = body
        path, _, query_string = raw_path.partition("?")
        self.path = path
        self.query: Dict[str, Any] = {}
        for key, value in parse_qsl(query_string, keep_blank_values=True):
            _add_param(self.query, key, value)
        self.form: Dict[str, Any] = {}
        content_type = (headers.get("Content-Type") or "").lower()
        if method in ("POST", "PUT", "PATCH") and body and "json" not in content_type:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = body.decode("latin-1")
            for key, value in parse_qsl(text, keep_blank_values=True):
                _add_param(self.form, key, value)
        self.params: Dict[str, Any] = dict(self.query)
        for key, value in self.form.items():
            self.params[key] = value
        mode = self.param("output_mode")
        self.output_mode = "json" if mode and mode.startswith("json") else "xml"
        self.username: Optional[str] = None

    def param(self, name: str, default: Optional[str] = None) -> Optional[str]:
        value = self.params.get(name, default)
        if isinstance(value, list):
            return value[-1]
        return value


def _add_param(target: Dict[str, Any], key: str, value: str) -> None:
    if key in target:
        existing = target[key]
        if isinstance(existing, list):
            existing.append(value)
        else:
            target[key] = [existing, value]
    else:
        target[key] = value


def _int_param(value: Optional[str], default: int) -> int:
    if value is None:
        return default
    try:
        return int(str(value).strip())
    except ValueError:
        return default


_RESERVED_POST_KEYS = {"output_mode", "name", "__conf", "__stanza"}


class SplunkdStandin:
    """A splunkd stand-in on ``http://127.0.0.1:<port>``.  See the module docstring."""

    def __init__(self, apps: Optional[Dict[str, Optional[str]]] = None,
                 users: Optional[Dict[str, Dict[str, Any]]] = None,
                 roles: Optional[Dict[str, Iterable[str]]] = None,
                 version: str = "9.0.9",
                 max_documents_per_batch_save: int = 1000,
                 max_rows_per_query: int = 50000,
                 server_name: str = "splunk-standin",
                 python: Optional[str] = None,
                 splunk_home: Optional[str] = None,
                 cluster: Optional[SearchHeadCluster] = None):
        self._lock = threading.RLock()
        # A member of a search head cluster shares the cluster's KV store (see SearchHeadCluster).
        self.cluster = cluster
        self.python = python or sys.executable
        self.splunk_home = splunk_home
        self.role_imports: Dict[str, List[str]] = {}
        self.custom_capabilities: List[str] = []
        self._drivers: Dict[Tuple[str, ...], _PersistentDriver] = {}
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
        with self._lock:
            drivers = list(self._drivers.values())
        for driver in drivers:
            driver.stop()

    @property
    def handler_starts(self) -> int:
        """How many persistent REST handler processes were started."""
        with self._lock:
            return sum(d.starts for d in self._drivers.values())

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

    # ======================================================== conf resolution

    def _layer(self, key: Tuple[str, str, str]) -> Dict[str, ConfFile]:
        return self._layers.get(key, {})

    def _inst_stanza(self, inst: _Inst, conf: str, stanza: str) -> Optional[Dict[str, str]]:
        if inst.owner is None:
            default = self._layer(("app", inst.app, "default")).get(conf, {}).get(stanza)
            local = self._layer(("app", inst.app, "local")).get(conf, {}).get(stanza)
            if default is None and local is None:
                return None
            merged = dict(default or {})
            merged.update(local or {})
            return merged
        return self._layer(("user", inst.owner, inst.app)).get(conf, {}).get(stanza)

    def _inst_names(self, inst: _Inst, conf: str) -> List[str]:
        if inst.owner is None:
            names = list(self._layer(("app", inst.app, "default")).get(conf, {}))
            for name in self._layer(("app", inst.app, "local")).get(conf, {}):
                if name not in names:
                    names.append(name)
            return names
        return list(self._layer(("user", inst.owner, inst.app)).get(conf, {}))

    def _inst_in_local(self, inst: _Inst, conf: str, stanza: str) -> bool:
        if inst.owner is None:
            return stanza in self._layer(("app", inst.app, "local")).get(conf, {})
        return True

    def _inst_has_conf(self, inst: _Inst, conf: str) -> bool:
        if inst.owner is None:
            return (conf in self._layer(("app", inst.app, "default"))
                    or conf in self._layer(("app", inst.app, "local")))
        return conf in self._layer(("user", inst.owner, inst.app))

    def _meta_value(self, app: str, conf: str, stanza: Optional[str], key: str) -> Optional[str]:
        candidates = []
        if stanza is not None:
            candidates.append(conf + "/" + stanza)
        candidates += [conf, ""]
        for meta_stanza in candidates:
            for level in ("local", "default"):
                value = self._meta.get((app, level), {}).get(meta_stanza, {}).get(key)
                if value is not None:
                    return value
        return None

    def _exported(self, app: str, conf: str, stanza: str) -> bool:
        if app == "system":
            return True
        return (self._meta_value(app, conf, stanza, "export") or "none").strip() == "system"

    def _chain(self, owner: str, app: str) -> List[Tuple[_Inst, bool]]:
        """Locations visible in a concrete context, highest precedence first (inst, exported_only)."""
        chain: List[Tuple[_Inst, bool]] = []
        if owner and owner not in ("nobody", "-"):
            chain.append((_Inst(app, owner), False))
        if app in self._apps:
            chain.append((_Inst(app, None), False))
        for other in sorted(self._apps):
            if other not in (app, "system"):
                chain.append((_Inst(other, None), True))
        if app != "system":
            chain.append((_Inst("system", None), False))
        return chain

    def _merged(self, conf: str, owner: str, app: str, stanza: str) -> Optional[Tuple[_Inst, Dict[str, str]]]:
        top: Optional[_Inst] = None
        layers: List[Dict[str, str]] = []
        for inst, exported_only in self._chain(owner, app):
            values = self._inst_stanza(inst, conf, stanza)
            if values is None or (exported_only and not self._exported(inst.app, conf, stanza)):
                continue
            if top is None:
                top = inst
            layers.append(values)
        if top is None:
            return None
        merged: Dict[str, str] = {}
        for values in reversed(layers):
            merged.update(values)
        return top, merged

    def _view(self, conf: str, owner: str, app: str, stanza: str) -> Optional[_View]:
        found = self._merged(conf, owner, app, stanza)
        if found is None:
            return None
        inst, values = found
        if stanza != "default":
            defaults = self._merged(conf, owner, app, "default")
            if defaults is not None:
                for key, value in defaults[1].items():
                    values.setdefault(key, value)
        return _View(stanza, inst, values)

    def _views(self, conf: str, owner: str, app: str, stanza: Optional[str] = None) -> List[_View]:
        """Every entity visible in a namespace (wildcards list instances separately)."""
        views: List[_View] = []
        if app != "-" and owner != "-":
            names: List[str] = []
            for inst, exported_only in self._chain(owner, app):
                for name in self._inst_names(inst, conf):
                    if exported_only and not self._exported(inst.app, conf, name):
                        continue
                    if name not in names:
                        names.append(name)
            for name in names:
                if stanza is not None and name != stanza:
                    continue
                view = self._view(conf, owner, app, name)
                if view is not None:
                    views.append(view)
            return views
        apps = sorted(self._apps) if app == "-" else [app]
        if owner == "-":
            users = sorted({key[1] for key in self._layers if key[0] == "user"})
        elif owner and owner != "nobody":
            users = [owner]
        else:
            users = []
        if app == "-":
            for app_name in apps:
                for name in self._inst_names(_Inst(app_name, None), conf):
                    if stanza is None or name == stanza:
                        view = self._view(conf, "nobody", app_name, name)
                        if view is not None and view.inst == _Inst(app_name, None):
                            views.append(view)
        else:
            views.extend(self._views(conf, "nobody", app, stanza))
        for user in users:
            for app_name in apps:
                for name in self._inst_names(_Inst(app_name, user), conf):
                    if stanza is None or name == stanza:
                        view = self._view(conf, user, app_name, name)
                        if view is not None:
                            views.append(view)
        return views

    # ----------------------------------------------------------- permissions

    def _has_cap(self, user: str, *caps: str) -> bool:
        mine = set(self.capabilities_of(user))
        return any(cap in mine for cap in caps)

    def _perms(self, inst: _Inst, conf: str, stanza: Optional[str]) -> Optional[Dict[str, List[str]]]:
        if inst.owner is not None:
            return None
        perms = _parse_access(self._meta_value(inst.app, conf, stanza, "access"))
        if perms is None:
            perms = {"read": ["*"], "write": ["admin"]}
        return perms

    def _role_allows(self, user: str, roles_allowed: List[str]) -> bool:
        if "*" in roles_allowed:
            return True
        return bool(set(self.roles_of(user)) & set(roles_allowed))

    def _can_read(self, user: str, inst: _Inst, conf: str, stanza: str) -> bool:
        if self._has_cap(user, "admin_all_objects"):
            return True
        if inst.owner is not None:
            return inst.owner == user
        perms = self._perms(inst, conf, stanza)
        return perms is None or self._role_allows(user, perms.get("read", []))

    def _can_write(self, user: str, inst: _Inst, conf: str, stanza: Optional[str]) -> bool:
        if self._has_cap(user, "admin_all_objects"):
            return True
        if inst.owner is not None:
            return inst.owner == user
        perms = self._perms(inst, conf, stanza)
        return perms is None or self._role_allows(user, perms.get("write", []))

    def _require_write(self, req: _Request, inst: _Inst, conf: str, stanza: Optional[str]) -> None:
        user = req.username or ""
        if self._can_write(user, inst, conf, stanza):
            return
        perms = self._perms(inst, conf, stanza) or {"read": [], "write": []}
        roles = ", ".join(self.users.get(user, {}).get("roles", ()))
        owner = inst.owner or "nobody"
        target = "/%s/%s/%s" % (owner, inst.app, conf) + ("/" + stanza if stanza else "")
        export = "global" if stanza and self._exported(inst.app, conf, stanza) else "app"
        text = ("User '%s' with roles { %s } cannot write: %s { read : [ %s ], write : [ %s ] }, "
                "export: %s, removable: no" % (user, roles, target, ", ".join(perms.get("read", [])),
                                               ", ".join(perms.get("write", [])), export))
        self._fail(req, 403, text)

    def _acl(self, user: str, inst: _Inst, conf: str, stanza: str) -> Dict[str, Any]:
        if inst.owner is not None:
            sharing = "user"
        elif inst.app == "system":
            sharing = "system"
        elif self._exported(inst.app, conf, stanza):
            sharing = "global"
        else:
            sharing = "app"
        owner = inst.owner or self._meta_value(inst.app, conf, stanza, "owner") or "nobody"
        can_write = self._can_write(user, inst, conf, stanza)
        return {
            "app": inst.app,
            "can_change_perms": can_write,
            "can_list": True,
            "can_share_app": can_write,
            "can_share_global": can_write,
            "can_share_user": inst.owner is not None,
            "can_write": can_write,
            "modifiable": True,
            "owner": owner,
            "perms": self._perms(inst, conf, stanza),
            "removable": self._inst_in_local(inst, conf, stanza),
            "sharing": sharing,
        }

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
        key = (conf.get("driver", "appserver"), self.python)
        with self._lock:
            driver = self._drivers.get(key)
            if driver is None:
                driver = self._drivers[key] = _PersistentDriver(self)
        answer = driver.call(command, conf.get("script.param", ""), json.dumps(request).encode("utf-8"))
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

    # ================================================================ render

    def _origin(self, path: str) -> str:
        return self.base_url + path

    def _ns_prefix(self, ctx: _Ctx) -> str:
        if ctx.ns is None:
            return "/services/"
        return "/servicesNS/%s/%s/" % (quote(ctx.ns[0], safe=""), quote(ctx.ns[1], safe=""))

    def _entity_href(self, inst: _Inst, base: str, name: str) -> str:
        return "/servicesNS/%s/%s/%s/%s" % (quote(inst.owner or "nobody", safe=""), quote(inst.app, safe=""),
                                           base, quote(name, safe=""))

    def _feed(self, req: _Request, title: str, feed_path: str, entries: List[_Entry],
              links: Optional[Dict[str, str]] = None, paginate: bool = True, status: int = 200) -> None:
        total = len(entries)
        offset, count = 0, 30
        if paginate:
            entries, total, offset, count = self._paginate(req, entries)
        if links is None:
            links = {"create": feed_path + "/_new", "_reload": feed_path + "/_reload",
                     "_acl": feed_path + "/_acl"}
        if req.output_mode == "json":
            body = self._render_json(feed_path, entries, links, total, offset, count)
            raise _Reply(status, body, "application/json; charset=UTF-8")
        raise _Reply(status, self._render_xml(title, feed_path, entries, links, total, offset, count))

    def _paginate(self, req: _Request, entries: List[_Entry]):
        search = req.param("search")
        if search:
            entries = [e for e in entries if _search_matches(e, search)]
        sort_key = req.param("sort_key")
        if sort_key and sort_key != "name":
            entries = sorted(entries, key=lambda e: str(e.flat_content().get(sort_key, "")).lower())
        else:
            entries = sorted(entries, key=_Entry.sort_key)
        if (req.param("sort_dir") or "asc").lower() == "desc":
            entries = list(reversed(entries))
        field_filter = req.params.get("f")
        if field_filter:
            patterns = field_filter if isinstance(field_filter, list) else [field_filter]
            for entry in entries:
                if isinstance(entry.content, dict) and not entry.text_content:
                    entry.content = {k: v for k, v in entry.content.items()
                                     if any(fnmatch.fnmatchcase(k, p) for p in patterns)}
        total = len(entries)
        offset = max(0, _int_param(req.param("offset"), 0))
        count = _int_param(req.param("count"), 30)
        if count <= 0:
            page = entries[offset:]
        else:
            page = entries[offset:offset + count]
        return page, total, offset, count

    def _render_xml(self, title: str, feed_path: str, entries: List[_Entry], links: Dict[str, str],
                    total: int, offset: int, count: int) -> bytes:
        now = _timestamp()
        out = ['<?xml version="1.0" encoding="UTF-8"?>\n',
               '<!--This is to override browser formatting; see server.conf[httpServer] to disable.'
               ' . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . .-->\n',
               '<?xml-stylesheet type="text/xml" href="/static/atom.xsl"?>\n',
               '<feed xmlns="%s" xmlns:s="%s" xmlns:opensearch="%s">\n' % (NS_ATOM, NS_REST, NS_OPENSEARCH),
               '  <title>%s</title>\n' % _xml_text(title),
               '  <id>%s</id>\n' % _xml_text(self._origin(feed_path)),
               '  <updated>%s</updated>\n' % now,
               '  <generator build=%s version=%s/>\n' % (_xml_attr(self.build), _xml_attr(self.version)),
               '  <author>\n    <name>Splunk</name>\n  </author>\n']
        for rel, href in links.items():
            out.append('  <link href=%s rel=%s/>\n' % (_xml_attr(href), _xml_attr(rel)))
        out.append('  <opensearch:totalResults>%d</opensearch:totalResults>\n' % total)
        out.append('  <opensearch:itemsPerPage>%d</opensearch:itemsPerPage>\n' % count)
        out.append('  <opensearch:startIndex>%d</opensearch:startIndex>\n' % offset)
        out.append('  <s:messages/>\n')
        for entry in entries:
            out.append('  <entry>\n')
            out.append('    <title>%s</title>\n' % _xml_text(entry.name))
            out.append('    <id>%s</id>\n' % _xml_text(self._origin(entry.href)))
            out.append('    <updated>%s</updated>\n' % now)
            out.append('    <link href=%s rel="alternate"/>\n' % _xml_attr(entry.href))
            out.append('    <author>\n      <name>%s</name>\n    </author>\n' % _xml_text(entry.author))
            for rel, href in entry.links.items():
                out.append('    <link href=%s rel=%s/>\n' % (_xml_attr(href), _xml_attr(rel)))
            if entry.text_content:
                out.append('    <content type="text">%s</content>\n' % _xml_text(entry.content))
            else:
                out.append('    <content type="text/xml">%s</content>\n'
                           % _xml_value(_xml_content_dict(entry), "    "))
            out.append('  </entry>\n')
        out.append('</feed>\n')
        return "".join(out).encode("utf-8")

    def _render_json(self, feed_path: str, entries: List[_Entry], links: Dict[str, str],
                     total: int, offset: int, count: int) -> bytes:
        now = _timestamp()
        rendered = []
        for entry in entries:
            item: Dict[str, Any] = {
                "name": entry.name,
                "id": self._origin(entry.href),
                "updated": now,
                "links": dict({"alternate": entry.href}, **entry.links),
                "author": entry.author,
            }
            if entry.acl is not None:
                item["acl"] = _acl_json(entry.acl)
            if entry.attributes is not None:
                item["fields"] = {"required": entry.attributes.get("required", []),
                                  "optional": entry.attributes.get("optional", []),
                                  "wildcard": entry.attributes.get("wildcard", [])}
            if entry.text_content:
                item["content"] = entry.content
            else:
                content = {k: _json_content_value(k, entry.content[k]) for k in sorted(entry.content)}
                if entry.acl is not None:
                    content["eai:acl"] = None
                item["content"] = {k: content[k] for k in sorted(content)}
            rendered.append(item)
        doc = {
            "links": links,
            "origin": self._origin(feed_path),
            "updated": now,
            "generator": {"build": self.build, "version": self.version},
            "entry": rendered,
            "paging": {"total": total, "perPage": count, "offset": offset},
            "messages": [],
        }
        return json.dumps(doc).encode("utf-8")

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

    # ------------------------------------------------ search head clustering

    def _server_roles(self) -> List[str]:
        roles = ["indexer", "license_master", "kv_store"]
        if self.cluster is not None:
            roles = ["kv_store", "search_head", "shc_member"]
            if self.cluster.captain is self:
                roles.append("shc_captain")
        return roles

    def _refuse_if_kv_down(self, req: _Request) -> None:
        if self.cluster is not None and self.cluster.kv_status != "ready":
            self._kv_fail(req, 503, self.cluster.KV_DOWN_TEXT)

    def _ep_shcluster(self, req: _Request, rest: List[str]) -> None:
        """``shcluster/member/info`` (this member) and ``shcluster/member/members`` (every member).

        Not a member: 503 with the text below (solnlib's ``ServerInfo`` reads 404 or 503 as "not a
        member"; the wording is not confirmed). Listing needs ``list_search_head_clustering``.
        """
        if req.method not in ("GET", "HEAD"):
            self._fail(req, 405, "Method Not Allowed")
        if rest[1:2] != ["member"] or rest[2:3] not in (["info"], ["members"]):
            self._fail(req, 404, "Not Found")
        if self.cluster is None:
            self._fail(req, 503, "Search head clustering is not enabled on this node.")
        if not self._has_cap(req.username or "", "list_search_head_clustering", "admin_all_objects"):
            self._fail(req, 403, "You (user=%s) do not have permission to perform this operation "
                                 "(requires capability: list_search_head_clustering)." % req.username)
        if rest[2] == "info":
            entry = self._system_entry("member", "/services/shcluster/member/info/member",
                                       self.cluster.member_info(self))
            self._feed(req, "shclustermemberinfo", "/services/shcluster/member/info", [entry], links={})
        entries = [self._system_entry(member.guid, "/services/shcluster/member/members/" + member.guid,
                                      self.cluster.member_entry(member))
                   for member in self.cluster.members]
        self._feed(req, "shclustermembers", "/services/shcluster/member/members", entries)

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

    # ----------------------------------------------------------------- jobs

    def _job_entry(self, job: Dict[str, Any]) -> _Entry:
        sid, owner, app = job["sid"], job["owner"], job["app"]
        href = "/servicesNS/%s/%s/search/jobs/%s" % (quote(owner, safe=""), quote(app, safe=""), quote(sid, safe=""))
        run_duration = round(time.time() - job["created"], 3)
        search = job["search"]
        content = {
            "bundleVersion": "0", "canSummarize": False, "cursorTime": "1970-01-01T00:00:00.000+00:00",
            "defaultSaveTTL": "604800", "defaultTTL": "600", "delegate": "", "diskUsage": 4096,
            "dispatchState": job["dispatchState"], "doneProgress": 1 if job["isDone"] else 0,
            "dropCount": 0, "earliestTime": "1970-01-01T00:00:00.000+00:00", "eventAvailableCount": 0,
            "eventCount": 0, "eventFieldCount": 0, "eventIsStreaming": True, "eventIsTruncated": True,
            "eventSearch": "", "eventSorting": "none", "isBatchModeSearch": False,
            "isDone": job["isDone"], "isEventsPreviewEnabled": False, "isFailed": job["isFailed"],
            "isFinalized": job["isFinalized"], "isPaused": job["isPaused"], "isPreviewEnabled": False,
            "isRealTimeSearch": False, "isRemoteTimeline": False, "isSaved": False, "isSavedSearch": False,
            "isTimeCursored": False, "isZombie": False, "keywords": "", "label": "",
            "normalizedSearch": search, "numPreviews": 0, "optimizedSearch": search, "phase0": search,
            "phase1": "", "pid": "4242", "priority": 5, "provenance": "UI:Search", "remoteSearch": "",
            "reportSearch": search, "resultCount": 0, "resultIsStreaming": False, "resultPreviewCount": 0,
            "runDuration": run_duration, "sampleRatio": "1", "sampleSeed": "0", "scanCount": 0,
            "searchCanBeEventType": False, "searchTotalBucketsCount": 0, "searchTotalEliminatedBucketsCount": 0,
            "sid": sid, "statusBuckets": 0, "ttl": 600, "messages": {},
            "request": {"search": search}, "runtime": {"auto_cancel": "0", "auto_pause": "0"},
            "searchProviders": [self.server_name],
        }
        links = {rel: href + "/" + rel for rel in ("search.log", "events", "results", "results_preview",
                                                    "timeline", "summary", "control")}
        acl = {"app": app, "can_write": True, "modifiable": True, "owner": owner,
               "perms": {"read": [owner], "write": [owner]}, "sharing": "global", "ttl": "600"}
        return _Entry(search, href, owner, content, links, acl=acl)

    def _render_bare_entry(self, entry: _Entry) -> bytes:
        """A job's Atom XML is one ``<entry>`` at the top level, not inside a ``<feed>`` (splunklib relies on it)."""
        now = _timestamp()
        out = ['<?xml version="1.0" encoding="UTF-8"?>\n',
               '<entry xmlns="%s" xmlns:s="%s" xmlns:opensearch="%s">\n' % (NS_ATOM, NS_REST, NS_OPENSEARCH),
               '  <title>%s</title>\n' % _xml_text(entry.name),
               '  <id>%s</id>\n' % _xml_text(self._origin(entry.href)),
               '  <updated>%s</updated>\n' % now,
               '  <link href=%s rel="alternate"/>\n' % _xml_attr(entry.href),
               '  <published>%s</published>\n' % now,
               '  <author>\n    <name>%s</name>\n  </author>\n' % _xml_text(entry.author)]
        for rel, href in entry.links.items():
            out.append('  <link href=%s rel=%s/>\n' % (_xml_attr(href), _xml_attr(rel)))
        out.append('  <content type="text/xml">%s</content>\n' % _xml_value(_xml_content_dict(entry), "  "))
        out.append('</entry>\n')
        return "".join(out).encode("utf-8")

    def _visible_job(self, req: _Request, sid: str) -> Dict[str, Any]:
        job = self._jobs.get(sid)
        user = req.username or ""
        if job is None or (job["owner"] != user and not self._has_cap(user, "admin_all_objects")):
            self._fail(req, 404, "Unknown sid.", msg_type="FATAL")
        return job

    def _ep_jobs(self, req: _Request, rest: List[str]) -> None:
        feed = "/services/search/jobs"
        links = {"create": feed + "/_new"}
        if not rest:
            if req.method not in ("GET", "HEAD"):
                self._fail(req, 405, "Method Not Allowed")  # dispatching searches is not modelled
            user = req.username or ""
            entries = [self._job_entry(job) for job in self._jobs.values()
                       if job["owner"] == user or self._has_cap(user, "admin_all_objects")]
            self._feed(req, "jobs", feed, entries, links=links)
        sid = rest[0]
        job = self._visible_job(req, sid)
        if len(rest) == 1:
            if req.method in ("GET", "HEAD"):
                if req.output_mode == "json":
                    self._feed(req, "jobs", feed, [self._job_entry(job)], links=links, paginate=False)
                raise _Reply(200, self._render_bare_entry(self._job_entry(job)))
            if req.method == "DELETE":
                del self._jobs[sid]
                body, ctype = _error_body("Search job cancelled.", req.output_mode, msg_type="INFO")
                raise _Reply(200, body, ctype)
            self._fail(req, 405, "Method Not Allowed")
        if rest[1:] == ["control"] and req.method == "POST":
            action = (req.param("action") or "").lower()
            texts = {"cancel": "Search job cancelled.", "finalize": "Search job finalized.",
                     "pause": "Search job paused.", "unpause": "Search job unpaused.", "touch": "Search job touched."}
            if action not in texts:
                self._fail(req, 400, "Invalid action: %s" % action)
            if action == "cancel":
                del self._jobs[sid]
            elif action == "finalize":
                job.update(isFinalized=True, dispatchState="FINALIZING")
            elif action in ("pause", "unpause"):
                job.update(isPaused=action == "pause", dispatchState="PAUSED" if action == "pause" else "RUNNING")
            body, ctype = _error_body(texts[action], req.output_mode, msg_type="INFO")
            raise _Reply(200, body, ctype)
        self._fail(req, 404, "Not Found")

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

    # ------------------------------------------------------ generic conf EAI

    def _conf_entry(self, req: _Request, view: _View, conf: str, base: str, name: str,
                    content: Dict[str, Any], attributes: Optional[Dict[str, List[str]]],
                    actions: Iterable[str] = ("_reload", "edit", "remove", "move", "disable")) -> _Entry:
        acl = self._acl(req.username or "", view.inst, conf, view.name)
        href = self._entity_href(view.inst, base, name)
        links = {"list": href}
        for action in actions:
            if action == "remove" and not acl["removable"]:
                continue
            if action in ("edit", "list"):
                links[action] = href
            elif action == "remove":
                links["remove"] = href
            elif action == "disable":
                disabled = str(view.values.get("disabled", "0")).lower() in ("1", "true")
                links["enable" if disabled else "disable"] = href + ("/enable" if disabled else "/disable")
            else:
                links[action] = href + "/" + action
        content = dict(content)
        content["eai:appName"] = view.inst.app
        content["eai:userName"] = view.inst.owner or acl["owner"]
        return _Entry(name, href, acl["owner"], content, links, acl=acl, attributes=attributes)

    def _readable_views(self, req: _Request, conf: str, ctx: _Ctx, stanza: Optional[str] = None) -> List[_View]:
        user = req.username or ""
        return [v for v in self._views(conf, ctx.owner, ctx.app, stanza)
                if self._can_read(user, v.inst, conf, v.name)]

    def _write_target(self, req: _Request, ctx: _Ctx, conf: str, stanza: str) -> _Inst:
        """The location an update/delete of an existing object acts on."""
        if ctx.owner == "-" or ctx.app == "-":
            views = self._readable_views(req, conf, ctx, stanza)
            if not views:
                self._fail(req, 404, "Could not find object id=%s" % stanza)
            if len(views) > 1:
                self._fail(req, 400, "Ambiguous object id=%s: exists in several namespaces" % stanza)
            return views[0].inst
        if ctx.owner not in ("nobody",):
            if self._inst_stanza(_Inst(ctx.app, ctx.owner), conf, stanza) is not None:
                return _Inst(ctx.app, ctx.owner)
        if self._inst_stanza(_Inst(ctx.app, None), conf, stanza) is not None:
            return _Inst(ctx.app, None)
        view = self._view(conf, ctx.owner, ctx.app, stanza)
        if view is None or not self._can_read(req.username or "", view.inst, conf, stanza):
            self._fail(req, 404, "Could not find object id=%s" % stanza)
        return view.inst

    def _create_target(self, req: _Request, ctx: _Ctx) -> _Inst:
        if ctx.owner == "-" or ctx.app == "-":
            self._fail(req, 400, "Cannot create an object in a wildcard namespace (owner=%s, app=%s)"
                       % (ctx.owner, ctx.app))
        if ctx.owner and ctx.owner != "nobody":
            if ctx.owner not in self.users:
                self._fail(req, 400, "User does not exist: %s" % ctx.owner)
            return _Inst(ctx.app, ctx.owner)
        return _Inst(ctx.app, None)

    def _local_layer(self, inst: _Inst) -> Dict[str, ConfFile]:
        key = ("app", inst.app, "local") if inst.owner is None else ("user", inst.owner, inst.app)
        return self._layers.setdefault(key, {})

    def _write_stanza(self, inst: _Inst, conf: str, stanza: str, settings: Dict[str, str]) -> None:
        target = self._local_layer(inst).setdefault(conf, {}).setdefault(stanza, {})
        target.update(settings)

    def _delete_stanza(self, inst: _Inst, conf: str, stanza: str) -> bool:
        layer = self._local_layer(inst).get(conf, {})
        if stanza in layer:
            del layer[stanza]
            return True
        return False

    def _settings_from(self, req: _Request, skip: Iterable[str] = ()) -> Dict[str, str]:
        skipped = set(_RESERVED_POST_KEYS) | set(skip)
        settings = {}
        for key, value in req.form.items():
            if key in skipped:
                continue
            settings[key] = value[-1] if isinstance(value, list) else value
        for key, value in req.query.items():
            if key in skipped or key in settings:
                continue
            settings[key] = value[-1] if isinstance(value, list) else value
        return settings

    # -------------------------------------------------------- configs/conf-*

    _CONF_ATTRS = {"required": [], "optional": [], "wildcard": [".*"]}

    def _ep_configs(self, req: _Request, ctx: _Ctx, conf: str, rest: List[str], rest_raw: List[str]) -> None:
        base = "configs/conf-" + quote(conf, safe="")
        feed_path = self._ns_prefix(ctx) + base
        title = "conf-" + conf
        action = None
        if len(rest) >= 2 and rest[-1] in ("disable", "enable", "_reload", "move", "acl"):
            action = rest[-1]
            rest_raw = rest_raw[:-1]
        name = unquote_plus("/".join(rest_raw)) if rest_raw else None

        def entry_of(view: _View, with_attrs: bool) -> _Entry:
            content = dict(view.values)
            content.setdefault("disabled", "0")
            return self._conf_entry(req, view, conf, base, view.name, content,
                                    self._CONF_ATTRS if with_attrs else None)

        if name is None or name == "_new":
            if name == "_new" and req.method in ("GET", "HEAD"):
                entry = _Entry("_new", feed_path + "/_new", "system", {}, {}, acl=None,
                               attributes={"required": ["name"], "optional": [], "wildcard": [".*"]})
                self._feed(req, title, feed_path, [entry], paginate=False)
            if req.method in ("GET", "HEAD"):
                views = self._readable_views(req, conf, ctx)
                self._feed(req, title, feed_path, [entry_of(v, True) for v in views])
            if req.method == "POST":
                stanza = req.param("name")
                if not stanza:
                    self._fail(req, 400, 'Cannot perform action "POST" without a target name to act on.')
                inst = self._create_target(req, ctx)
                if self._inst_stanza(inst, conf, stanza) is not None:
                    self._fail(req, 409, "An object with name=%s already exists" % stanza)
                self._require_write(req, inst, conf, None)
                self._write_stanza(inst, conf, stanza, self._settings_from(req))
                view = self._view(conf, inst.owner or "nobody", inst.app, stanza)
                self._feed(req, title, feed_path, [entry_of(view, True)], paginate=False, status=201)
            self._fail(req, 405, "Method Not Allowed")
        if action == "_reload" or (name == "_reload" and not action):
            self._feed(req, title, feed_path, [], paginate=False)
        if req.method in ("GET", "HEAD") and action is None:
            views = self._readable_views(req, conf, ctx, name)
            if not views:
                self._fail(req, 404, "Could not find object id=%s" % name)
            self._feed(req, title, feed_path, [entry_of(v, True) for v in views], paginate=False)
        if req.method == "POST":
            inst = self._write_target(req, ctx, conf, name)
            self._require_write(req, inst, conf, name)
            if action in ("disable", "enable"):
                self._write_stanza(inst, conf, name, {"disabled": "1" if action == "disable" else "0"})
            elif action == "acl":
                inst = self._apply_acl(req, inst, conf, name)
            elif action == "move":
                self._fail(req, 400, "Moving objects is not supported by the stand-in")
            else:
                self._write_stanza(inst, conf, name, self._settings_from(req))
            view = self._view(conf, inst.owner or "nobody", inst.app, name)
            self._feed(req, title, feed_path, [entry_of(view, True)], paginate=False)
        if req.method == "DELETE" and action is None:
            inst = self._write_target(req, ctx, conf, name)
            self._require_write(req, inst, conf, name)
            if not self._delete_stanza(inst, conf, name):
                self._fail(req, 400, "Object id=%s cannot be deleted in config=%s." % (name, conf))
            views = self._readable_views(req, conf, ctx)
            self._feed(req, title, feed_path, [entry_of(v, True) for v in views])
        self._fail(req, 405, "Method Not Allowed")

    def _apply_acl(self, req: _Request, inst: _Inst, conf: str, stanza: str) -> _Inst:
        sharing = req.param("sharing")
        owner = req.param("owner")
        if not sharing or not owner:
            self._fail(req, 400, "Required argument(s) missing: sharing, owner")
        if sharing not in ("user", "app", "global", "system"):
            self._fail(req, 400, "Invalid sharing value: %s" % sharing)
        values = self._inst_stanza(inst, conf, stanza) or {}
        if sharing == "user" and inst.owner is None:
            self._delete_stanza(inst, conf, stanza)
            inst = _Inst(inst.app, owner)
            self._write_stanza(inst, conf, stanza, dict(values))
        elif sharing in ("app", "global", "system") and inst.owner is not None:
            self._delete_stanza(inst, conf, stanza)
            inst = _Inst(inst.app, None)
            self._write_stanza(inst, conf, stanza, dict(values))
        if inst.owner is None:
            meta = self._meta.setdefault((inst.app, "local"), {}).setdefault(conf + "/" + stanza, {})
            meta["export"] = "system" if sharing in ("global", "system") else "none"
            meta["owner"] = owner
            read = req.params.get("perms.read")
            write = req.params.get("perms.write")
            if read is not None or write is not None:
                old = self._perms(inst, conf, stanza) or {"read": ["*"], "write": ["admin"]}

                def roles(value, fallback):
                    if value is None:
                        return fallback
                    items = value if isinstance(value, list) else [value]
                    return [r.strip() for item in items for r in item.split(",") if r.strip()]

                meta["access"] = "read : [ %s ], write : [ %s ]" % (
                    ", ".join(roles(read, old["read"])), ", ".join(roles(write, old["write"])))
        return inst

    # ------------------------------------------------------------ properties

    def _ep_properties(self, req: _Request, ctx: _Ctx, rest: List[str]) -> None:
        prefix = self._ns_prefix(ctx) + "properties"
        user = req.username or ""
        if ctx.owner == "-" or ctx.app == "-":
            view_owner, view_app = ("nobody" if ctx.owner == "-" else ctx.owner), (
                ctx.app if ctx.app != "-" else "search")
        else:
            view_owner, view_app = ctx.owner, ctx.app
        chain = self._chain(view_owner, view_app)

        def conf_exists(conf: str) -> bool:
            return any(self._inst_has_conf(inst, conf) for inst, _ in chain)

        if not rest:
            if req.method in ("GET", "HEAD"):
                names = sorted({c for inst, _ in chain for c in self._conf_names(inst)})
                entries = [_Entry(n, prefix + "/" + quote(n, safe=""), "nobody", {}, {}) for n in names]
                self._feed(req, "properties", prefix, entries)
            if req.method == "POST":
                conf = req.param("__conf")
                if not conf:
                    self._fail(req, 400, "Missing required argument: __conf")
                inst = self._create_target(req, ctx)
                if conf_exists(conf):
                    raise _Reply(303, b"", "text/xml; charset=UTF-8",
                                 [("Location", prefix + "/" + quote(conf, safe=""))])
                self._require_write(req, inst, conf, None)
                self._local_layer(inst).setdefault(conf, {})
                self._feed(req, "properties", prefix, [], paginate=False, status=201)
            self._fail(req, 405, "Method Not Allowed")
        conf = rest[0]
        if not conf_exists(conf):
            self._fail(req, 404, "Could not find object id=%s" % conf)
        conf_path = prefix + "/" + quote(conf, safe="")
        if len(rest) == 1:
            if req.method in ("GET", "HEAD"):
                views = [v for v in self._views(conf, ctx.owner, ctx.app) if self._can_read(user, v.inst, conf, v.name)]
                entries = [_Entry(v.name, conf_path + "/" + quote(v.name, safe=""), v.inst.owner or "nobody",
                                  {}, {}) for v in views]
                self._feed(req, conf, conf_path, entries)
            if req.method == "POST":
                stanza = req.param("__stanza")
                if not stanza:
                    self._fail(req, 400, "Missing required argument: __stanza")
                inst = self._create_target(req, ctx)
                if self._inst_stanza(inst, conf, stanza) is not None:
                    raise _Reply(303, b"", "text/xml; charset=UTF-8",
                                 [("Location", conf_path + "/" + quote(stanza, safe=""))])
                self._require_write(req, inst, conf, None)
                self._write_stanza(inst, conf, stanza, {})
                self._feed(req, conf, conf_path, [], paginate=False, status=201)
            self._fail(req, 405, "Method Not Allowed")
        stanza = rest[1]
        stanza_path = conf_path + "/" + quote(stanza, safe="")
        view = self._view(conf, view_owner, view_app, stanza)
        if len(rest) == 2 and req.method == "POST":
            settings = self._settings_from(req)
            if view is None:
                inst = self._create_target(req, ctx)
            else:
                inst = self._write_target(req, ctx, conf, stanza)
            self._require_write(req, inst, conf, stanza)
            self._write_stanza(inst, conf, stanza, settings)
            view = self._view(conf, view_owner, view_app, stanza)
        if view is None or not self._can_read(user, view.inst, conf, stanza):
            self._fail(req, 404, "Could not find object id=%s" % stanza)
        if len(rest) == 2:
            if req.method in ("GET", "HEAD", "POST"):
                entries = [_Entry(k, stanza_path + "/" + quote(k, safe=""), view.inst.owner or "nobody",
                                  v, {}, text_content=True) for k, v in view.values.items()]
                self._feed(req, stanza, stanza_path, entries, paginate=req.method != "POST")
            self._fail(req, 405, "Method Not Allowed")
        key = "/".join(rest[2:])
        if req.method == "POST":
            value = req.param("value")
            if value is None:
                value = req.body.decode("utf-8", "replace")
            inst = self._write_target(req, ctx, conf, stanza)
            self._require_write(req, inst, conf, stanza)
            self._write_stanza(inst, conf, stanza, {key: value})
            view = self._view(conf, view_owner, view_app, stanza)
        if req.method not in ("GET", "HEAD", "POST"):
            self._fail(req, 405, "Method Not Allowed")
        if key not in view.values:
            self._fail(req, 404, "Could not find object id=%s" % key)
        raise _Reply(200, view.values[key].encode("utf-8"), "text/plain; charset=UTF-8")

    def _conf_names(self, inst: _Inst) -> List[str]:
        if inst.owner is None:
            return list(self._layer(("app", inst.app, "default"))) + list(self._layer(("app", inst.app, "local")))
        return list(self._layer(("user", inst.owner, inst.app)))

    # ------------------------------------------------------ storage/passwords

    def _password_content(self, view: _View) -> Dict[str, Any]:
        parsed = _split_cred_name(view.name[len("credential:"):]) or ("", "")
        clear = view.values.get("password", "")
        digest = hashlib.sha256(("standin:" + clear).encode("utf-8")).digest()
        return {"clear_password": clear, "encr_password": "$7$" + base64.b64encode(digest).decode(),
                "password": "********", "realm": parsed[0], "username": parsed[1]}

    def _ep_passwords(self, req: _Request, ctx: _Ctx, name: Optional[str]) -> None:
        base = "storage/passwords"
        feed_path = self._ns_prefix(ctx) + base
        user = req.username or ""
        attrs = {"required": ["password"], "optional": [], "wildcard": []}
        if req.method in ("GET", "HEAD") and not self._has_cap(user, "list_storage_passwords", "admin_all_objects"):
            self._fail(req, 403, "You (user=%s) do not have permission to perform this operation "
                                 "(requires capability: list_storage_passwords OR admin_all_objects)." % user)
        if req.method in ("POST", "DELETE") and not self._has_cap(user, "edit_storage_passwords", "admin_all_objects"):
            self._fail(req, 403, "You (user=%s) do not have permission to perform this operation "
                                 "(requires capability: admin_all_objects)." % user)

        def entry_of(view: _View, with_attrs: bool) -> _Entry:
            entity = view.name[len("credential:"):]
            return self._conf_entry(req, view, "passwords", base, entity, self._password_content(view),
                                    attrs if with_attrs else None, actions=("edit", "remove"))

        def listing() -> List[_Entry]:
            return [entry_of(v, True) for v in self._readable_views(req, "passwords", ctx)
                    if v.name.startswith("credential:")]

        if name is None or name == "_new":
            if name == "_new" and req.method in ("GET", "HEAD"):
                entry = _Entry("_new", feed_path + "/_new", "system", {}, {},
                               attributes={"required": ["name", "password"], "optional": ["realm"],
                                           "wildcard": []})
                self._feed(req, "passwords", feed_path, [entry], paginate=False)
            if req.method in ("GET", "HEAD"):
                self._feed(req, "passwords", feed_path, listing())
            if req.method == "POST":
                username = req.param("name")
                password = req.param("password")
                realm = req.param("realm") or ""
                if not username:
                    self._fail(req, 400, 'Cannot perform action "POST" without a target name to act on.')
                if password is None:
                    self._fail(req, 400, "Missing required argument: password")
                entity = _cred_name(realm, username)
                stanza = "credential:" + entity
                inst = self._create_target(req, ctx)
                if self._inst_stanza(inst, "passwords", stanza) is not None:
                    self._fail(req, 409, "An object with name=%s already exists" % entity)
                self._require_write(req, inst, "passwords", None)
                self._write_stanza(inst, "passwords", stanza, {"password": password})
                view = self._view("passwords", inst.owner or "nobody", inst.app, stanza)
                self._feed(req, "passwords", feed_path, [entry_of(view, True)], paginate=False, status=201)
            self._fail(req, 405, "Method Not Allowed")
        parsed = _split_cred_name(name)
        if parsed is None:
            self._fail(req, 404, "Could not find object id=%s" % name)
        entity = _cred_name(*parsed)
        stanza = "credential:" + entity
        if req.method in ("GET", "HEAD"):
            views = self._readable_views(req, "passwords", ctx, stanza)
            if not views:
                self._fail(req, 404, "Could not find object id=%s" % entity)
            self._feed(req, "passwords", feed_path, [entry_of(v, True) for v in views], paginate=False)
        if req.method == "POST":
            inst = self._write_target(req, ctx, "passwords", stanza)
            self._require_write(req, inst, "passwords", stanza)
            password = req.param("password")
            if password is None:
                self._fail(req, 400, "Missing required argument: password")
            self._write_stanza(inst, "passwords", stanza, {"password": password})
            view = self._view("passwords", inst.owner or "nobody", inst.app, stanza)
            self._feed(req, "passwords", feed_path, [entry_of(view, True)], paginate=False)
        if req.method == "DELETE":
            inst = self._write_target(req, ctx, "passwords", stanza)
            self._require_write(req, inst, "passwords", stanza)
            if not self._delete_stanza(inst, "passwords", stanza):
                self._fail(req, 400, "Object id=%s cannot be deleted in config=passwords." % entity)
            self._feed(req, "passwords", feed_path, listing())
        self._fail(req, 405, "Method Not Allowed")

    # -------------------------------------------------- collections (config)

    _COLLECTION_DEFAULTS = {
        "enforceTypes": "false", "profilingEnabled": "false", "profilingThresholdMs": "1000",
        "replicate": "false", "replication_dump_maximum_file_size": "10240",
        "replication_dump_strategy": "auto", "type": "undefined", "disabled": "0",
    }

    def _require_nobody(self, req: _Request, ctx: _Ctx) -> None:
        if ctx.owner != "nobody":
            self._fail(req, 400, "Must use user context of 'nobody' when interacting with collection "
                                 "configurations (used user='%s')" % ctx.owner)

    def _ep_collections_config(self, req: _Request, ctx: _Ctx, rest: List[str], rest_raw: List[str]) -> None:
        self._require_nobody(req, ctx)
        base = "storage/collections/config"
        feed_path = self._ns_prefix(ctx) + base
        title = "collections-conf"
        action = None
        if len(rest) >= 2 and rest[-1] in ("disable", "enable", "_reload", "acl"):
            action = rest[-1]
            rest = rest[:-1]
        name = "/".join(rest) if rest else None

        def entry_of(view: _View, with_attrs: bool) -> _Entry:
            content = dict(self._COLLECTION_DEFAULTS)
            content.update(view.values)
            return self._conf_entry(req, view, "collections", base, view.name, content,
                                    self._CONF_ATTRS if with_attrs else None,
                                    actions=("_reload", "edit", "remove", "disable"))

        def listing() -> List[_Entry]:
            return [entry_of(v, True) for v in self._readable_views(req, "collections", ctx)
                    if v.name != "default"]

        if name is None:
            if req.method in ("GET", "HEAD"):
                self._feed(req, title, feed_path, listing())
            if req.method == "POST":
                coll = req.param("name")
                if not coll:
                    self._fail(req, 400, 'Cannot perform action "POST" without a target name to act on.')
                inst = self._create_target(req, ctx)
                if self._inst_stanza(inst, "collections", coll) is not None:
                    self._fail(req, 409, "An object with name=%s already exists" % coll)
                self._require_write(req, inst, "collections", None)
                self._write_stanza(inst, "collections", coll, self._settings_from(req))
                self._kv.pop((inst.app, coll), None)
                view = self._view("collections", "nobody", inst.app, coll)
                self._feed(req, title, feed_path, [entry_of(view, True)], paginate=False, status=201)
            self._fail(req, 405, "Method Not Allowed")
        if name == "_new" and req.method in ("GET", "HEAD"):
            entry = _Entry("_new", feed_path + "/_new", "system", {}, {},
                           attributes={"required": ["name"], "optional": [], "wildcard": [".*"]})
            self._feed(req, title, feed_path, [entry], paginate=False)
        if action == "_reload":
            self._feed(req, title, feed_path, [], paginate=False)
        if req.method in ("GET", "HEAD"):
            views = self._readable_views(req, "collections", ctx, name)
            if not views or name == "default":
                self._fail(req, 404, "Could not find object id=%s" % name)
            self._feed(req, title, feed_path, [entry_of(v, True) for v in views], paginate=False)
        if req.method == "POST":
            inst = self._write_target(req, ctx, "collections", name)
            self._require_write(req, inst, "collections", name)
            if action in ("disable", "enable"):
                self._write_stanza(inst, "collections", name, {"disabled": "1" if action == "disable" else "0"})
            elif action == "acl":
                inst = self._apply_acl(req, inst, "collections", name)
            else:
                self._write_stanza(inst, "collections", name, self._settings_from(req))
            view = self._view("collections", "nobody", inst.app, name)
            self._feed(req, title, feed_path, [entry_of(view, True)], paginate=False)
        if req.method == "DELETE":
            inst = self._write_target(req, ctx, "collections", name)
            self._require_write(req, inst, "collections", name)
            if not self._delete_stanza(inst, "collections", name):
                self._fail(req, 400, "Object id=%s cannot be deleted in config=collections." % name)
            if self._inst_stanza(_Inst(inst.app, None), "collections", name) is None:
                self._kv.pop((inst.app, name), None)
            self._feed(req, title, feed_path, listing())
        self._fail(req, 405, "Method Not Allowed")

    # ---------------------------------------------------- collections (data)

    @staticmethod
    def _new_kv_key() -> str:
        return "%08x%s" % (int(time.time()), secrets.token_hex(8))

    @staticmethod
    def _field_types(config: Dict[str, str]) -> Dict[str, str]:
        return {k[len("field."):]: v for k, v in config.items() if k.startswith("field.")}

    def _typed_doc(self, doc: Dict[str, Any], config: Dict[str, str]) -> Dict[str, Any]:
        """Convert typed fields (``field.<name> = number|bool|string|time|array|cidr``)."""
        types = self._field_types(config)
        enforce = _bool_of(config.get("enforceTypes", "false")) or False
        for path, field_type in types.items():
            values = _path_values(doc, path)
            if not values:
                continue
            ok, converted = _convert_type(field_type, values[0])
            if ok:
                _set_path(doc, path, converted)
            elif enforce:
                raise _QueryError("Failed to convert field '%s' to type '%s'" % (path, field_type))
            else:
                _del_path(doc, path)
        return doc

    def _render_doc(self, doc: Dict[str, Any], key: Optional[str] = None) -> Dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in doc.items() if k not in ("_key", "_user")}
        out["_user"] = "nobody"
        out["_key"] = key if key is not None else doc.get("_key")
        return out

    def _kv_reply(self, status: int, payload: Any) -> None:
        body = json.dumps(_json_number_fix(payload), separators=(",", ":")).encode("utf-8") \
            if payload is not None else b""
        raise _Reply(status, body, "application/json; charset=UTF-8")

    def _kv_fail(self, req: _Request, status: int, text: str) -> None:
        self._fail(req, status, text, json_always=True)

    def _kv_json_body(self, req: _Request) -> Any:
        try:
            return json.loads(req.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            self._kv_fail(req, 400, "Invalid JSON in request body: %s" % exc)

    def _kv_find(self, req: _Request, store: Dict[str, Dict[str, Any]], config: Dict[str, str],
                 query: Any, fields: Optional[str], sort: Optional[str], limit: int, skip: int) -> List[Dict[str, Any]]:
        types = self._field_types(config)

        def convert(path: str, value: Any) -> Any:
            field_type = types.get(path)
            if field_type is None or isinstance(value, (dict, list)):
                return value
            ok, converted = _convert_type(field_type, value)
            return converted if ok else value

        try:
            keys = _keys_only(query)
            if keys is not None:  # the _key index, as MongoDB uses it: no scan of the collection
                wanted = set(keys)
                docs = [self._render_doc(doc, key) for key, doc in store.items() if key in wanted]
            else:
                docs = [self._render_doc(doc, key) for key, doc in store.items()]
                if query:
                    docs = [d for d in docs if _query_matches(d, query, convert)]
            docs = _sort_docs(docs, sort)
        except _QueryError as exc:
            self._kv_fail(req, 400, "Invalid query: %s" % exc)
        max_rows = _int_param(self._limit("max_rows_per_query"), 50000)
        if skip > 0:
            docs = docs[skip:]
        if limit > 0:
            docs = docs[:limit]
        if max_rows > 0:
            docs = docs[:max_rows]
        projected = [_project(d, fields) for d in docs]
        # max_size_per_result_mb: a result is cut off at that size, like max_rows_per_query.
        max_bytes = _int_param(self._limit("max_size_per_result_mb"), 50) * 1024 * 1024
        if max_bytes > 0:
            total = 0
            for index, doc in enumerate(projected):
                total += len(json.dumps(doc, separators=(",", ":"))) + 1
                if total > max_bytes:
                    return projected[:index]
        return projected

    def _limit(self, key: str) -> Optional[str]:
        view = self._view("limits", "nobody", "system", "kvstore")
        return view.values.get(key) if view else None

    def _ep_collections_data(self, req: _Request, ctx: _Ctx, collection: str, rest: List[str]) -> None:
        user = req.username or ""
        if ctx.app == "-" or ctx.owner == "-":
            views = [v for v in self._views("collections", "nobody", ctx.app if ctx.app != "-" else "-", collection)
                     if v.name == collection]
            view = views[0] if len(views) == 1 else None
        else:
            view = self._view("collections", "nobody", ctx.app, collection)
        if view is None or collection == "default" or not self._can_read(user, view.inst, "collections", collection):
            self._kv_fail(req, 404, "Could not find collection=%s" % collection)
        config = view.values
        store_key = (view.inst.app, collection)
        store = self._kv.setdefault(store_key, {})
        inst = view.inst

        def require_write() -> None:
            if not self._can_write(user, inst, "collections", collection):
                perms = self._perms(inst, "collections", collection) or {"read": [], "write": []}
                self._kv_fail(req, 403, "User '%s' with roles { %s } cannot write: /nobody/%s/collections/%s "
                                        "{ read : [ %s ], write : [ %s ] }"
                              % (user, ", ".join(self.users.get(user, {}).get("roles", ())), inst.app, collection,
                                 ", ".join(perms["read"]), ", ".join(perms["write"])))

        def parse_int(name: str) -> int:
            raw = req.param(name)
            if raw is None or raw == "":
                return 0
            try:
                value = int(raw)
            except ValueError:
                self._kv_fail(req, 400, "Invalid value for parameter '%s': %s" % (name, raw))
            if value < 0:
                self._kv_fail(req, 400, "Invalid value for parameter '%s': %s" % (name, raw))
            return value

        def parse_query(raw: Optional[str]) -> Any:
            if raw is None or raw.strip() == "":
                return None
            try:
                parsed = json.loads(raw)
            except ValueError as exc:
                self._kv_fail(req, 400, "Invalid query: %s" % exc)
            if not isinstance(parsed, dict):
                self._kv_fail(req, 400, "Invalid query: query must be a JSON object")
            return parsed

        if not rest:
            if req.method in ("GET", "HEAD"):
                docs = self._kv_find(req, store, config, parse_query(req.param("query")), req.param("fields"),
                                     req.param("sort"), parse_int("limit"), parse_int("skip"))
                self._kv_reply(200, docs)
            if req.method == "POST":
                require_write()
                doc = self._kv_json_body(req)
                if not isinstance(doc, dict):
                    self._kv_fail(req, 400, "Invalid JSON in request body: a document must be a JSON object")
                self._kv_store_doc(req, store, config, doc, insert=True)
            if req.method == "DELETE":
                require_write()
                query = parse_query(req.param("query"))
                if query is None:
                    store.clear()
                else:
                    matching = {d["_key"] for d in self._kv_find(req, store, config, query, None, None, 0, 0)}
                    for key in matching:
                        store.pop(key, None)
                self._kv_reply(200, None)
            self._kv_fail(req, 405, "Method Not Allowed")
        if rest == ["batch_save"]:
            if req.method not in ("POST", "PUT"):
                self._kv_fail(req, 405, "Method Not Allowed")
            require_write()
            max_mb = _int_param(self._limit("max_size_per_batch_save_mb"), 50)
            if max_mb > 0 and len(req.body) > max_mb * 1024 * 1024:
                self._kv_fail(req, 400, "Request exceeds API limits - see limits.conf for details. (Batch save "
                                        "size too large, max_size_per_batch_save_mb=%d)" % max_mb)
            docs = self._kv_json_body(req)
            if not isinstance(docs, list):
                self._kv_fail(req, 400, "Invalid JSON in request body: batch_save expects a JSON array")
            cap = _int_param(self._limit("max_documents_per_batch_save"), 1000)
            if cap > 0 and len(docs) > cap:
                self._kv_fail(req, 400, "Request exceeds API limits - see limits.conf for details. (Too many "
                                        "documents for a single batch save, max_documents_per_batch_save=%d)" % cap)
            if any(not isinstance(d, dict) for d in docs):
                self._kv_fail(req, 400, "Invalid JSON in request body: every document must be a JSON object")
            typed = []
            for doc in docs:
                try:
                    typed.append(self._typed_doc(copy.deepcopy(doc), config))
                except _QueryError as exc:
                    self._kv_fail(req, 400, str(exc))
            keys = []
            for doc in typed:
                key = doc.pop("_key", None)
                key = str(key) if key not in (None, "") else self._new_kv_key()
                doc.pop("_user", None)
                store[key] = doc
                keys.append(key)
            self._kv_reply(200, keys)
        if rest == ["batch_find"]:
            if req.method not in ("POST", "PUT"):
                self._kv_fail(req, 405, "Method Not Allowed")
            queries = self._kv_json_body(req)
            if not isinstance(queries, list):
                self._kv_fail(req, 400, "Invalid JSON in request body: batch_find expects a JSON array")
            max_queries = _int_param(self._limit("max_queries_per_batch"), 1000)
            if max_queries > 0 and len(queries) > max_queries:
                self._kv_fail(req, 400, "Request exceeds API limits - see limits.conf for details. (Too many "
                                        "queries for a single batch find, max_queries_per_batch=%d)" % max_queries)
            results = []
            for item in queries:
                if not isinstance(item, dict):
                    self._kv_fail(req, 400, "The provided query was invalid.")
                query = item.get("query") or None
                if query is not None and not isinstance(query, dict):
                    self._kv_fail(req, 400, "The provided query was invalid.")
                fields = item.get("fields")
                if isinstance(fields, list):
                    fields = ",".join(fields)
                results.append(self._kv_find(req, store, config, query, fields, item.get("sort"),
                                              _int_param(str(item.get("limit", 0)), 0),
                                              _int_param(str(item.get("skip", 0)), 0)))
            self._kv_reply(200, results)
        key = "/".join(rest)
        if req.method in ("GET", "HEAD"):
            if key not in store:
                self._kv_fail(req, 404, "Could not find object.")
            self._kv_reply(200, _project(self._render_doc(store[key], key), req.param("fields")))
        if req.method == "POST":
            require_write()
            if key not in store:
                self._kv_fail(req, 404, "Could not find object.")
            doc = self._kv_json_body(req)
            if not isinstance(doc, dict):
                self._kv_fail(req, 400, "Invalid JSON in request body: a document must be a JSON object")
            doc["_key"] = key
            self._kv_store_doc(req, store, config, doc, insert=False)
        if req.method == "DELETE":
            require_write()
            if key not in store:
                self._kv_fail(req, 404, "Could not find object.")
            del store[key]
            self._kv_reply(200, None)
        self._kv_fail(req, 405, "Method Not Allowed")

    def _kv_store_doc(self, req: _Request, store: Dict[str, Dict[str, Any]], config: Dict[str, str],
                      doc: Dict[str, Any], insert: bool) -> None:
        try:
            doc = self._typed_doc(copy.deepcopy(doc), config)
        except _QueryError as exc:
            self._kv_fail(req, 400, str(exc))
        key = doc.pop("_key", None)
        doc.pop("_user", None)
        key = str(key) if key not in (None, "") else self._new_kv_key()
        if insert and key in store:
            self._kv_fail(req, 409, "A document with the same key already exists: _key=%s" % key)
        store[key] = doc
        self._kv_reply(201 if insert else 200, {"_key": key})


# --------------------------------------------------------------------------------------
# A search head cluster: members that share one KV store
# --------------------------------------------------------------------------------------


class SearchHeadCluster:
    """Several stand-ins as the members of one search head cluster, sharing ONE KV store.

    The KV store of a cluster is a replica set: every member reads and writes the same data, and
    writes go through its primary one at a time. Here the members share the data and one lock, so
    a document inserted through any member is seen by all, and inserting an existing ``_key``
    answers 409 whichever member is asked. Each member has its own SPLUNK_HOME and server name,
    answers ``server/info`` with ``server_roles`` ``shc_member`` (and ``shc_captain`` for the first),
    ``shcluster/member/info`` and ``shcluster/member/members`` (content fields ``label``,
    ``peer_scheme_host_port``, ``status``, ``last_heartbeat``, as Splunk's REST reference and
    solnlib read them; the other fields are left out), and ``kvstore/status``.

    ``fail_kv_store()``: the KV store stops answering on every member (``storage/collections/data``
    answers 503 with ``KV_DOWN_TEXT``, ``kvstore/status`` and ``server/info`` say ``failed``);
    ``recover_kv_store()`` brings it back with its data. The 503 and its text are a plausible model
    of a KV store that is down, not confirmed from splunkd.
    """

    KV_DOWN_TEXT = "KV Store is not available: the KV store process is down."

    def __init__(self, size: int, splunk_homes: Iterable[Optional[str]] = (), **member_options: Any):
        self.kv_data: Dict[Tuple[str, str], Dict[str, Dict[str, Any]]] = {}
        self.kv_lock = threading.RLock()
        self.kv_status = "ready"
        homes = list(splunk_homes) + [None] * size
        self.members: List[SplunkdStandin] = [
            SplunkdStandin(server_name="sh%d" % (index + 1), splunk_home=homes[index], cluster=self,
                           **member_options)
            for index in range(size)]
        self.captain = self.members[0]

    def start(self) -> SearchHeadCluster:
        for member in self.members:
            member.start()
        return self

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def __enter__(self) -> SearchHeadCluster:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def fail_kv_store(self) -> None:
        with self.kv_lock:
            self.kv_status = "failed"

    def recover_kv_store(self) -> None:
        with self.kv_lock:
            self.kv_status = "ready"

    def kv_status_of(self, member: SplunkdStandin) -> Dict[str, str]:
        if self.kv_status != "ready":
            return {"status": "failed", "replicationStatus": "Unknown status", "standalone": "0"}
        return {"status": "ready", "standalone": "0",
                "replicationStatus": "KV store captain" if member is self.captain else "Non-captain KV store member"}

    def member_entry(self, member: SplunkdStandin) -> Dict[str, Any]:
        return {"label": member.server_name, "peer_scheme_host_port": "https://%s:8089" % member.server_name,
                "status": "Up", "last_heartbeat": int(time.time()), "site": "default", "replication_port": 9887}

    def member_info(self, member: SplunkdStandin) -> Dict[str, Any]:
        return {"label": member.server_name, "status": "Up", "is_registered": True,
                "peer_scheme_host_port": "https://%s:8089" % member.server_name,
                "captain_uri": "https://%s:8089" % self.captain.server_name}


_STANDIN_PYTHON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "splunk_python")


class _PersistentDriver:
    """One persistent REST handler process, as splunkd keeps it, and its packet protocol (one request
    at a time: splunkd queues them for a process)."""

    def __init__(self, owner: SplunkdStandin):
        self.owner = owner
        self.process: Optional[subprocess.Popen] = None
        self.lock = threading.Lock()
        self.starts = 0

    def _start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        if self.owner.splunk_home:
            env["SPLUNK_HOME"] = self.owner.splunk_home
        stderr = subprocess.DEVNULL
        if self.owner.splunk_home:
            log_dir = os.path.join(self.owner.splunk_home, "var", "log", "splunk")
            os.makedirs(log_dir, exist_ok=True)
            stderr = open(os.path.join(log_dir, "splunkd_persistent_handler_stderr.log"), "ab")
        try:
            self.process = subprocess.Popen(
                [self.owner.python, os.path.join(_STANDIN_PYTHON, "persistconn_driver.py")],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env,
                cwd=self.owner.splunk_home or None)
        finally:
            if stderr is not subprocess.DEVNULL:
                stderr.close()
        self.starts += 1

    @staticmethod
    def _string(value: bytes) -> bytes:
        return b"%d\n" % len(value) + value

    def _read_string(self) -> bytes:
        stream = self.process.stdout
        line = b""
        while not line.strip():
            line = stream.readline()
            if not line:
                raise EOFError("the persistent handler process ended")
        size = int(line.strip())
        data = stream.read(size)
        if len(data) != size:
            raise EOFError("the persistent handler process ended")
        return data

    def call(self, command: List[str], argument: str, block: bytes) -> bytes:
        with self.lock:
            for attempt in (1, 2):
                if self.process is None or self.process.poll() is not None:
                    self._start()
                packet = bytes([0x01 | 0x02 | 0x04]) + b"%d\n" % len(command)
                packet += b"".join(self._string(part.encode("utf-8")) for part in command)
                packet += self._string(argument.encode("utf-8")) + self._string(block)
                try:
                    self.process.stdin.write(packet)
                    self.process.stdin.flush()
                    loaded = self._read_string()
                    if loaded:
                        raise _Reply(500, *_error_body("Failed to load the REST handler: %s"
                                                       % loaded.decode("utf-8", "replace"), "json"))
                    return self._read_string()
                except (OSError, EOFError, ValueError):
                    self.stop()
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
        if process is not None:
            process.wait(timeout=10)
            for stream in (process.stdin, process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass


class _Ctx(NamedTuple):
    owner: str
    app: str
    explicit: bool
    ns: Optional[Tuple[str, str]]


def _conf_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _search_matches(entry: _Entry, search: str) -> bool:
    for term in search.split():
        field, sep, wanted = term.partition("=")
        if sep:
            field = field.strip()
            values = [entry.name] if field in ("name", "title") else [
                str(entry.flat_content().get(field, ""))] if field in entry.flat_content() else []
            pattern = "*" + wanted.lower() + "*" if "*" not in wanted else wanted.lower()
            if not any(fnmatch.fnmatchcase(v.lower(), pattern) for v in values):
                return False
        else:
            needle = term.lower()
            haystack = [entry.name] + [str(k) for k in entry.flat_content()] + [
                str(v) for v in entry.flat_content().values()]
            if not any(needle in h.lower() for h in haystack):
                return False
    return True


def _read_chunked(rfile) -> bytes:
    chunks = []
    while True:
        line = rfile.readline()
        size = int(line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            rfile.readline()
            break
        chunks.append(rfile.read(size))
        rfile.readline()
    return b"".join(chunks)


class _Handler(BaseHTTPRequestHandler):
    owner: SplunkdStandin
    protocol_version = "HTTP/1.1"
    server_version = "Splunkd"
    sys_version = ""

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr log
        return

    def do_GET(self):
        self.owner._handle(self, "GET")

    def do_POST(self):
        self.owner._handle(self, "POST")

    def do_DELETE(self):
        self.owner._handle(self, "DELETE")

    def do_PUT(self):
        self.owner._handle(self, "PUT")

    def do_PATCH(self):
        self.owner._handle(self, "PATCH")

    def do_HEAD(self):
        self.owner._handle(self, "HEAD")
