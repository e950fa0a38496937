"""Connection timeouts for the reward server: uvicorn's h11 protocol plus a header and a body deadline.

uvicorn closes a kept-alive connection that stays idle between requests (``timeout_keep_alive``),
but it has no limit on how long a client may take to send a request's headers or its body, nor on
a connection that opens and sends nothing: each would hold a connection (and for a body, the
memory read so far) for as long as the client likes. ``timed_protocol`` adds:

* ``header_timeout``: from a connection's opening (or the first byte of a later request on it) to
  the end of the request's headers; past it the connection is closed (there is no request to
  answer yet). This also closes a connection that never sends a byte.
* ``body_timeout``: from the end of the headers to the last byte of the body; past it the client
  gets a 408 in the server's error format, if no answer was started, and the connection is closed.

Each expiry is one log line at info level.
"""

from __future__ import annotations

import json
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .schema import VERSION

logger = logging.getLogger(__name__)


def timed_protocol(header_timeout: float, body_timeout: float) -> type[H11Protocol]:
    """uvicorn's ``H11Protocol`` with the two deadlines above (pass it as ``uvicorn.Config(http=...)``)."""

    class TimedH11Protocol(H11Protocol):
        _header_timer = None
        _body_timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._header_timer = self.loop.call_later(header_timeout, self._expired, "header")

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._follow()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._follow()

        def connection_lost(self, exc) -> None:
            self._cancel()
            super().connection_lost(exc)

        def _cancel(self, which: str = "both") -> None:
            if which in ("header", "both") and self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            if which in ("body", "both") and self._body_timer is not None:
                self._body_timer.cancel()
                self._body_timer = None

        def _follow(self) -> None:
            """Arm or cancel the deadlines from where the client is in its request."""
            state = self.conn.their_state
            if state is h11.IDLE:
                # Headers under way (bytes came) or none yet after a response (uvicorn's keep-alive
                # timer covers that wait; its timer is armed exactly when no byte came).
                self._cancel("body")
                if self.timeout_keep_alive_task is None and self._header_timer is None and self.conn.trailing_data[0]:
                    self._header_timer = self.loop.call_later(header_timeout, self._expired, "header")
            elif state is h11.SEND_BODY:
                self._cancel("header")
                if self._body_timer is None:
                    self._body_timer = self.loop.call_later(body_timeout, self._expired, "body")
            else:
                self._cancel()

        def _expired(self, which: str) -> None:
            if which == "header":
                self._header_timer = None
            else:
                self._body_timer = None
            if self.transport.is_closing():
                return
            seconds = header_timeout if which == "header" else body_timeout
            client = "%s:%d" % self.client if self.client else "?"
            logger.info("closing the connection from %s: its request %s took over %g s (--%s-timeout)",
                        client, "headers" if which == "header" else "body", seconds, which)
            cycle = self.cycle
            if which == "body" and cycle is not None and not cycle.response_started:
                body = json.dumps({"version": VERSION, "error": {
                    "code": "request_timeout", "field": None,
                    "message": f"the request body took over {seconds:g} s to arrive (this server's body "
                               "timeout); send it faster or in smaller requests"}}).encode()
                try:
                    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                               (b"connection", b"close")]
                    self.transport.write(self.conn.send(h11.Response(status_code=408, reason=b"Request Timeout",
                                                                     headers=headers)))
                    self.transport.write(self.conn.send(h11.Data(data=body)))
                    self.transport.write(self.conn.send(h11.EndOfMessage()))
                except h11.LocalProtocolError:
                    pass
            if cycle is not None:
                cycle.response_started = cycle.response_complete = True  # the app's answer, if any, goes nowhere
                cycle.disconnected = True
                cycle.message_event.set()  # a read of the body ends: the app sees the client gone
            self.transport.close()

    return TimedH11Protocol
