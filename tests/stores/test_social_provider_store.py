"""Every store keeps a tenant's social provider configurations the same way: one per
tenant and provider, replaced whole, its secret as given and compare-and-set."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from authsome.models import SocialProviderInfo, StoredSecret
from authsome.stores import MemoryStore, SQLiteStore, Store
from tests.support.stores import postgres_store

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store
    if request.param == "memory":
        made = MemoryStore()
    elif request.param == "sqlite":
        made = SQLiteStore(str(tmp_path / "auth.db"))
    else:
        made = postgres_store(request)
    yield made
    made.close()


def _info(
    tenant: str, provider: str, *, id_: str, client_id: str = "cid", at: datetime = T0
) -> SocialProviderInfo:
    return SocialProviderInfo(
        id=id_,
        tenant=tenant,
        provider=provider,
        client_id=client_id,
        scopes=("read:user", "user:email"),
        settings=(("api_base", "https://api.example"), ("team_id", "T1")),
        has_client_secret=True,
        created_at=at,
        updated_at=at,
    )


def test_put_get_list_and_delete(store: Store) -> None:
    stored = store.put_social_provider(_info("t1", "github", id_="soc_a"), StoredSecret("s1"))
    store.put_social_provider(_info("t1", "apple", id_="soc_b"), StoredSecret("k", sealed=True))
    store.put_social_provider(_info("t2", "github", id_="soc_c"), StoredSecret("s2"))

    assert store.get_social_provider("t1", "github") == stored
    assert stored.settings == (("api_base", "https://api.example"), ("team_id", "T1"))
    assert [p.provider for p in store.list_social_providers("t1")] == ["apple", "github"]
    assert store.get_social_client_secret("soc_b") == StoredSecret("k", sealed=True)
    assert store.get_social_provider("t3", "github") is None

    assert store.delete_social_provider("t1", "github") is True
    assert store.delete_social_provider("t1", "github") is False
    assert store.get_social_client_secret("soc_a") is None
    assert store.get_social_provider("t2", "github") is not None  # another tenant's stays


def test_a_second_put_replaces_the_configuration_and_keeps_created_at(store: Store) -> None:
    store.put_social_provider(_info("t1", "github", id_="soc_old"), StoredSecret("old"))
    later = T0 + timedelta(hours=1)
    replaced = store.put_social_provider(
        _info("t1", "github", id_="soc_new", client_id="cid2", at=later), StoredSecret("new")
    )
    assert (replaced.id, replaced.client_id) == ("soc_new", "cid2")
    assert (replaced.created_at, replaced.updated_at) == (T0, later)
    assert store.get_social_client_secret("soc_new") == StoredSecret("new")
    assert store.get_social_client_secret("soc_old") is None
    assert len(store.list_social_providers("t1")) == 1


def test_secrets_page_by_id_and_replace_by_compare_and_set(store: Store) -> None:
    for n in range(3):
        store.put_social_provider(_info("t", f"p{n}", id_=f"soc_{n}"), StoredSecret(f"s{n}"))
    assert [i for i, _ in store.list_social_client_secrets("", 2)] == ["soc_0", "soc_1"]
    assert [i for i, _ in store.list_social_client_secrets("soc_1", 5)] == ["soc_2"]

    sealed = StoredSecret("sealed", sealed=True)
    assert store.replace_social_client_secret("soc_0", StoredSecret("other"), sealed) is False
    assert store.replace_social_client_secret("soc_0", StoredSecret("s0"), sealed) is True
    assert store.get_social_client_secret("soc_0") == sealed


def test_a_record_without_its_secret_is_a_callers_bug(store: Store) -> None:
    info = SocialProviderInfo(
        id="soc_x",
        tenant="t",
        provider="github",
        client_id="c",
        scopes=(),
        settings=(),
        has_client_secret=False,
        created_at=T0,
        updated_at=T0,
    )
    with pytest.raises(ValueError, match="secret"):
        store.put_social_provider(info, StoredSecret("s"))
