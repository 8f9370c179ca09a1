"""Tiny test images FROM scratch with Debian's static busybox, pushed to a local registry.

Each app listens on 127.0.0.1:$PORT (host networking) and serves /version and /healthz, plus
two CGI endpoints: /cgi-bin/hang (never answers) and SLOW_PATH, /cgi-bin/slow, which answers
200 with the version after 1.5 s (`/cgi-bin/slow?0.5`: after 0.5 s), to show that a request
in flight during a switch completes. For fault tests, AppBehaviour.IGNORE_TERM serves like
SERVE but ignores SIGTERM, so `docker stop -t N` (deployer's retire) takes N seconds::

    old = images.build("web", "v1", behaviour=AppBehaviour.IGNORE_TERM, tag="latest")
    new = images.build("web", "v2", behaviour=AppBehaviour.SLOW, delay=5, tag="latest")
    http_get(f"http://127.0.0.1:{port}{SLOW_PATH}?2", timeout=5)  # (200, "v1\n") after 2 s

For a registry that asks for credentials, give the factory a Docker client config directory of
its own (never the machine's ~/.docker) and log in there: only its docker CLI calls use it::

    images = ImageFactory(registry.address, "acme", workdir, docker_config=tmp / "docker")
    images.login("alice", "secret")
"""

from __future__ import annotations

import enum
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
# LISTEN: 127.0.0.1 on host networking (loopback only); 0.0.0.0 on a bridge, behind its
# published port.
HTTPD = "/bin/busybox httpd -f -p ${LISTEN:-127.0.0.1}:${PORT:-8080} -h /www"
# PID 1 gets no default signal handlers: trap TERM/INT so `docker stop` ends the app at once.
SERVE_SCRIPT = f"trap 'exit 0' TERM INT; {HTTPD} & wait"
# On TERM/INT: end the listening httpd (no new connections), give the requests in flight
# (httpd's forked children) GRACE_SECONDS to finish, then exit: Swarm's contract for an app,
# since Swarm stops an old task itself, with no drain before the signal.
GRACE_SECONDS = 0.5
GRACEFUL_SCRIPT = f"trap 'kill $!; sleep {GRACE_SECONDS:g}; exit 0' TERM INT; {HTTPD} & wait"
# PID 1 ignores TERM and INT (and so does httpd, which inherits that): only SIGKILL ends it.
IGNORE_TERM_SCRIPT = f"trap '' TERM INT; echo 'serving; ignoring SIGTERM'; {HTTPD}"
SLOW_PATH = "/cgi-bin/slow"
SLOW_SECONDS = 1.5
# CGI: sleep for the query string's seconds (a plain number) or SLOW_SECONDS, then answer.
SLOW_CGI = f"""#!/bin/busybox sh
case "$QUERY_STRING" in
  ''|*[!0-9.]*) seconds={SLOW_SECONDS:g} ;;
  *) seconds=$QUERY_STRING ;;
esac
sleep "$seconds"
printf 'Content-Type: text/plain\\r\\n\\r\\n'
cat /www/version
"""


class AppBehaviour(enum.Enum):
    """What a test app does once started."""

    SERVE = "serve"  # answers /version and /healthz at once
    EXIT = "exit"  # prints an error and exits with status 3 at once
    SILENT = "silent"  # keeps running but never listens
    SLOW = "slow"  # starts listening only after `delay` seconds
    HANG = "hang"  # listens, but GET /cgi-bin/hang never answers
    IGNORE_TERM = "ignore-term"  # serves, ignores SIGTERM: `docker stop -t N` takes N s
    GRACEFUL = "graceful"  # serves; on SIGTERM stops listening, finishes what is in flight


@dataclass(frozen=True)
class PushedImage:
    """An image in the local registry: `repository:tag` and the registry's manifest digest."""

    repository: str
    tag: str
    digest: str

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


def make_start_script(behaviour: AppBehaviour, delay: float) -> str:
    """The sh script the container runs for a behaviour."""
    if behaviour is AppBehaviour.EXIT:
        return "echo 'fatal: cannot read /etc/app.conf' >&2; exit 3"
    if behaviour is AppBehaviour.SILENT:
        return "trap 'exit 0' TERM INT; echo 'waiting forever'; while :; do sleep 1; done"
    if behaviour is AppBehaviour.SLOW:
        return f"trap 'exit 0' TERM INT; echo 'warming up'; sleep {delay:g}; {HTTPD} & wait"
    if behaviour is AppBehaviour.IGNORE_TERM:
        return IGNORE_TERM_SCRIPT
    if behaviour is AppBehaviour.GRACEFUL:
        return GRACEFUL_SCRIPT
    return SERVE_SCRIPT


