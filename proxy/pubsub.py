"""Pub/Sub in cluster mode: (P|S)SUBSCRIBE and their UNSUBSCRIBEs (issue 5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from routing import replies
from routing.resp import Args

if TYPE_CHECKING:
    from proxy.server import ServerState
    from proxy.session import ClientSession


def command(session: ClientSession, state: ServerState, name: bytes, args: Args) -> None:
    """Serve one request the router planned as Local(name) for this module."""
    session.reply(
        replies.unsupported(name, "in cluster mode yet (it needs per-connection state)").encode()
    )
