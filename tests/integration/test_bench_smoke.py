"""The benchmark (tests/bench/run.py) end to end in --quick mode: it runs, and its report is whole.

Only the shape of the report is checked. Timing ratios are not: a quick run on a busy CI machine
says nothing about performance, and the real numbers come from a full run by hand. The run asks
for both hot paths (`--paths compiled,pure`), so the second proxy and its target are exercised
whether or not the compiled extension is built (without it both proxies run the same code).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "tests" / "bench" / "run.py"
WORKLOADS = ("SET -P1", "GET -P1", "SET -P16", "GET -P16", "MSET x10", "MGET x10")
TARGETS = ("direct", "slotless", "slotless-pure")
# workload, target, ops/s, p50, p99, [ratio, p99 ratio], proxy us, its system share, redis us
# (then the goal).
ROW = re.compile(
    r"^(?P<workload>\S+ \S+)\s+(?P<target>direct|slotless|slotless-pure)\s+(?P<ops>[\d,]+)"
    r"\s+[\d.]+\s+[\d.]+\s+(?:(?P<ratio>[\d.]+)\s+(?:[\d.]+|-)\s+)?"
    r"(?P<proxy_cpu>[\d.]+|-)\s+(?P<sys>\d+%|-)\s+(?P<redis_cpu>[\d.]+)(?:\s|$)"
)
HOT_PATH = re.compile(r"^\s+(?P<target>slotless|slotless-pure)\s+hot_path (?P<path>\S+)")
GMEAN = re.compile(r"^geometric mean of ops/s ratios .*: (?P<value>\d+\.\d+)$")


def test_quick_run_reports_every_workload_for_every_target() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--paths", "compiled,pure"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    lines = done.stdout.strip().splitlines()
    rows = {}
    for line in lines:
        if m := ROW.match(line):
            rows[(m["workload"], m["target"])] = m
    expected = {(w, t) for w in WORKLOADS for t in TARGETS}
    assert set(rows) == expected, done.stdout
    assert all(int(m["ops"].replace(",", "")) > 0 for m in rows.values()), done.stdout
    for (_, target), m in rows.items():
        if target == "direct":
            assert m["proxy_cpu"] == "-" and m["sys"] == "-" and m["ratio"] is None, m.string
        else:
            # Every slotless run makes the proxy work, so its CPU per request is above zero.
            assert m["ratio"] is not None and float(m["proxy_cpu"]) > 0, m.string
            assert m["sys"] == "-" or 0 <= int(m["sys"][:-1]) <= 100, m.string
    hot_paths = {m["target"]: m["path"] for line in lines if (m := HOT_PATH.match(line))}
    assert set(hot_paths) == {"slotless", "slotless-pure"}, done.stdout
    assert hot_paths["slotless-pure"] in ("pure", "unknown"), done.stdout
    assert len(re.findall(r"per idle client\s+[\d,]+ bytes", done.stdout)) == 2, done.stdout
    assert re.search(r"^slotless / slotless-pure .*proxy CPU per request", done.stdout, re.M)
    last = GMEAN.match(lines[-1])
    assert last is not None, f"last line is not the geometric mean: {lines[-1]!r}"
    assert float(last["value"]) > 0
