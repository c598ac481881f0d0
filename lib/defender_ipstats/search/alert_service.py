"""The alert action's way to the app's privileged lookup service, with the alert owner's session key
(or the session of the analyst who runs it ad hoc): the settings it may use (``alert_indexes``) and
the lookups. The action holds no token and reads no credential."""

import json
import time
from typing import Dict, List, Tuple

from splunklib import binding

from .. import APP_NAME
from ..core.alert_indexes import parse_alert_indexes
from ..core.errors import ConfigurationError

LOOKUP_PATH = "defenderipstats/lookup"
CAM_SOURCETYPE = "configs/conf-props/stash_common_action_model"
MAX_IPS_PER_REQUEST = 5000  # the service's limit per request
DEADLINE_S = 240            # inside alert_actions.conf maxtime (5 min), with room to write events

EXIT_OK, EXIT_FAILED, EXIT_CONFIGURATION = 0, 1, 2


class ActionError(Exception):
    """A failure to report as one line in splunkd.log; ``exit_code`` says what kind."""

    def __init__(self, text: str, exit_code: int = EXIT_FAILED):
        super().__init__(text)
        self.exit_code = exit_code


class LookupService:
    """The app's privileged lookup endpoint, called with the alert owner's session key."""

    def __init__(self, service, config, clock=time.monotonic, sleep=time.sleep):
        self.service = service
        self.config = config
        self.clock = clock
        self.sleep = sleep
        self.requests = 0
        self.account = config.account
        self.lookback_hours = config.lookback_hours
        self.messages: List[Tuple[str, str]] = []

    def _post(self, ips: List[str], max_wait: int) -> dict:
        # No sid: the service uses it to stop work for a cancelled search, and the triggering
        # search of an alert has finished (its job may even be gone) by the time the action runs.
        form = {"account": self.config.account, "backend": self.config.backend, "cache": "use",
                "ips": ",".join(ips), "max_wait": str(max_wait), "output_mode": "json"}
        if self.config.lookback_hours is not None:
            form["lookback_hours"] = str(self.config.lookback_hours)
        self.requests += 1
        try:
            response = self.service.post(LOOKUP_PATH, owner="nobody", app=APP_NAME, **form)
            return json.loads(response.body.read().decode("utf-8"))
        except binding.HTTPError as error:
            raise ActionError(_service_error(error), EXIT_CONFIGURATION if error.status in (400, 403) else EXIT_FAILED)
        except (OSError, ValueError) as error:
            raise ActionError("The app's lookup service did not answer: %s" % short_error(error))

    def resolve(self, ips: List[str], deadline_s: float = DEADLINE_S) -> Tuple[Dict[str, dict], List[str]]:
        """(results by IP, IPs still pending at the deadline). Asks again for ``pending`` IPs."""
        results: Dict[str, dict] = {}
        todo = list(ips)
        end = self.clock() + deadline_s
        while todo:
            left = end - self.clock()
            if left <= 0:
                break
            batch, todo = todo[:MAX_IPS_PER_REQUEST], todo[MAX_IPS_PER_REQUEST:]
            answer = self._post(batch, int(max(0, min(self.config.max_wait, left))))
            self.account = answer.get("account") or self.account
            self.lookback_hours = answer.get("lookback_hours") or self.lookback_hours
            for level, text in answer.get("messages") or []:
                if (level, text) not in self.messages:
                    self.messages.append((str(level), str(text)))
            for ip, stats in (answer.get("results") or {}).items():
                if ip in batch and isinstance(stats, dict):
                    results[ip] = stats
            pending = [ip for ip in answer.get("pending") or [] if ip in batch and ip not in results]
            if pending:
                todo = pending + todo
                if not answer.get("results"):
                    self.sleep(min(1.0, max(0.0, end - self.clock())))  # nothing done: no busy loop
        return results, [ip for ip in ips if ip not in results]


def _service_error(error) -> str:
    status = getattr(error, "status", 0)
    if status == 404:
        return ("The app's lookup service is not loaded (splunkd answered 404 for %s): restart Splunk after "
                "installing or upgrading TA-defender-ipstats." % LOOKUP_PATH)
    try:
        body = json.loads(error.body.decode("utf-8") if isinstance(error.body, bytes) else error.body)
        text = body.get("error") or ""
        if not text and body.get("messages"):
            text = body["messages"][0].get("text", "")
    except (AttributeError, TypeError, ValueError, IndexError):
        text = ""
    if status == 401:
        return "splunkd rejected the alert's session key (401)."
    if status == 403:
        return ("The alert's owner may not use the Defender accounts (403): give the owner the role "
                "defenderipstats_user (capability defenderipstats_use). %s" % text).strip()
    return "The app's lookup service answered %s: %s" % (status, text or short_error(error))


def allowed_indexes(service, config) -> Tuple[str, ...]:
    """``alert_indexes`` of the app's settings, read from the app's service as the alert's owner."""
    try:
        response = service.get(LOOKUP_PATH, owner="nobody", app=APP_NAME, account=config.account,
                               output_mode="json")
        settings = json.loads(response.body.read().decode("utf-8")).get("settings") or {}
    except binding.HTTPError as error:
        raise ActionError(_service_error(error), EXIT_CONFIGURATION if error.status in (400, 403) else EXIT_FAILED)
    except (OSError, ValueError, AttributeError) as error:
        raise ActionError("The app's lookup service did not answer: %s" % short_error(error))
    try:
        return parse_alert_indexes(settings.get("alert_indexes"))
    except ConfigurationError as error:
        raise ActionError(str(error), EXIT_CONFIGURATION)


def require_cim(service) -> None:
    """Splunk_SA_CIM declares the batch input and the sourcetype that index the stash files. Without it,
    splunkd's catch-all input of the spool folder would index them as plain text, wherever it puts
    such files: so the action refuses to write."""
    try:
        service.get(CAM_SOURCETYPE, owner="nobody", app=APP_NAME, output_mode="json")
    except binding.HTTPError as error:
        if error.status == 404:
            raise ActionError("Splunk_SA_CIM (the Common Information Model add-on, part of Enterprise Security) is "
                              "not installed on this search head: it indexes the action's events (sourcetype "
                              "stash_common_action_model). Nothing was written.", EXIT_CONFIGURATION)
        raise ActionError("Could not check that Splunk_SA_CIM is installed (configs/conf-props answered %s)."
                          % error.status)
    except OSError as error:
        raise ActionError("Could not check that Splunk_SA_CIM is installed: %s" % short_error(error))


def short_error(error) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]
