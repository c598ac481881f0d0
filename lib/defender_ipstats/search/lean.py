"""The lean execute loop: the one module that touches splunklib's private members.

splunklib reads every request; execute chunks take the lean path (``chunked``: the CSV text, not one
dict per event, and the reply framed as splunklib frames it). A chunk that path leaves alone, or every
chunk when ``DEFENDERIPSTATS_LEAN=0`` is set in the environment, goes through splunklib's record
reader, the command's ``stream()`` and splunklib's record writer, as without this module.

``SPLUNKLIB_PRIVATES`` lists what of splunklib this relies on beyond its public API;
tests/unit/test_splunklib_privates.py checks each still exists in the vendored splunk-sdk.
"""

import os

from .chunked import LeanBody, Unsupported, write_reply

# splunklib.searchcommands.SearchCommand members used here (methods, then attributes set in __init__),
# and the RecordWriterV2 members its public API does not document.
SPLUNKLIB_METHODS = ("_execute", "_as_binary_stream", "_read_chunk", "_execute_chunk_v2", "_decode_list")
SPLUNKLIB_ATTRIBUTES = ("_protocol_version", "_record_writer", "_finished", "_metadata")
RECORD_WRITER_MEMBERS = ("is_flushed", "ofile", "write_chunk")
SPLUNKLIB_PRIVATES = SPLUNKLIB_METHODS + SPLUNKLIB_ATTRIBUTES


class LeanExecution:
    """Mixed into the command (before splunklib's StreamingCommand): splunklib's protocol v2 execute loop
    (``_execute_v2``), with the lean path for each chunk it can take.

    The command provides ``enrichment`` (built on the first execute chunk) and ``stream()``.
    """

    @property
    def finished(self) -> bool:
        """The current chunk is the search's last."""
        return bool(self._finished)

    def _execute(self, ifile, process):
        if self._protocol_version != 2 or os.environ.get("DEFENDERIPSTATS_LEAN", "1") == "0":
            return super()._execute(ifile, process)
        self._execute_lean(ifile)

    def _execute_lean(self, ifile):
        """Requests are read by splunklib (``_read_chunk``). A reply the lean path writes carries this chunk's
        messages and metrics itself; a chunk it leaves alone goes through splunklib's reader, ``stream()``
        and writer. An exception ends the search as in splunklib: its ``process()`` reports it and writes
        the last reply, since ``is_flushed`` is off until this chunk's reply is out.
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
        enrichment = self.enrichment
        try:
            reply = lean.process(request[1], self._enrich_values)
        except Unsupported as why:  # raised before any lookup: splunklib's path takes this chunk
            # (a shape the lean path did not foresee is worth a warning in the log; the others are not)
            log = enrichment.logger.warning if why.__cause__ is not None else enrichment.logger.debug
            log("sid=%s chunk left to splunklib: %s", enrichment.sid, why)
            self._execute_chunk_v2(self.stream, request)
            writer.write_chunk(finished=self._finished)
            return
        messages, metrics = enrichment.chunk_report(self.finished)
        inspector = {}
        if messages:
            inspector["messages"] = [[level, text] for level, text in messages]
        for name, value in metrics:
            inspector["metric." + name] = list(value)
        write_reply(writer.ofile, reply, self._finished, inspector)
        writer.is_flushed = True

    def _enrich_values(self, values):
        try:
            return self.enrichment.enrich_values(values, last=self.finished)
        except Exception as error:  # last resort: the events go out with empty output fields
            self.enrichment.chunk_failed(error)
            return None
