"""The example configs in conf/ load, and slotless.yaml documents every default."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from conf import Address, Config, LimitsConfig, LogConfig, UpstreamConfig, load_config

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"
EXAMPLES = sorted(CONF_DIR.glob("*.yaml"))


def test_examples_exist() -> None:
    assert {p.name for p in EXAMPLES} >= {"slotless.yaml", "standalone.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_loads(path: Path) -> None:
    config = load_config(str(path), environ={})
    assert config.source == str(path)
    assert config.upstream.nodes or config.upstream.sentinels


def test_slotless_yaml_states_the_schema_defaults() -> None:
    config = load_config(str(CONF_DIR / "slotless.yaml"), environ={})
    assert config.upstream.mode == "cluster"
    assert dataclasses.replace(config.upstream, nodes=()) == UpstreamConfig()
    assert config.limits == LimitsConfig()
    assert config.log == LogConfig()
    assert config.listen == Config().listen
    assert config.workers == Config().workers
    assert config.deny_commands == Config().deny_commands
    assert config.admin == Config().admin
    assert config.slowlog_threshold_ms == Config().slowlog_threshold_ms


def test_slotless_yaml_lists_every_key() -> None:
    raw = yaml.safe_load((CONF_DIR / "slotless.yaml").read_text())
    sections = {"upstream": UpstreamConfig, "limits": LimitsConfig, "log": LogConfig}
    top = {f.name for f in dataclasses.fields(Config)} - {"source"}
    assert set(raw) == top
    for name, schema in sections.items():
        assert set(raw[name]) == {f.name for f in dataclasses.fields(schema)}, name


def test_standalone_yaml() -> None:
    config = load_config(str(CONF_DIR / "standalone.yaml"), environ={})
    assert config.upstream.mode == "standalone"
    assert config.upstream.nodes == (Address("127.0.0.1", 6379),)


def test_sentinel_yaml() -> None:
    config = load_config(str(CONF_DIR / "sentinel.yaml"), environ={})
    assert config.upstream.mode == "sentinel"
    assert config.upstream.nodes == ()
    assert config.upstream.sentinels[0] == Address("127.0.0.1", 26379)
    assert config.upstream.master_name == "mymaster"
