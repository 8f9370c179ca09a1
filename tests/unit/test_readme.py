"""The README's walkthrough is a config deployer accepts (so the front door stays true)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from deployer.config import parse_config

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_real_app_walkthrough_config_is_valid() -> None:
    text = README.read_text()
    block = re.search(r"<!-- walkthrough:[^>]*-->\n```yaml\n(.*?)```", text, flags=re.S)
    assert block is not None
    environ = {
        "DEPLOYER_TOKEN": "webhook-token-0123456789",
        "REGISTRY_USER": "ci",
        "REGISTRY_PASSWORD": "registry-password",
        "DATABASE_PASSWORD": "database-password",
    }

    config = parse_config(yaml.safe_load(block.group(1)), environ=environ)

    shop = config.services["shop"]
    assert shop.ports is not None
    assert (shop.replicas, shop.strategy, len(list(shop.ports))) == (2, "blue-green", 4)
    assert shop.secret_env == ["DATABASE_PASSWORD"]


def test_the_swarm_example_config_is_valid() -> None:
    text = README.read_text()
    block = re.search(r"<!-- swarm example:[^>]*-->\n```yaml\n(.*?)```", text, flags=re.S)
    assert block is not None

    config = parse_config(
        yaml.safe_load(block.group(1)), environ={"DEPLOYER_TOKEN": "webhook-token-0123456789"}
    )

    shop = config.services["shop"]
    assert (shop.engine, shop.replicas, shop.publish.mode) == ("swarm", 2, "host")
    assert [entry.source for entry in shop.secrets] == ["db-password"]
    assert shop.healthcheck is not None
    assert shop.healthcheck.test == [
        "CMD-SHELL",
        "wget -q -O /dev/null http://127.0.0.1:$PORT/healthz",
    ]
