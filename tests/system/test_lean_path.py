"""The lean path and splunklib's path give the same replies, over the real protocol.

Each search runs twice, once as shipped (the lean path: lib/defender_ipstats/chunked.py) and once with
``DEFENDERIPSTATS_LEAN=0`` (splunklib's record reader and writer, ``stream()``). Reply by reply the
records must be the same (decoded by tests/support/protocol.py), and so must ``finished``, the messages
and the metrics (bar the seconds they took). tests/unit/test_chunked.py compares the two on
thousands of bodies in process; this is the command end to end, recordings included.
"""

import os
from pathlib import Path

import pytest

from harness import COMMAND, events
from protocol import load_recording, mv_encode, replay, rewrite_recording_args
from standins import dataset

RECORDINGS = Path(__file__).resolve().parents[3] / "shared" / "recordings"  # shared/ lies beside the repo

SPLUNKLIB = {"DEFENDERIPSTATS_LEAN": "0"}


def comparable(run):
    """What must not depend on the path: per reply, its records, finished, messages and metrics."""
    replies = []
    for metadata, records in run.replies:
        inspector = dict(metadata.get("inspector") or {})
        messages = [tuple(m) for m in inspector.pop("messages", [])]
        metrics = {name: ([0] + value[1:] if name.endswith((".events", ".waited")) else value)
                   for name, value in inspector.items()}
        replies.append({"finished": metadata.get("finished"), "records": records, "messages": messages,
                        "metrics": metrics, "other": sorted(set(metadata) - {"finished", "inspector"})})
    return {"returncode": run.returncode, "getinfo": run.getinfo_reply, "replies": replies,
            "extra": run.extra_replies}


def both(app, args, chunks, **kwargs):
    """The same search three times: once to warm the cache, then through each path (both served alike)."""
    app.search(args, chunks, **kwargs)
    lean = app.search(args, chunks, **kwargs)
    splunklib = app.search(args, chunks, env=SPLUNKLIB, **kwargs)
    assert lean.returncode == 0, lean.stderr
    assert comparable(lean) == comparable(splunklib)
    return lean


def varied_chunks():
    found = dataset.ips(4, status="found", seed=41)
    unseen = dataset.ips(2, status="not_seen", seed=41)
    v6 = dataset.ips(1, status="found", seed=41, family=6)[0]
    first = events(found + unseen + [v6.upper(), "::ffff:" + found[0], "not-an-ip", "", None])
    for index, record in enumerate(first):
        record["msg"] = ['say "hi", then\nleave', "€uro 日本語", "$dollar$;", "tab\there", ""][index % 5]
    first[1]["src_ip"] = [found[1], "junk", unseen[0]]  # multivalue, looked up value by value
    first[2]["tags"] = ["a$b", "c"]  # another field's multivalue
    second = events(found[:2] + [unseen[1]])
    for record in second:
        record["extra"] = "a field first seen in a later chunk"
    # splunkd-style CSV written by hand: one-value __mv_ cells, a multivalue with an empty value
    # (malformed __mv_ cells, which the driver cannot send, are in tests/unit/test_chunked.py)
    third = ('"_time","src_ip",note,"__mv__time","__mv_src_ip","__mv_note"\n'
             '"1764201700","%s",x,,"$%s$",\n'
             '"1764201701","%s","y",,,"$y$"\n'
             '"1764201702",,,,"$%s$;$$",\n' % (found[2], found[2], found[3], unseen[0]))
    big = events([found[i % 4] for i in range(25)])  # more rows than maxresultrows (10)
    return [first, second, third, big, []]  # [] is the header alone, as splunkd's last chunk


def test_varied_chunks_give_the_same_replies(app):
    chunks = varied_chunks()
    run = both(app, ["field=src_ip"], chunks, maxresultrows=10)
    assert [len(records) for _, records in run.replies] == [11, 3, 3, 25, 0]
    assert [metadata.get("finished") for metadata, _ in run.replies] == [False] * 4 + [True]
    first = run.replies[0][1]
    assert first[1]["src_ip"] == first[1]["defender_ip"][:1] + ["junk"] + first[1]["defender_ip"][2:]
    assert first[1]["defender_status"][1] == "invalid"
    assert first[2]["tags"] == ["a$b", "c"]
    third = run.replies[2][1]
    assert third[0]["src_ip"] == third[0]["defender_ip"]  # a one-value __mv_ cell is a plain value
    assert third[2]["defender_status"] == ["not_seen", ""]
    assert run.replies[-1][0]["inspector"]["metric.defenderipstats.events"][2:] == [42, 42]


@pytest.mark.parametrize("args", [["field=dest", "prefix=dst_", "cache=off"], ["field=missing"]])
def test_options_and_a_missing_field(app, args):
    values = dataset.ips(3, seed=42) + ["bogus"]
    both(app, args, [[{"dest": [values[0], values[3]], "n": "1"}, {"dest": values[1], "n": "2"}],
                     [{"dest": values[2], "n": "3"}]])


def test_events_that_already_carry_the_output_fields_go_through_splunklib(app):
    """A second defenderipstats with the same prefix: the lean path leaves those chunks to splunklib."""
    app.settings(log_level="DEBUG")
    ips = dataset.ips(3, seed=43)
    once = app.search(["field=src_ip"], [events(ips)]).records
    run = both(app, ["field=src_ip"], [once, events(ips)])
    assert run.records[0]["defender_ip"] == ips[0]
    assert "chunk left to splunklib: the events already have output fields" in app.log_text()


def test_warnings_and_metrics_arrive_in_the_same_replies(app):
    app.splunkd.inject_fault(r"storage/collections/data", status=500)
    ips = dataset.ips(4, seed=44)
    run = both(app, ["field=src_ip"], [events(ips[:2]), events(ips[2:]), []])
    assert [len(metadata.get("inspector", {}).get("messages", [])) for metadata, _ in run.replies] == [1, 0, 0]
    assert "metric.defenderipstats.api_calls" in run.replies[-1][0]["inspector"]


@pytest.mark.parametrize("name, field", [
    ("splunk-6.3-countmatches.input.gz", "text"),
    ("splunk-8.0.3-multibyte.input.gz", "teststring"),
])
def test_recordings_give_the_same_replies(app, name, field):
    session_key = app.splunkd.new_session_key("admin")
    rewritten = rewrite_recording_args(load_recording(RECORDINGS / name), ["field=" + field],
                                       splunkd_uri=app.splunkd.base_url, session_key=session_key,
                                       dispatch_dir=app.dispatch)
    runs = []
    for extra in ({}, SPLUNKLIB):
        env = dict(os.environ, SPLUNK_HOME=app.splunk_home, **extra)
        runs.append(replay(COMMAND, rewritten, python=app.python, env=env, cwd=app.dispatch, timeout=300))
    lean, splunklib = runs
    assert lean.returncode == 0, lean.stderr
    assert comparable(lean) == comparable(splunklib)
    assert len(lean.records) > 0


def test_mv_cells_of_the_driver_and_the_command_agree():
    assert mv_encode(["a$", "b"]) == "$a$$$;$b$"
