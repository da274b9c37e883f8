"""Client authentication (`auth:`) in both modes, and the CLIENT commands slotless answers.

Error texts are Redis 7.0.15's own (checked against a `requirepass` server). Replies are
read over raw sockets so the exact bytes, their order and their absence (CLIENT REPLY) show.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis

from conf.schema import AuthConfig, UserConfig
from proxy.localcluster import RedisProcess
from routing.resp import pack_command, reply_end
from tests.integration.conftest import Cluster
from tests.integration.proxy_thread import ProxyThread, proxy_config
from tests.waiting import wait_until

AUTH = AuthConfig(
    password="top-secret",
    users=(
        UserConfig("app", "app-pw"),
        UserConfig("reader", "read-pw", ("+@read", "+@connection", "+@transaction")),
    ),
)
NOAUTH = b"-NOAUTH Authentication required.\r\n"
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
HELLO_NOAUTH = (
    b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the "
    b"HELLO AUTH <user> <pass> option can be used to authenticate the client and select "
    b"the RESP protocol version at the same time\r\n"
)


def noperm(name: str) -> bytes:
    return f"-NOPERM this user has no permissions to run the '{name}' command\r\n".encode()


class Raw:
    """One client connection speaking RESP by hand."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def run(self, *commands: str) -> list[bytes]:
        """Send every command in one write (a pipeline), return one reply each."""
        self.send(*commands)
        return [self.read() for _ in commands]

    def send(self, *commands: str) -> None:
        self.sock.sendall(b"".join(pack_command([a.encode() for a in c.split()]) for c in commands))

    def read(self) -> bytes:
        while (end := reply_end(self.buf)) < 0:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.buf += data
        reply, self.buf = self.buf[:end], self.buf[end:]
        return reply

    def closed(self) -> bool:
        self.sock.settimeout(5)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module", params=["cluster", "standalone"])
def proxy(
    request: pytest.FixtureRequest, redis_cluster: Cluster, redis_standalone: RedisProcess
) -> Iterator[ProxyThread]:
    nodes = redis_cluster.seeds[:1] if request.param == "cluster" else [redis_standalone.addr]
    with ProxyThread(proxy_config(request.param, nodes, auth=AUTH)) as running:
        yield running


@pytest.fixture(scope="module")
def open_proxy(redis_cluster: Cluster) -> Iterator[ProxyThread]:
    """Cluster mode without `auth:`."""
    with ProxyThread(proxy_config("cluster", redis_cluster.seeds[:1])) as running:
        yield running


@pytest.fixture
def raw(proxy: ProxyThread) -> Iterator[Raw]:
    client = Raw(proxy.port)
    yield client
    client.close()


def test_everything_but_auth_needs_authentication(raw: Raw) -> None:
    assert raw.run("GET k", "PING", "CLIENT ID", "SELECT 0", "HELLO 3") == [
        NOAUTH,
        NOAUTH,
        NOAUTH,
        NOAUTH,
        HELLO_NOAUTH,
    ]
    # As in Redis, unknown commands and wrong arities are reported before NOAUTH.
    assert raw.run("NOSUCH x", "GET", "AUTH", "AUTH a b c") == [
        b"-ERR unknown command 'NOSUCH', with args beginning with: 'x' \r\n",
        b"-ERR wrong number of arguments for 'get' command\r\n",
        b"-ERR wrong number of arguments for 'auth' command\r\n",
        b"-ERR syntax error\r\n",
    ]
    assert raw.run("QUIT") == [b"+OK\r\n"]
    assert raw.closed()


def test_wrong_passwords(raw: Raw) -> None:
    assert raw.run(
        "AUTH nope", "AUTH app nope", "AUTH ghost app-pw", "HELLO 3 AUTH app nope", "GET k"
    ) == [WRONGPASS, WRONGPASS, WRONGPASS, WRONGPASS, NOAUTH]


def test_auth_password_then_pipelined_commands_see_it(raw: Raw) -> None:
    # One write: the requests after AUTH are served as the authenticated user, in order.
    assert raw.run("GET auth:k", "AUTH top-secret", "SET auth:k v", "GET auth:k") == [
        NOAUTH,
        b"+OK\r\n",
        b"+OK\r\n",
        b"$1\r\nv\r\n",
    ]


