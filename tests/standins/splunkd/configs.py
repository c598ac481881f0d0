"""``configs/conf-*`` and ``properties``: conf entities over EAI, their ACLs, writes to local layers."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional
from urllib.parse import quote, unquote_plus

from .conf import ConfFile
from .model import _RESERVED_POST_KEYS, _Ctx, _Inst, _Reply, _Request, _View
from .rendering import _Entry


class ConfEndpoints:
    """configs/conf-* and properties of SplunkdStandin."""

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
