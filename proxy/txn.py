"""Transactions in cluster mode: MULTI/EXEC/DISCARD/WATCH/UNWATCH (issue 5).

MULTI is held locally until the first keyed command (or WATCH) names a slot; the transaction
then runs on a dedicated connection to that slot's primary, which keeps the MULTI and WATCH
state as Redis does for a direct client. Commands for another slot are refused at queue time
(EXEC then answers EXECABORT). A slot that moves mid-transaction makes the node discard it;
the client gets a clear error, never a partial transaction. routing/txn.py decides slots.
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
from routing.plan import ANY_NODE, Reply
from routing.redirect import CLUSTER_ERROR_PREFIXES, parse_redirect
from routing.resp import OK, Args, pack_command
from routing.txn import (
    Refuse,
    exec_abort,
    lost_before_exec,
    lost_in_exec,
    plan_queued,
    slot_moving,
    watch_slot,
)

_MULTI = pack_command([b"MULTI"])
_EXEC = pack_command([b"EXEC"])
_DISCARD = pack_command([b"DISCARD"])
_RESET = pack_command([b"RESET"])
_QUEUED = b"+QUEUED\r\n"
_EMPTY_EXEC = b"*0\r\n"
_UPSTREAM_LOST = replies.UPSTREAM_ERROR_PREFIX
_CONTROL = frozenset((b"exec", b"discard", b"multi", b"watch"))


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
    if isinstance(txn, Transaction):
        txn.on_command(name, args)
    elif name == b"multi":
        Transaction(session, state).begin()
    elif name == b"watch":
        Transaction(session, state).watch(args)
    elif name == b"unwatch":
        session.reply(OK)
    elif name == b"exec":
        session.reply(replies.EXEC_WITHOUT_MULTI.encode())
    else:
        session.reply(replies.DISCARD_WITHOUT_MULTI.encode())


def flag(session: SessionLike) -> None:
    """A command refused before it reached the transaction (by proxy/auth.py's ACL check,
    say): inside MULTI, Redis then makes EXEC answer EXECABORT (server.c rejectCommand)."""
    txn = session.txn
    if isinstance(txn, Transaction) and txn.in_multi:
        txn.flagged = True


class _Swallow:
    """Waiter for a reply the client already has (MULTI's +OK, a locally queued command's
    +QUEUED): an error there means the node flagged the transaction."""

    __slots__ = ("txn",)

    def __init__(self, txn: Transaction) -> None:
        self.txn = txn

    def on_reply(self, raw: bytes, conn: UpstreamConnection) -> None:
        if raw[:1] == b"-":
            self.txn.flagged = True


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
            self.txn.flagged = True
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
            raw = replies.EXECABORT.encode() if txn.flagged else explained
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
    """One client's MULTI block and/or WATCHed keys; `session.txn` while it lasts."""

    __slots__ = (
        "_after",
        "_barrier",
        "_finished",
        "_shared",
        "_state",
        "buffered",
        "flagged",
        "in_multi",
        "session",
        "slot",
        "up",
    )

    def __init__(self, session: SessionLike, state: TxnContext) -> None:
        self.session = session
        self._state = state
        self.in_multi = False
        self.flagged = False  # a command was refused: EXEC answers EXECABORT
        self.slot: int | None = None  # the bound slot (ANY_NODE: keyless transaction)
        self.up: _Upstream | None = None  # the dedicated connection, once bound
        self.buffered: list[bytes] = []  # keyless commands queued before the binding
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
        name = args[0].lower()
        if name == b"reset":
            self.reset()
            return False
        if not self.in_multi or name == b"quit":
            self._shared = True
            return False
        if name in _CONTROL:
            plan = self._state.topology.router.plan(args)
            if isinstance(plan, Reply):
                self._refused_control(name, plan.raw)
            else:
                self.on_command(name, args)
        else:
            self.queue(args)
        return True

    def lift_barrier(self) -> None:
        """WATCH's or EXEC's reply is in: serve the requests that waited for it."""
        self._barrier = False
        if self._finished:
            self._uninstall()
        after, self._after = self._after, []
        if after:
            self.session.serve(after)

    def on_command(self, name: bytes, args: Args) -> None:
        session = self.session
        if name == b"multi":
            if self.in_multi:
                session.reply(replies.NESTED_MULTI.encode())
            else:
                self.begin()
        elif name == b"exec":
            if self.in_multi:
                self.exec()
            else:
                session.reply(replies.EXEC_WITHOUT_MULTI.encode())
        elif name == b"discard":
            if self.in_multi:
                self.discard()
            else:
                session.reply(replies.DISCARD_WITHOUT_MULTI.encode())
        elif name == b"watch":
            if self.in_multi:
                session.reply(replies.WATCH_INSIDE_MULTI.encode())
            else:
                self.watch(args)
        else:  # UNWATCH outside MULTI: the watches go with the connection
            up, self.up = self.up, None
            self._uninstall()
            if up is None:
                session.reply(OK)
            else:
                self._send(up, pack_command(args), _Relay(self, barrier=False))

    def _refused_control(self, name: bytes, raw: bytes) -> None:
        if name == b"exec":
            # multi.c execCommandAbort: an EXEC refused by processCommand ends the block.
            self.session.reply(exec_abort(raw))
            self._end(_DISCARD)
        else:
            self.flagged = True
            self.session.reply(raw)

    # --- MULTI, WATCH -----------------------------------------------------------------------

    def begin(self) -> None:
        self.in_multi = True
        self._install()
        if self.up is not None:
            self._up_send(self.up, _MULTI, _Swallow(self))
        self.session.reply(OK)

    def watch(self, args: Args) -> None:
        slot = watch_slot(args)
        if isinstance(slot, Refuse) or (self.slot is not None and slot != self.slot):
            self.session.reply(slot.raw if isinstance(slot, Refuse) else replies.CROSSSLOT.encode())
            return
        if self.up is None:
            error = self._bind(slot)
            if error is not None:
                self.session.reply(error)
                return
            self._install()
        assert self.up is not None
        self._barrier = True
        self._send(self.up, pack_command(args), _Relay(self, barrier=True))

    def _bind(self, slot: int) -> bytes | None:
        """Open the dedicated connection to `slot`'s primary; an error reply if none."""
        topology = self._state.topology
        slotmap = topology.slotmap
        if slotmap is None:
            topology.request_refresh()
            return replies.NO_TOPOLOGY.encode()
        addr = slotmap.node_for_slot(slot) if slot != ANY_NODE else topology.any_primary()
        if addr is None:
            topology.request_refresh()
            return replies.SLOT_NOT_SERVED.encode()
        conn = self._state.pool.dedicated(addr, self.session.resp3)
        self._state.held.hold(self.session, conn)
        self.up = _Upstream(conn, self._state.loop)
        self.slot = slot
        return None

    def _install(self) -> None:
        if self.session.txn is not self:
            self.session.txn = self
            self.session.update_detour()

    def _uninstall(self) -> None:
        self.in_multi = False
        if self.session.txn is self:
            self.session.txn = None
            self.session.update_detour()

    # --- queued commands --------------------------------------------------------------------

    def queue(self, args: Args) -> None:
        session = self.session
        slot = plan_queued(self._state.topology.router, args)
        if isinstance(slot, Refuse):
            self.flagged = True
            session.reply(slot.raw)
            return
        raw = pack_command(args)
        up = self.up
        if up is None:
            if slot == ANY_NODE:  # nothing names a node yet: answer now, send on binding
                self.buffered.append(raw)
                session.reply(_QUEUED)
                return
            error = self._bind(slot)
            if error is not None:
                self.flagged = True
                session.reply(error)
                return
            up = self._start_upstream()
        elif slot != ANY_NODE and slot != self.slot:
            # Another slot, even on the same node: a cluster refuses EXEC with CROSSSLOT.
            self.flagged = True
            session.reply(replies.CROSSSLOT.encode())
            return
        self._send(up, raw, _Queued(self))

    def _start_upstream(self) -> _Upstream:
        """MULTI and the commands answered locally so far, on the just-bound connection."""
        up = self.up
        assert up is not None
        swallow = _Swallow(self)
        self._up_send(up, _MULTI, swallow)
        for raw in self.buffered:
            up.send(raw, swallow)
        self.buffered = []
        return up

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

    # --- EXEC, DISCARD, RESET -------------------------------------------------------------

    def exec(self) -> None:
        session = self.session
        if self.flagged:
            session.reply(replies.EXECABORT.encode())
            self._end(_DISCARD)
            return
        if self.up is None:
            if not self.buffered:
                session.reply(_EMPTY_EXEC)
                self._end(_DISCARD)
                return
            error = self._bind(ANY_NODE)  # keyless commands only: any primary runs them
            if error is not None:
                session.reply(error)
                self._end(_DISCARD)
                return
            self._start_upstream()
        up = self.up
        assert up is not None
        self.in_multi = False
        self.up = None
        if up.conn.closed:
            session.reply(lost_before_exec(up.conn.addr))
            self.release(up.conn)
            self._uninstall()
            return
        self._finished = True
        self._barrier = True
        self._send(up, _EXEC, _Exec(self))

    def discard(self) -> None:
        # DISCARD also forgets the watched keys (multi.c discardTransaction).
        self.session.reply(OK)
        self._end(_DISCARD)

    def reset(self) -> None:
        """RESET (handled by the session afterwards): drop the block and the watches."""
        self._end(_RESET)

    def _end(self, last: bytes) -> None:
        """Leave the session's path; the node gets `last`, then the connection closes (its
        pending replies, already owed to the client, arrive first)."""
        self._uninstall()
        up, self.up = self.up, None
        self.buffered = []
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
        slot = self.slot if self.slot is not None and self.slot != ANY_NODE else None
        return slot_moving(slot, raw, outcome)
