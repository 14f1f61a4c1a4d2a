"""A failing sink that prints the credential back never puts it in the store or the logs.

The exec sink keeps what it got on stdin (so the test knows the new key's secret), prints it in
base64 and hex, and fails; after the run, no encoding of that secret is anywhere in the store
(the audit trail included) or in any log event.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from sqlalchemy import inspect, text
from structlog.testing import capture_logs

from rotator.config import parse_config
from rotator.model import specs_from_config
from tests.e2e.conftest import World, config_text


def encodings(value: str) -> list[str]:
    """``value`` and ``value + newline`` raw, in base64 (every variant) and in hex."""
    forms = [value]
    for data in (value.encode(), f"{value}\n".encode()):
        standard = base64.b64encode(data).decode()
        urlsafe = base64.urlsafe_b64encode(data).decode()
        forms += [standard, standard.rstrip("="), urlsafe, urlsafe.rstrip("=")]
        forms += [data.hex(), data.hex().upper()]
    return forms


def pieces(form: str, size: int = 16) -> list[str]:
    return [form[i : i + size] for i in range(len(form) - size + 1)]


def store_dump(world: World) -> str:
    """Every row of every table, as text."""
    rows: list[str] = []
    with world.engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                rows.append(f"{table}: {tuple(row)!r}")
    return "\n".join(rows)


def test_failing_exec_sink_echoing_the_key_leaks_it_nowhere(world: World, tmp_path: Path) -> None:
    got = tmp_path / "got"
    command = f"cat > {got}; base64 {got} >&2; xxd -p {got}; od -An -tx1 {got} >&2; exit 1"
    config = config_text(world.sandbox.url, world.out, str(world.engine.url), sources=("web",))
    config = config.replace(
        f"{{type: file, path: '{world.out / 'web.key'}', format: 'id:api_key'}}",
        json.dumps({"type": "exec", "argv": ["/bin/sh", "-c", command]}),
    )
    specs = specs_from_config(parse_config(config))
    with capture_logs() as logs:
        report = world.lifecycle().run(specs)
    assert report.failed, "the sink fails, so the rotation must fail"
    key_id, secret = got.read_text().strip().split(":")
    pair = f"{key_id}:{secret}"
    encoded = base64.b64encode(pair.encode()).decode()
    forms = [*encodings(secret), *encodings(pair), *encodings(encoded)]
    logged = json.dumps(logs, default=str)
    details = "\n".join(outcome.detail for outcome in report.outcomes)
    for where, haystack in (("store", store_dump(world)), ("logs", logged), ("report", details)):
        compact = re.sub(r"\s+", "", haystack)
        found = [form for form in forms if form in haystack or form in compact]
        # A piece of a form (a wrapped line of it) counts too; the key id alone is no secret.
        encoded_forms = [form for form in forms if form != pair]
        found += [f for f in encoded_forms if any(piece in compact for piece in pieces(f))]
        assert found == [], f"{where} holds an encoding of the new key"
    assert "exited with status 1" in details
