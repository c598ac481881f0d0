"""``saved/searches``: the saved searches a caller may see, and ``<name>/dispatch``, as splunkd checks them.

splunkd lists and dispatches a saved search only for a caller with read access to it (the object's
``access`` in the app's metadata, ``[savedsearches/<name>]`` then ``[savedsearches]`` then ``[]``; or
``admin_all_objects``); to anyone else it does not exist (404, "Could not find object id=<name>").
Dispatch answers 201 with the new job's ``sid``; the job belongs to the caller and runs as the
caller with ``dispatchAs = user``, else as the search's owner (``nobody``: the app's default).
No search runs (jobs are state only, see jobs.py).
"""

from __future__ import annotations

import time
from typing import List
from urllib.parse import quote

from .model import _Ctx, _Reply, _Request
from .rendering import _xml_text

CONF = "savedsearches"


class SavedSearchEndpoints:
    """saved/searches of SplunkdStandin."""

    def _ep_saved_searches(self, req: _Request, ctx: _Ctx, rest: List[str]) -> None:
        feed = "/servicesNS/%s/%s/saved/searches" % (quote(ctx.owner, safe=""), quote(ctx.app, safe=""))
        views = [v for v in self._readable_views(req, CONF, ctx) if v.name != "default"]
        if not rest:
            if req.method not in ("GET", "HEAD"):
                self._fail(req, 405, "Method Not Allowed")  # creating saved searches is not modelled
            entries = [self._conf_entry(req, v, CONF, "saved/searches", v.name,
                                        {k: val for k, val in v.values.items()}, None) for v in views]
            self._feed(req, "savedsearch", feed, entries)
        name = rest[0]
        matching = [v for v in views if v.name == name]
        if not matching:
            self._fail(req, 404, "Could not find object id=%s" % name)
        view = matching[0]
        if len(rest) == 1 and req.method in ("GET", "HEAD"):
            entry = self._conf_entry(req, view, CONF, "saved/searches", name, dict(view.values), None)
            self._feed(req, "savedsearch", feed, [entry], paginate=False)
        if rest[1:] == ["dispatch"] and req.method == "POST":
            user = req.username or ""
            owner = self._acl(user, view.inst, CONF, name)["owner"]
            run_as = user if (view.values.get("dispatchAs") or "owner").strip() == "user" else owner
            self._dispatch_counter = getattr(self, "_dispatch_counter", 0) + 1
            sid = "%s__%s__%s__search%d_at_%d_%d" % (user, run_as, view.inst.app, self._dispatch_counter,
                                                     int(time.time()), self._dispatch_counter)
            self._jobs[sid] = {"sid": sid, "owner": user, "app": view.inst.app, "search": view.values.get("search", ""),
                               "created": time.time(), "dispatchState": "QUEUED", "isFinalized": False,
                               "isPaused": False, "isFailed": False, "isDone": False,
                               "savedsearch": name, "run_as": run_as}
            if req.output_mode == "json":
                raise _Reply(201, ('{"sid": "%s"}' % sid).encode("utf-8"), "application/json; charset=UTF-8")
            raise _Reply(201, ('<?xml version="1.0" encoding="UTF-8"?>\n<response>\n  <sid>%s</sid>\n</response>\n'
                               % _xml_text(sid)).encode("utf-8"))
        self._fail(req, 405 if len(rest) <= 2 else 404, "Method Not Allowed" if len(rest) <= 2 else "Not Found")
