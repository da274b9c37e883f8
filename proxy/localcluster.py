"""Local redis-server processes for `slotless demo` and the integration tests.

Starts a standalone server or a whole Redis Cluster under a temp dir and drives it (reshard,
failover). Synchronous on purpose, and it must not import pytest or redis-py: it talks to the
servers with one blocking socket per call and hiredis.Reader. Never used on the proxy's data path.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

import hiredis

SLOT_COUNT: Final = 16384
BUS_PORT_OFFSET: Final = 10000
INSTALL_HINT: Final = (
    "redis-server not found: install it with `sudo apt-get install redis-server redis-tools`"
    " (as root: apt-get install redis-server redis-tools)"
)
_PORT_LOW: Final = 20000
_PORT_HIGH: Final = 22767
_rng = random.SystemRandom()  # tests reseed the global `random`; port picks must not repeat
# Ports stay claimed (flock on a lock file) for the life of the process that picked them: another
# cluster's nodes keep gossiping to a stopped node's address, and a new node there would get
# MEET from them and merge the two clusters. The kernel drops the locks when the process dies.
_PORT_LOCK_DIR: Final = Path(tempfile.gettempdir()) / "slotless-ports"
_claimed: dict[int, int] = {}  # port -> fd holding its lock

Arg = bytes | str | int


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """PEM files for TLS redis-servers: `port 0`, `tls-port`, and in a cluster `tls-cluster`
    and `tls-replication`. `cert` serves clients and, as a client, the bus and replication
    links, so it must name 127.0.0.1 and allow both uses (trustme's certificates do).
    auth_clients is redis.conf's tls-auth-clients (yes | no | optional)."""

    ca: str
    cert: str
    key: str
    auth_clients: str = "optional"

    def server_args(self, port: int, cluster: bool) -> list[str]:
        args = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", self.cert]
        args += ["--tls-key-file", self.key, "--tls-ca-cert-file", self.ca]
        args += ["--tls-auth-clients", self.auth_clients]
        if cluster:
            args += ["--tls-cluster", "yes", "--tls-replication", "yes"]
        return args

    def client_context(self) -> ssl.SSLContext:
        """The helpers' side: they trust the servers they started (whose certificates tests
        make expired or misnamed on purpose), and show `cert` only where it is required."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if self.auth_clients == "yes":
            context.load_cert_chain(self.cert, self.key)
        return context


# Addresses of the TLS servers this process started: every helper here dials them with TLS.
_tls_addrs: dict[str, ssl.SSLContext] = {}


class RedisReplyError(Exception):
    """An error reply (`-ERR ...`): command() returns it as a value, never raises it."""


class PortInUseError(RuntimeError):
    """redis-server could not bind its port or its cluster bus port."""


def find_redis_server() -> str:
    found = shutil.which("redis-server")
    for path in (found, "/usr/bin/redis-server", "/usr/local/bin/redis-server"):
        if path and Path(path).is_file():
            return path
    raise RuntimeError(INSTALL_HINT)


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


def _encode(args: Sequence[Arg]) -> bytes:
    # hiredis.pack_command's stub types a 1-tuple, so packing by hand keeps mypy strict honest.
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


class Connection:
    """One blocking RESP2 connection, for command sequences that need it (ASKING, MULTI)."""

    def __init__(self, addr: str, timeout: float = 5.0) -> None:
        self.addr = addr
        sock = socket.create_connection(split_addr(addr), timeout=timeout)
        context = _tls_addrs.get(addr)
        self._sock = sock if context is None else context.wrap_socket(sock)
        self._reader = hiredis.Reader(replyError=RedisReplyError)

    def call(self, *args: Arg) -> object:
        self._sock.sendall(_encode(args))
        reply = self._reader.gets()
        while reply is False:
            data = self._sock.recv(65536)
            if not data:
                raise ConnectionError(f"{self.addr} closed the connection")
            self._reader.feed(data)
            reply = self._reader.gets()
        return reply

    def close(self) -> None:
        self._sock.close()


def command(addr: str, *args: Arg, timeout: float = 5.0) -> object:
    conn = Connection(addr, timeout)
    try:
        return conn.call(*args)
    finally:
        conn.close()


def _check(addr: str, *args: Arg) -> object:
    reply = command(addr, *args)
    if isinstance(reply, RedisReplyError):
        raise RuntimeError(f"{addr}: {' '.join(map(str, args))[:200]}: {reply}")
    return reply


def _text(addr: str, *args: Arg) -> str:
    reply = _check(addr, *args)
    if not isinstance(reply, bytes):
        raise RuntimeError(f"{addr}: {args[:2]}: expected a bulk string, got {reply!r}")
    return reply.decode()


def _info_field(info: str, name: str) -> str | None:
    for line in info.splitlines():
        key, sep, value = line.partition(":")
        if sep and key == name:
            return value.strip()
    return None


def _wait_until(check: Callable[[], str | None], what: str, timeout: float) -> None:
    """Poll check() (None = done, else why not) until done or raise with the last reason."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            problem = check()
        except OSError as exc:
            problem = f"connection failed: {exc}"
        if problem is None:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}: {problem}")
        time.sleep(0.05)


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as redis-server does
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _claim(port: int) -> bool:
    if not _PORT_LOCK_DIR.is_dir():
        _PORT_LOCK_DIR.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):
            _PORT_LOCK_DIR.chmod(0o1777)  # shared by every user, like /tmp
    fd = os.open(_PORT_LOCK_DIR / f"{port}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _claimed[port] = fd
    return True


def pick_ports(count: int) -> list[int]:
    # A bus port inside the ephemeral range can be taken by any outgoing connection, at random.
    high = min(_PORT_HIGH, _ephemeral_low() - 1 - BUS_PORT_OFFSET)
    candidates = [p for p in range(_PORT_LOW, high + 1) if p not in _claimed]
    _rng.shuffle(candidates)
    picked: list[int] = []
    for port in candidates:
        if not (_port_is_free(port) and _port_is_free(port + BUS_PORT_OFFSET)):
            continue
        if _claim(port):
            picked.append(port)
            if len(picked) == count:
                return picked
    raise RuntimeError(f"no {count} free port pairs in {_PORT_LOW}..{high} (+{BUS_PORT_OFFSET})")


class RedisProcess:
    """One redis-server child process; a cluster node when bus_port is set."""

    def __init__(
        self,
        port: int,
        dir: Path,
        *,
        bus_port: int | None = None,
        node_timeout_ms: int = 2000,
        extra_args: Sequence[str] = (),
        tls: TLSFiles | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.tls = tls
        self.port = port
        self.bus_port = bus_port
        self.dir = dir.resolve()
        self.node_timeout_ms = node_timeout_ms
        self.extra_args = tuple(extra_args)
        self.owned_dir: Path | None = None  # removed by close()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"<RedisProcess {self.addr} running={self.is_running()}>"

    def argv(self) -> list[str]:
        args = [find_redis_server(), "--bind", self.host]
        if self.tls is None:
            args += ["--port", str(self.port)]
        else:
            args += self.tls.server_args(self.port, cluster=self.bus_port is not None)
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.dir)]
        args += ["--daemonize", "no", "--protected-mode", "no"]
        args += ["--logfile", str(self.dir / "redis.log"), "--enable-debug-command", "local"]
        args += ["--repl-diskless-sync-delay", "0"]  # default 5s would stall every replica sync
        if self.bus_port is not None:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            args += ["--cluster-port", str(self.bus_port)]
            args += ["--cluster-node-timeout", str(self.node_timeout_ms)]
            # Otherwise a primary that hands away its last slot silently turns into a replica.
            args += ["--cluster-allow-replica-migration", "no"]
        return args + list(self.extra_args)

    def start(self, timeout: float = 10.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def spawn(self) -> None:
        if self.is_running():
            raise RuntimeError(f"{self.addr} is already running")
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.tls is not None:
            _tls_addrs[self.addr] = self.tls.client_context()
        with (self.dir / "stdout.log").open("ab") as out:
            self._proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until OUR process answers on the port (a process_id check, not just PING)."""
        assert self._proc is not None, "spawn() first"
        pid_line = b"process_id:%d\r\n" % self._proc.pid
        deadline = time.monotonic() + timeout
        while True:
            if (status := self._proc.poll()) is not None:
                tail = self.log_tail()
                error = PortInUseError if "Address already in use" in tail else RuntimeError
                raise error(f"redis-server {self.addr} exited with {status}; log tail:\n{tail}")
            with contextlib.suppress(OSError):
                info = command(self.addr, "INFO", "server", timeout=1.0)
                if isinstance(info, bytes) and pid_line in info:
                    return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"redis-server {self.addr} not ready in {timeout}s:\n" + self.log_tail()
                )
            time.sleep(0.02)

    def log_tail(self, lines: int = 15) -> str:
        text = ""
        for name in ("stdout.log", "redis.log"):
            with contextlib.suppress(OSError):
                text += (self.dir / name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def request_stop(self) -> None:
        if not self.is_running():
            return
        try:
            reply = command(self.addr, "SHUTDOWN", "NOSAVE", "NOW", timeout=1.0)
        except OSError:
            reply = None  # the expected outcome: the server closed the connection
        if isinstance(reply, RedisReplyError | bytes) and self._proc is not None:
            self._proc.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float = 5.0) -> None:
        if self._proc is None:
            return
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def stop(self) -> None:
        self.request_stop()
        self.wait_stopped()

    def kill(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()

    def restart(self, timeout: float = 10.0) -> None:
        self.stop()
        self.start(timeout)

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        """stop(), then remove the dir if this process's helper created it."""
        atexit.unregister(self.close)
        self.stop()
        if self.owned_dir is not None:
            shutil.rmtree(self.owned_dir, ignore_errors=True)


def start_standalone(
    base_dir: Path | None = None, extra_args: Sequence[str] = (), tls: TLSFiles | None = None
) -> RedisProcess:
    """A plain (non-cluster) server; call close() when done (also done at exit)."""
    base = base_dir or Path(tempfile.mkdtemp(prefix="slotless-"))
    for attempt in range(5):
        proc = RedisProcess(pick_ports(1)[0], base / "standalone", extra_args=extra_args, tls=tls)
        proc.owned_dir = None if base_dir else base
        atexit.register(proc.close)
        try:
            proc.start()
            return proc
        except PortInUseError:
            atexit.unregister(proc.close)
            if attempt == 4:
                proc.close()
                raise
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class ClusterNode:
    """One line of CLUSTER NODES."""

    node_id: str
    addr: str
    flags: frozenset[str]
    primary_id: str | None
    slots: tuple[tuple[int, int], ...]  # inclusive ranges; migrations ([...]) left out

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "handshake", "noaddr"})


