"""A small HTTP proxy on 127.0.0.1 in front of a real judge server, which makes faults real.

    with JudgeProxy(upstream="http://127.0.0.1:8000", fault="429", every=3) as proxy:
        ...  # base_url: proxy.base_url; proxy.forwarded counts the requests that reached the server

Faults (on every ``every``-th POST; GETs always pass): ``429`` (with ``Retry-After: 0``), ``500``,
``drop`` (the connection is closed without an answer), ``hang`` (never answers: every request,
until the proxy stops), ``die_after`` (after ``every`` forwarded POSTs the proxy stops listening,
like a server that was killed), ``no_prefill`` (a 400 for any request that continues a prefilled
assistant turn, as OpenAI's API answers). ``retry_after`` is the header sent with a 429.
"""

from __future__ import annotations

import http.server
import threading
import time
import urllib.error
import urllib.request

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through http_proxy


class JudgeProxy:
    def __init__(self, upstream: str, fault: str | None = None, every: int = 3, port: int = 0,
                 retry_after: str = "0") -> None:
        self.upstream = upstream.rstrip("/")
        self.fault = fault
        self.retry_after = retry_after
        self.every = every
        self.posts = 0  # POSTs received
        self.forwarded = 0  # POSTs that reached the upstream server and were answered
        self.forwarded_bodies: list[bytes] = []
        self._lock = threading.Lock()
        self._dying = False  # die_after: set once the last request is forwarded, before the socket closes
        self._stopping = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                self._forward(None)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with proxy._lock:
                    proxy.posts += 1
                    n = proxy.posts
                if proxy.fault == "die_after" and proxy._dying:  # gone: a request racing the shutdown gets no answer
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if proxy.fault == "hang":
                    proxy._stopping.wait()
                    self.close_connection = True
                    return
                if proxy.fault == "no_prefill" and b'"continue_final_message"' in body:
                    self._answer(400, b'{"error": {"message": "Unrecognized request argument supplied: '
                                      b'continue_final_message"}}')
                    return
                if proxy.fault in ("429", "500", "drop") and n % proxy.every == 0:
                    if proxy.fault == "drop":
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    self._answer(int(proxy.fault), b'{"error": {"message": "injected fault"}}')
                    return
                self._forward(body)
                if proxy.fault == "die_after" and proxy._dying:
                    threading.Thread(target=proxy.stop, daemon=True).start()  # stop() runs once

            def _answer(self, code: int, payload: bytes) -> None:
                self.send_response(code)
                if code == 429:
                    self.send_header("Retry-After", proxy.retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _forward(self, body):
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
                request = urllib.request.Request(proxy.upstream + self.path, data=body, headers=headers,
                                                 method=self.command)
                try:
                    with _DIRECT.open(request, timeout=300) as response:
                        status, payload = response.status, response.read()
                except urllib.error.HTTPError as exc:
                    status, payload = exc.code, exc.read()
                if body is not None and status == 200:
                    with proxy._lock:
                        proxy.forwarded += 1
                        proxy.forwarded_bodies.append(body)
                        if proxy.fault == "die_after" and proxy.forwarded >= proxy.every:
                            proxy._dying = True  # before this answer goes out: no later request is forwarded
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "JudgeProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()
        time.sleep(0.05)

    def __enter__(self) -> "JudgeProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
