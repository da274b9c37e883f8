"""structlog setup: JSON lines for collectors, a plain console format for people.

`configure_logging` is called once at startup with the loaded `LogConfig`; it also
routes the stdlib `logging` module (asyncio's own warnings) through the same
renderer and level. Nothing else in the proxy configures logging.
"""

from __future__ import annotations

import logging
import sys
from typing import Final, TextIO

import structlog
from structlog.typing import Processor

from conf.schema import LogConfig

_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class _StdlibHandler(logging.StreamHandler[TextIO]):
    """Our root handler; its own class so a second configure_logging replaces it."""


def configure_logging(cfg: LogConfig, stream: TextIO | None = None) -> None:
    """Configure structlog and the stdlib root logger; logs go to `stream` (stderr)."""
    out = sys.stderr if stream is None else stream
    level = _LEVELS[cfg.level]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if cfg.format == "json":
        # Tracebacks become one string field, so every record stays one line.
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=_isatty(out))
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    _route_stdlib(out, level, shared, renderer)


def _route_stdlib(out: TextIO, level: int, shared: list[Processor], renderer: Processor) -> None:
    handler = _StdlibHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    # Only our previous handler goes: pytest and embedders may have their own.
    for old in [h for h in root.handlers if isinstance(h, _StdlibHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