def make_dockerfile(behaviour: AppBehaviour, delay: float, healthcheck: bool) -> str:
    """Dockerfile text for a test app (pure)."""
    lines = [
        "FROM scratch",
        "COPY busybox /bin/busybox",
        "COPY www /www",
        "ENV PORT=8080",
    ]
    if healthcheck:
        probe = "/bin/busybox wget -q -O /dev/null http://127.0.0.1:$PORT/healthz"
        lines.append(
            "HEALTHCHECK --interval=1s --timeout=1s --retries=2 "
            f'CMD ["/bin/busybox", "sh", "-c", "{probe}"]'
        )
    script = make_start_script(behaviour, delay).replace('"', '\\"')
    lines.append(f'ENTRYPOINT ["/bin/busybox", "sh", "-c", "{script}"]')
    return "\n".join(lines) + "\n"


class ImageFactory:
    """Builds test apps by name and version and pushes them to the registry at `registry`."""

    def __init__(
        self, registry: str, namespace: str, workdir: Path, docker_config: Path | None = None
    ) -> None:
        self.registry = registry
        self.namespace = namespace
        self.workdir = workdir
        self.docker_config = docker_config
        self._built: dict[tuple[str, str, AppBehaviour, float, bool, str], PushedImage] = {}

    def login(self, username: str, password: str) -> None:
        """`docker login` to the registry, stored in docker_config (password on stdin)."""
        if self.docker_config is None:
            raise RuntimeError("ImageFactory.login needs docker_config (never the machine's)")
        self.docker_config.mkdir(parents=True, exist_ok=True)
        self._docker(
            "login", "--username", username, "--password-stdin", self.registry, input=password
        )

    def repository(self, name: str) -> str:
        """The full repository name (with registry host) for an app name."""
        return f"{self.registry}/{self.namespace}/{name}"

    def build(
        self,
        name: str,
        version: str,
        behaviour: AppBehaviour = AppBehaviour.SERVE,
        delay: float = 0.0,
        healthcheck: bool = False,
        tag: str | None = None,
    ) -> PushedImage:
        """Build `name:tag` (tag defaults to version) serving `version` at /version, push it."""
        key = (name, version, behaviour, delay, healthcheck, tag or version)
        # A moving tag (`latest`) may point elsewhere since the last push: push it every time.
        if key not in self._built or tag is not None:
            self._built[key] = self._build_and_push(*key)
        return self._built[key]

    def _build_and_push(
        self,
        name: str,
        version: str,
        behaviour: AppBehaviour,
        delay: float,
        healthcheck: bool,
        tag: str,
    ) -> PushedImage:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.workdir) as context_dir:
            context = Path(context_dir)
            shutil.copy2(BUSYBOX, context / "busybox")
            www = context / "www"
            (www / "cgi-bin").mkdir(parents=True)
            (www / "version").write_text(version + "\n")
            (www / "healthz").write_text("ok\n")
            hang = www / "cgi-bin" / "hang"
            hang.write_text("#!/bin/busybox sh\nsleep 3600\n")
            hang.chmod(0o755)
            slow = www / "cgi-bin" / "slow"
            slow.write_text(SLOW_CGI)
            slow.chmod(0o755)
            (context / "Dockerfile").write_text(make_dockerfile(behaviour, delay, healthcheck))
            image = PushedImage(self.repository(name), tag, "")
            self._docker("build", "-q", "-t", image.reference, str(context))
        output = self._docker("push", image.reference)
        match = re.search(r"digest: (sha256:[0-9a-f]{64})", output)
        if match is None:
            raise RuntimeError(f"docker push {image.reference} printed no digest: {output}")
        return PushedImage(image.repository, tag, match.group(1))

    def remove_local(self, image: PushedImage, *also: str) -> None:
        """Delete the local copy so that the next use is a real pull from the registry.

        `also`: other repositories the same digest was pulled under (e.g. through a TcpProxy).
        """
        references = [f"{repository}@{image.digest}" for repository in (image.repository, *also)]
        subprocess.run(
            ["docker", "image", "rm", "-f", image.reference, *references],
            capture_output=True,
            check=False,
        )

    def _docker(self, *args: str, input: str | None = None) -> str:
        own = {"DOCKER_CONFIG": str(self.docker_config)} if self.docker_config else {}
        return _docker(*args, input=input, **own)


def _docker(*args: str, input: str | None = None, **environ: str) -> str:
    environment = {**os.environ, "DOCKER_BUILDKIT": "0", **environ}
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, env=environment, input=input, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"docker {args[0]} failed: {result.stderr.strip() or result.stdout}")
    return result.stdout
