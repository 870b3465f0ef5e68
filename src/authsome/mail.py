"""Sending the messages of the account journeys.

* :class:`Mailer` is what the engine needs: ``send(message)``, raising on failure.
* :class:`SMTPMailer` sends through an SMTP server with the standard library
  (STARTTLS or implicit TLS, optional login, a timeout on every step).
* :class:`MailSettings` holds what the application decides: the sender, the base
  URL its links start with (never taken from a request) and the templates.
* ``authsome.testing.Outbox`` keeps the messages, for tests.

A mailer that fails raises :class:`~authsome.errors.MailNotSent`; the journey that
asked for the message then leaves no usable token behind.
"""

from __future__ import annotations

import html
import logging
import queue
import smtplib
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import Literal, Protocol, runtime_checkable
from urllib.parse import quote, urlsplit

from authsome.errors import MailNotSent, ValidationError

__all__ = [
    "MailDispatcher",
    "MailMessage",
    "MailSettings",
    "MailTemplate",
    "Mailer",
    "SMTPMailer",
    "default_templates",
    "deliver",
]

mail_log = logging.getLogger("authsome.mail")

SMTPSecurity = Literal["starttls", "tls", "none"]


@dataclass(frozen=True, slots=True)
class MailMessage:
    """One message: plain text plus HTML. ``kind`` names the journey
    (``"verify_email"``, ``"reset_password"``, ...), for tests and logs."""

    to: str
    subject: str
    text: str
    html: str
    kind: str
    sender: str = ""

    def __repr__(self) -> str:
        # The bodies carry one-time links: a repr must never show them.
        return f"MailMessage(kind={self.kind!r}, to={self.to!r}, subject={self.subject!r})"


@runtime_checkable
class Mailer(Protocol):
    """Sends a message, or raises (any exception: the engine turns it into
    :class:`~authsome.errors.MailNotSent`)."""

    def send(self, message: MailMessage) -> None:
        """Deliver ``message`` to its recipient."""
        ...


@dataclass(frozen=True, slots=True)
class MailTemplate:
    """A message template: ``str.format`` fields ``{link}``, ``{email}``, ``{minutes}``
    (``"email_changed"``, the notice to a replaced address, has ``{email}`` and
    ``{new_email}`` instead).

    The HTML body is formatted with HTML-escaped values, the text body with raw ones.
    """

    subject: str
    text: str
    html: str

    def render(self, *, to: str, kind: str, sender: str, **fields: str) -> MailMessage:
        """The message for ``to`` with ``fields`` filled in."""
        escaped = {name: html.escape(value, quote=True) for name, value in fields.items()}
        return MailMessage(
            to=to,
            subject=self.subject.format(**fields),
            text=self.text.format(**fields),
            html=self.html.format(**escaped),
            kind=kind,
            sender=sender,
        )


def default_templates() -> dict[str, MailTemplate]:
    """The built-in templates, by journey; :class:`MailSettings` overrides any of them."""
    return {
        "verify_email": MailTemplate(
            subject="Confirm your e-mail address",
            text=(
                "Confirm that {email} is your address by opening this link within"
                " {minutes} minutes:\n\n{link}\n\nIf you did not ask for this, ignore"
                " this message.\n"
            ),
            html=(
                "<p>Confirm that {email} is your address by opening this link within"
                ' {minutes} minutes:</p><p><a href="{link}">{link}</a></p>'
                "<p>If you did not ask for this, ignore this message.</p>"
            ),
        ),
        "magic_link": MailTemplate(
            subject="Your sign-in link",
            text=(
                "Open this link within {minutes} minutes to sign in as {email}:\n\n"
                "{link}\n\nIf you did not ask for it, ignore this message.\n"
            ),
            html=(
                "<p>Open this link within {minutes} minutes to sign in as {email}:</p>"
                '<p><a href="{link}">{link}</a></p>'
                "<p>If you did not ask for it, ignore this message.</p>"
            ),
        ),
        "reset_password": MailTemplate(
            subject="Reset your password",
            text=(
                "Someone asked to reset the password of {email}. To choose a new one,"
                " open this link within {minutes} minutes:\n\n{link}\n\nIf it was not"
                " you, ignore this message: your password stays as it is.\n"
            ),
            html=(
                "<p>Someone asked to reset the password of {email}. To choose a new"
                " one, open this link within {minutes} minutes:</p>"
                '<p><a href="{link}">{link}</a></p><p>If it was not you, ignore this'
                " message: your password stays as it is.</p>"
            ),
        ),
        "change_email": MailTemplate(
            subject="Confirm your new e-mail address",
            text=(
                "Someone asked to make {email} the address of their account. If it was"
                " you, confirm it by opening this link within {minutes} minutes:\n\n"
                "{link}\n\nIf it was not you, ignore this message: nothing changes.\n"
            ),
            html=(
                "<p>Someone asked to make {email} the address of their account. If it"
                " was you, confirm it by opening this link within {minutes} minutes:</p>"
                '<p><a href="{link}">{link}</a></p><p>If it was not you, ignore this'
                " message: nothing changes.</p>"
            ),
        ),
        "email_changed": MailTemplate(
            subject="Your e-mail address was changed",
            text=(
                "The e-mail address of your account was changed from {email} to"
                " {new_email}. Messages about the account now go to the new address.\n\n"
                "If you did not make this change, contact us at once: someone else may"
                " be using your account.\n"
            ),
            html=(
                "<p>The e-mail address of your account was changed from {email} to"
                " {new_email}. Messages about the account now go to the new address.</p>"
                "<p>If you did not make this change, contact us at once: someone else"
                " may be using your account.</p>"
            ),
        ),
    }


