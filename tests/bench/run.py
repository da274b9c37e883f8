"""slotless vs. a Redis Cluster, with redis-benchmark: throughput, latency, CPU and memory.

Starts a 3-primary cluster (no replicas, no persistence) and slotless in front of it on free
loopback ports (one proxy per hot path and workers count measured), measures each proxy's RSS
with idle clients, then runs each workload against the cluster directly (`--cluster`) and
through every proxy, alternating targets over several rounds, and reads the CPU time the proxy
and the cluster spent on each run. Everything it starts is stopped on the way out, on errors
and on Ctrl-C/SIGTERM too.

    .venv/bin/python tests/bench/run.py [--rounds 3] [--seconds 3] [--workers 1[,2]]
        [--paths auto|compiled|pure|compiled,pure] [--only IDS] [--idle-clients N] [--quick]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import csv
import math
import os
import platform
import resource
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Final, TextIO

ROOT: Final = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run by path: make `proxy` importable without installing
    sys.path.insert(0, str(ROOT))

from proxy.localcluster import (  # noqa: E402
    Connection,
    LocalCluster,
    RedisReplyError,
    command,
    pick_ports,
)

CLIENTS: Final = 50
KEYSPACE: Final = 100_000
VALUE_SIZE: Final = 64
MULTI_KEYS: Final = 10
IDLE_CLIENTS: Final = 10_000
QUICK_IDLE_CLIENTS: Final = 500
MEMORY_GOAL_BYTES: Final = 10 * 1024
# Issue 13's targets: ratios to the cluster reached directly, and CPU per GET at -P16.
P99_GOAL: Final = 1.2
VALUE: Final = "v" * VALUE_SIZE
DIRECT: Final = "direct"
# The hot-path contract (issue 13): with SLOTLESS_PURE=1 the proxy runs its pure-Python path,
# without it the compiled one when built; INFO's `# Proxy` section says which (`hot_path:`).
PURE_ENV: Final = "SLOTLESS_PURE"
PATHS: Final = ("compiled", "pure")


@dataclass(frozen=True, slots=True)
class Workload:
    """One row group of the report; `direct`/`proxied` are the arguments after the common ones."""

    id: str
    title: str
    pipeline: int
    direct: tuple[str, ...]
    proxied: tuple[str, ...]
    goal: float  # minimum slotless/direct ops/s ratio
    p99_goal: float | None  # maximum slotless/direct p99 ratio, if the issue sets one
    quick_requests: int
    probe_requests: int  # the calibration run, which also warms the target up
    cpu_goal: float | None = None  # maximum proxy CPU microseconds per request

    def args(self, direct: bool) -> tuple[str, ...]:
        return self.direct if direct else self.proxied


def _multi(name: str, key: str, with_values: bool) -> tuple[str, ...]:
    args = [name]
    for _ in range(MULTI_KEYS):
        args += [key, VALUE] if with_values else [key]
    return tuple(args)


# `--cluster` mode replaces "{tag}" with a hash tag of a slot on the client's node, so the direct
# target can only run a same-slot MSET/MGET (a cross-slot one fails with CROSSSLOT). Through
# slotless the keys carry no hash tag: they land in random slots and the proxy splits and merges.
_DIRECT_KEY: Final = "key:{tag}:__rand_int__"
_PROXIED_KEY: Final = "key:__rand_int__"
WORKLOADS: Final = (
    Workload("set-p1", "SET -P1", 1, ("-t", "set"), ("-t", "set"), 0.75, P99_GOAL, 3_000, 50_000),
    Workload("get-p1", "GET -P1", 1, ("-t", "get"), ("-t", "get"), 0.75, P99_GOAL, 3_000, 50_000),
    Workload("set-p16", "SET -P16", 16, ("-t", "set"), ("-t", "set"), 0.70, None, 20_000, 500_000),
    Workload(
        "get-p16", "GET -P16", 16, ("-t", "get"), ("-t", "get"), 0.70, None, 20_000, 500_000, 1.0
    ),
    Workload(
        "mset",
        "MSET x10",
        1,
        _multi("MSET", _DIRECT_KEY, True),
        _multi("MSET", _PROXIED_KEY, True),
        0.45,
        None,
        1_000,
        20_000,
    ),
    Workload(
        "mget",
        "MGET x10",
        1,
        _multi("MGET", _DIRECT_KEY, False),
        _multi("MGET", _PROXIED_KEY, False),
        0.45,
        None,
        1_000,
        20_000,
    ),
)


class BenchError(Exception):
    """Setup failed or the proxy died: the run cannot continue."""


@dataclass(frozen=True, slots=True)
class Sample:
    ops: float
    p50: float
    p99: float
    proxy_cpu: float | None = None  # microseconds of the proxy's CPU per request
    redis_cpu: float | None = None  # microseconds of the cluster's CPU per request
    proxy_sys: float | None = None  # the kernel's share of proxy_cpu (system time), 0..1


@dataclass(slots=True)
class Series:
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def median(self, attr: str) -> float | None:
        values = [v for s in self.samples if (v := getattr(s, attr)) is not None]
        return statistics.median(values) if values else None


@dataclass(slots=True)
class Memory:
    clients: int = 0
    established: int = 0
    rss_idle: int = 0
    rss_with: int = 0
    rss_after: int = 0
    error: str | None = None

    @property
    def per_client(self) -> float | None:
        if not self.established or not self.rss_with:
            return None
        return (self.rss_with - self.rss_idle) / self.established


# -- processes ------------------------------------------------------------------------------


class Proxy:
    """slotless as a subprocess in its own process group, stderr kept in a file.

    `pure` sets SLOTLESS_PURE=1 in its environment (the pure-Python hot path); otherwise the
    variable is removed, so it runs the compiled path when that is built. `hot_path` is what
    its INFO says once it has started ("unknown" when INFO has no such line).
    """

    def __init__(
        self,
        name: str,
        seeds: Sequence[str],
        workers: str,
        pure: bool,
        max_clients: int,
        tmp: Path,
        root: Path | None = None,
    ) -> None:
        self.name = name
        # Another checkout's source (--tree): its proxy/ and routing/ run, this interpreter.
        self.root = root or ROOT
        self.workers = workers
        self.pure = pure
        self.hot_path = "unknown"
        self.port = pick_ports(1)[0]
        self.config = tmp / f"{name}.yaml"
        self.log_path = tmp / f"{name}.stderr"
        nodes = ", ".join(f'"{s}"' for s in seeds)
        lines = [
            f'listen: "127.0.0.1:{self.port}"',
            f"workers: {workers}",
            "upstream:",
            "  mode: cluster",
            f"  nodes: [{nodes}]",
            "limits:",
            f"  max_clients: {max_clients}",
            "log:",
            "  level: warning",
        ]
        self.config.write_text("\n".join(lines) + "\n")
        self.argv = [sys.executable, "-m", "proxy", "--config", str(self.config)]
        self.env = {k: v for k, v in os.environ.items() if k != PURE_ENV}
        if pure:
            self.env[PURE_ENV] = "1"
        if root is not None:
            self.env["PYTHONPATH"] = str(root)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def shown_command(self) -> str:
        return (f"{PURE_ENV}=1 " if self.pure else "") + shlex.join(self.argv)

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self, timeout: float = 20.0) -> None:
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.argv,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # its own group: stop() takes any workers down too
            )
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while not self._answers_ping():
            if not self.is_running():
                raise BenchError(f"{self.name} exited at startup:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{self.name} not answering PING after {timeout}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        self.hot_path = self._read_hot_path()

    def _read_hot_path(self) -> str:
        try:
            info = command(f"127.0.0.1:{self.port}", "INFO", "proxy", timeout=5.0)
        except (OSError, RedisReplyError):
            return "unknown"
        return hot_path_of(info.decode(errors="replace") if isinstance(info, bytes) else "")

    def _answers_ping(self) -> bool:
        try:
            return command(f"127.0.0.1:{self.port}", "PING", timeout=1.0) == b"PONG"
        except OSError:
            return False

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def check_alive(self) -> None:
        if not self.is_running():
            assert self._proc is not None
            raise BenchError(
                f"{self.name} died (exit status {self._proc.returncode}):\n{self.log_tail()}"
            )

    def stop(self) -> None:
        atexit.unregister(self.stop)
        if self._proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, sig)
            try:
                self._proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):  # workers left behind by the leader
            os.killpg(self._proc.pid, signal.SIGKILL)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def hot_path_of(info: str) -> str:
    """The `hot_path:` field of an INFO text, "unknown" when it has none."""
    for line in info.splitlines():
        key, _, value = line.partition(":")
        if key == "hot_path" and value.strip():
            return value.strip()
    return "unknown"


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# -- memory ---------------------------------------------------------------------------------


def _vm_rss(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])  # the comm field may contain spaces
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def tree_rss(pid: int) -> int:
    """VmRSS of the process plus all its descendants (the workers when workers > 1)."""
    return sum(_vm_rss(p) for p in [pid, *_descendants(pid)])


def _settled_rss(pid: int, pause: float) -> int:
    time.sleep(pause)
    return tree_rss(pid)


@contextlib.contextmanager
def _idle_clients(port: int, count: int) -> Iterator[list[socket.socket]]:
    """Connect `count` sockets and PING each, so the proxy has really set every session up."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=10.0))
        for sock in socks:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        yield [s for s in socks if _read_pong(s)]
    finally:
        for sock in socks:
            sock.close()


