"""Configuration layers and permissions: how a read resolves across user, app, exported and system
layers, and what a user may read or write (metadata ACLs, capabilities)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from .conf import ConfFile, _parse_access
from .model import _Inst, _Request, _View


class ConfLayers:
    """Conf resolution and ACLs of SplunkdStandin."""

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
