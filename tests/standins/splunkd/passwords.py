"""``storage/passwords``: secrets in the ``passwords`` conf, clear text only to who may list them."""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Dict, List, Optional

from .credentials import _cred_name, _split_cred_name
from .model import _Ctx, _Request, _View
from .rendering import _Entry


class PasswordEndpoints:
    """storage/passwords of SplunkdStandin."""

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
