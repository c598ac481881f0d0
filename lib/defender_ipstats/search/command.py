"""splunklib's hook: the options, ``prepare`` (at getinfo) and ``stream`` (a chunk of records).

splunklib parses the options, answers getinfo and reads every request; the execute loop and its lean
path are in ``lean``. Either way search-level problems are one readable error, and a chunk's events
never go missing.
"""

import sys

from splunklib.searchcommands import Configuration, Option, SearchMetric, StreamingCommand

from ..core.errors import DefenderIpStatsError
from ..core.options import Options
from ..core.settings import Settings
from ..splunk import rest
from ..splunk.logs import get_logger
from .lean import LeanExecution
from .service_client import REQUEST_TIMEOUT, ServiceClient


@Configuration(distributed=False)
class DefenderIpStatsCommand(LeanExecution, StreamingCommand):
    """| defenderipstats field=<field> [lookbackhours=<1..720>] [account=<name>] [prefix=<string>]
    [cache=use|refresh|off] [maxwait=<seconds>] [backend=ipstats|hunting|auto]
    """

    # Values are checked in prepare(), where the message can say what is wrong; splunklib's
    # validators would only say "Illegal value".
    field = Option(require=True, doc="The event field holding the IP (multivalue allowed).")
    lookbackhours = Option(doc="Look-back in hours, 1..720; default from settings.")
    account = Option(doc="The configured account (tenant/app registration) to use.")
    prefix = Option(doc="Output field prefix; default defender_.")
    cache = Option(doc="use | refresh | off.")
    maxwait = Option(doc="Seconds to wait for API budget before marking IPs rate_limited.")
    backend = Option(doc="ipstats | hunting | auto.")

    _enrichment = None

    def prepare(self):
        """At getinfo: every option given is checked (one clear error), with no request to splunkd.

        The account, the settings and the rest of the search's machinery (the cache reader, the job
        watcher, the lookups through the app's service) come on the first execute chunk
        (``enrichment``): the getinfo reply needs none of it, and a search that is never executed
        costs splunkd nothing.
        """
        logger = get_logger()
        sid = getattr(self.metadata.searchinfo, "sid", "")
        try:
            Options.resolve(self._raw_options(), Settings())  # the values given; defaults come later
        except DefenderIpStatsError as error:
            self._refuse(logger, sid, error)
        except Exception as error:  # never a traceback in the search
            self._cannot_start(logger, sid, error)

    @property
    def enrichment(self):
        """The search's ``Enrichment``, built when the first execute chunk needs it: one request to
        the app's service resolves the account (and checks this user may use it) and brings the
        settings, against which the options get their defaults. Or one clear error."""
        if self._enrichment is None:
            logger = get_logger()
            info = self.metadata.searchinfo
            sid = getattr(info, "sid", "")
            try:
                # at the first execute chunk: getinfo needs neither (nor the KV cache they import)
                from ..splunk.jobwatch import POLL_TIMEOUT, JobWatcher
                from .enrichment import Enrichment

                raw = self._raw_options()
                client = ServiceClient(rest.connect(info.splunkd_uri, info.session_key, timeout=REQUEST_TIMEOUT))
                described = client.describe(str(raw["account"] or "").strip())
                settings = Settings.from_conf(described.get("settings") or {})
                logger = get_logger(settings.log_level)
                options = Options.resolve(dict(raw, account=str(described.get("account") or "")), settings)
                logger.debug("sid=%s started: field=%s account=%s lookback=%s cache=%s", sid, options.field,
                             options.account, options.lookback_hours, options.cache)
                # Separate connections with short timeouts: a hanging KV store costs one warning, not
                # the search; a slow job poll must not hold up the lookups for long.
                kv_service = rest.connect(info.splunkd_uri, info.session_key, timeout=rest.KVSTORE_TIMEOUT)
                watcher = JobWatcher(rest.connect(info.splunkd_uri, info.session_key, timeout=POLL_TIMEOUT),
                                     sid, logger=logger)
                self._enrichment = Enrichment(options, settings, client, kv_service, logger, sid=sid,
                                              should_stop=watcher.should_stop,
                                              restricted=bool(described.get("restricted")))
            except DefenderIpStatsError as error:
                self._refuse(logger, sid, error)
            except Exception as error:  # never a traceback in the search
                self._cannot_start(logger, sid, error)
        return self._enrichment

    def _refuse(self, logger, sid, error):
        logger.error("sid=%s cannot start: %s", sid, error)
        self.write_error("defenderipstats: %s" % error)
        sys.exit(1)

    def _cannot_start(self, logger, sid, error):
        logger.exception("sid=%s cannot start", sid)
        self.write_error("defenderipstats could not start (internal error: %s). "
                         "See defenderipstats.log." % type(error).__name__)
        sys.exit(1)

    def _raw_options(self):
        return {name: getattr(self, name) for name in
                ("field", "lookbackhours", "account", "prefix", "cache", "maxwait", "backend")}

    # -- splunklib's hook: one protocol chunk of records (the lean path in ``lean`` takes most chunks)
    def stream(self, records):
        records = list(records)
        enrichment = self.enrichment
        try:
            enrichment.enrich(records, last=self.finished)
        except Exception as error:  # last resort: the events still go out
            enrichment.chunk_failed(error)
            names = enrichment.enricher.names
            for record in records:  # every record must carry every output field
                for name in names:
                    record.setdefault(name, "")
        messages, metrics = enrichment.chunk_report(self.finished)
        for level, text in messages:
            if level == "ERROR":
                self.write_error(text)
            else:
                self.write_warning(text)
        for name, value in metrics:
            self.write_metric(name, SearchMetric(*value))
        return records
