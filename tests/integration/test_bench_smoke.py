"""The benchmark (tests/bench/run.py) end to end in --quick mode: it runs, and its report is whole.

Only the shape of the report is checked. Timing ratios are not: a quick run on a busy CI machine
says nothing about performance, and the real numbers come from a full run by hand.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "tests" / "bench" / "run.py"
WORKLOADS = ("SET -P1", "GET -P1", "SET -P16", "GET -P16", "MSET x10", "MGET x10")
ROW = re.compile(r"^(?P<workload>\S+ \S+)\s+(?P<target>direct|slotless)\s+(?P<ops>[\d,]+)\s")
GMEAN = re.compile(r"^geometric mean of ops/s ratios .*: (?P<value>\d+\.\d+)$")


def test_quick_run_reports_every_workload_for_both_targets() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    lines = done.stdout.strip().splitlines()
    ops = {}
    for line in lines:
        if m := ROW.match(line):
            ops[(m["workload"], m["target"])] = int(m["ops"].replace(",", ""))
    expected = {(w, t) for w in WORKLOADS for t in ("direct", "slotless")}
    assert set(ops) == expected, done.stdout
    assert all(value > 0 for value in ops.values()), done.stdout
    assert re.search(r"per idle client\s+[\d,]+ bytes", done.stdout), done.stdout
    last = GMEAN.match(lines[-1])
    assert last is not None, f"last line is not the geometric mean: {lines[-1]!r}"
    assert float(last["value"]) > 0
