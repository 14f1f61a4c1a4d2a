"""`rotator check-config`: every problem, exact lines, exit 2.

The table runs in-process through ``cli.main`` with captured output; a few smoke tests run the
command as a subprocess, as a user does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.cli_runner import Run, in_process

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "rotator.example.yaml"

SOURCE = """
sources:
  - name: web
    privileges:
      cluster: [monitor]
      indices: [{names: [logs-web-default], privileges: [create_doc]}]
"""
AUTH = """
elasticsearch:
  username: rotator
  password_env: ROTATOR_ES_PASSWORD
"""
DURATION_FORMS = "a whole number followed by s, m, h or d, such as 45s, 90m, 12h or 30d"


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "ROTATOR_CONFIG"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "rotator", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=full_env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def check(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Run:
    """Run ``rotator ARGS`` in-process in ``tmp_path``; the secrets of AUTH and the example exist."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROTATOR_CONFIG", raising=False)
    monkeypatch.setenv("ROTATOR_ES_PASSWORD", "not-a-real-password")
    monkeypatch.setenv("ROTATOR_WEBHOOK_SECRET", "not-a-real-secret")
    for name in ("PW", "TK", "KEY"):  # the references the table's rows use
        monkeypatch.setenv(name, "not-a-real-secret")
    return in_process(capsys)


