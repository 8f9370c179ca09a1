"""Private registries: the `registries:` config, which credentials go where, what a refusal says.

The Docker adapter runs with a fake docker client (no engine); the Docker client config and a
credential helper are real files in tmp_path (docker-py reads them and runs the helper).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest
import requests

from deployer.backends.docker import DockerBackend
from deployer.config import RegistryConfig, parse_config, registry_of, secret_values
from deployer.errors import ConfigError, RegistryError
from deployer.logs import REDACTED, RedactSecrets
from deployer.registries import RegistryLogins, is_refusal, same_registry

TOKEN_ENV = {"DEPLOYER_TOKEN": "s3cret-token-of-32-characters-xx"}
PASSWORD = "pa55-w0rd-of-the-registry"
IMAGE = "registry.example.com/acme/web"
DIGEST = "sha256:" + "4013" * 16  # holds "401" and "403": not a refusal by itself
ENTRY = {"registry.example.com": RegistryConfig(username_env="REG_USER", password_env="REG_PASS")}
ENTRY_ENV = {"REG_USER": "bob", "REG_PASS": PASSWORD}
TRIED_ENTRY = (
    'tried: registries."registry.example.com" (username from $REG_USER, password from $REG_PASS)'
)


# the config


def problems_of(registries: Any, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config({"registries": registries}, environ={**TOKEN_ENV, **(environ or ENTRY_ENV)})
    return caught.value.problems


def test_a_registries_entry_names_variables_and_its_password_is_redacted_from_logs() -> None:
    data = {
        "registries": {"127.0.0.1:5443": {"username_env": "REG_USER", "password_env": "REG_PASS"}}
    }
    environ = {**TOKEN_ENV, **ENTRY_ENV}

    config = parse_config(data, environ=environ)

    assert config.registries == {
        "127.0.0.1:5443": RegistryConfig(username_env="REG_USER", password_env="REG_PASS")
    }
    assert PASSWORD in secret_values(config, environ)
    assert "bob" not in secret_values(config, environ)  # a user name is no secret
    redact = RedactSecrets(secret_values(config, environ)).redact
    assert redact(f"login with {PASSWORD}") == f"login with {REDACTED}"


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("https://registry.example.com", 'registries."https://registry.example.com"'),
        ("registry.example.com/acme", 'registries."registry.example.com/acme"'),
        ("myregistry", "registries.myregistry"),  # no '.', no port: Docker reads it as Hub
        ("registry.example.com:99999", 'registries."registry.example.com:99999"'),
        ("registry .example.com", 'registries."registry .example.com"'),
    ],
)
def test_a_registries_key_must_be_a_host_as_image_names_spell_it(key: str, path: str) -> None:
    entry = {"username_env": "REG_USER", "password_env": "REG_PASS"}

    problems = problems_of({key: entry})

    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: expected a registry host as image names spell it")


@pytest.mark.parametrize(
    "key", ["registry.example.com", "127.0.0.1:5443", "localhost", "localhost:5000", "[::1]:5000"]
)
def test_registry_hosts_docker_reads_as_hosts_are_keys(key: str) -> None:
    data = {"registries": {key: {"username_env": "REG_USER", "password_env": "REG_PASS"}}}

    assert list(parse_config(data, environ={**TOKEN_ENV, **ENTRY_ENV}).registries) == [key]


def test_every_registries_problem_is_named_and_no_value_is_shown() -> None:
    registries = {
        "registry.example.com": {"username_env": "REG_USER", "password_env": "UNSET_PASS"},
        "127.0.0.1:5443": {"username_env": "REG_USER"},
        "localhost:5000": {"username_env": "1BAD", "password_env": "REG_PASS", "password": "x"},
    }

    problems = problems_of(registries)

    assert problems == [
        'registries."127.0.0.1:5443".password_env: required',
        "registries.localhost:5000.username_env: expected an environment variable name, got '1BAD'",
        "registries.localhost:5000.password: unknown key (check the spelling)",
        'registries."registry.example.com".password_env: environment variable UNSET_PASS is '
        "not set (the password for registry registry.example.com)",
    ]
    assert not any(PASSWORD in problem or "bob" in problem for problem in problems)


def test_an_empty_credential_variable_counts_as_unset() -> None:
    registries = {"registry.example.com": {"username_env": "REG_USER", "password_env": "REG_PASS"}}

    problems = problems_of(registries, {"REG_USER": "", "REG_PASS": PASSWORD})

    assert problems == [
        'registries."registry.example.com".username_env: environment variable REG_USER is not '
        "set (the user name for registry registry.example.com)"
    ]


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("registry.example.com/acme/web", "registry.example.com"),
        ("127.0.0.1:5443/acme/web", "127.0.0.1:5443"),
        ("localhost/acme/web", "localhost"),
        ("localhost:5000/web", "localhost:5000"),
        ("[::1]:5000/acme/web", "[::1]:5000"),
        ("acme/web", "docker.io"),
        ("nginx", "docker.io"),
        ("acme/sub.domain/web", "docker.io"),  # only the first component can be a host
    ],
)
def test_the_registry_of_an_image_is_its_first_component_when_that_names_a_host(
    image: str, registry: str
) -> None:
    assert registry_of(image) == registry


def test_docker_hub_has_several_names() -> None:
    assert same_registry("index.docker.io", "docker.io")
    assert same_registry("registry-1.docker.io", "docker.io")
    assert same_registry("Registry.Example.com", "registry.example.com")
    assert not same_registry("registry.example.com", "docker.io")


# which credentials go to the registry


class FakeClient:
    """docker-py's surface that resolve and pull use; records what auth_config each got."""

    def __init__(self, failure: Exception | None = None, pull_lines: list[Any] | None = None):
        self.failure = failure
        self.pull_lines = pull_lines or [{"status": "Downloaded newer image"}]
        self.sent: list[dict[str, str]] = []
        self.images = SimpleNamespace(get_registry_data=self.get_registry_data, get=self.get)
        self.api = SimpleNamespace(pull=self.pull)

    def get_registry_data(self, name: str, auth_config: dict[str, str]) -> Any:
        self.sent.append(auth_config)
        if self.failure is not None:
            raise self.failure
        return SimpleNamespace(id=DIGEST)

    def pull(self, repository: str, tag: str, **options: Any) -> Iterator[dict[str, Any]]:
        assert options["stream"]
        assert options["decode"]
        self.sent.append(options["auth_config"])
        if self.failure is not None:
            raise self.failure
        return iter(self.pull_lines)

    def get(self, reference: str) -> Any:
        return SimpleNamespace(id=reference)


