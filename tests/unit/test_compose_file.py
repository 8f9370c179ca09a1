"""compose.yaml runs deployer the way the README says (parsed here; the suite runs no Compose)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "compose.yaml"


def services() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return found


def test_deployer_runs_on_the_host_network_with_the_socket_and_its_own_state() -> None:
    deployer = services()["deployer"]

    assert deployer["network_mode"] == "host"
    assert deployer["pid"] == "host"
    assert deployer["stop_signal"] == "SIGINT"
    assert [entry.split(":")[0] for entry in deployer["group_add"]] == ["${DOCKER_GID"]
    assert set(deployer["volumes"]) >= {
        "/var/run/docker.sock:/var/run/docker.sock",
        "/etc/deployer:/etc/deployer:ro",
        "/var/lib/deployer:/var/lib/deployer",
    }
    # Names only: Compose passes the values from the shell; no secret is in the file.
    assert deployer["environment"] == ["DEPLOYER_TOKEN", "DEPLOYER_ADMIN_TOKEN"]


def test_nginx_shares_the_upstream_folder_and_its_run_folder_with_deployer() -> None:
    nginx, deployer = services()["nginx"], services()["deployer"]

    assert nginx["container_name"] == "nginx"  # what nginx.container names
    assert nginx["network_mode"] == "host"
    assert nginx["pid"] == "host"
    assert "/var/lib/deployer-nginx:/etc/nginx/deployer" in deployer["volumes"]
    assert "/var/lib/deployer-nginx:/etc/nginx/deployer:ro" in nginx["volumes"]
    assert "nginx-run:/run" in nginx["volumes"]
    assert "nginx-run:/run/nginx:ro" in deployer["volumes"]
