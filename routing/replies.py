"""Every error and status text slotless itself produces, in one place (Envoy ResponseValues).

Texts that Redis also produces are copied from Redis 7.0 verbatim, prefix included, because
clients match on them. Nothing here decides when to send them.
"""

from typing import Final

from routing.resp import ErrorReply

CROSSSLOT: Final = ErrorReply("CROSSSLOT Keys in request don't hash to the same slot")
SLOT_NOT_SERVED: Final = ErrorReply("CLUSTERDOWN Hash slot not served")
CLUSTER_DISABLED: Final = ErrorReply("ERR This instance has cluster support disabled")
SELECT_CLUSTER: Final = ErrorReply("ERR SELECT is not allowed in cluster mode")
DB_INDEX_RANGE: Final = ErrorReply("ERR DB index is out of range")
NOT_INTEGER: Final = ErrorReply("ERR value is not an integer or out of range")
SYNTAX: Final = ErrorReply("ERR syntax error")
MAX_CLIENTS: Final = ErrorReply("ERR max number of clients reached")
NO_TOPOLOGY: Final = ErrorReply("CLUSTERDOWN slotless has no slot map yet (no seed node reachable)")
INTERNAL: Final = ErrorReply("ERR internal proxy error")
INVALID_CURSOR: Final = ErrorReply("ERR invalid cursor")  # db.c parseScanCursorOrReply
NODE_CURSOR_RANGE: Final = ErrorReply("ERR slotless cannot encode this node's SCAN cursor")
UNEXPECTED_SPLIT: Final = ErrorReply("ERR upstream returned an unexpected reply to a split command")
UNEXPECTED_FANOUT: Final = ErrorReply(
    "ERR upstream returned an unexpected reply to a fan-out command"
)
NOPROTO: Final = ErrorReply("NOPROTO unsupported protocol version")
# The start of every upstream_error(): tells slotless's own "node failed" reply from a node's.
UPSTREAM_ERROR_PREFIX: Final = b"-ERR upstream "
TOO_MANY_BLOCKED: Final = ErrorReply("ERR slotless: too many blocked clients")

# server.c / acl.c / networking.c (AUTH, HELLO, CLIENT).
NOAUTH: Final = ErrorReply("NOAUTH Authentication required.")
WRONGPASS: Final = ErrorReply("WRONGPASS invalid username-password pair or user is disabled.")
HELLO_NOAUTH: Final = ErrorReply(
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
    "HELLO AUTH <user> <pass> option can be used to authenticate the client and select "
    "the RESP protocol version at the same time"
)
AUTH_NO_PASSWORD: Final = ErrorReply(
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?"
)
PROTOCOL_VERSION: Final = ErrorReply("ERR Protocol version is not an integer or out of range")
BAD_CLIENT_NAME: Final = ErrorReply(
    "ERR Client names cannot contain spaces, newlines or special characters."
)
BAD_LIB_NAME: Final = ErrorReply(
    "ERR lib-name cannot contain spaces, newlines or special characters."
)
NO_SUCH_CLIENT: Final = ErrorReply("ERR No such client")
INVALID_CLIENT_ID: Final = ErrorReply("ERR Invalid client ID")
CLIENT_ID_RANGE: Final = ErrorReply("ERR client-id should be greater than 0")
# networking.c clientCommand / tracking.c: CLIENT TRACKING and CLIENT CACHING.
TRACKING_ONE_REDIRECT: Final = ErrorReply("ERR A client can only redirect to a single other client")
TRACKING_NO_REDIRECT_CLIENT: Final = ErrorReply(
    "ERR The client ID you want redirect to does not exist"
)
TRACKING_PREFIX_NEEDS_BCAST: Final = ErrorReply(
    "ERR PREFIX option requires BCAST mode to be enabled"
)
TRACKING_SWITCH_BCAST: Final = ErrorReply(
    "ERR You can't switch BCAST mode on/off before disabling tracking for this client, and "
    "then re-enabling it with a different mode."
)
TRACKING_BCAST_OPTIN: Final = ErrorReply("ERR OPTIN and OPTOUT are not compatible with BCAST")
TRACKING_OPTIN_OPTOUT: Final = ErrorReply("ERR You can't specify both OPTIN mode and OPTOUT mode")
TRACKING_SWITCH_OPTIN: Final = ErrorReply(
    "ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and "
    "then re-enabling it with a different mode."
)
CACHING_NOT_TRACKING: Final = ErrorReply(
    "ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or "
    "OPTOUT mode enabled"
)
CACHING_YES_NOT_OPTIN: Final = ErrorReply(
    "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode."
)
CACHING_NO_NOT_OPTOUT: Final = ErrorReply(
    "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode."
)
# slotless: invalidations come from the primaries, and a replica that lags would let a
# client cache a value older than the write it was told about.
TRACKING_REPLICA_READS: Final = ErrorReply(
    "ERR slotless: CLIENT TRACKING needs upstream.read_from: primary (a value read from a "
    "replica that lags could stay cached after its invalidation)"
)

