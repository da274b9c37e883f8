"""Sentinel mode's source of the one primary: ask the sentinels, verify, follow failovers.

`SentinelWatcher` asks every sentinel for upstream.master_name, takes the majority of those
that answer (routing/sentinel.py), confirms the winner with ROLE, and tells its `PrimarySink`
(proxy/topology.py); it listens to every sentinel's failover events and re-checks
periodically and whenever asked. It never routes or holds a client request itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, cast

import hiredis
import structlog

from conf import UpstreamConfig
from proxy.pool import UpstreamPool
from proxy.upstream import FutureWaiter
from routing.resp import ErrorReply, is_error, pack_command, parse_reply
from routing.sentinel import (
    EVENTS,
    FAILOVER_ABORT,
    FAILOVER_START,
    Answer,
    parse_event,
    parse_master_addr,
    parse_replicas,
    parse_role_is_master,
    vote_primary,
)

log = structlog.get_logger("slotless.sentinel")

_PROMOTED = frozenset((b"+failover-state-wait-promotion", b"+promoted-slave", b"+switch-master"))
_CONFIRM_POLL = 0.02  # seconds between ROLE checks of a replica being promoted


class PrimarySink(Protocol):
    """What the watcher drives (proxy/topology.py Topology)."""

    def set_primary(self, addr: str, replicas: tuple[str, ...]) -> None: ...

    def lose_primary(self, why: str) -> None: ...

    def hold_for_switch(self) -> None: ...

    def end_hold(self) -> None: ...

    @property
    def primary(self) -> str | None: ...


class _NoReply:
    """ask()'s failure: distinct from None, which is a nil reply (an unknown master)."""


NO_REPLY = _NoReply()


async def ask(pool: UpstreamPool, addr: str, args: list[bytes], limit: float) -> object:
    """One request on `pool`'s shared connection to `addr`: the parsed reply, NO_REPLY on
    failure (no connection, a timeout, an error reply)."""
    waiter = FutureWaiter(asyncio.get_running_loop())
    pool.get(addr).send(pack_command(args), waiter)
    try:
        async with asyncio.timeout(limit):
            raw = await waiter.future
    except TimeoutError:
        return NO_REPLY
    if is_error(raw):
        return NO_REPLY
    return parse_reply(raw)


class _EventLink(asyncio.Protocol):
    """A subscriber connection to one sentinel: AUTH if configured, then SUBSCRIBE EVENTS."""

    def __init__(self, watcher: SentinelWatcher, addr: str, hello: list[bytes]) -> None:
        self._watcher = watcher
        self.addr = addr
        self._hello = hello
        # ErrorReply is a value type, not an Exception: hiredis only calls it (as resp.py does).
        self._reader = hiredis.Reader(replyError=ErrorReply)  # type: ignore[arg-type]
        self._transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(b"".join(self._hello) + pack_command([b"SUBSCRIBE", *EVENTS]))

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            if isinstance(reply, ErrorReply):
                log.warning("sentinel_subscribe_failed", sentinel=self.addr, reply=str(reply))
                self.close()
                return
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                channel, payload = reply[1], reply[2]
                if isinstance(channel, bytes) and isinstance(payload, bytes):
                    self._watcher.on_event(channel, payload)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        elif not self.lost.done():
            self.lost.set_result(None)


