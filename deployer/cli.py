"""The `deployer` command: serve | check-config | render-nginx | demo."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from deployer.config import Config, load_config, resolve_config_path
from deployer.errors import ConfigError

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deployer",
        description="Continuous deployment from registry push webhooks: health-gated "
        "blue/green containers behind nginx.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check-config", help="validate the config; exit 2 listing every problem"
    )
    _add_config_option(check)
    return parser


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="YAML config (default: $DEPLOYER_CONFIG, else config/deployer.yml)",
    )


def load(args: argparse.Namespace) -> Config:
    """The validated config named by --config / $DEPLOYER_CONFIG / the default path."""
    return load_config(resolve_config_path(args.config, os.environ))


def check_config(args: argparse.Namespace) -> int:
    config = load(args)
    names = ", ".join(config.services) or "none"
    print(f"{resolve_config_path(args.config, os.environ)}: OK (services: {names})")
    return 0


COMMANDS = {"check-config": check_config}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `deployer` command."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as err:
        print(f"deployer: {err}", file=sys.stderr)
        return EXIT_CONFIG
