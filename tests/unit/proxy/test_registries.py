"""The features' registries belong to one ServerState each, not to their modules (issue 12)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from conf import Config
from proxy.server import ServerState
from proxy.txn import HeldConnections


class FakeConn:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeSession:
    def __init__(self) -> None:
        self.closers: list[Callable[[], None]] = []

    def on_close(self, closer: Callable[[], None]) -> None:
        self.closers.append(closer)

    def hang_up(self) -> None:
        for closer in self.closers:
            closer()


def test_held_connections_close_with_their_client() -> None:
    held = HeldConnections()
    session, other = FakeSession(), FakeSession()
    first, second, third = FakeConn(), FakeConn(), FakeConn()
    held.hold(session, first)  # type: ignore[arg-type]
    held.hold(session, second)  # type: ignore[arg-type]
    held.hold(other, third)  # type: ignore[arg-type]
    assert len(session.closers) == 1  # one hook per client, not per connection
    held.release(session, first)  # type: ignore[arg-type]
    assert first.closed and not second.closed
    session.hang_up()
    assert second.closed and not third.closed
    other.hang_up()
    assert third.closed


async def test_each_server_state_owns_its_registries() -> None:
    loop = asyncio.get_running_loop()
    one, two = ServerState(Config(), loop), ServerState(Config(), loop)
    try:
        assert one.blocked is not two.blocked
        assert one.blocked.links is not two.blocked.links
        assert one.held is not two.held
        assert one.hub is None  # no pub/sub until a client subscribes
        hub = one.pubsub_hub()
        assert one.pubsub_hub() is hub and one.hub is hub
        assert two.hub is None
    finally:
        await one.aclose()
        await two.aclose()
