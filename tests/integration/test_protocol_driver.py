"""Tests of tests/support/protocol.py (the splunkd side of protocol v2) against the trivial splunklib command."""

import gzip
import io
import json
import sys
import textwrap
import time
from pathlib import Path

import pytest

if str(Path(__file__).resolve().parents[1] / "support") not in sys.path:  # conftest.py does this too
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))

import protocol  # noqa: E402

TESTS = Path(__file__).resolve().parents[1]
TRIVIAL = TESTS / "support" / "fixtures" / "trivial_command.py"
RECORDINGS = Path(__file__).resolve().parents[3] / "shared" / "recordings"  # shared/ lies beside the repo
RECORDING_FIELDS = {
    "splunk-6.3-countmatches.input.gz": "text",
    "splunk-8.0.3-multibyte.input.gz": "teststring",
}

SPECIAL_VALUES = [
    "",
    "plain",
    "a,b,c",
    'say "hi"',
    "line one\nline two",
    "crlf\r\nline",
    "tab\there",
    "$dollar$",
    "$$",
    "€uro ünïcödé",
    "日本語テキスト",
    "مرحبا بالعالم",
    "emoji 👀😍",
    "ทt",
    " leading and trailing ",
    '"', ",", "\n",
]
SPECIAL_MULTIVALUES = [
    ["a", "b"],
    ["$a$", "b$", "$"],
    ["", ""],
    ["x", ""],
    ["$;$", ";", "$$;"],
    ["line\nbreak", 'quo"te', "com,ma"],
    ["日本", "👀", "é"],
    ["single"],  # one value: sent as a plain value
]


def special_record(i):
    return {
        "_time": f"{1700000000 + i}.{i % 1000:03d}",
        "id": str(i),
        "value": SPECIAL_VALUES[i % len(SPECIAL_VALUES)],
        "mv": SPECIAL_MULTIVALUES[i % len(SPECIAL_MULTIVALUES)],
        "empty": "",
    }


def normalised(value):
    """What a value looks like after a trip through splunkd CSV."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        if len(value) == 0:
            return ""
        if len(value) == 1:
            return str(value[0])
        return [str(v) for v in value]
    return str(value)


def expected_output(chunk):
    fields = list(dict.fromkeys(k for record in chunk for k in record))
    out = []
    for record in chunk:
        row = {f: normalised(record.get(f)) for f in fields}
        row["trivial"] = "1"
        out.append(row)
    return out


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "dispatch").mkdir()
    return tmp_path


def run_trivial(workdir, args, chunks, **kwargs):
    return protocol.run_command(
        TRIVIAL, args, chunks, python=sys.executable, cwd=workdir,
        dispatch_dir=str(workdir / "dispatch"), timeout=60, **kwargs,
    )


# --------------------------------------------------------------------------------------------------
# Encoding


def test_encode_chunk_counts_bytes_not_characters():
    chunk = protocol.encode_chunk({"action": "execute", "k": "é"}, "ทt,👀\n")
    header, _, rest = chunk.partition(b"\n")
    meta_len, body_len = map(int, header.decode().split(",")[1:])
    assert meta_len + body_len == len(rest)
    assert json.loads(rest[:meta_len]) == {"action": "execute", "k": "é"}
    assert rest[meta_len:].decode() == "ทt,👀\n"
    assert protocol.encode_chunk({"action": "execute", "finished": True}, "") == (
        b'chunked 1.0,36,0\n{"action":"execute","finished":true}'
    )


@pytest.mark.parametrize("name", sorted(RECORDING_FIELDS))
def test_encode_records_reproduces_splunkd_bytes(name):
    """Decoding a recorded splunkd body and encoding it again gives the very same bytes."""
    chunks = protocol.decode_chunks(protocol.load_recording(RECORDINGS / name))
    assert chunks[0][0]["action"] == "getinfo"
    for metadata, body, _ in chunks[1:]:
        assert metadata["action"] == "execute"
        assert protocol.encode_records(protocol.decode_records(body)).encode("utf-8") == body


def test_encode_records_layout():
    body = protocol.encode_records([{"a": "1", "_b": "x y"}, {"a": ["p$", "q"], "c": None}])
    assert body == (
        'a,"_b",c,"__mv_a","__mv__b","__mv_c"\n'
        '1,"x y",,,,\n'
        '"p$\nq",,,"$p$$$;$q$",,\n'
    )
    assert protocol.encode_records([]) == ""
    assert protocol.encode_records([], ["a", "_b"]) == 'a,"_b","__mv_a","__mv__b"\n'
    assert protocol.decode_records('a,"_b","__mv_a","__mv__b"\n') == []
    assert protocol.decode_records("") == []


@pytest.mark.parametrize("values", SPECIAL_MULTIVALUES[:-1] + [["$"] * 3, ["a$$b", "$;"], ["", "", ""]])
def test_multivalue_cells_agree_with_splunklib(values):
    from splunklib.searchcommands.search_command import SearchCommand

    cell = protocol.mv_encode(values)
    assert protocol.mv_decode(cell) == values
    assert SearchCommand._decode_list(cell) == values


def test_decode_reads_splunklib_record_writer_output():
    """splunklib's writer (interleaved __mv_ columns, CRLF) decodes to what was written."""
    from splunklib.searchcommands.internals import RecordWriterV2

    records = [special_record(i) for i in range(40)]
    out = io.BytesIO()
    writer = RecordWriterV2(out)
    writer.write_records(dict(r) for r in records)
    writer.write_chunk(finished=True)
    chunks = protocol.decode_chunks(out.getvalue())
    assert len(chunks) == 1 and chunks[0][0] == {"finished": True}
    decoded = protocol.decode_records(chunks[0][1])
    assert decoded == [{k: normalised(v) for k, v in r.items()} for r in records]