def test_auth_user_and_failed_auth_keeps_user(raw: Raw) -> None:
    assert raw.run("AUTH app app-pw", "SET auth:u 1", "AUTH app bad", "INCR auth:u") == [
        b"+OK\r\n",
        b"+OK\r\n",
        WRONGPASS,
        b":2\r\n",
    ]


def test_hello_auth_switches_protocol(raw: Raw) -> None:
    reply = raw.run("HELLO 3 AUTH app app-pw")[0]
    assert reply.startswith(b"%7\r\n$6\r\nserver\r\n")
    assert b"proto\r\n:3\r\n" in reply
    assert raw.run("GET auth:none") == [b"_\r\n"]  # RESP3 null


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_username_password(proxy: ProxyThread, protocol: int) -> None:
    with redis.Redis(
        port=proxy.port, username="app", password="app-pw", protocol=protocol
    ) as client:
        client.set("auth:py", "x")
        assert client.get("auth:py") == b"x"
    with redis.Redis(port=proxy.port, password="top-secret", protocol=protocol) as client:
        assert client.get("auth:py") == b"x"
    with (
        redis.Redis(port=proxy.port, username="app", password="bad", protocol=protocol) as bad,
        pytest.raises(redis.AuthenticationError),
    ):
        bad.ping()


def test_read_only_user(raw: Raw) -> None:
    assert raw.run("AUTH app app-pw", "SET auth:ro before") == [b"+OK\r\n", b"+OK\r\n"]
    assert raw.run(
        "AUTH reader read-pw", "GET auth:ro", "SET auth:ro after", "CONFIG GET maxmemory"
    ) == [b"+OK\r\n", b"$6\r\nbefore\r\n", noperm("set"), noperm("config|get")]
    assert raw.run("AUTH app app-pw", "GET auth:ro") == [b"+OK\r\n", b"$6\r\nbefore\r\n"]


def test_a_refused_command_aborts_the_transaction(raw: Raw) -> None:
    """Both modes (cluster: slotless's own transaction; standalone: the client's pipe)."""
    assert raw.run(
        "AUTH reader read-pw", "MULTI", "GET auth:tx", "SET auth:tx 1", "EXEC", "GET auth:tx"
    ) == [
        b"+OK\r\n",
        b"+OK\r\n",
        b"+QUEUED\r\n",
        noperm("set"),
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
        b"$-1\r\n",
    ]


def test_reset_deauthenticates(raw: Raw) -> None:
    assert raw.run("AUTH app app-pw", "SET auth:r 1", "RESET", "GET auth:r") == [
        b"+OK\r\n",
        b"+OK\r\n",
        b"+RESET\r\n",
        NOAUTH,
    ]
    assert raw.run("AUTH top-secret", "GET auth:r") == [b"+OK\r\n", b"$1\r\n1\r\n"]


def test_standalone_piped_client_still_checked(redis_standalone: RedisProcess) -> None:
    """MULTI gives the client its own upstream connection; slotless still refuses, in order,
    and a refused command aborts the transaction as in Redis."""
    with ProxyThread(proxy_config("standalone", [redis_standalone.addr], auth=AUTH)) as proxy:
        raw = Raw(proxy.port)
        assert raw.run(
            "AUTH reader read-pw", "MULTI", "GET auth:p", "SET auth:p 1", "EXEC", "GET auth:p"
        ) == [
            b"+OK\r\n",
            b"+OK\r\n",
            b"+QUEUED\r\n",
            noperm("set"),
            b"-EXECABORT Transaction discarded because of previous errors.\r\n",
            b"$-1\r\n",
        ]
        try:
            assert raw.run(
                "RESET", "GET auth:p", "AUTH app app-pw", "SET auth:p 2", "GET auth:p"
            ) == [b"+RESET\r\n", NOAUTH, b"+OK\r\n", b"+OK\r\n", b"$1\r\n2\r\n"]
        finally:
            raw.close()


# -- CLIENT subcommands (cluster mode: slotless's own clients) --------------------------------


