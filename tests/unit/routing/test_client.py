"""routing/client.py: HELLO parsed once, and the per-client state it and CLIENT change.

Expected replies are redis-server 7.0.15's own bytes (checked by hand against a throwaway
`redis-server --save ''`, with and without `requirepass pw`).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

import pytest

from routing import replies
from routing.client import (
    RESET,
    ClientState,
    Hello,
    HelloAuth,
    HelloSetName,
    nopass_authenticate,
    parse_hello,
)
from routing.pubsub import Subscriptions
from routing.resp import OK, ErrorReply
from routing.txn import MultiState

VERSION = b"7.0.15"


def hello_map(proto: int, client_id: int) -> bytes:
    """HELLO's reply as Redis 7.0.15 writes it (RESP2 array or RESP3 map)."""
    head = b"%7\r\n" if proto == 3 else b"*14\r\n"
    return head + (
        b"$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n"
        b":%d\r\n$2\r\nid\r\n:%d\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n"
        b"$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
    ) % (proto, client_id)


def args(text: str) -> list[bytes]:
    """Split like a shell: 'a b' is one argument, '' an empty one."""
    return [a.encode() for a in shlex.split(text)]


NOT_INTEGER = b"-ERR Protocol version is not an integer or out of range\r\n"
NOPROTO = b"-NOPROTO unsupported protocol version\r\n"
BAD_NAME = b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
BAD_LIB_NAME = b"-ERR lib-name cannot contain spaces, newlines or special characters.\r\n"
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
HELLO_NOAUTH = (
    b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the "
    b"HELLO AUTH <user> <pass> option can be used to authenticate the client and select "
    b"the RESP protocol version at the same time\r\n"
)


def syntax(option: bytes) -> bytes:
    return b"-ERR Syntax error in HELLO option '" + option + b"'\r\n"


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        ([b"HELLO"], Hello(None, upstream=(b"HELLO",))),
        ([b"HELLO", b"3"], Hello(3, upstream=(b"HELLO", b"3"))),
        ([b"hello", b"2"], Hello(2, upstream=(b"hello", b"2"))),
        ([b"HELLO", b"x"], NOT_INTEGER),
        ([b"HELLO", b"03"], NOT_INTEGER),  # string2ll: no leading zero
        ([b"HELLO", b"99999999999999999999999"], NOT_INTEGER),
        ([b"HELLO", b"x", b"FOO"], NOT_INTEGER),  # the version is checked first
        ([b"HELLO", b"-1"], NOPROTO),
        ([b"HELLO", b"1"], NOPROTO),
        ([b"HELLO", b"4"], NOPROTO),
        ([b"HELLO", b"5", b"FOO"], NOPROTO),
        ([b"HELLO", b"2", b"FOO"], syntax(b"FOO")),  # echoed as written, not lowercased
        ([b"HELLO", b"2", b"AUTH", b"a"], syntax(b"AUTH")),
        ([b"HELLO", b"2", b"SETNAME"], syntax(b"SETNAME")),
        ([b"HELLO", b"2", b"setname", b"a b"], BAD_NAME),
        ([b"HELLO", b"2", b"SETNAME", b"\xc3\xa9"], BAD_NAME),
        ([b"HELLO", b"2", b"SETNAME", b"a b", b"AUTH", b"bob", b"x"], BAD_NAME),
        (
            [b"HELLO", b"3", b"auth", b"u", b"p", b"SETNAME", b"n"],
            Hello(
                3,
                (HelloAuth(b"u", b"p"), HelloSetName(b"n")),
                upstream=(b"HELLO", b"3", b"SETNAME", b"n"),
            ),
        ),
        (
            [b"HELLO", b"2", b"SETNAME", b"ok", b"FOO", b"bar"],
            Hello(
                2,
                (HelloSetName(b"ok"),),
                replies.hello_syntax(b"FOO"),
                (b"HELLO", b"2", b"SETNAME", b"ok", b"FOO", b"bar"),
            ),
        ),
        (
            [b"HELLO", b"2", b"AUTH", b"u", b"p", b"SETNAME", b"a b"],
            Hello(
                2,
                (HelloAuth(b"u", b"p"),),
                replies.BAD_CLIENT_NAME,
                (b"HELLO", b"2", b"SETNAME", b"a b"),
            ),
        ),
    ],
)
def test_parse_hello(request_: list[bytes], expected: Hello | bytes) -> None:
    parsed = parse_hello(request_)
    if isinstance(expected, bytes):
        assert isinstance(parsed, ErrorReply)
        assert parsed.encode() == expected
    else:
        assert parsed == expected


