"""Document search sorted by a source field, as a reader of a data stream asks for its newest
document (``sort`` on a numeric field, ``desc``, ``size: 1``)."""

from __future__ import annotations

import pytest
from elasticsearch import BadRequestError, Elasticsearch

from rotator.sandbox import Sandbox

STREAM = "logs-sorted-default"


@pytest.fixture(autouse=True)
def _clean(clean: None) -> None:
    """Every test starts from an empty sandbox."""


def _fill(es: Elasticsearch) -> None:
    # Inserted out of order: the search must not answer in insertion order.
    for seq in (3, 11, 1, 7):
        es.create(
            index=STREAM,
            id=str(seq),
            document={"@timestamp": "2030-01-01T00:00:00Z", "event": {"sequence": seq}},
        )
    es.create(index=STREAM, id="none", document={"@timestamp": "2030-01-01T00:00:00Z"})


def _ids(es: Elasticsearch, sort: object, size: int = 10) -> list[str]:
    body = es.search(index=STREAM, size=size, sort=sort, query={"match_all": {}}).body
    return [hit["_id"] for hit in body["hits"]["hits"]]


def test_sort_by_a_numeric_field_in_either_order_missing_last(
    sandbox: Sandbox, es: Elasticsearch
) -> None:
    _fill(es)
    assert _ids(es, [{"event.sequence": {"order": "desc"}}], size=1) == ["11"]
    assert _ids(es, [{"event.sequence": "desc"}]) == ["11", "7", "3", "1", "none"]
    assert _ids(es, ["event.sequence"]) == ["1", "3", "7", "11", "none"]
    assert _ids(es, {"event.sequence": {"order": "asc"}}, size=2) == ["1", "3"]


def test_an_unknown_order_is_refused(sandbox: Sandbox, es: Elasticsearch) -> None:
    _fill(es)
    with pytest.raises(BadRequestError) as caught:
        _ids(es, [{"event.sequence": {"order": "down"}}])
    assert "Unknown SortOrder [down]" in str(caught.value)
