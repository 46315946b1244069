"""A real SMTP server for tests: aiosmtpd on a free local port, collecting what it receives.

`fail_every=3` answers every third DATA with `451` (a transient refusal);
`refuse={"a@x"}` rejects those recipients with `550` (a permanent one).
"""

import contextlib
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class CollectingHandler:
    def __init__(self, fail_every: int = 0, refuse: set[str] | None = None):
        self.fail_every = fail_every
        self.refuse = {address.lower() for address in refuse or ()}
        self.messages = []
        self.data_commands = 0
        self.peers: set = set()
        self._lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            self.data_commands += 1
            self.peers.add(session.peer)
            if self.fail_every and self.data_commands % self.fail_every == 0:
                return "451 4.3.0 temporary failure, try again later"
            self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    @property
    def message_ids(self) -> Counter:
        return Counter(message["Message-ID"] for message in self.messages)

    @property
    def connections(self) -> int:
        return len(self.peers)


@contextlib.contextmanager
def smtp_server(
    handler: CollectingHandler | None = None, port: int | None = None, **controller_options
) -> Iterator[tuple[str, CollectingHandler]]:
    """Yields (smtp URL, handler) while a server runs on `port` (a free one by default)."""
    handler = handler or CollectingHandler()
    port = port or free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **controller_options)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}", handler
    finally:
        controller.stop()
