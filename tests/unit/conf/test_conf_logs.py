"""proxy.logs: JSON lines with event/level/timestamp, level filtering, stdlib routing."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import structlog

from conf import LogConfig
from proxy.logs import configure_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines() -> None:
    stream = io.StringIO()
    configure_logging(LogConfig(level="info", format="json"), stream=stream)
    log = structlog.get_logger()
    log.debug("filtered_out")
    log.info("upstream_connected", node="127.0.0.1:7000")
    logging.getLogger("asyncio").warning("Executing %s took %.3f seconds", "<Task>", 0.2)
    logging.getLogger("asyncio").debug("filtered out too")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(r["event"], r["level"]) for r in records] == [
        ("upstream_connected", "info"),
        ("Executing <Task> took 0.200 seconds", "warning"),
    ]
    assert records[0]["node"] == "127.0.0.1:7000"
    assert records[1]["logger"] == "asyncio"
    for record in records:
        stamp = datetime.fromisoformat(record["timestamp"])
        assert stamp.utcoffset() == timedelta(0)


def test_json_exception_stays_on_one_line() -> None:
    stream = io.StringIO()
    configure_logging(LogConfig(format="json"), stream=stream)
    try:
        raise ValueError("boom")
    except ValueError:
        structlog.get_logger().exception("session_failed")
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "error"
    assert "ValueError: boom" in record["exception"]


def test_console_has_no_colors_when_not_a_tty() -> None:
    stream = io.StringIO()
    configure_logging(LogConfig(level="debug", format="console"), stream=stream)
    structlog.get_logger().debug("slotmap_refreshed", shards=3)
    out = stream.getvalue()
    assert "slotmap_refreshed" in out
    assert "shards=3" in out
    assert "\x1b[" not in out


def test_reconfiguring_replaces_our_root_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(LogConfig(format="json"), stream=first)
    configure_logging(LogConfig(format="json", level="error"), stream=second)
    logging.getLogger("asyncio").error("only once")
    logging.getLogger("asyncio").warning("below error")
    assert first.getvalue() == ""
    assert [json.loads(line)["event"] for line in second.getvalue().splitlines()] == ["only once"]
