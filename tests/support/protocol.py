"""The splunkd side of search-command protocol v2 (``chunked = true``), for tests and benchmarks.

Framing. Every message, in either direction, is one chunk::

    chunked 1.0,<metadata length>,<body length>\\n<metadata><body>

The two lengths are byte counts of the UTF-8 encoded metadata (a JSON object) and body (CSV, possibly
empty); the next chunk follows the last body byte with no separator.

Conversation, as splunkd runs it for a chunked command (the script is started with no arguments):

1. splunkd sends ``{"action":"getinfo","preview":..,"streaming_command_will_restart":false,
   "searchinfo":{args, raw_args, dispatch_dir, sid, app, owner, username, session_key, splunkd_uri,
   splunk_version, search (URL-encoded), command, maxresultrows, earliest_time, latest_time}}``
   with an empty body. The command answers with its configuration (``{"type":"streaming"}``, ...) and
   possibly ``inspector.messages``. A reply with ``finished: true``, an ``error`` member or an
   ERROR/FATAL message ends the search here.
2. splunkd sends ``{"action":"execute","finished":false}`` chunks with CSV bodies and waits for the
   reply to each before sending the next; the last request carries ``finished: true`` (it may hold no
   rows: an empty body, or only the header line). The command answers each request with exactly one
   chunk ``{"finished": ..., "inspector": {...}}`` + CSV. A reply with ``finished: true`` (or an
   ``error`` member) stops splunkd from sending more.
3. splunkd closes the command's stdin and waits for it to exit.

CSV as splunkd writes it: a header with every field, then a ``__mv_<field>`` companion for each
field (all plain fields first, then all companions); ``\\n`` line ends; a cell is written bare when it
is empty or only ASCII letters and digits, otherwise double-quoted with ``"`` doubled. A multivalue
field puts its values joined by ``\\n`` in the plain column and ``$v1$;$v2$`` (each ``$`` inside a value
doubled) in the ``__mv_`` column; a single value leaves the ``__mv_`` cell empty. A reader takes the
``__mv_`` cell when it is not empty (splunklib's ``_read_csv_records`` does so), otherwise the plain cell.

Standard library only.
"""

import csv
import gzip
import io
import itertools
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

__all__ = [
    "CommandRun",
    "ProtocolError",
    "ProtocolTimeout",
    "decode_chunks",
    "decode_records",
    "encode_chunk",
    "encode_records",
    "getinfo_metadata",
    "load_recording",
    "mv_decode",
    "mv_encode",
    "raw_args_of",
    "replay",
    "rewrite_recording_args",
    "run_command",
]

_HEADER = re.compile(rb"chunked 1\.0,(\d+),(\d+)\n")
_BARE_CELL = re.compile(r"[A-Za-z0-9]*\Z")
_NEEDS_QUOTES = re.compile(r'[\s"\\|=,()\[\]]')
_CSV_FIELD_LIMIT = 10485760  # what splunklib allows (10 MB per field)
_sid_counter = itertools.count(1)


class ProtocolError(RuntimeError):
    """The command broke the conversation: it died, replied with garbage, or took too long."""

    def __init__(self, message: str, *, stderr: str = "", returncode: Optional[int] = None):
        self.stderr = stderr
        self.returncode = returncode
        text = message
        if returncode is not None:
            text += f" (exit status {returncode})"
        tail = stderr[-8000:] if stderr else ""
        text += "\n--- command stderr ---\n" + (tail if tail.strip() else "(empty)")
        super().__init__(text)


class ProtocolTimeout(ProtocolError):
    """The conversation did not finish within the timeout; the process was killed."""


# ---------------------------------------------------------------------------------------------------
# Metadata


def raw_args_of(args: Sequence[str]) -> List[str]:
    """The ``raw_args`` splunkd would report for ``args``: quoted the way a user would have typed them."""

    def quote(value: str) -> str:
        if value and not _NEEDS_QUOTES.search(value):
            return value
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    raw = []
    for arg in args:
        name, sep, value = arg.partition("=")
        if sep and re.match(r"[A-Za-z_]\w*\Z", name):
            raw.append(name + "=" + quote(value))
        else:
            raw.append(quote(arg))
    return raw