def parse_cluster_nodes(text: str, asked_host: str) -> list[ClusterNode]:
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        # ip:port@cport[,hostname]; the ip is empty while a node has not learnt its own yet.
        host, _, port = fields[1].split(",")[0].split("@")[0].rpartition(":")
        ranges = []
        for item in fields[8:]:
            if not item.startswith("["):
                first, _, last = item.partition("-")
                ranges.append((int(first), int(last or first)))
        primary = None if fields[3] == "-" else fields[3]
        flags = frozenset(fields[2].split(","))
        addr = f"{host or asked_host}:{port}"
        nodes.append(ClusterNode(fields[0], addr, flags, primary, tuple(ranges)))
    return nodes


def _slot_map(view: list[ClusterNode]) -> tuple[tuple[int, int, str], ...]:
    return tuple(sorted((a, b, n.addr) for n in view if n.is_primary for a, b in n.slots))


def _roles(view: list[ClusterNode]) -> tuple[tuple[str, str], ...]:
    """(node, its primary or "") for the healthy nodes: who replicates whom, as one node sees it."""
    addr_of = {n.node_id: n.addr for n in view}
    healthy = (n for n in view if not n.failing)
    return tuple(sorted((n.addr, addr_of.get(n.primary_id or "", "")) for n in healthy))


