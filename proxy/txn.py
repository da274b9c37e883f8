"""Transactions in cluster mode: MULTI/EXEC/DISCARD/WATCH/UNWATCH (issue 5).

MULTI is held locally until the first keyed command (or WATCH) names a slot; the transaction
then runs on a dedicated connection to that slot's primary, which keeps the MULTI and WATCH
state as Redis does for a direct client. Commands for another slot are refused at queue time
(EXEC then answers EXECABORT). A slot that moves mid-transaction makes the node discard it;
the client gets a clear error, never a partial transaction. routing/txn.py's MultiState
decides (slots, errors, EXECABORT); this module sends and keeps the order.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from proxy.contracts import Entry, ServerContext, SessionLike
from proxy.upstream import UpstreamConnection, Waiter
from routing import replies
from routing.plan import ANY_NODE
from routing.redirect import CLUSTER_ERROR_PREFIXES, parse_redirect
from routing.resp import OK, Args, ErrorReply
from routing.txn import (
    MULTI,
    Action,
    Answer,
    Begin,
    Bind,
    End,
    MultiState,
    Send,
    lost_before_exec,
    lost_in_exec,
    slot_moving,
)

_UPSTREAM_LOST = replies.UPSTREAM_ERROR_PREFIX


class HeldConnections:
    """The dedicated connections each client holds (one ServerState owns them), closed when
    the client goes away: Redis then discards its transaction and watches. One on_close
    hook per session, not per MULTI."""

    def __init__(self) -> None:
        self._by_session: weakref.WeakKeyDictionary[SessionLike, set[UpstreamConnection]] = (
            weakref.WeakKeyDictionary()
        )

    def hold(self, session: SessionLike, conn: UpstreamConnection) -> None:
        conns = self._by_session.get(session)
        if conns is None:
            conns = self._by_session[session] = set()
            session.on_close(lambda: self._close_all(session))
        conns.add(conn)

    def _close_all(self, session: SessionLike) -> None:
        for conn in self._by_session.pop(session, ()):
            conn.close()

    def release(self, session: SessionLike, conn: UpstreamConnection) -> None:
        conns = self._by_session.get(session)
        if conns is not None:
            conns.discard(conn)
        conn.close()


class TxnContext(ServerContext, Protocol):
    """The server as transactions see it."""

    @property
    def held(self) -> HeldConnections: ...


def command(session: SessionLike, state: TxnContext, name: bytes, args: Args) -> None:
    """Serve MULTI/EXEC/DISCARD/WATCH/UNWATCH outside MULTI (arity already checked)."""
    txn = session.txn
    if not isinstance(txn, Transaction):
        txn = Transaction(session, state)  # joins the session only if the command begins one
    txn.on_command(args)


class _Swallow:
    """Waiter for a reply the client already has (MULTI's +OK, a locally queued command's
    +QUEUED): an error there means the node flagged the transaction."""

    __slots__ = ("txn",)

    def __init__(self, txn: Transaction) -> None:
        self.txn = txn

    def on_reply(self, raw: bytes, conn: UpstreamConnection) -> None:
        if raw[:1] == b"-":
            self.txn.multi.flag()


class _Close:
    """Waiter for the last request on a connection (DISCARD, RESET): then close it."""

    __slots__ = ("txn",)

    def __init__(self, txn: Transaction) -> None:
        self.txn = txn

    def on_reply(self, raw: bytes, conn: UpstreamConnection) -> None:
        self.txn.release(conn)


class _Relay:
    """A reply entry filled by the node's answer: WATCH's (the requests after it wait, as
    they would on a single server), or UNWATCH's (the last on the connection)."""

    __slots__ = ("barrier", "reply", "txn")

    def __init__(self, txn: Transaction, barrier: bool) -> None:
        self.txn = txn
        self.barrier = barrier
        self.reply: bytes | None = None

    def on_reply(self, raw: bytes, conn: UpstreamConnection) -> None:
        self.reply = raw
        self.txn.session.on_ready()
        if self.barrier:
            self.txn.lift_barrier()
        else:
            self.txn.release(conn)


class _Queued:
    """The reply entry of a command queued on the node: +QUEUED, or why it was refused."""

    __slots__ = ("reply", "txn")

    def __init__(self, txn: Transaction) -> None:
        self.txn = txn
        self.reply: bytes | None = None

    def on_reply(self, raw: bytes, conn: UpstreamConnection) -> None:
        if raw[:1] == b"-":
            # The node flags its transaction on any refusal (server.c rejectCommand and the
            # cluster redirection), so its EXEC will answer EXECABORT; so does ours.
            self.txn.multi.flag()
            if raw.startswith(CLUSTER_ERROR_PREFIXES):
                raw = self.txn.explain_moving(raw, conn, "the transaction will be discarded")
        self.reply = raw
        self.txn.session.on_ready()


