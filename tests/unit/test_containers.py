"""Container specs: a pure builder, tested by equality."""

from __future__ import annotations

from deployer.backends.base import ContainerSpec, Healthcheck, Ulimit
from deployer.config import ServiceConfig, parse_config
from deployer.rollout.containers import make_container_spec

DIGEST = "sha256:" + "cd" * 32


def service(**extra: object) -> ServiceConfig:
    data = {"image": "registry.example.com/acme/web", "ports": "18000-18009", **extra}
    return parse_config({"services": {"web": data}}, environ={"DEPLOYER_TOKEN": "x" * 20}).services[
        "web"
    ]


def test_host_network_spec_passes_the_pool_port_as_PORT() -> None:
    spec = make_container_spec("web", service(env={"MODE": "prod"}), DIGEST, "d1", 18003, "main")

    assert spec == ContainerSpec(
        name="web-d1",
        image=f"registry.example.com/acme/web@{DIGEST}",
        labels={
            "deployer.service": "web",
            "deployer.digest": DIGEST,
            "deployer.deployment": "d1",
            "deployer.instance": "main",
            "deployer.port": "18003",
            "deployer.network": "host",
            "deployer.container-port": "18003",
        },
        environment={"MODE": "prod", "PORT": "18003"},
        network="host",
        host_port=18003,
        container_port=18003,
        published={},
    )
    assert spec.address == "127.0.0.1:18003"


def test_bridge_spec_publishes_the_container_port_on_loopback_only() -> None:
    spec = make_container_spec(
        "web", service(network="bridge", port=8080), DIGEST, "d2", 18004, "main"
    )

    assert spec.published == {"8080/tcp": ("127.0.0.1", 18004)}
    assert spec.environment["PORT"] == "8080"
    assert spec.address == "127.0.0.1:18004"


def test_named_network_address_is_known_only_after_start() -> None:
    spec = make_container_spec("web", service(network="backend"), DIGEST, "d3", 18005, "main")

    assert spec.network == "backend"
    assert spec.published == {}
    assert spec.address is None


def test_every_run_option_is_copied_into_the_spec_in_the_engines_units() -> None:
    options = service(
        env={"MODE": "prod"},
        command=["serve", "--port", "8080"],
        entrypoint=["/bin/tini", "--"],
        user="1000:1000",
        working_dir="/srv/app",
        volumes=["/srv/conf:/etc/app:ro", "cache:/cache"],
        tmpfs=["/run:size=64m"],
        labels={"com.example.team": "web"},
        extra_hosts={"db.internal": "10.0.0.5"},
        memory="256m",
        cpus=1.5,
        pids_limit=200,
        ulimits={"nofile": {"soft": 1024, "hard": 4096}, "core": 0},
        log={"driver": "json-file", "options": {"max-size": "10m", "max-file": 3}},
        stop_signal="QUIT",
        restart="on-failure:5",
        healthcheck={"test": "wget -q -O- localhost", "interval": "10s", "retries": 3},
    )
    secret = {"API_KEY": "from-an-env-file", "DB_PASSWORD": "from-secret-env"}

    spec = make_container_spec(
        "web", options, DIGEST, "d1", 18003, "main", secret_environment=secret
    )

    assert spec == ContainerSpec(
        name="web-d1",
        image=f"registry.example.com/acme/web@{DIGEST}",
        labels={
            "com.example.team": "web",
            "deployer.service": "web",
            "deployer.digest": DIGEST,
            "deployer.deployment": "d1",
            "deployer.instance": "main",
            "deployer.port": "18003",
            "deployer.network": "host",
            "deployer.container-port": "18003",
        },
        environment={"MODE": "prod", "PORT": "18003"},
        network="host",
        host_port=18003,
        container_port=18003,
        secret_environment={"API_KEY": "from-an-env-file", "DB_PASSWORD": "from-secret-env"},
        command=("serve", "--port", "8080"),
        entrypoint=("/bin/tini", "--"),
        user="1000:1000",
        working_dir="/srv/app",
        volumes=("/srv/conf:/etc/app:ro", "cache:/cache:rw"),
        tmpfs={"/run": "size=64m"},
        extra_hosts={"db.internal": "10.0.0.5"},
        memory=256 * 1024 * 1024,
        nano_cpus=1_500_000_000,
        pids_limit=200,
        ulimits=(Ulimit("nofile", 1024, 4096), Ulimit("core", 0, 0)),
        log_driver="json-file",
        log_options={"max-size": "10m", "max-file": "3"},
        stop_signal="SIGQUIT",
        restart="on-failure",
        restart_retries=5,
        healthcheck=Healthcheck(
            test=("CMD-SHELL", "wget -q -O- localhost"),
            interval=10_000_000_000,
            retries=3,
        ),
    )


def test_without_options_the_spec_keeps_the_images_settings_and_restarts_unless_stopped() -> None:
    spec = make_container_spec("web", service(), DIGEST, "d1", 18003, "main")

    assert (spec.command, spec.entrypoint, spec.user, spec.working_dir) == (None,) * 4
    assert (spec.volumes, spec.tmpfs, spec.extra_hosts, spec.ulimits) == ((), {}, {}, ())
    assert (spec.memory, spec.nano_cpus, spec.pids_limit, spec.stop_signal) == (None,) * 4
    assert (spec.log_driver, spec.log_options, spec.healthcheck) == (None, {}, None)
    assert (spec.restart, spec.restart_retries, spec.secret_environment) == (
        "unless-stopped",
        0,
        {},
    )


def test_a_disabled_healthcheck_is_none_and_a_partial_one_keeps_the_images_test() -> None:
    disabled = make_container_spec(
        "web", service(healthcheck={"disable": True}), DIGEST, "d1", 18003, "main"
    )
    partial = make_container_spec(
        "web", service(healthcheck={"start_period": "1m"}), DIGEST, "d1", 18003, "main"
    )

    assert disabled.healthcheck == Healthcheck(test=("NONE",))
    assert partial.healthcheck == Healthcheck(test=(), start_period=60_000_000_000)


def test_secret_values_stay_out_of_the_specs_repr() -> None:
    spec = make_container_spec(
        "web",
        service(),
        DIGEST,
        "d1",
        18003,
        "main",
        secret_environment={"DB_PASSWORD": "hunter2-db"},
    )

    assert "hunter2-db" not in repr(spec)
    assert "DB_PASSWORD" not in repr(spec)
