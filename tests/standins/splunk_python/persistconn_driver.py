"""How the splunkd stand-in starts a persistent handler process: ``splunk`` importable (as it is in
Splunk's Python), then the protocol loop of ``splunk.persistconn.appserver`` on stdin/stdout."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from splunk.persistconn.appserver import serve  # noqa: E402

if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
