"""A local Sentinel group for `slotless demo --mode sentinel` and the integration tests.

One primary, its replicas and the sentinels that watch it, as redis-server child processes
on free loopback ports under a temp dir (proxy/localcluster.py's RedisProcess), and the
failovers tests drive. Synchronous and blocking, as localcluster is; never on the data path.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from proxy.localcluster import (
    PortInUseError,
    RedisProcess,
    RedisReplyError,
    command,
    find_redis_server,
    pick_ports,
)


class SentinelProcess(RedisProcess):
    """`redis-server sentinel.conf --sentinel`, monitoring `master_name` at `primary`."""

    def __init__(
        self,
        port: int,
        dir: Path,
        master_name: str,
        primary: str,
        quorum: int,
        down_after_ms: int,
        failover_timeout_ms: int,
    ) -> None:
        super().__init__(port, dir)
        self.master_name = master_name
        self.primary = primary
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    def argv(self) -> list[str]:
        # Sentinel rewrites its config file (the known replicas and sentinels): a file of its own.
        conf = self.dir / "sentinel.conf"
        if not conf.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            host, _, port = self.primary.rpartition(":")
            name = self.master_name
            conf.write_text(
                f"bind {self.host}\nport {self.port}\ndir {self.dir}\n"
                f"logfile {self.dir / 'redis.log'}\nprotected-mode no\n"
                f"sentinel monitor {name} {host} {port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {name} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {name} 2\n"
            )
        return [find_redis_server(), str(conf), "--sentinel"]


class SentinelGroup:
    """A primary, `replicas` replicas and `sentinels` sentinels; stop() (or `with`) ends all.

    `sentinels=False` at start() leaves the sentinels down (start_sentinels() later): their
    ports are picked anyway, so a proxy can be pointed at them first.
    """

    def __init__(
        self,
        replicas: int = 2,
        sentinels: int = 3,
        master_name: str = "mymaster",
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        base_dir: Path | None = None,
    ) -> None:
        self.master_name = master_name
        self.owned_dir = None if base_dir else Path(tempfile.mkdtemp(prefix="slotless-sentinel-"))
        base = base_dir or self.owned_dir
        assert base is not None
        ports = pick_ports(1 + replicas + sentinels)
        self.nodes = [RedisProcess(p, base / f"node-{p}") for p in ports[: 1 + replicas]]
        primary = self.nodes[0].addr
        quorum = sentinels // 2 + 1
        self.sentinels = [
            SentinelProcess(
                p, base / f"sentinel-{p}", master_name, primary, quorum, down_after_ms,
                failover_timeout_ms,
            )
            for p in ports[1 + replicas :]
        ]  # fmt: skip
        atexit.register(self.stop)

    @property
    def sentinel_addrs(self) -> list[str]:
        return [s.addr for s in self.sentinels]

    def start(self, sentinels: bool = True, timeout: float = 30.0) -> None:
        primary = self.nodes[0]
        for node in self.nodes:
            if node is not primary:
                host, _, port = primary.addr.rpartition(":")
                node.extra_args = ("--replicaof", host, port)
            try:
                node.start()
            except PortInUseError:
                self.stop()
                raise
        for node in self.nodes[1:]:
            _wait_until(lambda n=node: _linked(n.addr), f"{node.addr} to sync", timeout)  # type: ignore[misc]
        if sentinels:
            self.start_sentinels(timeout)

    def start_sentinels(self, timeout: float = 30.0) -> None:
        for sentinel in self.sentinels:
            sentinel.start()
        self.wait_stable(timeout)

    def wait_stable(self, timeout: float = 30.0) -> None:
        """Every running sentinel names the same primary, which says it is one, and sees the
        other sentinels and every running replica."""
        _wait_until(self.instability, "the sentinel group to settle", timeout)

    def instability(self) -> str | None:
        live = [s for s in self.sentinels if s.is_running()]
        answers = {self.primary_of(s.addr) for s in live}
        if len(answers) != 1 or None in answers:
            return f"the sentinels name {answers}"
        primary = answers.pop()
        assert primary is not None
        if _role(primary) != b"master":
            return f"{primary} is not a master yet"
        replicas = [n.addr for n in self.nodes if n.is_running() and n.addr != primary]
        for sentinel in live:
            known = self._replicas_seen(sentinel.addr)
            if not set(replicas) <= known:
                return f"{sentinel.addr} sees replicas {sorted(known)}, not {replicas}"
            others = command(sentinel.addr, "SENTINEL", "SENTINELS", self.master_name)
            if not isinstance(others, list) or len(others) < len(live) - 1:
                return f"{sentinel.addr} does not see the other sentinels yet"
        for addr in replicas:
            if _linked(addr) is not None or _master_of(addr) != primary:
                return f"{addr} is not a synced replica of {primary}"
        return None

    def _replicas_seen(self, sentinel: str) -> set[str]:
        reply = command(sentinel, "SENTINEL", "REPLICAS", self.master_name)
        seen = set()
        for entry in reply if isinstance(reply, list) else []:
            fields = dict(zip(entry[::2], entry[1::2], strict=False))
            flags = fields.get(b"flags", b"").split(b",")
            if b"s_down" not in flags and b"disconnected" not in flags:
                seen.add(f"{fields[b'ip'].decode()}:{fields[b'port'].decode()}")
        return seen

    def primary_of(self, sentinel: str) -> str | None:
        reply = command(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        if not isinstance(reply, list) or len(reply) != 2:
            return None
        return f"{reply[0].decode()}:{reply[1].decode()}"

    @property
    def primary(self) -> str:
        for sentinel in self.sentinels:
            if sentinel.is_running():
                addr = self.primary_of(sentinel.addr)
                if addr is not None:
                    return addr
        return self.nodes[0].addr

    def node(self, addr: str) -> RedisProcess:
        return next(n for n in self.nodes if n.addr == addr)

    def failover(self, timeout: float = 30.0) -> str:
        """SENTINEL FAILOVER (graceful: the primary is up); returns the new primary once
        every sentinel names it and the group has settled again."""
        old = self.primary
        reply = command(self.sentinels[0].addr, "SENTINEL", "FAILOVER", self.master_name)
        if isinstance(reply, RedisReplyError):
            raise RuntimeError(f"SENTINEL FAILOVER: {reply}")
        return self.wait_new_primary(old, timeout)

    def kill_primary(self) -> str:
        """SIGKILL the primary; returns its address (wait_new_primary() waits for the rest)."""
        old = self.primary
        self.node(old).kill()
        return old

    def wait_new_primary(self, old: str, timeout: float = 30.0) -> str:
        def moved() -> str | None:
            live = [s for s in self.sentinels if s.is_running()]
            answers = {self.primary_of(s.addr) for s in live}
            if answers == {old} or len(answers) != 1:
                return f"the sentinels name {answers}"
            new = answers.pop()
            return None if new is not None and _role(new) == b"master" else f"{new} not master"

        _wait_until(moved, f"a new primary instead of {old}", timeout)
        return self.primary

    def stop(self) -> None:
        atexit.unregister(self.stop)
        for proc in [*self.sentinels, *self.nodes]:
            proc.stop()
        if self.owned_dir is not None:
            shutil.rmtree(self.owned_dir, ignore_errors=True)

    def __enter__(self) -> SentinelGroup:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


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


def _field(info: str, name: str) -> str | None:
    for line in info.splitlines():
        key, sep, value = line.partition(":")
        if sep and key == name:
            return value.strip()
    return None


def _role(addr: str) -> bytes | None:
    try:
        reply = command(addr, "ROLE", timeout=1.0)
    except OSError:
        return None
    return reply[0] if isinstance(reply, list) and reply else None


def _master_of(addr: str) -> str | None:
    info = command(addr, "INFO", "replication")
    if not isinstance(info, bytes):
        return None
    text = info.decode()
    host, port = _field(text, "master_host"), _field(text, "master_port")
    return f"{host}:{port}" if host and port else None


def _linked(addr: str) -> str | None:
    info = command(addr, "INFO", "replication")
    if isinstance(info, bytes) and b"master_link_status:up" in info:
        return None
    return f"{addr}: replication link not up"


def rename_group(group: SentinelGroup, name: str) -> None:
    """Make every sentinel monitor the group's primary as `name` instead (SENTINEL REMOVE,
    then SENTINEL MONITOR): what a renamed group looks like to slotless."""
    primary = group.primary
    host, _, port = primary.rpartition(":")
    quorum = len(group.sentinels) // 2 + 1
    for sentinel in group.sentinels:
        for args in (
            ("SENTINEL", "REMOVE", group.master_name),
            ("SENTINEL", "MONITOR", name, host, port, quorum),
        ):
            reply = command(sentinel.addr, *args)
            if isinstance(reply, RedisReplyError):
                raise RuntimeError(f"{sentinel.addr}: {' '.join(map(str, args))}: {reply}")
    group.master_name = name
