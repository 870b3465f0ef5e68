"""Custom domains: a tenant serves its sign-in pages on its own hostname.

A tenant adds a hostname, gets a DNS TXT record to publish, and
:meth:`Domains.verify` looks that record up. Only verified domains route requests
(:meth:`Domains.tenant_for_host`). Until then a claim is pending and exclusive to
nobody: several tenants may claim one hostname, and the first to prove control of it
owns it. A claim not verified within :data:`PENDING_CLAIM_TTL` (7 days) expires.

The plan decides, through ``authsome.feature.custom_domains``: adding and verifying
are gated, and a tenant whose plan no longer includes the feature stops being routed
by hostname (its domains are kept, so an upgrade routes them again at once, and it
can still remove them). Routing asks the ledger once per request for a verified
hostname; the embedded ledger answers from memory.

DNS lookups go through a :class:`TxtResolver`. The default one uses dnspython (the
optional extra ``authsome-engine[dns]``), imported only when a lookup is needed;
tests and special deployments inject their own via ``Authsome(dns_resolver=...)``.
"""

from __future__ import annotations

import builtins
import ipaddress
import logging
import re
import threading
import warnings
from datetime import timedelta
from encodings import idna
from typing import TYPE_CHECKING, Protocol, overload, runtime_checkable

from typing_extensions import deprecated

from authsome import _validation as v
from authsome._billing import Billing
from authsome._time import Clock
from authsome.bridge import LedgerContext
from authsome.crypto import constant_time_equals, new_id, new_token
from authsome.errors import (
    AlreadyExists,
    ExtraNotInstalled,
    NotFound,
    ValidationError,
    VerificationFailed,
)
from authsome.features import Feature
from authsome.models import Domain, DomainChallenge
from authsome.stores import Store

if TYPE_CHECKING:
    import dns.resolver

__all__ = [
    "CHALLENGE_PREFIX",
    "PENDING_CLAIM_TTL",
    "DnsPythonResolver",
    "Domains",
    "TxtResolver",
    "normalize_hostname",
]

logger = logging.getLogger("authsome.domains")

CHALLENGE_PREFIX = "_authsome-challenge"
"""The label the challenge TXT record lives under: ``_authsome-challenge.<hostname>``."""

PENDING_CLAIM_TTL = timedelta(days=7)
"""How long a claim may stay unverified; then it expires and is purged."""

_VALUE_PREFIX = "authsome-verify="
_HOSTNAME_TAKEN = "this hostname is verified by another tenant"
MAX_HOSTNAME = 253  # RFC 1035: 255 octets on the wire, 253 characters in text
MAX_LABEL = 63
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DOTS = v.IDNA_DOTS  # the label separators IDNA recognizes
# Names that can never be a customer's public web host (RFC 6761, RFC 6762, ICANN).
_RESERVED_TLDS = frozenset({"localhost", "local", "internal", "invalid", "arpa"})
_HEX_NUMBER = re.compile(r"0x[0-9a-f]*")
# IDNA 2003 (the standard library's codec) maps these away while IDNA 2008 and
# browsers keep them (UTS #46 maps the capital sharp s to ß), so "straße.de" would
# name two different domains. Refused.
_DEVIATIONS = frozenset("\u00df\u03c2\u200c\u200d\u1e9e")


# -- hostnames -----------------------------------------------------------------------


