"""Whom an SSO connection may sign in for the first time, against the real OpenID
Provider: only addresses that route to this very connection (one of its domains,
proven by the tenant), and an existing user only when the provider and the user
both verified the address. Another org's connection in the same tenant speaks for
none of them, whatever its IdP asserts, and an unverified account is never merged
into (its registrant would keep the password and sessions)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from authsome import Authsome
from authsome.errors import InvalidCredentials, InvalidToken
from authsome.mail import MailSettings
from authsome.models import SignIn, SSOConnectionInfo
from authsome.sso import OIDCConnection
from authsome.testing import Outbox, RecordingLedger
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.support.oidc_op import OpenIDClient, OpenIDProvider
from tests.support.sso_scene import DOMAIN, IP, TENANT, Scene, query, refused
from tests.test_mfa import enrol

OUTSIDE = "the address is outside the domains this provider owns"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC))  # the provider stamps ID tokens with real time


@pytest.fixture
def scene(
    make_auth: AuthFactory, ledger: RecordingLedger, outbox: Outbox, oidc_op: OpenIDProvider
) -> Scene:
    """Acme's connection, its domain proven; the engine mails to ``outbox``."""
    auth = make_auth(
        ledger=ledger,
        sso_allow_insecure_loopback=True,
        mailer=outbox,
        mail=MailSettings(link_base_url="https://app.example"),
    )
    return Scene(auth, oidc_op, oidc_op.add_client())


class Neighbour:
    """Another org of the same tenant, with its own connection to the same provider
    (any IdP its owner runs) and no domain of its own."""

    def __init__(self, scene: Scene, **settings: object) -> None:
        self.auth, self.op = scene.auth, scene.op
        owner = self.auth.users.register("mallory@evil.test", PASSWORD, tenant=TENANT)
        org = self.auth.orgs.create(owner.id, "Evil")
        self.client: OpenIDClient = self.op.add_client()
        self.connection: SSOConnectionInfo = self.auth.sso.configure(
            org.id,
            OIDCConnection(
                issuer=self.op.issuer,
                client_id=self.client.client_id,
                client_secret=self.client.client_secret,
                **settings,  # type: ignore[arg-type]
            ),
        )

    def sign_in(self, account: str) -> SignIn:
        redirect = self.auth.sso.begin(
            self.connection.id, redirect_uri=self.client.redirect_uri, tenant=TENANT
        )
        url = self.op.login(redirect.url, account)
        return self.auth.sso.complete(query(url), handle=redirect.handle, tenant=TENANT, ip=IP)


def _verified_user(auth: Authsome, email: str) -> str:
    user = auth.users.register(email, PASSWORD, tenant=TENANT)
    auth.store.mark_email_verified(user.id, user.email, user.created_at)
    return user.id


# -- rule 1: only this connection's proven domains --------------------------------------


def test_another_orgs_connection_does_not_link_a_user_of_a_proven_domain(
    scene: Scene, ledger: RecordingLedger, caplog: pytest.LogCaptureFixture
) -> None:
    alice = _verified_user(scene.auth, f"alice@{DOMAIN}")
    evil = Neighbour(scene)
    account = scene.op.add_account("evil-alice", email=f"alice@{DOMAIN}", email_verified=True)
    ledger.clear()

    with refused(caplog, OUTSIDE):
        evil.sign_in(account)

    assert scene.auth.sso.identities(alice) == []
    assert ledger.usage() == []
    # Through acme's own connection the same assertion links her.
    assert scene.sign_in(scene.account(email=f"alice@{DOMAIN}")).user.id == alice


