"""The sandbox's documents: indices and data streams holding sources by id, with versions."""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rotator.sandbox.errors import EsError

# Index names that Elasticsearch's built-in templates turn into data streams.
DATA_STREAM_PATTERN = re.compile(r"^(logs|metrics|traces|synthetics)-.+-.+$")
SHARDS = {"total": 2, "successful": 1, "failed": 0}


def is_data_stream(name: str) -> bool:
    """Whether writing to ``name`` creates (or writes to) a data stream."""
    return bool(DATA_STREAM_PATTERN.match(name))


def new_id() -> str:
    """An auto-generated document id (20 URL-safe characters, as Elasticsearch's are)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(15)).decode().rstrip("=")


@dataclass
class Doc:
    """One stored document."""

    source: dict[str, Any]
    version: int
    seq_no: int


@dataclass
class Index:
    """One index or data stream: its documents, creation time and uuid."""

    name: str
    created_ms: int
    uuid: str = field(default_factory=lambda: new_id()[:22])
    docs: dict[str, Doc] = field(default_factory=dict)
    next_seq: int = 0

    @property
    def concrete(self) -> str:
        """The name documents report as ``_index`` (the backing index of a data stream)."""
        if not is_data_stream(self.name):
            return self.name
        created = datetime.fromtimestamp(self.created_ms / 1000, UTC)
        return f".ds-{self.name}-{created:%Y.%m.%d}-000001"

    def put(self, doc_id: str, source: dict[str, Any]) -> Doc:
        """Store ``source`` under ``doc_id`` (a new version when it exists)."""
        old = self.docs.get(doc_id)
        doc = Doc(source, old.version + 1 if old else 1, self.next_seq)
        self.next_seq += 1
        self.docs[doc_id] = doc
        return doc

    def delete(self, doc_id: str) -> Doc | None:
        """Remove a document; the tombstone's version and seq_no, or None when absent."""
        old = self.docs.pop(doc_id, None)
        if old is None:
            return None
        tombstone = Doc({}, old.version + 1, self.next_seq)
        self.next_seq += 1
        return tombstone

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot."""
        return {
            "created_ms": self.created_ms,
            "uuid": self.uuid,
            "next_seq": self.next_seq,
            "docs": {k: [d.source, d.version, d.seq_no] for k, d in self.docs.items()},
        }

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> Index:
        """Restore :meth:`to_json`."""
        index = cls(name, int(data["created_ms"]), str(data["uuid"]))
        index.next_seq = int(data.get("next_seq", 0))
        index.docs = {k: Doc(dict(v[0]), int(v[1]), int(v[2])) for k, v in data["docs"].items()}
        return index


class DocumentStore:
    """Every index and data stream the sandbox holds."""

    def __init__(self) -> None:
        self.indices: dict[str, Index] = {}

    def get(self, name: str) -> Index | None:
        """The index or data stream called ``name``, or None."""
        return self.indices.get(name)

    def require(self, name: str) -> Index:
        """The index called ``name``.

        Raises:
            EsError: 404 ``index_not_found_exception`` as Elasticsearch words it.
        """
        index = self.indices.get(name)
        if index is None:
            raise index_not_found(name)
        return index

    def create(self, name: str, now_ms: int) -> Index:
        """Create ``name`` (or return it when it exists)."""
        index = self.indices.get(name)
        if index is None:
            index = self.indices[name] = Index(name, now_ms)
        return index

    def count(self, name: str) -> int:
        """How many documents ``name`` holds (0 when it does not exist)."""
        index = self.indices.get(name)
        return len(index.docs) if index is not None else 0

    def reset(self) -> None:
        """Drop every index."""
        self.indices.clear()

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot."""
        return {name: index.to_json() for name, index in self.indices.items()}

    def load_json(self, data: dict[str, Any]) -> None:
        """Restore :meth:`to_json`."""
        self.indices = {name: Index.from_json(name, v) for name, v in data.items()}


def index_not_found(name: str) -> EsError:
    """Elasticsearch's 404 for a missing index."""
    return EsError(
        404,
        "index_not_found_exception",
        f"no such index [{name}]",
        metadata={
            "resource.type": "index_or_alias",
            "resource.id": name,
            "index_uuid": "_na_",
            "index": name,
        },
    )


def write_result(index: Index, doc_id: str, doc: Doc, result: str) -> dict[str, Any]:
    """The body of a write (``_index`` ... ``_primary_term``), as Elasticsearch orders it."""
    return {
        "_index": index.concrete,
        "_id": doc_id,
        "_version": doc.version,
        "result": result,
        "_shards": SHARDS,
        "_seq_no": doc.seq_no,
        "_primary_term": 1,
    }