def normalize_hostname(
    hostname: object, *, allow_wildcard: bool = False, public: bool = True
) -> str:
    """Validate a hostname and return its canonical form.

    The one hostname rule of the library: custom domains, the e-mail domains of SSO
    connections (and so e-mail routing) and the hosts of SSO URLs all go through it.

    Canonical: surrounding whitespace and one trailing dot removed, Unicode labels
    IDNA-encoded (A-labels, ``xn--``; characters that IDNA 2003 and 2008 encode
    differently, such as ``ß``, are refused), lower-case. Refused with
    :class:`~authsome.errors.ValidationError`: IP addresses and names a browser
    would read as one, single labels (``localhost``), reserved top-level names,
    labels outside ``[a-z0-9-]`` or starting/ending with ``-``, labels over 63 and
    names over 253 characters, and wildcards unless ``allow_wildcard`` (then only a
    leading ``*.`` label). ``public=False`` lets reserved top-level names through,
    for hosts that need not be reachable from the internet (an IdP on ``.internal``).
    Normalizing a canonical name returns it unchanged.
    """
    # Bounded before anything looks at the text; IDNA runs per label below.
    text = v.require_text("hostname", hostname, MAX_HOSTNAME).strip()
    if text and _DOTS.fullmatch(text[-1]):
        text = text[:-1]
    wildcard = text.startswith("*.")
    if wildcard:
        if not allow_wildcard:
            raise ValidationError("wildcard hostnames need allow_wildcard=True")
        text = text[2:]
    _refuse_ip_address(text)
    labels = [_ascii_label(label) for label in _DOTS.split(text)]
    _check_labels(labels)
    if public and labels[-1] in _RESERVED_TLDS:
        raise ValidationError(f"hostname must not end in the reserved name .{labels[-1]}")
    name = ("*." if wildcard else "") + ".".join(labels)
    if len(name) > MAX_HOSTNAME:
        raise ValidationError(f"hostname must be at most {MAX_HOSTNAME} characters")
    return name


