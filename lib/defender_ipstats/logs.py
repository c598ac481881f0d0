"""The app's log: $SPLUNK_HOME/var/log/splunk/defenderipstats.log, rotating, never a secret.

Splunk indexes that folder into _internal. Every record passes a filter that blanks any
secret or token registered with ``redact()``, as a safety net behind not logging them.
"""

import logging
import logging.handlers
import os
import threading

LOGGER_NAME = "defender_ipstats"
LOG_FILE = "defenderipstats.log"
_secrets = set()
_secrets_lock = threading.Lock()


def redact(*values) -> None:
    """Never let these strings reach the log."""
    with _secrets_lock:
        for value in values:
            if value and len(value) >= 6:
                _secrets.add(value)


def scrub(text: str) -> str:
    with _secrets_lock:
        secrets = tuple(_secrets)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "********")
    return text


class _RedactingFilter(logging.Filter):
    def filter(self, record):
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message or record.exc_info:
            record.msg, record.args = cleaned, ()
        return True


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
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s pid=%(process)d %(name)s - %(message)s"))
        handler.addFilter(_RedactingFilter())
        logger.addHandler(handler)
        logger._defender_configured = True
    return logger