def test_another_orgs_trusted_mfa_does_not_skip_a_users_second_factor(
    scene: Scene, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    dave = scene.auth.users.register(f"dave@{DOMAIN}", PASSWORD, tenant=TENANT)
    scene.auth.store.mark_email_verified(dave.id, dave.email, dave.created_at)
    enrol(scene.auth, dave, clock)
    clock.now = datetime.now(UTC)
    evil = Neighbour(scene, trust_idp_mfa=True)
    account = scene.op.add_account(
        "evil-dave", email=f"dave@{DOMAIN}", email_verified=True, amr=["mfa"]
    )

    with refused(caplog, OUTSIDE):
        evil.sign_in(account)

    assert scene.auth.sso.identities(dave.id) == []
    assert scene.auth.sessions.list(dave.id) == []


def test_another_orgs_connection_provisions_nobody_in_a_domain_it_does_not_own(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    evil = Neighbour(scene)
    squatting = scene.op.add_account("evil-bob", email=f"bob@{DOMAIN}", email_verified=True)

    with refused(caplog, OUTSIDE):
        evil.sign_in(squatting)

    assert scene.auth.users.find_by_email(f"bob@{DOMAIN}", tenant=TENANT) is None
    # The real Bob signs in through acme's connection: his own, new user.
    bob = scene.sign_in(scene.account(email=f"bob@{DOMAIN}")).user
    assert [link.provider for link in scene.auth.sso.identities(bob.id)] == [scene.connection.id]
    with pytest.raises(InvalidCredentials):
        evil.sign_in(squatting)


@pytest.mark.parametrize("verified", [True, False], ids=["verified", "unverified"])
def test_a_connection_provisions_nobody_outside_its_own_domains(
    scene: Scene, caplog: pytest.LogCaptureFixture, verified: bool
) -> None:
    evil = Neighbour(scene, domains=("evil.test",))  # claimed, never proven
    for address in ("carol@gmail.example", "mal@evil.test"):
        account = scene.op.add_account(
            f"{address}-{verified}", email=address, email_verified=verified
        )
        with refused(caplog, OUTSIDE):
            evil.sign_in(account)
        with refused(caplog, OUTSIDE):  # acme's connection neither: not its domain
            scene.sign_in(account)

    assert scene.auth.users.find_by_email("carol@gmail.example", tenant=TENANT) is None
    # Nothing squatted: the owner of the address registers.
    scene.auth.users.register("carol@gmail.example", PASSWORD, tenant=TENANT)


def test_a_connection_whose_domain_is_unproven_signs_nobody_in_for_the_first_time(
    make_auth: AuthFactory, oidc_op: OpenIDProvider, caplog: pytest.LogCaptureFixture
) -> None:
    auth = make_auth(sso_allow_insecure_loopback=True)
    scene = Scene(auth, oidc_op, oidc_op.add_client(), proven=False)

    with refused(caplog, OUTSIDE):
        scene.sign_in(scene.account(email=f"new@{DOMAIN}"))

    assert auth.users.find_by_email(f"new@{DOMAIN}", tenant=TENANT) is None


def test_an_unverified_address_in_the_connections_own_domain_provisions_unverified(
    scene: Scene,
) -> None:
    # Entra ID sends no email_verified: inside the org's proven domain its IdP still
    # provisions, and the address is not marked verified.
    account = scene.op.add_account("fay", email=f"fay@{DOMAIN}")  # no email_verified

    signed_in = scene.sign_in(account)

    assert signed_in.tokens is not None
    assert signed_in.user.email_verified_at is None


# -- rule 2: never merge into an unverified account --------------------------------------


def test_a_password_squatter_is_not_merged_and_the_owner_takes_the_address_back(
    scene: Scene, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    auth = scene.auth
    squat = auth.users.register(f"erin@{DOMAIN}", "attacker passphrase 1234", tenant=TENANT)
    squatters = auth.sign_in(f"erin@{DOMAIN}", "attacker passphrase 1234", tenant=TENANT, ip=IP)
    assert squatters.tokens is not None
    erin = scene.account(email=f"erin@{DOMAIN}", email_verified=True)

    with refused(caplog, "the matching user has not verified the address here"):
        scene.sign_in(erin)
    assert auth.sso.identities(squat.id) == []

    # "Verify the address first": the owner resets the password through her mailbox,
    # which proves the address and ends the squatter's sessions; then SSO links.
    auth.users.request_password_reset(f"erin@{DOMAIN}", tenant=TENANT, ip=IP)
    auth.flush_mail()
    auth.users.reset_password(outbox.token(), "erin's own passphrase 5678", tenant=TENANT)

    assert scene.sign_in(erin).user.id == squat.id
    with pytest.raises(InvalidToken):
        auth.sessions.validate(squatters.tokens.access_token, tenant=TENANT)
    with pytest.raises(InvalidCredentials):
        auth.sign_in(f"erin@{DOMAIN}", "attacker passphrase 1234", tenant=TENANT, ip=IP)