class SentinelWatcher:
    def __init__(
        self,
        config: UpstreamConfig,
        loop: asyncio.AbstractEventLoop,
        data_pool: UpstreamPool,
        sink: PrimarySink,
        remap: Callable[[str], str],
    ) -> None:
        self._config = config
        self._loop = loop
        self._data = data_pool
        self._sink = sink
        self._remap = remap
        self.sentinels = [str(a) for a in config.sentinels]
        self._name = config.master_name.encode()
        # The sentinels' credentials, not the nodes': a pool of their own.
        sentinel_config = dataclasses.replace(
            config,
            username=config.sentinel_username,
            password=config.sentinel_password,
            connections_per_node=1,
        )
        self._pool = UpstreamPool(sentinel_config, loop)
        self._hello = [h] if (h := self._pool.handshake(False)) is not None else []
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._confirming: str | None = None
        # The primary a failover moved us away from: the sentinels go on naming it (and it
        # goes on saying master) until they all have the news; it is not taken back.
        self._switched_from: str | None = None
        self._leaving: str | None = None  # the primary of the failover that runs now
        self.checks = 0
        self.why: str | None = None  # the last check's failure, None once a primary is known

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """The first check (clients wait for nothing if it fails: retried in the background),
        then the re-check loop and one event subscription per sentinel."""
        self._pool.start()
        await self.check()
        self._spawn(self._loop_checks())
        for addr in self.sentinels:
            self._spawn(self._follow(addr))

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._pool.close()

    def tasks(self) -> list[asyncio.Task[None]]:
        return [*self._tasks, *self._pool.tasks()]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def wake(self) -> None:
        """Check again soon (a node connection failed, a READONLY reply, an event)."""
        self._wake.set()

    # --- the check ------------------------------------------------------------------------

    async def _loop_checks(self) -> None:
        config = self._config
        backoff = config.reconnect_backoff
        while True:
            known = self._sink.primary is not None
            try:
                async with asyncio.timeout(config.refresh_interval if known else backoff):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            if await self.check():
                backoff = config.reconnect_backoff
            else:
                backoff = min(backoff * 2, config.reconnect_backoff_max)
            await asyncio.sleep(config.min_refresh_gap)

    async def check(self) -> bool:
        """Ask every sentinel, vote, confirm with ROLE, and tell the sink."""
        self.checks += 1
        timeout = self._config.command_timeout
        args = [b"SENTINEL", b"GET-MASTER-ADDR-BY-NAME", self._name]
        replies = await asyncio.gather(*(ask(self._pool, a, args, timeout) for a in self.sentinels))
        answers: list[Answer] = [
            None if r is NO_REPLY else parse_master_addr(r, self._remap) for r in replies
        ]
        vote = vote_primary(answers)
        if vote.primary is None:
            return await self._failed(vote.why or "no primary", answers)
        current = self._sink.primary
        if vote.primary == self._switched_from and current is not None:
            return True  # the failover that left it is newer than the sentinels' answer
        if vote.primary == current:
            self._switched_from = None
        if not await self._is_master(vote.primary):
            why = f"the sentinels' primary {vote.primary} does not report role master"
            return await self._failed(why, answers)
        replicas: tuple[str, ...] = ()
        if self._config.read_from != "primary":
            replicas = await self._replicas(vote.primary, answers)
        if self.why is not None or self._sink.primary != vote.primary:
            log.info("sentinel_primary", primary=vote.primary, sentinels=vote.answered)
        self.why = None
        self._sink.set_primary(vote.primary, replicas)
        return True

    async def _failed(self, why: str, answers: list[Answer]) -> bool:
        current = self._sink.primary
        unreachable = all(a is None for a in answers)
        if current is not None and unreachable and await self._is_master(current):
            # No sentinel answers but the primary still does: keep serving it.
            log.warning("sentinels_unreachable", primary=current, sentinels=self.sentinels)
            return False
        detail = why
        if unreachable:
            reasons = [f"{a}: {self._pool.down_reason(a) or 'no answer'}" for a in self.sentinels]
            detail = f"{why} ({'; '.join(reasons)})"
        if detail != self.why:
            log.error("sentinel_no_primary", master_name=self._config.master_name, reason=detail)
        self.why = detail
        self._sink.lose_primary(detail)
        return False

    async def _is_master(self, addr: str) -> bool:
        reply = await ask(self._data, addr, [b"ROLE"], self._config.command_timeout)
        return parse_role_is_master(reply)

    async def _replicas(self, primary: str, answers: list[Answer]) -> tuple[str, ...]:
        args = [b"SENTINEL", b"REPLICAS", self._name]
        for addr, answer in zip(self.sentinels, answers, strict=True):
            if answer == primary:
                reply = await ask(self._pool, addr, args, self._config.command_timeout)
                if reply is not NO_REPLY:
                    return tuple(r for r in parse_replicas(reply, self._remap) if r != primary)
        return ()

    # --- events ---------------------------------------------------------------------------

    async def _follow(self, addr: str) -> None:
        """Stay subscribed to one sentinel's events, reconnecting with backoff."""
        config = self._config
        backoff = config.reconnect_backoff
        while True:
            link = _EventLink(self, addr, self._hello)
            try:
                async with asyncio.timeout(config.connect_timeout):
                    await self._pool.connect(lambda link=link: link, addr)  # type: ignore[misc]
            except (OSError, TimeoutError):
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, config.reconnect_backoff_max)
                continue
            backoff = config.reconnect_backoff
            try:
                await link.lost
            finally:
                link.close()
            self.wake()  # events may have been missed while the link was down
            await asyncio.sleep(backoff)

    def on_event(self, channel: bytes, payload: bytes) -> None:
        event = parse_event(channel, payload, self._remap)
        if event is None or event.master_name != self._name:
            return
        log.info("sentinel_event", kind=channel.decode(), detail=payload.decode(errors="replace"))
        kind = event.kind
        primary = self._sink.primary
        if kind in FAILOVER_START:
            if primary is None or event.master_addr == primary:
                self._leaving = event.master_addr
                self._sink.hold_for_switch()
        elif kind in _PROMOTED:
            target = event.addr
            if target is not None and target != primary and target != self._confirming:
                self._confirming = target
                self._spawn(self._confirm(target))
            if kind == b"+switch-master":
                self.wake()
        elif kind in FAILOVER_ABORT:
            self._sink.end_hold()
            self.wake()
        else:  # +monitor / -monitor: the group was added, renamed or removed
            self.wake()

    async def _confirm(self, addr: str) -> None:
        """Switch to `addr` as soon as ROLE says it is a master (a failover is promoting it)."""
        deadline = self._loop.time() + self._config.switch_timeout
        try:
            while self._loop.time() < deadline:
                if await self._is_master(addr):
                    previous = self._sink.primary
                    if previous != addr:
                        log.info("sentinel_switch", primary=addr, previous=previous)
                        self._switched_from = previous or self._leaving
                        self._sink.set_primary(addr, ())
                        self.wake()  # the full check fetches the replicas
                    return
                await asyncio.sleep(_CONFIRM_POLL)
            self.wake()
        finally:
            if self._confirming == addr:
                self._confirming = None
