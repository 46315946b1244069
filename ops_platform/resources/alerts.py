"""The `alerts` resource: where operational alerts go.

- `OPS_ALERT_WEBHOOK_URL`: a Slack-compatible incoming webhook; the alert is POSTed as JSON
  `{"text": ..., "attachments": [...]}` with a timeout, retried with backoff on network
  errors, 429 and 5xx.
- `OPS_ALERT_EMAIL`: comma-separated addresses, mailed through the mailer's settings
  (`OPS_SMTP_URL`, or the local outbox folder by default).
- Always: one JSON line per alert appended to `alerts.log` in the log folder
  (`OPS_LOG_DIR`, default `.ops_platform/logs/`), and a log record. With no channel
  configured that file is where alerts are read.
A channel that still fails after its retries raises `AlertDeliveryError` once every other
channel has been tried.
"""

import json
import logging
import random
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib import error as urlerror
from urllib import request as urlrequest

import dagster as dg

from ops_platform.resources._environment import from_environment
from ops_platform.resources.mailer import Mailer, MailError, plain_text_email
from ops_platform.settings import redact_url

log = logging.getLogger("ops_platform.alerts")

SEVERITIES = ("info", "warning", "error", "critical")
# Slack attachment colours per severity.
COLOURS = {"info": "#439FE0", "warning": "#F2C744", "error": "#E01E5A", "critical": "#8B0000"}
LOG_LEVELS = {
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


class AlertDeliveryError(RuntimeError):
    """At least one configured channel could not deliver the alert."""


def slack_payload(title: str, text: str, severity: str) -> dict:
    """Slack-compatible body: `text` alone is enough for any receiver; the attachment adds colour."""
    return {
        "text": f"[{severity.upper()}] {title}",
        "attachments": [
            {
                "color": COLOURS[severity],
                "title": title,
                "text": text,
                "footer": "ops_platform",
                "ts": int(time.time()),
            }
        ],
    }


class Alerts(dg.ConfigurableResource):
    """Sends alerts to the webhook and/or email configured, and always to the alerts log."""

    webhook_url: str | None = None
    email_to: str | None = None
    smtp_url: str | None = None
    mail_from: str = "ops-platform@localhost"
    outbox_dir: str = ".ops_platform/outbox"
    log_file: str = ".ops_platform/logs/alerts.log"
    timeout_s: float = 10.0
    attempts: int = 3
    retry_base_s: float = 0.5

    @property
    def channels(self) -> list[str]:
        return [
            name for name, on in (("webhook", self.webhook_url), ("email", self.email_to)) if on
        ] or ["log"]

    def send(self, title: str, text: str, severity: str = "error") -> list[str]:
        """Deliver one alert; returns the channels that took it."""
        if severity not in SEVERITIES:
            raise ValueError(f"alert severity {severity!r} is not one of {', '.join(SEVERITIES)}")
        log.log(LOG_LEVELS[severity], "%s: %s", title, text)
        self._append_to_log(title, text, severity)
        delivered, failures = ["log"], []
        for name, deliver in (("webhook", self._post_webhook), ("email", self._send_email)):
            if name not in self.channels:
                continue
            try:
                deliver(title, text, severity)
                delivered.append(name)
            except Exception as error:  # every channel gets its chance before we report
                failures.append(f"{name}: {error}")
        if failures:
            raise AlertDeliveryError(f"alert {title!r} not delivered to " + "; ".join(failures))
        return delivered

    def _append_to_log(self, title: str, text: str, severity: str) -> None:
        path = Path(self.log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        line = {
            "at": datetime.now(UTC).isoformat(),
            "severity": severity,
            "title": title,
            "text": text,
        }
        with path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(line) + "\n")

    def _post_webhook(self, title: str, text: str, severity: str) -> None:
        body = json.dumps(slack_payload(title, text, severity)).encode()
        last_error = ""
        for attempt in range(self.attempts):
            if attempt:
                # Exponential backoff with jitter.
                time.sleep(self.retry_base_s * 2 ** (attempt - 1) * random.uniform(1, 1.5))
            request = urlrequest.Request(
                self.webhook_url,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            try:
                with urlrequest.urlopen(request, timeout=self.timeout_s) as response:
                    response.read()
                return
            except urlerror.HTTPError as error:
                last_error = f"HTTP {error.code} {error.reason}"
                if error.code != 429 and error.code < 500:
                    break  # the receiver rejects this request: retrying will not help
            except (urlerror.URLError, OSError) as error:
                last_error = str(getattr(error, "reason", error))
        raise AlertDeliveryError(
            f"webhook {redact_url(self.webhook_url, keep_path=False)} failed: {last_error}"
        )

    def _send_email(self, title: str, text: str, severity: str) -> None:
        message = plain_text_email(
            message_id=f"<alert-{uuid.uuid4().hex}@ops-platform>",
            sender=self.mail_from,
            to=", ".join(a.strip() for a in self.email_to.split(",")),
            subject=f"[{severity.upper()}] {title}",
            body=text + "\n",
            date=datetime.now(UTC),
        )
        with Mailer(
            smtp_url=self.smtp_url, mail_from=self.mail_from, outbox_dir=self.outbox_dir
        ) as mailer:
            try:
                mailer.send(message)
            except MailError as error:
                raise AlertDeliveryError(
                    f"alert email to {self.email_to} failed: {error}"
                ) from error


def build_alerts(settings) -> Alerts:
    """The alerts resource from the environment (see the module docstring)."""
    return Alerts(
        webhook_url=from_environment("OPS_ALERT_WEBHOOK_URL", settings.alert_webhook_url),
        email_to=settings.alert_email,
        smtp_url=from_environment("OPS_SMTP_URL", settings.smtp_url),
        mail_from=settings.mail_from,
        outbox_dir=str(settings.outbox_dir),
        log_file=str(settings.log_dir / "alerts.log"),
    )
