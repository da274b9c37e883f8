"""One downstream client's connection state, and the rules of HELLO, CLIENT SETNAME/GETNAME/
SETINFO and RESET over it (networking.c helloCommand, clientCommand, clearClientConnectionState).

`parse_hello` reads a HELLO once; `ClientState` methods apply a request and return the reply
bytes. Rule: nothing here checks a secret, reads a clock or writes to a socket. The caller
passes in what only it knows: an `authenticate` callback, the server version, the start time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from routing import replies
from routing.pubsub import Subscriptions
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
from routing.tracking import TrackingState
from routing.txn import MultiState

DEFAULT_USER: Final = b"default"
RESET: Final = encode_status(b"RESET")
_NULL3: Final = b"_\r\n"

# Checks a username and password and, when they match, logs the client in (ClientState.login).
Authenticate: TypeAlias = Callable[[bytes, bytes], bool]


@dataclass(frozen=True, slots=True)
class HelloAuth:
    username: bytes
    password: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class HelloSetName:
    name: bytes


HelloOption: TypeAlias = HelloAuth | HelloSetName


@dataclass(frozen=True, slots=True)
class Hello:
    """A parsed HELLO. Redis 7.0 applies the options in order as it reads them, so the
    options before a syntax or name error (`error`) still take effect."""

    protover: int | None  # None: a bare HELLO, which reports and switches nothing
    options: tuple[HelloOption, ...] = ()
    error: ErrorReply | None = None
    # The request without its AUTH options: what a client's own upstream connection is sent
    # when slotless checks the credentials itself (standalone mode, proxy/auth.py).
    upstream: tuple[bytes, ...] = ()

    @property
    def sets_name(self) -> bool:
        return any(type(option) is HelloSetName for option in self.options)


def valid_client_name(name: bytes) -> bool:
    """networking.c validateClientName: printable ASCII without spaces (empty clears it)."""
    return all(33 <= c <= 126 for c in name)


def parse_hello(args: Args) -> Hello | ErrorReply:
    """networking.c helloCommand's argument loop (Redis 7.0). An ErrorReply means the request
    changes nothing: a bad protocol version, or an error before any valid option."""
    protover = None
    if len(args) >= 2:
        protover = string2ll(args[1])
        if protover is None:
            return replies.PROTOCOL_VERSION
        if protover not in (2, 3):
            return replies.NOPROTO
    options: list[HelloOption] = []
    upstream = list(args[:2])
    error = None
    i, argc = 2, len(args)
    while i < argc:
        option = args[i].lower()
        more = argc - 1 - i
        if option == b"auth" and more >= 2:
            options.append(HelloAuth(args[i + 1], args[i + 2]))
            i += 3
        elif option == b"setname" and more >= 1:
            upstream += args[i : i + 2]
            if not valid_client_name(args[i + 1]):
                error = replies.BAD_CLIENT_NAME
                break
            options.append(HelloSetName(args[i + 1]))
            i += 2
        else:
            upstream += args[i:]
            error = replies.hello_syntax(args[i])
            break
    if error is not None and not options:
        return error
    return Hello(protover, tuple(options), error, tuple(upstream))


def nopass_authenticate(username: bytes, password: bytes) -> bool:
    """Without `auth:` the only user is "default" with nopass: any password matches
    (acl.c ACLCheckUserCredentials); the client is already logged in as it."""
    return username == DEFAULT_USER


@dataclass(slots=True)
class ClientState:
    """What Redis keeps per connection (server.h `client`) that slotless answers for."""

    id: int
    created: float  # the proxy's clock, for CLIENT LIST age=
    requires_auth: bool = False  # the config has `auth:`: start unauthenticated
    resp3: bool = False
    name: bytes | None = None
    lib_name: bytes = b""
    lib_ver: bytes = b""
    user: bytes = DEFAULT_USER
    authenticated: bool = field(init=False)
    db: int = 0
    last_cmd: bytes = b"NULL"
    # MULTI/WATCH state (routing/txn.py) from MULTI or WATCH until the transaction ends;
    # proxy/txn.py sets and clears it.
    multi: MultiState | None = None
    # Channels, patterns and shard channels (routing/pubsub.py); proxy/pubsub.py keeps the
    # hub in step with them.
    subs: Subscriptions = field(default_factory=Subscriptions)
    # The blocking command (lowercase name) this client waits in, set and cleared by
    # proxy/blocking.py; None when it waits in none.
    blocked: bytes | None = None
    # CLIENT TRACKING flags, redirect and prefixes (routing/tracking.py); proxy/tracking.py
    # keeps the key table and delivers the invalidations.
    tracking: TrackingState = field(default_factory=TrackingState)

    def __post_init__(self) -> None:
        self.authenticated = not self.requires_auth

    def flags(self) -> bytes:
        """CLIENT LIST/INFO flags= (networking.c catClientInfoString, in its order): P
        subscribed, x inside MULTI, b blocked, t/R/B tracking; N for none of them."""
        flags = b""
        if self.subs.total():
            flags += b"P"
        if self.multi is not None and self.multi.in_multi:
            flags += b"x"
        if self.blocked is not None:
            flags += b"b"
        flags += self.tracking.flags()
        return flags or b"N"

    def multi_count(self) -> int:
        """CLIENT LIST multi=: commands queued inside MULTI, -1 outside."""
        multi = self.multi
        return multi.queued if multi is not None and multi.in_multi else -1

    def login(self, user: bytes) -> None:
        """The credentials matched (checked by the caller): the client is now `user`."""
        self.user = user
        self.authenticated = True

    def logout(self) -> None:
        """Back to the default user (RESET), authenticated only where no password is set."""
        self.user = DEFAULT_USER
        self.authenticated = not self.requires_auth

    def hello(self, hello: Hello, authenticate: Authenticate, server_version: bytes) -> bytes:
        """networking.c helloCommand (7.0): options in order, then NOAUTH, then the switch."""
        for option in hello.options:
            if type(option) is HelloAuth:
                if not authenticate(option.username, option.password):
                    return replies.WRONGPASS.encode()
            else:
                assert type(option) is HelloSetName
                self.name = option.name or None
        if hello.error is not None:
            return hello.error.encode()
        if not self.authenticated:
            return replies.HELLO_NOAUTH.encode()
        if hello.protover is not None:
            self.resp3 = hello.protover == 3
        return self.hello_reply(server_version)

    def hello_upstream(self, hello: Hello, authenticate: Authenticate) -> bytes | Args:
        """HELLO whose rest the client's own upstream connection must see (its name): run
        the AUTH options here, then return either an error reply or the request to send."""
        for option in hello.options:
            if type(option) is HelloAuth and not authenticate(option.username, option.password):
                return replies.WRONGPASS.encode()
        if not self.authenticated:
            return (hello.error or replies.HELLO_NOAUTH).encode()
        return list(hello.upstream)

    def hello_reply(self, server_version: bytes) -> bytes:
        """HELLO's map: server, version, proto, id, mode, role, modules."""
        fields = [
            encode_bulk(b"server"),
            encode_bulk(b"redis"),
            encode_bulk(b"version"),
            encode_bulk(server_version),
            encode_bulk(b"proto"),
            encode_int(3 if self.resp3 else 2),
            encode_bulk(b"id"),
            encode_int(self.id),
            encode_bulk(b"mode"),
            encode_bulk(b"standalone"),
            encode_bulk(b"role"),
            encode_bulk(b"master"),
            encode_bulk(b"modules"),
            b"*0\r\n",
        ]
        if self.resp3:
            return b"%%%d\r\n" % (len(fields) // 2) + b"".join(fields)
        return encode_array(fields)

    def client_setname(self, name: bytes) -> bytes:
        """CLIENT SETNAME (networking.c clientSetNameOrReply): "" clears the name."""
        if not valid_client_name(name):
            return replies.BAD_CLIENT_NAME.encode()
        self.name = name or None
        return OK

    def client_getname(self) -> bytes:
        if self.name is None and self.resp3:
            return _NULL3
        return encode_bulk(self.name)

    def client_setinfo(self, attr: bytes, value: bytes) -> bytes:
        """CLIENT SETINFO LIB-NAME | LIB-VER (Redis 7.2, which redis-py and others send)."""
        option = attr.lower()
        if option == b"lib-name":
            if not valid_client_name(value):
                return replies.BAD_LIB_NAME.encode()
            self.lib_name = value
            return OK
        if option == b"lib-ver":
            self.lib_ver = value
            return OK
        return replies.unrecognized_option(attr).encode()

    def reset(self) -> bytes:
        """RESET's connection part (networking.c clearClientConnectionState): RESP2, no
        name, db 0, the default user. Library name and version stay, as in Redis."""
        self.resp3 = False
        self.name = None
        self.db = 0
        self.tracking.disable()
        self.logout()
        return RESET