@dataclass(frozen=True, slots=True)
class MailSettings:
    """What the application decides about its messages.

    ``link_base_url`` is the absolute ``https://`` (or ``http://`` for local
    development) URL of the application's page that handles a journey; the token
    is appended as ``?token=...`` with ``/<journey>`` added to the path. It is
    configured, never derived from a request's ``Host`` header, so a forged header
    cannot send a user's reset link to an attacker's site.
    """

    link_base_url: str = "http://localhost:8000/account"
    sender: str = "no-reply@localhost"
    templates: dict[str, MailTemplate] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parts = urlsplit(self.link_base_url)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValidationError("link_base_url must be an absolute http(s) URL")
        if parts.query or parts.fragment:
            raise ValidationError("link_base_url must not have a query or a fragment")

    def template(self, kind: str) -> MailTemplate:
        """The application's template for ``kind``, else the built-in one."""
        return self.templates.get(kind) or default_templates()[kind]

    def link(self, path: str, token: str) -> str:
        """The link of a journey carrying ``token``."""
        return f"{self.link_base_url.rstrip('/')}/{path}?token={quote(token, safe='')}"


class SMTPMailer:
    """Sends messages through an SMTP server (standard library only).

    ``security`` is ``"starttls"`` (default: plain connection upgraded before
    anything is sent; a server that does not offer it is an error), ``"tls"``
    (implicit TLS, usually port 465) or ``"none"`` (only for a relay on the same
    host). ``timeout`` bounds each network step, in seconds. The password is
    never shown in a repr.
    """

    def __init__(
        self,
        host: str,
        port: int = 587,
        *,
        security: SMTPSecurity = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        if security not in ("starttls", "tls", "none"):
            raise ValidationError('security must be "starttls", "tls" or "none"')
        if (username is None) != (password is None):
            raise ValidationError("username and password go together")
        if not timeout > 0:
            raise ValidationError("timeout must be positive")
        self.host = host
        self.port = int(port)
        self.security: SMTPSecurity = security
        self.username = username
        self._password = password
        self.timeout = float(timeout)
        self._ssl_context = ssl_context or ssl.create_default_context()
        self._local_hostname = local_hostname

    def send(self, message: MailMessage) -> None:
        """Send ``message``; :class:`~authsome.errors.MailNotSent` on any failure."""
        try:
            with self._connect() as smtp:
                if self.security == "starttls":
                    smtp.starttls(context=self._ssl_context)
                if self.username is not None and self._password is not None:
                    smtp.login(self.username, self._password)
                smtp.send_message(_email(message))
        except (OSError, smtplib.SMTPException) as exc:
            # The class name only: server replies may echo the message or the login.
            raise MailNotSent(f"SMTP delivery failed ({type(exc).__name__})") from None

    def _connect(self) -> smtplib.SMTP:
        if self.security == "tls":
            return smtplib.SMTP_SSL(
                self.host,
                self.port,
                local_hostname=self._local_hostname,
                timeout=self.timeout,
                context=self._ssl_context,
            )
        return smtplib.SMTP(
            self.host, self.port, local_hostname=self._local_hostname, timeout=self.timeout
        )

    def __repr__(self) -> str:
        return (
            f"SMTPMailer(host={self.host!r}, port={self.port}, security={self.security!r},"
            f" username={self.username!r})"
        )


def _email(message: MailMessage) -> EmailMessage:
    email = EmailMessage()
    email["From"] = formataddr(("", message.sender)) if message.sender else ""
    email["To"] = message.to
    email["Subject"] = message.subject
    email["Message-ID"] = make_msgid()
    email.set_content(message.text)
    email.add_alternative(message.html, subtype="html")
    return email


def deliver(mailer: Mailer | None, message: MailMessage) -> None:
    """Send ``message`` with ``mailer``; every failure becomes :class:`MailNotSent`."""
    if mailer is None:
        raise MailNotSent("no mailer configured: pass Authsome(mailer=...)")
    try:
        mailer.send(message)
    except MailNotSent:
        raise
    except Exception as exc:
        # The class name only: an exception of a mailer may carry the message body.
        raise MailNotSent(f"the mailer failed ({type(exc).__name__})") from None


class MailDispatcher:
    """Sends the engine's messages: now (the caller learns of a failure) or later,
    from one background thread (the caller's answer must not depend on whether a
    message was sent, nor on how long that took, e.g. a password reset that must not
    reveal which addresses exist). Jobs run one at a time, in order; a failing job
    is logged on ``authsome.mail`` (without the message) and the next one runs.
    """

    def __init__(self, mailer: Mailer | None) -> None:
        self.mailer = mailer
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def send_now(self, message: MailMessage) -> None:
        """Send in the calling thread; :class:`MailNotSent` on failure."""
        deliver(self.mailer, message)

    def later(self, job: Callable[[], None]) -> None:
        """Run ``job`` (which usually sends with :meth:`send_now`) in the background
        thread and return at once."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="authsome-mail", daemon=True)
                self._thread.start()
            self._queue.put(job)

    def flush(self) -> None:
        """Wait until every job queued so far has run."""
        self._queue.join()

    def close(self) -> None:
        """Run what is queued, then stop the background thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                job()
            except MailNotSent as exc:
                mail_log.warning("a queued message was not sent: %s", exc)
            except Exception:
                mail_log.exception("a queued mail job failed")
            finally:
                self._queue.task_done()