def test_mv_decode_rejects_malformed_cells():
    for cell in ("a", "$a", "$a$b$", "$a$;", "$a$x"):
        with pytest.raises(ValueError):
            protocol.mv_decode(cell)


def test_getinfo_metadata_looks_like_splunkd_9():
    meta = protocol.getinfo_metadata(
        ["field=src ip", "prefix=x_", "other"], splunkd_uri="http://127.0.0.1:1", session_key="k",
        dispatch_dir="/d", sid="1.2", search='search index=main | defenderipstats field="src ip"',
        command="defenderipstats",
    )
    assert list(meta) == ["action", "preview", "streaming_command_will_restart", "searchinfo"]
    info = meta["searchinfo"]
    assert list(info) == [
        "args", "raw_args", "dispatch_dir", "sid", "app", "owner", "username", "session_key", "splunkd_uri",
        "splunk_version", "search", "command", "maxresultrows", "earliest_time", "latest_time",
    ]
    assert info["args"] == ["field=src ip", "prefix=x_", "other"]
    assert info["raw_args"] == ['field="src ip"', "prefix=x_", "other"]
    assert info["search"] == "search%20index%3Dmain%20%7C%20defenderipstats%20field%3D%22src%20ip%22"
    assert (info["splunk_version"], info["maxresultrows"], info["earliest_time"]) == ("9.4.1", 50000, "0")


# --------------------------------------------------------------------------------------------------
# Conversations with the trivial command


def test_round_trip_of_varied_chunks(workdir):
    sizes = [2, 1000, 50000, 7, 0]
    chunks, start = [], 0
    for size in sizes:
        chunks.append([special_record(i) for i in range(start, start + size)])
        start += size
    # some chunks bring fields of their own
    chunks[1][5]["late"] = "only here"
    chunks[3][0]["late"] = ["m1", "m$2"]

    run = run_trivial(workdir, ["champ_é"], chunks)

    assert run.returncode == 0, run.stderr
    assert run.getinfo_reply["type"] == "streaming"
    assert run.messages == [] and run.extra_replies == []
    assert "Traceback" not in run.stderr
    assert [m["finished"] for m, _ in run.requests] == [False, False, False, False, True]
    assert [m["finished"] for m, _ in run.replies] == [False, False, False, False, True]
    for chunk, (_, records) in zip(chunks, run.replies):
        assert records == expected_output(chunk)
    assert len(run.records) == sum(sizes)
    assert run.elapsed > 0


def test_zero_row_final_chunk_is_header_only(workdir):
    chunks = [[special_record(i) for i in range(3)], []]
    run = run_trivial(workdir, [], chunks)
    assert run.returncode == 0, run.stderr
    assert len(run.replies) == 2
    assert run.replies[1] == ({"finished": True}, [])
    assert run.records == expected_output(chunks[0])


def test_empty_final_body(workdir):
    run = run_trivial(workdir, [], [[{"a": "1"}], ""])
    assert run.returncode == 0, run.stderr
    assert [m for m, _ in run.replies] == [{"finished": False}, {"finished": True}]
    assert run.records == [{"a": "1", "trivial": "1"}]


def test_no_chunks_sends_one_empty_finished_execute(workdir):
    run = run_trivial(workdir, [], [])
    assert run.returncode == 0, run.stderr
    assert run.requests == [({"action": "execute", "finished": True}, [])]
    assert run.replies == [({"finished": True}, [])]
    assert run.records == []


def test_unknown_option_is_reported_in_getinfo_reply(workdir):
    run = run_trivial(workdir, ["bogus=1"], [[{"a": "1"}]])
    assert run.returncode == 1
    assert run.errors == ["Unrecognized option: bogus=1"]
    assert run.getinfo_reply["inspector"]["messages"] == [["ERROR", "Unrecognized option: bogus=1"]]
    assert run.requests == [] and run.replies == [] and run.records == []
    for text in [t for _, t in run.messages] + [run.stderr]:
        assert "Traceback" not in text


