"""Organizations: groups of users of one tenant, each member holding a role.

An org lives in the tenant of the user who creates it and only users of that tenant
can join it. Creating one is plan-gated (``authsome.feature.orgs``); every member who
joins, the creator included, is recorded as ``authsome.orgs.members`` and every member
removed releases that seat again. With the key in ``enforce_limits`` the seat is taken
before the membership is written (refused beyond the plan's seat limit) and given back
if the write fails. Both are keyed by the membership instance
``<org id>:<user id>:<joined at, microseconds since the epoch>`` (the release with
``:left`` appended): a retried join or leave counts once, and a user who leaves and
joins again is a new instance, counted again.

The library keeps one invariant about roles: an org always has at least one owner.
What owners, admins and members may do is the application's decision.
"""

from __future__ import annotations

import re
import unicodedata

from authsome import _validation as v
from authsome._billing import Billing
from authsome._seats import Seats
from authsome._time import Clock
from authsome.bridge import LedgerContext
from authsome.crypto import new_id
from authsome.errors import AlreadyExists, NotFound, ValidationError
from authsome.features import Feature, UsageEvent
from authsome.models import Membership, Org, OrgRole, User
from authsome.stores import Store
from authsome.stores._rules import Duplicate

__all__ = ["MAX_SLUG", "Orgs", "check_slug", "slugify"]

MAX_SLUG = 63  # a DNS label, so a slug can also name a subdomain
_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_NOT_SLUG_CHARS = re.compile(r"[^a-z0-9]+")
_ROLES = ", ".join(role.value for role in OrgRole)


def check_slug(slug: object) -> str:
    """Return ``slug`` if it is a valid org slug, else raise.

    Valid: 1..63 characters of lowercase ASCII letters, digits and ``-``, neither
    starting nor ending with ``-``. Nothing is normalized: what is stored is what
    was given. A non-``str`` raises ``TypeError``, an invalid one
    :class:`~authsome.errors.ValidationError`.
    """
    text = v.require_str("slug", slug)
    if _SLUG.fullmatch(text) is None:
        raise ValidationError(
            f"slug must be 1..{MAX_SLUG} lowercase letters, digits or '-',"
            " not starting or ending with '-'"
        )
    return text


def slugify(name: object) -> str:
    """Derive a slug from a display name: ``"Café Ünited, Ltd."`` → ``"cafe-united-ltd"``.

    Accents are dropped, every run of other characters becomes one ``-``, and the
    result is cut to 63 characters. The result always passes :func:`check_slug`;
    a name without any ASCII letter or digit to keep raises
    :class:`~authsome.errors.ValidationError` (pass an explicit slug then).
    """
    # Bounded and checked for mark runs by nfkc first; NFKD of its NFKC is NFKD of the text.
    text = unicodedata.normalize("NFKD", v.nfkc("name", v.require_text("name", name, v.MAX_NAME)))
    ascii_text = text.encode("ascii", "ignore").decode("ascii").lower()
    slug = _NOT_SLUG_CHARS.sub("-", ascii_text).strip("-")[:MAX_SLUG].rstrip("-")
    if not slug:
        raise ValidationError("no slug can be derived from this name; pass slug= explicitly")
    return slug


def _check_org_name(name: object) -> str:
    text = v.check_display_text("name", name, v.MAX_NAME)
    if not text:
        raise ValidationError(f"name must be 1..{v.MAX_NAME} non-blank characters")
    return text


def _check_role(role: object) -> OrgRole:
    if isinstance(role, OrgRole):
        return role
    try:
        return OrgRole(v.require_str("role", role))
    except ValueError:
        raise ValidationError(f"role must be one of {_ROLES}") from None