def _read_pong(sock: socket.socket) -> bool:
    data = b""
    try:
        while not data.endswith(b"\r\n"):
            chunk = sock.recv(64)
            if not chunk:
                return False
            data += chunk
    except OSError:
        return False
    return data == b"+PONG\r\n"


def _warm_up(port: int) -> None:
    """Commands to every node, so upstream connections and buffers count as idle memory."""
    conn = Connection(f"127.0.0.1:{port}")
    try:
        for i in range(300):
            conn.call("SET", f"warm:{i}", VALUE)
            conn.call("MGET", *(f"warm:{i + j}" for j in range(MULTI_KEYS)))
    finally:
        conn.close()


def measure_memory(proxy: Proxy, clients: int) -> Memory:
    mem = Memory(clients=clients)
    _warm_up(proxy.port)
    mem.rss_idle = _settled_rss(proxy.pid, 1.0)
    try:
        with _idle_clients(proxy.port, clients) as established:
            mem.established = len(established)
            mem.rss_with = _settled_rss(proxy.pid, 1.0)
    except OSError as exc:
        mem.error = f"opening idle clients failed: {exc}"
    mem.rss_after = _settled_rss(proxy.pid, 1.0)
    if mem.established < clients and mem.error is None:
        mem.error = f"only {mem.established} of {clients} idle clients got +PONG"
    return mem


