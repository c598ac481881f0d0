"""The lean CSV path (chunked.py) against splunklib's own record reader and writer, in process.

For every body, the reference is what splunklib's path makes of it: ``_read_csv_records`` -> the
dict enricher -> ``RecordWriterV2``. The lean path's reply must decode (tests/support/protocol.py
``decode_records``) to exactly the same records: same order, same fields, same values, multivalues
included. Bodies are varied by hand and drawn by Hypothesis (any cell text, multivalue cells
well-formed or not, quotes, newlines, CR LF line ends, non-ASCII, fields missing).
"""

import csv
import io

import pytest
from splunklib.searchcommands import SearchMetric
from splunklib.searchcommands.internals import RecordWriterV2
from splunklib.searchcommands.search_command import SearchCommand

from defender_ipstats.core.lookup import ChunkEnricher
from defender_ipstats.core.model import ERROR, FOUND, NOT_SEEN, IpStats
from defender_ipstats.search.chunked import Body, LeanBody, Unsupported, mv_encode, write_reply
from protocol import decode_chunks, decode_records

NAMES = tuple("defender_" + s for s in ("ip", "prevalence", "first_seen", "last_seen", "status", "source", "basis",
                                        "error"))
decode_mv = SearchCommand._decode_list


def answer(ip):
    """A deterministic answer per IP, some with text that needs quoting."""
    kind = sum(map(ord, ip)) % 3
    if kind == 0:
        return IpStats(ip=ip, status=FOUND, prevalence=len(ip), first_seen="2026-11-01T00:00:00Z",
                       last_seen="2026-11-20T10:00:00Z", source="cache")
    if kind == 1:
        return IpStats(ip=ip, status=NOT_SEEN, prevalence=0, source="api")
    return IpStats(ip=ip, status=ERROR, source="api", error='Defender API error 503, "retry", later')


def resolve(ips):
    return {ip: answer(ip) for ip in ips}


class _Reader(SearchCommand):
    """Only for splunklib's record reader (an instance method of SearchCommand)."""


def splunklib_reply(body, field, prefix="defender_"):
    records = list(_Reader()._read_csv_records(io.StringIO(body)))
    ChunkEnricher(field, prefix, resolve).enrich(records)
    out = io.BytesIO()
    writer = RecordWriterV2(out)
    writer.write_records(records)
    writer.write_chunk(finished=False)
    [(_, reply_body, _)] = decode_chunks(out.getvalue())
    return reply_body


def lean_reply(body, field, prefix="defender_"):
    enricher = ChunkEnricher(field, prefix, resolve)
    seen = []

    def enrich(values):
        seen.append(len(values))
        return enricher.resolve_values(values)[1]

    reply = LeanBody(field, enricher.names, decode_mv).process(body, enrich)
    assert len(seen) == 1  # enrichment is called exactly once per chunk
    return joined(reply)


def joined(reply):
    data = b"".join(reply.pieces)
    assert len(data) == reply.size  # announced before the body is made
    return data


def assert_same(body, field, prefix="defender_"):
    expected = splunklib_reply(body, field, prefix)
    got = lean_reply(body, field, prefix)
    assert decode_records(got) == decode_records(expected)
    if expected:  # the events' own columns, then each output field with its __mv_ companion
        header = next(csv.reader(io.StringIO(got.decode("utf-8"))))
        assert header[-2 * len(NAMES):] == [c for s in NAMES for c in (s.replace("defender_", prefix, 1),
                                                           "__mv_" + s.replace("defender_", prefix, 1))]
    else:
        assert got == b""  # no events, no body: as splunklib
    return decode_records(got)


def csv_body(header, rows, line_end="\n", quoting=csv.QUOTE_MINIMAL):
    text = io.StringIO()
    writer = csv.writer(text, lineterminator=line_end, quoting=quoting)
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue()


# -- by hand ------------------------------------------------------------------------------
def test_plain_chunk_as_splunkd_writes_it():
    body = ('"_time",host,"src_ip","__mv__time","__mv_host","__mv_src_ip"\n'
            '"1764201600.1","fw-1","10.0.0.1",,,\n'
            '"1764201600.2",fw2,"2001:DB8::1",,,\n'
            '"1764201600.3",fw3,"not an ip",,,\n'
            '"1764201600.4",fw4,,,,\n')
    records = assert_same(body, "src_ip")
    assert [r["defender_ip"] for r in records] == ["10.0.0.1", "2001:db8::1", "", ""]
    assert [r["defender_status"] for r in records] == [answer("10.0.0.1").status, answer("2001:db8::1").status,
                                                         "invalid", ""]
    assert records[0]["host"] == "fw-1"


