"""Whole-keyspace commands: one request per node, the replies merged into one (routing/merge.py).

`FanoutExecutor.start()` serves what the router plans as `Special`: a `Fanout` to every
primary or every node, a `Scan` step on one shard, a `Script` call with NOSCRIPT recovery.
Each returns an entry for the client's reply queue that fills in when the last node answers;
a node's error reply (a lost connection included) is one more value for the merge.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Set
from importlib import metadata
from typing import Protocol

from proxy import pubsub
from proxy.contracts import ServerContext, SessionLike
from proxy.dispatch import ReplySink, Request
from proxy.scripts import ScriptCache, ScriptLoaded, ScriptRequest, load_request
from proxy.stats import Figures, proxy_figures
from proxy.upstream import DISCARD, FutureWaiter, UpstreamConnection, Waiter
from routing import replies
from routing.fanout import Fanout, Scan, Script, Special, wait_args
from routing.info import ProxyInfo, merge_info
from routing.merge import merge_fanout
from routing.plan import ANY_NODE
from routing.resp import Args, is_error, pack_command
from routing.scan import ScanLayout, ScanStep, finish_scan, plan_scan, scan_layout
from routing.slotmap import SlotMap

_NOT_SERVED = replies.SLOT_NOT_SERVED.encode()


def _version() -> str:
    try:
        return metadata.version("slotless")
    except metadata.PackageNotFoundError:
        return "0.0.0"


class Done:
    """An entry whose reply is known at once."""

    __slots__ = ("reply",)

    def __init__(self, session: ReplySink, reply: bytes) -> None:
        self.reply: bytes | None = reply
        session.on_ready()


class FanoutRequest:
    """Ready when every node has answered; then `finish` merges the replies in node order."""

    __slots__ = ("_finish", "_raws", "_remaining", "reply", "session")

    def __init__(
        self, session: ReplySink, count: int, finish: Callable[[list[bytes]], bytes]
    ) -> None:
        self.session = session
        self._finish = finish
        self._raws: list[bytes] = [b""] * count
        self._remaining = count
        self.reply: bytes | None = None

    def part_done(self, index: int, raw: bytes) -> None:
        self._raws[index] = raw
        self._remaining -= 1
        if self._remaining == 0:
            self.reply = self._finish(self._raws)
            self.session.on_ready()


class NodePart:
    __slots__ = ("index", "parent")

    def __init__(self, parent: FanoutRequest, index: int) -> None:
        self.parent = parent
        self.index = index

    def on_reply(self, raw: bytes, conn: UpstreamConnection) -> None:
        self.parent.part_done(self.index, raw)


class ScanRequest:
    """One SCAN step: the node's reply with the client's next cursor in place of the node's."""

    __slots__ = ("_layout", "_step", "reply", "session")

    def __init__(self, session: ReplySink, step: ScanStep, layout: ScanLayout) -> None:
        self.session = session
        self._step = step
        self._layout = layout
        self.reply: bytes | None = None

    def on_reply(self, raw: bytes, conn: UpstreamConnection) -> None:
        self.reply = finish_scan(self._step, raw, self._layout)
        self.session.on_ready()


FanoutEntry = Request | Done | FanoutRequest | ScanRequest


class FanoutContext(ServerContext, Protocol):
    """The server as fan-outs see it: INFO's figures, and the pub/sub hub if it exists."""

    @property
    def port(self) -> int: ...

    @property
    def upstream_errors(self) -> int: ...

    @property
    def sessions(self) -> Set[SessionLike]: ...

    @property
    def hub(self) -> pubsub.Hub | None: ...

    def figures(self) -> Figures: ...


