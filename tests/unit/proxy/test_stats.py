"""proxy/stats.py: bounded command labels, the latency histogram, the slow log switch."""

from __future__ import annotations

import pytest

from proxy.admin import _request_line
from proxy.metrics import metric_families
from proxy.stats import (
    MAX_NAMES,
    SAMPLE_EVERY,
    Figures,
    Histogram,
    Stats,
    command_group,
    command_label,
)
from proxy.topology import bundled_command_table
from routing.route import count_names

TABLE = bundled_command_table()


@pytest.mark.parametrize(
    ("name", "label", "group"),
    [(b"GET", "get", "string"), (b"hgetall", "hgetall", "hash"), (b"nosuch", "unknown", "other")],
)
def test_labels_come_from_the_table(name: bytes, label: str, group: str) -> None:
    assert command_label(TABLE, name) == label
    assert command_group(TABLE, name) == group


def test_count_names_counts_runs_and_mixes() -> None:
    counts = {b"GET": 2}
    batch = [[b"GET", b"a"]] * 3 + [[b"SET", b"a", b"1"], [b"GET", b"b"], [b"get", b"c"]]
    assert count_names(batch, counts) == 3
    assert counts == {b"GET": 6, b"SET": 1, b"get": 1}
    assert count_names([], counts) == 3 and counts == {b"GET": 6, b"SET": 1, b"get": 1}


def test_fold_bounds_the_names() -> None:
    stats = Stats()
    junk = [[b"junk%d" % i] for i in range(MAX_NAMES + 10)]
    assert count_names(junk, stats.commands) == MAX_NAMES + 10
    assert count_names([[b"GET", b"k"], [b"get", b"k"], [b"GET", b"j"]], stats.commands) == (
        MAX_NAMES + 12
    )
    stats.errors[b"Get"] += 1
    stats.fold(TABLE)
    assert stats.commands == {b"unknown": MAX_NAMES + 10, b"get": 3}
    assert stats.errors == {b"get": 1}


def test_histogram_buckets() -> None:
    histogram = Histogram()
    for seconds in (0.00005, 0.0001, 0.003, 10.0):
        histogram.observe(seconds)
    assert histogram.counts[0] == 2  # le 0.0001 includes its bound
    assert histogram.counts[-1] == 1  # +Inf
    assert sum(histogram.counts) == 4
    assert histogram.total == pytest.approx(10.00315)


def test_the_slow_log_times_every_batch() -> None:
    stats = Stats()
    assert stats.sample_every == SAMPLE_EVERY and not stats.slowlog_threshold
    stats.configure(10)
    assert stats.sample_every == 1 and stats.slowlog_threshold == pytest.approx(0.01)
    stats.configure(0)
    assert stats.sample_every == SAMPLE_EVERY


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"GET /metrics HTTP/1.1\r\n\r\n", ("GET", "/metrics")),
        (b"HEAD /readyz?verbose=1 HTTP/1.0\r\nHost: x\r\n\r\n", ("HEAD", "/readyz")),
        (b"GET /metrics\r\n\r\n", ("", None)),
        (b"GET  /metrics HTTP/1.1\r\n\r\n", ("", None)),
        (b"GET http://x/metrics HTTP/1.1\r\n\r\n", ("", None)),
        (b"GET /metrics SPDY/3\r\n\r\n", ("", None)),
        (b"G\xffT /metrics HTTP/1.1\r\n\r\n", ("", None)),
    ],
)
def test_request_line(head: bytes, expected: tuple[str, str | None]) -> None:
    assert _request_line(head) == expected


def test_histogram_family_is_cumulative() -> None:
    stats = Stats()
    stats.timed(TABLE, b"GET", "n:1", 0.0002)
    stats.timed(TABLE, b"GET", "n:1", 0.02)
    figures = Figures(
        hot_path="pure",
        downstream_cx_active=0,
        downstream_cx_total=0,
        downstream_cx_rejected=0,
        rx_bytes=0,
        tx_bytes=0,
        pending_replies=0,
        paused_clients=0,
        commands={},
        redirects=dict(stats.redirects),
        nodes={},
        slot_map_refreshes=0,
        slots_covered=0,
        latency={g: (list(h.counts), h.total) for g, h in stats.latency.items()},
    )
    (family,) = [f for f in metric_families(figures) if f.type == "histogram"]
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}
    assert buckets["0.00025"] == 1 and buckets["0.025"] == 2 and buckets["+Inf"] == 2
