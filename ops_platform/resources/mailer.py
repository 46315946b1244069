"""The `mailer` resource: SMTP (`OPS_SMTP_URL`) or, by default, a local outbox folder.

`OPS_SMTP_URL` forms:
- `smtp://user:pass@host:587` — plain SMTP; STARTTLS is used whenever the server offers it,
  and required with `?starttls=true` (`?starttls=false` never upgrades).
- `smtps://user:pass@host:465` — implicit TLS.
- `?timeout=30` (seconds), `?cafile=/path/ca.pem` (trust a private CA),
  `?verify=false` (no certificate check, for test servers only).
Credentials are optional and URL-encoded; with them the client logs in after TLS.

One connection is opened on the first message and reused for the whole run; a server
that hangs up between messages is reconnected once. The caller sets a stable Message-ID
so that a message sent twice (a crash between send and bookkeeping) can be recognised.
"""

import contextlib
import os
import re
import smtplib
import tempfile
from datetime import datetime
from email.charset import QP, Charset
from email.header import Header
from email.message import EmailMessage
from email.policy import compat32
from email.utils import format_datetime
from pathlib import Path

from ops_platform.resources._connection import HeldConnection
from ops_platform.resources._environment import from_environment
from ops_platform.settings import SmtpSettings, redact_url


class MailError(RuntimeError):
    """A message could not be delivered; `permanent` when retrying cannot help (5xx)."""

    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class MailServerUnavailable(MailError):
    """The mail server cannot be reached or keeps hanging up: nothing else will get through.
    `during_send`: it hung up while taking a message (that message may be the cause)."""

    def __init__(self, message: str, during_send: bool = False):
        super().__init__(message, permanent=False)
        self.during_send = during_send


_UTF8_QUOTED_PRINTABLE = Charset("utf-8")
_UTF8_QUOTED_PRINTABLE.body_encoding = QP


def _one_line(value: str) -> str:
    """Header values never carry line breaks (no header injection from stored text)."""
    return " ".join(str(value).split())


def plain_text_email(
    *, message_id: str, sender: str, to: str, subject: str, body: str, date: datetime
) -> EmailMessage:
    """A text/plain UTF-8 message. Built with the compat32 policy: the default policy's
    header parsing cost more CPU per mail than the SMTP exchange itself."""
    message = EmailMessage(policy=compat32)
    message["Message-ID"] = _one_line(message_id)
    message["From"] = _one_line(sender)
    message["To"] = _one_line(to)
    message["Date"] = format_datetime(date)
    subject = _one_line(subject)
    message["Subject"] = subject if subject.isascii() else Header(subject, "utf-8")
    message["MIME-Version"] = "1.0"
    message.set_payload(body, _UTF8_QUOTED_PRINTABLE)
    return message


class SmtpTransport:
    """One SMTP connection, opened lazily, reused, reopened once if the server hung up."""

    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self._client: smtplib.SMTP | None = None
        self.connections_opened = 0

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        try:
            if s.implicit_tls:
                client = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout, context=s.tls_context()
                )
            else:
                client = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            client.ehlo()
            if not s.implicit_tls and s.starttls is not False:
                if client.has_extn("starttls"):
                    client.starttls(context=s.tls_context())
                    client.ehlo()
                elif s.starttls:
                    client.close()
                    raise MailServerUnavailable(
                        f"SMTP server {s.host}:{s.port} does not offer STARTTLS, which ?starttls=true requires"
                    )
            if s.username:
                client.login(s.username, s.password or "")
        except smtplib.SMTPAuthenticationError as error:
            raise MailServerUnavailable(
                f"SMTP login to {s.host}:{s.port} refused: {error.smtp_code} {_text(error.smtp_error)}"
            ) from error
        except (OSError, smtplib.SMTPException) as error:
            if isinstance(error, MailServerUnavailable):
                raise
            raise MailServerUnavailable(
                f"cannot reach SMTP server {s.host}:{s.port}: {error}"
            ) from error
        self.connections_opened += 1
        return client

    def send(self, message: EmailMessage) -> None:
        for attempt in (1, 2):
            if self._client is None:
                self._client = self._connect()
            try:
                self._client.send_message(message)
                return
            # SMTPException derives from OSError: the refusals must be caught first.
            except smtplib.SMTPRecipientsRefused as error:
                codes = [code for code, _ in error.recipients.values()]
                detail = "; ".join(
                    f"{rcpt}: {code} {_text(msg)}" for rcpt, (code, msg) in error.recipients.items()
                )
                raise MailError(
                    f"recipient refused: {detail}", permanent=all(c >= 500 for c in codes)
                ) from error
            except smtplib.SMTPResponseException as error:
                raise MailError(
                    f"SMTP {error.smtp_code} {_text(error.smtp_error)}",
                    permanent=error.smtp_code >= 500,
                ) from error
            except smtplib.SMTPServerDisconnected as error:
                lost = error
            except smtplib.SMTPException as error:
                raise MailError(f"SMTP error: {error}") from error
            except OSError as error:  # reset, broken pipe, timeout
                lost = error
            # The server closed an idle connection (or died): reconnect once.
            self._drop()
            if attempt == 2:
                raise MailServerUnavailable(
                    f"SMTP server {self.settings.host}:{self.settings.port} hung up twice while sending: {lost}",
                    during_send=True,
                ) from lost

    def _drop(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._client.quit()
            self._drop()


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class OutboxTransport:
    """Writes each message as `<outbox>/<message-id>.eml`; a re-send replaces the same file."""

    def __init__(self, folder: Path):
        self.folder = folder

    def send(self, message: EmailMessage) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        message_id = message.get("Message-ID") or ""
        stem = re.sub(r"[^A-Za-z0-9._@-]+", "_", message_id.strip("<>")) or "message"
        # Write then rename: a reader never sees half a message.
        handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        with os.fdopen(handle, "wb") as file:
            file.write(message.as_bytes())
        os.replace(temporary, self.folder / f"{stem}.eml")

    def close(self) -> None:
        pass


class Mailer(HeldConnection):
    """Sends email over SMTP when `smtp_url` is set, else into the outbox folder."""

    smtp_url: str | None = None
    mail_from: str = "ops-platform@localhost"
    outbox_dir: str = ".ops_platform/outbox"

    @property
    def target(self) -> str:
        """Where mail goes, without secrets (for logs and metadata)."""
        return redact_url(self.smtp_url) if self.smtp_url else f"outbox {self.outbox_dir}"

    def _get_transport(self):
        if self._connection is None:
            if self.smtp_url:
                self._connection = SmtpTransport(SmtpSettings.from_url(self.smtp_url))
            else:
                self._connection = OutboxTransport(Path(self.outbox_dir))
        return self._connection

    def send(self, message: EmailMessage) -> None:
        """Deliver one message. Raises `MailError` (per message) or `MailServerUnavailable`."""
        if "Message-ID" not in message:
            raise ValueError(
                "a message needs a Message-ID set by the caller (it identifies duplicates)"
            )
        if "From" not in message:
            message["From"] = self.mail_from
        self._get_transport().send(message)

    def __enter__(self) -> "Mailer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def build_mailer(settings) -> Mailer:
    """SMTP when `OPS_SMTP_URL` is set, else the outbox folder (`OPS_OUTBOX_DIR`)."""
    return Mailer(
        smtp_url=from_environment("OPS_SMTP_URL", settings.smtp_url),
        mail_from=settings.mail_from,
        outbox_dir=str(settings.outbox_dir),
    )
