"""nginx upstreams: render_upstreams() (pure) and NginxConfigurator.apply() (transactional).

apply(): render, write beside the target, keep the previous text, swap, run the test command,
reload; on any failure put the previous file back (and, when nginx may have been signalled
already, test and reload it again) so nginx keeps what it had.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

from deployer.config import NginxConfig
from deployer.errors import NginxError
from deployer.models import Upstream, utc_now
from deployer.nginx_workers import (
    InFlight,
    Workers,
    in_flight,
    read_master_pid,
    snapshot,
    wait_for_reload,
)

log = logging.getLogger(__name__)
COMMAND_TIMEOUT = 60.0
KEEP_BACKUPS = 20


@dataclass(frozen=True)
class Reloaded:
    """nginx took a new file; `replaced` are its workers from before (None: not watched)."""

    replaced: Workers | None


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    output: str


Runner = Callable[[Sequence[str]], CommandResult]


def run_command(argv: Sequence[str]) -> CommandResult:
    """Run argv (never a shell string) and return its status and combined output."""
    try:
        result = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except FileNotFoundError:
        return CommandResult(127, f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return CommandResult(124, f"timed out after {COMMAND_TIMEOUT:g} s")
    return CommandResult(result.returncode, (result.stderr + result.stdout).strip())


class ExactFileLoader(jinja2.FileSystemLoader):
    """Templates from files; a compiled one is reused only while its file holds the same text
    (Jinja's own check compares mtimes, which two edits within one clock tick share)."""

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, _ = super().get_source(environment, template)
        path = Path(filename)

        def uptodate() -> bool:
            try:
                return path.read_text(encoding=self.encoding) == source
            except (OSError, UnicodeDecodeError):
                return False

        return source, filename, uptodate


def make_template_environment(directory: Path) -> jinja2.Environment:
    """A Jinja environment for nginx text: strict, no autoescape, trailing newline kept; it
    keeps compiled templates while their files are unchanged."""
    return jinja2.Environment(
        loader=ExactFileLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 (nginx config, not HTML)
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def load_template(path: Path, environment: jinja2.Environment | None = None) -> jinja2.Template:
    """Load the upstream template (through `environment`, which may hold it compiled already);
    raise NginxError naming the file and line on problems."""
    try:
        return (environment or make_template_environment(path.parent)).get_template(path.name)
    except jinja2.TemplateNotFound:
        raise NginxError(str(path), f"nginx template {path} not found") from None
    except jinja2.TemplateSyntaxError as err:
        raise NginxError(
            str(path), f"nginx template {path} line {err.lineno}: {err.message}"
        ) from err


def render_upstreams(template: jinja2.Template, upstreams: Sequence[Upstream]) -> str:
    """The upstream config text for these services, sorted by name (pure)."""
    ordered = sorted(upstreams, key=lambda upstream: upstream.service)
    try:
        return template.render(upstreams=ordered)
    except jinja2.TemplateError as err:
        raise NginxError(
            str(template.filename), f"nginx template {template.filename}: {err}"
        ) from err


class NginxConfigurator:
    """Owns the upstream file: renders it, swaps it in transactionally, tests and reloads nginx."""

    def __init__(
        self, config: NginxConfig, run: Runner = run_command, backups: Path | None = None
    ) -> None:
        self.config = config
        self.output = config.output
        self.backups = backups
        self._run = run
        self._lock = threading.Lock()
        self._templates: dict[Path, jinja2.Environment] = {}  # by the template's folder
        # True once nginx is known to run the file on disk (a successful apply); False at first
        # and after a restore nginx could not be reloaded with: then nginx may still send
        # traffic to containers the file no longer names, and those must not be removed yet.
        self.in_sync = False

    def render(self, upstreams: Sequence[Upstream]) -> str:
        """Render the current template (read afresh, so template edits apply; compiled again
        only when its text changed) for upstreams."""
        folder = self.config.template.parent
        if folder not in self._templates:
            self._templates[folder] = make_template_environment(folder)
        return render_upstreams(
            load_template(self.config.template, self._templates[folder]), upstreams
        )

    def apply(self, upstreams: Sequence[Upstream], force: bool = False) -> Reloaded | None:
        """Write, test and reload; return what the reload replaced, or None when nothing
        needed doing.

        force: reload even when the file already holds this text (at start, after a crash,
        nginx may run another file than the one on disk). On failure the previous file is put
        back, and if nginx may have been signalled it is tested and reloaded again with it.
        """
        text = self.render(upstreams)
        with self._lock:
            previous = self._read_current()
            if previous == text and self.in_sync and not force:
                return None
            if previous is not None and previous != text:
                self._back_up(previous)
            self._swap_in(text)
            try:
                self._check(self.config.test, "test")
            except NginxError as err:  # nginx was not signalled: it still runs the old file
                self._restore(previous)
                raise NginxError(err.path, f"{err}; previous file restored") from None
            try:
                replaced = self._reload()
            except NginxError as err:
                self._restore(previous)
                raise NginxError(err.path, f"{err}; {self._reload_restored()}") from None
            self.in_sync = True
        log.info("nginx upstreams written to %s and nginx reloaded", self.output)
        return Reloaded(replaced)

    def in_flight(self, replaced: Workers | None) -> InFlight | None:
        """What may still send traffic to containers a switch replaced (the nginx workers its
        reload replaced); None when that cannot be watched (no `pid_file`)."""
        if self.config.pid_file is None:
            return None
        try:
            master = read_master_pid(self.config.pid_file)
        except NginxError:
            return None
        return in_flight(replaced, master)

    def _reload_restored(self) -> str:
        """After a failed reload: test and reload the restored file (best effort), say how."""
        try:
            self._check(self.config.test, "test")
            self._reload()
        except NginxError as err:
            self.in_sync = False
            return (
                f"previous file restored, but reloading nginx with it failed too ({err}): nginx "
                "may still send traffic by the new file until its next successful reload"
            )
        self.in_sync = True
        return "previous file restored and nginx reloaded with it"

    def _read_current(self) -> str | None:
        try:
            return self.output.read_text()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise NginxError(str(self.output), f"cannot read {self.output}: {err}") from err

    def _back_up(self, previous: str) -> None:
        """Keep the file being replaced in the backups folder (newest KEEP_BACKUPS kept)."""
        if self.backups is None:
            return
        stamp = utc_now().strftime("%Y%m%dT%H%M%S.%fZ")
        try:
            self.backups.mkdir(parents=True, exist_ok=True)
            (self.backups / f"{stamp}-{self.output.name}").write_text(previous)
            for old in sorted(self.backups.glob(f"*-{self.output.name}"))[:-KEEP_BACKUPS]:
                old.unlink()
        except OSError as err:
            raise NginxError(
                str(self.backups),
                f"cannot back up {self.output} into {self.backups}: {err}; nothing changed",
            ) from err

    def _swap_in(self, text: str) -> None:
        temporary = self.output.with_name(f".{self.output.name}.deployer-new")
        try:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(text)
            try:
                os.replace(temporary, self.output)
            except OSError as err:
                if err.errno not in (errno.EBUSY, errno.EXDEV):
                    raise
                # A file bind-mounted on its own cannot be renamed over: write it in place.
                temporary.unlink(missing_ok=True)
                self.output.write_text(text)
        except OSError as err:
            temporary.unlink(missing_ok=True)
            raise NginxError(str(self.output), f"cannot write {self.output}: {err}") from err

    def _reload(self) -> Workers | None:
        """Run the reload command; with a pid file, wait until nginx applied it and return the
        workers it replaced (they exit once their in-flight requests are done)."""
        pid_file = self.config.pid_file
        if pid_file is None:
            self._check(self.config.reload, "reload")
            return None
        before = snapshot(pid_file)
        self._check(self.config.reload, "reload")
        wait_for_reload(before, self.config.reload_timeout)
        return before

    def _check(self, argv: Sequence[str], what: str) -> None:
        result = self._run(argv)
        if result.returncode != 0:
            raise NginxError(
                str(self.output),
                f"nginx {what} failed for {self.output} ({' '.join(argv)} exited "
                f"{result.returncode}): {result.output or '(no output)'}",
            )

    def _restore(self, previous: str | None) -> None:
        try:
            if previous is None:
                self.output.unlink(missing_ok=True)
            else:
                self._swap_in(previous)
        except (OSError, NginxError):
            log.exception("could not restore %s", self.output)
