"""Typed configuration values: frozen, slotted dataclasses.

This module is the only place where defaults live; `conf/loader.py` parses and
validates YAML into these types and never states a default of its own.
Nothing here reads files or the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

Mode = Literal["cluster", "standalone", "sentinel"]
LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["console", "json"]
ReadFrom = Literal["primary", "prefer-replica", "replica", "any"]


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        # IPv6 literals need brackets, or the port would read as one more group.
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """TLS on the client listener (`tls:`); absent (Config.tls is None) means plain TCP.
    Paths to PEM files. With `ca`, client certificates signed by it are checked when sent;
    require_client_cert refuses clients that send none."""

    cert: str
    key: str
    ca: str | None = None
    require_client_cert: bool = False


@dataclass(frozen=True, slots=True)
class UpstreamTLSConfig:
    """TLS to every Redis node (`upstream.tls:`); absent means plain TCP.
    The nodes' certificates are always checked against `ca` (the system's CAs when it is
    unset). verify_hostname checks that a certificate names the node (a DNS name or IP
    SAN) as the slot map shows it, or `server_name` when set (also sent as SNI); turn it
    off only for clusters announced by IP whose certificates do not list those IPs.
    `cert`/`key`: a client certificate, for nodes that require one (tls-auth-clients)."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify_hostname: bool = True
    server_name: str | None = None


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    mode: Mode = "cluster"
    nodes: tuple[Address, ...] = ()
    username: str | None = None
    # repr=False keeps the secret out of logs and tracebacks that show the config.
    password: str | None = field(default=None, repr=False)
    connect_timeout: float = 1.0
    command_timeout: float = 5.0
    refresh_interval: float = 30.0
    max_redirects: int = 5
    retry_timeout: float = 2.0
    connections_per_node: int = 1
    # Upstream sockets notice a node that vanished silently (dead VM, cut network) within
    # about these many seconds, not the kernel's default of two hours. 0 turns one off.
    tcp_keepalive: float = 5.0  # idle time before the first keepalive probe
    tcp_user_timeout: float = 10.0  # unacknowledged data older than this kills the socket
    # Announced "host:port" -> reachable "host:port", for NAT, NodePort and multi-NIC
    # clusters; applied to every address learned from the cluster (slot maps, MOVED, ASK).
    address_map: tuple[tuple[str, str], ...] = ()
    # Cluster mode: where read-only commands go. primary | prefer-replica (replicas, the
    # primary when none is reachable) | replica (replicas while the map lists one) | any.
    read_from: ReadFrom = "primary"
    # Idle dedicated connections (those blocking commands borrow) kept open per node.
    max_idle_dedicated: int = 32
    # Slot map refreshes at most this often, however many MOVEDs ask for one.
    min_refresh_gap: float = 0.2
    # An unreachable node is tried again after reconnect_backoff, doubling up to
    # reconnect_backoff_max; pub/sub restores lost subscriptions likewise, up to
    # resubscribe_backoff_max.
    reconnect_backoff: float = 0.05
    reconnect_backoff_max: float = 1.0
    resubscribe_backoff_max: float = 2.0
    tls: UpstreamTLSConfig | None = None
    # -- sentinel mode (issue 15): the primary is whichever a majority of the sentinels
    # that answer name for master_name, confirmed by ROLE; `nodes` stays empty. --
    sentinels: tuple[Address, ...] = ()
    master_name: str = "mymaster"
    # The sentinels' own credentials (requirepass / ACL in sentinel.conf), not the nodes'.
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    # Once a failover has started, requests wait this long for the new primary (then get
    # an error); nothing is sent to the old primary meanwhile, so no acknowledged write
    # lands on a primary that is about to lose it.
    switch_timeout: float = 5.0

    @property
    def single_node(self) -> bool:
        """Standalone or sentinel: one primary, served as a standalone server is."""
        return self.mode != "cluster"


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    proto_max_bulk_len: int = 512 * 1024 * 1024
    max_multibulk_len: int = 2**31 - 1
    max_inline_len: int = 64 * 1024
    max_clients: int = 10000
    # Close a client idle this long (Redis's `timeout`); 0 = never. Clients blocked in a
    # command or subscribed to channels are not idle.
    client_idle_timeout: float = 0.0
    # Blocking commands (BLPOP, XREAD BLOCK, ...) waiting at once, over all clients; each
    # holds an upstream connection. Past this a blocking command gets an error at once.
    max_blocked_clients: int = 1024
    # Replies one client may be owed at once; past this slotless stops reading from it until
    # half are written, so a client that pipelines and never reads holds bounded memory.
    max_pending_replies: int = 1024
    # Messages queued for one subscriber that does not read; past this it is disconnected,
    # as Redis does past client-output-buffer-limit pubsub.
    max_pubsub_backlog: int = 100_000
    # CLIENT TRACKING: keys remembered for the clients that read them (Redis's
    # tracking-table-max-keys); past this the oldest are invalidated and forgotten. 0: no bound.
    tracking_table_max_keys: int = 1_000_000
    # Script bodies kept (least recently used dropped) so that EVALSHA never sees NOSCRIPT.
    script_cache_size: int = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: LogLevel = "info"
    format: LogFormat = "console"


@dataclass(frozen=True, slots=True)
class UserConfig:
    """One client login (`AUTH name password`); `commands` are Redis ACL-style rules
    ("+@read", "-flushall", "+config|get"), applied in order; empty allows everything."""

    name: str
    # repr=False keeps the secret out of logs and tracebacks that show the config.
    password: str = field(repr=False)
    commands: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Client authentication; absent (Config.auth is None) means clients need none.
    `password` is the "default" user's (`AUTH password`), allowed every command."""

    password: str | None = field(default=None, repr=False)
    users: tuple[UserConfig, ...] = ()


# Commands that stop, reconfigure or take over the servers behind slotless, or that
# would stream everything to one client: refused in both modes unless the config says so.
DEFAULT_DENY_COMMANDS: Final[tuple[str, ...]] = (
    "shutdown",
    "debug",
    "monitor",
    "replicaof",
    "slaveof",
    "failover",
    "cluster|addslots",
    "cluster|addslotsrange",
    "cluster|bumpepoch",
    "cluster|delslots",
    "cluster|delslotsrange",
    "cluster|failover",
    "cluster|flushslots",
    "cluster|forget",
    "cluster|meet",
    "cluster|replicate",
    "cluster|reset",
    "cluster|saveconfig",
    "cluster|set-config-epoch",
    "cluster|setslot",
)


@dataclass(frozen=True, slots=True)
class Config:
    listen: Address = Address("127.0.0.1", 6380)
    tls: TLSConfig | None = None  # on the listener
    upstream: UpstreamConfig = UpstreamConfig()
    limits: LimitsConfig = LimitsConfig()
    log: LogConfig = LogConfig()
    auth: AuthConfig | None = None
    workers: int = 1
    # Lowercase command names ("flushall") or container subcommands ("config|set").
    deny_commands: tuple[str, ...] = DEFAULT_DENY_COMMANDS
    # SIGTERM: how long in-flight commands may take to finish before clients are closed.
    shutdown_timeout: float = 10.0
    # -- operability (issue 14) --
    # The admin HTTP listener (/metrics, /livez, /readyz); None: off. With workers > 1 the
    # parent process serves it, for all workers.
    admin: Address | None = None
    # Requests slower than this many milliseconds are logged as `slow_request` (command
    # name, node, time; never the arguments); 0: off. While on, every request is timed.
    slowlog_threshold_ms: float = 0.0
    source: str | None = None
