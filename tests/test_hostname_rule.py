"""One hostname rule for the whole library: custom domains, the e-mail domains of
SSO connections and e-mail routing read a name the same way, and a name that IDNA
2003 and IDNA 2008 read differently (``straße.de``) is refused by all of them
rather than quietly becoming another domain (``strasse.de``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authsome import Authsome, ValidationError
from authsome.domains import normalize_hostname
from authsome.sso import normalize_domain
from tests.test_sso import new_org, oidc, prove


def _outcome(check: Callable[[str], str], text: str) -> str:
    try:
        return check(text)
    except ValidationError:
        return "refused"


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=60),
        st.from_regex(r"[A-Za-z0-9.\-ßẞςüΣσ\u3002\uff0e\u200d]{1,30}", fullmatch=True),
    )
)
def test_sso_domains_and_custom_domains_share_one_rule(text: str) -> None:
    assert _outcome(normalize_domain, text) == _outcome(normalize_hostname, text)


@pytest.mark.parametrize(
    "name",
    ["straße.de", "STRAẞE.de", "ὀδυσσεύς.gr", "xn--strae-oqa.de", "a\u200db.example"],
)
def test_names_idna_versions_read_differently_are_refused_everywhere(
    auth: Authsome, name: str
) -> None:
    with pytest.raises(ValidationError):
        normalize_hostname(name)
    with pytest.raises(ValidationError):
        normalize_domain(name)
    with pytest.raises(ValidationError):
        auth.domains.add(name, tenant="acme")
    org = new_org(auth)
    with pytest.raises(ValidationError):
        auth.sso.configure(org.id, oidc(domains=[name]))


def test_a_sharp_s_address_does_not_route_to_the_ss_domain(auth: Authsome) -> None:
    org = new_org(auth)
    connection = auth.sso.configure(org.id, oidc(domains=["strasse.de"]))
    prove(auth.store, "strasse.de")
    assert auth.sso.connection_for_email("bob@strasse.de", tenant="acme") == connection
    for address in ["bob@straße.de", "bob@STRAẞE.de", "bob@xn--strae-oqa.de"]:
        assert auth.sso.connection_for_email(address, tenant="acme") is None


def test_e_mail_routing_reads_idna_dots_and_a_trailing_dot_like_custom_domains(
    auth: Authsome,
) -> None:
    org = new_org(auth)
    connection = auth.sso.configure(org.id, oidc(domains=["bücher.example"]))
    prove(auth.store, normalize_hostname("bücher.example"))
    for address in ["ann@Bücher.example", "ann@bücher\u3002example", "ann@xn--bcher-kva.example."]:
        assert auth.sso.connection_for_email(address, tenant="acme") == connection


def test_reserved_names_that_can_never_be_proven_are_refused_as_sso_domains(
    auth: Authsome,
) -> None:
    org = new_org(auth)
    with pytest.raises(ValidationError, match="reserved"):
        auth.sso.configure(org.id, oidc(domains=["corp.internal"]))


def test_idp_urls_may_live_on_internal_names(auth: Authsome) -> None:
    # The IdP's own host needs no public DNS: only e-mail domains must be provable.
    org = new_org(auth)
    info = auth.sso.configure(org.id, oidc(issuer="https://idp.corp.internal"))
    assert info.issuer == "https://idp.corp.internal"
