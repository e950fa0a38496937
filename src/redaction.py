"""Secrets (the judge API's key, the reward server's token) never reach a file, a log or a terminal.

    register_secret(os.environ["OPENAI_API_KEY"])     # where the process first holds the secret
    redact("HTTP 400: bad key sk-abc...")              # -> "HTTP 400: bad key [REDACTED]"
    install_log_redaction()                            # after logging.basicConfig: every handler redacts

A server (or a proxy in front of it) may echo the key in an error body; that text goes into item
records, reports, logs and error messages. The exceptions that carry such text redact it when they
are made (``editjudge.models.reward.remote``), item failures redact theirs
(``ScoreResult.failure``), the command lines redact what they print, and the log handlers redact
every record, traceback included. Each secret is also matched in its URL-quoted and JSON-escaped
forms. A secret is known to the process that registered it (each worker registers its own).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.parse

REDACTED = "[REDACTED]"
MIN_SECRET_CHARS = 4  # shorter values would blank ordinary text; no real key or token is that short

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Redact ``value`` (and its quoted forms) from every text ``redact`` sees from now on."""
    if not value or len(value) < MIN_SECRET_CHARS:
        return
    forms = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value),
             json.dumps(value)[1:-1]}
    with _lock:
        _secrets.update(f for f in forms if len(f) >= MIN_SECRET_CHARS)


def register_judge_key(config) -> None:
    """Redact the judge API's key (``reward_model.params.api_key_env``'s value) from now on: whatever an
    error from the judge or a worker says, no command prints it."""
    key_env = config.reward_model.params.get("api_key_env")
    if isinstance(key_env, str):
        register_secret(os.environ.get(key_env))


def redact(text):
    """``text`` with every registered secret replaced by ``[REDACTED]``; a non-string is returned as is."""
    if not isinstance(text, str) or not _secrets:
        return text
    for secret in sorted(_secrets, key=len, reverse=True):  # the longest form first
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """Formats each record's message (and traceback) and redacts it before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot format is the logging module's to report
            return True
        record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add the redacting filter to every handler of ``logger`` (the root logger by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