class Cluster:
    """Query and drive a Redis Cluster by address; LocalCluster adds the processes."""

    def __init__(self, seeds: Sequence[str]) -> None:
        self._seeds = list(seeds)

    @property
    def seeds(self) -> list[str]:
        return list(self._seeds)

    def live_addrs(self) -> list[str]:
        view = self.topology()
        return sorted({n.addr for n in view if not n.failing})

    def view(self, addr: str) -> list[ClusterNode]:
        return parse_cluster_nodes(_text(addr, "CLUSTER", "NODES"), split_addr(addr)[0])

    def topology(self) -> list[ClusterNode]:
        """CLUSTER NODES from the first seed that answers."""
        errors = []
        for addr in self.seeds:
            try:
                return self.view(addr)
            except OSError as exc:
                errors.append(f"{addr}: {exc}")
        raise RuntimeError(f"no node answered CLUSTER NODES: {errors}")

    def primaries(self) -> list[str]:
        """Live primaries, in slot order (primaries without slots last)."""
        live = [n for n in self.topology() if n.is_primary and not n.failing]
        live.sort(key=lambda n: min((a for a, _ in n.slots), default=SLOT_COUNT))
        return [n.addr for n in live]

    def replicas_of(self, primary_addr: str) -> list[str]:
        view = self.topology()
        ids = [n.node_id for n in view if n.addr == primary_addr]
        return sorted(n.addr for n in view if n.primary_id in ids and not n.failing)

    def owner_of_slot(self, slot: int) -> str:
        for first, last, addr in _slot_map(self.topology()):
            if first <= slot <= last:
                return addr
        raise LookupError(f"slot {slot} is not served by any node")

    def node_id(self, addr: str) -> str:
        return _text(addr, "CLUSTER", "MYID")

    def instability(self) -> str | None:
        """Why the cluster is not settled yet, or None when it is."""
        live = self.live_addrs()
        maps = {}
        roles = {}
        for addr in live:
            if "cluster_state:ok" not in _text(addr, "CLUSTER", "INFO"):
                return f"{addr}: cluster_state is not ok"
            view = self.view(addr)
            self._check_no_foreign_nodes(addr, view)
            unhealthy = set(live) - {n.addr for n in view if not n.failing}
            if unhealthy:
                return f"{addr} does not see {sorted(unhealthy)} as healthy"
            maps[addr] = _slot_map(view)
            roles[addr] = _roles(view)
            if not next(n for n in view if "myself" in n.flags).is_primary:
                link = _info_field(_text(addr, "INFO", "replication"), "master_link_status")
                if link != "up":
                    return f"replica {addr}: master_link_status is {link}"
        if len(set(maps.values())) > 1:
            return f"nodes disagree on the slot map: {maps}"
        if len(set(roles.values())) > 1:
            return f"nodes disagree on who replicates whom: {roles}"
        owners = next(iter(maps.values()), ())
        if sum(b - a + 1 for a, b, _ in owners) != SLOT_COUNT:
            return "not every slot is covered"
        dead = {addr for _, _, addr in owners} - set(live)
        return f"slots owned by nodes that are down: {sorted(dead)}" if dead else None

    def _check_no_foreign_nodes(self, addr: str, view: list[ClusterNode]) -> None:
        """Hook: LocalCluster raises when another cluster's node got in (it never heals)."""

    def wait_stable(self, timeout: float = 30.0) -> None:
        """Every live node: cluster_state:ok, one agreed slot map and roles, replicas linked."""
        _wait_until(self.instability, "a stable cluster", timeout)

    def begin_migration(self, slot: int, target_addr: str) -> None:
        source = self.owner_of_slot(slot)
        if source == target_addr:
            raise ValueError(f"slot {slot} is already on {target_addr}")
        _check(target_addr, "CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(source))
        _check(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(target_addr))

    def migrate_keys(self, slot: int, target_addr: str, batch: int = 100) -> int:
        """MIGRATE every key of the slot from its owner to the target; returns the count."""
        source = self.owner_of_slot(slot)
        host, port = split_addr(target_addr)
        moved = 0
        while True:
            keys = _check(source, "CLUSTER", "GETKEYSINSLOT", slot, batch)
            if not isinstance(keys, list) or not keys:
                return moved
            _check(source, "MIGRATE", host, port, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)

    def finish_migration(self, slot: int, target_addr: str, timeout: float = 30.0) -> None:
        source = self.owner_of_slot(slot)
        target_id = self.node_id(target_addr)
        # Target first, then source, so the source never redirects to a target that refuses.
        others = [p for p in self.primaries() if p not in (source, target_addr)]
        for addr in [target_addr, source, *others]:
            _check(addr, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        self.wait_stable(timeout)

    def migrate_slot(self, slot: int, target_addr: str) -> None:
        self.begin_migration(slot, target_addr)
        self.migrate_keys(slot, target_addr)
        self.finish_migration(slot, target_addr)

    def failover(self, replica_addr: str, mode: str | None = None, timeout: float = 30.0) -> None:
        """CLUSTER FAILOVER [FORCE|TAKEOVER] on the replica; wait for a stable cluster."""
        _check(replica_addr, "CLUSTER", "FAILOVER", *([mode] if mode else []))

        def promoted() -> str | None:
            role = _info_field(_text(replica_addr, "INFO", "replication"), "role")
            return None if role == "master" else f"{replica_addr} is still {role}"

        _wait_until(promoted, f"{replica_addr} to become primary", timeout)
        self.wait_stable(timeout)

    def flushall(self) -> None:
        for addr in self.primaries():
            _check(addr, "FLUSHALL")
            _check(addr, "WAIT", len(self.replicas_of(addr)), 2000)


class RunningCluster(Cluster):
    """A cluster someone else runs (SLOTLESS_TEST_CLUSTER): nothing to start or stop."""


class LocalCluster(Cluster):
    """primaries x (1 + replicas) cluster nodes on 127.0.0.1, under one temp dir."""

    def __init__(
        self,
        primaries: int = 3,
        replicas: int = 1,
        base_dir: Path | None = None,
        node_timeout_ms: int = 2000,
        extra_args: Sequence[str] = (),
        tls: TLSFiles | None = None,
    ) -> None:
        super().__init__([])
        self.tls = tls
        self.primary_count = primaries
        self.replicas_per_primary = replicas
        self.node_timeout_ms = node_timeout_ms
        self.extra_args = tuple(extra_args)
        self.nodes: list[RedisProcess] = []
        self._base_dir = base_dir
        self._owned_dir: Path | None = None

    @property
    def seeds(self) -> list[str]:
        return [n.addr for n in self.nodes]

    def live_addrs(self) -> list[str]:
        return [n.addr for n in self.nodes if n.is_running()]

    def _check_no_foreign_nodes(self, addr: str, view: list[ClusterNode]) -> None:
        foreign = {n.addr for n in view} - set(self.seeds)
        if foreign:
            raise RuntimeError(f"{addr} has merged with nodes of another cluster: {foreign}")

    def node(self, addr: str) -> RedisProcess:
        for proc in self.nodes:
            if proc.addr == addr:
                return proc
        raise KeyError(f"no local node {addr}")

    def start(self, timeout: float = 30.0) -> None:
        if self.nodes:
            raise RuntimeError("LocalCluster.start() called twice")
        if self._base_dir is None:
            self._owned_dir = Path(tempfile.mkdtemp(prefix="slotless-"))
        base = self._base_dir or self._owned_dir
        assert base is not None
        atexit.register(self.stop)
        try:
            count = self.primary_count * (1 + self.replicas_per_primary)
            for i, port in enumerate(pick_ports(count)):
                self.nodes.append(
                    RedisProcess(
                        port,
                        base / f"node-{i}",
                        bus_port=port + BUS_PORT_OFFSET,
                        node_timeout_ms=self.node_timeout_ms,
                        extra_args=self.extra_args,
                        tls=self.tls,
                    )
                )
            for proc in self.nodes:
                proc.spawn()
            for proc in self.nodes:
                self._wait_ready_or_move(proc)
            self._join()
            self.wait_stable(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready_or_move(self, proc: RedisProcess, attempts: int = 5) -> None:
        for attempt in range(attempts):
            try:
                proc.wait_ready()
                return
            except PortInUseError:
                if attempt == attempts - 1:
                    raise
            proc.port = pick_ports(1)[0]
            proc.bus_port = proc.port + BUS_PORT_OFFSET
            proc.spawn()

    def _join(self) -> None:
        primaries = self.nodes[: self.primary_count]
        for epoch, proc in enumerate(self.nodes, 1):  # distinct epochs, as redis-cli does
            _check(proc.addr, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
        for i, proc in enumerate(primaries):
            first, last = i * SLOT_COUNT // len(primaries), (i + 1) * SLOT_COUNT // len(primaries)
            _check(proc.addr, "CLUSTER", "ADDSLOTSRANGE", first, last - 1)
        hub = self.nodes[0]
        for proc in self.nodes[1:]:
            _check(proc.addr, "CLUSTER", "MEET", hub.host, hub.port, hub.bus_port or 0)

        def everyone_met() -> str | None:
            for proc in self.nodes:
                known = [n for n in self.view(proc.addr) if not n.failing]
                if len(known) < len(self.nodes):
                    return f"{proc.addr} knows {len(known)} of {len(self.nodes)} nodes"
            return None

        _wait_until(everyone_met, "the nodes to meet", 30.0)
        for i, proc in enumerate(self.nodes[self.primary_count :]):
            primary = primaries[i % len(primaries)]
            _check(proc.addr, "CLUSTER", "REPLICATE", self.node_id(primary.addr))

    def stop(self) -> None:
        """Stop every node and remove the temp dir this cluster made; safe to call twice."""
        atexit.unregister(self.stop)
        for proc in self.nodes:
            proc.request_stop()
        for proc in self.nodes:
            proc.wait_stopped()
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