def getinfo_metadata(
    args: Sequence[str],
    *,
    splunkd_uri: str,
    session_key: str,
    app: str = "search",
    sid: Optional[str] = None,
    dispatch_dir: str,
    owner: str = "admin",
    username: str = "admin",
    search: Optional[str] = None,
    splunk_version: str = "9.4.1",
    maxresultrows: int = 50000,
    earliest_time: Any = "0",
    latest_time: Any = "0",
    preview: bool = False,
    command: str = "defenderipstats",
    raw_args: Optional[Sequence[str]] = None,
) -> Dict[str, Any]:
    """The getinfo metadata splunkd 9.x sends, key for key and in its order.

    ``search`` is the plain SPL (default: ``search index=main | <command> <raw args>``); it is sent
    URL-encoded, as splunkd does. ``raw_args`` defaults to ``raw_args_of(args)``.
    """
    args = [str(a) for a in args]
    raw = list(raw_args) if raw_args is not None else raw_args_of(args)
    if search is None:
        search = " ".join(["search index=main |", command] + raw)
    if sid is None:
        sid = f"{int(time.time())}.{next(_sid_counter)}"
    return {
        "action": "getinfo",
        "preview": bool(preview),
        "streaming_command_will_restart": False,
        "searchinfo": {
            "args": args,
            "raw_args": raw,
            "dispatch_dir": str(dispatch_dir),
            "sid": sid,
            "app": app,
            "owner": owner,
            "username": username,
            "session_key": session_key,
            "splunkd_uri": splunkd_uri,
            "splunk_version": splunk_version,
            "search": urllib.parse.quote(search, safe=""),
            "command": command,
            "maxresultrows": maxresultrows,
            "earliest_time": earliest_time,
            "latest_time": latest_time,
        },
    }


# ---------------------------------------------------------------------------------------------------
# Chunks


def _json_bytes(metadata: Any) -> bytes:
    if isinstance(metadata, bytes):
        return metadata
    if isinstance(metadata, str):
        return metadata.encode("utf-8")
    return json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_chunk(metadata: Union[Dict[str, Any], str, bytes], body: Union[str, bytes] = b"") -> bytes:
    """``chunked 1.0,<meta bytes>,<body bytes>\\n`` + metadata + body (lengths in bytes)."""
    meta = _json_bytes(metadata)
    data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    return b"chunked 1.0,%d,%d\n" % (len(meta), len(data)) + meta + data


def decode_chunks(data: bytes) -> List[Tuple[Dict[str, Any], bytes, bytes]]:
    """Split a byte stream of chunks into ``(metadata, body bytes, raw chunk bytes)`` triples."""
    chunks = []
    pos = 0
    while pos < len(data):
        match = _HEADER.match(data, pos)
        if match is None:
            raise ValueError(f"no chunk header at byte {pos}: {data[pos:pos + 60]!r}")
        meta_len, body_len = int(match.group(1)), int(match.group(2))
        meta_end = match.end() + meta_len
        body_end = meta_end + body_len
        if body_end > len(data):
            raise ValueError(f"chunk at byte {pos} is truncated ({body_end} > {len(data)} bytes)")
        metadata = json.loads(data[match.end():meta_end].decode("utf-8")) if meta_len else {}
        chunks.append((metadata, data[meta_end:body_end], data[pos:body_end]))
        pos = body_end
    return chunks