def test_multivalue_cells_are_read_and_written_as_splunklib_does():
    rows = [
        ["10.0.0.1\n10.0.0.2", "a\nb", mv_encode(["10.0.0.1", "10.0.0.2"]), mv_encode(["a", "b"])],
        ["10.0.0.3", "one", "$10.0.0.3$", "$one$"],  # one value in the __mv_ cell: a plain value out
        ["x", "y", "", "$$"],  # an empty value
        ["junk", "z", "not-an-mv-cell", "$a$$b$;$c$"],  # malformed: splunklib's reading of it
        ["10.0.0.4", "$;$", "", mv_encode(["$", ";", "$$"])],
        ["", "", mv_encode(["", "10.0.0.5", "bad"]), ""],
    ]
    records = assert_same(csv_body(["ip", "tags", "__mv_ip", "__mv_tags"], rows), "ip")
    assert records[0]["ip"] == ["10.0.0.1", "10.0.0.2"]
    assert records[0]["defender_ip"] == ["10.0.0.1", "10.0.0.2"]
    assert records[1]["ip"] == "10.0.0.3" and records[1]["defender_ip"] == "10.0.0.3"
    assert records[5]["defender_status"] == ["", answer("10.0.0.5").status, "invalid"]


def test_quotes_newlines_commas_non_ascii_and_crlf():
    rows = [["10.0.0.%d" % i, 'say "hi", then\nleave\r\nnow', "日本語 €", "", "", ""] for i in range(5)]
    header = ["src", "msg", "text", "__mv_src", "__mv_msg", "__mv_text"]
    for line_end in ("\n", "\r\n"):
        for quoting in (csv.QUOTE_MINIMAL, csv.QUOTE_ALL):
            records = assert_same(csv_body(header, rows, line_end, quoting), "src")
            assert records[0]["msg"] == 'say "hi", then\nleave\r\nnow'


@pytest.mark.parametrize("body", [
    "",
    "\n",
    '"_time","src_ip","__mv__time","__mv_src_ip"\n',  # the header alone: splunkd's last chunk
    "src_ip\n10.0.0.1\n10.0.0.2",  # no __mv_ columns, no final line end
    "a,b\n1,2\n",  # the field is missing: empty outputs
])
def test_small_and_empty_bodies(body):
    assert_same(body, "src_ip")


def test_prefix_that_needs_quoting():
    body = csv_body(["ip", "__mv_ip"], [["10.0.0.1", ""], ["10.0.0.2", ""]])
    assert_same(body, "ip", prefix='my "x", ')


@pytest.mark.parametrize("header, rows, why", [
    (["ip", "ip"], [["10.0.0.1", "10.0.0.2"]], "duplicate"),
    (["ip", "__mv_other"], [["10.0.0.1", ""]], "without its field"),
    (["ip", "defender_ip"], [["10.0.0.1", "old"]], "output fields"),
    (["ip", "__mv_defender_status"], [["10.0.0.1", ""]], "without its field"),
    (["ip", "x"], [["10.0.0.1"]], "cells"),
    (["ip", "x"], [["10.0.0.1", "a", "b"]], "cells"),
])
def test_bodies_left_to_splunklib(header, rows, why):
    body = csv_body(header, rows)
    with pytest.raises(Unsupported, match=why):
        LeanBody("ip", NAMES, decode_mv).process(body, lambda values: pytest.fail("enrich was called"))
    splunklib_reply(body, "ip")  # which copes with it its own way


@pytest.mark.parametrize("body", ['ip,x\n"10.0.0.1,a\n', "ip,x\n10.0.0.1,a\rb\n", 'ip,x\n10.0.0.1,a"b\nd,e\n',
                                  "ip,x\n\n10.0.0.1,a\n"])
def test_csv_it_cannot_split_safely_is_left_to_splunklib(body):
    with pytest.raises(Unsupported):
        LeanBody("ip", NAMES, decode_mv).process(body, lambda values: pytest.fail("enrich was called"))


def test_anything_unforeseen_before_the_lookups_leaves_the_chunk_to_splunklib():
    def broken(cell):
        raise IndexError("boom")

    body = csv_body(["ip", "__mv_ip"], [["a\nb", mv_encode(["a", "b"])]])
    with pytest.raises(Unsupported, match="unexpected IndexError: boom") as raised:
        LeanBody("ip", NAMES, broken).process(body, lambda values: pytest.fail("enrich was called"))
    assert isinstance(raised.value.__cause__, IndexError)


def test_a_quote_inside_a_bare_cell_is_read_as_splunklib_reads_it():
    assert_same('ip,x\n10.0.0.1,a"b"c\nd,e\n', "ip")