# (id, YAML, the exact problem lines in order)
INVALID = [
    ("not-a-mapping", "- a\n- b\n", ["(root): expected a mapping of sections, got a list"]),
    ("bad-yaml", "store: {url: [\n", None),
    (
        "unknown-top-level",
        "stor: {}\n",
        [
            "stor: unknown key (did you mean 'store'?); allowed: audit, defaults, elasticsearch, log, "
            "managed_keys, notify, purge, service, sources, store"
        ],
    ),
    (
        "unknown-nested",
        "service: {max_paralel: 3}\n",
        [
            "service.max_paralel: unknown key (did you mean 'max_parallel'?); allowed: backoff_initial, "
            "backoff_max, lease_ttl, listen, max_parallel, metrics_enabled, schedule, "
            "shutdown_timeout"
        ],
    ),
    (
        "inline-password",
        "elasticsearch: {username: u, password: hunter2}\n",
        [
            "elasticsearch.password: secrets may not be written in the config; use password_env "
            "(an environment variable) or password_file (a file) instead"
        ],
    ),
    (
        "inline-api-key",
        "elasticsearch: {api_key: abc}\n",
        [
            "elasticsearch.api_key: secrets may not be written in the config; use api_key_env "
            "(an environment variable) or api_key_file (a file) instead"
        ],
    ),
    (
        "username-without-password",
        "elasticsearch: {username: rotator}\n",
        ["elasticsearch.username: needs password_env or password_file"],
    ),
    (
        "password-without-username",
        "elasticsearch: {password_env: PW}\n",
        ["elasticsearch.username: required when a password is configured"],
    ),
    (
        "secret-value-in-env-field",
        "elasticsearch: {username: u, password_env: 'hunter2!'}\n",
        [
            "elasticsearch.password_env: expected the name of an environment variable (letters, "
            "digits and _), not the secret itself"
        ],
    ),
    (
        "env-and-file",
        "elasticsearch: {username: u, password_env: PW, password_file: /run/pw}\n",
        ["elasticsearch.password_file: set password_env or password_file, not both"],
    ),
    (
        "two-auth-methods",
        "elasticsearch: {username: u, password_env: PW, bearer_token_env: TK}\n",
        ["elasticsearch: choose one way to authenticate, not username and bearer_token_*"],
    ),
    (
        "api-key-with-sources",
        "elasticsearch: {api_key_env: KEY}\n" + SOURCE,
        [
            "elasticsearch.api_key_env: an API key may only run the read-only jobs, but sources "
            "need(s) to create or invalidate keys: Elasticsearch gives a key created by an API key "
            "no privileges; use username with password_env or password_file, or bearer_token_env"
        ],
    ),
    (
        "sources-without-credentials",
        SOURCE,
        [
            "elasticsearch: sources need(s) credentials: set username with password_env or "
            "password_file, or bearer_token_env or bearer_token_file"
        ],
    ),
    (
        "bad-host-url",
        "elasticsearch: {hosts: ['localhost:9200']}\n",
        [
            "elasticsearch.hosts[0]: expected a URL such as https://es.example:9200, got "
            "'localhost:9200'"
        ],
    ),
    (
        "credentials-in-host-url",
        "elasticsearch: {hosts: ['https://u:pw@es:9200']}\n",
        [
            "elasticsearch.hosts[0]: credentials must not be part of the URL; use username with "
            "password_env or password_file"
        ],
    ),
    (
        "hosts-not-a-list",
        "elasticsearch: {hosts: https://es:9200}\n",
        ["elasticsearch.hosts: expected a list, got a string ('https://es:9200')"],
    ),
    (
        "verify-certs-wrong-type",
        "elasticsearch: {verify_certs: 'no'}\n",
        ["elasticsearch.verify_certs: expected true or false, got a string ('no')"],
    ),
    (
        "bad-duration-unit",
        "defaults: {lifetime: 30days}\n",
        [f"defaults.lifetime: invalid duration '30days': use {DURATION_FORMS}"],
    ),
    (
        "duration-as-number",
        "defaults: {overlap: 3600}\n",
        [f"defaults.overlap: expected a duration ({DURATION_FORMS}), got a number (3600)"],
    ),
    (
        "fractional-duration",
        "service: {lease_ttl: 1.5h}\n",
        [f"service.lease_ttl: invalid duration '1.5h': use {DURATION_FORMS}"],
    ),
    ("zero-lifetime", "defaults: {lifetime: 0s}\n", ["defaults.lifetime: must be longer than 0s"]),
    (
        "rotate-before-not-shorter",
        "defaults: {lifetime: 7d, rotate_before: 7d}\n",
        ["defaults.rotate_before: must be shorter than lifetime (7d >= 7d)"],
    ),
    (
        "overlap-not-shorter",
        "defaults: {lifetime: 30d, rotate_before: 2d, overlap: 2d}\n",
        [
            "defaults.overlap: must be shorter than rotate_before, or the old key expires before the "
            "overlap ends (2d >= 2d)"
        ],
    ),
    (
        "jitter-too-large",
        "defaults: {lifetime: 30d, rotate_before: 10d, jitter: 20d}\n",
        [
            "defaults.jitter: rotate_before + jitter must be shorter than lifetime (10d + 20d >= 30d)"
        ],
    ),
    (
        "source-lifetime-below-default-rotate-before",
        AUTH + "defaults: {rotate_before: 10d}\n" + SOURCE + "    lifetime: 7d\n",
        [
            "sources[0].rotate_before (from defaults.rotate_before): must be shorter than lifetime "
            "(10d >= 7d)"
        ],
    ),
    (
        "duplicate-names",
        AUTH + SOURCE + SOURCE.replace("sources:\n", ""),
        ["sources[1].name: duplicate source name 'web' (first used by sources[0])"],
    ),
    (
        "invalid-source-name",
        AUTH + SOURCE.replace("name: web", "name: Web Logs"),
        [
            "sources[0].name: 'Web Logs' is not a valid source name: use 1-63 lowercase letters, "
            "digits, '.', '_' or '-', starting with a letter or digit"
        ],
    ),
    (
        "source-missing-fields",
        AUTH + "sources:\n  - {metadata: {}}\n",
        [
            "sources[0].name: is required",
            "sources[0].privileges: grant at least one cluster or index privilege (or use a "
            "preset); a key with no role descriptor would carry all of rotator's own privileges",
        ],
    ),
    (
        "structural-error-does-not-hide-lint",
        AUTH
        + SOURCE.replace("cluster: [monitor]", "cluster: [manage_security]")
        + "    deliver: [{type: file, path: /k, colour: red}]\n",
        [
            "sources[0].deliver[0].colour: unknown key; allowed: env_var, format, group, mode, "
            "owner, path, type",
            "sources[0].privileges.cluster: 'manage_security' would let the key administer the cluster "
            "or its security (or set allow_broad_privileges: true with a justification)",
        ],
    ),
    (
        "duplicate-sources-key",
        AUTH + SOURCE + "    deliver: []\n" + SOURCE,
        ["sources: duplicate key at line 13 (first at line 6)"],
    ),
    (
        "duplicate-nested-key",
        AUTH + SOURCE + "    metadata: {team: web, team: db}\n",
        ["sources[0].metadata.team: duplicate key at line 11 (first at line 11)"],
    ),
    (
        "duplicate-key-and-other-problems",
        "log: {level: info}\nlog: {level: loud}\n",
        [
            "log: duplicate key at line 2 (first at line 1)",
            "log.level: expected one of 'debug', 'info', 'warning' or 'error', got 'loud'",
        ],
    ),
    (
        "alias-bomb",
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nlog: {level: *c}\n",
        [
            "(file): YAML anchors and aliases (&name, *name) are not accepted in a config, found "
            "one at line 1, column 4; write the value out"
        ],
    ),
    (
        "deeply-nested",
        "log: " + "[" * 5000 + "]" * 5000 + "\n",
        ["(file): nested deeper than 32 levels at line 1, column 37"],
    ),
    (
        "long-value-is-cut-short",
        "log: {level: " + "x" * 100_000 + "}\n",
        [
            "log.level: expected one of 'debug', 'info', 'warning' or 'error', got "
            "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'... (100000 characters)"
        ],
    ),
    (
        "listen-without-port",
        "service: {listen: 'localhost'}\n",
        ["service.listen: expected HOST:PORT with a port from 0 to 65535, e.g. 127.0.0.1:9464"],
    ),
    (
        "exec-argv-nul-byte",
        AUTH
        + SOURCE
        + '    deliver: [{type: exec, argv: [/bin/cat, "a\\0b"], ack_command: ["/bin/true\\0"]}]\n',
        [
            "sources[0].deliver[0].argv[1]: must not contain a NUL byte (\\x00)",
            "sources[0].deliver[0].ack_command[0]: must not contain a NUL byte (\\x00)",
        ],
    ),
    (
        "webhook-non-ascii-url",
        AUTH + SOURCE + "    deliver: [{type: webhook, url: 'https://hooks.example/k\u00e9y', "
        "hmac_secret_env: ROTATOR_WEBHOOK_SECRET}]\n",
        [
            "sources[0].deliver[0].url: must be plain ASCII without spaces or control characters "
            "(percent-encode the rest, use the IDNA form of a host name), got "
            "'https://hooks.example/k\u00e9y'"
        ],
    ),
    (
        "webhook-url-without-host",
        AUTH
        + SOURCE
        + "    deliver: [{type: webhook, url: 'https:///x', hmac_secret_env: ROTATOR_WEBHOOK_SECRET}]\n",
        ["sources[0].deliver[0].url: expected an https:// URL with a host, got 'https:///x'"],
    ),
    (
        "empty-privileges",
        AUTH + "sources:\n  - {name: web, privileges: {}}\n",
        [
            "sources[0].privileges: grant at least one cluster or index privilege (or use a "
            "preset); a key with no role descriptor would carry all of rotator's own privileges"
        ],
    ),
    (
        "index-privileges-empty-names",
        AUTH + SOURCE.replace("names: [logs-web-default]", "names: []"),
        ["sources[0].privileges.indices[0].names: must not be empty"],
    ),
    (
        "sources-not-a-list",
        AUTH + "sources: {name: web}\n",
        ["sources: expected a list of sources, got a mapping"],
    ),
    (
        "unknown-sink-type",
        AUTH + SOURCE + "    deliver: [{type: ftp}]\n",
        ["sources[0].deliver[0]: unknown type 'ftp': expected one of 'file', 'exec', 'webhook'"],
    ),
    (
        "sink-without-type",
        AUTH + SOURCE + "    deliver: [{path: /etc/key}]\n",
        ["sources[0].deliver[0]: needs a type: one of exec, file, webhook"],
    ),
    (
        "file-sink-relative-path",
        AUTH + SOURCE + "    deliver: [{type: file, path: key.json}]\n",
        ["sources[0].deliver[0].path: must be an absolute path, got 'key.json'"],
    ),
    (
        "file-sink-world-readable",
        AUTH + SOURCE + "    deliver: [{type: file, path: /k, mode: '0644'}]\n",
        [
            "sources[0].deliver[0].mode: mode 0644 lets every user read the credential; use 0600 or 0640"
        ],
    ),
    (
        "file-sink-bad-format",
        AUTH + SOURCE + "    deliver: [{type: file, path: /k, format: yaml}]\n",
        ["sources[0].deliver[0].format: expected one of 'json', 'env' or 'id:api_key', got 'yaml'"],
    ),
    (
        "webhook-plain-http-no-secret",
        AUTH + SOURCE + "    deliver: [{type: webhook, url: 'http://hooks.example/x'}]\n",
        [
            "sources[0].deliver[0].url: plain http would send the credential unencrypted; use https "
            "or set allow_insecure: true",
            "sources[0].deliver[0]: needs hmac_secret_env or hmac_secret_file to sign the body",
        ],
    ),
    (
        "exec-sink-empty-argv",
        AUTH + SOURCE + "    deliver: [{type: exec, argv: []}]\n",
        ["sources[0].deliver[0].argv: must not be empty"],
    ),
    (
        "store-password-in-url",
        "store: {url: 'postgresql://rotator:hunter2@db/rotator'}\n",
        [
            "store.url: the password must not be part of the URL; use store.password_env or "
            "store.password_file"
        ],
    ),
    (
        "store-unsupported-database",
        "store: {url: 'mysql://db/rotator'}\n",
        ["store.url: unsupported database 'mysql'; use sqlite or postgresql"],
    ),
    (
        "integer-out-of-range",
        "service: {max_parallel: 0}\n",
        ["service.max_parallel: must be at least 1, got 0"],
    ),
    (
        "literal-choice",
        "log: {level: loud}\n",
        ["log.level: expected one of 'debug', 'info', 'warning' or 'error', got 'loud'"],
    ),
    ("section-null", "store:\n", ["store: expected a mapping, got nothing (null)"]),
    (
        "backoff-initial-above-max",
        "service: {backoff_initial: 2h, backoff_max: 1h}\n",
        ["service.backoff_initial: must not be longer than service.backoff_max (1h)"],
    ),
    (
        "lint-cluster-admin",
        AUTH + SOURCE.replace("cluster: [monitor]", "cluster: [monitor, manage_security]"),
        [
            "sources[0].privileges.cluster: 'manage_security' would let the key administer the cluster "
            "or its security (or set allow_broad_privileges: true with a justification)"
        ],
    ),
    (
        "lint-cluster-not-ingest",
        AUTH + SOURCE.replace("cluster: [monitor]", "cluster: [create_snapshot]"),
        [
            "sources[0].privileges.cluster: 'create_snapshot' is not needed to ship data; allowed: "
            "monitor, read_ilm, read_pipeline, read_slm (or set allow_broad_privileges: true with a "
            "justification)"
        ],
    ),
    (
        "lint-index-wildcard",
        AUTH + SOURCE.replace("names: [logs-web-default]", "names: ['*-web']"),
        [
            "sources[0].privileges.indices: index pattern '*-web' reaches every index; name the data "
            "stream or a prefix (or set allow_broad_privileges: true with a justification)"
        ],
    ),
    (
        "lint-system-index",
        AUTH + SOURCE.replace("names: [logs-web-default]", "names: [.security-7]"),
        [
            "sources[0].privileges.indices: index pattern '.security-7' reaches system or hidden "
            "indices (or set allow_broad_privileges: true with a justification)"
        ],
    ),
    (
        "lint-index-privilege-above-write",
        AUTH + SOURCE.replace("privileges: [create_doc]", "privileges: [create_doc, delete_index]"),
        [
            "sources[0].privileges.indices: index privilege 'delete_index' goes beyond writing "
            "documents; allowed: auto_configure, create, create_doc, delete, index, monitor, read, "
            "view_index_metadata, write (or set allow_broad_privileges: true with a justification)"
        ],
    ),
    (
        "broad-without-justification",
        AUTH + SOURCE + "    allow_broad_privileges: true\n",
        ["sources[0].justification: required with allow_broad_privileges: true"],
    ),
    (
        "preset-without-dataset",
        AUTH + "sources:\n  - {name: web, preset: logs-writer}\n",
        ["sources[0].dataset: required with preset 'logs-writer'"],
    ),
    (
        "preset-unknown",
        AUTH + "sources:\n  - {name: web, preset: everything, dataset: x}\n",
        [
            "sources[0].preset: expected one of 'logs-writer', 'metrics-writer' or 'traces-writer', "
            "got 'everything'"
        ],
    ),
    (
        "reserved-metadata",
        AUTH + SOURCE + "    metadata: {_hidden: 1, rotation_id: x, team: web}\n",
        [
            "sources[0].metadata._hidden: Elasticsearch reserves keys starting with '_'",
            "sources[0].metadata.rotation_id: set by rotator on every key; choose another name",
        ],
    ),
    (
        "many-problems-at-once",
        "bogus: 1\nstore: {url: 'mysql://x/y'}\nlog: {level: loud}\ndefaults: {lifetime: 1y}\n",
        [
            "bogus: unknown key; allowed: audit, defaults, elasticsearch, log, managed_keys, notify, "
            "purge, service, sources, store",
            f"defaults.lifetime: invalid duration '1y': use {DURATION_FORMS}",
            "log.level: expected one of 'debug', 'info', 'warning' or 'error', got 'loud'",
            "store.url: unsupported database 'mysql'; use sqlite or postgresql",
        ],
    ),
]