class _Exec:
    """EXEC's reply entry: the node's answer, or an error saying what was (not) applied."""

    __slots__ = ("reply", "txn")

    def __init__(self, txn: Transaction) -> None:
        self.txn = txn
        self.reply: bytes | None = None

    def on_reply(self, raw: bytes, conn: UpstreamConnection) -> None:
        txn = self.txn
        if raw.startswith(_UPSTREAM_LOST):
            raw = lost_in_exec(conn.addr, conn.established)
        elif raw.startswith(CLUSTER_ERROR_PREFIXES):
            # The node refused EXEC as a whole (cluster.c getNodeByQuery) and discarded it;
            # if a queued command was refused already, the client expects EXECABORT.
            explained = txn.explain_moving(raw, conn, "transaction aborted; nothing was applied")
            raw = txn.multi.on_exec_refused(explained)
        self.reply = raw
        txn.session.on_ready()
        txn.release(conn)
        txn.lift_barrier()


class _Gate:
    """An entry in the client's reply queue, right behind the replies a gate waits for.
    The session writes replies in request order, so it reaches this entry (reads its
    `reply` at the head of the queue) exactly when all of those are in: that opens it."""

    __slots__ = ("_opened", "_queue", "_up", "held")

    def __init__(self, up: _Upstream, queue: Sequence[Entry]) -> None:
        self._up = up
        self._queue = queue
        self._opened = False
        self.held: list[tuple[bytes, Waiter]] = []

    @property
    def reply(self) -> bytes | None:
        if self._opened:
            return b""
        if not self._queue or self._queue[0] is not self:
            return None
        self._opened = True
        # Not from inside the session's flush: sending can answer waiters at once.
        self._up.loop.call_soon(self._up.on_open, self)
        return b""  # nothing for the client: the flush moves on

    @reply.setter
    def reply(self, value: bytes | None) -> None:
        # Entry's attribute is settable; only an entry sets its own reply, and a gate's
        # comes from its place in the queue.
        raise AttributeError("a gate opens when the session reaches it")


class _Upstream:
    """The dedicated connection behind a gate: what is sent to it waits until the replies
    owed for requests that went over shared connections before it are in, so the
    transaction sees a pipelined write sent before it, as on one server."""

    __slots__ = ("_gates", "conn", "loop")

    def __init__(self, conn: UpstreamConnection, loop: asyncio.AbstractEventLoop) -> None:
        self.conn = conn
        self.loop = loop
        self._gates: deque[_Gate] = deque()  # in queue order; sends go behind the last

    def wait_for(self, session: SessionLike, entries: list[Entry]) -> None:
        """Hold what is sent from now on until these entries of the session's queue (and
        whatever precedes them there) have their replies."""
        if any(entry.reply is None for entry in entries):
            gate = _Gate(self, session.queued_entries)
            self._gates.append(gate)
            session.queue_reply_entry(gate)

    def send(self, raw: bytes, waiter: Waiter) -> None:
        if self._gates:
            self._gates[-1].held.append((raw, waiter))
        else:
            self.conn.send(raw, waiter)

    def on_open(self, gate: _Gate) -> None:
        # Gates open in queue order: the first one's requests go out first.
        assert self._gates[0] is gate
        self._gates.popleft()
        for raw, waiter in gate.held:
            self.conn.send(raw, waiter)


