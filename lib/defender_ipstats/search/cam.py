"""Splunk's common action model (CAM), as the alert action speaks it; written for this app from the
formats Splunk_SA_CIM documents and reads (its alert_actions.conf.spec, and the inputs, props and
transforms of the sourcetype ``stash_common_action_model``).

- Events: a stash file ``<epoch>_<random>.stash_common_action_model`` in ``$SPLUNK_HOME/var/spool/splunk``.
  Its first line, ``***SPLUNK*** index="…" host="…" source="…"``, says where the events go; the events
  follow, separated by ``BREAKER``, each starting with the line ``***Common Action Model***
  orig_action_name="…" orig_sid="…" orig_rid="…" sourcetype="…"``, which Splunk_SA_CIM's transforms
  turn into indexed fields and the sourcetype, and then drop. splunkd's batch input indexes the file
  and deletes it: no capability is needed (``receivers/simple`` needs ``edit_tcp``).
- Status: ``sendmodaction`` lines in ``$SPLUNK_HOME/var/log/splunk/<action>_modalert.log``, which
  Splunk_SA_CIM sends to the index ``cim_modactions`` as ``modular_alerts:<action>``, where Incident
  Review reads each action's invocations and status.
"""

import logging
import logging.handlers
import os
import random
import re
import time
from typing import Iterable, List, NamedTuple, Optional, Tuple

STASH_EXTENSION = "stash_common_action_model"
BREAKER = "\n==##~~##~~  1E8N3D4E6V5E7N2T9 ~~##~~##==\n"
MAX_EVENTS_PER_FILE = 50000
LOG_MAX_BYTES = 25 * 1024 * 1024
LOG_BACKUPS = 5
_EXTRA_KEY = re.compile(r"[A-Za-z_]+")


class ResultIds(NamedTuple):
    """The identifiers of one result: its ``rid``, and ``orig_sid``/``orig_rid`` when the result came
    from an earlier action (a notable event in Incident Review carries those of its correlation search)."""
    rid: str = ""
    orig_sid: str = ""
    orig_rid: str = ""


class Invocation:
    """One run of the action: the identifiers every status line and event carries."""

    def __init__(self, payload: dict, action_name: str):
        self.action_name = action_name
        self.sid = _text(payload.get("sid"))
        self.search_name = _text(payload.get("search_name"))
        self.app = _text(payload.get("app"))
        self.user = _text(payload.get("user") or payload.get("owner"))
        self.server_host = _text(payload.get("server_host"))
        result_id = payload.get("result_id")
        results_dir = os.path.basename(os.path.dirname(_text(payload.get("results_file"))))
        has_result_id = isinstance(result_id, (str, int)) and not isinstance(result_id, bool) and str(result_id) != ""
        # Per-result alerting: splunkd runs the action once per result and names it (result_id).
        self.digest_mode = 0 if has_result_id or results_dir == "per_result_alert" else 1
        self.result_id = str(result_id) if has_result_id else ""
        # A scheduled search's sid names the scheduler; ad hoc runs (sendalert, Incident Review) do not.
        self.action_mode = "saved" if "scheduler" in self.sid else "adhoc"

    def ids_of(self, row: dict, number: int) -> ResultIds:
        """The identifiers of the ``number``-th result (from 0), as the model assigns them."""
        if self.digest_mode == 0 and self.result_id:
            rid = self.result_id
        else:
            rid = _text(row.get("rid")) or str(number)
        return ResultIds(rid, _text(row.get("orig_sid")), _text(row.get("orig_rid")))

    def event_ids(self, ids: ResultIds) -> Tuple[str, str]:
        """(orig_sid, orig_rid) of an event made for a result: the origin's when the result has one."""
        return (ids.orig_sid, ids.orig_rid) if ids.orig_sid else (self.sid, ids.rid)

    def message(self, signature: str, status: str = "", ids: Optional[ResultIds] = None, **extra) -> str:
        """A ``sendmodaction`` line: ``key="value"`` pairs, quotes and backslashes escaped, empty ones left out."""
        ids = ids or ResultIds()
        pairs = [("signature", signature), ("action_name", self.action_name), ("search_name", self.search_name),
                 ("sid", self.sid), ("orig_sid", ids.orig_sid), ("rid", ids.rid), ("orig_rid", ids.orig_rid),
                 ("app", self.app), ("user", self.user), ("digest_mode", str(self.digest_mode)),
                 ("action_mode", self.action_mode), ("action_status", status)]
        pairs += [(key, extra[key]) for key in sorted(extra) if _EXTRA_KEY.fullmatch(key)]
        return "sendmodaction - " + " ".join('%s="%s"' % (key, quote_value(value))
                                             for key, value in pairs if _text(value) != "")


