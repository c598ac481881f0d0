"""``search/jobs`` and ``search/v2/jobs``: job state only (no search runs)."""

from __future__ import annotations

import time
from typing import Any, Dict, List
from urllib.parse import quote

from .model import _Reply, _Request
from .rendering import (
    NS_ATOM,
    NS_OPENSEARCH,
    NS_REST,
    _Entry,
    _error_body,
    _timestamp,
    _xml_attr,
    _xml_content_dict,
    _xml_text,
    _xml_value,
)


class JobEndpoints:
    """search/jobs of SplunkdStandin."""

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
