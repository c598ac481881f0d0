"""Runs the real command against the stand-ins, as splunkd would, and configures it as an admin would.

Configuration goes through splunkd's REST API (splunklib, logged in as admin), never by writing
files; searches run ``bin/defenderipstats.py`` as a subprocess over protocol v2 (tests/support/protocol.py).
"""

import glob
import os
import sys
import threading
from typing import Dict, List, Optional

from protocol import run_command
from standins import dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APP = "TA-defender-ipstats"
# The app under test: this repository by default, or an unpacked package (DEFENDERIPSTATS_APP_ROOT),
# run by the venv's Python or by another one (DEFENDERIPSTATS_PYTHON, e.g. a bare pyenv Python that
# sees nothing but the app's own lib/, as Splunk runs it).
APP_ROOT = os.environ.get("DEFENDERIPSTATS_APP_ROOT") or ROOT
COMMAND = os.path.join(APP_ROOT, "bin", "defenderipstats.py")
COMMAND_PYTHON = os.environ.get("DEFENDERIPSTATS_PYTHON") or sys.executable
OUTPUT_SUFFIXES = ("ip", "prevalence", "first_seen", "last_seen", "status", "source", "basis", "error")
ACCOUNT = "contoso"  # the account the fixtures configure ([default] is never an account)
_SID_LOCK = threading.Lock()


