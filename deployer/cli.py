"""The `deployer` command.

Service side: serve | check-config | render-nginx | demo.
Client side, over HTTP to a running deployer: status | history | deploy | rollback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

import waitress

from deployer import console, create_app
from deployer.backends.docker import DockerBackend
from deployer.client import DeployerClient
from deployer.config import (
    AdminConfig,
    Config,
    ReadConfig,
    ServerConfig,
    load_config,
    resolve_config_path,
    secret_values,
)
from deployer.demo import run_demo
from deployer.errors import ConfigError, DeployerError
from deployer.logs import FORMATS, configure_logging
from deployer.nginx import NginxConfigurator
from deployer.rollout.adoption import render_current
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
    serve.add_argument(
        "--log-format", choices=FORMATS, default="text", help="text (default) or json lines"
    )
    clients = add_client_commands(commands)
    for command in (serve, check, render, demo, *clients):
        command.add_argument(
            "--config",
            metavar="PATH",
            help="YAML config (default: $DEPLOYER_CONFIG, else config/deployer.yml)",
        )
    return parser


def add_client_commands(commands: Any) -> list[argparse.ArgumentParser]:
    """status | history | deploy | rollback: talk to a running deployer over HTTP."""
    status = commands.add_parser("status", help="each service's state, as a table")
    history = commands.add_parser("history", help="a service's deployments, newest first")
    history.add_argument("service", metavar="SERVICE")
    history.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    deploy = commands.add_parser("deploy", help="resolve and deploy a service's tag now (admin)")
    deploy.add_argument("service", metavar="SERVICE")
    deploy.add_argument("--tag", help="tag to deploy (default: the one the service follows)")
    rollback = commands.add_parser(
        "rollback", help="deploy the previous succeeded digest, or --to DIGEST (admin)"
    )
    rollback.add_argument("service", metavar="SERVICE")
    rollback.add_argument("--to", metavar="DIGEST", help="sha256:... to deploy")
    adopt = commands.add_parser(
        "adopt", help="take over a container you run by hand as what serves SERVICE (admin)"
    )
    adopt.add_argument("service", metavar="SERVICE")
    adopt.add_argument("container", metavar="CONTAINER", help="its name or id")
    adopt.add_argument(
        "--port", type=int, help="the port it listens on (host networking; default: its $PORT)"
    )
    for command in (status, history, adopt):
        command.add_argument("--json", action="store_true", help="print the JSON answer")
    for command in (deploy, rollback):
        command.add_argument(
            "--wait", action="store_true", help="follow it step by step; exit 1 unless it succeeds"
        )
        command.add_argument(
            "--json", action="store_true", help="print the JSON answer (the final one with --wait)"
        )
    for command in (status, history, deploy, rollback, adopt):
        command.add_argument(
            "--url", help="deployer's base URL (default: $DEPLOYER_URL, else the config's server)"
        )
    return [status, history, deploy, rollback, adopt]


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
    configure_logging(secret_values(config, os.environ), format=args.log_format)
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


def connect(args: argparse.Namespace) -> DeployerClient:
    """A client for --url / $DEPLOYER_URL / the config's server, with the admin and read
    tokens from the variables the config names."""
    path = resolve_config_path(args.config, os.environ)
    admin_env, read_env = AdminConfig().token_env, ReadConfig().token_env
    url = args.url or os.environ.get("DEPLOYER_URL")
    explicit = bool(args.config or os.environ.get("DEPLOYER_CONFIG"))
    if not explicit and not path.exists():
        url = url or f"http://{ServerConfig().host}:{ServerConfig().port}"
    elif not url or explicit:
        config = load_config(path, os.environ, require_secrets=False)
        admin_env, read_env = config.admin.token_env, config.read.token_env
        host = "127.0.0.1" if config.server.host in ("0.0.0.0", "::") else config.server.host
        url = url or f"http://{host}:{config.server.port}"
    return DeployerClient(
        url,
        os.environ.get(admin_env, ""),
        admin_env,
        read_token=os.environ.get(read_env, ""),
        read_token_env=read_env,
    )


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def status(args: argparse.Namespace) -> int:
    found = connect(args).status()
    if args.json:
        print_json(found)
    else:
        sys.stdout.write(console.status_table(found))
    return 0


def history(args: argparse.Namespace) -> int:
    found = connect(args).history(args.service, args.limit)
    if args.json:
        print_json(found)
    else:
        sys.stdout.write(console.history_table(found))
    return 0


def deploy(args: argparse.Namespace) -> int:
    client = connect(args)
    return report(client, client.deploy(args.service, args.tag), args)


def rollback(args: argparse.Namespace) -> int:
    client = connect(args)
    return report(client, client.rollback(args.service, args.to), args)


def report(client: DeployerClient, queued: dict[str, Any], args: argparse.Namespace) -> int:
    """Print the queued deployment, or with --wait follow it; exit 0 only when it succeeded."""
    if not args.wait:
        if args.json:
            print_json(queued)
        else:
            sys.stdout.write(
                f"deployment {queued['id']} of {queued['service']} queued; follow it with "
                f"`deployer history {queued['service']}` or {client.base_url}/deployments/"
                f"{queued['id']}\n"
            )
        return 0
    progress = console.Progress()

    def show(current: dict[str, Any]) -> None:
        if not args.json:
            for line in progress.lines(current):
                sys.stdout.write(line + "\n")
            sys.stdout.flush()

    final = client.follow(queued["id"], show)
    if args.json:
        print_json(final)
    else:
        sys.stdout.write(console.outcome(final))
    return 0 if final["state"] in ("succeeded", "skipped") else EXIT_FAILURE


def adopt(args: argparse.Namespace) -> int:
    taken = connect(args).adopt(args.service, args.container, args.port)
    if args.json:
        print_json(taken)
    else:
        sys.stdout.write(
            f"{args.service} is now served by {taken['container']}; the next push replaces it "
            f"(deployment {taken['id']})\n"
        )
    return 0


COMMANDS = {
    "serve": serve,
    "check-config": check_config,
    "render-nginx": render_nginx,
    "demo": demo,
    "status": status,
    "history": history,
    "deploy": deploy,
    "rollback": rollback,
    "adopt": adopt,
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
