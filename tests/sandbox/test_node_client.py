"""The official Node.js client (``@elastic/elasticsearch@8``) against the sandbox.

The client is installed with npm into a temporary folder when the test runs; the test is skipped,
saying why, when node or npm is missing or the install fails (e.g. no registry access).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from rotator.sandbox import Sandbox
from tests.sandbox.conftest import ADMIN

pytestmark = pytest.mark.slow

INSTALL_TIMEOUT_S = 240
RUN_TIMEOUT_S = 60

SCRIPT = r"""
const { Client, errors } = require('@elastic/elasticsearch');
const [url, user, password] = process.argv.slice(2);
const admin = new Client({ node: url, auth: { username: user, password } });
const out = {};
async function status(promise) {
  try { await promise; return 200; }
  catch (e) { if (e instanceof errors.ResponseError) return e.meta.statusCode; throw e; }
}
(async () => {
  out.putRole = await admin.security.putRole({
    name: 'shipper', indices: [{ names: ['logs-web-*'], privileges: ['create_doc'] }] });
  out.putUser = await admin.security.putUser({
    username: 'node_user', password: 'node-pass-1', roles: ['shipper'] });
  const key = await admin.security.createApiKey({
    name: 'node-key', role_descriptors: { r: { cluster: [] } } });
  out.keyId = key.id;
  const asKey = new Client({ node: url, auth: { apiKey: key.encoded } });
  out.authenticate = await asKey.security.authenticate();
  out.query = await admin.security.queryApiKeys({ query: { term: { name: 'node-key' } } });
  out.invalidate = await admin.security.invalidateApiKey({ ids: [key.id] });
  const wrong = new Client({ node: url, auth: { username: user, password: 'wrong-password' } });
  out.unauthorized = await status(wrong.security.authenticate());
  const nodeUser = new Client({ node: url, auth: { username: 'node_user', password: 'node-pass-1' } });
  out.forbidden = await status(nodeUser.security.putRole({ name: 'x', cluster: [] }));
  out.afterInvalidate = await status(asKey.security.authenticate());
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e && e.stack || e); process.exit(1); });
"""


@pytest.fixture(scope="module")
def node_client_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``@elastic/elasticsearch@8`` installed, or a skip with the reason."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to test the Node.js client; not found on PATH")
    folder = tmp_path_factory.mktemp("node-client")
    try:
        result = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--silent", "@elastic/elasticsearch@8"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"npm install @elastic/elasticsearch@8 took over {INSTALL_TIMEOUT_S} s")
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"npm install @elastic/elasticsearch@8 failed: {last}")
    (folder / "check.js").write_text(SCRIPT, encoding="utf-8")
    return folder


def test_node_client_manages_users_roles_and_keys(node_client_dir: Path, sandbox: Sandbox) -> None:
    sandbox.reset()
    node = shutil.which("node")
    assert node is not None
    result = subprocess.run(
        [node, "check.js", sandbox.url, *ADMIN],
        cwd=node_client_dir,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["putRole"] == {"role": {"created": True}}
    assert out["putUser"] == {"created": True}
    assert out["authenticate"]["api_key"] == {"id": out["keyId"], "name": "node-key"}
    assert out["authenticate"]["authentication_type"] == "api_key"
    assert [k["id"] for k in out["query"]["api_keys"]] == [out["keyId"]]
    assert out["invalidate"]["invalidated_api_keys"] == [out["keyId"]]
    assert out["unauthorized"] == 401
    assert out["forbidden"] == 403
    assert out["afterInvalidate"] == 401