@pytest.mark.parametrize(
    ("yaml_text", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_config_lists_every_problem_and_exits_2(
    check: Run, tmp_path: Path, yaml_text: str, expected: list[str] | None
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(textwrap.dedent(yaml_text))
    result = check("check-config", str(config))
    assert result.returncode == 2, result
    lines = result.stdout.splitlines()
    if expected is None:  # YAML syntax error: the position is reported
        assert len(lines) == 1
        assert lines[0].startswith("(file): invalid YAML: ")
        assert "line 2, column 1" in lines[0]
    else:
        assert lines == expected
    assert result.stderr.strip() == f"{config}: {len(lines)} problem(s)"
    assert not list(tmp_path.glob("*.db")), "an invalid config must not create a store"


def test_broad_privileges_with_justification_pass(check: Run, tmp_path: Path) -> None:
    config = tmp_path / "broad.yaml"
    config.write_text(
        AUTH
        + SOURCE.replace("cluster: [monitor]", "cluster: [manage_ilm]")
        + "    allow_broad_privileges: true\n    justification: sets up its own ILM policy\n"
    )
    result = check("check-config", str(config))
    assert result.returncode == 0, result.stdout


def test_the_table_is_large_enough() -> None:
    assert len(INVALID) >= 25


def test_example_config_is_valid() -> None:
    env = {"ROTATOR_ES_PASSWORD": "x" * 12, "ROTATOR_WEBHOOK_SECRET": "y" * 12}
    result = run_cli("check-config", str(EXAMPLE), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("\n") == 1
    assert result.stdout.startswith(
        f"{EXAMPLE}: ok: 3 source(s); elasticsearch https://localhost:9200"
    )


def test_missing_file_is_a_usage_error(check: Run, tmp_path: Path) -> None:
    result = check("check-config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert result.stdout.splitlines() == [f"(file): {tmp_path / 'nope.yaml'} does not exist"]


def test_json_output_splits_path_and_message(check: Run, tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("log: {level: loud}\nservice: {max_parallel: 0}\n")
    result = check("check-config", str(config), "--output", "json")
    assert result.returncode == 2
    doc = json.loads(result.stdout)
    assert doc["valid"] is False
    assert [p["path"] for p in doc["problems"]] == ["service.max_parallel", "log.level"]


def test_config_selected_by_environment_variable(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("service: {max_parallel: 0}\n")
    result = run_cli("check-config", env={"ROTATOR_CONFIG": str(config)}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout.splitlines() == ["service.max_parallel: must be at least 1, got 0"]


def test_other_commands_do_nothing_on_an_invalid_config(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"store: {{url: 'sqlite:///{tmp_path}/r.db'}}\nlog: {{level: loud}}\n")
    for verb in (["db", "upgrade"], ["db", "current"], ["status"], ["once"]):
        result = run_cli("--config", str(config), *verb, cwd=tmp_path)
        assert result.returncode == 2, (verb, result)
        assert "log.level: expected one of" in result.stderr
        assert "invalid configuration, nothing was done" in result.stderr
    assert not (tmp_path / "r.db").exists()


def _with_password_file(tmp_path: Path, mode: int) -> Path:
    secret = tmp_path / "es-password"
    secret.write_text("s3cret-value-never-shown\n")
    secret.chmod(mode)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"elasticsearch: {{username: rotator, password_file: {secret}}}\n"
        + SOURCE
        + "    deliver: [{type: webhook, url: 'https://hooks.example/k', "
        "hmac_secret_env: ROTATOR_TEST_UNSET_HMAC}]\n"
    )
    return config


def test_secret_references_are_checked_without_showing_them(
    check: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _with_password_file(tmp_path, 0o644)
    monkeypatch.delenv("ROTATOR_TEST_UNSET_HMAC", raising=False)
    result = check("check-config", str(config))
    assert result.returncode == 2
    assert result.stdout.splitlines() == [
        f"elasticsearch.password_file: {tmp_path / 'es-password'} has mode 0644, so every user "
        "may read the secret; chmod 0600 (or 0640 for a group)",
        "sources[0].deliver[0].hmac_secret_env: the environment variable "
        "ROTATOR_TEST_UNSET_HMAC is not set or empty",
    ]
    assert "s3cret-value-never-shown" not in result.stdout + result.stderr


def test_secret_references_that_resolve_are_ok(
    check: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _with_password_file(tmp_path, 0o600)
    monkeypatch.setenv("ROTATOR_TEST_UNSET_HMAC", "hmac-value")
    result = check("check-config", str(config))
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith(f"{config}: ok: 1 source(s)")


@pytest.mark.parametrize("broken", ["missing", "fifo", "unset-env"])
def test_broken_secret_references_are_problems(
    check: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    config = tmp_path / "c.yaml"
    secret = tmp_path / "pw"
    if broken == "fifo":
        os.mkfifo(secret)
    reference = (
        "password_env: ROTATOR_ES_PASSWORD" if broken == "unset-env" else f"password_file: {secret}"
    )
    monkeypatch.delenv("ROTATOR_ES_PASSWORD")
    config.write_text(f"elasticsearch: {{username: rotator, {reference}}}\n" + SOURCE)
    expected = {
        "missing": f"elasticsearch.password_file: cannot read {secret}: No such file or directory",
        "fifo": f"elasticsearch.password_file: {secret} is not a regular file",
        "unset-env": "elasticsearch.password_env: the environment variable ROTATOR_ES_PASSWORD "
        "is not set or empty",
    }[broken]
    result = check("check-config", str(config))
    assert (result.returncode, result.stdout.splitlines()) == (2, [expected])
    skipped = check("check-config", "--skip-secrets", str(config))
    assert skipped.returncode == 0, skipped.stdout


def test_secret_problems_come_with_every_other_problem(check: Run, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        f"elasticsearch: {{username: rotator, password_file: {tmp_path / 'nope'}}}\n"
        "log: {level: loud}\n"
    )
    result = check("check-config", str(config))
    assert result.stdout.splitlines() == [
        "log.level: expected one of 'debug', 'info', 'warning' or 'error', got 'loud'",
        f"elasticsearch.password_file: cannot read {tmp_path / 'nope'}: No such file or directory",
    ]


def test_the_example_names_its_unset_secrets(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATOR_")}
    result = run_cli("check-config", str(EXAMPLE), env=env)
    assert result.returncode == 2
    assert result.stdout.splitlines() == [
        "elasticsearch.password_env: the environment variable ROTATOR_ES_PASSWORD is not set "
        "or empty",
        "sources[2].deliver[0].hmac_secret_env: the environment variable "
        "ROTATOR_WEBHOOK_SECRET is not set or empty",
    ]
