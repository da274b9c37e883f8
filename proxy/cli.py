"""The `slotless` command line: run the proxy, check a config file, or start a demo.

Only argument handling lives here. A bad config prints its one-line `ConfigError`
to stderr and exits 2, never with a traceback. The server and the demo are
imported lazily, so `--check` works without starting (or importing) anything else.
`--version` and the start-up warning say which hot path runs (routing/accel.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Final

from conf import Config, ConfigError, load_config
from routing import accel

EXIT_CONFIG_ERROR: Final = 2
_LEVELS: Final = ("debug", "info", "warning", "error")
_FORMATS: Final = ("console", "json")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slotless",
        description="A transparent Redis proxy: one standalone-looking endpoint "
        "in front of a Redis Cluster or a single Redis.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="FILE", help="run the proxy with this YAML config")
    source.add_argument("--check", metavar="FILE", help="validate a YAML config and exit")
    _add_log_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="start a local Redis Cluster and a proxy in front of it"
    )
    demo.add_argument("--port", type=int, default=6380, help="proxy port (default: 6380)")
    demo.add_argument(
        "--mode",
        choices=("cluster", "sentinel"),
        default="cluster",
        help="cluster (default) or sentinel: a primary, 2 replicas and 3 sentinels",
    )
    demo.add_argument("--primaries", type=int, default=3, help="primary nodes (default: 3)")
    demo.add_argument("--replicas", type=int, default=1, help="replicas per primary (default: 1)")
    # Its own dest: a subparser default would overwrite "slotless --log-format json demo".
    demo.add_argument("--log-format", choices=_FORMATS, dest="demo_log_format")
    return parser


def version_text() -> str:
    """`slotless 0.1.0 (hot path: compiled)`: what `--version` prints."""
    try:
        version = metadata.version("slotless")
    except metadata.PackageNotFoundError:
        version = "0.0.0"
    return f"slotless {version} (hot path: {accel.HOT_PATH})"


def warn_if_not_compiled() -> None:
    """One warning at start when the extension is not built (none for SLOTLESS_PURE=1)."""
    if accel.NOT_BUILT:
        import structlog

        structlog.get_logger("slotless").warning(
            "hot_path_not_compiled",
            hot_path=accel.HOT_PATH,
            reason=accel.HOT_PATH_REASON,
            fix="pip install again with gcc and the Python headers (python3-dev) present",
        )


def _add_log_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", choices=_LEVELS, help="override log.level")
    parser.add_argument("--log-format", choices=_FORMATS, help="override log.format")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `slotless` console script and of `python -m proxy`."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.config or args.check:
            parser.error("demo takes no --config or --check")
        return _demo(args)
    if args.check:
        return _check(args.check)
    if args.config:
        return _run(args.config, args.log_level, args.log_format)
    parser.error("one of --config FILE, --check FILE or demo is required")


def _check(path: str) -> int:
    try:
        config = load_config(path)
    except ConfigError as e:
        return _config_error(e)
    upstream = config.upstream
    nodes = f"{len(upstream.nodes)} node{'s' if len(upstream.nodes) != 1 else ''}"
    sys.stdout.write(f"{path}: OK (mode {upstream.mode}, {nodes}, listen {config.listen})\n")
    return 0


def _run(path: str, log_level: str | None, log_format: str | None) -> int:
    try:
        config = _with_log_overrides(load_config(path), log_level, log_format)
    except ConfigError as e:
        return _config_error(e)
    from proxy.logs import configure_logging
    from proxy.server import run

    configure_logging(config.log)
    warn_if_not_compiled()
    try:
        return run(config)
    except KeyboardInterrupt:
        return 130


def _with_log_overrides(config: Config, level: str | None, fmt: str | None) -> Config:
    log = config.log
    if level is not None:
        log = dataclasses.replace(log, level=level)  # type: ignore[arg-type]  # argparse choices
    if fmt is not None:
        log = dataclasses.replace(log, format=fmt)  # type: ignore[arg-type]  # argparse choices
    return dataclasses.replace(config, log=log)


def _demo(args: argparse.Namespace) -> int:
    from proxy.demo import run_demo

    warn_if_not_compiled()
    try:
        return run_demo(
            port=args.port,
            mode=args.mode,
            primaries=args.primaries,
            replicas=args.replicas,
            log_format=args.demo_log_format or args.log_format,
        )
    except KeyboardInterrupt:
        return 130


def _config_error(error: ConfigError) -> int:
    sys.stderr.write(f"{error}\n")
    return EXIT_CONFIG_ERROR
