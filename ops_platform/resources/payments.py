"""The `payments` resource: the payment provider's status API, or the built-in simulator.

Provider API (base URL `OPS_PAYMENTS_URL`, e.g. `https://pay.example.com/api`):

    GET {base}/payments/{provider_ref}        (provider_ref URL-encoded)
    Accept: application/json
    Authorization: Bearer <OPS_PAYMENTS_API_KEY>   (only when that variable is set)

    200 {"reference": "<provider_ref>",
         "status": "pending" | "succeeded" | "failed" | "canceled" | "expired",
         ...any other fields, ignored}
    404 the provider does not know this reference
    429 / 5xx the provider is overloaded or failing: retried

The client holds a pool of keep-alive connections (thread-safe, so checks can run in
parallel), with separate connect and read timeouts. Connection errors, timeouts, 429 and
5xx are retried with exponential backoff and full jitter; what is still failing after the
last attempt raises `ProviderUnavailable`. Any other answer that is not a well-formed
status — malformed JSON, a body that is not an object, an unknown status, a reference that
is not the one asked for, another 4xx — raises `ProviderError` naming the payment and what
was wrong. The caller records the error on the payment and leaves its status untouched.

With no `OPS_PAYMENTS_URL` the resource is the **simulator**, deterministic from the
reference and the number of checks already made (`attempt`, the payment's check_count):
a reference answers `pending` for its first 0–2 checks (by its hash), then its final
status by the hash: 70 % succeeded, 20 % failed, 5 % canceled, 5 % never settle (they
stay pending until they expire). `serve_simulator()` serves the same answers over HTTP,
for benchmarks and trying the real client locally.
"""

import hashlib
import json
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import dagster as dg
from pydantic import Field, PrivateAttr

from ops_platform.lazy import lazy_module
from ops_platform.resources._environment import from_environment

if TYPE_CHECKING:
    import urllib3
else:
    urllib3 = lazy_module("urllib3")

STATUSES = ("pending", "succeeded", "failed", "canceled", "expired")
FINAL_STATUSES = ("succeeded", "failed", "canceled", "expired")
RETRYABLE_HTTP = {429, 500, 502, 503, 504}


class ProviderError(RuntimeError):
    """The provider gave no usable answer about one payment; the message says which and why."""

    def __init__(self, provider_ref: str, problem: str):
        super().__init__(f"payment provider, reference {provider_ref!r}: {problem}")
        self.provider_ref = provider_ref
        self.problem = problem


class PaymentNotFound(ProviderError):
    """The provider answered 404: it does not know this reference."""


class ProviderUnavailable(ProviderError):
    """Connection errors, timeouts or 5xx through every retry: a transient fault."""


@dataclass(frozen=True)
class ProviderStatus:
    reference: str
    status: str
    raw: dict = field(default_factory=dict, compare=False)


def parse_status_body(provider_ref: str, body: bytes) -> ProviderStatus:
    """Validate a 200 answer; anything unexpected is a `ProviderError` naming the payment."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        snippet = body[:80].decode("utf-8", "replace")
        raise ProviderError(
            provider_ref,
            f"malformed JSON in the answer ({error.__class__.__name__}: {error}; body starts {snippet!r})",
        ) from None
    if not isinstance(document, dict):
        raise ProviderError(
            provider_ref, f"answer is a JSON {type(document).__name__}, expected an object"
        )
    status = document.get("status")
    if status not in STATUSES:
        raise ProviderError(
            provider_ref, f"unknown status {status!r}; expected one of {', '.join(STATUSES)}"
        )
    reference = document.get("reference", provider_ref)
    if reference != provider_ref:
        raise ProviderError(
            provider_ref, f"answer is about reference {reference!r}, not the one asked for"
        )
    return ProviderStatus(reference=provider_ref, status=status, raw=document)


# --- simulator ------------------------------------------------------------------------------


def _hash(provider_ref: str) -> int:
    return int.from_bytes(hashlib.blake2b(provider_ref.encode(), digest_size=8).digest(), "big")


def simulated_status(provider_ref: str, attempt: int) -> str:
    """The simulator's answer for the `attempt`-th check (0-based) of a reference."""
    digest = _hash(provider_ref)
    if attempt < digest % 3:
        return "pending"
    roll = (digest >> 8) % 100
    if roll < 70:
        return "succeeded"
    if roll < 90:
        return "failed"
    if roll < 95:
        return "canceled"
    return "pending"


class _SimulatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real provider
    server: "SimulatorServer"

    def setup(self):
        super().setup()
        # Headers and body go out in two writes: without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every answer on a kept-alive connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self):
        prefix = "/payments/"
        if not self.path.startswith(prefix):
            return self._answer(404, {"error": "not found"})
        reference = unquote(self.path[len(prefix) :])
        with self.server.lock:
            attempt = self.server.attempts.get(reference, 0)
            self.server.attempts[reference] = attempt + 1
        self._answer(200, {"reference": reference, "status": simulated_status(reference, attempt)})

    def _answer(self, code: int, document: dict) -> None:
        body = json.dumps(document).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # quiet
        pass


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int]):
        super().__init__(address, _SimulatorHandler)
        self.lock = threading.Lock()
        self.attempts: dict[str, int] = {}

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def serve_simulator(host: str = "127.0.0.1", port: int = 0) -> SimulatorServer:
    """Start the simulator as an HTTP provider in a background thread (port 0: a free one).
    Over HTTP the attempt number is the count of requests the server has seen per reference."""
    server = SimulatorServer((host, port))
    threading.Thread(target=server.serve_forever, name="payments-simulator", daemon=True).start()
    return server


