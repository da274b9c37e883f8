"""Topology: owns the current SlotMap and command table, and keeps them fresh.

The slot map comes from CLUSTER SLOTS of any reachable node (current nodes first, then the
configured seeds, then every node ever seen); it is replaced as a whole, never mutated.
Refreshes run periodically, after MOVED (rate-limited) and when a node connection fails.
Standalone mode's map is one node; sentinel mode's is the one primary proxy/sentinel.py
finds, and while a failover runs there is none: requests wait (`park`) for the new one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from importlib import resources
from typing import Literal

import structlog

from conf import Config
from proxy.pool import UpstreamPool
from proxy.sentinel import SentinelWatcher
from proxy.upstream import FutureWaiter
from routing import replies
from routing.commands import CommandTable, parse_command_reply
from routing.plan import Router
from routing.resp import ErrorReply, is_error, pack_command, parse_reply
from routing.slotmap import SlotMap, distinct, parse_addr

log = structlog.get_logger("slotless.topology")


def bundled_command_table() -> CommandTable:
    """The COMMAND reply of Redis 7.0 shipped with slotless, used until a node answers."""
    raw = resources.files("routing").joinpath("data/command-7.0.resp").read_bytes()
    return parse_command_reply(parse_reply(raw))


class ReadTargets:
    """The nodes one shard's reads may go to, taken in turn, skipping nodes that are down.

    `fallback`: the primary serves when every candidate is down (prefer-replica), or the
    shard has no replica at all.
    """

    __slots__ = ("_next", "candidates", "fallback", "primary")

    def __init__(self, primary: str | None, candidates: tuple[str, ...], fallback: bool) -> None:
        self.primary = primary
        self.candidates = candidates
        self.fallback = fallback
        self._next = 0

    def pick(self, pool: UpstreamPool) -> str | None:
        candidates = self.candidates
        count = len(candidates)
        for _ in range(count):
            self._next = index = (self._next + 1) % count
            if not pool.is_down(candidates[index]):
                return candidates[index]
        if self.fallback or not count:
            return self.primary
        return candidates[self._next]


_UNSERVED = ReadTargets(None, (), True)


class Topology:
    def __init__(self, config: Config, pool: UpstreamPool, loop: asyncio.AbstractEventLoop) -> None:
        self._config = config
        self._upstream = config.upstream
        self._pool = pool
        self._loop = loop
        self.mode = self._upstream.mode
        # How requests are planned: sentinel mode serves one primary as standalone mode does.
        self._plan_mode: Literal["cluster", "standalone"] = (
            "cluster" if self.mode == "cluster" else "standalone"
        )
        self.seeds = [str(a) for a in self._upstream.nodes]
        self._address_map = dict(self._upstream.address_map)
        self.known: list[str] = list(self.seeds)
        self.table = bundled_command_table()
        self.router = self._router(config)
        self.table_from_server = False
        self.server_version = "7.0.0"
        self.slotmap: SlotMap | None = (
            SlotMap.single(self.seeds[0]) if self.mode == "standalone" else None
        )
        self._primaries: tuple[str, ...] = self.slotmap.primaries if self.slotmap else ()
        # Per slot, where reads go (upstream.read_from); None: reads go to the primary.
        self.read_targets: tuple[ReadTargets, ...] | None = None
        # route_batch's read_node: set while read_targets is.
        self.read_node: Callable[[int], str | None] | None = None
        self._next_primary = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_refresh = 0.0
        self._map_listeners: list[Callable[[], None]] = []
        self.refreshes = 0
        self.redirects = 0
        # What requests get while there is no slot map: the last failure's reason included.
        self.no_map: ErrorReply = replies.NO_TOPOLOGY
        # Sentinel mode: the watcher, and the requests parked while a failover runs.
        self.sentinel: SentinelWatcher | None = None
        self._parked: list[Callable[[], None]] = []
        self._hold: asyncio.TimerHandle | None = None
        self._held_from: str | None = None
        if self.mode == "sentinel":
            self.no_map = replies.no_primary(self._upstream.master_name, "not found yet")
            self.sentinel = SentinelWatcher(self._upstream, loop, pool, self, self.remap)

    def _router(self, config: Config) -> Router:
        keyed_reads = self.mode == "sentinel" and self._upstream.read_from != "primary"
        return Router(self.table, self._plan_mode, config.deny_commands, keyed_reads)

    # --- hot-path helpers ----------------------------------------------------------------

    def reconfigure(self, config: Config) -> None:
        """A reloaded config: new seeds and deny list (the rest needs a restart)."""
        self._config = config
        self.seeds = [str(a) for a in config.upstream.nodes]
        self.known = distinct([*self.seeds, *self.known])
        self.router = self._router(config)
        if self.mode == "standalone":
            self._set_map(SlotMap.single(self.seeds[0]))
        self.request_refresh()

    def _build_read_targets(self, slotmap: SlotMap) -> None:
        read_from = self._upstream.read_from
        if read_from == "primary" or self.mode == "standalone":
            self.read_targets = None
            self.read_node = None
            return
        targets: list[ReadTargets | None] = [None] * 16384
        for shard in slotmap.shards:
            if read_from == "any":
                choice = ReadTargets(shard.primary, (shard.primary, *shard.replicas), True)
            else:
                fallback = read_from == "prefer-replica" or not shard.replicas
                choice = ReadTargets(shard.primary, shard.replicas, fallback)
            for start, end in shard.ranges:
                targets[start : end + 1] = [choice] * (end - start + 1)
        self.read_targets = tuple(t or _UNSERVED for t in targets)
        self.read_node = self._read_node

    def _read_node(self, slot: int) -> str | None:
        """Where a single-key read of `slot` goes (upstream.read_from)."""
        assert self.read_targets is not None
        return self.read_targets[slot].pick(self._pool)

    def remap(self, addr: str) -> str:
        """The reachable address of a node the cluster announced as `addr` (address_map)."""
        return self._address_map.get(addr, addr) if self._address_map else addr

    def any_primary(self) -> str | None:
        """Primaries in turn, for keyless commands."""
        primaries = self._primaries
        if not primaries:
            return None
        self._next_primary = (self._next_primary + 1) % len(primaries)
        return primaries[self._next_primary]

    def on_moved(self, slot: int, addr: str) -> None:
        self.redirects += 1
        if self.slotmap is not None:
            self._set_map(self.slotmap.with_moved(slot, addr), quiet=True)
        self.request_refresh()

    def on_map_changed(self, listener: Callable[[], None]) -> None:
        """Call `listener` whenever a slot map with another layout replaces the current one."""
        self._map_listeners.append(listener)

    def request_refresh(self) -> None:
        if self.mode == "cluster":
            self._wake.set()
        elif self.sentinel is not None:
            self.sentinel.wake()

    # --- sentinel mode: proxy/sentinel.py's PrimarySink ----------------------------------

    @property
    def primary(self) -> str | None:
        """The primary requests go to now (standalone and sentinel mode)."""
        return self.slotmap.primaries[0] if self.slotmap is not None else None

    def set_primary(self, addr: str, replicas: tuple[str, ...]) -> None:
        if self._hold is not None and addr == self._held_from:
            return  # a failover away from it runs: only its end or its abort brings it back
        old = self.primary
        self.seeds = [addr]
        self._set_map(SlotMap.single(addr, replicas), quiet=old == addr)
        self._release_parked()

    def lose_primary(self, why: str) -> None:
        self.no_map = replies.no_primary(self._upstream.master_name, why)
        if self.slotmap is not None:
            log.warning("primary_lost", primary=self.primary, reason=why)
            self._clear_map()
        if self._hold is None:
            self._release_parked()

    def hold_for_switch(self) -> None:
        """A failover started: send nothing more to the old primary; park requests until
        the new one is confirmed or upstream.switch_timeout passes."""
        if self._hold is not None:
            return
        self._held_from = self.primary
        log.info("failover_hold", primary=self._held_from)
        self.no_map = replies.failover_in_progress(self._upstream.master_name)
        self._clear_map()
        self._hold = self._loop.call_later(self._upstream.switch_timeout, self._hold_expired)

    def end_hold(self) -> None:
        """The failover was aborted: the old primary may be confirmed again."""
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None
            self._held_from = None

    def _hold_expired(self) -> None:
        self._hold = None
        self._held_from = None
        log.warning("failover_hold_expired", waited=self._upstream.switch_timeout)
        self.no_map = replies.failover_timed_out(
            self._upstream.master_name, self._upstream.switch_timeout
        )
        self._release_parked()
        self.request_refresh()

    def park(self, resend: Callable[[], None]) -> bool:
        """While a failover runs, keep `resend` for when it ends; False: none runs."""
        if self._hold is None:
            return False
        self._parked.append(resend)
        return True

    async def wait_primary(self) -> str | None:
        """The primary, waiting for the end of a failover that is running (pipes)."""
        if self.slotmap is None and self._hold is not None:
            ready: asyncio.Future[None] = self._loop.create_future()

            def wake() -> None:
                if not ready.done():
                    ready.set_result(None)

            self._parked.append(wake)
            await ready
        return self.primary

    def _release_parked(self) -> None:
        if self._hold is not None and self.slotmap is not None:
            self._hold.cancel()
            self._hold = None
            self._held_from = None
        parked, self._parked = self._parked, []
        for resend in parked:  # in arrival order: one client's requests keep their order
            resend()

    def _clear_map(self) -> None:
        self.slotmap = None
        self._primaries = ()
        self.read_targets = None
        self.read_node = None

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Load the command table and the first slot map; serve on even if no node answers."""
        if self.sentinel is not None:
            await self.sentinel.start()
        await self._load_command_table()
        if self.mode == "cluster":
            await self.refresh()
            self._task = self._loop.create_task(self._refresh_loop())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._hold is not None:
            self._hold.cancel()
        if self.sentinel is not None:
            self.sentinel.close()

    def tasks(self) -> list[asyncio.Task[None]]:
        tasks = [self._task] if self._task is not None else []
        return tasks + (self.sentinel.tasks() if self.sentinel is not None else [])

    async def _refresh_loop(self) -> None:
        interval = self._upstream.refresh_interval
        while True:
            try:
                async with asyncio.timeout(interval if self.slotmap else 1.0):
                    await self._wake.wait()
            except TimeoutError:
                pass
            gap = self._last_refresh + self._upstream.min_refresh_gap - self._loop.time()
            if gap > 0:
                await asyncio.sleep(gap)
            self._wake.clear()
            await self.refresh()
            if not self.table_from_server:
                await self._load_command_table()

    async def refresh(self) -> bool:
        """Fetch CLUSTER SLOTS from the first node that answers and install it (sentinel
        mode: ask the sentinels again; standalone mode has nothing to refresh)."""
        if self.sentinel is not None:
            return await self.sentinel.check()
        if self.mode == "standalone":
            return True
        self._last_refresh = self._loop.time()
        self.refreshes += 1
        current = self.slotmap.nodes if self.slotmap else ()
        for addr in distinct([*current, *self.seeds, *self.known]):
            raw = await self.ask(addr, [b"CLUSTER", b"SLOTS"])
            if raw is None or is_error(raw):
                continue
            slotmap = SlotMap.from_cluster_slots(parse_reply(raw), parse_addr(addr)[0], self.remap)
            if slotmap is None or not slotmap.shards:
                log.warning("cluster_slots_unusable", node=addr)
                continue
            self._set_map(slotmap)
            return True
        tried = distinct([*current, *self.seeds, *self.known])
        why = next(((a, r) for a in tried if (r := self._pool.down_reason(a)) is not None), None)
        if why is not None:
            self.no_map = replies.no_topology(*why)
        log.error(
            "topology_refresh_failed",
            tried=len(tried),
            reason=None if why is None else f"{why[0]}: {why[1]}",
        )
        return False

    def _set_map(self, slotmap: SlotMap, quiet: bool = False) -> None:
        old = self.slotmap
        if old is not None and old.same_layout(slotmap):
            return
        self.slotmap = slotmap
        self._primaries = slotmap.primaries
        self._build_read_targets(slotmap)
        self.known = distinct([*self.known, *slotmap.nodes])
        for listener in self._map_listeners:
            listener()
        if not quiet:
            log.info(
                "slot_map_updated",
                shards=slotmap.summary(),
                covered=slotmap.covered(),
                first=old is None,
            )

    async def _load_command_table(self) -> None:
        for addr in distinct([*self.seeds, *self.known]):
            raw = await self.ask(addr, [b"COMMAND"])
            if raw is None or is_error(raw):
                continue
            table = parse_command_reply(parse_reply(raw))
            if len(table) == 0:
                continue
            self.table = table
            self.table = table
            self.router = self._router(self._config)
            self.table_from_server = True
            info = await self.ask(addr, [b"INFO", b"server"])
            if info is not None and not is_error(info):
                self.server_version = _redis_version(info) or self.server_version
            log.info(
                "command_table_loaded",
                node=addr,
                commands=len(table),
                redis_version=self.server_version,
            )
            return
        log.warning("command_table_bundled", reason="no node answered COMMAND")

    async def ask(self, addr: str, args: list[bytes]) -> bytes | None:
        """One request to one node on the shared connection; None when it fails."""
        waiter = FutureWaiter(self._loop)
        self._pool.get(addr).send(pack_command(args), waiter)
        try:
            async with asyncio.timeout(self._upstream.command_timeout):
                raw = await waiter.future
        except TimeoutError:
            return None
        if raw.startswith(replies.UPSTREAM_ERROR_PREFIX):
            return None
        return raw


def _redis_version(info_raw: bytes) -> str | None:
    for line in info_raw.split(b"\r\n"):
        if line.startswith(b"redis_version:"):
            return line.split(b":", 1)[1].decode("ascii", "replace")
    return None