def raise_nofile(needed: int) -> int:
    """Raise RLIMIT_NOFILE (inherited by the proxy); the number of idle clients it allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 512
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return needed
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return min(needed, want - 512)


# -- CPU ------------------------------------------------------------------------------------

CLK_TCK: Final = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int | str) -> list[str] | None:
    """/proc/PID/stat from field 3 (state) on: the comm field before it may contain spaces."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()


def _cpu_ticks(fields: list[str]) -> tuple[int, int]:
    # (user, system): utime + cutime and stime + cstime (fields 14 and 16, 15 and 17) of the
    # whole thread group; the children's part counts the CPU of workers it has reaped, so a
    # worker that exits mid-run is not lost.
    return int(fields[11]) + int(fields[13]), int(fields[12]) + int(fields[14])


def group_cpu_ticks(pgid: int) -> tuple[int, int]:
    """(user, system) CPU ticks of every process in the process group (the proxy and its
    workers)."""
    user = system = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(entry.name)) and int(fields[2]) == pgid:
            u, s = _cpu_ticks(fields)
            user += u
            system += s
    return user, system


def pids_cpu_ticks(pids: Sequence[int]) -> int:
    """CPU ticks, user and system, of these processes (the cluster's redis-servers)."""
    return sum(sum(_cpu_ticks(fields)) for pid in pids if (fields := _stat_fields(pid)))


def us_per_request(ticks: int, requests: int) -> float:
    return ticks / CLK_TCK * 1e6 / requests


# -- redis-benchmark ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where redis-benchmark is pointed: the cluster (`proxy` None) or one slotless."""

    name: str
    proxy: Proxy | None = None

    @property
    def direct(self) -> bool:
        return self.proxy is None


