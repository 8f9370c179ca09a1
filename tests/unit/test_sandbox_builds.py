"""The pure parts of the sandbox's builds: base image recipe, package index, docker build argv,
and where the shipped templates are found."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.resources import templates_dir
from deployer.sandbox.base_image import (
    RECIPE_LABEL,
    BaseRecipe,
    MirrorUnreachable,
    check_mirror,
    slim,
)
from deployer.sandbox.deployer_image import BUILD_LABEL, build_argv
from deployer.sandbox.net import free_port
from deployer.sandbox.pypi import INDEX_PORTS, project_name, stable_port, write_simple_index


def test_base_recipe_builds_minbase_bookworm_with_debians_python() -> None:
    recipe = BaseRecipe()

    assert recipe.debootstrap_argv(Path("/tmp/rootfs")) == [
        "debootstrap",
        "--variant=minbase",
        "--include=python3,python3-venv",
        "bookworm",
        "/tmp/rootfs",
        "http://deb.debian.org/debian",
    ]
    assert f"LABEL {RECIPE_LABEL}={recipe.key}" in recipe.import_argv("deployer-base:bookworm")


def test_a_changed_recipe_has_another_key() -> None:
    assert BaseRecipe().key == BaseRecipe().key
    assert BaseRecipe(packages=("python3",)).key != BaseRecipe().key
    assert BaseRecipe(revision=2).key != BaseRecipe().key


def test_slim_keeps_copyrights_and_writes_apt_sources(tmp_path: Path) -> None:
    for name in ("usr/share/doc/bash/copyright", "usr/share/doc/bash/NEWS.gz", "usr/share/man/x"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / "etc/apt").mkdir(parents=True)
    (tmp_path / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True)

    slim(tmp_path, BaseRecipe())

    kept = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if path.is_file())
    assert kept == [
        "etc/apt/sources.list",
        "etc/dpkg/dpkg.cfg.d/slim",
        "usr/share/doc/bash/copyright",
    ]
    assert "bookworm-security main" in (tmp_path / "etc/apt/sources.list").read_text()


def test_the_index_lists_each_wheel_under_its_normalised_project_name(tmp_path: Path) -> None:
    for wheel in ("prometheus_client-0.26.0-py3-none-any.whl", "Flask-3.1.3-py3-none-any.whl"):
        (tmp_path / wheel).write_text("")

    write_simple_index(tmp_path)

    page = (tmp_path / "simple" / "prometheus-client" / "index.html").read_text()
    assert '<a href="../../prometheus_client-0.26.0-py3-none-any.whl">' in page
    assert (tmp_path / "simple" / "flask" / "index.html").exists()
    assert project_name("typing_extensions-4.16.0-py3-none-any.whl") == "typing-extensions"


def test_a_wheelhouse_is_served_on_the_same_port_every_run(tmp_path: Path) -> None:
    port = stable_port(tmp_path / "wheels-1")

    assert port == stable_port(tmp_path / "wheels-1")
    assert port in INDEX_PORTS


def test_docker_build_uses_the_host_network_and_labels_the_image(tmp_path: Path) -> None:
    argv = build_argv("deployer:sandbox", ".", {"BASE": "b", "A": "1"}, tmp_path / "iid", "x")

    assert argv == [
        "docker", "build", "--network", "host", "--tag", "deployer:sandbox",
        "--iidfile", str(tmp_path / "iid"), "--label", f"{BUILD_LABEL}=x",
        "--build-arg", "A=1", "--build-arg", "BASE=b", ".",
    ]  # fmt: skip


def test_templates_come_from_the_package_when_installed_else_the_checkout(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "deployer").mkdir(parents=True)
    (checkout / "templates").mkdir()
    assert templates_dir(checkout / "deployer") == checkout / "templates"

    installed = tmp_path / "site-packages" / "deployer"
    (installed / "templates").mkdir(parents=True)
    assert templates_dir(installed) == installed / "templates"


def test_an_unreachable_mirror_is_reported_with_its_url_and_reason() -> None:
    recipe = BaseRecipe(mirror=f"http://127.0.0.1:{free_port()}/debian")

    with pytest.raises(
        MirrorUnreachable,
        match=r"cannot reach http://127\.0\.0\.1:\d+/debian/dists/bookworm/Release: .*refused",
    ):
        check_mirror(recipe, timeout=2)
