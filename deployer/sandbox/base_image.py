"""A Debian 12 base image built on this machine (no registry to pull one from).

`debootstrap --variant=minbase` of bookworm from the Debian mirror, with Debian's python3 and
python3-venv, slimmed (no apt lists or cached .debs, no docs but copyrights, no man pages or
translations) and loaded with `docker import` as `deployer-base:bookworm`. The image carries
the hash of its recipe as a label and is reused while the recipe is unchanged: the first run on
a machine takes about a minute, later runs a `docker image inspect`.

    python -m deployer.sandbox base-image
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from deployer.sandbox.cache import CACHE_DIR, locked, recipe_key

log = logging.getLogger(__name__)
BASE_IMAGE = "deployer-base:bookworm"
RECIPE_LABEL = "deployer.base-recipe"
# Files a container image does not need; apt and dpkg keep working without them.
SLIM_GLOBS = (
    "var/cache/apt/archives/*.deb",
    "var/cache/apt/*.bin",
    "var/lib/apt/lists/*_*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
    "usr/share/doc/*/*",
    "var/log/*.log",
)
KEEP = ("copyright",)
# Later `apt-get install`s in images built on this base stay slim as well.
DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
"""


class BaseImageError(RuntimeError):
    """The base image could not be built; the message says which step failed and why."""


class MirrorUnreachable(BaseImageError):
    """debootstrap cannot reach the Debian mirror (the only reason to skip the image tests)."""


@dataclass(frozen=True)
class BaseRecipe:
    """Everything that decides what the base image holds."""

    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    security_mirror: str = "http://deb.debian.org/debian-security"
    packages: tuple[str, ...] = ("python3", "python3-venv")
    revision: int = 1  # bump when the steps below change in a way the fields do not show

    @property
    def key(self) -> str:
        return recipe_key(repr(self), "\n".join(SLIM_GLOBS), DPKG_EXCLUDES)

    def debootstrap_argv(self, rootfs: Path) -> list[str]:
        """The debootstrap command line (pure)."""
        return [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(self.packages)}",
            self.suite,
            str(rootfs),
            self.mirror,
        ]

    def sources_list(self) -> str:
        """apt sources for images built on this base: the suite, its updates and security."""
        return (
            f"deb {self.mirror} {self.suite} main\n"
            f"deb {self.mirror} {self.suite}-updates main\n"
            f"deb {self.security_mirror} {self.suite}-security main\n"
        )

    def import_argv(self, tag: str) -> list[str]:
        """`docker import` of a rootfs tar read from stdin, labelled with the recipe (pure)."""
        return [
            "docker",
            "import",
            "--change",
            f"LABEL {RECIPE_LABEL}={self.key}",
            "--change",
            "ENV LANG=C.UTF-8",
            "--change",
            'CMD ["bash"]',
            "-",
            tag,
        ]


def check_mirror(recipe: BaseRecipe, timeout: float = 15.0) -> None:
    """Raise MirrorUnreachable unless the mirror serves the suite's Release file."""
    url = f"{recipe.mirror}/dists/{recipe.suite}/Release"
    try:
        with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 (a fixed http mirror)
            return
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise MirrorUnreachable(f"debootstrap cannot reach {url}: {reason}") from err


def built_recipe(tag: str) -> str | None:
    """The recipe label of the local image `tag`, or None when there is no such image."""
    label = f'{{{{index .Config.Labels "{RECIPE_LABEL}"}}}}'
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", label, tag],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def ensure_base_image(
    tag: str = BASE_IMAGE, recipe: BaseRecipe | None = None, workdir: Path = CACHE_DIR
) -> str:
    """Return 'cached' when `tag` was built from this recipe already, else build it: 'built'."""
    recipe = recipe or BaseRecipe()
    with locked("base-image", workdir):
        if built_recipe(tag) == recipe.key:
            return "cached"
        check_mirror(recipe)
        build_base_image(tag, recipe, workdir)
        return "built"


def build_base_image(tag: str, recipe: BaseRecipe, workdir: Path) -> None:
    """debootstrap into a temporary rootfs, slim it, `docker import` it as tag, remove it."""
    if shutil.which("debootstrap") is None:
        raise BaseImageError("debootstrap is not installed (Debian package debootstrap)")
    if os.geteuid() != 0:
        raise BaseImageError(
            f"debootstrap needs root: build {tag} once as root "
            "(python -m deployer.sandbox base-image); later runs reuse it"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=workdir))
    try:
        _run(recipe.debootstrap_argv(rootfs), "debootstrap", workdir / "debootstrap.log")
        slim(rootfs, recipe)
        import_rootfs(rootfs, recipe.import_argv(tag))
    finally:
        remove_rootfs(rootfs)
    # The base this one replaced, unless images built on it still need it. Images built on a
    # base inherit its labels: only those untagged for an hour go (another run may use one).
    prune = ["docker", "image", "prune", "--force", "--filter", f"label={RECIPE_LABEL}"]
    subprocess.run([*prune, "--filter", "until=1h"], capture_output=True, check=False)
    log.info("built %s (recipe %s)", tag, recipe.key)


def slim(rootfs: Path, recipe: BaseRecipe) -> None:
    """Delete what SLIM_GLOBS names (copyright files stay); write apt sources, dpkg excludes."""
    for pattern in SLIM_GLOBS:
        for path in rootfs.glob(pattern):
            if path.name in KEEP:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    (rootfs / "etc/apt/sources.list").write_text(recipe.sources_list())
    (rootfs / "etc/dpkg/dpkg.cfg.d/slim").write_text(DPKG_EXCLUDES)


def import_rootfs(rootfs: Path, import_argv: list[str]) -> None:
    """Stream `tar` of rootfs into `docker import`."""
    tar_argv = ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."]
    with subprocess.Popen(tar_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as tar:
        result = subprocess.run(import_argv, stdin=tar.stdout, capture_output=True, check=False)
        assert tar.stdout is not None
        tar.stdout.close()
        tar_error = tar.stderr.read() if tar.stderr else b""
    if tar.returncode != 0:
        raise BaseImageError(f"tar of {rootfs} failed: {tar_error.decode(errors='replace')}")
    if result.returncode != 0:
        raise BaseImageError(f"docker import failed: {result.stderr.decode(errors='replace')}")


def remove_rootfs(rootfs: Path) -> None:
    """Delete the temporary rootfs, unless something is still mounted below it."""
    mount_points = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    inside = [point for point in mount_points if point.startswith(f"{rootfs}/")]
    if inside:
        log.error("left %s in place: %s still mounted there", rootfs, ", ".join(inside))
        return
    shutil.rmtree(rootfs, ignore_errors=True)


def _run(argv: list[str], what: str, log_path: Path) -> None:
    with log_path.open("w") as output:
        result = subprocess.run(argv, stdout=output, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise BaseImageError(f"{what} exited {result.returncode} (log {log_path}):\n{tail}")