@dataclass(frozen=True, slots=True)
class Runner:
    seeds: tuple[str, ...]
    redis_pids: tuple[int, ...]

    def argv(self, workload: Workload, target: Target, requests: int | None) -> list[str]:
        if target.proxy is None:
            host, _, port = self.seeds[0].rpartition(":")
            where = ["--cluster", "-h", host, "-p", port]
        else:
            where = ["-h", "127.0.0.1", "-p", str(target.proxy.port)]
        count = "N" if requests is None else str(requests)
        common = ["-c", str(CLIENTS), "-P", str(workload.pipeline), "-n", count]
        common += ["-r", str(KEYSPACE), "-d", str(VALUE_SIZE), "--csv"]
        return ["redis-benchmark", *where, *common, *workload.args(target.direct)]

    def run(self, workload: Workload, target: Target, requests: int, timeout: float) -> Sample:
        """One redis-benchmark process; raises BenchError with its output when it fails.

        The CPU that the target proxy's process group and the cluster spent is sampled right
        before and right after it, and divided by the requests it sent.
        """
        argv = self.argv(workload, target, requests)
        proxy_pgid = None if target.proxy is None else target.proxy.pid  # its own session
        proxy_before = group_cpu_ticks(proxy_pgid) if proxy_pgid is not None else (0, 0)
        redis_before = pids_cpu_ticks(self.redis_pids)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"redis-benchmark timed out after {timeout:.0f}s") from None
        proxy_after = group_cpu_ticks(proxy_pgid) if proxy_pgid is not None else (0, 0)
        redis_after = pids_cpu_ticks(self.redis_pids)
        rows = parse_csv(done.stdout)
        if done.returncode != 0 or len(rows) != 1:
            out = (done.stderr.strip() or done.stdout.strip()).splitlines()[-5:]
            raise BenchError(
                f"redis-benchmark exit status {done.returncode}, {len(rows)} result rows: "
                + " | ".join(out)
            )
        proxy_cpu = proxy_sys = None
        if proxy_pgid is not None:
            user = proxy_after[0] - proxy_before[0]
            system = proxy_after[1] - proxy_before[1]
            proxy_cpu = us_per_request(user + system, requests)
            proxy_sys = system / (user + system) if user + system else None
        redis_cpu = us_per_request(redis_after - redis_before, requests)
        return replace(rows[0], proxy_cpu=proxy_cpu, redis_cpu=redis_cpu, proxy_sys=proxy_sys)


def parse_csv(text: str) -> list[Sample]:
    """Rows of redis-benchmark 7 `--csv` output; banner lines (--cluster) are skipped."""
    lines = [line for line in text.splitlines() if line.startswith('"')]
    samples = []
    for row in csv.DictReader(lines):
        try:
            samples.append(
                Sample(
                    float(row["rps"]), float(row["p50_latency_ms"]), float(row["p99_latency_ms"])
                )
            )
        except (KeyError, TypeError, ValueError):
            continue
    return samples


def flushall(seeds: Sequence[str]) -> None:
    # Every run starts from an empty keyspace: see README "Reads miss on both targets".
    for addr in seeds:
        command(addr, "FLUSHALL", "SYNC", timeout=30.0)


def calibrate(runner: Runner, workload: Workload, target: Target, seconds: float) -> int:
    """-n for a run of about `seconds`, from one short probe run."""
    flushall(runner.seeds)
    probe = runner.run(workload, target, workload.probe_requests, timeout=120.0)
    return sized(workload, probe.ops, seconds)


def sized(workload: Workload, ops: float, seconds: float) -> int:
    """-n for `seconds` at `ops` per second; later rounds are sized from the previous one."""
    requests = max(CLIENTS * workload.pipeline * 10, int(ops * seconds))
    return int(math.ceil(requests / 1000) * 1000)


# -- the report -----------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    if value is not None:
        return format(value, spec)
    width = spec[: len(spec) - len(spec.lstrip("0123456789"))]  # "10,.0f" -> "10"
    return "-".rjust(int(width or 0))


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _gmean(values: Sequence[float]) -> float | None:
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else None


