"""Config: defaults, every problem reported with its path, environment overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deployer.config import (
    DEFAULT_TEMPLATE,
    load_config,
    parse_config,
    repository_of,
    resolve_config_path,
)
from deployer.errors import ConfigError

TOKEN_ENV = {"DEPLOYER_TOKEN": "s3cret-token-of-32-characters-xx"}
WEB = {"image": "registry.example.com/acme/web", "ports": "18000-18099"}


def problems_of(data: Any, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, environ=TOKEN_ENV if environ is None else environ)
    return caught.value.problems


def test_minimal_service_gets_documented_defaults() -> None:
    config = parse_config({"services": {"web": WEB}}, environ=TOKEN_ENV)

    web = config.services["web"]
    assert (config.server.host, config.server.port) == ("127.0.0.1", 5000)
    assert config.state_dir == Path("var")
    assert config.nginx.template == DEFAULT_TEMPLATE
    assert config.nginx.test == ["nginx", "-t"]
    assert config.nginx.reload == ["nginx", "-s", "reload"]
    assert (web.repository, web.tag, web.network, web.port) == ("acme/web", "latest", "host", 8080)
    assert (web.health.path, web.health.timeout, web.drain) == ("/healthz", 30.0, 5.0)
    assert web.ports is not None
    assert list(web.ports)[:2] == [18000, 18001]


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("registry.example.com/acme/web", "acme/web"),
        ("127.0.0.1:5000/acme/web", "acme/web"),
        ("localhost/acme/web", "acme/web"),
        ("acme/web", "acme/web"),
        ("nginx", "library/nginx"),
    ],
)
def test_repository_defaults_to_the_image_path_without_registry_host(
    image: str, repository: str
) -> None:
    assert repository_of(image) == repository


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        (
            {"health": {"timeout": "soon"}},
            "services.web.health.timeout: expected seconds (a number), got 'soon'",
        ),
        ({"drain": -1}, "services.web.drain: expected seconds >= 0, got -1"),
        ({"ports": "18000"}, "services.web.ports: expected a range like 18000-18099, got '18000'"),
        ({"ports": "18000-18000"}, "services.web.ports: needs at least 2 ports"),
        (
            {"ports": "18000-70000"},
            "services.web.ports.last: Input should be less than or equal to 65535",
        ),
        (
            {"image": "acme/web:1.2"},
            "services.web.image: expected an image name without tag or digest",
        ),
        (
            {"health": {"path": "healthz"}},
            "services.web.health.path: expected a path starting with '/'",
        ),
        ({"env": {"1BAD": "x"}}, "services.web.env: invalid variable name(s): 1BAD"),
        ({"port": "http"}, "services.web.port: expected a whole number, got 'http'"),
        ({"helth": {}}, "services.web.helth: unknown key (check the spelling)"),
    ],
)
def test_each_bad_value_is_reported_with_its_path(service: dict[str, Any], expected: str) -> None:
    problems = problems_of({"services": {"web": {**WEB, **service}}})

    assert any(problem.startswith(expected) for problem in problems), problems


def test_all_problems_are_reported_at_once() -> None:
    data = {
        "server": {"port": "x"},
        "services": {
            "web": {**WEB, "health": {"timeout": "soon"}},
            "bad name": {"image": "acme/x", "ports": "19000-19009"},
            "api": {"ports": "18050-18060"},
        },
    }

    problems = problems_of(data, environ={})

    assert problems == [
        "services.bad name: invalid service name (letters, digits, '-' and '_', up to 63 long)",
        "server.port: expected a whole number, got 'x'",
        "services.web.health.timeout: expected seconds (a number), got 'soon'",
        "services.api.image: required",
        "webhooks.token_env: environment variable DEPLOYER_TOKEN is not set (the webhook secret)",
    ]


def test_overlapping_port_pools_are_rejected() -> None:
    data = {"services": {"web": WEB, "api": {"image": "acme/api", "ports": "18090-18110"}}}

    assert problems_of(data) == [
        "services.api.ports: 18090-18110 overlaps services.web.ports (18000-18099)"
    ]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "webhooks.token_env: environment variable DEPLOYER_TOKEN is not set"),
        ({"DEPLOYER_TOKEN": "short"}, "webhooks.token_env: DEPLOYER_TOKEN is 5 characters"),
    ],
)
def test_webhook_secret_must_be_set_and_long(environ: dict[str, str], expected: str) -> None:
    problems = problems_of({"services": {"web": WEB}}, environ=environ)

    assert len(problems) == 1
    assert problems[0].startswith(expected)
    assert "short" not in problems[0]  # the secret's value is never echoed


def test_http_host_and_port_override_the_file() -> None:
    environ = {**TOKEN_ENV, "HTTP_HOST": "0.0.0.0", "HTTP_PORT": "8081"}

    config = parse_config({"server": {"port": 7000}}, environ=environ)

    assert (config.server.host, config.server.port) == ("0.0.0.0", 8081)


def test_bad_http_port_override_is_a_problem() -> None:
    problems = problems_of({}, environ={**TOKEN_ENV, "HTTP_PORT": "eighty"})

    assert problems == ["HTTP_PORT (environment): expected a port number, got 'eighty'"]


def test_yaml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "deployer.yml"
    path.write_text("services:\n  web: [unclosed\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=TOKEN_ENV)

    assert caught.value.problems[0].startswith("(yaml): line 3:")


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read: No such file or directory"):
        load_config(tmp_path / "absent.yml", environ=TOKEN_ENV)


def test_example_config_is_valid() -> None:
    config = load_config(Path("config/deployer.yml"), environ=TOKEN_ENV)

    assert "web" in config.services


@pytest.mark.parametrize(
    ("cli", "environ", "expected"),
    [
        ("a.yml", {"DEPLOYER_CONFIG": "b.yml"}, "a.yml"),
        (None, {"DEPLOYER_CONFIG": "b.yml"}, "b.yml"),
        (None, {}, "config/deployer.yml"),
    ],
)
def test_config_path_precedence(cli: str | None, environ: dict[str, str], expected: str) -> None:
    assert resolve_config_path(cli, environ) == Path(expected)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"health": {"timeout": float("nan")}}, "services.web.health.timeout: expected a finite"),
        ({"drain": float("inf")}, "services.web.drain: expected a finite"),
        ({"stop_timeout": 1e300}, "services.web.stop_timeout: expected seconds <= 86400"),
        ({"health": {"interval": 0}}, "services.web.health.interval: expected seconds > 0"),
    ],
)
def test_seconds_must_be_finite_bounded_and_intervals_positive(
    change: dict[str, Any], expected: str
) -> None:
    found = problems_of({"services": {"web": {**WEB, **change}}})

    assert any(problem.startswith(expected) for problem in found), found


def test_nan_written_in_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deployer.yml"
    path.write_text("queue:\n  coalesce: .nan\nnginx:\n  reload_timeout: .inf\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=TOKEN_ENV)

    assert sorted(problem.split(":")[0] for problem in caught.value.problems) == [
        "nginx.reload_timeout",
        "queue.coalesce",
    ]


def test_the_webhook_token_may_not_double_as_the_admin_token() -> None:
    same = {**TOKEN_ENV, "DEPLOYER_ADMIN_TOKEN": TOKEN_ENV["DEPLOYER_TOKEN"]}

    assert problems_of({"services": {}}, environ=same) == [
        "admin.token_env: DEPLOYER_ADMIN_TOKEN holds the same value as DEPLOYER_TOKEN "
        "(webhooks.token_env); the webhook URL is stored at the registry, so it must not "
        "also be an admin credential: use two different random tokens"
    ]


@pytest.mark.parametrize("value", ["²", "5000x", "-1", "99999999999999999999"])
def test_http_port_from_the_environment_must_be_a_port_number(value: str) -> None:
    found = problems_of({"services": {}}, environ={**TOKEN_ENV, "HTTP_PORT": value})

    assert found == [f"HTTP_PORT (environment): expected a port number, got {value!r}"]


def test_a_file_that_is_not_utf8_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "deployer.yml"
    path.write_bytes(b"services:\n  web:\n    image: caf\xe9\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=TOKEN_ENV)

    assert caught.value.problems == [
        "(file): not UTF-8 text: byte 0xe9 on line 3; save it as UTF-8"
    ]


def test_deeply_nested_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "deployer.yml"
    path.write_text("services: " + "[" * 1000 + "]" * 1000 + "\n")  # past the recursion limit

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=TOKEN_ENV)

    assert caught.value.problems == ["(yaml): nested too deeply"]
