"""splunkd's answers: Atom XML and JSON feeds, entries, ACLs, error bodies, paging and ``search=``."""

from __future__ import annotations

import fnmatch
import json
import re
import time
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import quote

from .model import _Ctx, _Inst, _int_param, _Reply, _Request

NS_ATOM = "http://www.w3.org/2005/Atom"
NS_REST = "http://dev.splunk.com/ns/rest"
NS_OPENSEARCH = "http://a9.com/-/spec/opensearch/1.1/"


_REASONS = {
    200: "OK", 201: "Created", 204: "No Content", 303: "See Other", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    409: "Conflict", 413: "Request Entity Too Large", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}


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


class Rendering:
    """Feeds of entries as splunkd renders them (XML by default, JSON with ``output_mode=json``)."""

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