# multi.c / server.c (MULTI, EXEC, DISCARD, WATCH).
NESTED_MULTI: Final = ErrorReply("ERR MULTI calls can not be nested")
EXEC_WITHOUT_MULTI: Final = ErrorReply("ERR EXEC without MULTI")
DISCARD_WITHOUT_MULTI: Final = ErrorReply("ERR DISCARD without MULTI")
WATCH_INSIDE_MULTI: Final = ErrorReply("ERR WATCH inside MULTI is not allowed")
EXECABORT: Final = ErrorReply("EXECABORT Transaction discarded because of previous errors.")
NOT_IN_MULTI: Final = ErrorReply("ERR Command not allowed inside a transaction")


def wrong_arity(name: bytes) -> ErrorReply:
    """server.c processCommand: arity check."""
    return ErrorReply(f"ERR wrong number of arguments for '{_text(name.lower())}' command")


def unknown_command(args: list[bytes]) -> ErrorReply:
    """server.c processCommand: echoes the arguments, 128 bytes at most in all."""
    shown = ""
    for arg in args[1:]:
        if len(shown) >= 128:
            break
        shown += f"'{_text(arg[: 128 - len(shown)])}' "
    return ErrorReply(
        f"ERR unknown command '{_text(args[0][:128])}', with args beginning with: {shown}"
    )


def unknown_subcommand(name: bytes, sub: bytes) -> ErrorReply:
    return ErrorReply(
        f"ERR unknown subcommand '{_text(sub[:128])}'. Try {_text(name.upper())} HELP."
    )


def hello_syntax(option: bytes) -> ErrorReply:
    """networking.c helloCommand: echoes the option as the client wrote it."""
    return ErrorReply(f"ERR Syntax error in HELLO option '{_text(option)}'")


def unrecognized_option(option: bytes) -> ErrorReply:
    """networking.c clientSetinfoCommand (7.2)."""
    return ErrorReply(f"ERR Unrecognized option '{_text(option)}'")


def unsupported(name: bytes, why: str) -> ErrorReply:
    """A command slotless cannot serve in this mode; the text says why."""
    return ErrorReply(f"ERR '{_text(name.upper())}' is not supported by slotless {why}")


def disabled(name: bytes) -> ErrorReply:
    """A command the operator's `deny_commands` list refuses (conf/schema.py)."""
    return ErrorReply(f"ERR command '{_text(name.upper())}' is disabled by slotless configuration")


def upstream_error(node: str, what: str) -> ErrorReply:
    """A node failed while serving a command; name the node so operators can find it."""
    return ErrorReply(f"ERR upstream {node} {what}")


# RequestReader's error (protocol_error() words the reply) for a TLS ClientHello on a plain port.
TLS_ON_PLAIN_PORT: Final = "TLS handshake received, but this slotless port is plain TCP (no tls)"


# Sentinel mode (issue 15): no primary to send to. MASTERDOWN, as a replica says when its
# primary is gone; the prefix lets proxy/dispatch.py count these as slotless's own errors.
NO_PRIMARY_PREFIX: Final = b"-MASTERDOWN slotless "


def no_primary(master_name: str, why: str) -> ErrorReply:
    """No primary confirmed for the sentinels' group `master_name`, and why."""
    return ErrorReply(f'MASTERDOWN slotless has no primary for "{master_name}": {why}')


def failover_in_progress(master_name: str) -> ErrorReply:
    """A failover of `master_name` is running (a request that cannot wait for its end)."""
    return ErrorReply(f'MASTERDOWN slotless is waiting for the failover of "{master_name}"')


