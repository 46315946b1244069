"""A scripted payment provider over real HTTP, for tests.

`ScriptedProvider` serves `GET /payments/{ref}` on a free port. Each reference has a
script: a list of answers given in turn (the last one repeats); references without a
script answer `default`. An answer is one of

- `"pending"`, `"succeeded"`, … — 200 with that status;
- `503` (any int) — that HTTP status with an error body;
- `("slow", seconds, answer)` — wait, then give `answer`;
- `("raw", b"...")` — 200 with exactly this body (malformed JSON, wrong reference…).
"""

import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "ScriptedProvider"

    def setup(self):
        super().setup()
        self.connection.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )  # no 40 ms Nagle stalls

    def do_GET(self):
        prefix = "/payments/"
        if not self.path.startswith(prefix):
            return self._send(404, b'{"error":"no route"}')
        reference = unquote(self.path[len(prefix) :])
        self.server.authorizations[self.headers.get("Authorization")] += 1
        self._answer(reference, self.server.next_answer(reference))

    def _answer(self, reference, answer):
        if isinstance(answer, tuple) and answer[0] == "slow":
            time.sleep(answer[1])
            return self._answer(reference, answer[2])
        if isinstance(answer, tuple) and answer[0] == "raw":
            return self._send(200, answer[1])
        if isinstance(answer, int):
            return self._send(answer, json.dumps({"error": f"HTTP {answer}"}).encode())
        return self._send(
            200, json.dumps({"reference": reference, "status": answer, "amount": 100}).encode()
        )

    def _send(self, code, body):
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout tests)

    def log_message(self, *args):
        pass


class ScriptedProvider(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, default="pending"):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.default = default
        self.scripts: dict[str, list] = {}
        self.requests: Counter = Counter()
        self.authorizations: Counter = Counter()  # Authorization header → requests
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def script(self, reference: str, *answers) -> None:
        self.scripts[reference] = list(answers)

    def next_answer(self, reference: str):
        with self._lock:
            self.requests[reference] += 1
            script = self.scripts.get(reference)
            if not script:
                return self.default
            return script.pop(0) if len(script) > 1 else script[0]

    def __enter__(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()