# --- the resource ---------------------------------------------------------------------------


class PaymentProvider(dg.ConfigurableResource):
    """Payment status by provider reference: HTTP client of `OPS_PAYMENTS_URL`, or the simulator."""

    url: str | None = Field(
        default=None, description="Provider base URL; None: the built-in simulator."
    )
    api_key: str | None = Field(default=None, description="Sent as a Bearer token when set.")
    connect_timeout_s: float = Field(default=3.0, gt=0)
    read_timeout_s: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=3, ge=0, description="Retries after the first attempt.")
    backoff_base_s: float = Field(default=0.25, ge=0)
    backoff_cap_s: float = Field(default=5.0, ge=0)
    max_connections: int = Field(default=16, gt=0)

    _pool: Any = PrivateAttr(default=None)
    _pool_lock: Any = PrivateAttr(default_factory=threading.Lock)

    @property
    def is_simulator(self) -> bool:
        return not self.url

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.clear()
            self._pool = None

    def get_status(self, provider_ref: str, attempt: int = 0) -> ProviderStatus:
        """The provider's status of one payment. `attempt` (checks made so far) only steers
        the simulator. Raises `PaymentNotFound`, `ProviderUnavailable` or `ProviderError`."""
        if not provider_ref:
            raise ProviderError(str(provider_ref), "empty provider reference")
        if self.is_simulator:
            return ProviderStatus(provider_ref, simulated_status(provider_ref, attempt))
        return self._http_status(provider_ref)

    # -- HTTP --------------------------------------------------------------------------------
    def _http(self) -> "urllib3.PoolManager":
        with self._pool_lock:
            if self._pool is None:
                self._pool = urllib3.PoolManager(
                    num_pools=4,
                    maxsize=self.max_connections,
                    block=False,
                    retries=False,  # our own loop retries, with jitter and clear errors
                    timeout=urllib3.Timeout(
                        connect=self.connect_timeout_s, read=self.read_timeout_s
                    ),
                )
            return self._pool

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "ops-platform"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _backoff(self, retry_number: int) -> float:
        return random.uniform(0, min(self.backoff_cap_s, self.backoff_base_s * 2**retry_number))

    def _http_status(self, provider_ref: str) -> ProviderStatus:
        url = f"{self.url.rstrip('/')}/payments/{quote(provider_ref, safe='')}"
        last_problem = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self._backoff(attempt - 1))
            try:
                response = self._http().request(
                    "GET", url, headers=self._headers(), preload_content=True
                )
            except urllib3.exceptions.HTTPError as error:
                last_problem = self._transport_problem(error)
                continue
            if response.status == 200:
                return parse_status_body(provider_ref, response.data)
            if response.status == 404:
                raise PaymentNotFound(provider_ref, "unknown reference (HTTP 404)")
            if response.status in RETRYABLE_HTTP:
                last_problem = f"HTTP {response.status}"
                continue
            raise ProviderError(
                provider_ref, f"unexpected HTTP {response.status}: {response.data[:120]!r}"
            )
        raise ProviderUnavailable(
            provider_ref, f"{last_problem} after {self.max_retries + 1} attempts at {self.peer}"
        )

    @property
    def peer(self) -> str:
        """`host:port` of the provider, for messages (its URL may carry a token)."""
        parsed = urllib3.util.parse_url(self.url)
        return f"{parsed.host}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"

    def _transport_problem(self, error: Exception) -> str:
        """What went wrong below HTTP, with the timeout that ran out if one did."""
        exceptions = urllib3.exceptions
        # Refused or unresolvable: urllib3 files it under connect timeouts, it is not one.
        if isinstance(error, exceptions.NewConnectionError):
            return f"connection failed ({error.__class__.__name__}: {error})"
        if isinstance(error, exceptions.ConnectTimeoutError):
            return f"timed out (no connection within {self.connect_timeout_s:g} s)"
        if isinstance(error, exceptions.TimeoutError):
            return f"timed out (no answer within {self.read_timeout_s:g} s)"
        return f"connection failed ({error.__class__.__name__}: {error})"


def build_payments(settings) -> PaymentProvider:
    """The provider from the environment: `OPS_PAYMENTS_URL` (+ `OPS_PAYMENTS_API_KEY`), or the simulator."""
    return PaymentProvider(
        url=from_environment("OPS_PAYMENTS_URL", settings.payments_url),
        api_key=from_environment("OPS_PAYMENTS_API_KEY", settings.payments_api_key),
    )