class AppHarness:
    def __init__(self, splunkd, defender, tmp_path, python: str = COMMAND_PYTHON):
        self.splunkd = splunkd
        self.defender = defender
        self.python = python
        self.splunk_home = os.path.join(str(tmp_path), "splunk_home")
        self.dispatch = os.path.join(self.splunk_home, "var", "run", "splunk", "dispatch")
        os.makedirs(self.dispatch, exist_ok=True)
        if splunkd.splunk_home != self.splunk_home:
            # where splunkd's REST handler processes run: a running one keeps its environment, so a new
            # SPLUNK_HOME (a second harness on the same splunkd) needs new processes, as after a restart
            splunkd.stop_handlers()
            splunkd.splunk_home = self.splunk_home
        self._admin = None
        self._runs = 0

    # -- administration through REST ---------------------------------------------------
    @property
    def admin(self):
        if self._admin is None:
            from splunklib import client

            base = self.splunkd.base_url
            host, port = base.split("://", 1)[1].rsplit(":", 1)
            self._admin = client.connect(scheme="http", host=host, port=int(port), username="admin",
                                         password="changeme", owner="nobody", app=APP, autologin=True)
        return self._admin

    def set_stanza(self, conf: str, stanza: str, **settings) -> None:
        from splunklib import binding

        path = "configs/conf-%s" % conf
        try:
            self.admin.get("%s/%s" % (path, binding.UrlEncoded(stanza, encode_slash=True)))
            exists = True
        except binding.HTTPError as error:
            if error.status != 404:
                raise
            exists = False
        if exists:
            self.admin.post("%s/%s" % (path, binding.UrlEncoded(stanza, encode_slash=True)), **settings)
        else:
            self.admin.post(path, name=stanza, **settings)

    def set_secret(self, account: str, secret: str, realm: str = APP) -> None:
        from splunklib import binding

        passwords = self.admin.storage_passwords
        try:
            passwords.delete(username=account, realm=realm)
        except (KeyError, binding.HTTPError):
            pass
        passwords.create(secret, username=account, realm=realm)

    def set_proxy_credentials(self, account: str, user: str, password: str) -> None:
        """As an admin stores them: realm TA-defender-ipstats-proxy, password '<user>:<password>'."""
        self.set_secret(account, "%s:%s" % (user, password), realm=APP + "-proxy")

    def configure_account(self, name: str = ACCOUNT, secret: Optional[str] = None, **overrides) -> None:
        from standins import defender as defender_module

        settings = {
            "tenant_id": defender_module.DEFAULT_TENANT,
            "client_id": defender_module.DEFAULT_CLIENT_ID,
            "api_url": self.defender.base_url,
            "authority": self.defender.authority(),
            "ca_bundle": self.defender.ca_bundle,
        }
        settings.update(overrides)
        self.set_stanza("defenderipstats_accounts", name, **settings)
        self.set_secret(name, defender_module.DEFAULT_SECRET if secret is None else secret)

    def settings(self, **values) -> None:
        self.set_stanza("defenderipstats", "settings", **values)

    # -- searching ---------------------------------------------------------------------
    def new_sid(self) -> str:
        with _SID_LOCK:  # searches may run side by side (threads), each with its own sid
            self._runs += 1
            return "%d.%d" % (1764201600 + self._runs, os.getpid() % 1000)

    def search(self, args, chunks, timeout: float = 120, username: str = "admin", sid: Optional[str] = None,
               env: Optional[Dict[str, str]] = None, **searchinfo):
        """Run the command over protocol v2, with a running job for ``sid`` in splunkd as for any search.

        ``env``: extra environment variables for the command (e.g. ``DEFENDERIPSTATS_LEAN=0``)."""
        sid = sid or self.new_sid()
        if self.splunkd.job_state(sid) is None:
            self.splunkd.create_job(sid, owner=username, app=APP, search="| defenderipstats " + " ".join(args))
        dispatch_dir = os.path.join(self.dispatch, sid)
        os.makedirs(dispatch_dir, exist_ok=True)
        command_env = dict(os.environ)
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "HTTPS_PROXY", "https_proxy"):
            command_env.pop(name, None)
        command_env["SPLUNK_HOME"] = self.splunk_home
        command_env.update(env or {})
        searchinfo.setdefault("session_key", self.splunkd.new_session_key(username))
        return run_command(COMMAND, list(args), chunks, python=self.python, env=command_env, cwd=dispatch_dir,
                           timeout=timeout, splunkd_uri=self.splunkd.base_url, sid=sid,
                           username=username, owner=username, **searchinfo)

    def log_text(self) -> str:
        texts = []
        for path in glob.glob(os.path.join(self.splunk_home, "var", "log", "splunk", "defenderipstats.log*")):
            with open(path, encoding="utf-8", errors="replace") as handle:
                texts.append(handle.read())
        return "\n".join(texts)

    def cache_documents(self) -> List[dict]:
        return self.splunkd.kv_documents("defenderipstats_cache", app=APP)

    def leaks(self, runs=()) -> List[str]:
        """Where the client secret or any access token the stand-in issued shows up: results, messages,
        stderr of ``runs``, every file under SPLUNK_HOME (logs, limiter state...) and the KV store."""
        from standins import defender as defender_module

        secrets = [defender_module.DEFAULT_SECRET] + list(self.defender.issued_tokens)
        haystacks = [("kvstore", repr(self.splunkd.kv_documents(c, app=APP)))
                     for c in ("defenderipstats_cache", "defenderipstats_cache_restricted",
                               "defenderipstats_published")]
        for run in runs:
            haystacks += [("results", repr(run.records)), ("messages", repr(run.messages)),
                          ("metrics", repr(run.metrics)), ("stderr", run.stderr)]
        for folder, _, files in os.walk(self.splunk_home):
            for name in files:
                path = os.path.join(folder, name)
                with open(path, "rb") as handle:
                    haystacks.append((os.path.relpath(path, self.splunk_home), handle.read().decode("latin-1")))
        return ["%s in %s" % ("secret" if secret == secrets[0] else "token", where)
                for secret in secrets for where, text in haystacks if secret in text]


def events(values, field: str = "src_ip") -> List[Dict[str, object]]:
    """Events as splunkd would send them, with a few fields of their own."""
    out = []
    for index, value in enumerate(values):
        record = {"_time": str(1764201600 + index), "_raw": "event %d to %s" % (index, value),
                  "host": "fw-%d" % (index % 3)}
        if value is not None:
            record[field] = value
        out.append(record)
    return out


def expected_fields(ip: str, lookback_hours: int = 720, source: str = "api", prefix: str = "defender_",
                    basis: str = ""):
    """What the command must output for a valid IP, computed from the stand-in's dataset (Defender's
    per-IP figures: basis ipstats unless told)."""
    canonical = dataset.canonical(ip)
    stats = dataset.ip_stats(canonical, lookback_hours)
    prevalence = stats["organizationPrevalence"]
    values = (canonical, str(prevalence), stats["orgFirstSeen"] or "", stats["orgLastSeen"] or "",
              "found" if prevalence else "not_seen", source,
              basis or ("hunting" if source == "hunting" else "ipstats"), "")
    return dict(zip((prefix + s for s in OUTPUT_SUFFIXES), values))
