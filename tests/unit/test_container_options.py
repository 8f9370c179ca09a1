"""Container options in the config: Docker's and Compose's notations, normalised; every bad
value reported with its path; secret_env names checked, never values shown."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployer.config import load_config, parse_config, secret_values
from deployer.container_options import ContainerOptions, LogOptions, RestartPolicy, Ulimit
from deployer.errors import ConfigError

ENVIRON = {"DEPLOYER_TOKEN": "s3cret-token-of-32-characters-xx", "DB_PASSWORD": "hunter2-db"}
WEB = {"image": "registry.example.com/acme/web", "ports": "18000-18099"}
MIB = 1024 * 1024


def web(environ: dict[str, str] | None = None, **options: Any) -> Any:
    config = parse_config({"services": {"web": {**WEB, **options}}}, environ=environ or ENVIRON)
    return config.services["web"]


def problems_of(environ: dict[str, str] | None = None, **options: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        web(environ, **options)
    return caught.value.problems


def test_no_option_keeps_todays_container() -> None:
    service = web()

    assert (service.command, service.entrypoint, service.user, service.working_dir) == (
        None,
        None,
        None,
        None,
    )
    assert (service.volumes, service.tmpfs, service.env_file, service.secret_env) == (
        [],
        {},
        [],
        [],
    )
    assert (service.labels, service.extra_hosts, service.ulimits) == ({}, {}, {})
    assert (service.memory, service.cpus, service.pids_limit) == (None, None, None)
    assert (service.log, service.stop_signal, service.healthcheck) == (None, None, None)
    assert service.restart == RestartPolicy(name="unless-stopped")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("command", ["app", "--port", 8080], ["app", "--port", "8080"]),
        ("entrypoint", ["/bin/tini", "--"], ["/bin/tini", "--"]),
        ("user", 1000, "1000"),
        ("user", "1000:1000", "1000:1000"),
        ("user", "app:staff", "app:staff"),
        ("working_dir", "/srv/app/../www", "/srv/www"),
        ("tmpfs", "/run", {"/run": ""}),
        ("tmpfs", ["/run:size=64m,mode=1777", "/tmp"], {"/run": "size=64m,mode=1777", "/tmp": ""}),
        ("env_file", "app.env", [Path("app.env")]),
        (
            "env_file",
            ["/etc/app/common.env", "app.env"],
            [Path("/etc/app/common.env"), Path("app.env")],
        ),
        ("secret_env", ["DB_PASSWORD", "DB_PASSWORD"], ["DB_PASSWORD"]),
        (
            "labels",
            {"com.example.team": "web", "tier": 2},
            {"com.example.team": "web", "tier": "2"},
        ),
        ("labels", ["com.example.team=web", "empty="], {"com.example.team": "web", "empty": ""}),
        ("extra_hosts", {"db.internal": "10.0.0.5"}, {"db.internal": "10.0.0.5"}),
        (
            "extra_hosts",
            ["db:10.0.0.5", "gw=host-gateway", "v6:::1", "v6b=[fe80::1]"],
            {"db": "10.0.0.5", "gw": "host-gateway", "v6": "::1", "v6b": "fe80::1"},
        ),
        ("memory", "64m", 64 * MIB),
        ("memory", "1g", 1024 * MIB),
        ("memory", "1.5G", 1536 * MIB),
        ("memory", "512MiB", 512 * MIB),
        ("memory", "100mb", 100 * MIB),
        ("memory", 7 * MIB, 7 * MIB),
        ("cpus", 0.5, 500_000_000),
        ("cpus", 2, 2_000_000_000),
        ("cpus", "1.25", 1_250_000_000),
        ("pids_limit", 100, 100),
        ("pids_limit", -1, -1),
        ("stop_signal", "SIGQUIT", "SIGQUIT"),
        ("stop_signal", "quit", "SIGQUIT"),
        ("stop_signal", 3, "3"),
        ("stop_signal", "SIGRTMIN+3", "SIGRTMIN+3"),
        ("restart", "no", RestartPolicy(name="no")),
        ("restart", False, RestartPolicy(name="no")),  # `restart: no` unquoted in YAML
        ("restart", "always", RestartPolicy(name="always")),
        ("restart", "unless-stopped", RestartPolicy(name="unless-stopped")),
        ("restart", "on-failure", RestartPolicy(name="on-failure")),
        ("restart", "on-failure:5", RestartPolicy(name="on-failure", maximum_retry_count=5)),
        (
            "ulimits",
            {"nofile": {"soft": 1024, "hard": 2048}, "core": 0, "memlock": -1},
            {
                "nofile": Ulimit(soft=1024, hard=2048),
                "core": Ulimit(soft=0, hard=0),
                "memlock": Ulimit(soft=-1, hard=-1),
            },
        ),
        (
            "log",
            {"driver": "json-file", "options": {"max-size": "10m", "max-file": 3}},
            LogOptions(driver="json-file", options={"max-size": "10m", "max-file": "3"}),
        ),
        ("log", {"options": {"max-size": "10m"}}, LogOptions(options={"max-size": "10m"})),
    ],
)
def test_each_option_is_normalised_to_what_the_engine_takes(
    key: str, value: Any, expected: Any
) -> None:
    assert getattr(web(**{key: value}), key) == expected


NO_OVERRIDE = {
    "test": None,
    "interval": None,
    "timeout": None,
    "start_period": None,
    "retries": None,
    "disable": False,
}


@pytest.mark.parametrize(
    ("healthcheck", "expected"),
    [
        (
            {
                "test": ["CMD", "curl", "-f", "http://127.0.0.1/"],
                "interval": "1m30s",
                "timeout": 2.5,
                "start_period": "500ms",
                "retries": 3,
            },
            {
                "test": ["CMD", "curl", "-f", "http://127.0.0.1/"],
                "interval": 90_000_000_000,
                "timeout": 2_500_000_000,
                "start_period": 500_000_000,
                "retries": 3,
            },
        ),
        ({"test": "curl -f localhost"}, {"test": ["CMD-SHELL", "curl -f localhost"]}),
        ({"test": ["NONE"]}, {"test": ["NONE"]}),
        ({"interval": "1h2m3.5s"}, {"interval": 3_723_500_000_000}),
        ({"timeout": "1ms", "start_period": 0}, {"timeout": 1_000_000, "start_period": 0}),
        ({"disable": True}, {"disable": True}),
    ],
)
def test_healthcheck_durations_become_nanoseconds(
    healthcheck: dict[str, Any], expected: dict[str, Any]
) -> None:
    override = web(healthcheck=healthcheck).healthcheck

    assert override.model_dump() == {**NO_OVERRIDE, **expected}


def test_a_disabled_healthcheck_is_docker_none() -> None:
    assert web(healthcheck={"disable": True}).healthcheck.test_argv() == ["NONE"]
    assert web(healthcheck={"retries": 2}).healthcheck.test_argv() is None


def test_volumes_bind_host_paths_and_name_volumes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)

    volumes = web(
        volumes=["./conf:/etc/app:ro", "/srv/data/../files:/files", "cache:/cache:rw"]
    ).volumes

    assert [volume.model_dump() for volume in volumes] == [
        {"source": str(tmp_path / "conf"), "target": "/etc/app", "read_only": True},
        {"source": "/srv/files", "target": "/files", "read_only": False},
        {"source": "cache", "target": "/cache", "read_only": False},
    ]
    assert [volume.named for volume in volumes] == [False, False, True]
    assert [volume.bind() for volume in volumes] == [
        f"{tmp_path / 'conf'}:/etc/app:ro",
        "/srv/files:/files:rw",
        "cache:/cache:rw",
    ]
    assert os.path.isabs(volumes[0].source)


BAD_OPTIONS = [
    (
        {"command": "app --port 80"},
        "command: expected an argv list like [app, --port, '8080'] (no shell), got 'app --port 80'",
    ),
    (
        {"command": []},
        "command: Value should have at least 1 item after validation, not 0",
    ),
    (
        {"entrypoint": ["/bin/x", None]},
        "entrypoint.1: expected a string (quote values YAML reads otherwise), got None",
    ),
    (
        {"user": "app user"},
        "user: expected a user like 1000, 1000:1000 or app:app, got 'app user'",
    ),
    (
        {"working_dir": "srv"},
        "working_dir: expected an absolute path in the container, got 'srv'",
    ),
    (
        {"volumes": ["data/x:/data"]},
        "volumes.0.source: expected a host path (/absolute or ./relative) or a volume "
        "name (letters, digits, '_', '.', '-'), got 'data/x'",
    ),
    (
        {"volumes": ["/srv:data"]},
        "volumes.0.target: expected an absolute path in the container, got 'data'",
    ),
    (
        {"volumes": ["/srv:/"]},
        "volumes.0.target: expected a container path other than /, got '/'",
    ),
    (
        {"volumes": ["/srv:/data:rx"]},
        "volumes.0: expected /host/path:/container/path[:ro], ./relative:/path or "
        "name:/path, got '/srv:/data:rx'",
    ),
    (
        {"volumes": ["/srv"]},
        "volumes.0: expected /host/path:/container/path[:ro], ./relative:/path or "
        "name:/path, got '/srv'",
    ),
    (
        {"tmpfs": ["run"]},
        "tmpfs: expected an absolute path in the container, got 'run'",
    ),
    (
        {"env_file": ""},
        "env_file: expected file paths, got an empty one",
    ),
    (
        {"secret_env": ["db-password"]},
        "secret_env: expected environment variable names other than PORT, got 'db-password'",
    ),
    (
        {"secret_env": ["PORT"]},
        "secret_env: expected environment variable names other than PORT, got 'PORT'",
    ),
    (
        {"labels": {"deployer.service": "x"}},
        "labels: labels starting with 'deployer.' are deployer's own (and names may not "
        "be empty), got 'deployer.service'",
    ),
    (
        {"labels": {"version": 1.1}},
        "labels.version: expected a string (quote values YAML reads otherwise), got 1.1",
    ),
    (
        {"labels": ["no-equals-sign"]},
        "labels: expected a mapping or a list of name=value, got 'no-equals-sign'",
    ),
    (
        {"extra_hosts": {"db": "db.example.com"}},
        "extra_hosts: expected an IP address or host-gateway, got 'db.example.com'",
    ),
    (
        {"extra_hosts": {"bad host": "10.0.0.1"}},
        "extra_hosts: expected a host name, got 'bad host'",
    ),
    (
        {"memory": "lots"},
        "memory: expected a size like 64m or 1g, got 'lots'",
    ),
    (
        {"memory": "4m"},
        "memory: expected at least 6m (the engine's smallest limit), got '4m'",
    ),
    (
        {"cpus": "many"},
        "cpus: expected a number of CPUs like 0.5 or 2, got 'many'",
    ),
    (
        {"cpus": 0.001},
        "cpus: expected at least 0.01 CPUs, got 0.001",
    ),
    (
        {"cpus": True},
        "cpus: expected a number of CPUs like 0.5 or 2, got True",
    ),
    (
        {"pids_limit": 0},
        "pids_limit: expected a number of processes >= 1 (or -1: none), got 0",
    ),
    (
        {"ulimits": {"nofiles": 10}},
        "ulimits: unknown limit(s) nofiles; known: core, cpu, data, fsize, locks, "
        "memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack",
    ),
    (
        {"ulimits": {"nofile": {"soft": 4096, "hard": 1024}}},
        "ulimits.nofile: soft 4096 is above hard 1024",
    ),
    (
        {"ulimits": {"nofile": {"soft": -1, "hard": 1024}}},
        "ulimits.nofile: soft -1 is above hard 1024",
    ),
    (
        {"log": {"driver": "json file"}},
        "log.driver: String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.:/-]*$'",
    ),
    (
        {"log": {"driver": "json-file", "opts": {}}},
        "log.opts: unknown key (check the spelling)",
    ),
    (
        {"stop_signal": "SIGFOO"},
        "stop_signal: expected a signal like SIGTERM, QUIT or 3, got 'SIGFOO'",
    ),
    (
        {"stop_signal": 99},
        "stop_signal: expected a signal number from 1 to 64, got '99'",
    ),
    (
        {"restart": "sometimes"},
        "restart: expected no, always, unless-stopped, on-failure or on-failure:N, got 'sometimes'",
    ),
    (
        {"restart": "always:3"},
        "restart: expected no, always, unless-stopped, on-failure or on-failure:N, got 'always:3'",
    ),
    (
        {"healthcheck": {"test": ["CMD"]}},
        "healthcheck.test: expected [CMD, program, args...], [CMD-SHELL, command], "
        "[NONE] or a shell command string, got ['CMD']",
    ),
    (
        {"healthcheck": {"test": ["RUN", "x"]}},
        "healthcheck.test: expected [CMD, program, args...], [CMD-SHELL, command], "
        "[NONE] or a shell command string, got ['RUN', 'x']",
    ),
    (
        {"healthcheck": {"interval": "soon"}},
        "healthcheck.interval: expected a duration like 30s or 1m30s, got 'soon'",
    ),
    (
        {"healthcheck": {"interval": "2d"}},
        "healthcheck.interval: expected a duration like 30s or 1m30s, got '2d'",
    ),
    (
        {"healthcheck": {"timeout": "250us"}},
        "healthcheck.timeout: expected 0 (the image's) or from 1ms to 24h, got '250us'",
    ),
    (
        {"healthcheck": {"interval": "25h"}},
        "healthcheck.interval: expected 0 (the image's) or from 1ms to 24h, got '25h'",
    ),
    (
        {"healthcheck": {"retries": -1}},
        "healthcheck.retries: Input should be greater than or equal to 0",
    ),
    (
        {"healthcheck": {"disable": True, "test": "true"}},
        "healthcheck: disable: true takes no test",
    ),
    (
        {"healthcheck": {"intervall": "1s"}},
        "healthcheck.intervall: unknown key (check the spelling)",
    ),
    (
        {"volume": ["/a:/b"]},
        "volume: unknown key (check the spelling)",
    ),
]


@pytest.mark.parametrize(("options", "expected"), BAD_OPTIONS)
def test_each_bad_option_is_reported_with_its_path(options: dict[str, Any], expected: str) -> None:
    assert problems_of(**options) == [f"services.web.{expected}"]


def test_every_bad_option_is_reported_at_once() -> None:
    problems = problems_of(memory="lots", cpus="many", restart="sometimes", user="a b")

    assert [problem.split(":")[0] for problem in problems] == [
        "services.web.user",
        "services.web.memory",
        "services.web.cpus",
        "services.web.restart",
    ]


def test_a_secret_env_variable_that_is_not_set_is_named_at_load() -> None:
    problems = problems_of(
        {"DEPLOYER_TOKEN": ENVIRON["DEPLOYER_TOKEN"], "API_KEY": ""},
        secret_env=["DB_PASSWORD", "API_KEY"],
    )

    assert problems == [
        "services.web.secret_env: environment variable DB_PASSWORD is not set (or empty); set "
        "it in deployer's environment",
        "services.web.secret_env: environment variable API_KEY is not set (or empty); set it "
        "in deployer's environment",
    ]


def test_secret_env_is_checked_even_when_other_keys_are_wrong() -> None:
    problems = problems_of(
        {"DEPLOYER_TOKEN": ENVIRON["DEPLOYER_TOKEN"]}, secret_env=["DB_PASSWORD"], memory="x"
    )

    assert [problem.split(":")[0] for problem in problems] == [
        "services.web.memory",
        "services.web.secret_env",
    ]


def test_client_commands_do_not_need_the_secret_env_variables() -> None:
    data = {"services": {"web": {**WEB, "secret_env": ["DB_PASSWORD"]}}}

    config = parse_config(data, environ={}, require_secrets=False)

    assert config.services["web"].secret_env == ["DB_PASSWORD"]


def test_a_variable_in_env_and_secret_env_and_a_path_mounted_twice_are_problems() -> None:
    problems = problems_of(
        env={"DB_PASSWORD": "x"},
        secret_env=["DB_PASSWORD"],
        volumes=["/srv/a:/data", "cache:/cache"],
        tmpfs="/data",
    )

    assert problems == [
        "services.web.secret_env: DB_PASSWORD also set in env; keep each variable in one place",
        "services.web.volumes: /data mounted more than once (volumes and tmpfs together)",
    ]


def test_secret_env_values_are_redacted_from_deployers_log_lines() -> None:
    config = parse_config(
        {"services": {"web": {**WEB, "secret_env": ["DB_PASSWORD"]}}}, environ=ENVIRON
    )

    assert "hunter2-db" in secret_values(config, ENVIRON)


def test_restart_no_written_in_yaml_without_quotes_is_docker_no(tmp_path: Path) -> None:
    path = tmp_path / "deployer.yml"
    path.write_text(
        "services:\n  web:\n    image: acme/web\n    ports: 18000-18001\n    restart: no\n"
    )

    config = load_config(path, environ=ENVIRON)

    assert str(config.services["web"].restart) == "no"


README = Path(__file__).parents[2] / "README.md"


def test_the_readme_configuration_table_has_every_container_option() -> None:
    text = README.read_text()

    assert [
        key for key in ContainerOptions.model_fields if f"| `services.NAME.{key}" not in text
    ] == []


def docker_run_table() -> list[tuple[str, str]]:
    text = README.read_text().split("### From `docker run` to deployer's YAML", 1)[1]
    rows = [line for line in text.split("\n\n")[1].splitlines() if line.startswith("| `")]
    return [(row.split(" | ")[0], row.split(" | ")[1]) for row in rows]


@pytest.mark.parametrize(("flag", "yaml_cell"), docker_run_table())
def test_each_docker_run_example_in_the_readme_is_valid_config(flag: str, yaml_cell: str) -> None:
    snippets = [span for span in re.findall(r"`([^`]+)`", yaml_cell) if ": " in span]
    options = {
        key: value
        for snippet in snippets
        for key, value in yaml.safe_load("{" + snippet + "}").items()
        if key not in ("image", "tag")
    }

    service = web(
        {**ENVIRON, "NAME": "set"},
        **options,
    )

    assert service is not None, flag