def report(
    out: TextIO,
    header: Sequence[str],
    workloads: Sequence[Workload],
    targets: Sequence[str],
    results: dict[tuple[str, str], Series],
    memories: Sequence[tuple[str, Memory]],
    pairs: Sequence[tuple[str, str]] = (),
) -> dict[str, float | None]:
    """Write the report; returns each slotless target's geometric mean of ops/s ratios.

    `targets` starts with "direct"; every other target is a slotless compared with it. `pairs`
    are (a, b) target names compared with each other under the table (a / b).
    """
    for line in header:
        out.write(line + "\n")
    out.write("\n")
    width = max(9, *(len(t) for t in targets))
    cols = (
        f"{'workload':<10} {'target':<{width}} {'ops/s':>10} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'ratio':>6} {'p99 ratio':>9} {'proxy us':>8} {'sys':>4} {'redis us':>8}  goal"
    )
    out.write(cols + "\n" + "-" * len(cols) + "\n")
    ratios: dict[str, list[float]] = {t: [] for t in targets[1:]}
    for w in workloads:
        direct = results[(w.id, DIRECT)]
        for target in targets:
            series = results[(w.id, target)]
            line = (
                f"{w.title:<10} {target:<{width}} {_fmt(series.median('ops'), '10,.0f')}"
                f" {_fmt(series.median('p50'), '8.3f')} {_fmt(series.median('p99'), '8.3f')}"
            )
            ops_ratio = p99_ratio = None
            if target == DIRECT:
                line += f" {'':>6} {'':>9}"
            else:
                ops_ratio = _ratio(series.median("ops"), direct.median("ops"))
                if w.pipeline == 1:
                    p99_ratio = _ratio(series.median("p99"), direct.median("p99"))
                if ops_ratio is not None:
                    ratios[target].append(ops_ratio)
                line += f" {_fmt(ops_ratio, '6.2f')} {_fmt(p99_ratio, '9.2f')}"
            line += f" {_fmt(series.median('proxy_cpu'), '8.2f')}"
            sys_share = series.median("proxy_sys")
            line += f" {sys_share * 100:3.0f}%" if sys_share is not None else f" {'-':>4}"
            line += f" {_fmt(series.median('redis_cpu'), '8.2f')}"
            if target != DIRECT:
                cpu = series.median("proxy_cpu")
                line += f"  {_goal_text(w, ops_ratio, p99_ratio, cpu)}"
            if series.errors:
                line += f"  [{len(series.errors)} failed run(s)]"
            out.write(line.rstrip() + "\n")
    out.write("\n")
    for name, memory in memories:
        _memory_report(out, name, memory)
    for a, b in pairs:
        _pair_report(out, workloads, results, a, b)
    if pairs:
        out.write("\n")
    gmeans = {}
    for target, values in ratios.items():
        gmeans[target] = gmean = _gmean(values)
        counted = f"over {len(values)} of {len(workloads)} workloads"
        out.write(
            f"geometric mean of ops/s ratios ({target}/direct, {counted}): {_fmt(gmean, '.3f')}\n"
        )
    out.flush()
    return gmeans


def _pair_report(
    out: TextIO,
    workloads: Sequence[Workload],
    results: dict[tuple[str, str], Series],
    a: str,
    b: str,
) -> None:
    """One line: target `a`'s ops/s and proxy CPU per request relative to target `b`'s."""
    ops, cpu = [], []
    for w in workloads:
        sa, sb = results[(w.id, a)], results[(w.id, b)]
        if (r := _ratio(sa.median("ops"), sb.median("ops"))) is not None and r > 0:
            ops.append(r)
        if (r := _ratio(sa.median("proxy_cpu"), sb.median("proxy_cpu"))) is not None and r > 0:
            cpu.append(r)
    out.write(
        f"{a} / {b} (geometric mean over the workloads): ops/s"
        f" {_fmt(_gmean(ops), '.2f')}x, proxy CPU per request {_fmt(_gmean(cpu), '.2f')}x\n"
    )


def _goal_text(
    w: Workload, ops_ratio: float | None, p99_ratio: float | None, cpu: float | None
) -> str:
    def mark(ok: bool | None) -> str:
        return "n/a" if ok is None else ("ok" if ok else "MISS")

    text = f"ops>={w.goal:.2f} {mark(None if ops_ratio is None else ops_ratio >= w.goal)}"
    if w.p99_goal is not None:
        ok = None if p99_ratio is None else p99_ratio <= w.p99_goal
        text += f", p99<={w.p99_goal:g}x {mark(ok)}"
    if w.cpu_goal is not None:
        ok = None if cpu is None else cpu <= w.cpu_goal
        text += f", cpu<={w.cpu_goal:g}us {mark(ok)}"
    return text


def _memory_report(out: TextIO, name: str, mem: Memory) -> None:
    mib = 1024 * 1024
    per = mem.per_client
    verdict = "n/a" if per is None else ("ok" if per <= MEMORY_GOAL_BYTES else "MISS")
    out.write(f"memory: {name} VmRSS (process + children)\n")
    out.write(f"  {'idle':<34} {mem.rss_idle / mib:10.1f} MiB\n")
    out.write(f"  {f'with {mem.established} idle clients':<34} {mem.rss_with / mib:10.1f} MiB\n")
    out.write(f"  {'after closing them':<34} {mem.rss_after / mib:10.1f} MiB\n")
    per_text = "-" if per is None else f"{per:,.0f} bytes"
    out.write(f"  {'per idle client':<34} {per_text:>14}  goal <=10 KiB {verdict}\n")
    if mem.error:
        out.write(f"  problem: {mem.error}\n")
    out.write("\n")


