"""A real OpenAI-compatible HTTP server on 127.0.0.1 that misbehaves on purpose.

Faults that a real model server cannot be made to produce on demand (a 429 storm, truncated
JSON, a dropped connection) are scripted here, so the client is exercised over real sockets
rather than by patching it. Answers are deterministic functions of the request, so a test can
tell which requests were (re-)sent.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "fault-model"


def answer_text(body: dict[str, Any]) -> str:
    key = json.dumps([body.get("messages"), body.get("seed")], sort_keys=True)
    return "answer " + hashlib.sha256(key.encode()).hexdigest()[:8]


class FaultServer:
    """``faults`` is a list consumed one per request: "ok", "429", "500", "slow", "truncated",
    "drop", "no_usage". After it is empty every request is answered normally (or with
    ``default``). ``api_key`` makes the server demand ``Authorization: Bearer <key>``."""

    def __init__(self, port: int = 0, api_key: str | None = None, retry_after: float = 0.2, slow_s: float = 3.0):
        self.faults: list[str] = []
        self.models_faults: list[str] = []  # for GET /models: "500" or "garbage" (200, not JSON)
        self.models_default = "ok"
        self.default = "ok"
        self.api_key = api_key
        self.retry_after = retry_after
        self.slow_s = slow_s
        self.received: list[dict[str, Any]] = []
        self.answered = Counter()
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FaultServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _next_fault(self) -> str:
        with self.lock:
            return self.faults.pop(0) if self.faults else self.default

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("server", "fault-server/1")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if server.api_key is None:
                    return True
                if self.headers.get("Authorization") == f"Bearer {server.api_key}":
                    return True
                self._send(401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}})
                return False

            def do_GET(self) -> None:
                if not self._authorised():
                    return
                if self.path.endswith("/models"):
                    with server.lock:
                        fault = server.models_faults.pop(0) if server.models_faults else server.models_default
                    if fault == "500":
                        self._send(500, {"error": "internal"})
                    elif fault == "garbage":
                        self._send(200, b"<html>502 Bad Gateway</html>")
                    else:
                        models = {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "test"}]}
                        self._send(200, models)
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self._authorised():
                    return
                if not self.path.endswith("/chat/completions"):
                    self._send(404, {"error": "not found"})
                    return
                with server.lock:
                    server.received.append(body)
                fault = server._next_fault()
                if fault == "429":
                    self._send(429, {"error": "rate limited"}, {"Retry-After": str(server.retry_after)})
                    return
                if fault == "500":
                    self._send(500, {"error": "internal"})
                    return
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault == "slow":
                    time.sleep(server.slow_s)
                text = answer_text(body)
                msgs = body.get("messages") or []
                prompt_tokens = 10 + sum(len(m.get("content", "").split()) for m in msgs)
                payload: dict[str, Any] = {
                    "id": "x",
                    "object": "chat.completion",
                    "model": MODEL,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                }
                if fault != "no_usage":
                    payload["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": 2, "total_tokens": 0}
                if fault == "truncated":
                    self._send(200, json.dumps(payload).encode()[:40])
                    return
                with server.lock:
                    server.answered[text] += 1
                self._send(200, payload)

        return Handler
