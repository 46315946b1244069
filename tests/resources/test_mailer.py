"""The mailer against real aiosmtpd servers: STARTTLS with login, implicit TLS, one reused
connection, reconnect after the server hung up, clear errors; the outbox default."""

import datetime
import ipaddress
import ssl
from email.message import EmailMessage

import dagster as dg
import pytest
from aiosmtpd.smtp import AuthResult

from ops_platform.resources.mailer import Mailer, MailServerUnavailable, SmtpSettings, build_mailer
from ops_platform.settings import load_settings
from tests.smtp_server import CollectingHandler, free_port, smtp_server

cryptography = pytest.importorskip("cryptography")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (cert path, key path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(folder / "cert.pem"), str(folder / "key.pem")


def server_context(certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def message(number: int) -> EmailMessage:
    m = EmailMessage()
    m["Message-ID"] = f"<test-{number}@ops-platform>"
    m["To"] = "someone@example.com"
    m["Subject"] = f"message {number}"
    m.set_content("hello")
    return m


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (auth_data.login, auth_data.password) == (b"ops", b"p@ss word")
    return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535


def test_starttls_and_login_over_one_connection(certificate):
    port = free_port()
    with smtp_server(
        port=port,
        tls_context=server_context(certificate),
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    ) as (_, handler):
        url = f"smtp://ops:p%40ss%20word@127.0.0.1:{port}?timeout=5&cafile={certificate[0]}"
        with Mailer(smtp_url=url) as mailer:
            for number in range(5):
                mailer.send(message(number))
        assert len(handler.messages) == 5 and handler.connections == 1
        with (
            Mailer(smtp_url=url.replace("p%40ss", "wrong")) as mailer,
            pytest.raises(MailServerUnavailable, match="login .* refused: 535"),
        ):
            mailer.send(message(9))


def test_implicit_tls(certificate):
    port = free_port()
    with smtp_server(port=port, ssl_context=server_context(certificate)) as (_, handler):
        with Mailer(smtp_url=f"smtps://127.0.0.1:{port}?cafile={certificate[0]}") as mailer:
            mailer.send(message(1))
        assert handler.message_ids == {"<test-1@ops-platform>": 1}


def test_required_starttls_missing_is_a_clear_error():
    with (
        smtp_server() as (url, _),
        Mailer(smtp_url=f"{url}?starttls=true") as mailer,
        pytest.raises(MailServerUnavailable, match="does not offer STARTTLS"),
    ):
        mailer.send(message(1))


def test_reconnects_once_after_the_server_hung_up():
    handler, port = CollectingHandler(), free_port()
    with Mailer(smtp_url=f"smtp://127.0.0.1:{port}") as mailer:
        with smtp_server(handler, port=port):
            mailer.send(message(1))
        # the server went away with our idle connection… and comes back
        with smtp_server(handler, port=port):
            mailer.send(message(2))
            assert handler.message_ids == {"<test-1@ops-platform>": 1, "<test-2@ops-platform>": 1}
            assert mailer._get_transport().connections_opened == 2


def test_outbox_needs_a_message_id_and_writes_eml(tmp_path):
    mailer = Mailer(outbox_dir=str(tmp_path / "outbox"), mail_from="ops@example.com")
    mailer.send(message(1))
    mailer.send(message(1))  # the same message again replaces its file
    [path] = (tmp_path / "outbox").iterdir()
    assert path.name == "test-1@ops-platform.eml" and "From: ops@example.com" in path.read_text()
    anonymous = message(2)
    del anonymous["Message-ID"]
    with pytest.raises(ValueError, match="needs a Message-ID"):
        mailer.send(anonymous)


@pytest.mark.parametrize(
    "url, expected",
    [
        (
            "smtp://mail.example.com",
            dict(
                host="mail.example.com", port=25, implicit_tls=False, starttls=None, username=None
            ),
        ),
        (
            "smtps://u:p@mail.example.com",
            dict(port=465, implicit_tls=True, username="u", password="p"),
        ),
        (
            "smtp://a%40b:x@h:587?starttls=false&timeout=5",
            dict(port=587, starttls=False, username="a@b", timeout=5.0),
        ),
    ],
)
def test_smtp_url_forms(url, expected):
    settings = SmtpSettings.from_url(url)
    for key, value in expected.items():
        assert getattr(settings, key) == value, key


@pytest.mark.parametrize(
    "url, message",
    [
        ("smtp://h:notaport", "OPS_SMTP_URL"),
        ("smtps://h?starttls=true", "already TLS"),
        ("smtp://h?starttls=maybe", "is not a boolean"),
    ],
)
def test_bad_smtp_urls_are_clear_errors(url, message):
    with pytest.raises(ValueError, match=message):
        SmtpSettings.from_url(url)


def test_build_mailer_from_settings(tmp_path):
    outbox = build_mailer(load_settings({"OPS_DATA_DIR": str(tmp_path)}))
    assert outbox.smtp_url is None and outbox.outbox_dir == str(tmp_path / "outbox")
    smtp = build_mailer(load_settings({"OPS_SMTP_URL": "smtp://u:secret@mail.example.com:587"}))
    # The URL holds a password: the resource gets the variable, read when a run starts.
    assert isinstance(smtp.smtp_url, dg.EnvVar) and smtp.smtp_url == "OPS_SMTP_URL"
    assert Mailer(smtp_url="smtp://u:secret@mail.example.com:587").target == (
        "smtp://u:***@mail.example.com:587"
    )


def test_plain_text_email_round_trips_unicode_and_refuses_header_injection():
    from email import message_from_bytes, policy

    from ops_platform.resources.mailer import plain_text_email

    built = plain_text_email(
        message_id="<m-1@ops-platform>",
        sender="ops@example.com",
        to="zoë@example.com",
        subject="Café ouvert\r\nBcc: attacker@example.com",
        body="Grüße — see you\n",
        date=datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    )
    parsed = message_from_bytes(built.as_bytes(), policy=policy.default)
    assert parsed["Subject"] == "Café ouvert Bcc: attacker@example.com"
    assert parsed["Bcc"] is None
    assert parsed.get_content() == "Grüße — see you\n"
    assert parsed["Date"] == "Fri, 02 Jan 2026 03:04:05 +0000"
