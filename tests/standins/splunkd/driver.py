"""The persistent REST handler process, as splunkd keeps it, and its packet protocol."""

from __future__ import annotations

import os
import subprocess
import threading
from typing import TYPE_CHECKING, List, Optional

from .model import _Reply
from .rendering import _error_body

if TYPE_CHECKING:  # only for annotations: standin imports this module
    from .standin import SplunkdStandin

# A stand-in of Splunk's own Python modules (splunk.persistconn), beside this package.
_STANDIN_PYTHON = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "splunk_python")


class _PersistentDriver:
    """One persistent REST handler process, as splunkd keeps it, and its packet protocol (one request
    at a time: splunkd queues them for a process)."""

    def __init__(self, owner: SplunkdStandin):
        self.owner = owner
        self.process: Optional[subprocess.Popen] = None
        self.lock = threading.Lock()
        self.starts = 0
        self.busy = False

    def _start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        if self.owner.splunk_home:
            env["SPLUNK_HOME"] = self.owner.splunk_home
        stderr = subprocess.DEVNULL
        if self.owner.splunk_home:
            log_dir = os.path.join(self.owner.splunk_home, "var", "log", "splunk")
            os.makedirs(log_dir, exist_ok=True)
            stderr = open(os.path.join(log_dir, "splunkd_persistent_handler_stderr.log"), "ab")
        try:
            self.process = subprocess.Popen(
                [self.owner.python, os.path.join(_STANDIN_PYTHON, "persistconn_driver.py")],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env,
                cwd=self.owner.splunk_home or None)
        finally:
            if stderr is not subprocess.DEVNULL:
                stderr.close()
        self.starts += 1

    @staticmethod
    def _string(value: bytes) -> bytes:
        return b"%d\n" % len(value) + value

    def _read_string(self) -> bytes:
        stream = self.process.stdout
        line = b""
        while not line.strip():
            line = stream.readline()
            if not line:
                raise EOFError("the persistent handler process ended")
        size = int(line.strip())
        data = stream.read(size)
        if len(data) != size:
            raise EOFError("the persistent handler process ended")
        return data

    def call(self, command: List[str], argument: str, block: bytes) -> bytes:
        with self.lock:
            for attempt in (1, 2):
                if self.process is None or self.process.poll() is not None:
                    self._start()
                packet = bytes([0x01 | 0x02 | 0x04]) + b"%d\n" % len(command)
                packet += b"".join(self._string(part.encode("utf-8")) for part in command)
                packet += self._string(argument.encode("utf-8")) + self._string(block)
                try:
                    self.process.stdin.write(packet)
                    self.process.stdin.flush()
                    loaded = self._read_string()
                    if loaded:
                        raise _Reply(500, *_error_body("Failed to load the REST handler: %s"
                                                       % loaded.decode("utf-8", "replace"), "json"))
                    return self._read_string()
                except (OSError, EOFError, ValueError):
                    self.stop()
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
        if process is not None:
            process.wait(timeout=10)
            for stream in (process.stdin, process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
