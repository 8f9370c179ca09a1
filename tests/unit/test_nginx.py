"""nginx: the pure renderer by equality; apply() as a transaction, with a fake command runner."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import pytest

from deployer.config import DEFAULT_TEMPLATE, NginxConfig
from deployer.errors import NginxError
from deployer.models import Server, Upstream
from deployer.nginx import CommandResult, NginxConfigurator, load_template, render_upstreams

DIGEST = "sha256:" + "ab" * 32
WEB = Upstream("web", (Server("127.0.0.1:18001", "web-d1", DIGEST),))


class FakeNginx:
    """Plays `nginx -t` / `-s reload`: a config containing 'bad' fails the test.

    killed_reloads: that many reloads signal nginx (it takes the file) and then fail, as a
    reload command killed by its timeout after it signalled the master does.
    """

    def __init__(self, output: Path, reload_fails: bool = False, killed_reloads: int = 0) -> None:
        self.output = output
        self.reload_fails = reload_fails
        self.killed_reloads = killed_reloads
        self.reloaded_with: list[str] = []

    def __call__(self, argv: Sequence[str]) -> CommandResult:
        text = self.output.read_text() if self.output.exists() else ""
        if "bad" in text or not text:
            return CommandResult(1, f'nginx: [emerg] unknown directive "bad" in {self.output}:2')
        if argv[-1] == "reload":
            if self.reload_fails:
                return CommandResult(1, "nginx: [alert] kill(1234, 1) failed (3: No such process)")
            self.reloaded_with.append(text)
            if self.killed_reloads:
                self.killed_reloads -= 1
                return CommandResult(124, "timed out after 60 s")
        return CommandResult(0, "")


def make(
    tmp_path: Path, template: Path = DEFAULT_TEMPLATE, **fake: bool | int
) -> tuple[NginxConfigurator, FakeNginx]:
    output = tmp_path / "conf.d" / "upstreams.conf"
    runner = FakeNginx(output, **fake)  # type: ignore[arg-type]
    config = NginxConfig(
        template=template, output=output, test=["nginx", "-t"], reload=["nginx", "-s", "reload"]
    )
    return NginxConfigurator(config, run=runner), runner


def test_default_template_writes_one_upstream_per_service_sorted() -> None:
    text = render_upstreams(load_template(DEFAULT_TEMPLATE), [WEB, Upstream("api")])

    blocks = [line for line in text.splitlines() if not line.startswith("#")]
    assert blocks == [
        "upstream api {",
        "    server 127.0.0.1:9 down;  # no container runs yet: nginx answers 502",
        "}",
        "upstream web {",
        f"    server 127.0.0.1:18001;  # container web-d1, {DIGEST}",
        "}",
    ]


def test_template_referring_to_an_unknown_field_fails_clearly(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text("{% for u in upstreams %}{{ u.weight }}{% endfor %}")

    with pytest.raises(NginxError, match="has no attribute 'weight'"):
        render_upstreams(load_template(template), [WEB])


def test_template_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text("ok\n{% for u in %}\n")

    with pytest.raises(NginxError, match=r"t\.j2 line 2"):
        load_template(template)


def count_compiles(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    compiled: list[str | None] = []
    compile_ = jinja2.Environment.compile

    def counting(
        self: jinja2.Environment, source: str, name: str | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        compiled.append(name)
        return compile_(self, source, name, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    return compiled


def test_an_unchanged_template_is_compiled_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configurator, _nginx = make(tmp_path)
    compiled = count_compiles(monkeypatch)

    first = configurator.render([WEB])

    assert configurator.render([WEB]) == first
    assert compiled == [DEFAULT_TEMPLATE.name]


def test_an_edited_template_applies_at_the_next_render_even_within_one_clock_tick(
    tmp_path: Path,
) -> None:
    template = tmp_path / "t.j2"
    template.write_text("A {{ upstreams | length }}\n")
    configurator, _nginx = make(tmp_path, template)
    assert configurator.render([WEB]) == "A 1\n"
    was = template.stat()

    template.write_text("B {{ upstreams | length }}\n")  # same size, same mtime
    os.utime(template, ns=(was.st_atime_ns, was.st_mtime_ns))

    assert configurator.render([WEB]) == "B 1\n"


def test_apply_writes_tests_and_reloads(tmp_path: Path) -> None:
    configurator, nginx = make(tmp_path)

    assert configurator.apply([WEB]) is not None

    assert "server 127.0.0.1:18001;" in configurator.output.read_text()
    assert nginx.reloaded_with == [configurator.output.read_text()]
    assert list(configurator.output.parent.iterdir()) == [configurator.output]


def test_apply_of_identical_text_does_not_reload(tmp_path: Path) -> None:
    configurator, nginx = make(tmp_path)
    configurator.apply([WEB])

    assert configurator.apply([WEB]) is None
    assert len(nginx.reloaded_with) == 1


def test_failed_test_restores_previous_file_and_reports_nginx_output(tmp_path: Path) -> None:
    configurator, nginx = make(tmp_path)
    configurator.apply([WEB])
    before = configurator.output.read_text()
    bad_template = tmp_path / "bad.j2"
    bad_template.write_text("bad directive;\n")
    broken, _ = make(tmp_path, template=bad_template)

    with pytest.raises(NginxError, match=r'unknown directive "bad".*previous file restored'):
        broken.apply([WEB])

    assert configurator.output.read_text() == before
    assert len(nginx.reloaded_with) == 1


def test_failed_first_write_leaves_no_file(tmp_path: Path) -> None:
    bad_template = tmp_path / "bad.j2"
    bad_template.write_text("bad\n")
    configurator, _ = make(tmp_path, template=bad_template)

    with pytest.raises(NginxError):
        configurator.apply([WEB])

    assert not configurator.output.exists()


def test_failed_reload_restores_previous_file(tmp_path: Path) -> None:
    configurator, _ = make(tmp_path)
    configurator.apply([Upstream("web")])
    before = configurator.output.read_text()
    failing, _ = make(tmp_path, reload_fails=True)

    with pytest.raises(NginxError, match=r"nginx reload failed .*No such process"):
        failing.apply([WEB])

    assert configurator.output.read_text() == before


def test_each_replaced_file_is_backed_up_and_old_backups_pruned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("deployer.nginx.KEEP_BACKUPS", 2)
    configurator, _ = make(tmp_path)
    configurator.backups = tmp_path / "state" / "nginx-backups"
    texts = []
    for port in range(18001, 18005):
        configurator.apply([Upstream("web", (Server(f"127.0.0.1:{port}", "web-d1", DIGEST),))])
        texts.append(configurator.output.read_text())

    backups = sorted(configurator.backups.iterdir())
    assert [path.read_text() for path in backups] == texts[1:3]
    assert all(path.name.endswith("-upstreams.conf") for path in backups)


def test_a_backup_that_cannot_be_written_changes_nothing(tmp_path: Path) -> None:
    configurator, nginx = make(tmp_path)
    configurator.apply([Upstream("web")])
    before = configurator.output.read_text()
    configurator.backups = tmp_path / "not-a-folder"
    configurator.backups.write_text("a file where the folder should be")

    with pytest.raises(NginxError, match=r"cannot back up .*nothing changed"):
        configurator.apply([WEB])

    assert configurator.output.read_text() == before
    assert len(nginx.reloaded_with) == 1


def test_a_reload_killed_after_it_signalled_nginx_is_undone_by_reloading_the_restored_file(
    tmp_path: Path,
) -> None:
    configurator, nginx = make(tmp_path)
    configurator.apply([Upstream("web")])
    before = configurator.output.read_text()
    nginx.killed_reloads = 1

    with pytest.raises(NginxError) as caught:
        configurator.apply([WEB])

    assert str(caught.value).endswith("; previous file restored and nginx reloaded with it")
    assert configurator.output.read_text() == before
    # nginx took the new file when signalled, then the restored one: it runs the old again.
    signalled_with, reloaded_again_with = nginx.reloaded_with[-2:]
    assert "127.0.0.1:18001" in signalled_with
    assert reloaded_again_with == before
    assert configurator.in_sync


def test_when_the_restored_file_cannot_be_reloaded_either_nginx_is_known_out_of_sync(
    tmp_path: Path,
) -> None:
    configurator, nginx = make(tmp_path)
    configurator.apply([Upstream("web")])
    nginx.killed_reloads = 2

    with pytest.raises(NginxError) as caught:
        configurator.apply([WEB])

    assert "previous file restored, but reloading nginx with it failed too" in str(caught.value)
    assert "nginx may still send traffic by the new file" in str(caught.value)
    assert not configurator.in_sync
    reloads = len(nginx.reloaded_with)
    # The same text again is not "nothing to do": nginx must be brought in line with the file.
    assert configurator.apply([Upstream("web")]) is not None
    assert len(nginx.reloaded_with) == reloads + 1
    assert configurator.in_sync


def test_a_failed_test_does_not_reload_anything(tmp_path: Path) -> None:
    configurator, nginx = make(tmp_path)
    configurator.apply([Upstream("web")])
    bad_template = tmp_path / "bad.j2"
    bad_template.write_text("bad directive;\n")
    configurator.config = configurator.config.model_copy(update={"template": bad_template})

    with pytest.raises(NginxError, match=r"previous file restored$"):
        configurator.apply([WEB])

    assert len(nginx.reloaded_with) == 1
    assert configurator.in_sync