def test_hello_hides_the_password() -> None:
    parsed = parse_hello([b"HELLO", b"3", b"AUTH", b"u", b"secret"])
    assert b"secret" not in repr(parsed).encode()
    assert isinstance(parsed, Hello) and parsed.upstream == (b"HELLO", b"3")


def password(client: ClientState) -> Callable[[bytes, bytes], bool]:
    """`requirepass pw`: the default user with password "pw"."""

    def authenticate(username: bytes, secret: bytes) -> bool:
        matches = username == b"default" and secret == b"pw"
        if matches:
            client.login(username)
        return matches

    return authenticate


def run(client: ClientState, requests: list[str]) -> list[bytes]:
    """Serve HELLO and CLIENT GETNAME as the proxy would; other requests are not in here."""
    authenticate = password(client) if client.requires_auth else nopass_authenticate
    out = []
    for text in requests:
        request = args(text)
        if request[0] == b"CLIENT":
            out.append(client.client_getname())
            continue
        hello = parse_hello(request)
        if isinstance(hello, ErrorReply):
            out.append(hello.encode())
        else:
            out.append(client.hello(hello, authenticate, VERSION))
    return out


# (requirepass, requests, replies); b"*" / b"%" stand for HELLO's RESP2 / RESP3 map
SESSIONS = [
    (False, ["HELLO 3 SETNAME n", "CLIENT GETNAME", "HELLO"], [b"%", b"$1\r\nn\r\n", b"%"]),
    (False, ["HELLO 2 SETNAME ok FOO", "CLIENT GETNAME"], [syntax(b"FOO"), b"$2\r\nok\r\n"]),
    (False, ["HELLO 2 SETNAME ok SETNAME two", "CLIENT GETNAME"], [b"*", b"$3\r\ntwo\r\n"]),
    (False, ["HELLO 2 SETNAME ok SETNAME ''", "CLIENT GETNAME"], [b"*", b"$-1\r\n"]),
    (False, ["HELLO 2 SETNAME ok SETNAME 'a b'", "CLIENT GETNAME"], [BAD_NAME, b"$2\r\nok\r\n"]),
    (False, ["HELLO 2 AUTH default x"], [b"*"]),
    (False, ["HELLO 2 AUTH default x AUTH bob y"], [WRONGPASS]),
    (False, ["HELLO 2 AUTH bob y AUTH default x"], [WRONGPASS]),
    (False, ["HELLO 2 AUTH bob x SETNAME a"], [WRONGPASS]),
    (True, ["HELLO"], [HELLO_NOAUTH]),
    (True, ["HELLO 3"], [HELLO_NOAUTH]),
    # 7.0 sets the name before it checks authentication.
    (True, ["HELLO 3 SETNAME early", "CLIENT GETNAME"], [HELLO_NOAUTH, b"$5\r\nearly\r\n"]),
    # The options before a syntax error stay applied: the client is logged in, still RESP2.
    (True, ["HELLO 3 AUTH default pw FOO", "HELLO"], [syntax(b"FOO"), b"*"]),
    (True, ["HELLO 3 AUTH default pw AUTH default bad", "HELLO"], [WRONGPASS, b"*"]),
    (True, ["HELLO 3 AUTH default pw SETNAME me", "CLIENT GETNAME"], [b"%", b"$2\r\nme\r\n"]),
    (True, ["HELLO 3 AUTH default bad", "HELLO 3"], [WRONGPASS, HELLO_NOAUTH]),
]


@pytest.mark.parametrize(("requirepass", "requests", "expected"), SESSIONS)
def test_hello_sessions(requirepass: bool, requests: list[str], expected: list[bytes]) -> None:
    """Replies match 7.0.15's: exact errors, and maps by their first byte and content."""
    client = ClientState(16, 0.0, requirepass)
    got = run(client, requests)
    assert len(got) == len(expected)
    for reply, want in zip(got, expected, strict=True):
        if want in (b"*", b"%"):
            assert reply == hello_map(3 if want == b"%" else 2, 16)
        else:
            assert reply == want


