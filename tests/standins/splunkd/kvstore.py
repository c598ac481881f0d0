"""``storage/collections/config`` and ``storage/collections/data``: the KV store over REST."""

from __future__ import annotations

import copy
import json
import secrets
import time
from typing import Any, Dict, List, Optional

from .kvquery import (
    _bool_of,
    _convert_type,
    _del_path,
    _json_number_fix,
    _keys_only,
    _path_values,
    _project,
    _query_matches,
    _QueryError,
    _set_path,
    _sort_docs,
)
from .model import _Ctx, _Inst, _int_param, _Reply, _Request, _View
from .rendering import _Entry


class KVStoreEndpoints:
    """KV store collections of SplunkdStandin."""

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
        seen = self._kv_read_view(store)  # what reads see: a member's replica may lag (shcluster.py)
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
                docs = self._kv_find(req, seen, config, parse_query(req.param("query")), req.param("fields"),
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
                results.append(self._kv_find(req, seen, config, query, fields, item.get("sort"),
                                              _int_param(str(item.get("limit", 0)), 0),
                                              _int_param(str(item.get("skip", 0)), 0)))
            self._kv_reply(200, results)
        key = "/".join(rest)
        if req.method in ("GET", "HEAD"):
            if key not in seen:
                self._kv_fail(req, 404, "Could not find object.")
            self._kv_reply(200, _project(self._render_doc(seen[key], key), req.param("fields")))
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
