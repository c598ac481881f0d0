"""What the stand-in keeps and passes around: request records, faults, replies, config instances and
views, the parsed request and its namespace."""

from __future__ import annotations

import os
import re
from typing import Any, Dict, List, NamedTuple, Optional, Tuple
from urllib.parse import parse_qsl

DEFAULT_APP = "TA-defender-ipstats"
# The repository (an app folder): tests/standins/splunkd/ is three levels down.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


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


class _Ctx(NamedTuple):
    owner: str
    app: str
    explicit: bool
    ns: Optional[Tuple[str, str]]
