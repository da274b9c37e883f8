"""proxy.cli: --check, config errors (exit 2, one line, no traceback), run and demo wiring."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import structlog

from conf import Config, LogConfig
from proxy.cli import main
from routing import accel

ROOT = Path(__file__).resolve().parents[3]
GOOD = """\
listen: "127.0.0.1:6380"
upstream:
  mode: cluster
  nodes: ["127.0.0.1:7000", "127.0.0.1:7001"]
"""
BAD = """\
upstream:
  nodes: ["127.0.0.1:7000", "nonsense"]
"""


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "slotless.yaml"
    path.write_text(GOOD)
    return path


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    return path


def test_check_ok(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check", str(good)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{good}: OK (mode cluster, 2 nodes, listen 127.0.0.1:6380)\n"
    assert err == ""


def test_check_singular_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "one.yaml"
    path.write_text("upstream: {mode: STANDALONE, nodes: ['[::1]:6379']}\nlisten: '[::1]:7777'")
    assert main(["--check", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: OK (mode standalone, 1 node, listen [::1]:7777)\n"


@pytest.mark.parametrize("flag", ["--check", "--config"])
def test_config_error_exits_2_with_one_line(
    flag: str, bad: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([flag, str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f'{bad}: upstream.nodes[1]: expected "host:port", got "nonsense"\n'


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.yaml"
    assert main(["--check", str(missing)]) == 2
    assert (
        capsys.readouterr().err
        == f"{missing}: cannot read config file: No such file or directory\n"
    )


def _python_m_proxy(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_python_m_proxy_config_error_has_no_traceback(bad: Path) -> None:
    result = _python_m_proxy("--config", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f'{bad}: upstream.nodes[1]: expected "host:port", got "nonsense"'
    ]


def test_python_m_proxy_check(good: Path) -> None:
    result = _python_m_proxy("--check", str(good))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"{good}: OK (mode cluster")


@pytest.mark.parametrize(
    "argv", [[], ["--config", "a.yaml", "--check", "b.yaml"], ["--log-level", "loud"]]
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: slotless" in capsys.readouterr().err


def _fake_module(monkeypatch: pytest.MonkeyPatch, name: str, **attrs: Any) -> None:
    module = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)


def test_config_runs_server_with_log_overrides(good: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr("proxy.logs.configure_logging", lambda cfg: seen.setdefault("log", cfg))
    _fake_module(
        monkeypatch, "proxy.server", run=lambda config: seen.setdefault("run", config) and 7
    )
    assert main(["--config", str(good), "--log-level", "debug", "--log-format", "json"]) == 7
    config = seen["run"]
    assert isinstance(config, Config)
    assert config.source == str(good)
    assert config.log == seen["log"] == LogConfig(level="debug", format="json")


def test_demo_passes_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def run_demo(**kwargs: Any) -> int:
        calls.append(kwargs)
        return 0

    _fake_module(monkeypatch, "proxy.demo", run_demo=run_demo)
    assert main(["demo"]) == 0
    assert main(["--log-format", "json", "demo", "--port", "7000", "--primaries", "4"]) == 0
    assert main(["demo", "--replicas", "0", "--log-format", "json"]) == 0
    assert main(["demo", "--mode", "sentinel"]) == 0
    cluster = {"mode": "cluster"}
    assert calls == [
        {**cluster, "port": 6380, "primaries": 3, "replicas": 1, "log_format": None},
        {**cluster, "port": 7000, "primaries": 4, "replicas": 1, "log_format": "json"},
        {**cluster, "port": 6380, "primaries": 3, "replicas": 0, "log_format": "json"},
        {"mode": "sentinel", "port": 6380, "primaries": 3, "replicas": 1, "log_format": None},
    ]


# --- which hot path runs (issue 13) ---------------------------------------------------------


@pytest.mark.parametrize("hot_path", ["compiled", "pure"])
def test_version_says_the_hot_path(
    hot_path: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(accel, "HOT_PATH", hot_path)
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    version = metadata.version("slotless")
    assert capsys.readouterr().out == f"slotless {version} (hot path: {hot_path})\n"


def test_python_m_proxy_version_with_slotless_pure() -> None:
    result = _python_m_proxy("--version", env={"SLOTLESS_PURE": "1"})
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.endswith(" (hot path: pure)\n")


@pytest.mark.parametrize(
    ("not_built", "warnings"), [(True, 1), (False, 0)], ids=["not-built", "compiled-or-disabled"]
)
def test_one_warning_at_start_only_when_not_built(
    not_built: bool, warnings: int, good: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accel, "NOT_BUILT", not_built)
    monkeypatch.setattr(accel, "HOT_PATH_REASON", "extension not built (routing.route)")
    monkeypatch.setattr("proxy.logs.configure_logging", lambda cfg: None)
    _fake_module(monkeypatch, "proxy.server", run=lambda config: 0)
    _fake_module(monkeypatch, "proxy.demo", run_demo=lambda **kwargs: 0)
    for argv in (["--config", str(good)], ["demo"]):
        with structlog.testing.capture_logs() as logs:
            assert main(argv) == 0
        assert [e for e in logs if e["log_level"] == "warning"] == [
            {
                "event": "hot_path_not_compiled",
                "log_level": "warning",
                "hot_path": accel.HOT_PATH,
                "reason": "extension not built (routing.route)",
                "fix": "pip install again with gcc and the Python headers (python3-dev) present",
            }
        ][:warnings]
