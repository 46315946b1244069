"""The email of a claimed notification batch: one message to the batch's user listing its
notifications, under the batch's stable Message-ID. A batch that can never be sent as it is
(missing user, address or notifications) raises `BadBatch`."""

import contextlib
import json
from collections.abc import Iterator
from datetime import datetime
from email.message import EmailMessage

from sqlalchemy import Engine, select

from ops_platform.db import schema
from ops_platform.jobs._email_queue import ClaimedBatch, batch_message_id
from ops_platform.resources.mailer import plain_text_email


class BadBatch(ValueError):
    """A batch that can never be sent as it is (missing user, address or notifications)."""


def parse_notification_ids(batch: ClaimedBatch) -> list[int]:
    raw = batch.notification_ids_json
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
        if isinstance(value, str):  # JSON stored as a JSON string
            value = json.loads(value)
        ids = [int(item) for item in value]
    except (TypeError, ValueError):
        raise BadBatch(
            f"batch {batch.id}: notification_ids {raw!r} is not a JSON list of ids"
        ) from None
    if not ids:
        raise BadBatch(f"batch {batch.id}: notification_ids is empty")
    return ids


def _chunks(values: list, size: int = 5000) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def load_recipients_and_notifications(
    engine: Engine, batches: list[ClaimedBatch]
) -> tuple[dict, dict]:
    """Email address per user id and notification row per id, for every claimed batch at once."""
    user_ids = sorted({b.user_id for b in batches if b.user_id is not None})
    notification_ids: set[int] = set()
    for batch in batches:
        with contextlib.suppress(BadBatch):
            notification_ids.update(parse_notification_ids(batch))
    users, notes = {}, {}
    n = schema.notifications
    with engine.connect() as connection:
        for chunk in _chunks(user_ids):
            users.update(
                connection.execute(
                    select(schema.users.c.id, schema.users.c.email).where(
                        schema.users.c.id.in_(chunk)
                    )
                ).all()
            )
        for chunk in _chunks(sorted(notification_ids)):
            for row in connection.execute(
                select(n.c.id, n.c.user_id, n.c.title, n.c.body, n.c.created_at).where(
                    n.c.id.in_(chunk)
                )
            ):
                notes[row.id] = row
    return users, notes


def build_batch_email(
    batch: ClaimedBatch, users: dict, notes: dict, mail_from: str, now: datetime
) -> EmailMessage:
    """One email listing the batch's notifications; raises BadBatch for a batch that cannot be sent."""
    if batch.user_id is None:
        raise BadBatch(f"batch {batch.id}: no user_id")
    if batch.user_id not in users:
        raise BadBatch(f"batch {batch.id}: user {batch.user_id} does not exist")
    address = (users[batch.user_id] or "").strip()
    if "@" not in address or any(c.isspace() for c in address):
        raise BadBatch(f"batch {batch.id}: user {batch.user_id} has no email address ({address!r})")
    # Only the user's own notifications (or broadcast ones): never mail someone else's.
    wanted = parse_notification_ids(batch)
    found = [notes[i] for i in wanted if i in notes and notes[i].user_id in (None, batch.user_id)]
    if not found:
        raise BadBatch(
            f"batch {batch.id}: none of notifications {wanted[:10]} exist for user {batch.user_id}"
        )

    lines = []
    for note in found:
        lines.append(f"• {note.title}")
        if note.body:
            lines.append(f"  {note.body}")
        lines.append("")
    return plain_text_email(
        message_id=batch_message_id(batch.id),
        sender=mail_from,
        to=address,
        subject=found[0].title if len(found) == 1 else f"You have {len(found)} new notifications",
        body="\n".join(lines).rstrip() + "\n",
        date=now,
    )
