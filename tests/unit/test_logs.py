"""The log's two rules, checked on the formatter itself: secrets scrubbed from the whole record
(traceback included), and one record on one line whatever the values carry."""

import io
import logging

from defender_ipstats.splunk.logs import MASK, SafeFormatter, one_line, redact, scrub


def _logger(name):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test_logs." + name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    return logger, stream


def test_scrub_masks_every_registered_secret_the_longest_first():
    redact("s3cr3t-value", "s3cr3t-value-and-more", "short")  # "short" is under 6 characters: not registered
    assert scrub("a s3cr3t-value-and-more b s3cr3t-value c short") == "a %s b %s c short" % (MASK, MASK)


def test_one_line_escapes_line_breaks_and_control_characters():
    assert one_line("a\r\nb\tc\x1b[31md\x00") == "a\\r\\nb\\tc\\x1b[31md\\x00"
    assert one_line("plain text, é and 漢字") == "plain text, é and 漢字"


def test_a_record_is_one_line_even_with_a_traceback_and_never_shows_a_secret():
    logger, stream = _logger("traceback")
    redact("tok-ABCDEFGHIJ1234567890")
    try:
        raise ValueError("refused token tok-ABCDEFGHIJ1234567890\nsecond line")
    except ValueError:
        logger.exception("call failed for account %s", "x\nINFO forged line")
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert "tok-ABCDEFGHIJ1234567890" not in text and MASK in text
    assert "Traceback (most recent call last):\\n" in text and "\\nINFO forged line" in text


def test_arguments_and_messages_alike_are_scrubbed():
    logger, stream = _logger("args")
    redact("client-secret-XYZ987")
    logger.warning("secret %s", "client-secret-XYZ987")
    logger.warning("client-secret-XYZ987 in the message itself")
    assert "client-secret-XYZ987" not in stream.getvalue()
    assert stream.getvalue().count(MASK) == 2
