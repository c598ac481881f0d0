"""The splunklib adapter: options in, chunks through ``Enrichment``, messages out.

Protocol v2 handling stays in splunklib; this class only parses options, reports
search-level problems as one readable error, and never lets a chunk's events go missing.
"""

import sys

from splunklib.searchcommands import Configuration, Option, SearchMetric, StreamingCommand

from . import splunkd
from .errors import DefenderIpStatsError
from .logs import get_logger
from .settings import Options


@Configuration(distributed=False)
class DefenderIpStatsCommand(StreamingCommand):
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

    enrichment = None

    def prepare(self):
        logger = get_logger()
        info = self.metadata.searchinfo
        sid = getattr(info, "sid", "")
        try:
            service = splunkd.connect(info.splunkd_uri, info.session_key)
            config = splunkd.SplunkdConfig(service)
            settings = config.settings()
            logger = get_logger(settings.log_level)
            options = Options.resolve(self._raw_options(), settings)
            account = config.account(options.account)
            from .access import BrokerAccess
            from .enrichment import Enrichment
            from .jobwatch import POLL_TIMEOUT, JobWatcher

            # Separate connections with short timeouts: a hanging KV store costs one warning, not the
            # search; a slow job poll must not hold up a worker for long.
            kv_service = splunkd.connect(info.splunkd_uri, info.session_key, timeout=splunkd.KVSTORE_TIMEOUT)
            watcher = JobWatcher(splunkd.connect(info.splunkd_uri, info.session_key, timeout=POLL_TIMEOUT), sid,
                                 logger=logger)
            # Tokens come from the app's token broker (restmap.conf), never the secret: the searching
            # user needs the capability defenderipstats_use, not list_storage_passwords.
            access = BrokerAccess(splunkd.connect(info.splunkd_uri, info.session_key), account)
            self.enrichment = Enrichment(options, settings, account, access, kv_service, logger, sid=sid,
                                         should_stop=watcher.should_stop)
        except DefenderIpStatsError as error:
            logger.error("sid=%s cannot start: %s", sid, error)
            self.write_error("defenderipstats: %s" % error)
            sys.exit(1)
        except Exception as error:  # never a traceback in the search
            logger.exception("sid=%s cannot start", sid)
            self.write_error("defenderipstats could not start (internal error: %s). "
                             "See defenderipstats.log." % type(error).__name__)
            sys.exit(1)
        logger.debug("sid=%s prepared: field=%s account=%s lookback=%s cache=%s", sid, options.field,
                     account.name, options.lookback_hours, options.cache)

    def _raw_options(self):
        return {name: getattr(self, name) for name in
                ("field", "lookbackhours", "account", "prefix", "cache", "maxwait", "backend")}

    def stream(self, records):
        records = list(records)  # one protocol chunk
        enrichment = self.enrichment
        try:
            enrichment.enrich(records, last=self._finished)
        except Exception as error:  # last resort: the events still go out
            enrichment.logger.exception("sid=%s chunk failed", enrichment.sid)
            enrichment.warn("Some events could not be enriched (internal error: %s)." % type(error).__name__)
            names = enrichment.enricher.names
            for record in records:  # every record must carry every output field
                for name in names:
                    record.setdefault(name, "")
        for level, text in enrichment.take_messages():
            if level == "ERROR":
                self.write_error(text)
            else:
                self.write_warning(text)
        if self._finished:
            summary = enrichment.summary()
            enrichment.logger.info(" ".join("%s=%s" % item for item in summary.items()))
            for name, value in enrichment.metrics(summary):
                self.write_metric(name, SearchMetric(*value))
        return records
