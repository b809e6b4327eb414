"""The Node client sends an API key (option or HARAG_API_KEY) to a gateway with auth on."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.security.keys import key_entry, new_token

from .conftest import NodeClient


@pytest.fixture(scope="module")
def token_and_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    key_id, secret, token = new_token()
    path = tmp_path_factory.mktemp("node-keys") / "keys.json"
    path.write_text(json.dumps({"keys": [key_entry(key_id, secret, "node-app", ["query"])]}))
    return token, str(path)


async def test_the_node_client_sends_its_key_by_option_or_environment(
    mesh: Any, node_executable: str, token_and_file: tuple[str, str], gateway_over: Any
) -> None:
    token, key_file = token_and_file
    env = {"HARAG_AUTH_ENABLED": "true", "HARAG_AUTH_KEY_FILE": key_file}
    async with gateway_over(mesh, env) as gateway:
        node = NodeClient(node_executable, gateway.address)
        no_key = await node.run("health", "--json", "--addr", gateway.address)
        error = no_key.error()
        assert error["codeName"] == "UNAUTHENTICATED"
        assert [d.get("reason") for d in error["details"]] == ["API_KEY_MISSING"]

        by_option = await node.ok("health", "--json", "--api-key", token)
        assert by_option.json()["upstreams"]
        by_env = await node.ok("health", "--json", env={"HARAG_API_KEY": token})
        assert by_env.json()["upstreams"]

        wrong = await node.run("health", "--json", "--addr", gateway.address,
                               env={"HARAG_API_KEY": token + "x"})  # fmt: skip
        assert [d.get("reason") for d in wrong.error()["details"]] == ["API_KEY_INVALID"]