def test_client_kill_id_closes_the_other_client(open_proxy: ProxyThread) -> None:
    killer, victim = Raw(open_proxy.port), Raw(open_proxy.port)
    victim_id = int(victim.run("CLIENT ID")[0][1:-2])
    assert killer.run(f"CLIENT KILL ID {victim_id}") == [b":1\r\n"]
    assert victim.closed()
    assert killer.run(f"CLIENT KILL ID {victim_id}", "PING") == [b":0\r\n", b"+PONG\r\n"]
    killer.close()
    victim.close()


def test_client_kill_filters(open_proxy: ProxyThread) -> None:
    me, other = Raw(open_proxy.port), Raw(open_proxy.port)
    other.run("PING")
    other_addr = f"127.0.0.1:{other.sock.getsockname()[1]}"
    my_id = int(me.run("CLIENT ID")[0][1:-2])
    assert me.run(
        "CLIENT KILL ADDR 1.2.3.4:5",
        "CLIENT KILL 1.2.3.4:5",
        "CLIENT KILL ID 0",
        "CLIENT KILL TYPE nope",
        "CLIENT KILL USER nobody",
        "CLIENT KILL SKIPME maybe",
        f"CLIENT KILL ID {my_id}",  # SKIPME yes is the default
        f"CLIENT KILL {other_addr}",
    ) == [
        b":0\r\n",
        b"-ERR No such client\r\n",
        b"-ERR client-id should be greater than 0\r\n",
        b"-ERR Unknown client type 'nope'\r\n",
        b"-ERR No such user 'nobody'\r\n",
        b"-ERR syntax error\r\n",
        b":0\r\n",
        b"+OK\r\n",
    ]
    assert other.closed()
    assert me.run(f"CLIENT KILL ID {my_id} SKIPME no") == [b":1\r\n"]
    assert me.closed()
    me.close()
    other.close()


def test_client_list_and_info(open_proxy: ProxyThread, redis_standalone: RedisProcess) -> None:
    a, b = Raw(open_proxy.port), Raw(open_proxy.port)
    a.run("CLIENT SETNAME alpha")
    b_id = int(b.run("CLIENT ID")[0][1:-2])
    listed = a.run(f"CLIENT LIST ID {b_id}")[0]
    assert listed.count(b"id=") == 1 and b"id=%d " % b_id in listed
    normal = a.run("CLIENT LIST TYPE normal")[0]
    assert b"name=alpha " in normal and b"id=%d " % b_id in normal
    assert a.run("CLIENT LIST TYPE pubsub", "CLIENT LIST TYPE x", "CLIENT LIST ID x") == [
        b"$0\r\n\r\n",
        b"-ERR Unknown client type 'x'\r\n",
        b"-ERR Invalid client ID\r\n",
    ]
    ours = _fields(a.run("CLIENT INFO")[0])
    direct = Raw(redis_standalone.port)
    theirs = _fields(direct.run("CLIENT INFO")[0])
    assert set(theirs) <= set(ours)  # every field Redis 7.0 shows, same order first
    assert list(ours)[: len(theirs)] == list(theirs)
    assert ours["name"] == "alpha" and ours["cmd"] == "client|info" and ours["user"] == "default"
    for client in (a, b, direct):
        client.close()


