"""A real SAML 2.0 identity provider on 127.0.0.1: pysaml2's IdP (``saml2.server.Server``,
signing through the ``xmlsec1`` program) behind a small HTTP server.

The browser journey is the real one: ``GET /sso?SAMLRequest=...`` (HTTP-Redirect
binding, signature checked when the IdP wants signed requests) answers a login form;
``POST /login`` with a configured user's password answers the auto-POST form carrying
the signed ``SAMLResponse`` and the ``RelayState``. :class:`Browser` plays the browser.
Responses can also be asked for directly (:meth:`SamlIdP.response`), IdP-initiated
ones included, for the tests that tamper with a real signed response.
"""

from __future__ import annotations

import base64
import html
import re
import shutil
import subprocess
import tempfile
import threading
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID

with warnings.catch_warnings():
    # pysaml2 imports a cipher mode cryptography has deprecated; the IdP never uses it.
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
    from saml2.config import IdPConfig
    from saml2.metadata import create_metadata_string
    from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
    from saml2.server import Server

from tests.support.ports import free_tcp_port

XMLSEC1 = shutil.which("xmlsec1")
_AUTHN = {"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"}
# pysaml2 signs with SHA-1 unless told; an SP rightly refuses that.
_SHA256 = {
    "sign_alg": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "digest_alg": "http://www.w3.org/2001/04/xmlenc#sha256",
}


@dataclass(frozen=True)
class KeyPair:
    """An RSA key and its self-signed certificate, PEM."""

    key: rsa.RSAPrivateKey
    certificate_pem: str
    key_pem: str = field(repr=False)


def new_key_pair(
    common_name: str = "test-idp", *, valid_for: timedelta = timedelta(days=30)
) -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + valid_for)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return KeyPair(key=key, certificate_pem=cert_pem, key_pem=key_pem)


@dataclass(frozen=True)
class IdPUser:
    password: str
    name_id: str
    attributes: dict[str, list[str]]


