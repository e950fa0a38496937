"""The HTTP side of the remote judges: an OpenAI-compatible chat-completions client (stdlib only).

    client = ChatClient(["http://127.0.0.1:8000/v1"], api_key="...", timeout=60, max_retries=5)
    response = client.post("/chat/completions", body)      # dict, or raises RequestFailed / JudgeServerError

Retries with exponential backoff and full jitter on 429, 5xx, timeouts and connection errors;
``Retry-After`` (seconds or an HTTP date) is honoured, capped at ``MAX_RETRY_AFTER``. Several base
URLs are used in turn, a retry going to the next one. What retries cannot fix:

* ``RequestFailed``: this request failed (a 4xx, a 5xx/429/timeout that outlived its retries): the
  caller records it on its item with the reason;
* ``JudgeAuthError``: the server refused the key (401/403), which no item can get past;
* ``JudgeServerError``: no server can be reached at all (connection refused or reset on every try),
  which ends the run: finished work is kept and the same command resumes.

``ResponseCache`` stores successful responses on disk under the SHA-256 of what decides them.
The API key is only ever sent in the Authorization header, and only to the configured origin: a
redirect to another scheme, host or port is refused (``JudgeRedirectError``: urllib would forward
the header). Every message these exceptions carry is redacted (``editjudge.redaction``) when made,
so a server that echoes the key in an error body cannot put it in a record, a report or a log.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import itertools
import json
import logging
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ...redaction import redact, register_secret

logger = logging.getLogger(__name__)

def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


class JudgeRedirectError(ValueError):
    """The judge server redirected to another origin; the request (and its key) does not follow."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect within the origin it was sent to; another origin is JudgeRedirectError."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        newurl = urllib.parse.urljoin(req.full_url, newurl)
        if _origin(newurl) != _origin(req.full_url):
            fp.close()
            raise JudgeRedirectError(
                f"{req.full_url} answered HTTP {code} redirecting to {newurl}, another origin (scheme, host or "
                "port); editjudge never sends credentials (an API key, a bearer token) to another origin: use the "
                "server's own address")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


# Loopback never goes through a proxy; elsewhere http(s)_proxy / no_proxy from the environment apply.
LOOPBACK_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), SameOriginRedirects)
_VIA_ENV = urllib.request.build_opener(SameOriginRedirects)
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 300.0  # seconds: a server asking for longer is treated as asking for this
ERROR_BODY_CHARS = 300


