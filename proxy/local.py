"""Commands a session answers itself: connection state that slotless owns.

Cluster mode emulates a standalone server's answers (QUIT, SELECT 0, HELLO, AUTH, RESET,
CLIENT SETNAME/GETNAME/ID/SETINFO/INFO/LIST/KILL/REPLY/NO-EVICT/NO-TOUCH) for slotless's own
clients. Standalone mode hands anything stateful to a dedicated upstream connection instead,
so the real server keeps it. With `auth:` configured, AUTH and HELLO AUTH never go upstream:
proxy/auth.py answers them in both modes. Also `SessionContext`: what a session uses of the
server (proxy/server.py ServerState), the features' views included.
"""

from __future__ import annotations

from collections.abc import Callable, Set
from typing import Final, Protocol, TypeVar

from proxy import blocking, pubsub, tracking, txn
from proxy.auth import ClientGate, authenticator
from proxy.contracts import SessionLike
from proxy.fanout import FanoutExecutor
from routing import replies
from routing.client import DEFAULT_USER, Hello, nopass_authenticate, parse_hello
from routing.plan import ANY_NODE, LOCAL_COMMANDS, PUBSUB_COMMANDS, TXN_COMMANDS
from routing.resp import (
    OK,
    Args,
    ErrorReply,
    RequestLimits,
    encode_bulk,
    encode_int,
    string2ll,
)
from routing.tracking import is_tracking_command

_Session = TypeVar("_Session", contravariant=True)


class LocalContext(
    blocking.BlockingContext,
    pubsub.PubSubContext,
    tracking.TrackingContext,
    txn.TxnContext,
    Protocol,
):
    """The server as local commands see it: every client (CLIENT LIST, CLIENT KILL)."""

    @property
    def sessions(self) -> Set[SessionLike]: ...


class SessionContext(LocalContext, Protocol[_Session]):
    """The server as a ClientSession (the `_Session` type) sees it."""

    @property
    def request_limits(self) -> RequestLimits: ...

    @property
    def fanout(self) -> FanoutExecutor: ...

    def next_client_id(self) -> int: ...

    def on_session_open(self, session: _Session) -> bool: ...

    def on_session_closed(self, session: _Session) -> None: ...


_NO_SUCH_CLIENT = replies.NO_SUCH_CLIENT.encode()
_NO_PASSWORD = replies.AUTH_NO_PASSWORD.encode()
_WRONGPASS = replies.WRONGPASS.encode()