def quote_value(value) -> str:
    """A value fit for ``key="value"``: one line, backslashes and double quotes escaped."""
    text = " ".join(_text(value).splitlines())
    return text.replace("\\", "\\\\").replace('"', '\\"')


def header_item(key: str, value) -> str:
    """A ``key="value"`` of a header line; Splunk reads these up to the next quote, so quotes become ``_``."""
    text = " ".join(_text(value).splitlines()).replace('"', "_")
    return '%s="%s"' % (key, text) if text else ""


def stash_event(action_name: str, orig_sid: str, orig_rid: str, sourcetype: str, raw: str) -> str:
    """One event of a stash file: its id line, then its text."""
    items = [header_item("orig_action_name", action_name), header_item("orig_sid", orig_sid),
             header_item("orig_rid", orig_rid), header_item("sourcetype", sourcetype)]
    return "***Common Action Model*** %s\n%s" % (" ".join(i for i in items if i), raw)


def kv_raw(epoch: float, pairs: Iterable[Tuple[str, object]]) -> str:
    """An event's text as the model writes it: the time, then ``, key="value"`` pairs (empty ones left out).
    Values are on one line, so no value can contain ``BREAKER``."""
    return "%.3f" % epoch + "".join(', %s="%s"' % (key, quote_value(value)) for key, value in pairs
                                    if value is not None and _text(value) != "")


def write_stash(splunk_home: str, events: List[str], index: str, host: str, source: str,
                clock=time.time) -> List[str]:
    """Writes ``events`` as stash files for splunkd's batch input; returns their paths.

    Each file is written under ``var/run`` and then renamed into ``var/spool/splunk``: splunkd's batch
    input reads (and deletes) every file that appears there, so a file must appear whole. Both folders
    are under ``$SPLUNK_HOME/var``, on one file system, where a rename is atomic.
    """
    spool = os.path.join(splunk_home, "var", "spool", "splunk")
    staging = os.path.join(splunk_home, "var", "run", "TA-defender-ipstats", "spool")
    os.makedirs(staging, exist_ok=True)
    items = [header_item("index", index), header_item("host", host), header_item("source", source)]
    header = "***SPLUNK*** " + " ".join(i for i in items if i)
    paths = []
    for start in range(0, len(events), MAX_EVENTS_PER_FILE):
        chunk = events[start:start + MAX_EVENTS_PER_FILE]
        name = "%d_%d.%s" % (int(clock()), random.SystemRandom().randint(0, 10 ** 9), STASH_EXTENSION)
        temporary = os.path.join(staging, name + ".part")
        with open(temporary, "wb") as handle:
            handle.write((header + BREAKER + BREAKER.join(chunk)).encode("utf-8"))
        os.replace(temporary, os.path.join(spool, name))
        paths.append(os.path.join(spool, name))
    return paths


class ModalertLog:
    """``<action>_modalert.log``: ``%Y-%m-%d %H:%M:%S,mmm+0000 LEVEL message`` lines, rotated as Splunk's
    own logs are. A log that cannot be written is remembered (``failure``), never raised."""

    def __init__(self, splunk_home: str, action_name: str):
        self.path = os.path.join(splunk_home, "var", "log", "splunk", action_name + "_modalert.log")
        self.failure: Optional[str] = None
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
        except OSError:
            pass  # the first write says so
        handler = _Handler(self, self.path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, delay=True,
                           encoding="utf-8")
        handler.setFormatter(_UtcFormatter("%(asctime)s %(levelname)s %(message)s"))
        self._logger = logging.Logger(action_name + "_modalert")  # not registered: no other handler sees it
        self._logger.addHandler(handler)
        self._handler = handler

    def write(self, level: int, message: str) -> None:
        self._logger.log(level, message)

    def close(self) -> None:
        self._handler.close()


class _Handler(logging.handlers.RotatingFileHandler):
    def __init__(self, owner: ModalertLog, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner

    def handleError(self, record) -> None:  # no traceback on stderr: the action says it in one line
        if self.owner.failure is None:
            self.owner.failure = "could not write %s" % self.baseFilename


class _UtcFormatter(logging.Formatter):
    converter = time.gmtime

    def formatTime(self, record, datefmt=None) -> str:
        return "%s,%03d+0000" % (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.created)), record.msecs)


def _text(value) -> str:
    return "" if value is None else str(value)