class Transaction:
    """One client's MULTI block and/or WATCHed keys; `session.txn` while it lasts. The rules
    are `multi` (routing/txn.py), which is `session.client.multi` meanwhile; this class does
    what its actions say on the dedicated connection, in order with the session."""

    __slots__ = (
        "_after",
        "_barrier",
        "_finished",
        "_shared",
        "_state",
        "multi",
        "session",
        "up",
    )

    def __init__(self, session: SessionLike, state: TxnContext) -> None:
        self.session = session
        self._state = state
        # Kept after the end too: replies still owed may flag it or need its slot.
        self.multi = MultiState()
        self.up: _Upstream | None = None  # the dedicated connection, once bound
        # While WATCH's or EXEC's reply is awaited, later requests wait here: on one server
        # they would run after it (read-your-writes for pipelining clients).
        self._barrier = False
        self._after: list[Args] = []
        self._finished = False  # EXEC sent: leave the session when its reply is in
        # Requests may have gone over shared connections since the gate was last set.
        self._shared = True

    # --- the session's view -------------------------------------------------------------

    def intercept(self, args: Args) -> bool:
        """Inside MULTI every command is ours but QUIT and RESET; outside, only RESET's
        side effect (the router sends WATCH & co. to `command`)."""
        if self._barrier:
            self._after.append(args)
            return True
        action = self.multi.request(self._state.topology.router, args, self._locate)
        if action is None:
            self._shared = True
            return False
        self._do(action)
        # End without a reply is RESET's: the session serves it once the transaction is over.
        return not (type(action) is End and action.raw is None)

    def lift_barrier(self) -> None:
        """WATCH's or EXEC's reply is in: serve the requests that waited for it."""
        self._barrier = False
        if self._finished:
            self._uninstall()
        after, self._after = self._after, []
        if after:
            self.session.serve(after)

    def on_command(self, args: Args) -> None:
        self._do(self.multi.command(self._state.topology.router, args, self._locate))

    def _do(self, action: Action) -> None:
        match action:
            case Answer(raw):
                self.session.reply(raw)
            case Begin(upstream):
                self._install()
                if upstream:
                    assert self.up is not None
                    self._up_send(self.up, MULTI, _Swallow(self))
                self.session.reply(OK)
            case Send():
                self._do_send(action)
            case End(raw, last):
                if raw is not None:
                    self.session.reply(raw)
                self._end(last)

    def _locate(self, slot: int) -> str | ErrorReply:
        """`slot`'s primary (ANY_NODE: any primary) for the dedicated connection."""
        topology = self._state.topology
        slotmap = topology.slotmap
        if slotmap is None:
            topology.request_refresh()
            return topology.no_map
        addr = slotmap.node_for_slot(slot) if slot != ANY_NODE else topology.any_primary()
        if addr is None:
            topology.request_refresh()
            return replies.SLOT_NOT_SERVED
        return addr

    def _bind(self, bind: Bind) -> _Upstream:
        """Open the dedicated connection, then MULTI and the commands answered so far."""
        conn = self._state.pool.dedicated(bind.node, self.session.resp3)
        self._state.held.hold(self.session, conn)
        up = self.up = _Upstream(conn, self._state.loop)
        self._install()
        if bind.prelude:
            swallow = _Swallow(self)
            for raw in bind.prelude:
                self._up_send(up, raw, swallow)
        return up

    def _install(self) -> None:
        session = self.session
        if session.txn is not self:
            session.txn = self
            session.client.multi = self.multi
            session.update_detour()

    def _uninstall(self) -> None:
        session = self.session
        if session.txn is self:
            session.txn = None
            session.client.multi = None
            session.update_detour()

    # --- sending ------------------------------------------------------------------------------

    def _do_send(self, action: Send) -> None:
        up = self._bind(action.bind) if action.bind is not None else self.up
        assert up is not None
        kind = action.kind
        if kind == "queued":
            self._send(up, action.raw, _Queued(self))
        elif kind == "watch":
            self._barrier = True
            self._send(up, action.raw, _Relay(self, barrier=True))
        elif kind == "unwatch":
            self.up = None
            self._uninstall()
            self._send(up, action.raw, _Relay(self, barrier=False))
        else:
            self._exec(up, action.raw)

    def _exec(self, up: _Upstream, raw: bytes) -> None:
        self.up = None
        if up.conn.closed:
            self.session.reply(lost_before_exec(up.conn.addr))
            self.release(up.conn)
            self._uninstall()
            return
        self._finished = True
        self._barrier = True
        self._send(up, raw, _Exec(self))

    def _send(self, up: _Upstream, raw: bytes, entry: _Relay | _Queued | _Exec) -> None:
        self._up_send(up, raw, entry)
        self.session.queue_reply_entry(entry)

    def _up_send(self, up: _Upstream, raw: bytes, waiter: Waiter) -> None:
        if self._shared:
            self._shared = False
            queued = self.session.queued_entries
            up.wait_for(self.session, [e for e in queued if getattr(e, "txn", None) is not self])
        up.send(raw, waiter)

    def release(self, conn: UpstreamConnection) -> None:
        """Close a dedicated connection this transaction is done with."""
        self._state.held.release(self.session, conn)

    def _end(self, last: bytes) -> None:
        """Leave the session's path; the node gets `last`, then the connection closes (its
        pending replies, already owed to the client, arrive first)."""
        self._uninstall()
        up, self.up = self.up, None
        if up is not None:
            self._up_send(up, last, _Close(self))

    def explain_moving(self, raw: bytes, conn: UpstreamConnection, outcome: str) -> bytes:
        """A cluster error (MOVED/ASK/TRYAGAIN/CLUSTERDOWN) inside a transaction: the client,
        who sees one server, gets what it means instead; the slot map gets refreshed."""
        topology = self._state.topology
        redirect = parse_redirect(raw, conn.host, topology.remap)
        if redirect is not None and redirect.kind == "moved":
            topology.on_moved(redirect.slot, redirect.node)
        topology.request_refresh()
        slot = self.multi.slot
        return slot_moving(slot if slot is not None and slot != ANY_NODE else None, raw, outcome)