def make_backend(
    client: FakeClient,
    registries: dict[str, RegistryConfig] | None = None,
    environ: dict[str, str] | None = None,
) -> DockerBackend:
    return DockerBackend(lambda: client, RegistryLogins(registries or {}, environ or {}))


def write_docker_config(directory: Path, content: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(content))
    return directory


def auths_entry(registry: str, user: str, password: str) -> dict[str, Any]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"auths": {registry: {"auth": encoded}}}


def test_deployer_s_own_entry_is_sent_and_wins_over_the_docker_client_config(
    tmp_path: Path,
) -> None:
    docker_config = write_docker_config(
        tmp_path / "docker", auths_entry("registry.example.com", "carol", "other")
    )
    client = FakeClient()
    backend = make_backend(client, ENTRY, {**ENTRY_ENV, "DOCKER_CONFIG": str(docker_config)})

    assert backend.resolve(IMAGE, "latest") == DIGEST
    backend.pull(IMAGE, DIGEST)

    own = {"username": "bob", "password": PASSWORD, "serveraddress": "registry.example.com"}
    assert client.sent == [own, own]
    assert backend.credentials(IMAGE).source == TRIED_ENTRY.removeprefix("tried: ")
    assert PASSWORD not in repr(backend.credentials(IMAGE))


def test_without_an_entry_the_docker_client_config_s_auths_entry_is_sent(tmp_path: Path) -> None:
    docker_config = write_docker_config(
        tmp_path / "docker", auths_entry("registry.example.com", "carol", PASSWORD)
    )
    client = FakeClient()
    backend = make_backend(client, environ={"DOCKER_CONFIG": str(docker_config)})

    backend.resolve(IMAGE, "latest")

    assert client.sent == [
        {"username": "carol", "password": PASSWORD, "serveraddress": "registry.example.com"}
    ]
    assert backend.credentials(IMAGE).source == (
        f"the Docker client config {docker_config}/config.json "
        "(auths entry for registry.example.com)"
    )


