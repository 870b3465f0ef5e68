"""One mailbox, one account: spellings of the same address normalize alike, and
addresses with invisible or control characters are refused rather than stored as
look-alikes."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authsome import AlreadyExists, Authsome, ValidationError
from authsome._validation import normalize_email
from tests.conftest import PASSWORD

IDNA_DOTS = ".\u3002\uff0e\uff61"
# Default_Ignorable_Code_Point samples from every range of the Unicode property.
DEFAULT_IGNORABLE = [
    "\u00ad", "\u034f", "\u061c", "\u115f", "\u1160", "\u17b4", "\u17b5", "\u180b",
    "\u180e", "\u180f", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u202a",
    "\u202e", "\u2060", "\u2064", "\u2065", "\u2066", "\u206f", "\u3164", "\ufe00",
    "\ufe0f", "\ufeff", "\uffa0", "\ufff0", "\ufff8", "\U0001bca0", "\U0001bca3",
    "\U0001d173", "\U0001d17a", "\U000e0000", "\U000e0001", "\U000e0020", "\U000e007f",
    "\U000e0100", "\U000e01ef", "\U000e0fff",
]  # fmt: skip
CONTROL = st.characters(categories=["Cc", "Cf", "Co"])
INVISIBLE = st.one_of(st.sampled_from(DEFAULT_IGNORABLE), CONTROL)

ASCII_LABEL = st.text(
    st.characters(categories=["Ll", "Lu", "Nd"], max_codepoint=127), min_size=1, max_size=12
)
UNICODE_LABEL = st.text(st.characters(categories=["Ll", "Lo"]), min_size=1, max_size=12)


@st.composite
def addresses(draw: st.DrawFn) -> tuple[str, str, list[str]]:
    """(local part, labels of the domain): a plausible address in parts."""
    local = draw(st.one_of(ASCII_LABEL, UNICODE_LABEL))
    labels = draw(st.lists(st.one_of(ASCII_LABEL, UNICODE_LABEL), min_size=1, max_size=3))
    tld = draw(st.sampled_from(["com", "de", "COM", "jp"]))
    return local, "@", [*labels, tld]


def _canonical(local: str, at: str, labels: list[str]) -> str:
    return f"{local}{at}{'.'.join(labels)}"


@given(addresses(), st.data())
def test_idna_dots_and_a_trailing_dot_spell_the_same_address(
    address: tuple[str, str, list[str]], data: st.DataObject
) -> None:
    local, at, labels = address
    try:
        expected = normalize_email(_canonical(local, at, labels))
    except ValidationError:
        return  # not an address in the first place (say, a local part over 64)
    dots = [data.draw(st.sampled_from(IDNA_DOTS)) for _ in labels[1:]]
    domain = labels[0] + "".join(d + label for d, label in zip(dots, labels[1:], strict=True))
    trailing = data.draw(st.sampled_from(["", *IDNA_DOTS]))
    assert normalize_email(f"{local}@{domain}{trailing}") == expected


@given(addresses(), INVISIBLE, st.data())
def test_invisible_and_control_characters_are_refused_anywhere(
    address: tuple[str, str, list[str]], invisible: str, data: st.DataObject
) -> None:
    text = _canonical(*address)
    # Inside the text: surrounding whitespace (some of it is Cc, like "\x1c") is trimmed.
    position = data.draw(st.integers(min_value=1, max_value=len(text) - 1))
    with pytest.raises(ValidationError):
        normalize_email(text[:position] + invisible + text[position:])


@pytest.mark.parametrize("invisible", DEFAULT_IGNORABLE)
def test_every_default_ignorable_range_is_refused(invisible: str) -> None:
    with pytest.raises(ValidationError, match="invisible"):
        normalize_email(f"ada{invisible}@example.com")
    with pytest.raises(ValidationError, match="invisible"):
        normalize_email(f"ada@exam{invisible}ple.com")


@pytest.mark.parametrize(
    "variant",
    [
        "ada@example.com.",
        "ada@example\u3002com",
        "ada@example\uff0ecom",
        "ada@example\uff61com",
        "ada@example.com\u3002",
        "ADA@EXAMPLE.COM.",
    ],
)
def test_a_second_spelling_of_a_mailbox_finds_the_first_account(
    auth: Authsome, variant: str
) -> None:
    ada = auth.users.register("ada@example.com", PASSWORD)
    with pytest.raises(AlreadyExists):
        auth.users.register(variant, PASSWORD)
    assert auth.users.find_by_email(variant) == ada
    assert auth.sign_in(variant, PASSWORD, ip="192.0.2.1").user == ada


@pytest.mark.parametrize(
    "look_alike", ["ada\u200b@example.com", "ada@example.com\u200d", "\ufeffada@example.com"]
)
def test_look_alikes_with_invisible_characters_are_not_registered(
    auth: Authsome, look_alike: str
) -> None:
    auth.users.register("ada@example.com", PASSWORD)
    with pytest.raises(ValidationError):
        auth.users.register(look_alike, PASSWORD)
    assert (
        auth.store.find_user_by_email("default", unicodedata.normalize("NFKC", look_alike)) is None
    )


def test_trailing_dots_beyond_one_are_refused() -> None:
    with pytest.raises(ValidationError):
        normalize_email("ada@example.com..")
    with pytest.raises(ValidationError):
        normalize_email("ada@.")