class Orgs:
    """``auth.orgs``: create organizations and manage their members."""

    def __init__(self, store: Store, billing: Billing, clock: Clock) -> None:
        self._store = store
        self._billing = billing
        self._clock = clock
        self._seats = Seats(store, billing)

    def create(self, owner_id: str, name: str, *, slug: str | None = None) -> Org:
        """Create an org in the owner's tenant, with the owner as its first member.

        ``slug`` defaults to :func:`slugify` of ``name``. Checks
        ``authsome.feature.orgs`` first (denied → :class:`~authsome.errors.FeatureNotEntitled`,
        nothing written); the org and the owner's membership are stored together,
        then ``authsome.orgs.members`` is recorded for the owner.

        Raises :class:`~authsome.errors.NotFound` for an unknown owner,
        :class:`~authsome.errors.AlreadyExists` when the slug is taken in the tenant,
        :class:`~authsome.errors.ValidationError` on a bad name or slug.
        """
        owner_id = v.require_str("owner_id", owner_id)
        name = _check_org_name(name)
        slug = slugify(name) if slug is None else check_slug(slug)
        owner = self._user(owner_id)
        self._billing.require(Feature.ORGS, LedgerContext(tenant=owner.tenant, user_id=owner.id))
        now = self._clock()
        org = Org(id=new_id("org"), tenant=owner.tenant, slug=slug, name=name, created_at=now)
        owner_membership = Membership(org.id, owner.id, OrgRole.OWNER, now)
        with self._seats.held(org.tenant, owner_membership):
            self._store.create_org(org, owner_membership)
        return org

    def get(self, org_id: str) -> Org:
        """The org with this id; :class:`~authsome.errors.NotFound` otherwise."""
        org = self._store.get_org(v.require_str("org_id", org_id))
        if org is None:
            raise NotFound("no such org")
        return org

    def find_by_slug(self, slug: str, *, tenant: str = "default") -> Org | None:
        """The org with this slug in ``tenant``, or ``None``."""
        return self._store.find_org_by_slug(v.check_tenant(tenant), check_slug(slug))

    def add_member(
        self, org_id: str, user_id: str, role: OrgRole | str = OrgRole.MEMBER
    ) -> Membership:
        """Add a user of the org's tenant; records ``authsome.orgs.members``.

        Raises :class:`~authsome.errors.NotFound` for an unknown org or user,
        :class:`~authsome.errors.ValidationError` for a user of another tenant or an
        unknown role, :class:`~authsome.errors.AlreadyExists` when the user is a
        member already (nothing is recorded then). With ``authsome.orgs.members`` in
        ``enforce_limits``, a member beyond the plan's seat limit raises
        :class:`~authsome.errors.FeatureNotEntitled` and nothing is written.
        """
        checked_role = _check_role(role)
        org = self.get(org_id)
        user = self._user(v.require_str("user_id", user_id))
        if user.tenant != org.tenant:
            raise ValidationError("the user belongs to another tenant than the org")
        membership = Membership(org.id, user.id, checked_role, self._clock())
        if self._billing.enforces(UsageEvent.ORGS_MEMBERS) and self._store.get_membership(
            org.id, user.id
        ):
            # A member already: that answer, not a full plan's (the write would say it).
            raise AlreadyExists(Duplicate.MEMBERSHIP)
        with self._seats.held(org.tenant, membership):
            self._store.add_membership(membership)
        return membership

    def remove_member(self, org_id: str, user_id: str) -> bool:
        """Remove a member; ``False`` if the user is not a member (or the org is
        unknown).

        After the removal is stored, releases the member's ``authsome.orgs.members``
        seat; a removal that finds no member releases nothing.

        Raises :class:`~authsome.errors.Conflict` for the org's last owner, who stays.
        """
        org_id = v.require_str("org_id", org_id)
        user_id = v.require_str("user_id", user_id)
        # The store returns the instance it removed: the seat released is that one's.
        membership = self._store.remove_membership(org_id, user_id)
        if membership is None:
            return False
        org = self._store.get_org(org_id)
        if org is not None:
            self._seats.vacated(org.tenant, membership)
        return True

    def change_role(self, org_id: str, user_id: str, role: OrgRole | str) -> Membership:
        """Give a member another role and return the updated membership.

        Raises :class:`~authsome.errors.NotFound` for an unknown org or a user who is
        not a member, :class:`~authsome.errors.Conflict` when this would demote the
        org's last owner.
        """
        checked_role = _check_role(role)
        org = self.get(org_id)
        user_id = v.require_str("user_id", user_id)
        updated = self._store.set_membership_role(org.id, user_id, checked_role)
        if updated is None:
            raise NotFound("the user is not a member of this org")
        return updated

    def role_of(self, org_id: str, user_id: str) -> OrgRole | None:
        """The user's role in the org, or ``None`` when they are not a member."""
        membership = self._store.get_membership(
            v.require_str("org_id", org_id), v.require_str("user_id", user_id)
        )
        return None if membership is None else membership.role

    def members(self, org_id: str) -> list[Membership]:
        """The org's memberships, oldest first; :class:`~authsome.errors.NotFound`
        for an unknown org."""
        return self._store.list_memberships(self.get(org_id).id)

    def orgs_of(self, user_id: str) -> list[Org]:
        """The orgs the user is a member of, oldest first;
        :class:`~authsome.errors.NotFound` for an unknown user."""
        return self._store.list_user_orgs(self._user(v.require_str("user_id", user_id)).id)

    def _user(self, user_id: str) -> User:
        user = self._store.get_user(user_id)
        if user is None:
            raise NotFound("no such user")
        return user
