"""``rotator once track`` and ``rotator keys`` as an operator runs them, through subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import World
from tests.e2e.test_cli_lifecycle import rotator, setup_config
from tests.e2e.test_track import KIBANA_USER, grant, see_everything


def make_kibana_keys(world: World) -> dict[str, str]:
    admin = world.admin()
    admin.security.put_role(name="rule_author", cluster=["monitor"], indices=[])
    admin.security.put_user(username=KIBANA_USER[0], password=KIBANA_USER[1], roles=["rule_author"])
    return {
        "rule": grant(admin, "Alerting: .es-query/Errors", metadata={"managed": True}),
        "soon": grant(admin, "TaskManager: ops", expiration="2d", metadata={"managed": True}),
        "user": str(admin.security.create_api_key(name="backup script", expiration="5d")["id"]),
    }


def test_keys_before_any_sweep_says_so(world: World, tmp_path: Path) -> None:
    config = setup_config(world, tmp_path)

    done = rotator(world, config, "keys")

    assert done.returncode == 0, done.stderr
    assert "no sweep has run yet" in done.stdout


def test_once_track_then_keys_lists_filters_and_prints_json(world: World, tmp_path: Path) -> None:
    config = setup_config(world, tmp_path)
    see_everything(world)
    ids = make_kibana_keys(world)

    done = rotator(world, config, "once", "track")

    assert done.returncode == 0, done.stderr
    assert "scope" in done.stdout
    assert "all (every API key in the cluster is visible)" in done.stdout
    listing = rotator(world, config, "keys")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.startswith("scope: all")
    assert "kibana-managed/alerting" in listing.stdout
    assert "Alerting: .es-query/Errors" in listing.stdout
    expiring = rotator(world, config, "keys", "--expiring", "3d", "-o", "json")
    found = json.loads(expiring.stdout)
    assert found["scope"] == "all"
    assert found["last_sweep_ok"] is True
    assert {k["id"] for k in found["keys"]} == {ids["soon"]}
    managed = json.loads(
        rotator(world, config, "keys", "--class", "kibana-managed", "-o", "json").stdout
    )
    assert {k["id"] for k in managed["keys"]} == {ids["rule"], ids["soon"]}
    unrestricted = json.loads(
        rotator(world, config, "keys", "--finding", "no_expiration", "-o", "json").stdout
    )
    assert {k["id"] for k in unrestricted["keys"]} == {ids["rule"]}
    by_owner = json.loads(rotator(world, config, "keys", "--owner", "nobody", "-o", "json").stdout)
    assert by_owner["count"] == 0


def test_without_read_security_keys_never_says_there_are_none(world: World, tmp_path: Path) -> None:
    config = setup_config(world, tmp_path)
    make_kibana_keys(world)

    done = rotator(world, config, "once", "track", "-o", "json")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["scope"] == "own"
    listing = rotator(world, config, "keys", "--class", "kibana-managed")
    assert listing.stdout.startswith("scope: own")
    assert "not visible without read_security" in listing.stdout


def test_a_bad_duration_names_the_option(world: World, tmp_path: Path) -> None:
    config = setup_config(world, tmp_path)

    done = rotator(world, config, "keys", "--expiring", "soon")

    assert done.returncode == 2
    assert "--expiring 'soon'" in done.stderr


def test_once_track_exits_1_when_elasticsearch_is_unreachable(world: World, tmp_path: Path) -> None:
    config = setup_config(world, tmp_path)
    text = config.read_text().replace(world.sandbox.url, "http://127.0.0.1:9")
    config.write_text(text)

    done = rotator(world, config, "once", "track")

    assert done.returncode == 1
    assert "FAILED" in done.stdout
    assert "cannot reach Elasticsearch" in done.stdout
