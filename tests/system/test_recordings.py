"""Real splunkd conversations (Splunk 6.3 and 8.0.3) replayed through the real command."""

from pathlib import Path

import pytest

from harness import COMMAND, OUTPUT_SUFFIXES
from protocol import decode_chunks, decode_records, load_recording, replay, rewrite_recording_args

RECORDINGS = Path(__file__).resolve().parents[3] / "shared" / "recordings"  # shared/ lies beside the repo


@pytest.mark.parametrize("name, field", [
    ("splunk-6.3-countmatches.input.gz", "text"),
    ("splunk-8.0.3-multibyte.input.gz", "teststring"),
])
def test_recording_passes_through_as_invalid(app, name, field):
    original = load_recording(RECORDINGS / name)
    sent = []
    for _metadata, body, _ in decode_chunks(original)[1:]:
        if body:
            sent.extend(decode_records(body.decode("utf-8")))
    session_key = app.splunkd.new_session_key("admin")
    rewritten = rewrite_recording_args(original, ["field=" + field], splunkd_uri=app.splunkd.base_url,
                                       session_key=session_key, dispatch_dir=app.dispatch)
    import os

    env = dict(os.environ, SPLUNK_HOME=app.splunk_home)
    run = replay(COMMAND, rewritten, python=app.python, env=env, cwd=app.dispatch, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.errors == []
    assert len(run.records) == len(sent) > 0
    for before, after in zip(sent, run.records):
        assert {k: after[k] for k in before} == before
        assert after["defender_status"] == ("invalid" if before.get(field) else "")
        assert all("defender_" + s in after for s in OUTPUT_SUFFIXES)
    assert app.defender.api_calls() == 0
    assert app.cache_documents() == []
