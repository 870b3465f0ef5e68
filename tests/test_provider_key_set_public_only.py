"""A provider's published key set is kept as public keys only: private members a
careless provider publishes (``d``, RSA's primes and CRT values) are dropped."""

from __future__ import annotations

from joserfc.jwk import ECKey, OKPKey, RSAKey

from authsome._oidc import _import_key_set


def test_private_parts_of_published_keys_are_dropped() -> None:
    published = [
        RSAKey.generate_key(2048, parameters={"kid": "rsa"}, private=True),
        ECKey.generate_key("P-256", parameters={"kid": "ec"}, private=True),
        OKPKey.generate_key("Ed25519", parameters={"kid": "okp"}, private=True),
    ]
    keys = _import_key_set({"keys": [key.as_dict(private=True) for key in published]})
    assert sorted(key.kid or "" for key in keys) == ["ec", "okp", "rsa"]
    for key in keys:
        assert not key.is_private
        assert "d" not in key.as_dict(private=False)