def failover_timed_out(master_name: str, seconds: float) -> ErrorReply:
    """The failover of `master_name` did not bring a new primary within switch_timeout."""
    return ErrorReply(
        f'MASTERDOWN slotless has no primary for "{master_name}": a failover started'
        f" and no new primary was confirmed within {seconds:g}s (upstream.switch_timeout)"
    )


def no_topology(node: str, reason: str) -> ErrorReply:
    """NO_TOPOLOGY with why the last seed tried failed (a TLS verdict, a refused connect)."""
    return ErrorReply(
        f"CLUSTERDOWN slotless has no slot map yet (no seed node reachable; {node}: {reason})"
    )


# A TLS connect that timed out: a plain-TCP node reads a ClientHello as an unfinished command.
TLS_CONNECT_TIMED_OUT: Final = (
    "connect timed out (TCP or the TLS handshake; is the node's port plain TCP?)"
)


def tls_failed(reason: str) -> str:
    """The `what` of upstream_error() when the TLS handshake with a node failed (proxy/tls.py):
    a wrong CA, an expired certificate, a name mismatch, a node that speaks plain TCP."""
    return f"TLS handshake failed ({reason})"


def noperm(fullname: bytes) -> ErrorReply:
    """server.c processCommand, ACL_DENIED_CMD (Redis 7.0 wording)."""
    return ErrorReply(f"NOPERM this user has no permissions to run the '{_text(fullname)}' command")


def no_such_user(name: bytes) -> ErrorReply:
    """networking.c clientCommand, CLIENT KILL USER."""
    return ErrorReply(f"ERR No such user '{_text(name)}'")


def prefix_overlap(prefix: bytes, other: bytes, existing: bool) -> ErrorReply:
    """tracking.c checkPrefixCollisionsOrReply: with an existing or another given prefix."""
    which = "an existing prefix" if existing else "another provided prefix"
    return ErrorReply(
        f"ERR Prefix '{_text(prefix)}' overlaps with {which} '{_text(other)}'. "
        "Prefixes for a single client must not overlap."
    )


def unknown_client_type(name: bytes) -> ErrorReply:
    """networking.c clientCommand, CLIENT LIST/KILL TYPE."""
    return ErrorReply(f"ERR Unknown client type '{_text(name)}'")


def unknown_command_start(name: bytes) -> bytes:
    """How a node's unknown-command error for `name` begins (server.c processCommand), to find
    it in a reply stream; bytes, since `name` must match exactly."""
    return b"-ERR unknown command '" + name + b"'"


def subscribed_state(fullname: bytes) -> ErrorReply:
    """server.c processCommand: a RESP2 client in subscribed state ran `fullname`."""
    return ErrorReply(
        f"ERR Can't execute '{_text(fullname)}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / "
        "QUIT / RESET are allowed in this context"
    )


def execabort_because(reason: bytes) -> bytes:
    """multi.c execCommandAbort; bytes, since `reason` is the node's own text, passed on as is."""
    return b"-EXECABORT Transaction discarded because of: " + reason + b"\r\n"


def txn_lost_before_exec(node: str) -> ErrorReply:
    """A transaction's connection failed before EXEC was sent: the node discarded it all."""
    return ErrorReply(
        f"ERR slotless: the connection to node {node} was lost before EXEC; nothing was applied"
    )


def txn_lost_in_exec(node: str, established: bool) -> ErrorReply:
    """EXEC's reply never came: applied or not is unknown once the request could be sent."""
    if not established:
        return ErrorReply(f"ERR slotless: could not connect to node {node}; nothing was applied")
    return ErrorReply(
        f"ERR slotless: the connection to node {node} was lost after EXEC was sent; "
        "the transaction may or may not have been applied"
    )


def txn_slot_moving(slot: int | None, code: str, outcome: str) -> ErrorReply:
    """A MOVED/ASK/TRYAGAIN/CLUSTERDOWN (`code`) inside a transaction, told to a client that
    sees one server: what happened, and what it means for the transaction (`outcome`)."""
    what = f"slot {slot} is moving between nodes" if slot is not None else "cluster is busy"
    return ErrorReply(f"ERR slotless: {what} ({code}); {outcome}")


def protocol_error(text: str) -> ErrorReply:
    """A client's framing error; `text` is routing/resp.py's "Protocol error: ..." wording."""
    return ErrorReply("ERR " + text)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")
