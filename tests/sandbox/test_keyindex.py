"""The indexed key collection: orderings, replacement, removal, range counts, flattening."""

from __future__ import annotations

from typing import Any

import pytest

from rotator.sandbox.keyindex import SEQ_SPAN, KeyIndex, QueryDoc, flatten_metadata

NOW = 1_700_000_000_000


def doc(seq: int, **kw: Any) -> QueryDoc:
    base: dict[str, Any] = {
        "id": f"id-{seq}",
        "name": f"key-{seq}",
        "type": "rest",
        "creation": NOW + seq,
        "expiration": NOW + 1000 * seq,
        "invalidated": False,
        "invalidation": None,
        "username": "alice",
        "realm_name": "native1",
        "metadata": {},
        "seq": seq,
    }
    base.update(kw)
    return QueryDoc(**base)


def test_add_get_len_iter_in_seq_order() -> None:
    index = KeyIndex([doc(3), doc(1), doc(2)])
    assert len(index) == 3
    assert [d.seq for d in index] == [1, 2, 3]
    assert index.get("id-2") == doc(2)
    assert index.get("nope") is None
    assert "id-1" in index


def test_duplicate_id_and_bad_seq_are_refused() -> None:
    index = KeyIndex([doc(1)])
    with pytest.raises(ValueError, match="already indexed"):
        index.add(doc(1))
    with pytest.raises(ValueError, match="out of range"):
        index.add(doc(SEQ_SPAN))
    with pytest.raises(ValueError, match="out of range"):
        index.add(doc(-1))


def test_replace_moves_the_key_in_every_ordering() -> None:
    index = KeyIndex([doc(1), doc(2)])
    index.replace(doc(1, expiration=None, name=None, invalidated=True, invalidation=NOW))
    assert [d.id for d in index.date_range("expiration", None, None)] == ["id-2"]
    assert [d.id for d in index.missing("expiration")] == ["id-1"]
    assert [d.id for d in index.missing("name")] == ["id-1"]
    assert index.count_missing("expiration") == 1
    assert index.get("id-1") is not None
    with pytest.raises(KeyError):
        index.replace(doc(9))


def test_remove() -> None:
    index = KeyIndex([doc(1), doc(2)])
    index.remove("id-1")
    assert [d.id for d in index] == ["id-2"]
    assert index.count_date_range("creation", None, None) == 1
    with pytest.raises(KeyError):
        index.remove("id-1")


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (None, None, [1, 2, 3, 4]),
        (NOW + 2000, None, [2, 3, 4]),
        (None, NOW + 2000, [1, 2]),
        (NOW + 2001, NOW + 3999, [3]),
        (NOW + 5000, NOW + 1000, []),
    ],
)
def test_date_range_and_count(lo: int | None, hi: int | None, expected: list[int]) -> None:
    index = KeyIndex([doc(4), doc(1), doc(3), doc(2), doc(5, expiration=None)])
    assert [d.seq for d in index.date_range("expiration", lo, hi)] == expected
    assert index.count_date_range("expiration", lo, hi) == len(expected)
    assert [d.seq for d in index.date_range("expiration", lo, hi, reverse=True)] == expected[::-1]


def test_equal_values_are_ordered_by_seq() -> None:
    index = KeyIndex([doc(3, expiration=NOW), doc(1, expiration=NOW), doc(2, expiration=NOW)])
    assert [d.seq for d in index.date_range("expiration", NOW, NOW)] == [1, 2, 3]


@pytest.mark.parametrize(
    ("lo", "hi", "inclusive", "expected"),
    [
        ("b", "c", (True, True), ["b", "c"]),
        ("b", "c", (False, True), ["c"]),
        ("b", "c", (True, False), ["b"]),
        (None, "b", (True, True), ["a", "b"]),
        ("c", None, (True, True), ["c", "d"]),
    ],
)
def test_name_range(
    lo: str | None, hi: str | None, inclusive: tuple[bool, bool], expected: list[str]
) -> None:
    index = KeyIndex([doc(i, name=n) for i, n in enumerate("dcba")] + [doc(9, name=None)])
    assert [d.name for d in index.name_range(lo, hi, inclusive=inclusive)] == expected
    assert index.count_name_range(lo, hi, inclusive=inclusive) == len(expected)


def test_unordered_fields_are_refused() -> None:
    index = KeyIndex()
    with pytest.raises(ValueError, match="no date ordering"):
        list(index.date_range("username", None, None))
    with pytest.raises(ValueError, match="no ordering"):
        list(index.missing("username"))
    assert list(index.missing("creation")) == []
    assert index.count_missing("creation") == 0


@pytest.mark.parametrize(
    ("metadata", "keyed", "root"),
    [
        ({}, {}, ()),
        (
            {"a": "x", "n": 42, "f": 1.5},
            {"a": ("x",), "n": ("42",), "f": ("1.5",)},
            ("1.5", "42", "x"),
        ),
        ({"b": True, "z": None}, {"b": ("true",)}, ("true",)),
        ({"o": {"p": {"q": "deep"}}}, {"o.p.q": ("deep",)}, ("deep",)),
        ({"l": ["y", "x", "y"]}, {"l": ("x", "y")}, ("x", "y")),
        ({"l": [{"k": 1}, {"k": 2}]}, {"l.k": ("1", "2")}, ("1", "2")),
    ],
)
def test_flatten_metadata(
    metadata: dict[str, Any], keyed: dict[str, tuple[str, ...]], root: tuple[str, ...]
) -> None:
    flat = flatten_metadata(metadata)
    assert flat.keyed == keyed
    assert flat.root == root


def test_flat_metadata_is_cached_and_dropped_on_replace() -> None:
    index = KeyIndex([doc(1, metadata={"env": "prod"})])
    first = index.flat_metadata(doc(1, metadata={"env": "prod"}))
    assert index.flat_metadata(doc(1, metadata={"env": "prod"})) is first
    index.replace(doc(1, metadata={"env": "dev"}))
    current = index.get("id-1")
    assert current is not None
    assert index.flat_metadata(current).keyed == {"env": ("dev",)}
