"""The app's log: $SPLUNK_HOME/var/log/splunk/defenderipstats.log, rotating, never a secret.

Splunk indexes that folder into _internal, where the dashboard adds up the lines. Two rules hold
for every record, whatever a caller passes in (account names, field values, exception texts):

- the whole formatted record, traceback included, is scrubbed of every secret or token
  registered with ``redact()`` (a safety net behind not logging them);
- one record is one line: CR, LF and other control characters are escaped (``\\n``, ``\\x1b``), so
  no value can forge a line of its own.
"""

import logging
import logging.handlers
import os
import re
import threading

LOGGER_NAME = "defender_ipstats"
LOG_FILE = "defenderipstats.log"
MASK = "********"
_secrets = set()
_secrets_lock = threading.Lock()
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def redact(*values) -> None:
    """Never let these strings reach the log (nor anything else that scrubs)."""
    with _secrets_lock:
        for value in values:
            if value and isinstance(value, str) and len(value) >= 6:
                _secrets.add(value)


def scrub(text: str) -> str:
    """``text`` with every registered secret masked (the longest first, so none leaves a tail)."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def one_line(text: str) -> str:
    """``text`` with control characters escaped, so it stays on one log line."""
    return _CONTROL.sub(lambda match: _NAMED.get(match.group(), "\\x%02x" % ord(match.group())), text)


class SafeFormatter(logging.Formatter):
    """Formats the record as usual (traceback included), then scrubs and escapes the whole of it."""

    def format(self, record):
        return one_line(scrub(super().format(record)))


def log_path(splunk_home: str) -> str:
    return os.path.join(splunk_home, "var", "log", "splunk", LOG_FILE)


def get_logger(level: str = "INFO") -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(getattr(logging, str(level).upper(), logging.INFO))
    if not getattr(logger, "_defender_configured", False):
        logger.propagate = False
        splunk_home = os.environ.get("SPLUNK_HOME")
        handler = logging.NullHandler()
        if splunk_home:
            path = log_path(splunk_home)
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                handler = logging.handlers.RotatingFileHandler(path, maxBytes=25 * 1024 * 1024,
                                                               backupCount=5, encoding="utf-8", delay=True)
            except OSError:
                handler = logging.NullHandler()
        handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s pid=%(process)d %(name)s - %(message)s"))
        logger.addHandler(handler)
        logger._defender_configured = True
    return logger