class FanoutExecutor:
    def __init__(self, state: FanoutContext) -> None:
        self._state = state
        self.scripts = ScriptCache()
        self.version = _version()
        self._started = time.monotonic()
        self._rotation = 0
        self._layout_of: tuple[SlotMap | None, ScanLayout | None] = (None, None)

    def start(self, session: ReplySink, args: Args, plan: Special) -> FanoutEntry:
        """Send what `plan` needs upstream; the entry to queue for the client's reply."""
        if isinstance(plan, Script):
            return self._script(session, args, plan.slot)
        topology = self._state.topology
        slotmap = topology.slotmap
        if slotmap is None:
            topology.request_refresh()
            return Done(session, topology.no_map.encode())
        if isinstance(plan, Scan):
            return self._scan(session, args, slotmap)
        assert isinstance(plan, Fanout)
        return self._fanout(session, args, plan, slotmap)

    # --- fan-out -------------------------------------------------------------------------

    def _fanout(
        self, session: ReplySink, args: Args, plan: Fanout, slotmap: SlotMap
    ) -> FanoutRequest | Done:
        targets = list(slotmap.primaries if plan.targets == "primaries" else slotmap.nodes)
        if not targets:
            self._state.topology.request_refresh()
            return Done(session, _NOT_SERVED)
        if plan.merge == "random_key":
            # Start somewhere else each time, so one shard's keys are not always preferred.
            self._rotation = (self._rotation + 1) % len(targets)
            targets = targets[self._rotation :] + targets[: self._rotation]
        parent = FanoutRequest(session, len(targets), self._finisher(args, plan, targets))
        if args[0].lower() == b"wait":
            cap_ms = int(self._state.config.upstream.command_timeout * 800)
            args = wait_args(args, cap_ms)
        raw = pack_command(args)
        for index, addr in enumerate(targets):
            waiter = NodePart(parent, index)
            if plan.fresh_connection:
                self._state.spawn(self._send_fresh(addr, raw, waiter))
            else:
                self._state.pool.get(addr, session.resp3).send(raw, waiter)
        return parent

    def _finisher(
        self, args: Args, plan: Fanout, targets: list[str]
    ) -> Callable[[list[bytes]], bytes]:
        if plan.merge == "info":
            return lambda raws: merge_info(raws, args, self.proxy_info())
        if plan.merge == "pubsub":
            return lambda raws: pubsub.merge_introspection(self._state.hub, args, raws)
        loaded = self._script_admin(args)
        if loaded is None:
            return lambda raws: merge_fanout(plan.merge, raws, plan.count)

        def merge_loaded(raws: list[bytes]) -> bytes:
            for addr, raw in zip(targets, raws, strict=True):
                if not is_error(raw):
                    self.scripts.mark_loaded(addr, loaded)
            return merge_fanout(plan.merge, raws, plan.count)

        return merge_loaded

    def _script_admin(self, args: Args) -> bytes | None:
        """SCRIPT FLUSH forgets every body; SCRIPT LOAD remembers one (its SHA returned)."""
        if args[0].lower() != b"script" or len(args) < 2:
            return None
        sub = args[1].lower()
        if sub == b"flush":
            self.scripts.clear()
        elif sub == b"load" and len(args) == 3:
            return self.scripts.remember(args[2], self._state.config.limits.script_cache_size)
        return None

    async def _send_fresh(self, addr: str, raw: bytes, waiter: Waiter) -> None:
        """One request on a connection of its own: KILL must not queue behind a busy script."""
        loop = self._state.loop
        upstream = self._state.config.upstream
        conn = UpstreamConnection(addr, loop)
        handshake = self._state.pool.handshake(False)
        if handshake is not None:
            conn.send(handshake, DISCARD)
        answer = FutureWaiter(loop)
        conn.send(raw, answer)
        try:
            async with asyncio.timeout(upstream.connect_timeout + upstream.command_timeout):
                await self._state.pool.connect(lambda: conn, addr)
                reply = await answer.future
        except (OSError, TimeoutError) as exc:
            pool = self._state.pool
            why = "timed out" if isinstance(exc, TimeoutError) else pool.failure_reason(exc)
            reply = replies.upstream_error(addr, why).encode()
        finally:
            conn.close()
        waiter.on_reply(reply, conn)

    # --- SCAN ----------------------------------------------------------------------------

    def _scan(self, session: ReplySink, args: Args, slotmap: SlotMap) -> ScanRequest | Done:
        cached_map, layout = self._layout_of
        if cached_map is not slotmap or layout is None:
            layout = scan_layout(slotmap)
            self._layout_of = (slotmap, layout)
        step = plan_scan(args, layout)
        if not isinstance(step, ScanStep):
            return Done(session, step.encode())
        request = ScanRequest(session, step, layout)
        self._state.pool.get(step.node, session.resp3).send(pack_command(step.args), request)
        return request

    # --- scripts -------------------------------------------------------------------------

    def _script(self, session: ReplySink, args: Args, slot: int) -> Request:
        """EVAL*/EVALSHA*, where the node not known to have the script gets it first."""
        dispatcher = self._state.dispatcher
        scripts = self.scripts
        raw = pack_command(args)
        is_eval = args[0].lower() in (b"eval", b"eval_ro")
        limit = self._state.config.limits.script_cache_size
        sha = scripts.remember(args[1], limit) if is_eval else args[1].lower()
        request = ScriptRequest(dispatcher, session, raw, slot, scripts, sha)
        addr = self._node_for(slot)
        if addr is None:
            dispatcher.send(request)  # no map or no owner: the dispatcher's error replies
            return request
        conn = self._state.pool.get(addr, session.resp3)
        if not is_eval and not scripts.loaded_on(addr, sha):
            body = scripts.body(sha)
            if body is not None:
                conn.send(load_request(body), ScriptLoaded(scripts, sha))
        conn.send(raw, request)
        return request

    def _node_for(self, slot: int) -> str | None:
        topology = self._state.topology
        slotmap = topology.slotmap
        if slotmap is None:
            return None
        return slotmap.node_for_slot(slot) if slot != ANY_NODE else topology.any_primary()

    # --- INFO ----------------------------------------------------------------------------

    def proxy_info(self) -> ProxyInfo:
        state = self._state
        topology = state.topology
        slotmap = topology.slotmap
        primaries = len(slotmap.primaries) if slotmap is not None else 0
        nodes = len(slotmap.nodes) if slotmap is not None else 0
        return ProxyInfo(
            version=self.version,
            mode=state.config.upstream.mode,
            tcp_port=state.port,
            process_id=os.getpid(),
            uptime_in_seconds=int(time.monotonic() - self._started),
            connected_clients=len(state.sessions),
            tracking_clients=sum(1 for s in state.sessions if s.client.tracking.on),
            maxclients=state.config.limits.max_clients,
            nodes=nodes,
            primaries=primaries,
            replicas=nodes - primaries,
            slots_covered=slotmap.covered() if slotmap is not None else 0,
            slot_map_refreshes=topology.refreshes,
            redirects_absorbed=topology.redirects,
            upstream_errors=state.upstream_errors,
            **proxy_figures(state.figures()),
        )