class SamlIdP:
    """pysaml2's IdP serving one SP (given by its metadata XML) on a free port."""

    def __init__(
        self,
        sp_metadata: str,
        *,
        users: dict[str, IdPUser],
        keys: KeyPair,
        want_signed_requests: bool = False,
    ) -> None:
        if XMLSEC1 is None:
            raise RuntimeError("the xmlsec1 program is needed (Debian package xmlsec1)")
        self.port = free_tcp_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.entity_id = f"{self.base_url}/idp"
        self.sso_url = f"{self.base_url}/sso"
        self.keys = keys
        self.users = users
        self._dir = Path(tempfile.mkdtemp(prefix="saml-idp-"))
        self.server = Server(config=self._config(sp_metadata, want_signed_requests))

    def _config(self, sp_metadata: str, want_signed_requests: bool) -> IdPConfig:
        key_file = self._dir / "idp.key"
        cert_file = self._dir / "idp.crt"
        key_file.write_text(self.keys.key_pem)
        cert_file.write_text(self.keys.certificate_pem)
        settings: dict[str, Any] = {
            "entityid": self.entity_id,
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [(self.sso_url, BINDING_HTTP_REDIRECT)]
                    },
                    "policy": {"default": {"lifetime": {"minutes": 5}}},
                    "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                    "want_authn_requests_signed": want_signed_requests,
                }
            },
            "key_file": str(key_file),
            "cert_file": str(cert_file),
            "metadata": {"inline": [sp_metadata]},
            "xmlsec_binary": XMLSEC1,
            "accepted_time_diff": 60,
        }
        config = IdPConfig()
        config.load(settings)
        return config

    def metadata(self) -> str:
        """This IdP's metadata XML (what an SP imports)."""
        return create_metadata_string(None, self.server.config, valid=1).decode("utf-8")

    def response(
        self,
        user: str,
        *,
        sp_entity_id: str,
        acs_url: str,
        in_response_to: str | None,
        sign_response: bool = False,
        sign_assertion: bool = True,
        sha1: bool = False,
    ) -> str:
        """A base64 SAMLResponse for ``user``, signed as asked (SHA-256, or pysaml2's
        SHA-1 default with ``sha1``)."""
        account = self.users[user]
        name_id = NameID(format=NAMEID_FORMAT_PERSISTENT, text=account.name_id)
        response = self.server.create_authn_response(
            dict(account.attributes),
            in_response_to,
            acs_url,
            sp_entity_id,
            name_id=name_id,
            authn=_AUTHN,
            **({} if sha1 else _SHA256),
            sign_response=sign_response,
            sign_assertion=sign_assertion,
        )
        http = self.server.apply_binding(
            BINDING_HTTP_POST, str(response), acs_url, "", response=True
        )
        return _form_fields(http["data"])["SAMLResponse"]

    # -- the HTTP side --------------------------------------------------------------

    def _login_form(self, query: dict[str, str]) -> str:
        request = self.server.parse_authn_request(
            query["SAMLRequest"],
            BINDING_HTTP_REDIRECT,
            relay_state=query.get("RelayState"),
            sigalg=query.get("SigAlg"),
            signature=query.get("Signature"),
        )
        if request is None:
            raise ValueError("refused request")
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(query[name])}">'
            for name in ("SAMLRequest", "RelayState", "SigAlg", "Signature")
            if name in query
        )
        login = '<input name="user"><input name="password">'
        return f'<form method="post" action="/login">{hidden}{login}</form>'

    def _login(self, form: dict[str, str]) -> str:
        request = self.server.parse_authn_request(
            form["SAMLRequest"],
            BINDING_HTTP_REDIRECT,
            relay_state=form.get("RelayState"),
            sigalg=form.get("SigAlg"),
            signature=form.get("Signature"),
        )
        account = self.users.get(form.get("user", ""))
        if request is None or account is None or account.password != form.get("password"):
            raise PermissionError("login refused")
        args = self.server.response_args(request.message, [BINDING_HTTP_POST])
        response = self.server.create_authn_response(
            dict(account.attributes),
            args["in_response_to"],
            args["destination"],
            args["sp_entity_id"],
            name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=account.name_id),
            authn=_AUTHN,
            **_SHA256,
            sign_assertion=True,
        )
        http = self.server.apply_binding(
            BINDING_HTTP_POST,
            str(response),
            args["destination"],
            form.get("RelayState", ""),
            response=True,
        )
        return str(http["data"])

    @contextmanager
    def running(self) -> Iterator[SamlIdP]:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parts.query))
                self._answer(lambda: idp._login_form(query), parts.path == "/sso")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode("ascii")))
                self._answer(lambda: idp._login(form), self.path == "/login")

            def _answer(self, page: Any, known: bool) -> None:
                try:
                    body, status = (page(), 200) if known else ("not found", 404)
                except PermissionError:
                    body, status = "refused", 403
                except Exception:
                    body, status = "bad request", 400
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        http = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        thread = threading.Thread(target=http.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            http.shutdown()
            http.server_close()
            thread.join()
            shutil.rmtree(self._dir, ignore_errors=True)


_INPUT = re.compile(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', re.IGNORECASE)


def _form_fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in _INPUT.findall(page)}


class Browser:
    """Follows the redirect to the IdP, fills its login form, and returns the fields
    the IdP's auto-POST form would send to the ACS."""

    def sign_in(self, redirect_url: str, *, user: str, password: str) -> dict[str, str]:
        with urllib.request.urlopen(redirect_url, timeout=10) as answer:  # noqa: S310 - loopback
            page = answer.read().decode("utf-8")
        fields = _form_fields(page)
        fields.update(user=user, password=password)
        base = redirect_url.split("/sso", 1)[0]
        data = urllib.parse.urlencode(fields).encode("ascii")
        with urllib.request.urlopen(f"{base}/login", data=data, timeout=10) as answer:  # noqa: S310
            return _form_fields(answer.read().decode("utf-8"))


AES256_GCM = "http://www.w3.org/2009/xmlenc11#aes256-gcm"
AES128_CBC = "http://www.w3.org/2001/04/xmlenc#aes128-cbc"
TRIPLE_DES = "http://www.w3.org/2001/04/xmlenc#tripledes-cbc"
RSA_OAEP_MGF1P = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"
RSA_1_5 = "http://www.w3.org/2001/04/xmlenc#rsa-1_5"
_SESSION_KEYS = {AES256_GCM: "aes-256", AES128_CBC: "aes-128", TRIPLE_DES: "des-192"}


def encrypt_assertion(
    saml_response: str,
    sp_certificate_pem: str,
    *,
    algorithm: str = AES256_GCM,
    key_transport: str = RSA_OAEP_MGF1P,
) -> str:
    """The response with its assertion encrypted for the SP by the ``xmlsec1`` program
    (an independent XML Encryption implementation, the one pysaml2's IdP uses), in an
    ``EncryptedAssertion`` as the SAML schema puts it."""
    if XMLSEC1 is None:
        raise RuntimeError("the xmlsec1 program is needed (Debian package xmlsec1)")
    from lxml import etree

    root = etree.fromstring(base64.b64decode(saml_response))
    saml = "urn:oasis:names:tc:SAML:2.0:assertion"
    assertion = root.find(f"{{{saml}}}Assertion")
    holder = etree.Element(f"{{{saml}}}EncryptedAssertion")
    root.replace(assertion, holder)
    holder.append(assertion)
    template = (
        '<xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"'
        ' xmlns:ds="http://www.w3.org/2000/09/xmldsig#"'
        ' Type="http://www.w3.org/2001/04/xmlenc#Element">'
        f'<xenc:EncryptionMethod Algorithm="{algorithm}"/>'
        "<ds:KeyInfo><xenc:EncryptedKey>"
        f'<xenc:EncryptionMethod Algorithm="{key_transport}"/>'
        "<xenc:CipherData><xenc:CipherValue/></xenc:CipherData>"
        "</xenc:EncryptedKey></ds:KeyInfo>"
        "<xenc:CipherData><xenc:CipherValue/></xenc:CipherData>"
        "</xenc:EncryptedData>"
    )
    with tempfile.TemporaryDirectory(prefix="saml-enc-") as work:
        folder = Path(work)
        (folder / "response.xml").write_bytes(etree.tostring(root))
        (folder / "template.xml").write_text(template)
        (folder / "sp.crt").write_text(sp_certificate_pem)
        subprocess.run(
            [
                XMLSEC1,
                "--encrypt",
                "--pubkey-cert-pem",
                str(folder / "sp.crt"),
                "--session-key",
                _SESSION_KEYS[algorithm],
                "--xml-data",
                str(folder / "response.xml"),
                "--node-xpath",
                "/*[local-name()='Response']/*[local-name()='EncryptedAssertion']"
                "/*[local-name()='Assertion']",
                "--output",
                str(folder / "out.xml"),
                str(folder / "template.xml"),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return base64.b64encode((folder / "out.xml").read_bytes()).decode("ascii")
