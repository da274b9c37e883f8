"""Server: the listener, the state sessions share, signals and graceful shutdown.

`run(config)` is the process entry point (uvloop). Tests embed `Server` directly: `start()`
binds (port 0 allowed) and returns the address, `stop()` drains and closes.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import Coroutine
from typing import Any

import structlog
import uvloop

from conf import Config
from proxy.dispatch import Dispatcher
from proxy.fanout import FanoutExecutor
from proxy.pool import UpstreamPool
from proxy.session import ClientSession
from proxy.topology import Topology
from routing.resp import RequestLimits

log = structlog.get_logger("slotless.server")


class ServerState:
    """What every session shares: config, topology, pool, dispatcher, the session set."""

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop, worker: int = 0) -> None:
        self.config = config
        self.loop = loop
        limits = config.limits
        self.request_limits = RequestLimits(
            proto_max_bulk_len=limits.proto_max_bulk_len,
            max_multibulk_len=limits.max_multibulk_len,
            max_inline_len=limits.max_inline_len,
        )
        self.pool = UpstreamPool(config.upstream, loop, self._on_node_lost)
        self.topology = Topology(config, self.pool, loop)
        self.dispatcher = Dispatcher(self.topology, self.pool, config.upstream, loop)
        self.fanout = FanoutExecutor(self)
        self.port = config.listen.port  # the bound port once the server listens (port 0)
        self.upstream_errors = 0  # upstream connections lost or never made, for INFO
        self.sessions: set[ClientSession] = set()
        # Client ids stay unique across worker processes: worker i hands out i+1, i+1+N, ...
        self._ids = itertools.count(worker + 1, max(1, config.workers))
        self._tasks: set[asyncio.Task[Any]] = set()
        self.accepting = True

    def next_client_id(self) -> int:
        return next(self._ids)

    def track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.track(self.loop.create_task(coro))

    def on_session_open(self, session: ClientSession) -> bool:
        if len(self.sessions) >= self.config.limits.max_clients or not self.accepting:
            return False
        self.sessions.add(session)
        return True

    def on_session_closed(self, session: ClientSession) -> None:
        self.sessions.discard(session)

    def _on_node_lost(self, addr: str, why: str) -> None:
        self.upstream_errors += 1
        self.fanout.scripts.forget_node(addr)
        self.topology.request_refresh()

    async def aclose(self) -> None:
        """Cancel background work and wait for it, so nothing is left pending."""
        tasks = [*self._tasks, *self.topology.tasks(), *self.pool.tasks()]
        self.topology.close()
        self.pool.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Server:
    def __init__(self, config: Config, worker: int = 0) -> None:
        self.config = config
        self.worker = worker
        self.state: ServerState | None = None
        self._server: asyncio.Server | None = None
        self.address: tuple[str, int] | None = None

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        state = self.state = ServerState(self.config, loop, self.worker)
        state.pool.start()
        await state.topology.start()
        listen = self.config.listen
        self._server = await loop.create_server(
            lambda: ClientSession(state),
            listen.host,
            listen.port,
            reuse_address=True,
            reuse_port=self.config.workers > 1,
            backlog=1024,
        )
        sockname = self._server.sockets[0].getsockname()
        self.address = (sockname[0], sockname[1])
        state.port = self.address[1]
        slotmap = state.topology.slotmap
        log.info(
            "listening",
            address=f"{self.address[0]}:{self.address[1]}",
            mode=self.config.upstream.mode,
            nodes=[str(n) for n in self.config.upstream.nodes],
            slots_covered=slotmap.covered() if slotmap else 0,
        )
        return self.address

    async def stop(self, deadline: float = 10.0) -> None:
        """Stop accepting, let owed replies reach their clients, then close everything."""
        state = self.state
        if self._server is not None:
            self._server.close()
        if state is None:
            return
        state.accepting = False
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        # Polls a condition spread over every session; 10 ms steps are fine at shutdown.
        while any(s.pending_replies for s in state.sessions) and loop.time() < end:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        for session in list(state.sessions):
            session.close_after_replies()
        await asyncio.sleep(0)
        await state.aclose()
        log.info("stopped", clients_closed=len(state.sessions))


async def serve(config: Config, worker: int = 0) -> int:
    server = Server(config, worker)
    try:
        await server.start()
    except OSError as exc:
        log.error("listen_failed", address=str(config.listen), reason=str(exc))
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutting_down")
    await server.stop()
    return 0


def run(config: Config) -> int:
    """Run the proxy until SIGTERM/SIGINT (N worker processes if configured); the exit code."""
    if config.workers > 1:
        from proxy.workers import Supervisor

        return Supervisor(config, run_worker).run()
    return run_worker(config)


def run_worker(config: Config, worker: int = 0) -> int:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(serve(config, worker))
