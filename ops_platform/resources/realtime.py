"""The `realtime` resource: publishes to the web app's real-time channel, Redis pub/sub.

`OPS_REDIS_URL` (`redis://[:password@]host:6379/0`, or `rediss://` for TLS) picks the
server. With none configured the publisher is disabled (`enabled` False): events stay in
the `realtime_events` outbox until a server is configured.

`publish_many` sends a batch of (channel, message) pairs in one pipeline round trip.
Connecting and timeouts are bounded (`socket_timeout_s`); a lost connection is retried by
redis-py with exponential backoff and jitter, and what still fails raises
`RealtimeUnavailable` for the job to retry later.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import Field

from ops_platform.lazy import lazy_module

if TYPE_CHECKING:
    import redis
    import redis.backoff
    import redis.retry
else:
    redis = lazy_module("redis")

from ops_platform.resources._connection import HeldConnection
from ops_platform.resources._environment import from_environment
from ops_platform.settings import redact_url


class RealtimeUnavailable(RuntimeError):
    """Redis could not be reached or failed through every retry."""


class RealtimePublisher(HeldConnection):
    """Redis pub/sub publisher; disabled when no URL is configured."""

    url: str | None = Field(default=None, description="Redis URL; None: publishing disabled.")
    socket_timeout_s: float = Field(default=5.0, gt=0)
    retries: int = Field(default=3, ge=0)

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def _redis(self) -> "redis.Redis":
        if self._connection is None:
            self._connection = redis.Redis.from_url(
                self.url,
                socket_timeout=self.socket_timeout_s,
                socket_connect_timeout=self.socket_timeout_s,
                retry=redis.retry.Retry(
                    redis.backoff.ExponentialWithJitterBackoff(base=0.1, cap=2.0), self.retries
                ),
                retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            )
        return self._connection

    def publish_many(self, messages: Sequence[tuple[str, str]]) -> list[int]:
        """Publish (channel, message) pairs in order, one pipeline; returns the receiver
        count of each message."""
        if not self.enabled:
            raise RealtimeUnavailable("no Redis configured (OPS_REDIS_URL is not set)")
        if not messages:
            return []
        pipeline = self._redis().pipeline(transaction=False)
        for channel, message in messages:
            pipeline.publish(channel, message)
        try:
            return pipeline.execute()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise RealtimeUnavailable(f"Redis at {self.safe_url} failed: {error}") from error

    @property
    def safe_url(self) -> str:
        """The URL without its password, for logs."""
        return redact_url(self.url) if self.url else "(none)"


def build_realtime(settings) -> RealtimePublisher:
    return RealtimePublisher(url=from_environment("OPS_REDIS_URL", settings.redis_url))
