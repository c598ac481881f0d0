"""The splunklib adapter: options in, chunks through ``Enrichment``, messages out.

splunklib parses the options, answers getinfo (``prepare`` runs there) and reads every request.
Execute chunks take the lean path (``chunked``: the CSV text, not one dict per event, and the reply
framed as splunklib frames it); a chunk that path leaves alone, or every chunk when
``DEFENDERIPSTATS_LEAN=0`` is set in the environment, goes through splunklib's record reader,
``stream()`` and splunklib's record writer. Either way search-level problems are one readable error,
and a chunk's events never go missing.
"""

import os
import sys

from splunklib.searchcommands import Configuration, Option, SearchMetric, StreamingCommand

from ..core.errors import DefenderIpStatsError
from ..core.settings import Options, Settings, check_account_name
from ..splunk import rest
from ..splunk.logs import get_logger
from .chunked import LeanBody, Unsupported, write_reply
from .service_client import REQUEST_TIMEOUT, ServiceClient


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

    _enrichment = None
    _started = None

    def prepare(self):
        """At getinfo: one request to the app's service resolves the account (and checks this user may
        use it) and brings the settings; the options are checked against them. Or one clear error.

        The rest of the search's machinery (the cache reader, the job watcher, the lookups through the
        service) is built on the first execute chunk (``enrichment``): the getinfo reply needs none of it.
        """
        logger = get_logger()
        info = self.metadata.searchinfo
        sid = getattr(info, "sid", "")
        try:
            raw = self._raw_options()
            if raw["account"] is not None:
                check_account_name(str(raw["account"]).strip(), "account")
            client = ServiceClient(rest.connect(info.splunkd_uri, info.session_key,
                                                   timeout=REQUEST_TIMEOUT))
            described = client.describe(str(raw["account"] or "").strip())
            settings = Settings.from_conf(described.get("settings") or {})
            logger = get_logger(settings.log_level)
            options = Options.resolve(dict(raw, account=str(described.get("account") or "")), settings)
        except DefenderIpStatsError as error:
            logger.error("sid=%s cannot start: %s", sid, error)
            self.write_error("defenderipstats: %s" % error)
            sys.exit(1)
        except Exception as error:  # never a traceback in the search
            self._cannot_start(logger, sid, error)
        self._started = (options, settings, client, logger, sid)
        logger.debug("sid=%s prepared: field=%s account=%s lookback=%s cache=%s", sid, options.field,
                     options.account, options.lookback_hours, options.cache)

    @property
    def enrichment(self):
        """The search's ``Enrichment``, built when the first execute chunk needs it."""
        if self._enrichment is None:
            options, settings, client, logger, sid = self._started
            info = self.metadata.searchinfo
            try:
                from ..splunk.jobwatch import POLL_TIMEOUT, JobWatcher
                from .enrichment import Enrichment

                # Separate connections with short timeouts: a hanging KV store costs one warning, not
                # the search; a slow job poll must not hold up the lookups for long.
                kv_service = rest.connect(info.splunkd_uri, info.session_key, timeout=rest.KVSTORE_TIMEOUT)
                watcher = JobWatcher(rest.connect(info.splunkd_uri, info.session_key, timeout=POLL_TIMEOUT),
                                     sid, logger=logger)
                self._enrichment = Enrichment(options, settings, client, kv_service, logger, sid=sid,
                                              should_stop=watcher.should_stop)
            except Exception as error:  # never a traceback in the search
                self._cannot_start(logger, sid, error)
        return self._enrichment

    def _cannot_start(self, logger, sid, error):
        logger.exception("sid=%s cannot start", sid)
        self.write_error("defenderipstats could not start (internal error: %s). "
                         "See defenderipstats.log." % type(error).__name__)
        sys.exit(1)

    def _raw_options(self):
        return {name: getattr(self, name) for name in
                ("field", "lookbackhours", "account", "prefix", "cache", "maxwait", "backend")}

    # -- the splunklib path ----------------------------------------------------------------
    def stream(self, records):
        records = list(records)  # one protocol chunk
        enrichment = self.enrichment
        try:
            enrichment.enrich(records, last=self._finished)
        except Exception as error:  # last resort: the events still go out
            self._chunk_failed(error)
            names = enrichment.enricher.names
            for record in records:  # every record must carry every output field
                for name in names:
                    record.setdefault(name, "")
        messages, metrics = self._chunk_report()
        for level, text in messages:
            if level == "ERROR":
                self.write_error(text)
            else:
                self.write_warning(text)
        for name, value in metrics:
            self.write_metric(name, SearchMetric(*value))
        return records

    # -- the lean path ---------------------------------------------------------------------
    def _execute(self, ifile, process):
        if self._protocol_version != 2 or os.environ.get("DEFENDERIPSTATS_LEAN", "1") == "0":
            return super()._execute(ifile, process)
        self._execute_lean(ifile)

    def _execute_lean(self, ifile):
        """splunklib's execute loop (``_execute_v2``), with the lean path for each chunk it can take.

        Requests are read by splunklib (``_read_chunk``). A reply the lean path writes carries this
        chunk's messages and metrics itself (``_chunk_report``); a chunk it leaves alone goes through
        splunklib's reader, ``stream()`` and writer, as without it. An exception ends the search as
        in splunklib: its ``process()`` reports it and writes the last reply, since ``is_flushed`` is
        off until this chunk's reply is out.
        """
        istream = self._as_binary_stream(ifile)
        writer = self._record_writer
        lean = None
        while True:
            request = self._read_chunk(istream)
            if not request:
                return
            metadata, body = request
            action = getattr(metadata, "action", None)
            if action != "execute":
                raise RuntimeError("Expected execute action, not %s" % action)
            self._finished = getattr(metadata, "finished", False)
            writer.is_flushed = False
            self._metadata.update(metadata)
            if lean is None:  # (an error building the enrichment goes into this chunk's reply)
                enricher = self.enrichment.enricher
                lean = LeanBody(enricher.field, enricher.names, self._decode_list)
            self._lean_chunk(lean, request)
            del request, metadata, body  # before the next request is read: one chunk in memory at a time

    def _lean_chunk(self, lean, request):
        writer = self._record_writer
        try:
            reply = lean.process(request[1], self._enrich_values)
        except Unsupported as why:  # raised before any lookup: splunklib's path takes this chunk
            # (a shape the lean path did not foresee is worth a warning in the log; the others are not)
            log = self.enrichment.logger.warning if why.__cause__ is not None else self.enrichment.logger.debug
            log("sid=%s chunk left to splunklib: %s", self.enrichment.sid, why)
            self._execute_chunk_v2(self.stream, request)
            writer.write_chunk(finished=self._finished)
            return
        messages, metrics = self._chunk_report()
        inspector = {}
        if messages:
            inspector["messages"] = [[level, text] for level, text in messages]
        for name, value in metrics:
            inspector["metric." + name] = list(value)
        write_reply(writer.ofile, reply, self._finished, inspector)
        writer.is_flushed = True

    def _enrich_values(self, values):
        try:
            return self.enrichment.enrich_values(values, last=self._finished)
        except Exception as error:  # last resort: the events go out with empty output fields
            self._chunk_failed(error)
            return None

    # -- both ------------------------------------------------------------------------------
    def _chunk_failed(self, error):
        enrichment = self.enrichment
        enrichment.logger.exception("sid=%s chunk failed", enrichment.sid)
        enrichment.warn("Some events could not be enriched (internal error: %s)." % type(error).__name__)

    def _chunk_report(self):
        """This chunk's messages, and on the last chunk the search's figures (logged, and as metrics)."""
        enrichment = self.enrichment
        messages = enrichment.take_messages()
        metrics = []
        if self._finished:
            summary = enrichment.summary()
            enrichment.logger.info(" ".join("%s=%s" % item for item in summary.items()))
            metrics = enrichment.metrics(summary)
        return messages, metrics