# -- main -----------------------------------------------------------------------------------


def _paths_arg(text: str) -> tuple[str, ...] | None:
    """--paths: "auto" (None) or a comma-separated list of hot paths."""
    if text.strip() == "auto":
        return None
    paths = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [p for p in paths if p not in PATHS]
    if unknown or not paths:
        raise argparse.ArgumentTypeError(
            f"expected auto or a comma-separated list of {', '.join(PATHS)}, got {text!r}"
        )
    return paths


def _workers_arg(text: str) -> tuple[str, ...]:
    """--workers: one `workers:` value or a comma-separated list of them (1,2 compares)."""
    values = tuple(dict.fromkeys(v.strip().lower() for v in text.split(",") if v.strip()))
    if not values or not all(v == "auto" or (v.isdigit() and int(v) >= 1) for v in values):
        raise argparse.ArgumentTypeError(
            f"expected auto, a number or a comma-separated list such as 1,2, got {text!r}"
        )
    return tuple(v if v == "auto" else str(int(v)) for v in values)


def _tree_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    root = Path(path).resolve()
    if not sep or not name or not (root / "proxy" / "__main__.py").is_file():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH of a slotless checkout, got {text!r}")
    return name, root


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per target (default 3)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per run (default 3)")
    parser.add_argument(
        "--workers",
        type=_workers_arg,
        default="1",
        metavar="N[,N...]",
        help="`workers:` of slotless (default 1); a list such as 1,2 starts one proxy per value"
        " and per hot path, as targets slotless-w1, slotless-w2, ...",
    )
    parser.add_argument(
        "--paths",
        type=_paths_arg,
        default="auto",
        metavar="PATHS",
        help="hot paths to measure, each behind its own proxy: compiled (target slotless),"
        f" pure ({PURE_ENV}=1, target slotless-pure), or both: compiled,pure. Default auto:"
        " compiled, and pure beside it when the first proxy reports hot_path:compiled",
    )
    parser.add_argument(
        "--tree",
        type=_tree_arg,
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also measure the proxy of another checkout (e.g. an older commit's worktree) as"
        " target NAME, in the same rounds; repeatable",
    )
    parser.add_argument(
        "--only",
        metavar="IDS",
        help="comma-separated workloads: " + ",".join(w.id for w in WORKLOADS),
    )
    parser.add_argument(
        "--idle-clients", type=int, default=None, help=f"default {IDLE_CLIENTS:,}; 0 skips"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 round, tiny runs, 500 idle clients"
    )
    return parser


def _select(only: str | None) -> list[Workload]:
    if not only:
        return list(WORKLOADS)
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    known = {w.id: w for w in WORKLOADS}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise SystemExit(f"unknown workload(s) {unknown}; known: {', '.join(known)}")
    return [known[w] for w in wanted]


def _progress(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _shown_path(path: str) -> str:
    """The interpreter as typed from the repo root (.venv/bin/python), else as is."""
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(ROOT))
    return path


def _header(
    args: argparse.Namespace,
    runner: Runner,
    workloads: Sequence[Workload],
    targets: Sequence[Target],
    notes: Sequence[str],
) -> list[str]:
    rounds = 1 if args.quick else args.rounds
    length = "quick (fixed -n)" if args.quick else f"~{args.seconds:g} s per run"
    width = max(9, *(len(t.name) for t in targets))
    lines = [
        "slotless benchmark: 3 primaries, no replicas, no persistence; redis-benchmark "
        + subprocess.run(["redis-benchmark", "--version"], capture_output=True, text=True)
        .stdout.strip()
        .removeprefix("redis-benchmark "),
        f"{rounds} round(s), targets alternating, {length}; medians over rounds;"
        f" {os.cpu_count()} CPUs",
        "command: " + shlex.join([_shown_path(sys.executable), *sys.argv]),
        # The interpreter's build moves the proxy's CPU per request by ~20% (README).
        f"python: {platform.python_version()} ({os.path.realpath(sys.executable)})",
        "slotless targets (hot_path as each proxy's INFO reports it):",
    ]
    for t in targets:
        if t.proxy is not None:
            env = f"{PURE_ENV}=1" if t.proxy.pure else f"{PURE_ENV} unset"
            lines.append(
                f"  {t.name:<{width}} hot_path {t.proxy.hot_path:<9}"
                f" workers {t.proxy.workers:<4} {env}"
            )
    lines += [f"note: {note}" for note in notes]
    lines.append("redis-benchmark command lines (N calibrated per workload and target):")
    for w in workloads:
        for t in targets:
            argv = runner.argv(w, t, None)
            cmd = w.args(t.direct)
            if len(cmd) > 4:  # MSET/MGET: one key (and value), not ten
                step = 2 if cmd[2] == VALUE else 1
                argv = [*argv[: -len(cmd)], *cmd[: 1 + step]]
            shown = shlex.join(argv).replace(VALUE, f"<{VALUE_SIZE} x v>")
            if len(cmd) > 4:
                shown += f" ... x{MULTI_KEYS}"
            lines.append(f"  {w.title:<9} {t.name:<{width}} {shown}")
    return lines


def _start_proxy(
    proxies: list[Proxy],
    name: str,
    seeds: Sequence[str],
    workers: str,
    pure: bool,
    max_clients: int,
    tmp: Path,
    root: Path | None = None,
) -> Proxy:
    proxy = Proxy(name, seeds, workers, pure, max_clients, tmp, root)
    proxies.append(proxy)  # before start(): stopped on the way out even if it fails to start
    _progress(f"starting {name} on 127.0.0.1:{proxy.port}: {proxy.shown_command}")
    proxy.start()
    _progress(f"{name}: hot_path {proxy.hot_path}")
    if root is not None:
        _progress(f"{name}: source from {root}")
    return proxy


def _target_name(path: str, workers: str, several_workers: bool) -> str:
    name = "slotless" if path == "compiled" else "slotless-pure"
    return f"{name}-w{workers}" if several_workers else name


def _pairs(workers: Sequence[str], paths: Sequence[str], several: bool) -> list[tuple[str, str]]:
    """Targets compared under the table: compiled / pure, then each workers count / the first."""
    pairs = []
    if "compiled" in paths and "pure" in paths:
        pairs += [
            (_target_name("compiled", w, several), _target_name("pure", w, several))
            for w in workers
        ]
    for path in paths:
        base = _target_name(path, workers[0], several)
        pairs += [(_target_name(path, w, several), base) for w in workers[1:]]
    return pairs


def _path_notes(paths: tuple[str, ...] | None, proxies: Sequence[Proxy]) -> list[str]:
    notes = []
    for proxy in proxies:
        if not proxy.pure and proxy.hot_path == "pure":
            notes.append(
                f"{proxy.name} runs the pure-Python path without {PURE_ENV}:"
                " the compiled extension is not built or did not load"
            )
    if paths is None and not any(p.pure for p in proxies):
        first = proxies[0].hot_path
        notes.append(
            f"no slotless-pure target: slotless reports hot_path {first}, not compiled"
            " (--paths compiled,pure measures both anyway)"
        )
    return notes


def bench(args: argparse.Namespace, tmp: Path) -> int:
    workloads = _select(args.only)
    rounds = 1 if args.quick else args.rounds
    wanted_idle = args.idle_clients
    if wanted_idle is None:
        wanted_idle = QUICK_IDLE_CLIENTS if args.quick else IDLE_CLIENTS
    idle = raise_nofile(wanted_idle) if wanted_idle else 0
    cluster = LocalCluster(primaries=3, replicas=0, base_dir=tmp / "cluster")
    proxies: list[Proxy] = []
    try:
        _progress("starting a 3-primary Redis Cluster ...")
        cluster.start()
        seeds = tuple(cluster.seeds)
        max_clients = max(idle, 1000) + 1000
        paths = list(args.paths or ("compiled",))
        several = len(args.workers) > 1

        def start(workers: str, path: str) -> Proxy:
            name = _target_name(path, workers, several)
            return _start_proxy(proxies, name, seeds, workers, path == "pure", max_clients, tmp)

        first = start(args.workers[0], paths[0])
        if args.paths is None and first.hot_path == "compiled":
            paths.append("pure")
        for workers in args.workers:
            for path in paths:
                if (workers, path) != (args.workers[0], paths[0]):
                    start(workers, path)
        for name, root in args.tree:
            _start_proxy(proxies, name, seeds, args.workers[0], False, max_clients, tmp, root)
        targets = [Target(DIRECT), *(Target(p.name, p) for p in proxies)]
        redis_pids = tuple(pid for node in cluster.nodes if (pid := node.pid) is not None)
        runner = Runner(seeds, redis_pids)
        memories = []
        if idle:
            for proxy in proxies:
                _progress(f"memory: opening {idle:,} idle client connections to {proxy.name} ...")
                memories.append((proxy.name, measure_memory(proxy, idle)))
                proxy.check_alive()
        results = run_rounds(runner, targets, workloads, rounds, args)
        notes = _path_notes(args.paths, proxies)
        if idle and idle < wanted_idle:
            notes.append(f"RLIMIT_NOFILE allows only {idle} idle clients")
        header = _header(args, runner, workloads, targets, notes)
        for proxy in proxies:
            _log_summary(proxy)
        pairs = _pairs(args.workers, paths, several)
        pairs += [(first.name, name) for name, _ in args.tree]
        report(sys.stdout, header, workloads, [t.name for t in targets], results, memories, pairs)
        failed = any(s.errors for s in results.values()) or any(m.error for _, m in memories)
        return 1 if failed else 0
    finally:
        for proxy in proxies:
            proxy.stop()
        cluster.stop()


def _check_alive(targets: Sequence[Target]) -> None:
    for t in targets:
        if t.proxy is not None:
            t.proxy.check_alive()


def run_rounds(
    runner: Runner,
    targets: Sequence[Target],
    workloads: Sequence[Workload],
    rounds: int,
    args: argparse.Namespace,
) -> dict[tuple[str, str], Series]:
    results = {(w.id, t.name): Series() for w in workloads for t in targets}
    requests = {}
    for w in workloads:
        for t in targets:
            key = (w.id, t.name)
            if args.quick:
                requests[key] = w.quick_requests
                continue
            try:
                requests[key] = calibrate(runner, w, t, args.seconds)
            except BenchError as exc:
                _check_alive(targets)
                results[key].errors.append(f"calibration: {exc}")
                requests[key] = w.probe_requests
            _progress(f"calibrated {w.title} {t.name}: -n {requests[key]}")
    timeout = 60.0 if args.quick else args.seconds * 10 + 60
    for r in range(rounds):
        for w in workloads:
            order = targets if r % 2 == 0 else targets[::-1]
            for t in order:
                key = (w.id, t.name)
                s = _one_run(runner, targets, w, t, requests[key], timeout, results, r + 1)
                if s is not None and not args.quick:
                    requests[key] = sized(w, s.ops, args.seconds)
    return results


def _one_run(
    runner: Runner,
    targets: Sequence[Target],
    w: Workload,
    target: Target,
    requests: int,
    timeout: float,
    results: dict[tuple[str, str], Series],
    round_no: int,
) -> Sample | None:
    flushall(runner.seeds)
    started = time.monotonic()
    series = results[(w.id, target.name)]
    try:
        s = runner.run(w, target, requests, timeout)
    except BenchError as exc:
        _check_alive(targets)
        series.errors.append(str(exc))
        _progress(f"round {round_no} {w.title} {target.name}: FAILED: {exc}")
        return None
    series.samples.append(s)
    took = time.monotonic() - started
    cpu = "" if s.proxy_cpu is None else f"proxy {s.proxy_cpu:.2f} us/req  "
    _progress(
        f"round {round_no} {w.title:<9} {target.name:<16} {s.ops:>10,.0f} ops/s"
        f"  p50 {s.p50:.3f}  p99 {s.p99:.3f} ms  {cpu}(-n {requests}, {took:.1f} s)"
    )
    return s


def _log_summary(proxy: Proxy) -> None:
    text = proxy.log_text()
    if text.strip():
        tracebacks = text.count("Traceback")
        _progress(
            f"{proxy.name} stderr ({len(text.splitlines())} lines, {tracebacks} tracebacks),"
            " tail:\n" + proxy.log_tail()
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        with tempfile.TemporaryDirectory(prefix="slotless-bench-") as tmp:
            return bench(args, Path(tmp))
    except BenchError as exc:
        _progress(f"benchmark failed: {exc}")
        return 2
    except KeyboardInterrupt:
        _progress("interrupted; everything started was stopped")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