class RequestFailed(Exception):
    """One request failed for good; ``reason`` is what the item's record says."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        reason = redact(reason)
        super().__init__(reason)
        self.reason = reason
        self.status = status


class JudgeAuthError(ValueError):
    """The judge server refused the API key."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class JudgeServerError(RuntimeError):
    """No judge server can be reached (or a server editjudge started has died)."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


def _open(request: urllib.request.Request, timeout: float):
    host = urllib.parse.urlsplit(request.full_url).hostname or ""
    opener = LOOPBACK_OPENER if host in ("127.0.0.1", "localhost", "::1") else _VIA_ENV
    return opener.open(request, timeout=timeout)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header as seconds to wait: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, min(MAX_RETRY_AFTER, seconds))


def _error_body(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return ""
    try:
        data = json.loads(text)
        message = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(message, dict):
            message = message.get("message", message)
        text = str(message)
    except ValueError:
        pass
    return redact(text)[:ERROR_BODY_CHARS]  # before the cut: a key cut in half would not match


class ChatClient:
    """POSTs JSON to one of ``base_urls`` with retries; thread-safe (one connection per request)."""

    def __init__(self, base_urls: list[str], api_key: str | None = None, timeout: float = 60.0,
                 max_retries: int = 5, backoff: float = 1.0, max_backoff: float = 60.0,
                 alive=None) -> None:
        self.base_urls = [u.rstrip("/") for u in base_urls]
        self._api_key = api_key
        register_secret(api_key)
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.alive = alive  # optional callable raising JudgeServerError when a server we own has died
        self._next = itertools.count()
        self._lock = threading.Lock()
        self.retries = 0
        self.requests = 0

    def __repr__(self) -> str:  # never the key
        return f"ChatClient({self.base_urls}, key={'set' if self._api_key else 'none'})"

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _url(self) -> str:
        with self._lock:
            return self.base_urls[next(self._next) % len(self.base_urls)]

    def _wait(self, attempt: int, retry_after: float | None) -> None:
        delay = random.uniform(0, min(self.max_backoff, self.backoff * 2 ** attempt))  # full jitter
        if retry_after is not None:
            delay = max(delay, retry_after)
        with self._lock:
            self.retries += 1
        time.sleep(delay)

    def get(self, path: str) -> dict:
        """One GET without retries (the preflight): raises JudgeAuthError, RequestFailed, JudgeServerError."""
        url = self.base_urls[0] + path
        request = urllib.request.Request(url, headers=self._headers(), method="GET")
        try:
            with _open(request, self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise JudgeAuthError(f"{url}: HTTP {exc.code} {_error_body(exc)}".strip()) from None
            raise RequestFailed(f"{url}: HTTP {exc.code} {_error_body(exc)}".strip(), exc.code) from None
        except (urllib.error.URLError, ConnectionError, http.client.HTTPException, socket.timeout, OSError) as exc:
            raise JudgeServerError(f"cannot reach the judge server {url}: {_describe(exc)}") from None

    def post(self, path: str, body: dict) -> dict:
        """The decoded JSON response, after up to ``max_retries`` retries of what can be retried."""
        data = json.dumps(body).encode()
        last = "no attempt"
        connection_failures = 0
        for attempt in range(self.max_retries + 1):
            if self.alive is not None:
                self.alive()
            url = self._url() + path
            retry_after = None
            request = urllib.request.Request(url, data=data, headers=self._headers(), method="POST")
            with self._lock:
                self.requests += 1
            try:
                with _open(request, self.timeout) as response:
                    payload = response.read()
                try:
                    return json.loads(payload)
                except ValueError:
                    shown = redact(payload.decode("utf-8", "replace"))[:ERROR_BODY_CHARS]
                    last = f"{url}: the response is not JSON: {shown!r}"
            except urllib.error.HTTPError as exc:
                message = _error_body(exc)
                if exc.code in (401, 403):
                    raise JudgeAuthError(f"{url}: HTTP {exc.code} {message}".strip()) from None
                if exc.code not in RETRY_STATUSES and exc.code < 500:
                    raise RequestFailed(f"HTTP {exc.code} from {url}: {message}", exc.code) from None
                last = f"HTTP {exc.code} from {url}: {message}"
                retry_after = retry_after_seconds(exc.headers.get("Retry-After") if exc.headers else None)
            except (socket.timeout, TimeoutError) as exc:
                last = f"timed out after {self.timeout:g} s waiting for {url} ({_describe(exc)})"
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, (socket.timeout, TimeoutError)):
                    last = f"timed out after {self.timeout:g} s waiting for {url}"
                else:
                    connection_failures += 1
                    last = f"cannot connect to {url}: {_describe(exc.reason)}"
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                # A connection dropped mid-response (reset, closed without an answer).
                last = f"connection to {url} dropped: {_describe(exc)}"
            if attempt < self.max_retries:
                logger.debug("retrying (%d/%d): %s", attempt + 1, self.max_retries, redact(last))
                self._wait(attempt, retry_after)
        if self.alive is not None:
            self.alive()
        if connection_failures == self.max_retries + 1:
            raise JudgeServerError(f"no judge server answers ({last}, {self.max_retries + 1} tries); finished work "
                                   "is kept: start the server and rerun the same command to resume")
        raise RequestFailed(f"{last} (gave up after {self.max_retries + 1} tries)")


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"


class ResponseCache:
    """Responses on disk, one JSON file per request, named by the SHA-256 of its key."""

    def __init__(self, folder: str | os.PathLike | None) -> None:
        self.folder = Path(folder).expanduser() if folder else None
        self.hits = 0

    @staticmethod
    def key(what: dict) -> str:
        return hashlib.sha256(json.dumps(what, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        if self.folder is None:
            return None
        try:
            value = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        self.hits += 1
        return value

    def put(self, key: str, value: dict) -> None:
        if self.folder is None:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)  # a cached response is either absent or complete