@pytest.mark.parametrize(
    ("script", "flags", "counts"),
    [
        ([], "N", "0 0 0 -1"),
        (["MULTI"], "x", "0 0 0 0"),
        (["MULTI", "SET flags:k 1", "GET flags:k"], "x", "0 0 0 2"),
        (["MULTI", "SET flags:k 1", "EXEC"], "N", "0 0 0 -1"),
        (["WATCH flags:k"], "N", "0 0 0 -1"),  # WATCH alone is no MULTI
        (["SUBSCRIBE flags:ch"], "P", "1 0 0 -1"),
        (["SUBSCRIBE flags:a flags:b", "PSUBSCRIBE flags:*"], "P", "2 1 0 -1"),
        (["SSUBSCRIBE flags:s"], "P", "0 0 1 -1"),
        (["HELLO 3", "SUBSCRIBE flags:ch", "MULTI", "PING"], "Px", "1 0 0 1"),
        (["BLPOP flags:list 0"], "b", "0 0 0 -1"),  # no reply: the client waits
        (["BLPOP flags:list 0.01"], "N", "0 0 0 -1"),  # timed out (read below)
    ],
)
def test_client_list_flags_like_redis(
    open_proxy: ProxyThread,
    redis_standalone: RedisProcess,
    script: list[str],
    flags: str,
    counts: str,
) -> None:
    """flags=, sub=, psub=, ssub= and multi= of another client in each state, as slotless
    shows them and Redis itself does."""
    want = f"{flags} {counts}"
    for port in (open_proxy.port, redis_standalone.port):
        client, watcher = Raw(port), Raw(port)
        client_id = int(client.run("CLIENT ID")[0][1:-2])
        for line in script:
            client.send(line)
            if not line.endswith(" 0"):  # BLPOP ... 0 waits for good
                for _ in line.split()[1:] if "SUBSCRIBE" in line else [line]:
                    client.read()  # one confirmation per channel

        def listed(client_id: int = client_id, watcher: Raw = watcher) -> str:
            fields = _fields(watcher.run(f"CLIENT LIST ID {client_id}")[0])
            return " ".join(fields[k] for k in ("flags", "sub", "psub", "ssub", "multi"))

        wait_until(lambda: listed() == want, 5, lambda: f"want {want}, not {listed()}")
        client.close()
        watcher.close()


def _fields(reply: bytes) -> dict[str, str]:
    line = reply.split(b"\r\n", 1)[1].rstrip(b"\r\n").decode()
    return dict(item.split("=", 1) for item in line.split(" "))


REPLY_SCRIPT = [
    "SET reply:k 1",
    "CLIENT REPLY OFF",
    "INCR reply:k",
    "GET reply:k",
    "CLIENT REPLY ON",
    "GET reply:k",
    "CLIENT REPLY SKIP",
    "INCR reply:k",
    "GET reply:k",
    "CLIENT REPLY maybe",
    "CLIENT NO-EVICT on",
    "CLIENT NO-EVICT maybe",
]


def _replies(port: int) -> list[bytes]:
    client = Raw(port)
    client.send(*REPLY_SCRIPT)
    client.send("PING")  # the last reply: nothing muted is still on its way after it
    out = []
    while (reply := client.read()) != b"+PONG\r\n":
        out.append(reply)
    client.close()
    return out


def test_client_reply_off_on_skip_like_redis(
    open_proxy: ProxyThread, redis_standalone: RedisProcess
) -> None:
    expected = [
        b"+OK\r\n",  # SET
        b"+OK\r\n",  # CLIENT REPLY ON
        b"$1\r\n2\r\n",
        b"$1\r\n3\r\n",  # after SKIP muted INCR's reply
        b"-ERR syntax error\r\n",
        b"+OK\r\n",
        b"-ERR syntax error\r\n",
    ]
    assert _replies(redis_standalone.port) == expected
    assert _replies(open_proxy.port) == expected


def test_client_reply_off_with_auth(raw: Raw) -> None:
    """Standalone mode: CLIENT REPLY runs on the client's own upstream connection, which
    mutes slotless's NOPERM too (it travels as that connection's reply)."""
    raw.send("AUTH reader read-pw", "CLIENT REPLY OFF", "SET reply:x 1", "CLIENT REPLY ON")
    assert [raw.read(), raw.read()] == [b"+OK\r\n", b"+OK\r\n"]  # the NOPERM was muted too
    assert raw.run("RESET", "GET reply:x") == [b"+RESET\r\n", NOAUTH]


def test_no_auth_section_keeps_passwordless_answers(open_proxy: ProxyThread) -> None:
    raw = Raw(open_proxy.port)
    assert raw.run("AUTH x", "AUTH default x", "GET auth:none", "RESET", "PING") == [
        b"-ERR AUTH <password> called without any password configured for the default user. "
        b"Are you sure your configuration is correct?\r\n",
        b"+OK\r\n",
        b"$-1\r\n",
        b"+RESET\r\n",
        b"+PONG\r\n",
    ]
    raw.close()
