"""Sending mail: SMTPMailer against a real SMTP server (aiosmtpd on 127.0.0.1),
the Outbox, templates and the configured link base URL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from authsome import Authsome, Mailer, MailMessage, MailNotSent, MailSettings, SMTPMailer
from authsome.errors import ValidationError
from authsome.mail import MailTemplate, deliver
from authsome.testing import Outbox, token_in
from tests.support.smtp_server import self_signed, silent_server, smtp_server


def _message(link: str = "https://app.example/account/reset?token=abc") -> MailMessage:
    return (
        MailSettings()
        .template("reset_password")
        .render(
            to="ann@example.com",
            kind="reset_password",
            sender="auth@example.com",
            link=link,
            email="ann@example.com",
            minutes="30",
        )
    )


def test_a_message_arrives_with_text_and_html_bodies() -> None:
    with smtp_server() as (port, received):
        SMTPMailer("127.0.0.1", port, security="none", timeout=5).send(_message())
    assert len(received.messages) == 1
    parsed = received.messages[0]
    assert parsed["To"] == "ann@example.com"
    assert parsed["Subject"] == "Reset your password"
    text, html = received.bodies()
    assert "https://app.example/account/reset?token=abc" in text
    assert '<a href="https://app.example/account/reset?token=abc">' in html


def test_starttls_with_login(tmp_path: Path) -> None:
    server_tls, client_tls = self_signed(tmp_path)
    with smtp_server(tls=server_tls, login=("mailer", "s3cret-pass")) as (port, received):
        SMTPMailer(
            "127.0.0.1",
            port,
            username="mailer",
            password="s3cret-pass",
            ssl_context=client_tls,
            timeout=5,
        ).send(_message())
    assert len(received.messages) == 1


def test_implicit_tls(tmp_path: Path) -> None:
    server_tls, client_tls = self_signed(tmp_path)
    with smtp_server(implicit_tls=server_tls) as (port, received):
        SMTPMailer("127.0.0.1", port, security="tls", ssl_context=client_tls, timeout=5).send(
            _message()
        )
    assert len(received.messages) == 1


def test_starttls_refuses_an_untrusted_certificate(tmp_path: Path) -> None:
    server_tls, _ = self_signed(tmp_path)
    with smtp_server(tls=server_tls) as (port, received), pytest.raises(MailNotSent):
        SMTPMailer("127.0.0.1", port, timeout=5).send(_message())  # default trust store
    assert received.messages == []


def test_a_wrong_login_is_mail_not_sent_without_the_password(tmp_path: Path) -> None:
    server_tls, client_tls = self_signed(tmp_path)
    with smtp_server(tls=server_tls, login=("mailer", "right-pass")) as (port, received):
        mailer = SMTPMailer(
            "127.0.0.1",
            port,
            username="mailer",
            password="wrong-pass",
            ssl_context=client_tls,
            timeout=5,
        )
        with pytest.raises(MailNotSent) as caught:
            mailer.send(_message())
    assert "wrong-pass" not in str(caught.value)
    assert "wrong-pass" not in repr(mailer)
    assert received.messages == []


def test_a_server_that_refuses_is_mail_not_sent() -> None:
    with smtp_server(refuse=True) as (port, _), pytest.raises(MailNotSent) as caught:
        SMTPMailer("127.0.0.1", port, security="none", timeout=5).send(_message())
    assert isinstance(caught.value, ConnectionError)
    assert "token" not in str(caught.value)


def test_a_server_that_never_answers_times_out() -> None:
    with silent_server() as port:
        started = time.monotonic()
        with pytest.raises(MailNotSent):
            SMTPMailer("127.0.0.1", port, security="none", timeout=0.5).send(_message())
        assert time.monotonic() - started < 10


def test_nothing_listening_is_mail_not_sent() -> None:
    with silent_server() as port:
        pass  # closed again: the port refuses connections
    with pytest.raises(MailNotSent):
        SMTPMailer("127.0.0.1", port, security="none", timeout=2).send(_message())


def test_the_outbox_keeps_messages_and_finds_their_token() -> None:
    outbox = Outbox()
    assert isinstance(outbox, Mailer)
    outbox.send(_message("https://app.example/a/reset?token=Zx-9_y"))
    assert len(outbox) == 1
    assert outbox.last("ann@example.com").kind == "reset_password"
    assert outbox.token() == "Zx-9_y"
    with pytest.raises(LookupError):
        outbox.last("bob@example.com")


def test_a_failing_mailer_becomes_mail_not_sent() -> None:
    outbox = Outbox()
    outbox.fail_with = RuntimeError("relay said no to token=abc")
    with pytest.raises(MailNotSent) as caught:
        deliver(outbox, _message())
    assert "abc" not in str(caught.value)
    with pytest.raises(MailNotSent):
        deliver(None, _message())


def test_templates_escape_html_and_can_be_overridden() -> None:
    settings = MailSettings(
        link_base_url="https://app.example/account/",
        templates={"reset_password": MailTemplate("Reset {email}", "Go: {link}", "<b>{link}</b>")},
    )
    link = settings.link("reset", "a b&c")
    assert link == "https://app.example/account/reset?token=a%20b%26c"
    message = settings.template("reset_password").render(
        to="x@example.com", kind="reset_password", sender="", link=link, email="<x>", minutes="1"
    )
    assert message.subject == "Reset <x>"
    assert token_in(message.text) == "a b&c"
    assert message.html == "<b>https://app.example/account/reset?token=a%20b%26c</b>"
    assert "token" not in repr(message)


@pytest.mark.parametrize(
    "url", ["app.example/account", "ftp://app.example", "https://", "https://a.example/?next=x"]
)
def test_the_link_base_url_must_be_an_absolute_http_url(url: str) -> None:
    with pytest.raises(ValidationError):
        MailSettings(link_base_url=url)


def test_the_engine_takes_only_a_mailer() -> None:
    outbox = Outbox()
    assert Authsome(mailer=outbox).mailer is outbox
    with pytest.raises(TypeError):
        Authsome(mailer=object())  # type: ignore[arg-type]