class LocalCommands:
    """Serves the connection commands over `session.client` (routing/client.py ClientState)."""

    __slots__ = ("_session", "_state", "gate")

    def __init__(self, session: SessionLike, state: LocalContext) -> None:
        self._session = session
        self._state = state
        self.gate: ClientGate | None = None
        auth = state.config.auth  # read at connect: a SIGHUP reload applies to new clients
        if auth is not None:
            # Sets session.acl: requests wait for AUTH (the session's slots exist by now).
            self.gate = ClientGate(session, state, authenticator(auth))
            self.gate.refresh()

    def handle(self, name: bytes, args: Args) -> None:
        session = self._session
        gate = self.gate
        if gate is not None:
            if name == b"reset":
                gate.deauthenticate()
            elif name in (b"auth", b"hello") and gate.owns_auth:
                gate.intercept(args)  # never upstream; the gate was out of the way
                return
        if name == b"quit":
            session.reply(OK)
            session.close_after_replies()
        elif self._state.config.upstream.mode == "sentinel" and name in PUBSUB_COMMANDS:
            # The hub's shared subscriptions move to a new primary (resubscribed there).
            pubsub.command(session, self._state, name, args)
        elif self._state.config.upstream.single_node:
            self._standalone(name, args)
        elif name in TXN_COMMANDS:
            txn.command(session, self._state, name, args)
        elif name in PUBSUB_COMMANDS:
            pubsub.command(session, self._state, name, args)
        elif name == b"client" and is_tracking_command(args):
            tracking.command(session, self._state, args)
        elif name in LOCAL_COMMANDS:
            session.reply(self._cluster(name, args))
        else:  # blocking commands, XREAD/XREADGROUP with BLOCK
            blocking.command(session, self._state, name, args)

    @property
    def server_version(self) -> bytes:
        return self._state.topology.server_version.encode()

    def hello_needs_pipe(self, hello: Hello) -> bool:
        """In standalone mode the server keeps the client's name: on its own connection."""
        return hello.sets_name and self._state.config.upstream.single_node

    def _standalone(self, name: bytes, args: Args) -> None:
        """Keep the shared connection where nothing changes; otherwise pipe."""
        if name == b"select" and len(args) == 2 and args[1] == b"0":
            self._session.reply(OK)
        elif name == b"client" and len(args) == 4 and args[1].lower() == b"setinfo":
            self._session.reply(self._session.client.client_setinfo(args[2], args[3]))
        elif name == b"hello":
            hello = parse_hello(args)
            if isinstance(hello, ErrorReply):
                self._session.reply(hello.encode())
            elif hello.options:  # AUTH, SETNAME: the server keeps them
                self.start_pipe(args)
            else:
                self._session.reply(self._hello(hello))
        elif name == b"client" and not self._known_client_subcommand(args):
            # The server answers its own "unknown subcommand" and keeps no state: no pipe
            # (redis-py 8 sends CLIENT MAINT_NOTIFICATIONS, which Redis 7.0 does not know).
            self._session.forward(args, ANY_NODE)
        else:
            self.start_pipe(args)

    def start_pipe(self, args: Args) -> None:
        """Standalone mode: this client gets its own upstream connection, starting with `args`."""
        if self.gate is not None:
            self._session.acl = self.gate  # it must see RESET (and check rules) from now
        self._session.start_pipe(args)

    def _known_client_subcommand(self, args: Args) -> bool:
        spec = self._state.topology.table.get(b"client")
        if spec is None or len(args) < 2:
            return True
        return b"client|" + args[1].lower() in {s.name for s in spec.subcommands.values()}

    def _cluster(self, name: bytes, args: Args) -> bytes:
        if name == b"select":
            index = string2ll(args[1])
            if index is None:
                return replies.NOT_INTEGER.encode()
            return OK if index == 0 else replies.SELECT_CLUSTER.encode()
        if name == b"hello":
            hello = parse_hello(args)
            return hello.encode() if isinstance(hello, ErrorReply) else self._hello(hello)
        if name == b"auth":
            return self._auth(args)
        if name == b"reset":
            return self._session.client.reset()
        self._session.client.last_cmd = b"client|" + args[1].lower() if len(args) > 1 else b"client"
        return self._client(args)

    def _auth(self, args: Args) -> bytes:
        if len(args) == 2:
            return _NO_PASSWORD
        if len(args) == 3 and args[1] == b"default":
            return OK
        if len(args) == 3:
            return _WRONGPASS
        return replies.SYNTAX.encode()

    def _hello(self, hello: Hello) -> bytes:
        """HELLO without `auth:`: the default user, nopass (routing/client.py has the rules)."""
        return self._session.client.hello(hello, nopass_authenticate, self.server_version)

    def _client(self, args: Args) -> bytes:
        sub = args[1].lower() if len(args) > 1 else b""
        argc = len(args)
        client = self._session.client
        if sub == b"setname" and argc == 3:
            return client.client_setname(args[2])
        if sub == b"getname" and argc == 2:
            return client.client_getname()
        if sub == b"id" and argc == 2:
            return encode_int(client.id)
        if sub == b"setinfo" and argc == 4:
            return client.client_setinfo(args[2], args[3])
        if sub == b"info" and argc == 2:
            return encode_bulk(self.info_line() + b"\n")
        if not self._known_client_subcommand(args):
            return replies.unknown_subcommand(b"client", args[1] if len(args) > 1 else b"").encode()
        if sub in (b"setname", b"getname", b"id", b"setinfo", b"info"):
            return replies.wrong_arity(b"client|" + sub).encode()
        if sub == b"list":
            return self._client_list(args)
        if sub == b"kill" and argc >= 3:
            return self._client_kill(args)
        if sub in (b"no-evict", b"no-touch") and argc == 3:
            # Accepted and ignored: eviction and LRU/LFU touches happen on the nodes, which
            # never see this client's connection (shared, multiplexed upstream connections).
            return OK if args[2].lower() in (b"on", b"off") else replies.SYNTAX.encode()
        if sub == b"reply" and argc == 3:
            return self._client_reply(args[2].lower())
        if sub in (b"kill", b"no-evict", b"no-touch", b"reply"):
            return replies.wrong_arity(b"client|" + sub).encode()
        return replies.unsupported(
            b"CLIENT " + sub.upper(), "in cluster mode yet (it needs per-connection state)"
        ).encode()

    def _client_reply(self, mode: bytes) -> bytes:
        """OFF and SKIP answer nothing (networking.c clientCommand); see proxy/auth.py."""
        if mode not in (b"on", b"off", b"skip"):
            return replies.SYNTAX.encode()
        if self.gate is None:
            if mode == b"on":
                return OK
            self.gate = ClientGate(self._session, self._state, None)
        self.gate.set_reply_mode("on" if mode == b"on" else "off" if mode == b"off" else "skip")
        return OK if mode == b"on" else b""

    def _client_list(self, args: Args) -> bytes:
        """CLIENT LIST [TYPE type] [ID id ...]: slotless's own clients."""
        sessions = list(self._state.sessions)
        argc = len(args)
        if argc == 4 and args[2].lower() == b"type":
            kind = args[3].lower()
            if kind not in _CLIENT_TYPES:
                return _unknown_type(args[3])
            sessions = [s for s in sessions if _client_type(s) == _CLIENT_TYPES[kind]]
        elif argc > 3 and args[2].lower() == b"id":
            ids = set()
            for raw in args[3:]:
                cid = string2ll(raw)
                if cid is None:
                    return replies.INVALID_CLIENT_ID.encode()
                ids.add(cid)
            sessions = [s for s in sessions if s.id in ids]
        elif argc != 2:
            return replies.SYNTAX.encode()
        sessions.sort(key=lambda s: s.id)
        return encode_bulk(b"".join(s.local.info_line() + b"\n" for s in sessions))

    def _client_kill(self, args: Args) -> bytes:
        """CLIENT KILL addr | CLIENT KILL [ID id] [TYPE t] [USER u] [ADDR a] [LADDR a]
        [SKIPME yes|no]: closes matching slotless clients (networking.c clientCommand)."""
        me = self._session
        tests: list[Callable[[SessionLike], bool]] = []
        skipme = len(args) != 3  # with the old form, a client can kill itself
        if len(args) == 3:
            addr = args[2].decode("utf-8", "replace")
            tests.append(lambda s: s.peer == addr)
        else:
            if len(args) % 2:
                return replies.SYNTAX.encode()
            for option, value in zip(args[2::2], args[3::2], strict=True):
                test, error = self._kill_filter(option.lower(), value)
                if error is not None:
                    return error
                if test is None:  # SKIPME
                    skipme = value.lower() == b"yes"
                else:
                    tests.append(test)
        victims = [
            s
            for s in list(self._state.sessions)
            if all(test(s) for test in tests) and not (skipme and s is me)
        ]
        for victim in victims:
            if victim is not me:
                victim.abort()
        if len(args) == 3 and not victims:
            return _NO_SUCH_CLIENT
        if me in victims:
            me.close_after_replies()
        return OK if len(args) == 3 else encode_int(len(victims))

    def _kill_filter(
        self, option: bytes, value: bytes
    ) -> tuple[Callable[[SessionLike], bool] | None, bytes | None]:
        text = value.decode("utf-8", "replace")
        if option == b"id":
            cid = string2ll(value)
            if cid is None or cid < 1:
                return None, replies.CLIENT_ID_RANGE.encode()
            return (lambda s: s.id == cid), None
        if option == b"type":
            kind = _CLIENT_TYPES.get(value.lower())
            if kind is None:
                return None, _unknown_type(value)
            return (lambda s: _client_type(s) == kind), None
        if option == b"user":
            gate = self.gate
            if value != DEFAULT_USER and (gate is None or not gate.knows_user(value)):
                return None, replies.no_such_user(value).encode()
            return (lambda s: s.client.user == value), None
        if option == b"addr":
            return (lambda s: s.peer == text), None
        if option == b"laddr":
            return (lambda s: s.local.laddr == text), None
        if option == b"skipme" and value.lower() in (b"yes", b"no"):
            return None, None
        return None, replies.SYNTAX.encode()

    @property
    def laddr(self) -> str:
        transport = self._session.transport
        sock = transport.get_extra_info("sockname") if transport is not None else None
        if isinstance(sock, tuple):
            host = f"[{sock[0]}]" if ":" in sock[0] else sock[0]
            return f"{host}:{sock[1]}"
        return str(sock or "")

    def info_line(self) -> bytes:
        """CLIENT INFO / CLIENT LIST fields (networking.c catClientInfoString), for this
        slotless client; buffer and memory fields are slotless's, so they read 0."""
        session = self._session
        client = session.client
        now = self._state.loop.time()
        return (
            b"id=%d addr=%s laddr=%s fd=-1 name=%s age=%d idle=%d flags=%s db=%d sub=%d psub=%d "
            b"ssub=%d multi=%d qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 "
            b"oll=0 omem=0 tot-mem=0 events=r cmd=%s user=%s redir=%d resp=%d "
            b"lib-name=%s lib-ver=%s"
        ) % (
            client.id,
            session.peer.encode(),
            self.laddr.encode(),
            client.name or b"",
            int(now - client.created),
            int(now - session.last_active),
            client.flags(),
            client.db,
            len(client.subs.channel),
            len(client.subs.pattern),
            len(client.subs.shard),
            client.multi_count(),
            client.last_cmd,
            client.user,
            client.tracking.redir(),
            3 if client.resp3 else 2,
            client.lib_name,
            client.lib_ver,
        )


# Redis client types (networking.c getClientTypeByName); slotless's clients are all normal
# or pub/sub: replicas and masters never connect through it.
_CLIENT_TYPES: Final = {
    b"normal": b"normal",
    b"pubsub": b"pubsub",
    b"slave": b"replica",
    b"replica": b"replica",
    b"master": b"master",
}


def _client_type(session: SessionLike) -> bytes:
    return b"pubsub" if session.client.subs.total() else b"normal"


def _unknown_type(name: bytes) -> bytes:
    return replies.unknown_client_type(name).encode()
