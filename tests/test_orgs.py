"""``auth.orgs``: the orgs.members usage row, the feature.orgs gate, roles and input."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import authsome
from authsome import (
    AlreadyExists,
    Authsome,
    Conflict,
    Feature,
    FeatureNotEntitled,
    LedgerUnavailable,
    Membership,
    NotFound,
    Org,
    OrgRole,
    UsageEvent,
    User,
    ValidationError,
)
from authsome.bridge import LedgerContext
from authsome.orgs import MAX_SLUG, check_slug, slugify
from authsome.stores import MemoryStore, SQLiteStore, Store
from authsome.testing import DenyingLedger, FailingLedger, RecordingLedger
from tests.conftest import PASSWORD, AuthFactory, FakeClock

STORES: dict[str, Callable[[], Store]] = {
    "memory": MemoryStore,
    "sqlite-memory": lambda: SQLiteStore(":memory:"),
}


def _register(auth: Authsome, name: str, tenant: str = "default") -> User:
    return auth.users.register(f"{name}@example.com", PASSWORD, tenant=tenant)


def _members_ctx(org: Org, user_id: str, joined_at: datetime | None = None) -> LedgerContext:
    # One event id per membership instance: org, user and when they joined (µs).
    moment = FakeClock().now if joined_at is None else joined_at
    joined = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return LedgerContext(
        tenant=org.tenant, user_id=user_id, org_id=org.id, event_id=f"{org.id}:{user_id}:{joined}"
    )


def _member_usage(ledger: RecordingLedger) -> list[LedgerContext]:
    return [c.ctx for c in ledger.usage(UsageEvent.ORGS_MEMBERS)]


@pytest.fixture
def ann(auth: Authsome, ledger: RecordingLedger) -> User:
    """A user of tenant ``acme``; the ledger is cleared after registering her."""
    user = _register(auth, "ann", "acme")
    ledger.clear()
    return user


@pytest.fixture
def bob(auth: Authsome, ledger: RecordingLedger) -> User:
    """Another user of tenant ``acme``."""
    user = _register(auth, "bob", "acme")
    ledger.clear()
    return user


@pytest.fixture
def org(auth: Authsome, ledger: RecordingLedger, ann: User) -> Org:
    """Acme Inc, owned by ann; the ledger is cleared after creating it."""
    created = auth.orgs.create(ann.id, "Acme Inc")
    ledger.clear()
    return created


# -- create --------------------------------------------------------------------------


def test_create_puts_the_org_in_the_owners_tenant_with_the_owner_as_member(
    auth: Authsome, ann: User, clock: FakeClock
) -> None:
    org = auth.orgs.create(ann.id, "  Acme Inc  ")

    assert org == Org(org.id, "acme", "acme-inc", "Acme Inc", clock.now)
    assert org.id.startswith("org_")
    assert auth.store.get_org(org.id) == org
    assert auth.orgs.get(org.id) == org
    assert auth.orgs.find_by_slug("acme-inc", tenant="acme") == org
    assert auth.orgs.find_by_slug("acme-inc") is None  # the default tenant has none
    assert auth.orgs.members(org.id) == [Membership(org.id, ann.id, OrgRole.OWNER, clock.now)]
    assert auth.orgs.role_of(org.id, ann.id) is OrgRole.OWNER
    assert auth.orgs.orgs_of(ann.id) == [org]


def test_create_takes_an_explicit_slug(auth: Authsome, ann: User) -> None:
    org = auth.orgs.create(ann.id, "Acme Inc", slug="acme")
    assert org.slug == "acme"


def test_create_records_orgs_members_once_for_the_owner_after_the_check(
    auth: Authsome, ledger: RecordingLedger, ann: User
) -> None:
    org = auth.orgs.create(ann.id, "Acme Inc")

    kinds = [(c.kind, c.feature_key) for c in ledger.calls]
    assert kinds == [
        ("check_entitlement", Feature.ORGS),
        ("record_usage", UsageEvent.ORGS_MEMBERS),
    ]
    check, usage = ledger.calls
    assert check.ctx == LedgerContext(tenant="acme", user_id=ann.id)
    assert usage.ctx == _members_ctx(org, ann.id)
    assert usage.quantity == 1


@pytest.mark.parametrize("store_kind", sorted(STORES))
def test_denied_create_raises_writes_nothing_and_records_nothing(
    make_auth: AuthFactory, store_kind: str
) -> None:
    ledger = DenyingLedger(Feature.ORGS.value)
    auth = make_auth(store=STORES[store_kind](), ledger=ledger)
    ann = _register(auth, "ann", "acme")
    ledger.clear()

    with pytest.raises(FeatureNotEntitled) as raised:
        auth.orgs.create(ann.id, "Acme Inc")

    assert raised.value.feature == "authsome.feature.orgs"
    assert auth.store.find_org_by_slug("acme", "acme-inc") is None
    assert auth.store.list_user_orgs(ann.id) == []
    assert [(c.kind, c.feature_key, c.allowed) for c in ledger.calls] == [
        ("check_entitlement", "authsome.feature.orgs", False)
    ]
    # Nothing half-done either: once allowed, the same org can be created.
    ledger.denied = frozenset()
    assert auth.orgs.create(ann.id, "Acme Inc").slug == "acme-inc"


class _JournalLedger(RecordingLedger):
    """Writes each bridge call into a journal shared with :class:`_JournalStore`."""

    def __init__(self, journal: list[str]) -> None:
        super().__init__()
        self.journal = journal

    def check_entitlement(self, ctx: LedgerContext, feature_key: str) -> bool:
        self.journal.append(f"check {feature_key}")
        return super().check_entitlement(ctx, feature_key)

    def record_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> None:
        self.journal.append(f"record {feature_key}")
        super().record_usage(ctx, feature_key, quantity)


class _JournalStore(MemoryStore):
    """A memory store that writes each org write into the shared journal."""

    def __init__(self, journal: list[str]) -> None:
        super().__init__()
        self.journal = journal

    def create_org(self, org: Org, owner: Membership) -> None:
        self.journal.append("write create_org")
        super().create_org(org, owner)

    def add_membership(self, membership: Membership) -> None:
        self.journal.append("write add_membership")
        super().add_membership(membership)


def test_the_gate_is_checked_before_any_write_and_usage_recorded_after_it(
    make_auth: AuthFactory,
) -> None:
    journal: list[str] = []
    auth = make_auth(store=_JournalStore(journal), ledger=_JournalLedger(journal))
    ann = _register(auth, "ann")
    bob = _register(auth, "bob")
    journal.clear()

    org = auth.orgs.create(ann.id, "Acme")
    auth.orgs.add_member(org.id, bob.id)

    assert journal == [
        "check authsome.feature.orgs",
        "write create_org",
        "record authsome.orgs.members",
        "write add_membership",  # adding a member is not gated, only metered
        "record authsome.orgs.members",
    ]


def test_a_failing_check_refuses_create_under_the_default_policy(
    make_auth: AuthFactory,
) -> None:
    ledger = FailingLedger(fail=["check_entitlement"])
    auth = make_auth(ledger=ledger)
    ann = _register(auth, "ann")

    with pytest.raises(LedgerUnavailable):
        auth.orgs.create(ann.id, "Acme")

    assert auth.store.list_user_orgs(ann.id) == []
    assert ledger.usage(UsageEvent.ORGS_MEMBERS) == []


def test_a_failing_usage_record_does_not_fail_create_or_add(make_auth: AuthFactory) -> None:
    ledger = FailingLedger(fail=["record_usage"])
    auth = make_auth(ledger=ledger)
    ann, bob = _register(auth, "ann"), _register(auth, "bob")
    failures_before = auth.ledger_stats.record_failures

    org = auth.orgs.create(ann.id, "Acme")
    membership = auth.orgs.add_member(org.id, bob.id)

    assert auth.store.get_membership(org.id, bob.id) == membership
    assert _member_usage(ledger) == [_members_ctx(org, ann.id), _members_ctx(org, bob.id)]
    assert auth.ledger_stats.record_failures == failures_before + 2


def test_slug_taken_in_the_tenant_raises_and_records_nothing(
    auth: Authsome, ledger: RecordingLedger, org: Org, bob: User
) -> None:
    with pytest.raises(AlreadyExists):
        auth.orgs.create(bob.id, "ACME inc.")

    assert auth.orgs.orgs_of(bob.id) == []
    assert ledger.usage() == []


def test_the_same_slug_in_another_tenant_is_a_different_org(
    auth: Authsome, ledger: RecordingLedger, org: Org
) -> None:
    zed = _register(auth, "zed", "globex")
    other = auth.orgs.create(zed.id, "Acme Inc")

    assert other.slug == org.slug
    assert other.tenant == "globex"
    assert other.id != org.id


def test_unknown_owner_raises_not_found_and_asks_the_ledger_nothing(
    auth: Authsome, ledger: RecordingLedger
) -> None:
    with pytest.raises(NotFound):
        auth.orgs.create("usr_nobody", "Acme")
    assert ledger.calls == []


# -- members -------------------------------------------------------------------------


def test_add_member_records_orgs_members_once_with_org_user_and_event_id(
    auth: Authsome, ledger: RecordingLedger, org: Org, bob: User, clock: FakeClock
) -> None:
    clock.advance(minutes=5)
    membership = auth.orgs.add_member(org.id, bob.id, OrgRole.ADMIN)

    assert membership == Membership(org.id, bob.id, OrgRole.ADMIN, clock.now)
    assert auth.store.get_membership(org.id, bob.id) == membership
    assert [(c.kind, c.feature_key, c.quantity) for c in ledger.calls] == [
        ("record_usage", UsageEvent.ORGS_MEMBERS, 1)
    ]
    assert _member_usage(ledger) == [_members_ctx(org, bob.id, clock.now)]


def test_each_member_is_its_own_event(
    auth: Authsome, ledger: RecordingLedger, org: Org, bob: User
) -> None:
    cat = _register(auth, "cat", "acme")
    ledger.clear()
    auth.orgs.add_member(org.id, bob.id)
    auth.orgs.add_member(org.id, cat.id, "admin")  # roles may be given as strings

    assert _member_usage(ledger) == [_members_ctx(org, bob.id), _members_ctx(org, cat.id)]


def test_duplicate_add_raises_and_records_nothing(
    auth: Authsome, ledger: RecordingLedger, org: Org, ann: User, bob: User
) -> None:
    auth.orgs.add_member(org.id, bob.id)
    ledger.clear()

    with pytest.raises(AlreadyExists):
        auth.orgs.add_member(org.id, bob.id, OrgRole.ADMIN)
    with pytest.raises(AlreadyExists):
        auth.orgs.add_member(org.id, ann.id)

    assert ledger.calls == []
    assert auth.orgs.role_of(org.id, bob.id) is OrgRole.MEMBER


def test_rejoining_is_a_new_membership_instance_counted_again(
    auth: Authsome, ledger: RecordingLedger, org: Org, bob: User, clock: FakeClock
) -> None:
    auth.orgs.add_member(org.id, bob.id)
    auth.orgs.remove_member(org.id, bob.id)
    clock.advance(seconds=1)
    auth.orgs.add_member(org.id, bob.id)

    assert _member_usage(ledger) == [
        _members_ctx(org, bob.id, clock.now - timedelta(seconds=1)),
        _members_ctx(org, bob.id, clock.now),
    ]


def test_a_user_of_another_tenant_cannot_be_added(
    auth: Authsome, ledger: RecordingLedger, org: Org
) -> None:
    zed = _register(auth, "zed", "globex")
    ledger.clear()

    with pytest.raises(ValidationError, match="tenant"):
        auth.orgs.add_member(org.id, zed.id)

    assert auth.store.get_membership(org.id, zed.id) is None
    assert auth.orgs.orgs_of(zed.id) == []
    assert ledger.calls == []


@pytest.mark.parametrize("which", ["org", "user"])
def test_adding_to_an_unknown_org_or_an_unknown_user_is_not_found(
    auth: Authsome, ledger: RecordingLedger, org: Org, bob: User, which: str
) -> None:
    org_id, user_id = ("org_nope", bob.id) if which == "org" else (org.id, "usr_nope")

    with pytest.raises(NotFound):
        auth.orgs.add_member(org_id, user_id)

    assert ledger.calls == []
    assert auth.store.get_membership(org_id, user_id) is None


def test_concurrent_adds_of_one_user_store_and_record_it_once(
    make_auth: AuthFactory, tmp_path: Path
) -> None:
    ledger = RecordingLedger()
    auth = make_auth(store=SQLiteStore(tmp_path / "auth.db"), ledger=ledger)
    ann, bob = _register(auth, "ann"), _register(auth, "bob")
    org = auth.orgs.create(ann.id, "Acme")
    ledger.clear()
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def add() -> None:
        start.wait()
        try:
            auth.orgs.add_member(org.id, bob.id)
            outcomes.append("added")
        except AlreadyExists:
            outcomes.append("exists")

    threads = [threading.Thread(target=add) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["added"] + ["exists"] * 7
    assert _member_usage(ledger) == [_members_ctx(org, bob.id)]


def test_members_lists_everyone_oldest_first(
    auth: Authsome, org: Org, ann: User, bob: User, clock: FakeClock
) -> None:
    clock.advance(seconds=1)
    auth.orgs.add_member(org.id, bob.id)

    assert [(m.user_id, m.role) for m in auth.orgs.members(org.id)] == [
        (ann.id, OrgRole.OWNER),
        (bob.id, OrgRole.MEMBER),
    ]


def test_orgs_of_lists_a_users_orgs_oldest_first(
    auth: Authsome, ann: User, bob: User, clock: FakeClock
) -> None:
    first = auth.orgs.create(ann.id, "First")
    clock.advance(seconds=1)
    second = auth.orgs.create(bob.id, "Second")
    clock.advance(seconds=1)
    auth.orgs.create(bob.id, "Not Ann's")
    auth.orgs.add_member(second.id, ann.id)

    assert auth.orgs.orgs_of(ann.id) == [first, second]
    auth.orgs.remove_member(second.id, ann.id)
    assert auth.orgs.orgs_of(ann.id) == [first]


def test_lookups_of_unknown_records_are_not_found(auth: Authsome, ann: User) -> None:
    with pytest.raises(NotFound):
        auth.orgs.get("org_nope")
    with pytest.raises(NotFound):
        auth.orgs.members("org_nope")
    with pytest.raises(NotFound):
        auth.orgs.orgs_of("usr_nope")
    assert auth.orgs.role_of("org_nope", ann.id) is None
    assert auth.orgs.orgs_of(ann.id) == []


# -- roles ---------------------------------------------------------------------------


def test_the_last_owner_cannot_be_removed_or_demoted(
    auth: Authsome, org: Org, ann: User, bob: User
) -> None:
    auth.orgs.add_member(org.id, bob.id, OrgRole.ADMIN)

    with pytest.raises(Conflict, match="last owner"):
        auth.orgs.remove_member(org.id, ann.id)
    for role in (OrgRole.ADMIN, "member"):
        with pytest.raises(Conflict, match="last owner"):
            auth.orgs.change_role(org.id, ann.id, role)

    assert auth.orgs.role_of(org.id, ann.id) is OrgRole.OWNER


def test_ownership_can_be_handed_over(auth: Authsome, org: Org, ann: User, bob: User) -> None:
    auth.orgs.add_member(org.id, bob.id)

    promoted = auth.orgs.change_role(org.id, bob.id, "owner")
    demoted = auth.orgs.change_role(org.id, ann.id, OrgRole.ADMIN)
    auth.orgs.remove_member(org.id, ann.id)

    assert promoted.role is OrgRole.OWNER
    assert demoted.role is OrgRole.ADMIN
    assert [(m.user_id, m.role) for m in auth.orgs.members(org.id)] == [(bob.id, OrgRole.OWNER)]


def test_role_changes_do_not_record_usage_and_removal_only_releases(
    auth: Authsome, ledger: RecordingLedger, org: Org, bob: User
) -> None:
    auth.orgs.add_member(org.id, bob.id)
    ledger.clear()
    auth.orgs.change_role(org.id, bob.id, OrgRole.ADMIN)
    assert ledger.calls == []
    auth.orgs.remove_member(org.id, bob.id)
    assert [c.kind for c in ledger.calls] == ["release_usage"]


def test_removing_a_non_member_removes_nothing(auth: Authsome, org: Org, bob: User) -> None:
    assert auth.orgs.remove_member(org.id, bob.id) is False
    assert auth.orgs.remove_member("org_nope", bob.id) is False
    assert auth.orgs.role_of(org.id, bob.id) is None


def test_changing_the_role_of_a_non_member_is_not_found(
    auth: Authsome, org: Org, bob: User
) -> None:
    with pytest.raises(NotFound):
        auth.orgs.change_role(org.id, bob.id, OrgRole.ADMIN)
    with pytest.raises(NotFound):
        auth.orgs.change_role("org_nope", bob.id, OrgRole.ADMIN)


@pytest.mark.parametrize("role", ["Owner", "guest", ""])
def test_unknown_roles_are_rejected_before_anything_is_done(
    auth: Authsome, ledger: RecordingLedger, org: Org, bob: User, role: str
) -> None:
    with pytest.raises(ValidationError, match="role must be one of owner, admin, member"):
        auth.orgs.add_member(org.id, bob.id, role)
    with pytest.raises(ValidationError):
        auth.orgs.change_role(org.id, org.id, role)
    assert auth.store.get_membership(org.id, bob.id) is None
    assert ledger.calls == []


# -- input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda a, u, o: a.orgs.create(123, "Acme"), TypeError),
        (lambda a, u, o: a.orgs.create(u.id, None), TypeError),
        (lambda a, u, o: a.orgs.create(u.id, "Acme", slug=b"acme"), TypeError),
        (lambda a, u, o: a.orgs.create(u.id, "   "), ValidationError),
        (lambda a, u, o: a.orgs.create(u.id, "x" * 201), ValidationError),
        (lambda a, u, o: a.orgs.create(u.id, "Acme\x00Inc"), ValidationError),
        (lambda a, u, o: a.orgs.create(u.id, "株式会社"), ValidationError),
        (lambda a, u, o: a.orgs.create(u.id, "Acme", slug="Acme"), ValidationError),
        (lambda a, u, o: a.orgs.create(u.id, "Acme", slug="-acme"), ValidationError),
        (lambda a, u, o: a.orgs.create(u.id, "Acme", slug="a" * 64), ValidationError),
        (lambda a, u, o: a.orgs.add_member(o.id, u.id, 3), TypeError),
        (lambda a, u, o: a.orgs.add_member(None, u.id), TypeError),
        (lambda a, u, o: a.orgs.add_member(o.id, ["x"]), TypeError),
        (lambda a, u, o: a.orgs.remove_member(o.id, 1), TypeError),
        (lambda a, u, o: a.orgs.change_role(o.id, u.id, None), TypeError),
        (lambda a, u, o: a.orgs.get(1), TypeError),
        (lambda a, u, o: a.orgs.orgs_of(None), TypeError),
        (lambda a, u, o: a.orgs.role_of(o.id, 5), TypeError),
        (lambda a, u, o: a.orgs.find_by_slug("Bad Slug"), ValidationError),
        (lambda a, u, o: a.orgs.find_by_slug("acme", tenant=""), ValidationError),
    ],
)
def test_bad_input_raises_a_typed_error_and_changes_nothing(
    auth: Authsome,
    ledger: RecordingLedger,
    org: Org,
    bob: User,
    call: Callable[[Authsome, User, Org], object],
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        call(auth, bob, org)

    assert auth.orgs.orgs_of(bob.id) == []
    assert len(auth.orgs.members(org.id)) == 1
    assert ledger.calls == []


def test_a_name_without_ascii_letters_can_have_an_explicit_slug(auth: Authsome, ann: User) -> None:
    assert auth.orgs.create(ann.id, "株式会社", slug="kabushiki").name == "株式会社"


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Acme", "acme"),
        ("  Café Ünited, Ltd.  ", "cafe-united-ltd"),
        ("R&D -- Team 42!", "r-d-team-42"),
        ("ﬁnance", "finance"),
        ("--x--", "x"),
        ("a" * 62 + " b", "a" * 62),
    ],
)
def test_slugify_examples(name: str, slug: str) -> None:
    assert slugify(name) == slug


@given(st.text())
def test_derived_slugs_always_validate(name: str) -> None:
    try:
        slug = slugify(name)
    except ValidationError:
        assert not any(ch.isascii() and ch.isalnum() for ch in name)
        return
    assert check_slug(slug) == slug
    assert slugify(slug) == slug  # a valid slug derives to itself


@given(st.text(max_size=80))
def test_any_text_is_a_valid_slug_or_a_validation_error(text: str) -> None:
    try:
        slug = check_slug(text)
    except ValidationError:
        return
    assert slug == text
    assert 1 <= len(slug) <= MAX_SLUG
    assert set(slug) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert not slug.startswith("-")
    assert not slug.endswith("-")


@given(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True))
def test_every_well_formed_slug_is_accepted(slug: str) -> None:
    assert check_slug(slug) == slug


@given(st.text(min_size=1, max_size=60))
def test_create_either_derives_a_valid_slug_or_raises_validation_error(name: str) -> None:
    auth = Authsome(password_hashing=authsome.PasswordHashing.fast_insecure_for_tests())
    ann = auth.users.register("ann@example.com", PASSWORD)
    try:
        org = auth.orgs.create(ann.id, name)
    except ValidationError:
        assert auth.store.list_user_orgs(ann.id) == []
        return
    assert check_slug(org.slug) == org.slug
    assert auth.orgs.find_by_slug(org.slug) == org


def test_org_types_are_exported() -> None:
    for name in ("Conflict", "Membership", "Org", "OrgRole"):
        assert name in authsome.__all__
    assert issubclass(Conflict, authsome.AuthsomeError)