def test_enrichment_failure_leaves_the_output_fields_empty():
    body = csv_body(["ip", "__mv_ip"], [["10.0.0.1", ""], ["a\nb", mv_encode(["a", "b"])]])
    records = decode_records(joined(LeanBody("ip", NAMES, decode_mv).process(body, lambda values: None)))
    assert len(records) == 2
    assert all(record[name] == "" for record in records for name in NAMES)
    assert records[1]["ip"] == ["a", "b"]


def test_many_rows_across_parse_slices_keep_their_order():
    from defender_ipstats.search import chunked

    rows = []
    for i in range(3 * chunked.PARSE_SLICE + 7):
        if i % 997 == 0:
            rows.append(["a\nb", "10.%d.0.1" % (i % 250), mv_encode(["a", "b"]), ""])
        else:
            rows.append([str(i), "10.%d.%d.1" % (i % 250, i % 7), "", ""])
    assert_same(csv_body(["n", "ip", "__mv_n", "__mv_ip"], rows), "ip")


# -- drawn by Hypothesis --------------------------------------------------------------------
def test_any_body_decodes_as_splunklib_path():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
    ip = st.sampled_from(["10.0.0.1", "10.0.0.2", "::ffff:10.0.0.1", "2001:db8::1", "fe80::1%eth0", "bad", ""])
    cell = st.one_of(ip, text)
    mv_cell = st.one_of(st.just(""), st.just(""), st.lists(cell, min_size=1, max_size=3).map(mv_encode), text)
    names = st.lists(st.one_of(st.sampled_from(["ip", "_time", "host", "a,b", 'q"x', "日本", " sp "]), text),
                     min_size=1, max_size=5, unique=True).filter(
        lambda ns: all(not n.startswith("__mv_") and not n.startswith("defender_") for n in ns))

    @st.composite
    def bodies(draw):
        fields = draw(names)
        with_mv = draw(st.booleans())
        header = list(fields) + (["__mv_" + f for f in fields] if with_mv else [])
        rows = []
        for _ in range(draw(st.integers(0, 6))):
            plain = [draw(cell) for _ in fields]
            rows.append(plain + ([draw(mv_cell) for _ in fields] if with_mv else []))
        line_end = draw(st.sampled_from(["\n", "\r\n"]))
        quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
        return csv_body(header, rows, line_end, quoting), draw(st.sampled_from(fields + ["missing"]))

    @settings(max_examples=400, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(bodies())
    def check(case):
        body, field = case
        try:
            got = lean_reply(body, field)
        except Unsupported:
            return  # such a chunk takes splunklib's path in the command
        assert decode_records(got) == decode_records(splunklib_reply(body, field))

    check()


# -- the reply's framing --------------------------------------------------------------------
@pytest.mark.parametrize("finished", [False, True])
def test_reply_metadata_is_byte_for_byte_splunklibs(finished):
    out = io.BytesIO()
    writer = RecordWriterV2(out)
    writer.write_message("WARN", 'The KV store cache is unavailable ("x", é); this search continues')
    writer.write_message("ERROR", "second")
    writer.write_metric("defenderipstats.events", SearchMetric(1.25, 1, 10, 10))
    writer.write_metric("defenderipstats.api_calls", SearchMetric(0.0, 3, 0, 0))
    writer.write_chunk(finished=finished)
    ours = io.BytesIO()
    write_reply(ours, Body(0, ()), finished, {
        "messages": [["WARN", 'The KV store cache is unavailable ("x", é); this search continues'],
                     ["ERROR", "second"]],
        "metric.defenderipstats.events": [1.25, 1, 10, 10],
        "metric.defenderipstats.api_calls": [0.0, 3, 0, 0],
    })
    assert ours.getvalue() == out.getvalue()


def test_reply_lengths_are_bytes_and_pieces_are_joined():
    out = io.BytesIO()
    write_reply(out, Body(10, ["é,x\n".encode(), "ü,y\n".encode()]), False, {})
    [(metadata, body, _)] = decode_chunks(out.getvalue())
    assert metadata == {"finished": False}
    assert body.decode("utf-8") == "é,x\nü,y\n"
    with pytest.raises(RuntimeError):
        write_reply(io.BytesIO(), Body(11, [b"x"]), False)


@pytest.mark.parametrize("text", ["ascii only", "ünïcödé"])
def test_the_announced_size_is_the_body_size(text):
    rows = [["10.0.0.%d" % i, text, "", ""] for i in range(3 * 5000 + 1)]
    rows[7] = ["a\nb", text, mv_encode(["a", "b"]), ""]
    assert_same(csv_body(["ip", "t", "__mv_ip", "__mv_t"], rows), "ip", prefix="ü_" if text.isascii() else "d_")