def _refuse_ip_address(text: str) -> None:
    try:
        ipaddress.ip_address(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        return
    raise ValidationError("hostname must be a DNS name, not an IP address")


def _ascii_label(label: str) -> str:
    """One label as lower-case ASCII; Unicode labels become IDNA A-labels."""
    if not label:
        raise ValidationError("hostname must not have empty labels")
    if len(label) > v.RAW_FACTOR * MAX_LABEL:
        raise ValidationError(f"hostname labels must be 1..{MAX_LABEL} characters")
    if label.isascii():
        ascii_label = label.lower()
    elif _DEVIATIONS.intersection(label):
        raise ValidationError(
            "hostname has a character IDNA versions encode differently (ß, ς, ZWJ, ZWNJ)"
        )
    else:
        try:
            ascii_label = idna.ToASCII(label).decode("ascii").lower()
        except UnicodeError:
            raise ValidationError("hostname has a label IDNA cannot encode") from None
    if ascii_label.startswith("xn--"):
        _check_a_label(ascii_label)
    return ascii_label


def _check_a_label(label: str) -> None:
    """An ``xn--`` label must be the canonical encoding of some Unicode label,
    otherwise two spellings of one name could both be claimed."""
    try:
        decoded = label[4:].encode("ascii").decode("punycode")
        canonical = idna.ToASCII(decoded).decode("ascii").lower()
    except (UnicodeError, ValueError):
        raise ValidationError("hostname has an invalid xn-- label") from None
    if canonical != label:
        raise ValidationError("hostname has an xn-- label that is not in canonical form")


def _check_labels(labels: builtins.list[str]) -> None:
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise ValidationError(
                f"hostname labels must be 1..{MAX_LABEL} of a-z, 0-9 and '-', "
                "not starting or ending with '-'"
            )
    if len(labels) < 2:
        raise ValidationError("hostname must have at least two labels, like login.example.com")
    tld = labels[-1]
    # A numeric last label makes browsers parse the name as an IPv4 address.
    if tld.isdigit() or _HEX_NUMBER.fullmatch(tld):
        raise ValidationError("hostname must be a DNS name, not an IP address")


def _host_of_request(host: str) -> str | None:
    """The hostname of an HTTP ``Host`` value (port stripped), or ``None``."""
    if host.startswith("["):
        return None  # an IPv6 literal
    name, colon, port = host.rpartition(":") if ":" in host else (host, "", "")
    if colon and (not port.isdigit() or ":" in name):
        return None
    try:
        return normalize_hostname(name)
    except ValidationError:
        return None


def _challenge_name(hostname: str) -> str:
    # A wildcard's record sits at its base name: "*" in a record name would make the
    # TXT record itself a wildcard record.
    return f"{CHALLENGE_PREFIX}.{hostname.removeprefix('*.')}"


# -- DNS -----------------------------------------------------------------------------


@runtime_checkable
class TxtResolver(Protocol):
    """Looks TXT records up.

    ``resolve_txt`` returns the text of each TXT record at ``name`` (a record's
    strings joined), an empty list when the name exists without TXT records, and
    raises when the lookup fails. Any exception becomes a
    :class:`~authsome.errors.VerificationFailed` in :meth:`Domains.verify`.
    """

    def resolve_txt(self, name: str) -> builtins.list[str]:
        """The TXT texts at ``name``."""
        ...


class DnsPythonResolver:
    """The default :class:`TxtResolver`, built on dnspython (extra ``dns``).

    ``resolver`` is a configured ``dns.resolver.Resolver`` (the system's
    configuration when omitted); ``lifetime`` bounds each lookup in seconds. DNS
    failures raise :class:`~authsome.errors.VerificationFailed` with a reason, never
    a dnspython exception.
    """

    def __init__(
        self, resolver: dns.resolver.Resolver | None = None, *, lifetime: float = 5.0
    ) -> None:
        try:
            import dns.resolver  # the optional extra, imported only when used
        except ImportError:
            # An ImportError too, so callers catching that keep working; pass
            # Authsome(dns_resolver=...) to verify without dnspython.
            raise ExtraNotInstalled("dns", "dnspython") from None
        self._resolver = resolver if resolver is not None else dns.resolver.Resolver()
        self._lifetime = _positive_seconds(lifetime)

    def resolve_txt(self, name: str) -> builtins.list[str]:
        """The TXT texts at ``name``; ``[]`` when the name has no TXT records."""
        import dns.exception
        import dns.resolver

        try:
            answer = self._resolver.resolve(
                name, "TXT", lifetime=self._lifetime, search=False, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN:
            raise VerificationFailed(f"{name} does not exist in DNS") from None
        except dns.resolver.LifetimeTimeout:
            raise VerificationFailed(f"DNS lookup of {name} timed out") from None
        except dns.resolver.NoNameservers:
            raise VerificationFailed(f"no DNS server answered for {name}") from None
        except dns.exception.DNSException as exc:
            reason = f"DNS lookup of {name} failed ({type(exc).__name__})"
            raise VerificationFailed(reason) from None
        return [
            b"".join(rdata.strings).decode("utf-8", "replace")
            for rdata in answer
            if hasattr(rdata, "strings")
        ]

    def __repr__(self) -> str:
        return f"DnsPythonResolver(lifetime={self._lifetime})"


def _positive_seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError("lifetime must be a positive number of seconds")
    return float(value)


# -- the service ---------------------------------------------------------------------


class Domains:
    """``auth.domains``: custom hostnames per tenant, proven through DNS."""

    def __init__(
        self,
        store: Store,
        billing: Billing,
        clock: Clock,
        *,
        resolver: TxtResolver | None = None,
    ) -> None:
        if resolver is not None and not isinstance(resolver, TxtResolver):
            raise TypeError(
                f"dns_resolver must provide resolve_txt(name), not {type(resolver).__name__}"
            )
        self._store = store
        self._billing = billing
        self._clock = clock
        self._resolver = resolver
        self._resolver_lock = threading.Lock()

    def add(
        self, hostname: str, *, tenant: str = "default", allow_wildcard: bool = False
    ) -> DomainChallenge:
        """Claim ``hostname`` for ``tenant`` and return the DNS record to publish.

        Plan-gated by ``authsome.feature.custom_domains``: denied →
        :class:`~authsome.errors.FeatureNotEntitled`, nothing stored. The hostname is
        normalized (see :func:`normalize_hostname`).

        A claim is pending until :meth:`verify` proves it, and a pending claim
        blocks nobody: other tenants may claim the same hostname too, and the first
        to verify owns it. :class:`~authsome.errors.AlreadyExists` when this tenant
        has claimed the hostname already, or another tenant has verified it.
        """
        tenant = v.check_tenant(tenant)
        if not isinstance(allow_wildcard, bool):
            raise TypeError(f"allow_wildcard must be a bool, not {type(allow_wildcard).__name__}")
        name = normalize_hostname(hostname, allow_wildcard=allow_wildcard)
        self._billing.require(Feature.CUSTOM_DOMAINS, LedgerContext(tenant=tenant))
        now = self._clock()
        # Expired claims go first, so that claiming a hostname again is possible.
        self._store.delete_pending_domains(now - PENDING_CLAIM_TTL)
        domain = Domain(new_id("dom"), tenant, name, now)
        token = new_token()
        self._store.create_domain(domain, token)
        logger.info("custom domain added: id=%s tenant=%s", domain.id, tenant)
        return _challenge(domain, token)

    def get(self, domain_id: str) -> Domain:
        """The domain with this id; :class:`~authsome.errors.NotFound` otherwise."""
        domain = self._store.get_domain(v.require_str("domain_id", domain_id))
        if domain is None:
            raise NotFound("no such domain")
        return domain

    def challenge(self, domain_id: str) -> DomainChallenge:
        """The DNS record to publish for a domain, again (e.g. for a settings page)."""
        domain = self.get(domain_id)
        token = self._store.get_domain_token(domain.id)
        if token is None:  # removed in between
            raise NotFound("no such domain")
        return _challenge(domain, token)

    def verify(self, domain_id: str) -> Domain:
        """Look the challenge TXT record up and mark the domain verified.

        Plan-gated by ``authsome.feature.custom_domains`` for the domain's tenant
        (:class:`~authsome.errors.FeatureNotEntitled`, no lookup). A domain verified
        already is returned as it is. A claim older than :data:`PENDING_CLAIM_TTL`
        has expired: :class:`~authsome.errors.VerificationFailed`, add it again.
        Otherwise, when no TXT
        record at the challenge name holds the expected value, or the lookup fails
        (no such name, timeout, ...), :class:`~authsome.errors.VerificationFailed`
        says why and the domain stays unverified. When another tenant's claim of
        the hostname was verified first, :class:`~authsome.errors.AlreadyExists`
        (also when both verify at once: the store lets exactly one win).
        """
        domain = self.get(domain_id)
        self._billing.require(Feature.CUSTOM_DOMAINS, LedgerContext(tenant=domain.tenant))
        if domain.verified:
            return domain
        if self._clock() - domain.created_at >= PENDING_CLAIM_TTL:
            raise VerificationFailed(
                f"this claim expired unverified after {PENDING_CLAIM_TTL.days} days;"
                " add the hostname again"
            )
        if self._store.find_domain_by_hostname(domain.hostname) is not None:
            raise AlreadyExists(_HOSTNAME_TAKEN)  # no DNS lookup for a lost race
        token = self._store.get_domain_token(domain.id)
        if token is None:
            raise NotFound("no such domain")
        record_name = _challenge_name(domain.hostname)
        texts = self._lookup(record_name)
        expected = _VALUE_PREFIX + token
        matched = False
        for text in texts:  # look at every record: the answer order tells nothing
            matched |= constant_time_equals(text.strip(), expected)
        if not matched:
            logger.info("custom domain not verified: id=%s records=%d", domain.id, len(texts))
            raise VerificationFailed(
                f"no TXT record at {record_name} holds the expected value"
                f" ({len(texts)} record(s) found)"
            )
        verified = self._store.mark_domain_verified(domain.id, self._clock())
        if verified is None:
            raise NotFound("no such domain")
        logger.info("custom domain verified: id=%s tenant=%s", domain.id, domain.tenant)
        return verified

    def remove(self, domain_id: str) -> bool:
        """Delete a domain (it stops routing at once); ``False`` if it did not exist.

        Not plan-gated: a tenant can always clean up."""
        removed = self._store.delete_domain(v.require_str("domain_id", domain_id))
        if removed:
            logger.info("custom domain removed: id=%s", domain_id)
        return removed

    @overload
    def list(self, *, tenant: str = "default") -> builtins.list[Domain]: ...

    @overload
    @deprecated("pass the tenant as a keyword: domains.list(tenant=...)")
    def list(self, legacy_tenant: str, /) -> builtins.list[Domain]: ...

    def list(self, *legacy_tenant: object, tenant: str = "default") -> builtins.list[Domain]:
        """The domains of ``tenant``, verified or not, ordered by hostname.

        A positional tenant (``list("acme")``) still works in this release, with a
        :class:`DeprecationWarning`: ``tenant`` is a keyword everywhere in authsome.
        """
        if legacy_tenant:
            tenant = _legacy_positional_tenant(legacy_tenant, tenant)
        return self._store.list_domains(v.check_tenant(tenant))

    def tenant_for_host(self, host: str) -> str | None:
        """The tenant a request for ``host`` belongs to, or ``None``.

        ``host`` is an HTTP ``Host`` value: the port is stripped and the name
        normalized like :meth:`add` does (case, trailing dot, IDNA). Only verified
        domains count. An exact domain wins over a wildcard, and a wildcard matches
        exactly one label more than its base. Malformed hosts give ``None``, and so
        does a domain whose tenant's plan no longer includes
        ``authsome.feature.custom_domains`` (a failing ledger follows
        ``on_ledger_error``: :class:`~authsome.errors.LedgerUnavailable` by default).
        """
        name = _host_of_request(v.require_str("host", host))
        if name is None:
            return None
        candidates = [name]
        if name.count(".") >= 2:
            candidates.append("*." + name.split(".", 1)[1])
        for candidate in candidates:
            domain = self._store.find_domain_by_hostname(candidate)
            if domain is not None and domain.verified:
                # The hostname is this tenant's whatever its plan: no fall-through to
                # a wildcard of another tenant when the plan does not allow routing.
                entitled = self._billing.allows(
                    Feature.CUSTOM_DOMAINS, LedgerContext(tenant=domain.tenant)
                )
                return domain.tenant if entitled else None
        return None

    def _lookup(self, record_name: str) -> builtins.list[str]:
        resolver = self._resolver or self._default_resolver()
        try:
            texts: object = resolver.resolve_txt(record_name)
        except VerificationFailed:
            raise
        except Exception as exc:  # an injected resolver may raise anything
            reason = f"DNS lookup of {record_name} failed ({type(exc).__name__})"
            raise VerificationFailed(reason) from exc
        if not isinstance(texts, builtins.list | tuple) or not all(
            isinstance(t, str) for t in texts
        ):
            raise TypeError("resolve_txt must return a list of str")
        return [str(text) for text in texts]

    def _default_resolver(self) -> TxtResolver:
        with self._resolver_lock:
            if self._resolver is None:
                self._resolver = DnsPythonResolver()
            return self._resolver


def _challenge(domain: Domain, token: str) -> DomainChallenge:
    return DomainChallenge(
        domain=domain,
        record_name=_challenge_name(domain.hostname),
        record_value=_VALUE_PREFIX + token,
    )


def _legacy_positional_tenant(legacy_tenant: tuple[object, ...], keyword_tenant: str) -> str:
    """The tenant of a ``domains.list(tenant)`` call written before ``tenant`` was a
    keyword, with its warning; a call naming the tenant both ways is a mistake."""
    if len(legacy_tenant) > 1:
        raise TypeError(
            f"domains.list() takes at most 1 positional argument ({len(legacy_tenant)} given)"
        )
    if keyword_tenant != "default":
        raise TypeError("domains.list() got the tenant both positionally and as a keyword")
    warnings.warn(
        "domains.list(tenant) is deprecated: pass the tenant as a keyword, "
        "domains.list(tenant=...)",
        DeprecationWarning,
        stacklevel=3,
    )
    return v.check_tenant(legacy_tenant[0])