def load_recording(path: Union[str, "os.PathLike[str]"]) -> bytes:
    """Read a recorded conversation (``*.input`` or ``*.input.gz``) as bytes."""
    with open(path, "rb") as f:
        data = f.read()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def rewrite_recording_args(
    input_bytes: bytes,
    args: Optional[Sequence[str]],
    *,
    raw_args: Optional[Sequence[str]] = None,
    splunkd_uri: Optional[str] = None,
    session_key: Optional[str] = None,
    dispatch_dir: Optional[str] = None,
) -> bytes:
    """Replace ``searchinfo.args`` (and ``raw_args``) in the first (getinfo) chunk of a recording.

    Optionally also ``splunkd_uri``, ``session_key`` and ``dispatch_dir``. Everything else (key order,
    the other members, every later chunk) stays as recorded; the first chunk's length is recomputed.
    ``args=None`` keeps the recorded args.
    """
    if input_bytes[:2] == b"\x1f\x8b":
        input_bytes = gzip.decompress(input_bytes)
    match = _HEADER.match(input_bytes)
    if match is None:
        raise ValueError(f"recording does not start with a chunk header: {input_bytes[:60]!r}")
    meta_len, body_len = int(match.group(1)), int(match.group(2))
    meta_raw = input_bytes[match.end():match.end() + meta_len]
    body = input_bytes[match.end() + meta_len:match.end() + meta_len + body_len]
    rest = input_bytes[match.end() + meta_len + body_len:]
    metadata = json.loads(meta_raw.decode("utf-8"))
    if metadata.get("action") != "getinfo":
        raise ValueError(f"first chunk is not getinfo: {metadata.get('action')!r}")
    info = metadata["searchinfo"]
    if args is not None:
        info["args"] = [str(a) for a in args]
        info["raw_args"] = list(raw_args) if raw_args is not None else raw_args_of(info["args"])
    elif raw_args is not None:
        info["raw_args"] = list(raw_args)
    for key, value in (("splunkd_uri", splunkd_uri), ("session_key", session_key), ("dispatch_dir", dispatch_dir)):
        if value is not None:
            info[key] = str(value)
    # Keep the recording's JSON style (Splunk 6.3 wrote ", " / ": ", later versions compact).
    spaced = meta_raw.startswith(b'{"') and b'", "' in meta_raw
    separators = (", ", ": ") if spaced else (",", ":")
    new_meta = json.dumps(metadata, separators=separators).encode("utf-8")
    return encode_chunk(new_meta, body) + rest


# ---------------------------------------------------------------------------------------------------
# Records


def mv_encode(values: Sequence[str]) -> str:
    """``["a", "b$c"]`` → ``$a$;$b$$c$`` (the ``__mv_`` cell)."""
    return "$" + "$;$".join(v.replace("$", "$$") for v in values) + "$"


def mv_decode(cell: str) -> List[str]:
    """Inverse of :func:`mv_encode`; strict (raises ``ValueError`` on a malformed cell).

    After a value's closing ``$`` only ``;`` or the end may follow, so ``$$`` inside a value is
    always an escaped ``$``: the parse is unambiguous.
    """
    values = []
    i, n = 0, len(cell)
    while True:
        if i >= n or cell[i] != "$":
            raise ValueError(f"malformed multivalue cell at {i}: {cell!r}")
        i += 1
        parts = []
        while True:
            j = cell.find("$", i)
            if j < 0:
                raise ValueError(f"unterminated value in multivalue cell: {cell!r}")
            parts.append(cell[i:j])
            if j + 1 < n and cell[j + 1] == "$":
                parts.append("$")
                i = j + 2
                continue
            i = j + 1
            break
        values.append("".join(parts))
        if i == n:
            return values
        if cell[i] != ";":
            raise ValueError(f"expected ';' at {i} in multivalue cell: {cell!r}")
        i += 1


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def _cell(value: str) -> str:
    if _BARE_CELL.match(value):
        return value
    return '"' + value.replace('"', '""') + '"'


