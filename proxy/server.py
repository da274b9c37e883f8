"""Server: the listener, the state sessions share, signals and graceful shutdown.

`run(config)` is the process entry point (uvloop). Tests embed `Server` directly: `start()`
binds (port 0 allowed) and returns the address, `stop()` drains and closes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import itertools
import signal
from collections.abc import Coroutine
from typing import Any

import structlog
import uvloop

from conf import Config, ConfigError, load_config
from proxy.admin import AdminServer
from proxy.blocking import BlockedClients
from proxy.dispatch import Dispatcher
from proxy.fanout import FanoutExecutor
from proxy.logs import configure_logging
from proxy.metrics import ProcessSource, WorkerReporter
from proxy.pool import UpstreamPool
from proxy.pubsub import Hub
from proxy.session import ClientSession
from proxy.stats import Figures, Stats, figures
from proxy.tls import listener_tls_args
from proxy.topology import Topology
from proxy.tracking import Tracker
from proxy.txn import HeldConnections
from routing.resp import RequestLimits

log = structlog.get_logger("slotless.server")


class ServerState:
    """What every session shares: config, topology, pool, dispatcher, the session set, and
    the features' registries. Sessions and features see it through Protocols
    (proxy/local.py SessionContext, proxy/contracts.py ServerContext), never this class."""

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop, worker: int = 0) -> None:
        self.config = config
        self.loop = loop
        self.request_limits = _request_limits(config)
        self.pool = UpstreamPool(config.upstream, loop, self._on_node_lost)
        self.topology = Topology(config, self.pool, loop)
        self.stats = Stats(config.slowlog_threshold_ms)  # proxy/stats.py, for /metrics and INFO
        self.dispatcher = Dispatcher(self.topology, self.pool, config.upstream, loop, self.stats)
        self.fanout = FanoutExecutor(self)
        self.port = config.listen.port  # the bound port once the server listens (port 0)
        self.upstream_errors = 0  # upstream connections lost or never made, for INFO
        self.sessions: set[ClientSession] = set()
        # Client ids stay unique across worker processes: worker i hands out i+1, i+1+N, ...
        self._ids = itertools.count(worker + 1, max(1, config.workers))
        self._tasks: set[asyncio.Task[Any]] = set()
        self.accepting = True
        self._drained: asyncio.Future[None] | None = None  # set by drain(), while it runs
        self._idle_sweep: asyncio.TimerHandle | None = None
        self.blocked = BlockedClients(self)  # proxy/blocking.py
        self.held = HeldConnections()  # proxy/txn.py
        self.hub: Hub | None = None  # proxy/pubsub.py, made by pubsub_hub()
        self._tracker: Tracker | None = None  # proxy/tracking.py, made by tracker()
        if config.upstream.mode == "sentinel":
            self.topology.on_map_changed(self._on_primary_changed)

    def next_client_id(self) -> int:
        return next(self._ids)

    def figures(self) -> Figures:
        """Every counter, read now (proxy/stats.py): /metrics and INFO show these."""
        return figures(self.stats, self.sessions, self.pool, self.topology)

    def pubsub_hub(self) -> Hub:
        """The pub/sub hub, made at the first (UN)SUBSCRIBE: it runs a repair task."""
        if self.hub is None:
            self.hub = Hub(self)
        return self.hub

    def tracker(self) -> Tracker:
        """The CLIENT TRACKING registry, made at the first CLIENT TRACKING (cluster mode)."""
        if self._tracker is None:
            self._tracker = Tracker(self)
        return self._tracker

    def track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.track(self.loop.create_task(coro))

    def reload(self, new: Config) -> list[str]:
        """Apply a re-read config (SIGHUP) to the running proxy; connected clients stay.

        Applied now: log, limits, deny_commands, upstream.nodes (seeds) and everything
        sessions read from `config` when they connect (auth). Returns the keys that changed
        but only take effect on a restart (listen, tls, workers, the rest of upstream: the
        listener's and the nodes' certificates are loaded once, at startup).
        """
        old = self.config
        later = [
            key
            for key in ("listen", "tls", "workers", "admin")
            if getattr(old, key) != getattr(new, key)
        ]
        for field in dataclasses.fields(old.upstream):
            name = field.name
            if name != "nodes" and getattr(old.upstream, name) != getattr(new.upstream, name):
                later.append(f"upstream.{name}")
        upstream = dataclasses.replace(old.upstream, nodes=new.upstream.nodes)
        config = dataclasses.replace(
            new,
            listen=old.listen,
            tls=old.tls,
            workers=old.workers,
            admin=old.admin,
            upstream=upstream,
            source=old.source,
        )
        self.config = config
        self.stats.configure(config.slowlog_threshold_ms)
        self.request_limits = _request_limits(config)
        self.topology.reconfigure(config)
        if self._idle_sweep is not None:
            self._idle_sweep.cancel()
            self._idle_sweep = None
        self.start_idle_sweep()
        return later

    def start_idle_sweep(self) -> None:
        """Close clients idle past limits.client_idle_timeout, as Redis's `timeout` does:
        silently. A client waiting for a reply (blocked) or subscribed is not idle."""
        timeout = self.config.limits.client_idle_timeout
        if timeout <= 0:
            return

        def sweep() -> None:
            cutoff = self.loop.time() - timeout
            for session in list(self.sessions):
                if session.last_active < cutoff and not session.waiting_on_purpose:
                    session.abort()
            self._idle_sweep = self.loop.call_later(min(1.0, timeout / 2), sweep)

        self._idle_sweep = self.loop.call_later(min(1.0, timeout / 2), sweep)

    def on_session_open(self, session: ClientSession) -> bool:
        self.stats.downstream_cx_total += 1
        if len(self.sessions) >= self.config.limits.max_clients or not self.accepting:
            self.stats.downstream_cx_rejected += 1
            return False
        self.sessions.add(session)
        return True

    def on_session_closed(self, session: ClientSession) -> None:
        if session in self.sessions:
            self.stats.closed_rx_bytes += session.rx_bytes
            self.stats.closed_tx_bytes += session.tx_bytes
        self.sessions.discard(session)
        drained = self._drained
        if drained is not None and not self.sessions and not drained.done():
            drained.set_result(None)

    async def drain(self, deadline: float) -> int:
        """Shutdown: every client gets the replies it is owed, then its connection closes
        (nothing new is served); waits for the last close, at most `deadline` seconds. Returns
        how many clients were still waiting at the deadline (they are closed at once)."""
        self.accepting = False
        for session in list(self.sessions):
            session.drain()
        if self.sessions:
            self._drained = self.loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._drained), deadline)
            except TimeoutError:
                pass
            finally:
                self._drained = None
        late = list(self.sessions)
        for session in late:
            session.abort()
        return len(late)

    def _on_primary_changed(self) -> None:
        """Sentinel mode: clients whose own connection is on the old primary leave."""
        primary = self.topology.primary
        for session in list(self.sessions):
            if session.pipe is not None:
                session.pipe.on_primary_changed(primary)

    def _on_node_lost(self, addr: str, why: str) -> None:
        self.upstream_errors += 1
        self.fanout.scripts.forget_node(addr)
        self.topology.request_refresh()

    async def aclose(self) -> None:
        """Cancel background work and wait for it, so nothing is left pending."""
        if self._idle_sweep is not None:
            self._idle_sweep.cancel()
        tasks = [*self._tasks, *self.topology.tasks(), *self.pool.tasks()]
        self.topology.close()
        self.pool.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _request_limits(config: Config) -> RequestLimits:
    limits = config.limits
    return RequestLimits(
        proto_max_bulk_len=limits.proto_max_bulk_len,
        max_multibulk_len=limits.max_multibulk_len,
        max_inline_len=limits.max_inline_len,
    )


class Server:
    def __init__(self, config: Config, worker: int = 0, report_dir: str | None = None) -> None:
        self.config = config
        self.worker = worker
        self.state: ServerState | None = None
        self._server: asyncio.Server | None = None
        self.address: tuple[str, int] | None = None
        # workers: N: the parent serves `admin` and this worker reports into report_dir.
        self._report_dir = report_dir
        self._admin: AdminServer | None = None
        self.admin_address: tuple[str, int] | None = None

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        state = self.state = ServerState(self.config, loop, self.worker)
        state.pool.start()
        await state.topology.start()
        state.start_idle_sweep()
        listen = self.config.listen
        self._server = await loop.create_server(
            lambda: ClientSession(state),
            listen.host,
            listen.port,
            reuse_address=True,
            reuse_port=self.config.workers > 1,
            backlog=1024,
            **listener_tls_args(self.config.tls),
        )
        sockname = self._server.sockets[0].getsockname()
        self.address = (sockname[0], sockname[1])
        state.port = self.address[1]
        await self._start_admin(state)
        slotmap = state.topology.slotmap
        log.info(
            "listening",
            address=f"{self.address[0]}:{self.address[1]}",
            mode=self.config.upstream.mode,
            nodes=[str(n) for n in self.config.upstream.nodes],
            slots_covered=slotmap.covered() if slotmap else 0,
            tls=self.config.tls is not None,
        )
        return self.address

    async def _start_admin(self, state: ServerState) -> None:
        config = self.config
        if config.admin is None:
            return
        source = ProcessSource(state, min(1.0, config.upstream.command_timeout))
        if self._report_dir is not None:
            state.spawn(WorkerReporter(source, self._report_dir, self.worker).run())
            return
        self._admin = AdminServer(source)
        self.admin_address = await self._admin.start(config.admin)

    async def stop(self, deadline: float = 10.0) -> None:
        """Stop accepting, let owed replies reach their clients, then close everything."""
        state = self.state
        if self._server is not None:
            self._server.close()
        if state is None:
            return
        clients = len(state.sessions)
        late = await state.drain(deadline)
        if self._admin is not None:  # /readyz said 503 while the clients drained
            await self._admin.stop()
        await state.aclose()
        log.info("stopped", clients_closed=clients, cut_at_deadline=late or None)

    def reload(self) -> bool:
        """SIGHUP: re-read the config file; a file with a mistake changes nothing."""
        state = self.state
        source = self.config.source
        if state is None or source is None:
            log.warning("reload_skipped", reason="no config file to re-read")
            return False
        try:
            new = load_config(source)
        except ConfigError as exc:
            log.error("reload_rejected", reason=str(exc))
            return False
        configure_logging(new.log)
        later = state.reload(new)
        self.config = state.config
        log.info("reloaded", config=source, needs_restart=later or None)
        return True


async def serve(config: Config, worker: int = 0, report_dir: str | None = None) -> int:
    server = Server(config, worker, report_dir)
    try:
        await server.start()
    except OSError as exc:
        log.error("listen_failed", address=str(config.listen), reason=str(exc))
        return 1
    # The command table, slot map and modules never die: keep them out of the cyclic
    # collector's full passes. Per-request objects form no cycles, so young collections
    # can be rarer too (fewer pauses under load).
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    await stop.wait()
    log.info("shutting_down", deadline=config.shutdown_timeout)
    await server.stop(config.shutdown_timeout)
    return 0


def run(config: Config) -> int:
    """Run the proxy until SIGTERM/SIGINT (N worker processes if configured); the exit code."""
    if config.workers > 1:
        from proxy.workers import Supervisor

        return Supervisor(config, run_worker).run()
    return run_worker(config)


def run_worker(config: Config, worker: int = 0, report_dir: str | None = None) -> int:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(serve(config, worker, report_dir))
