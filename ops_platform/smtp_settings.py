"""`OPS_SMTP_URL`: the mail server's address, TLS mode, login and options, parsed and checked."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from ops_platform.setting_checks import SettingsError, parse_bool, redact_url

SMTP_QUERY_KEYS = ("starttls", "timeout", "cafile", "verify")


@dataclass(frozen=True)
class SmtpSettings:
    """`OPS_SMTP_URL` parsed: `smtp[s]://[user:pass@]host[:port][?starttls=&timeout=&cafile=&verify=]`."""

    host: str
    port: int
    implicit_tls: bool
    starttls: bool | None  # None: when offered; True: required; False: never
    username: str | None = field(repr=False)
    password: str | None = field(repr=False)
    timeout: float
    cafile: str | None
    verify: bool

    @classmethod
    def from_url(cls, url: str, name: str = "OPS_SMTP_URL") -> SmtpSettings:
        """Every part checked; `SettingsError` naming the variable and the part otherwise."""
        parsed = urlparse(url)
        shown = f"{name}={redact_url(url)!r}"
        if parsed.scheme not in ("smtp", "smtps"):
            raise SettingsError(f"{shown}: scheme must be smtp or smtps")
        if not parsed.hostname:
            raise SettingsError(f"{shown} has no host")
        query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
        unknown = sorted(set(query) - set(SMTP_QUERY_KEYS))
        if unknown:
            raise SettingsError(
                f"{name}: unknown option ?{unknown[0]}=; options are {', '.join(SMTP_QUERY_KEYS)}"
            )
        implicit_tls = parsed.scheme == "smtps"
        starttls = (
            parse_bool(f"{name} ?starttls", query["starttls"]) if "starttls" in query else None
        )
        if implicit_tls and starttls:
            raise SettingsError(f"{name}: smtps:// is already TLS; drop ?starttls=true")
        try:
            port = parsed.port or (465 if implicit_tls else 25)
        except ValueError:
            raise SettingsError(f"{shown}: the port is not a number from 1 to 65535") from None
        try:
            timeout = float(query.get("timeout", 30))
        except ValueError:
            timeout = 0.0
        if not 0 < timeout < float("inf"):
            raise SettingsError(
                f"{name}: ?timeout={query['timeout']!r} is not a positive number of seconds"
            )
        cafile = query.get("cafile")
        if cafile is not None and not Path(cafile).is_file():
            raise SettingsError(f"{name}: ?cafile={cafile!r} is not a file")
        return cls(
            host=parsed.hostname,
            port=port,
            implicit_tls=implicit_tls,
            starttls=starttls,
            username=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            timeout=timeout,
            cafile=cafile,
            verify=parse_bool(f"{name} ?verify", query.get("verify", "true")),
        )

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.cafile)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def check_smtp_url(name: str, value: str | None) -> str | None:
    if value is not None:
        SmtpSettings.from_url(value, name)
    return value