def test_hello_reply_bytes_and_switch() -> None:
    client = ClientState(22, 0.0)
    hello3 = parse_hello([b"HELLO", b"3"])
    assert isinstance(hello3, Hello)
    assert client.hello(hello3, nopass_authenticate, VERSION) == hello_map(3, 22)
    assert client.resp3
    bare = parse_hello([b"HELLO"])
    assert isinstance(bare, Hello)
    assert client.hello(bare, nopass_authenticate, VERSION) == hello_map(3, 22)  # no switch
    assert client.client_getname() == b"_\r\n"  # RESP3 null


@pytest.mark.parametrize(
    ("requirepass", "request_", "expected"),
    [
        (True, "HELLO 3 AUTH default pw SETNAME n", [b"HELLO", b"3", b"SETNAME", b"n"]),
        (True, "HELLO 3 AUTH default bad SETNAME n", WRONGPASS),
        (True, "HELLO 3 SETNAME n", HELLO_NOAUTH),
        (True, "HELLO 3 SETNAME n FOO", syntax(b"FOO")),
        (False, "HELLO 3 SETNAME n FOO", [b"HELLO", b"3", b"SETNAME", b"n", b"FOO"]),
    ],
)
def test_hello_upstream(requirepass: bool, request_: str, expected: list[bytes] | bytes) -> None:
    """Standalone mode: slotless checks AUTH; the client's own connection gets the rest."""
    client = ClientState(1, 0.0, requirepass)
    hello = parse_hello(args(request_))
    assert isinstance(hello, Hello)
    assert client.hello_upstream(hello, password(client)) == expected


@pytest.mark.parametrize(
    ("name", "reply", "after"),
    [
        (b"app", OK, b"app"),
        (b"", OK, None),
        (b"a b", BAD_NAME, b"old"),
        (b"\x7f", BAD_NAME, b"old"),
        (b"a\nb", BAD_NAME, b"old"),
        (b"!~", OK, b"!~"),
    ],
)
def test_client_setname(name: bytes, reply: bytes, after: bytes | None) -> None:
    client = ClientState(1, 0.0, name=b"old")
    assert client.client_setname(name) == reply
    assert client.name == after


@pytest.mark.parametrize(
    ("attr", "value", "reply"),
    [
        (b"LIB-NAME", b"redis-py", OK),
        (b"lib-ver", b"8.1.0", OK),
        (b"lib-name", b"a b", BAD_LIB_NAME),
        (b"Lib-Color", b"x", b"-ERR Unrecognized option 'Lib-Color'\r\n"),
    ],
)
def test_client_setinfo(attr: bytes, value: bytes, reply: bytes) -> None:
    assert ClientState(1, 0.0).client_setinfo(attr, value) == reply


@pytest.mark.parametrize("requirepass", [False, True])
def test_reset_clears_connection_state(requirepass: bool) -> None:
    client = ClientState(1, 0.0, requirepass, resp3=True, name=b"n", lib_name=b"lib", db=3)
    client.login(b"app")
    assert client.reset() == RESET == b"+RESET\r\n"
    assert (client.resp3, client.name, client.db, client.user) == (False, None, 0, b"default")
    assert client.authenticated is not requirepass
    assert client.lib_name == b"lib"  # clearClientConnectionState leaves the library alone


def test_the_state_is_one_object() -> None:
    """Transaction, subscriptions and blocked state are the client's, empty at connect."""
    client = ClientState(1, 0.0)
    assert client.multi is None and client.blocked is None
    assert client.subs == Subscriptions() and client.subs is not ClientState(2, 0.0).subs


def _in_multi() -> MultiState:
    multi = MultiState()
    multi.in_multi = True
    return multi


@pytest.mark.parametrize(
    ("multi", "subscribed", "blocked", "flags"),
    [
        (None, False, None, b"N"),
        (MultiState(), False, None, b"N"),  # WATCH alone: not in MULTI
        (_in_multi(), False, None, b"x"),
        (None, True, None, b"P"),
        (None, False, b"blpop", b"b"),
        (_in_multi(), True, None, b"Px"),  # RESP3: a subscribed client may run MULTI
        (None, True, b"xread", b"Pb"),
    ],
)
def test_client_list_flags(
    multi: MultiState | None, subscribed: bool, blocked: bytes | None, flags: bytes
) -> None:
    client = ClientState(1, 0.0, multi=multi, blocked=blocked)
    if subscribed:
        client.subs.subscribe("shard", [b"s"])
    assert client.flags() == flags
    client.subs.unsubscribe("shard", [])
    client.multi = None
    client.blocked = None
    assert client.flags() == b"N"