def test_the_docker_client_config_is_read_afresh_each_time(tmp_path: Path) -> None:
    """A `docker login` after deployer started counts from the next deployment on."""
    client = FakeClient()
    backend = make_backend(client, environ={"DOCKER_CONFIG": str(tmp_path / "docker")})
    backend.resolve(IMAGE, "latest")

    write_docker_config(tmp_path / "docker", auths_entry("registry.example.com", "carol", "pw"))
    backend.resolve(IMAGE, "latest")

    assert [sent.get("username") for sent in client.sent] == [None, "carol"]


def test_a_credential_helper_named_in_the_docker_client_config_is_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helpers = tmp_path / "bin"
    helpers.mkdir()
    helper = helpers / "docker-credential-fake"
    answer = json.dumps(
        {"ServerURL": "registry.example.com", "Username": "dan", "Secret": PASSWORD}
    )
    helper.write_text(f"#!/bin/sh\nread server\necho '{answer}'\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helpers}:{Path('/usr/bin')}:{Path('/bin')}")
    docker_config = write_docker_config(
        tmp_path / "docker", {"credHelpers": {"registry.example.com": "fake"}}
    )
    client = FakeClient()
    backend = make_backend(client, environ={"DOCKER_CONFIG": str(docker_config)})

    backend.pull(IMAGE, DIGEST)

    assert client.sent == [
        {"ServerAddress": "registry.example.com", "Username": "dan", "Password": PASSWORD}
    ]
    assert backend.credentials(IMAGE).source == (
        f"the Docker client config {docker_config}/config.json "
        "(credential helper docker-credential-fake)"
    )


def test_a_credential_helper_that_is_not_installed_is_a_registry_error(tmp_path: Path) -> None:
    docker_config = write_docker_config(tmp_path / "docker", {"credsStore": "not-installed-here"})
    backend = make_backend(FakeClient(), environ={"DOCKER_CONFIG": str(docker_config)})

    with pytest.raises(RegistryError) as failed:
        backend.resolve(IMAGE, "latest")

    message = str(failed.value)
    assert message.startswith(
        "cannot read the credentials for registry registry.example.com from the Docker client "
        f"config {docker_config}/config.json: "
    )
    assert "docker-credential-not-installed-here not installed or not available in PATH" in message
    assert message.endswith(
        "fix that file or its credential helper, or give deployer's registries: an entry for "
        "registry.example.com"
    )


def test_a_docker_client_config_that_is_not_json_is_a_registry_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    backend = make_backend(FakeClient(), environ={"DOCKER_CONFIG": str(tmp_path)})

    with pytest.raises(RegistryError, match=f"from the Docker client config {tmp_path}/config"):
        backend.pull(IMAGE, DIGEST)


def test_no_credentials_anywhere_is_an_explicit_anonymous_request(tmp_path: Path) -> None:
    """$DOCKER_CONFIG without a config.json: the home's is not read (as Docker's CLI does)."""
    write_docker_config(
        tmp_path / "home" / ".docker", auths_entry("registry.example.com", "e", "f")
    )
    environ = {"DOCKER_CONFIG": str(tmp_path / "empty"), "HOME": str(tmp_path / "home")}
    client = FakeClient()
    backend = make_backend(client, environ=environ)

    backend.resolve(IMAGE, "latest")

    assert client.sent == [{}]  # docker-py sends `{}` as is; None would make it look itself
    assert backend.credentials(IMAGE).source == (
        "no credentials (none in deployer's registries: nor in the Docker client config "
        f"{tmp_path}/empty/config.json (no such file))"
    )


