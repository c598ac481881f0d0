"""The HTTP side: a request handler that hands every method to the stand-in."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: standin imports this module
    from .standin import SplunkdStandin

def _read_chunked(rfile) -> bytes:
    chunks = []
    while True:
        line = rfile.readline()
        size = int(line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            rfile.readline()
            break
        chunks.append(rfile.read(size))
        rfile.readline()
    return b"".join(chunks)


class _Handler(BaseHTTPRequestHandler):
    owner: SplunkdStandin
    protocol_version = "HTTP/1.1"
    server_version = "Splunkd"
    sys_version = ""

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr log
        return

    def do_GET(self):
        self.owner._handle(self, "GET")

    def do_POST(self):
        self.owner._handle(self, "POST")

    def do_DELETE(self):
        self.owner._handle(self, "DELETE")

    def do_PUT(self):
        self.owner._handle(self, "PUT")

    def do_PATCH(self):
        self.owner._handle(self, "PATCH")

    def do_HEAD(self):
        self.owner._handle(self, "HEAD")
