"""The alert action "Defender IP statistics" (alert_actions.conf [defenderipstats_alert]), a
common-action-model action (Enterprise Security adaptive response, also ad hoc from Incident Review).

Splunk's custom alert action protocol: splunkd runs ``bin/defenderipstats_alert.py --execute``
and writes the JSON payload to its stdin (``session_key``, ``server_uri``, ``sid``, ``search_name``,
``app``, ``owner``, ``results_file`` - the triggering search's results as a gzipped CSV - and
``configuration``, the action's ``param.*`` settings). Each line the script writes to stderr goes to
splunkd.log (component sendmodalert, with the action's name), so every problem is one line there,
starting with its level. Exit status 0 is success.

The IPs of the configured field are looked up ONLY through the app's privileged lookup service
(``.../defenderipstats/lookup``) with the payload's session key: the action holds no token and reads
no credential; the service also gives the settings (``alert_indexes``). Each IP gives one event,
sourcetype ``defenderipstats:enrichment``, written as the common action model writes its events
(``cam``: a stash file, no capability needed) to the configured index, if ``alert_indexes`` lists it.
Invocation and status lines go to ``defenderipstats_alert_modalert.log``, where Incident Review reads them.
"""

import io
import json
import logging
import os
import re
import sys
import time
from typing import Dict, List, Optional

from ..core.alert_indexes import INDEX_NAME
from ..core.lookup import normalise_ip
from ..splunk.rest import connect
from . import cam
from .alert_results import READ_ERRORS, ResultRow, read_results
from .alert_service import (
    DEADLINE_S,
    EXIT_CONFIGURATION,
    EXIT_FAILED,
    EXIT_OK,
    ActionError,
    LookupService,
    allowed_indexes,
    require_cim,
    short_error,
)

ACTION_NAME = "defenderipstats_alert"
SOURCETYPE = "defenderipstats:enrichment"
MAX_IPS = 50000             # per alert: a larger result set is cut, with a warning
BACKENDS = ("ipstats", "hunting", "auto")


_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]{0,199}")
_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,100}")


class Config:
    def __init__(self, field: str, index: str, account: str, lookback_hours: Optional[int], backend: str,
                 max_wait: int):
        self.field = field
        self.index = index
        self.account = account
        self.lookback_hours = lookback_hours
        self.backend = backend
        self.max_wait = max_wait

    @classmethod
    def from_payload(cls, configuration) -> "Config":
        if not isinstance(configuration, dict):
            raise ActionError("The alert action has no configuration in its payload.", EXIT_CONFIGURATION)

        def text(name):
            value = configuration.get(name)
            return value.strip() if isinstance(value, str) else ""

        field = text("field")
        if not field:
            raise ActionError("No IP field configured: set 'Field with the IP' (param.field) in the alert "
                              "action, e.g. dest.", EXIT_CONFIGURATION)
        if not _FIELD_NAME.fullmatch(field):
            raise ActionError("param.field is not a field name: %r." % field[:100], EXIT_CONFIGURATION)
        index = text("index") or "main"
        if not INDEX_NAME.fullmatch(index):
            raise ActionError("param.index is not a usable index name: %r (lower-case letters, digits, '_' "
                              "and '-', not an internal index)." % index[:100], EXIT_CONFIGURATION)
        account = text("account")
        if account and not _ACCOUNT_NAME.fullmatch(account):
            raise ActionError("param.account is not an account name: %r." % account[:100], EXIT_CONFIGURATION)
        lookback = text("lookback_hours")
        lookback_hours = None
        if lookback:
            if not lookback.isdigit() or not 1 <= int(lookback) <= 720:
                raise ActionError("param.lookback_hours must be a whole number from 1 to 720, not %r."
                                  % lookback[:20], EXIT_CONFIGURATION)
            lookback_hours = int(lookback)
        backend = text("backend") or "auto"
        if backend not in BACKENDS:
            raise ActionError("param.backend must be one of %s, not %r." % (", ".join(BACKENDS), backend[:20]),
                              EXIT_CONFIGURATION)
        max_wait = text("max_wait") or "60"
        if not max_wait.isdigit() or int(max_wait) > DEADLINE_S:
            raise ActionError("param.max_wait must be a whole number of seconds from 0 to %d, not %r."
                              % (DEADLINE_S, max_wait[:20]), EXIT_CONFIGURATION)
        return cls(field, index, account, lookback_hours, backend, int(max_wait))


