"""Run slotless in-process on its own uvloop thread, so blocking clients can test it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import uvloop

from conf import Address, Config, LimitsConfig, UpstreamConfig
from conf.schema import AuthConfig
from proxy.server import Server

T = TypeVar("T")


def proxy_config(
    mode: str, nodes: Sequence[str], auth: AuthConfig | None = None, **upstream: Any
) -> Config:
    addrs = tuple(Address(h, int(p)) for h, _, p in (n.rpartition(":") for n in nodes))
    return Config(
        listen=Address("127.0.0.1", 0),
        upstream=UpstreamConfig(mode=mode, nodes=addrs, **upstream),  # type: ignore[arg-type]
        limits=LimitsConfig(),
        auth=auth,
    )


class ProxyThread:
    """slotless on 127.0.0.1:<free port>, served from a background thread."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.server = Server(config)
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    def start(self) -> ProxyThread:
        self._thread.start()
        _, self.port = self.call(self.server.start())
        return self

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        try:
            self.call(self.server.stop(deadline=2.0))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    def __enter__(self) -> ProxyThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