def encode_records(records: Iterable[Dict[str, Any]], fields: Optional[Sequence[str]] = None) -> str:
    """Records → CSV body as splunkd writes it (see the module docstring).

    Fields are ``fields`` (if given) followed by every other key in order of first appearance. A
    list/tuple value with two or more items is multivalue; one item is a plain value; an empty list or
    ``None`` is an empty cell. Zero records give an empty body, or just the header when ``fields``
    is given (splunkd's final chunk after data looks like that).
    """
    records = list(records)
    names: List[str] = list(fields or [])
    seen = set(names)
    for record in records:
        for key in record:
            if key not in seen:
                seen.add(key)
                names.append(key)
    if not names:
        return ""
    lines = [",".join(_cell(f) for f in itertools.chain(names, ("__mv_" + f for f in names)))]
    for record in records:
        plain, multi = [], []
        for name in names:
            value = record.get(name)
            if isinstance(value, (list, tuple)):
                values = [_text(v) for v in value]
                if len(values) > 1:
                    plain.append("\n".join(values))
                    multi.append(mv_encode(values))
                    continue
                value = values[0] if values else None
            plain.append(_text(value))
            multi.append("")
        lines.append(",".join(_cell(c) for c in itertools.chain(plain, multi)))
    return "\n".join(lines) + "\n"


