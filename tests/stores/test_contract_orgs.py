"""The ``# -- orgs --`` part of the Store Protocol, checked against every store."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest

from authsome.errors import AlreadyExists, AuthsomeError, Conflict, StoreError
from authsome.models import Membership, Org, OrgRole
from authsome.stores import Store

from ._factories import NOW, add_user

LATER = NOW + timedelta(minutes=1)


def make_org(
    org_id: str = "o1", *, tenant: str = "default", slug: str = "acme", created_at: datetime = NOW
) -> Org:
    """An org record; only what a test cares about needs naming."""
    return Org(id=org_id, tenant=tenant, slug=slug, name="Acme", created_at=created_at)


def member(
    user_id: str, org_id: str = "o1", role: OrgRole = OrgRole.MEMBER, *, at: datetime = NOW
) -> Membership:
    return Membership(org_id=org_id, user_id=user_id, role=role, created_at=at)


def add_org(
    store: Store,
    org_id: str = "o1",
    owner: str = "u1",
    *,
    tenant: str = "default",
    slug: str = "acme",
    created_at: datetime = NOW,
) -> Org:
    """Create an org owned by ``owner`` (who must exist)."""
    org = make_org(org_id, tenant=tenant, slug=slug, created_at=created_at)
    store.create_org(org, member(owner, org_id, OrgRole.OWNER, at=org.created_at))
    return org


@pytest.fixture
def users(store: Store) -> list[str]:
    """Three users of the default tenant: u1, u2, u3."""
    for i in (1, 2, 3):
        add_user(store, f"u{i}", email=f"u{i}@example.com")
    return ["u1", "u2", "u3"]


# -- create and read -----------------------------------------------------------------


def test_created_org_is_found_by_id_and_slug_with_its_owner(store: Store, users: list[str]) -> None:
    org = add_org(store)

    assert store.get_org("o1") == org
    assert store.find_org_by_slug("default", "acme") == org
    assert store.get_membership("o1", "u1") == member("u1", role=OrgRole.OWNER)
    assert store.list_memberships("o1") == [member("u1", role=OrgRole.OWNER)]
    assert store.list_user_orgs("u1") == [org]


def test_unknown_org_is_none_or_empty_everywhere(store: Store) -> None:
    assert store.get_org("nope") is None
    assert store.find_org_by_slug("default", "nope") is None
    assert store.get_membership("nope", "u1") is None
    assert store.list_memberships("nope") == []
    assert store.list_user_orgs("nobody") == []
    assert store.remove_membership("nope", "u1") is None
    assert store.set_membership_role("nope", "u1", OrgRole.ADMIN) is None


def test_org_with_unknown_owner_fails_and_leaves_no_org(store: Store) -> None:
    # The membership insert fails (no such user): the org must not stay behind alone.
    with pytest.raises(StoreError):
        store.create_org(make_org(), member("ghost", role=OrgRole.OWNER))

    assert store.get_org("o1") is None
    assert store.find_org_by_slug("default", "acme") is None
    assert store.list_memberships("o1") == []
    # The slug is free again: nothing half-written holds it.
    add_user(store, "u1")
    add_org(store)
    assert store.get_org("o1") is not None


def test_slug_is_unique_per_tenant_and_the_loser_leaves_nothing(
    store: Store, users: list[str]
) -> None:
    add_org(store, "o1")

    with pytest.raises(AlreadyExists):
        add_org(store, "o2", owner="u2")

    assert store.get_org("o2") is None
    assert store.list_user_orgs("u2") == []


def test_same_slug_in_another_tenant_is_fine(store: Store, users: list[str]) -> None:
    add_user(store, "x1", tenant="other", email="x1@example.com")
    add_org(store, "o1")
    other = add_org(store, "o2", owner="x1", tenant="other")

    assert store.find_org_by_slug("other", "acme") == other
    assert store.find_org_by_slug("default", "acme") == store.get_org("o1")


def test_duplicate_org_id_raises(store: Store, users: list[str]) -> None:
    add_org(store, "o1")
    with pytest.raises(AlreadyExists):
        add_org(store, "o1", owner="u2", slug="other")
    assert store.list_memberships("o1") == [member("u1", role=OrgRole.OWNER)]


@pytest.mark.parametrize(
    "first",
    [
        member("u1", "o1", OrgRole.ADMIN),
        member("u1", "elsewhere", OrgRole.OWNER),
    ],
)
def test_first_membership_must_be_an_owner_of_the_org(
    store: Store, users: list[str], first: Membership
) -> None:
    with pytest.raises(ValueError, match="owner"):
        store.create_org(make_org(), first)
    assert store.get_org("o1") is None


# -- memberships ---------------------------------------------------------------------


def test_members_are_listed_oldest_first_then_by_user_id(store: Store, users: list[str]) -> None:
    add_org(store)
    store.add_membership(member("u3", at=LATER))
    store.add_membership(member("u2", role=OrgRole.ADMIN, at=LATER))

    assert store.list_memberships("o1") == [
        member("u1", role=OrgRole.OWNER),
        member("u2", role=OrgRole.ADMIN, at=LATER),
        member("u3", at=LATER),
    ]


def test_duplicate_membership_raises_and_keeps_the_first(store: Store, users: list[str]) -> None:
    add_org(store)
    store.add_membership(member("u2"))

    with pytest.raises(AlreadyExists):
        store.add_membership(member("u2", role=OrgRole.ADMIN, at=LATER))
    with pytest.raises(AlreadyExists):
        store.add_membership(member("u1"))  # the owner, under another role

    assert store.get_membership("o1", "u2") == member("u2")
    assert store.get_membership("o1", "u1") == member("u1", role=OrgRole.OWNER)


@pytest.mark.parametrize(("org_id", "user_id"), [("nope", "u2"), ("o1", "ghost")])
def test_membership_of_unknown_org_or_user_raises(
    store: Store, users: list[str], org_id: str, user_id: str
) -> None:
    add_org(store)
    with pytest.raises(StoreError):
        store.add_membership(member(user_id, org_id))
    assert store.get_membership(org_id, user_id) is None


def test_user_orgs_are_listed_oldest_first(store: Store, users: list[str]) -> None:
    later = add_org(store, "o2", owner="u2", slug="later", created_at=LATER)
    first = add_org(store, "o1", owner="u2", slug="first")
    add_org(store, "o3", owner="u3", slug="not-mine")
    store.add_membership(member("u1", "o2"))

    assert store.list_user_orgs("u2") == [first, later]
    assert store.list_user_orgs("u1") == [later]


def test_removed_member_is_gone_and_can_rejoin(store: Store, users: list[str]) -> None:
    org = add_org(store)
    store.add_membership(member("u2"))

    before = store.get_membership("o1", "u2")
    assert before is not None
    assert store.remove_membership("o1", "u2") == before  # the instance removed
    assert store.remove_membership("o1", "u2") is None
    assert store.get_membership("o1", "u2") is None
    assert store.list_user_orgs("u2") == []

    store.add_membership(member("u2", role=OrgRole.ADMIN, at=LATER))
    assert store.list_user_orgs("u2") == [org]


def test_role_change_is_stored_and_returned(store: Store, users: list[str]) -> None:
    add_org(store)
    store.add_membership(member("u2"))

    updated = store.set_membership_role("o1", "u2", OrgRole.ADMIN)

    assert updated == member("u2", role=OrgRole.ADMIN)
    assert store.get_membership("o1", "u2") == updated
    assert store.set_membership_role("o1", "u3", OrgRole.ADMIN) is None


# -- the last owner ------------------------------------------------------------------


def test_last_owner_can_be_neither_removed_nor_demoted(store: Store, users: list[str]) -> None:
    add_org(store)
    store.add_membership(member("u2", role=OrgRole.ADMIN))

    with pytest.raises(Conflict):
        store.remove_membership("o1", "u1")
    for role in (OrgRole.ADMIN, OrgRole.MEMBER):
        with pytest.raises(Conflict):
            store.set_membership_role("o1", "u1", role)

    assert store.get_membership("o1", "u1") == member("u1", role=OrgRole.OWNER)
    # Re-asserting the role of the last owner changes nothing and is fine.
    assert store.set_membership_role("o1", "u1", OrgRole.OWNER) == member("u1", role=OrgRole.OWNER)


def test_an_owner_can_leave_once_another_owner_exists(store: Store, users: list[str]) -> None:
    add_org(store)
    store.add_membership(member("u2"))
    store.set_membership_role("o1", "u2", OrgRole.OWNER)

    assert store.set_membership_role("o1", "u1", OrgRole.MEMBER) == member("u1")
    with pytest.raises(Conflict):
        store.remove_membership("o1", "u2")
    assert store.remove_membership("o1", "u1") is not None


def _race(store: Store, actions: list[tuple[str, str]]) -> tuple[int, list[BaseException]]:
    """Run ``(kind, user_id)`` actions on org o1 in threads released together."""
    start = threading.Barrier(len(actions))
    done: list[bool] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(kind: str, user_id: str) -> None:
        start.wait()
        try:
            if kind == "remove":
                store.remove_membership("o1", user_id)
            else:
                store.set_membership_role("o1", user_id, OrgRole.MEMBER)
        except BaseException as exc:
            with lock:
                errors.append(exc)
        else:
            with lock:
                done.append(True)

    threads = [threading.Thread(target=run, args=action) for action in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return len(done), errors


@pytest.mark.parametrize(
    "kinds",
    [("remove", "remove"), ("demote", "demote"), ("remove", "demote")],
    ids=lambda kinds: "-".join(kinds),
)
@pytest.mark.parametrize("attempt", range(10))
def test_two_last_owners_leaving_at_once_leaves_one_owner(
    store: Store, users: list[str], kinds: tuple[str, str], attempt: int
) -> None:
    add_org(store)
    store.add_membership(member("u2", role=OrgRole.OWNER))

    succeeded, errors = _race(store, [(kinds[0], "u1"), (kinds[1], "u2")])

    assert succeeded == 1
    assert len(errors) == 1
    assert isinstance(errors[0], Conflict)
    assert isinstance(errors[0], AuthsomeError)
    owners = [m for m in store.list_memberships("o1") if m.role is OrgRole.OWNER]
    assert len(owners) == 1