# -- the payload --------------------------------------------------------------------------------------
def read_payload(stream) -> dict:
    text = stream.read()
    try:
        payload = json.loads(text)
    except ValueError:
        raise ActionError("The alert action's payload is not JSON: set payload_format = json for "
                          "[%s] in alert_actions.conf." % ACTION_NAME, EXIT_CONFIGURATION)
    if not isinstance(payload, dict):
        raise ActionError("The alert action's payload is not a JSON object.", EXIT_CONFIGURATION)
    for key in ("session_key", "server_uri"):
        if not isinstance(payload.get(key), str) or not payload[key]:
            raise ActionError("The alert action's payload lacks %s." % key, EXIT_CONFIGURATION)
    return payload


def field_values(results_file: str, field: str, invocation: cam.Invocation) -> List[ResultRow]:
    """The results, each with the values of ``field``; one clear error when they cannot be used."""
    try:
        rows, columns = read_results(results_file, field, invocation)
    except READ_ERRORS as error:
        raise ActionError("Could not read the search results (%s): %s" % (results_file, short_error(error)))
    if rows and field not in columns:
        raise ActionError("The results have no field %r (param.field); they have: %s."
                          % (field, ", ".join(c for c in columns if not c.startswith("__mv_"))[:300]),
                          EXIT_CONFIGURATION)
    return rows


# -- result events -----------------------------------------------------------------------------------
def result_events(ips: List[str], first_rows: Dict[str, ResultRow], results: Dict[str, dict], config: Config,
                  invocation: cam.Invocation, account: str, lookback_hours, now: float) -> List[str]:
    """One stash event per IP, in the order the IPs came, with CIM-friendly names; each event carries
    the identifiers of the first result the IP came in."""
    events = []
    for ip in ips:
        stats = results.get(ip)
        if stats is None:
            stats = {"status": "rate_limited", "error": "not answered within the alert action's time limit"}
        status = str(stats.get("status") or "error")
        row = first_rows[ip]
        raw = cam.kv_raw(now, [
            ("search_name", invocation.search_name), ("ip", ip), ("src_field", config.field),
            ("prevalence", stats.get("prevalence")), ("first_seen", stats.get("first_seen")),
            ("last_seen", stats.get("last_seen")), ("status", status), ("source_backend", stats.get("source")),
            ("error", stats.get("error")), ("account", account), ("lookback_hours", lookback_hours),
            ("vendor_product", "Microsoft Defender for Endpoint"), ("action_status", _action_status(status)),
            ("sid", invocation.sid), ("rid", row.ids.rid), ("orig_search_name", row.orig_search_name),
            ("app", invocation.app), ("orig_owner", invocation.user)])
        orig_sid, orig_rid = invocation.event_ids(row.ids)
        events.append(cam.stash_event(ACTION_NAME, orig_sid, orig_rid, SOURCETYPE, raw))
    return events


def _action_status(status: str) -> str:
    return "success" if status in ("found", "not_seen") else "failure"


# -- the run -----------------------------------------------------------------------------------------
def run(argv: List[str], stdin, stderr, connect, clock=time.time, splunk_home: Optional[str] = None) -> int:
    """One alert action run as splunkd starts it; returns the exit status."""
    logs: List[cam.ModalertLog] = []
    try:
        return _run(argv, stdin, stderr, connect, clock, splunk_home, logs)
    finally:
        for status_log in logs:
            status_log.close()
            if status_log.failure:  # Incident Review will not show this run: say so where splunkd logs
                stderr.write("WARN The action's status log: %s.\n" % status_log.failure)