def decode_records(body: Union[str, bytes]) -> List[Dict[str, Any]]:
    """CSV body → list of dicts; a non-empty ``__mv_<f>`` cell makes ``f`` a list (as splunklib reads it).

    Accepts ``\\n`` and ``\\r\\n`` line ends (splunkd writes the first, splunklib the second). Every
    header field is present in every record (an empty cell is ``""``).
    """
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    if not body:
        return []
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    reader = csv.reader(io.StringIO(body, newline=""), dialect="excel", strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return []
    columns = []  # (field name, is mv column)
    for name in header:
        if name.startswith("__mv_"):
            columns.append((name[5:], True))
        else:
            columns.append((name, False))
    plain_names = [n for n, mv in columns if not mv]
    records = []
    for row in reader:
        record: Dict[str, Any] = dict.fromkeys(plain_names, "")
        for (name, is_mv), value in zip(columns, row):
            if is_mv:
                if value:
                    record[name] = mv_decode(value)
            elif not isinstance(record.get(name), list):
                record[name] = value
        records.append(record)
    return records


# ---------------------------------------------------------------------------------------------------
# Running a command


class CommandRun:
    """What one conversation produced.

    - ``getinfo_reply``: metadata of the reply to getinfo (``None`` only if none came).
    - ``replies``: ``(metadata, records)`` for each execute reply, in order.
    - ``records``: all output rows, in order.
    - ``messages``: ``(level, text)`` from ``inspector.messages`` of every reply, getinfo included.
    - ``metrics``: ``inspector["metric.<name>"]`` values keyed by ``<name>`` (the last reply wins).
    - ``requests``: ``(metadata, records)`` of each execute chunk sent.
    - ``extra_replies``: chunks the command wrote that splunkd did not ask for (should be empty).
    - ``returncode``, ``stderr`` (text), ``elapsed`` (seconds from start to exit; the driver encodes
      requests before the start and decodes replies after the exit).
    """

    def __init__(self) -> None:
        self.getinfo_reply: Optional[Dict[str, Any]] = None
        self.replies: List[Tuple[Dict[str, Any], List[Dict[str, Any]]]] = []
        self.records: List[Dict[str, Any]] = []
        self.messages: List[Tuple[str, str]] = []
        self.metrics: Dict[str, Any] = {}
        self.requests: List[Tuple[Dict[str, Any], List[Dict[str, Any]]]] = []
        self.extra_replies: List[Tuple[Dict[str, Any], List[Dict[str, Any]]]] = []
        self.returncode: Optional[int] = None
        self.stderr: str = ""
        self.elapsed: float = 0.0

    @property
    def errors(self) -> List[str]:
        """Texts of the ERROR and FATAL messages."""
        return [text for level, text in self.messages if level in ("ERROR", "FATAL")]

    def _absorb_inspector(self, metadata: Dict[str, Any]) -> None:
        inspector = metadata.get("inspector") or {}
        for message in inspector.get("messages") or []:
            self.messages.append((str(message[0]), str(message[1])))
        for key, value in inspector.items():
            if key.startswith("metric."):
                self.metrics[key[len("metric."):]] = value

    def __repr__(self) -> str:
        return (
            f"<CommandRun returncode={self.returncode} replies={len(self.replies)} records={len(self.records)} "
            f"messages={self.messages!r} elapsed={self.elapsed:.3f}s>"
        )


_EOF = object()


def _read_exact(stream: Any, size: int) -> bytes:
    parts = []
    while size > 0:
        part = stream.read(size)
        if not part:
            break
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def _reader(stream: Any, out: "queue.Queue[Any]") -> None:
    """Parse chunks from the command's stdout into ``out``; ends with ``_EOF`` or an exception."""
    try:
        while True:
            header = stream.readline(256)  # a real header is far shorter; don't wait for a newline forever
            if not header:
                out.put(_EOF)
                return
            match = _HEADER.fullmatch(header)
            if match is None:
                out.put(ValueError(f"the command wrote something that is not a chunk header: {header!r}"))
                return
            meta_len, body_len = int(match.group(1)), int(match.group(2))
            meta = _read_exact(stream, meta_len)
            body = _read_exact(stream, body_len)
            if len(meta) != meta_len or len(body) != body_len:
                out.put(ProtocolError(
                    f"reply chunk truncated: header {header!r}, got {len(meta)} metadata and {len(body)} body bytes"
                ))
                return
            out.put((meta, body))
    except Exception as error:  # noqa: BLE001 - handed to the main thread
        out.put(error)


class _Conversation:
    def __init__(self, argv: List[str], env: Optional[Dict[str, str]], cwd: Optional[str], timeout: float):
        self.run = CommandRun()
        self.timeout = timeout
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.timed_out = False
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd
        )
        self.replies: queue.Queue[Any] = queue.Queue()
        self._stderr_parts: List[bytes] = []
        self._threads = [
            threading.Thread(target=_reader, args=(self.proc.stdout, self.replies), daemon=True),
            threading.Thread(target=self._drain_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self._watchdog = threading.Timer(timeout, self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _drain_stderr(self) -> None:
        for line in iter(self.proc.stderr.readline, b""):
            self._stderr_parts.append(line)

    def _expire(self) -> None:
        self.timed_out = True
        self._kill()

    def _kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass

    def abandon(self) -> None:
        """Kill the process and release its pipes (after an error)."""
        self._watchdog.cancel()
        self._kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for thread in self._threads:
            thread.join(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except (BrokenPipeError, OSError):
                pass

    def _stderr_text(self) -> str:
        return b"".join(self._stderr_parts).decode("utf-8", errors="replace")

    def fail(self, message: str) -> None:
        """Kill the process, collect its stderr, raise."""
        self._kill()
        try:
            returncode = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            returncode = None
        self._threads[1].join(timeout=5)
        self._watchdog.cancel()
        cls = ProtocolTimeout if self.timed_out else ProtocolError
        if self.timed_out:
            message = f"timeout after {self.timeout}s: {message}"
        raise cls(message, stderr=self._stderr_text(), returncode=returncode)

    def send(self, data: bytes, what: str) -> None:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ConnectionResetError, ValueError, OSError) as error:
            try:
                self.proc.wait(timeout=max(0.1, min(5.0, self.deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
            self.fail(f"could not send the {what} chunk, the command stopped reading ({error.__class__.__name__})")

    def receive(self, what: str) -> Tuple[Dict[str, Any], bytes]:
        """Wait for the reply to ``what``; its metadata (parsed) and body (bytes, decoded later)."""
        try:
            item = self.replies.get(timeout=max(0.0, self.deadline - time.monotonic()))
        except queue.Empty:
            self.timed_out = True
            self.fail(f"no reply to the {what} chunk")
        if item is _EOF:
            try:
                self.proc.wait(timeout=max(0.1, min(5.0, self.deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
            self.fail(f"the command closed its output before replying to the {what} chunk")
        if isinstance(item, BaseException):
            self.fail(f"bad reply to the {what} chunk: {item}")
        meta_bytes, body = item
        try:
            metadata = json.loads(meta_bytes.decode("utf-8")) if meta_bytes else {}
        except ValueError as error:
            self.fail(f"reply to the {what} chunk has unreadable metadata ({error}): {meta_bytes[:500]!r}")
        if not isinstance(metadata, dict):
            self.fail(f"reply to the {what} chunk has metadata that is not an object: {meta_bytes[:500]!r}")
        self.run._absorb_inspector(metadata)
        return metadata, body

    def finish(self) -> CommandRun:
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            self.run.returncode = self.proc.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.timed_out = True
            self.fail("the command did not exit after its input was closed")
        self.run.elapsed = time.monotonic() - self.started
        for thread in self._threads:
            thread.join(timeout=max(1.0, self.deadline - time.monotonic()))
        self._watchdog.cancel()
        if self.timed_out:
            self.fail("the command did not finish in time")
        self.run.stderr = self._stderr_text()
        while True:
            try:
                item = self.replies.get_nowait()
            except queue.Empty:
                break
            if item is _EOF:
                break
            if isinstance(item, BaseException):
                raise ProtocolError(f"bad output after the conversation: {item}", stderr=self.run.stderr,
                                    returncode=self.run.returncode)
            meta_bytes, body = item
            self.run.extra_replies.append((json.loads(meta_bytes.decode("utf-8")), decode_records(body)))
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()
        return self.run


def _ends_search(metadata: Dict[str, Any], *, getinfo: bool) -> bool:
    if metadata.get("finished") is True or metadata.get("error"):
        return True
    if getinfo:
        messages = (metadata.get("inspector") or {}).get("messages") or []
        return any(str(m[0]).upper() in ("ERROR", "FATAL") for m in messages)
    return False


def _converse(
    script: str,
    python: str,
    env: Optional[Dict[str, str]],
    cwd: Optional[str],
    timeout: float,
    getinfo_chunk: bytes,
    executes: Iterable[Tuple[Dict[str, Any], Any, bytes]],
) -> CommandRun:
    """Play splunkd: send getinfo, then each execute chunk, one reply at a time."""
    conversation = _Conversation([python, os.fspath(script)], env, os.fspath(cwd) if cwd else None, timeout)
    run = conversation.run
    bodies: List[Tuple[str, bytes]] = []
    sent = []
    try:
        conversation.send(getinfo_chunk, "getinfo")
        run.getinfo_reply, body = conversation.receive("getinfo")
        if body:
            bodies.append(("getinfo", body))
        if not _ends_search(run.getinfo_reply, getinfo=True):
            for index, (metadata, records, data) in enumerate(executes, 1):
                what = f"execute #{index}"
                conversation.send(data, what)
                sent.append((metadata, records))
                reply, body = conversation.receive(what)
                run.replies.append((reply, []))
                bodies.append((what, body))
                if _ends_search(reply, getinfo=False):
                    break
        conversation.finish()
    except BaseException:
        conversation.abandon()
        raise
    # Bodies are decoded after the command has exited, so that ``elapsed`` is the command's time.
    run.requests = [(metadata, records() if callable(records) else records) for metadata, records in sent]
    replies = iter(run.replies)
    for what, body in bodies:
        try:
            records = decode_records(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, csv.Error) as error:
            raise ProtocolError(
                f"reply to the {what} chunk has an unreadable body ({error}): {body[:500]!r}",
                stderr=run.stderr, returncode=run.returncode,
            )
        if what == "getinfo":
            if records:
                raise ProtocolError(f"the getinfo reply carries records: {records[:3]!r}", stderr=run.stderr)
            continue
        reply = next(replies)
        reply[1].extend(records)
        run.records.extend(records)
    return run


def run_command(
    script: Union[str, "os.PathLike[str]"],
    args: Sequence[str],
    chunks: Sequence[Union[Sequence[Dict[str, Any]], str, bytes]],
    *,
    python: str = sys.executable,
    env: Optional[Dict[str, str]] = None,
    cwd: Optional[Union[str, "os.PathLike[str]"]] = None,
    timeout: float = 120,
    **searchinfo: Any,
) -> CommandRun:
    """Run ``[python, script]`` as splunkd runs a chunked command and feed it ``chunks``.

    ``chunks``: one list of records per execute request (or a ready CSV body, str/bytes). The last
    request has ``finished: true``; with no chunks one empty ``finished: true`` request is sent. An
    empty list after earlier data is sent as the header line alone, as splunkd does. ``searchinfo``
    goes to :func:`getinfo_metadata` (``dispatch_dir`` defaults to ``cwd`` or the current directory,
    ``splunkd_uri``/``session_key`` to dummies, ``command`` to the script's name). ``env`` replaces
    the environment (``None``: inherit ours), as with ``subprocess``. ``timeout`` bounds the whole
    conversation: past it the process is killed and :class:`ProtocolTimeout` raised. A process that
    dies mid-conversation or writes anything but reply chunks raises :class:`ProtocolError` (its
    message ends with the command's stderr); a non-zero exit after a complete conversation does not
    raise (see ``returncode``).
    """
    searchinfo.setdefault("dispatch_dir", os.fspath(cwd) if cwd else os.getcwd())
    searchinfo.setdefault("splunkd_uri", "https://127.0.0.1:8089")
    searchinfo.setdefault("session_key", "test-session-key")
    searchinfo.setdefault("command", os.path.splitext(os.path.basename(os.fspath(script)))[0])
    getinfo = encode_chunk(getinfo_metadata(args, **searchinfo))
    chunk_list = list(chunks) or [[]]

    def encoded() -> Iterable[Tuple[Dict[str, Any], Any, bytes]]:
        fields: List[str] = []
        last = len(chunk_list) - 1
        for index, chunk in enumerate(chunk_list):
            metadata = {"action": "execute", "finished": index == last}
            if isinstance(chunk, (str, bytes)):
                body = chunk

                def records(body: Union[str, bytes] = body) -> List[Dict[str, Any]]:
                    return decode_records(body)
            else:
                records = list(chunk)
                if records:
                    body = encode_records(records)
                    fields = list(dict.fromkeys(key for record in records for key in record))
                else:
                    body = encode_records([], fields)
            yield metadata, records, encode_chunk(metadata, body)

    executes = list(encoded())  # all encoded before the command starts: ``elapsed`` is the command's time
    return _converse(os.fspath(script), python, env, cwd, timeout, getinfo, executes)


def replay(
    script: Union[str, "os.PathLike[str]"],
    input_bytes: bytes,
    *,
    python: str = sys.executable,
    env: Optional[Dict[str, str]] = None,
    cwd: Optional[Union[str, "os.PathLike[str]"]] = None,
    timeout: float = 120,
) -> CommandRun:
    """Play a recorded splunkd conversation (gzip or plain) against ``[python, script]``.

    Each recorded chunk is sent byte for byte, waiting for the command's reply before the next, as
    splunkd does. Rewrite the getinfo chunk first with :func:`rewrite_recording_args` as needed.
    """
    if input_bytes[:2] == b"\x1f\x8b":
        input_bytes = gzip.decompress(input_bytes)
    chunks = decode_chunks(input_bytes)
    if not chunks or chunks[0][0].get("action") != "getinfo":
        raise ValueError("a recording starts with a getinfo chunk")
    executes = []
    for metadata, body, raw in chunks[1:]:
        if metadata.get("action") != "execute":
            raise ValueError(f"unexpected action in recording: {metadata.get('action')!r}")
        executes.append((metadata, lambda body=body: decode_records(body), raw))
    return _converse(os.fspath(script), python, env, cwd, timeout, chunks[0][2], executes)
