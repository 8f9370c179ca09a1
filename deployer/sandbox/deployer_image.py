"""deployer's own image (the repository's Dockerfile) and an nginx image, on the local base.

Both are built with `docker build --network host` (the engine runs with --bridge=none, so RUN
steps have no other network) and use Docker's build cache: with unchanged inputs a rebuild
takes seconds. Builds return the image id, which stays valid while another test run moves the
tag; dangling images of earlier builds are pruned after an hour.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

DEPLOYER_IMAGE = "deployer:sandbox"
NGINX_IMAGE = "deployer-sandbox-nginx:bookworm"
BUILD_LABEL = "deployer.sandbox-build"
NGINX_DOCKERFILE = """\
FROM {base}
RUN apt-get update \\
 && apt-get install -y --no-install-recommends nginx-light \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
"""


def build_argv(
    tag: str, context: str, build_args: Mapping[str, str], iidfile: Path, label: str
) -> list[str]:
    """The `docker build` command line (pure); context '-' reads a Dockerfile from stdin."""
    argv = ["docker", "build", "--network", "host", "--tag", tag, "--iidfile", str(iidfile)]
    argv += ["--label", f"{BUILD_LABEL}={label}"]
    for name, value in sorted(build_args.items()):
        argv += ["--build-arg", f"{name}={value}"]
    return [*argv, context]


def build_deployer_image(
    repository: Path, base: str, build_args: Mapping[str, str], tag: str = DEPLOYER_IMAGE
) -> str:
    """Build the repository's Dockerfile on `base`; return the image id."""
    return _build(tag, str(repository), {"BASE": base, **build_args}, "deployer", None)


def build_nginx_image(base: str, tag: str = NGINX_IMAGE) -> str:
    """Debian's nginx-light on `base` (an nginx container for the sandbox); the image id."""
    return _build(tag, "-", {}, "nginx", NGINX_DOCKERFILE.format(base=base))


def _build(
    tag: str, context: str, build_args: Mapping[str, str], label: str, dockerfile: str | None
) -> str:
    with tempfile.TemporaryDirectory() as scratch:
        iidfile = Path(scratch) / "iid"
        result = subprocess.run(
            build_argv(tag, context, build_args, iidfile, label),
            input=dockerfile,
            capture_output=True,
            text=True,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()[-25:]
            raise RuntimeError(f"docker build of {tag} failed:\n" + "\n".join(output))
        image_id = iidfile.read_text().strip()
    prune = ["docker", "image", "prune", "--force", "--filter", f"label={BUILD_LABEL}={label}"]
    subprocess.run([*prune, "--filter", "until=1h"], capture_output=True, check=False)
    return image_id