@pytest.mark.parametrize("name", sorted(RECORDING_FIELDS))
def test_replay_recording(workdir, name):
    field = RECORDING_FIELDS[name]
    original = protocol.load_recording(RECORDINGS / name)
    rewritten = protocol.rewrite_recording_args(original, [field], dispatch_dir=str(workdir / "dispatch"))

    getinfo = protocol.decode_chunks(rewritten)[0][0]
    recorded = protocol.decode_chunks(original)[0][0]
    assert getinfo["searchinfo"]["args"] == [field]
    assert getinfo["searchinfo"]["dispatch_dir"] == str(workdir / "dispatch")
    assert getinfo["searchinfo"]["splunkd_uri"] == recorded["searchinfo"]["splunkd_uri"]

    run = protocol.replay(TRIVIAL, rewritten, python=sys.executable, env=None, cwd=workdir, timeout=60)

    assert run.returncode == 0, run.stderr
    assert run.errors == []
    rows_in = [r for _, records in run.requests for r in records]
    assert len(rows_in) > 0 and any(r[field] for r in rows_in)
    assert len(run.records) == len(rows_in)
    for row_in, row_out in zip(rows_in, run.records):
        assert {k: row_out[k] for k in row_in} == row_in
        assert row_out["trivial"] == "1"
    assert len(run.replies) == len(run.requests) == len(protocol.decode_chunks(original)) - 1
    assert run.replies[-1][0]["finished"] is True


def test_rewrite_keeps_the_recording_as_is(tmp_path):
    for name in RECORDING_FIELDS:
        original = protocol.load_recording(RECORDINGS / name)
        assert protocol.rewrite_recording_args(original, None) == original
        assert protocol.rewrite_recording_args(gzip.compress(original), None) == original
        new = protocol.rewrite_recording_args(original, ["a=b c"], session_key="s", splunkd_uri="http://h:1")
        old_chunks, new_chunks = protocol.decode_chunks(original), protocol.decode_chunks(new)
        assert [c[2] for c in new_chunks[1:]] == [c[2] for c in old_chunks[1:]]
        old_meta, new_meta = old_chunks[0][0], new_chunks[0][0]
        assert list(new_meta) == list(old_meta) and list(new_meta["searchinfo"]) == list(old_meta["searchinfo"])
        info = new_meta["searchinfo"]
        assert (info["args"], info["raw_args"]) == (["a=b c"], ['a="b c"'])
        assert (info["session_key"], info["splunkd_uri"]) == ("s", "http://h:1")
        for key in set(info) - {"args", "raw_args", "session_key", "splunkd_uri"}:
            assert info[key] == old_meta["searchinfo"][key]


# --------------------------------------------------------------------------------------------------
# Misbehaving commands


def write_script(tmp_path, body):
    script = tmp_path / "bad_command.py"
    script.write_text(textwrap.dedent(body))
    return script


def test_process_dying_mid_conversation_raises_with_stderr(tmp_path):
    script = write_script(tmp_path, """
        import sys
        header = sys.stdin.buffer.readline()
        sys.stdin.buffer.read(int(header.split(b",")[1]))
        sys.stdout.buffer.write(b'chunked 1.0,20,0\\n{"type":"streaming"}')
        sys.stdout.flush()
        sys.stdin.buffer.readline()
        sys.stderr.write("boom: the command fell over\\n")
        sys.exit(3)
    """)
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.run_command(script, [], [[{"a": "1"}]], cwd=tmp_path, timeout=30)
    assert "boom: the command fell over" in str(caught.value)
    assert "execute #1" in str(caught.value)
    assert caught.value.returncode == 3


def test_timeout_kills_and_raises(tmp_path):
    script = write_script(tmp_path, """
        import sys, time
        sys.stderr.write("sleeping\\n"); sys.stderr.flush()
        time.sleep(60)
    """)
    started = time.monotonic()
    with pytest.raises(protocol.ProtocolTimeout) as caught:
        protocol.run_command(script, [], [], cwd=tmp_path, timeout=1.5)
    assert time.monotonic() - started < 15
    assert "timeout" in str(caught.value) and "sleeping" in str(caught.value)


def test_stray_stdout_output_is_a_protocol_error(tmp_path):
    script = write_script(tmp_path, """
        import sys
        print("hello from print()")
        sys.stdout.flush()
        sys.stdin.buffer.read()
    """)
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.run_command(script, [], [], cwd=tmp_path, timeout=30)
    assert "hello from print()" in str(caught.value)
