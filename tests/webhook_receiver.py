"""A webhook receiver on loopback for the job-queues tests: real HTTP, answers chosen by the path."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: How long ``/hang/...`` keeps the sender waiting: well past the timeouts the tests give.
HANG_SECONDS = 2.0


class Gate:
    """Holds the requests to ``/gate/<key>`` until :meth:`open`; ``arrived`` is set when one comes in."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.opened = threading.Event()

    def open(self) -> None:
        self.opened.set()


class Receiver:
    """A webhook receiver on a free loopback port. The path says how it answers:

    ``/ok/<key>`` 200; ``/status/<code>/<key>`` always ``code``; ``/flaky/<n>/<key>`` 500 for
    the first ``n`` requests, then 200; ``/hang/<n>/<key>`` sleeps ``HANG_SECONDS`` on the
    first ``n`` requests (past the sender's timeout), then 200; ``/gate/<key>`` 200 once the
    :class:`Gate` made by :meth:`gate` is opened.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.gates: dict[str, Gate] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": self.headers, "body": body})
                    seen = sum(1 for r in receiver.requests if r["path"] == self.path)
                self.answer(*receiver.behaviour(self.path, seen))

            def answer(self, status: int, delay: float) -> None:
                time.sleep(delay)
                payload = json.dumps({"received": status < 300}).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the sender gave up waiting

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def behaviour(self, path: str, seen: int) -> tuple[int, float]:
        kind, *rest = path.strip("/").split("/")
        if kind == "status":
            return int(rest[0]), 0.0
        if kind == "flaky":
            return (500 if seen <= int(rest[0]) else 200), 0.0
        if kind == "hang":
            return 200, (HANG_SECONDS if seen <= int(rest[0]) else 0.0)
        if kind == "gate":
            gate = self.gates[rest[0]]
            gate.arrived.set()
            return (200 if gate.opened.wait(10) else 504), 0.0
        return 200, 0.0

    def gate(self) -> tuple[str, Gate]:
        """A new gate and the path that waits on it."""
        key = uuid.uuid4().hex
        self.gates[key] = Gate()
        return f"/gate/{key}", self.gates[key]

    def hits(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def close(self) -> None:
        for gate in self.gates.values():
            gate.open()
        self.server.shutdown()
        self.server.server_close()
