"""Commands a session answers itself: connection state that slotless owns.

Cluster mode emulates a standalone server's answers (QUIT, SELECT 0, HELLO 2, AUTH without
a password, CLIENT SETNAME/GETNAME/ID/SETINFO/INFO/LIST, RESET). Standalone mode hands
anything stateful to a dedicated upstream connection instead, so the real server keeps it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy import blocking, pubsub, txn
from routing import replies
from routing.plan import ANY_NODE, LOCAL_COMMANDS, PUBSUB_COMMANDS, TXN_COMMANDS
from routing.resp import (
    OK,
    Args,
    ErrorReply,
    encode_array,
    encode_bulk,
    encode_int,
    encode_status,
    string2ll,
)

if TYPE_CHECKING:
    from proxy.server import ServerState
    from proxy.session import ClientSession

_NO_PASSWORD = ErrorReply(
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?"
).encode()
_WRONGPASS = ErrorReply("WRONGPASS invalid username-password pair or user is disabled.").encode()
_BAD_NAME = ErrorReply(
    "ERR Client names cannot contain spaces, newlines or special characters."
).encode()


class LocalCommands:
    __slots__ = ("_session", "_state", "lib_name", "lib_ver", "name")

    def __init__(self, session: ClientSession, state: ServerState) -> None:
        self._session = session
        self._state = state
        self.name: bytes | None = None
        self.lib_name = b""
        self.lib_ver = b""

    def handle(self, name: bytes, args: Args) -> None:
        session = self._session
        if name == b"quit":
            session.reply(OK)
            session.close_after_replies()
        elif self._state.config.upstream.mode == "standalone":
            self._standalone(name, args)
        elif name in TXN_COMMANDS:
            txn.command(session, self._state, name, args)
        elif name in PUBSUB_COMMANDS:
            pubsub.command(session, self._state, name, args)
        elif name in LOCAL_COMMANDS:
            session.reply(self._cluster(name, args))
        else:  # blocking commands, XREAD/XREADGROUP with BLOCK
            blocking.command(session, self._state, name, args)

    def _standalone(self, name: bytes, args: Args) -> None:
        """Keep the shared connection where nothing changes; otherwise pipe."""
        if name == b"select" and len(args) == 2 and args[1] == b"0":
            self._session.reply(OK)
        elif name == b"client" and len(args) == 4 and args[1].lower() == b"setinfo":
            self._session.reply(self._client_setinfo(args))
        elif name == b"hello" and not any(a.lower() in (b"auth", b"setname") for a in args[2:]):
            self._session.reply(self._hello(args))
        elif name == b"client" and not self._known_client_subcommand(args):
            # The server answers its own "unknown subcommand" and keeps no state: no pipe
            # (redis-py 8 sends CLIENT MAINT_NOTIFICATIONS, which Redis 7.0 does not know).
            self._session.forward(args, ANY_NODE)
        else:
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
            return self._hello(args)
        if name == b"auth":
            return self._auth(args)
        if name == b"reset":
            self.name = None
            self._session.resp3 = False
            return encode_status(b"RESET")
        return self._client(args)

    def _auth(self, args: Args) -> bytes:
        if len(args) == 2:
            return _NO_PASSWORD
        if len(args) == 3 and args[1] == b"default":
            return OK
        if len(args) == 3:
            return _WRONGPASS
        return replies.SYNTAX.encode()

    def _hello(self, args: Args) -> bytes:
        if len(args) >= 2:
            version = string2ll(args[1])
            if version is None:
                return ErrorReply("ERR Protocol version is not an integer or out of range").encode()
            if version not in (2, 3):
                return replies.NOPROTO.encode()
        i = 2
        while i < len(args):
            option = args[i].lower()
            if option == b"auth" and i + 2 < len(args):
                result = self._auth([b"auth", args[i + 1], args[i + 2]])
                if result != OK:
                    return result
                i += 3
            elif option == b"setname" and i + 1 < len(args):
                if not _valid_name(args[i + 1]):
                    return _BAD_NAME
                self.name = args[i + 1] or None
                i += 2
            else:
                return ErrorReply(
                    f"ERR Syntax error in HELLO option '{option.decode(errors='replace')}'"
                ).encode()
        if len(args) >= 2:
            self._session.resp3 = args[1] == b"3"
        resp3 = self._session.resp3
        server_version = self._state.topology.server_version.encode()
        fields = [
            encode_bulk(b"server"),
            encode_bulk(b"redis"),
            encode_bulk(b"version"),
            encode_bulk(server_version),
            encode_bulk(b"proto"),
            encode_int(3 if resp3 else 2),
            encode_bulk(b"id"),
            encode_int(self._session.id),
            encode_bulk(b"mode"),
            encode_bulk(b"standalone"),
            encode_bulk(b"role"),
            encode_bulk(b"master"),
            encode_bulk(b"modules"),
            b"*0\r\n",
        ]
        if resp3:
            return b"%%%d\r\n" % (len(fields) // 2) + b"".join(fields)
        return encode_array(fields)

    def _client(self, args: Args) -> bytes:
        sub = args[1].lower() if len(args) > 1 else b""
        argc = len(args)
        if sub == b"setname" and argc == 3:
            if not _valid_name(args[2]):
                return _BAD_NAME
            self.name = args[2] or None
            return OK
        if sub == b"getname" and argc == 2:
            if self.name is None and self._session.resp3:
                return b"_\r\n"
            return encode_bulk(self.name)
        if sub == b"id" and argc == 2:
            return encode_int(self._session.id)
        if sub == b"setinfo" and argc == 4:
            return self._client_setinfo(args)
        if sub == b"info" and argc == 2:
            return encode_bulk(self.info_line() + b"\n")
        if sub == b"list" and argc == 2:
            lines = [s.local.info_line() + b"\n" for s in self._state.sessions]
            return encode_bulk(b"".join(lines))
        if sub in (b"setname", b"getname", b"id", b"setinfo", b"info"):
            return replies.wrong_arity(b"client|" + sub).encode()
        if not self._known_client_subcommand(args):
            return replies.unknown_subcommand(b"client", args[1] if len(args) > 1 else b"").encode()
        return replies.unsupported(
            b"CLIENT " + sub.upper(), "in cluster mode yet (it needs per-connection state)"
        ).encode()

    def _client_setinfo(self, args: Args) -> bytes:
        attr = args[2].lower()
        if attr == b"lib-name":
            if not _valid_name(args[3]):
                return ErrorReply(
                    "ERR lib-name cannot contain spaces, newlines or special characters."
                ).encode()
            self.lib_name = args[3]
            return OK
        if attr == b"lib-ver":
            self.lib_ver = args[3]
            return OK
        return ErrorReply(f"ERR Unrecognized option '{args[2].decode(errors='replace')}'").encode()

    def info_line(self) -> bytes:
        session = self._session
        return b"id=%d addr=%s name=%s db=0 cmd=client lib-name=%s lib-ver=%s" % (
            session.id,
            session.peer.encode(),
            self.name or b"",
            self.lib_name,
            self.lib_ver,
        )


def _valid_name(name: bytes) -> bool:
    """networking.c validateClientName: printable ASCII without spaces."""
    return all(33 <= c <= 126 for c in name)
