"""A bank's webhook endpoint on this machine, for the demo (and the tests): an HTTP server
on loopback that answers 204 and keeps every delivery (headers, body); with the bank's
secret it verifies each signature as a receiving bank would (Standard Webhooks). It can
be created before it listens, to play an endpoint that is down."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from deltran.webhooks.signing import verify


class Receiver:
    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/deltran"
        self.received: list[tuple[dict[str, str], bytes]] = []
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["content-length"]))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def events(self, secret: str) -> list[dict]:
        """Every delivery so far, each verified against `secret` (raises on a bad one)."""
        out = []
        for headers, body in list(self.received):
            verify(secret, headers, body)
            out.append(json.loads(body))
        return out
