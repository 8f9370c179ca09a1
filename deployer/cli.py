"""The `deployer` command: serve | check-config | render-nginx | demo."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

import waitress

from deployer import create_app
from deployer.adoption import render_current
from deployer.config import Config, load_config, resolve_config_path
from deployer.demo import run_demo
from deployer.docker_backend import DockerBackend
from deployer.errors import ConfigError, DeployerError
from deployer.logs import configure_logging
from deployer.nginx import NginxConfigurator
from deployer.runtime import DATABASE
from deployer.store import Store

EXIT_CONFIG = 2
EXIT_FAILURE = 1
STOP_BUDGET = 8.0  # seconds for running deployments to finish or roll back; exit within 10 s
log = logging.getLogger("deployer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deployer",
        description="Continuous deployment from registry push webhooks: health-gated "
        "blue/green containers behind nginx.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the service (production WSGI server)")
    check = commands.add_parser(
        "check-config", help="validate the config; exit 2 listing every problem"
    )
    render = commands.add_parser(
        "render-nginx", help="print the upstream config as it would be written now"
    )
    demo = commands.add_parser(
        "demo", help="local sandbox: registry, nginx, deployer; push v1 then v2 and watch"
    )
    demo.add_argument("--exit", action="store_true", help="exit after the demo (for scripts)")
    for command in (serve, check, render, demo):
        command.add_argument(
            "--config",
            metavar="PATH",
            help="YAML config (default: $DEPLOYER_CONFIG, else config/deployer.yml)",
        )
    return parser


def load(args: argparse.Namespace) -> Config:
    """The validated config named by --config / $DEPLOYER_CONFIG / the default path."""
    return load_config(resolve_config_path(args.config, os.environ))


def check_config(args: argparse.Namespace) -> int:
    config = load(args)
    names = ", ".join(config.services) or "none"
    print(f"{resolve_config_path(args.config, os.environ)}: OK (services: {names})")
    return 0


def render_nginx(args: argparse.Namespace) -> int:
    config = load(args)
    store = Store(config.state_dir / DATABASE)
    text = render_current(config, DockerBackend(), store, NginxConfigurator(config.nginx))
    sys.stdout.write(text)
    return 0


def serve(args: argparse.Namespace) -> int:
    config = load(args)
    token = os.environ.get(config.webhooks.token_env, "")
    configure_logging([token])
    app = create_app(config)
    runtime = app.extensions["deployer"]
    for line in runtime.start():
        log.info("start: %s", line)
    server = waitress.create_server(
        app, host=config.server.host, port=config.server.port, threads=8, ident="deployer"
    )
    stop = threading.Event()

    def on_signal(number: int, frame: FrameType | None) -> None:
        log.info("%s received: stopping", signal.Signals(number).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    threading.Thread(target=server.run, name="http", daemon=True).start()
    log.info("listening on http://%s:%s", config.server.host, config.server.port)
    stop.wait()
    finished = runtime.stop(STOP_BUDGET)
    server.close()
    log.info("stopped%s", "" if finished else " (a deployment was still running)")
    return 0 if finished else EXIT_FAILURE


def demo(args: argparse.Namespace) -> int:
    return run_demo(resolve_config_path(args.config, os.environ), exit_after=args.exit)


COMMANDS = {
    "serve": serve,
    "check-config": check_config,
    "render-nginx": render_nginx,
    "demo": demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `deployer` command."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as err:
        print(f"deployer: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except DeployerError as err:
        print(f"deployer: {err}", file=sys.stderr)
        return EXIT_FAILURE
