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
# networking.c helloCommand, clientSetNameOrReply, clientSetinfoCommand (7.2); acl.c
PROTOVER_NOT_INTEGER: Final = ErrorReply("ERR Protocol version is not an integer or out of range")
HELLO_NOAUTH: Final = ErrorReply(
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
    "HELLO AUTH <user> <pass> option can be used to authenticate the client and select "
    "the RESP protocol version at the same time"
)
WRONGPASS: Final = ErrorReply("WRONGPASS invalid username-password pair or user is disabled.")
BAD_CLIENT_NAME: Final = ErrorReply(
    "ERR Client names cannot contain spaces, newlines or special characters."
)
BAD_LIB_NAME: Final = ErrorReply(
    "ERR lib-name cannot contain spaces, newlines or special characters."
)


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


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")
