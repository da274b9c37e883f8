"""SSLContexts made from the config: the listener's (server side) and the nodes' (client side).

Built once at startup from files conf/ has already checked. Also turns the ssl module's
exceptions into the short reasons that logs and client errors show. Opens no connection.
"""

from __future__ import annotations

import ssl
from typing import Any

from conf.schema import TLSConfig, UpstreamTLSConfig
from routing import replies

# A client that connects and never finishes its handshake (or speaks plain RESP to the TLS
# port and waits) is closed after this long, not asyncio's default 60 s.
HANDSHAKE_TIMEOUT = 10.0


def server_context(config: TLSConfig) -> ssl.SSLContext:
    """The listener's context: its certificate; client certificates checked against `ca`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.cert, config.key)
    if config.ca is not None:
        context.load_verify_locations(cafile=config.ca)
        context.verify_mode = ssl.CERT_REQUIRED if config.require_client_cert else ssl.CERT_OPTIONAL
    return context


def listener_tls_args(config: TLSConfig | None) -> dict[str, Any]:
    """create_server()'s TLS arguments: none for a plain listener."""
    if config is None:
        return {}
    return {"ssl": server_context(config), "ssl_handshake_timeout": HANDSHAKE_TIMEOUT}


class UpstreamTLS:
    """The nodes' context and the name each connection checks (and sends as SNI)."""

    __slots__ = ("context", "server_name")

    def __init__(self, config: UpstreamTLSConfig) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if config.ca is not None:
            context.load_verify_locations(cafile=config.ca)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if config.cert is not None:
            context.load_cert_chain(config.cert, config.key)
        context.check_hostname = config.verify_hostname
        self.context = context
        self.server_name = config.server_name

    def connect_args(self, host: str) -> dict[str, Any]:
        """create_connection()'s TLS arguments for a node announced as `host`."""
        return {"ssl": self.context, "server_hostname": self.server_name or host}


def upstream_tls(config: UpstreamTLSConfig | None) -> UpstreamTLS | None:
    return None if config is None else UpstreamTLS(config)


def failure_reason(exc: BaseException, tls: bool = False) -> str:
    """Why a connect or a connection failed, in words: the TLS verdict when TLS failed.
    `tls`: the connect included a TLS handshake (a timeout may be the handshake's)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return replies.tls_failed(f"certificate verify failed: {exc.verify_message}")
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        if reason == "WRONG_VERSION_NUMBER":
            reason += ", is the node's port plain TCP?"
        return replies.tls_failed(reason)
    if isinstance(exc, TimeoutError):
        return replies.TLS_CONNECT_TIMED_OUT if tls else "connect timed out"
    if isinstance(exc, OSError):
        return f"connect failed ({exc.strerror or exc})"
    return f"connect failed ({exc})"
