"""Configs and fixtures shared by the sentinel-mode tests (issue 15)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from conf import Address, Config, LimitsConfig, UpstreamConfig
from tests.integration.proxy_thread import ProxyThread


def sentinel_config(sentinels: Sequence[str], admin: bool = False, **upstream: Any) -> Config:
    addrs = tuple(Address(h, int(p)) for h, _, p in (s.rpartition(":") for s in sentinels))
    upstream.setdefault("reconnect_backoff_max", 0.2)
    config = Config(
        listen=Address("127.0.0.1", 0),
        upstream=UpstreamConfig(mode="sentinel", sentinels=addrs, **upstream),
        limits=LimitsConfig(),
    )
    return dataclasses.replace(config, admin=Address("127.0.0.1", 0)) if admin else config


def sentinel_proxy(sentinels: Sequence[str], admin: bool = False, **upstream: Any) -> ProxyThread:
    return ProxyThread(sentinel_config(sentinels, admin, **upstream))


def primary_of(proxy: ProxyThread) -> str | None:
    state = proxy.server.state
    assert state is not None
    return state.topology.primary


def admin_port(proxy: ProxyThread) -> int:
    address = proxy.server.admin_address
    assert address is not None
    return address[1]


def sessions(proxy: ProxyThread) -> set[tuple[int, str]]:
    """slotless's client sessions now, as (client id, peer address)."""
    state = proxy.server.state
    assert state is not None
    return {(s.id, s.peer) for s in state.sessions}
