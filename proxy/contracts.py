"""What the features (auth, blocking, pipe, pubsub, txn, fanout) may use of a session and
of the server: `SessionLike` and `ServerContext`, as typing Protocols.

ClientSession and ServerState satisfy them structurally; features never import
proxy/session.py, proxy/local.py or proxy/server.py, so imports only go down (issue 12).
This module imports nothing above proxy/dispatch.py, and holds no state or logic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

from conf import Config
from proxy.dispatch import Dispatcher
from proxy.pool import UpstreamPool
from proxy.topology import Topology
from routing.client import ClientState, Hello
from routing.resp import Args


class Entry(Protocol):
    """One place in a client's reply queue: ready once `reply` is not None."""

    reply: bytes | None


class Interceptor(Protocol):
    """Per-client state that sees each request before the router (transaction, pub/sub,
    authentication). `intercept` returns True when it has queued the request's reply."""

    def intercept(self, args: Args) -> bool: ...


class PipeLike(Protocol):
    """A standalone client's own upstream connection (proxy/pipe.py)."""

    def send_args(self, args: Args) -> None: ...

    def inject(self, reply: bytes) -> None: ...


class LocalLike(Protocol):
    """The connection commands a session answers itself (proxy/local.py LocalCommands)."""

    @property
    def laddr(self) -> str: ...

    @property
    def server_version(self) -> bytes: ...

    def hello_needs_pipe(self, hello: Hello) -> bool: ...

    def start_pipe(self, args: Args) -> None: ...

    def info_line(self) -> bytes: ...


class SessionLike(Protocol):
    """One downstream client, as features see it (proxy/session.py ClientSession)."""

    resp3: bool
    flush_scheduled: bool
    # Whoever sets or clears one of these calls update_detour().
    acl: Interceptor | None
    txn: Interceptor | None
    pubsub: Interceptor | None
    tracking: Interceptor | None

    @property
    def id(self) -> int: ...

    @property
    def peer(self) -> str: ...

    @property
    def last_active(self) -> float: ...

    @property
    def pipe(self) -> PipeLike | None: ...

    @property
    def local(self) -> LocalLike: ...

    @property
    def client(self) -> ClientState: ...

    @property
    def transport(self) -> asyncio.Transport | None: ...

    @property
    def closed(self) -> bool: ...

    @property
    def queued_entries(self) -> Sequence[Entry]: ...

    def handle(self, args: Args) -> None: ...

    def serve(self, requests: list[Args]) -> None: ...

    def forward(self, args: Args, slot: int) -> None: ...

    def reply(self, raw: bytes) -> None: ...

    def queue_reply_entry(self, entry: Entry) -> None: ...

    def replace_entries(self, start: int, wrap: Callable[[Entry], Entry]) -> None: ...

    def on_ready(self) -> None: ...

    def on_close(self, closer: Callable[[], None]) -> None: ...

    def update_detour(self) -> None: ...

    def start_pipe(self, args: Args) -> None: ...

    def close_after_replies(self) -> None: ...

    def abort(self) -> None: ...


class ServerContext(Protocol):
    """What every session shares (proxy/server.py ServerState), as features see it."""

    @property
    def config(self) -> Config: ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def topology(self) -> Topology: ...

    @property
    def pool(self) -> UpstreamPool: ...

    @property
    def dispatcher(self) -> Dispatcher: ...

    def track(self, task: asyncio.Task[Any]) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None: ...