def test_the_docker_client_config_is_in_home_without_docker_config(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_docker_config(home / ".docker", auths_entry("registry.example.com", "erin", "pw"))
    client = FakeClient()
    backend = make_backend(client, environ={"HOME": str(home)})

    backend.resolve(IMAGE, "latest")

    assert client.sent[0]["username"] == "erin"


def test_a_docker_hub_image_takes_the_entry_of_any_of_hub_s_names() -> None:
    hub = {"index.docker.io": RegistryConfig(username_env="REG_USER", password_env="REG_PASS")}
    client = FakeClient()

    make_backend(client, hub, ENTRY_ENV).resolve("acme/web", "latest")

    assert client.sent == [{"username": "bob", "password": PASSWORD, "serveraddress": "docker.io"}]


# what a refusal says


def api_error(status: int, explanation: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(f"{status} Server Error", response, explanation)


REFUSED = f"registry registry.example.com refused {IMAGE}:latest"


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (
            api_error(
                500,
                'Head "https://registry.example.com/v2/acme/web/manifests/latest": '
                "no basic auth credentials",
            ),
            f"{REFUSED}: no basic auth credentials; {TRIED_ENTRY}; fix the credentials or "
            "docker login",
        ),
        (
            api_error(401, "unauthorized: authentication required"),
            f"{REFUSED}: unauthorized: authentication required; {TRIED_ENTRY}; fix the "
            "credentials or docker login",
        ),
        (
            api_error(403, "Forbidden"),
            f"{REFUSED}: Forbidden; {TRIED_ENTRY}; fix the credentials or docker login",
        ),
        (
            api_error(
                404,
                "pull access denied for registry.example.com/acme/web, repository does not "
                "exist or may require 'docker login': denied: requested access to the resource "
                "is denied",
            ),
            f"{REFUSED}: pull access denied for registry.example.com/acme/web, repository does "
            "not exist or may require 'docker login': denied: requested access to the resource "
            f"is denied; {TRIED_ENTRY}; fix the credentials or docker login",
        ),
        (
            api_error(404, "manifest unknown: manifest unknown"),
            f"cannot resolve {IMAGE}:latest at the registry: manifest unknown: manifest unknown",
        ),
        (
            api_error(500, "open /var/lib/docker/image/overlay2/x: permission denied"),
            f"cannot resolve {IMAGE}:latest at the registry: open "
            "/var/lib/docker/image/overlay2/x: permission denied",
        ),
        (
            requests.exceptions.ConnectionError("connection refused"),
            f"cannot resolve {IMAGE}:latest at the registry: connection refused",
        ),
    ],
)
def test_resolve_failures_a_refusal_names_the_registry_and_what_was_tried(
    failure: Exception, expected: str
) -> None:
    backend = make_backend(FakeClient(failure), ENTRY, ENTRY_ENV)

    with pytest.raises(RegistryError) as failed:
        backend.resolve(IMAGE, "latest")

    assert str(failed.value) == expected
    assert failed.value.reference == f"{IMAGE}:latest"
    assert PASSWORD not in str(failed.value)


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        (
            FakeClient(api_error(500, "unauthorized: authentication required")),
            f"registry registry.example.com refused {IMAGE}@{DIGEST}: unauthorized: "
            f"authentication required; {TRIED_ENTRY}; fix the credentials or docker login",
        ),
        (
            FakeClient(pull_lines=[{"status": "Pulling"}, {"error": "unauthorized: denied: no"}]),
            f"registry registry.example.com refused {IMAGE}@{DIGEST}: unauthorized: denied: "
            f"no; {TRIED_ENTRY}; fix the credentials or docker login",
        ),
        (
            FakeClient(pull_lines=[{"errorDetail": {"message": "blob unknown to registry"}}]),
            f"pull of {IMAGE}@{DIGEST} failed: blob unknown to registry",
        ),
    ],
)
def test_pull_failures_a_refusal_names_the_registry_and_what_was_tried(
    client: FakeClient, expected: str
) -> None:
    backend = make_backend(client, ENTRY, ENTRY_ENV)

    with pytest.raises(RegistryError) as failed:
        backend.pull(IMAGE, DIGEST)

    assert str(failed.value) == expected


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("no basic auth credentials", True),
        ("unauthorized: authentication required", True),
        ("denied: requested access to the resource is denied", True),
        ("403 Forbidden", True),
        (f"manifest for {IMAGE}@{DIGEST} not found", False),  # the digest holds 401 and 403
        ("open /var/lib/docker/tmp: permission denied", False),
        ("dial tcp 127.0.0.1:401: connect: connection refused", False),
    ],
)
def test_what_counts_as_a_refusal(text: str, refusal: bool) -> None:
    assert is_refusal(text) is refusal