def _run(argv, stdin, stderr, connect, clock, splunk_home, logs) -> int:
    def say(level: str, text: str) -> None:
        for line in str(text).splitlines() or [""]:
            stderr.write("%s %s\n" % (level, line))
        stderr.flush()

    if len(argv) < 2 or argv[1] != "--execute":
        say("FATAL", "Unsupported execution mode (expected --execute): %s" % " ".join(argv[1:2]))
        return EXIT_CONFIGURATION
    status_log, invocation = None, None
    try:
        payload = read_payload(stdin)
        invocation = cam.Invocation(payload, ACTION_NAME)
        home = splunk_home if splunk_home is not None else os.environ.get("SPLUNK_HOME")
        if not home:
            raise ActionError("SPLUNK_HOME is not set: the action cannot write its events.")
        status_log = cam.ModalertLog(home, ACTION_NAME)
        logs.append(status_log)
        config = Config.from_payload(payload.get("configuration"))
        results_file = payload.get("results_file")
        if not isinstance(results_file, str) or not results_file:
            raise ActionError("The alert action's payload has no results_file.")
        rows = field_values(results_file, config.field, invocation)
        for row in rows:
            status_log.write(logging.INFO, invocation.message("Invoking modular action", ids=row.ids))
        ips, first_rows, invalid = [], {}, 0
        for row in rows:
            for value in row.values:
                canonical = normalise_ip(value)
                if canonical is None:
                    invalid += 1
                elif canonical not in first_rows:
                    first_rows[canonical] = row
                    ips.append(canonical)
        if len(ips) > MAX_IPS:
            say("WARN", "%d distinct IPs in the results; only the first %d are looked up." % (len(ips), MAX_IPS))
            ips = ips[:MAX_IPS]
        if not ips:
            text = "No IP in field %r of %d result(s) (%d value(s) not IPs); nothing to do." % (
                config.field, len(rows), invalid)
            say("INFO", text)
            status_log.write(logging.INFO, invocation.message(text, status="success"))
            return EXIT_OK
        service = connect(payload["server_uri"], payload["session_key"])
        require_cim(service)
        indexes = allowed_indexes(service, config)
        if config.index not in indexes:
            raise ActionError("The alert action may not write to index %r: an admin allows only %s "
                              "(alert_indexes in defenderipstats.conf); nothing was written."
                              % (config.index, ", ".join(indexes)), EXIT_CONFIGURATION)
        lookups = LookupService(service, config)
        results, pending = lookups.resolve(ips)
        for level, text in lookups.messages:
            say("WARN" if level.upper().startswith("WARN") else "ERROR" if level.upper() == "ERROR" else "INFO",
                text)
        source = "%s:%s" % (ACTION_NAME, invocation.search_name or "adhoc")
        events = result_events(ips, first_rows, results, config, invocation, lookups.account,
                               lookups.lookback_hours, clock())
        try:
            cam.write_stash(home, events, config.index, invocation.server_host, source, clock)
        except OSError as error:
            raise ActionError("Could not write the result events to $SPLUNK_HOME/var/spool/splunk: %s"
                              % short_error(error))
        for row in rows:
            status_log.write(logging.INFO, _row_status(invocation, row, results, config.field))
        status_log.write(logging.INFO, invocation.message("Successfully created splunk events", status="success",
                                                          event_count=str(len(events)), index=config.index))
        found = sum(1 for ip in ips if (results.get(ip) or {}).get("status") == "found")
        say("INFO", "sid=%s ips=%d found=%d pending=%d not_ip=%d requests=%d index=%s events=%d"
            % (invocation.sid, len(ips), found, len(pending), invalid, lookups.requests, config.index, len(events)))
        if pending:
            say("WARN", "%d IP(s) were not answered within %d s; their events say rate_limited."
                % (len(pending), DEADLINE_S))
        return EXIT_OK
    except ActionError as error:
        say("ERROR", str(error))
        code = error.exit_code
        failure = str(error)
    except Exception as error:  # one line, never a traceback in splunkd.log
        failure = "Unexpected failure: %s: %s" % (type(error).__name__, short_error(error))
        say("ERROR", failure)
        code = EXIT_FAILED
    if status_log is not None and invocation is not None:
        status_log.write(logging.ERROR, invocation.message(failure, status="failure"))
    return code


def _row_status(invocation: cam.Invocation, row: ResultRow, results: Dict[str, dict], field: str) -> str:
    """A result's status line: success when each of its IPs got an answer (found or not seen)."""
    canonical = [ip for ip in (normalise_ip(v) for v in row.values) if ip is not None]
    if not canonical:
        return invocation.message("No IP in field %s of this result" % field, status="failure", ids=row.ids)
    statuses = [str((results.get(ip) or {}).get("status") or "rate_limited") for ip in canonical]
    answered = sum(1 for s in statuses if _action_status(s) == "success")
    return invocation.message("Looked up %d IP(s) in Defender: %d answered" % (len(canonical), answered),
                              status="success" if answered == len(canonical) else "failure", ids=row.ids)


def main(argv=None) -> int:
    return run(sys.argv if argv is None else argv, io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8"),
               sys.stderr, connect)
