"""Client authentication (`auth:` in the config) and per-client reply muting.

`Authenticator` is built once per config: users, secrets, compiled command rules.
`ClientGate` is one client's gate (who it is logged in as is `session.client`, a
routing/client.py ClientState), installed as `session.acl` only while it has work to do
(not yet authenticated, a user with rules, a standalone pipe whose RESET it must see, or
CLIENT REPLY OFF/SKIP); otherwise the hot path runs untouched. Secrets are compared with
hmac.compare_digest and never logged. Error texts are Redis 7.0's (server.c, acl.c).
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

import structlog

from conf.schema import AuthConfig
from proxy.contracts import Entry, ServerContext, SessionLike
from routing import replies
from routing.client import DEFAULT_USER, parse_hello
from routing.commands import CommandSpec, CommandTable
from routing.resp import OK, Args, ErrorReply, encode_status

log = structlog.get_logger("slotless.auth")

NOAUTH: Final = replies.NOAUTH.encode()
WRONGPASS: Final = replies.WRONGPASS.encode()
HELLO_NOAUTH: Final = replies.HELLO_NOAUTH.encode()
RESET: Final = encode_status(b"RESET")


def noperm(fullname: bytes) -> bytes:
    """server.c processCommand, ACL_DENIED_CMD (Redis 7.0 wording)."""
    return replies.noperm(fullname).encode()


# -- command rules ---------------------------------------------------------------------------

_ALL: Final = 0
_CATEGORY: Final = 1
_COMMAND: Final = 2


@dataclass(frozen=True, slots=True)
class Rule:
    allow: bool
    kind: int  # _ALL, _CATEGORY or _COMMAND
    value: bytes = b""  # category without "@", or "name" / "name|sub"


def compile_rules(rules: tuple[str, ...]) -> tuple[Rule, ...]:
    """ACL SETUSER command rules, already validated by conf/loader.py."""
    out: list[Rule] = []
    for text in rules:
        if text in ("allcommands", "nocommands"):
            out.append(Rule(text == "allcommands", _ALL))
        elif text[1:] == "@all":
            out.append(Rule(text[0] == "+", _ALL))
        elif text[1:2] == "@":
            out.append(Rule(text[0] == "+", _CATEGORY, text[2:].encode()))
        else:
            out.append(Rule(text[0] == "+", _COMMAND, text[1:].encode()))
    return tuple(out)


def rules_allow(rules: tuple[Rule, ...], fullname: bytes, categories: frozenset[bytes]) -> bool:
    """Whether `rules` let a user run `fullname` ("get", "config|set").

    Redis applies rules in order to a command bitmap (acl.c ACLSetUser); for one command
    that is "the last rule that matches it wins". `+config` matches every CONFIG subcommand,
    `+config|get` only that one; categories match by the command's own ACL categories.
    """
    parent = fullname.partition(b"|")[0]
    allowed = False
    for rule in rules:
        if (
            rule.kind == _ALL
            or (rule.kind == _CATEGORY and rule.value in categories)
            or (rule.kind == _COMMAND and rule.value in (fullname, parent))
        ):
            allowed = rule.allow
    return allowed


def _unrestricted(rules: tuple[Rule, ...]) -> bool:
    """No rules, or rules that end in "+@all" followed only by more allows."""
    if not rules:
        return True
    for rule in reversed(rules):
        if not rule.allow:
            return False
        if rule.kind == _ALL:
            return True
    return False


@dataclass(slots=True)
class User:
    name: bytes
    password: bytes = field(repr=False)
    rules: tuple[Rule, ...] = ()
    unrestricted: bool = True
    _table: CommandTable | None = None
    _decisions: dict[bytes, bool] = field(default_factory=dict)

    def may_run(self, table: CommandTable, args: Args) -> bytes | None:
        """None when allowed, else the NOPERM reply. Unknown commands and subcommands, and
        wrong arities, pass: the router or the server answers their errors (no execution)."""
        if self._table is not table:
            self._table = table
            self._decisions = {}
        spec = table.get(args[0])
        if spec is None:
            name = args[0].lower()
            allowed = rules_allow(self.rules, name, frozenset())
            return None if allowed else noperm(name)
        if spec.subcommands:
            if len(args) < 2:
                return None
            sub = spec.subcommands.get(args[1].lower())
            if sub is None:
                return None
            spec = sub
        decision = self._decisions.get(spec.name)
        if decision is None:
            decision = rules_allow(self.rules, spec.name, spec.acl_categories)
            self._decisions[spec.name] = decision
        return None if decision else noperm(spec.name)


class Authenticator:
    """The users of one `auth:` section; `check` compares secrets in constant time."""

    def __init__(self, config: AuthConfig) -> None:
        self.users: dict[bytes, User] = {}
        if config.password is not None:
            self.users[DEFAULT_USER] = User(DEFAULT_USER, config.password.encode())
        for user in config.users:
            rules = compile_rules(user.commands)
            self.users[user.name.encode()] = User(
                user.name.encode(), user.password.encode(), rules, _unrestricted(rules)
            )
        # Compared against when the user does not exist, so timing does not tell.
        self._dummy = b"\0" * 32

    def check(self, username: bytes, password: bytes) -> User | None:
        user = self.users.get(username)
        expected = user.password if user is not None else self._dummy
        matches = hmac.compare_digest(expected, password)
        return user if user is not None and matches else None


@functools.lru_cache(maxsize=8)
def authenticator(config: AuthConfig) -> Authenticator:
    """One Authenticator per config (SIGHUP reloads make a new one for new clients)."""
    return Authenticator(config)


# -- muted replies (CLIENT REPLY OFF | SKIP) -----------------------------------------------


class Muted:
    """A queue entry whose reply, once it arrives, is dropped (keeps the queue's order)."""

    __slots__ = ("inner",)

    def __init__(self, inner: Entry) -> None:
        self.inner = inner

    @property
    def reply(self) -> bytes | None:
        return None if self.inner.reply is None else b""

    @reply.setter
    def reply(self, value: bytes | None) -> None:
        self.inner.reply = value


ReplyMode = Literal["on", "off", "skip"]


# -- the per-client gate ---------------------------------------------------------------------


class ClientGate:
    """`session.acl`: command rules and CLIENT REPLY muting; who the client is logged in as
    is `session.client` (routing/client.py ClientState)."""

    __slots__ = ("_auth", "_passing", "_session", "_state", "_turned_on", "reply_mode")

    def __init__(
        self, session: SessionLike, state: ServerContext, auth: Authenticator | None
    ) -> None:
        self._session = session
        self._state = state
        self._auth = auth
        self.reply_mode: ReplyMode = "on"
        self._passing = False  # re-entered from intercept(): let the request through
        self._turned_on = False

    @property
    def authenticated(self) -> bool:
        return self._session.client.authenticated

    @property
    def user(self) -> User | None:
        """The logged-in user's rules; None before authentication (or without `auth:`)."""
        client = self._session.client
        if self._auth is None or not client.authenticated:
            return None
        return self._auth.users.get(client.user)

    @property
    def owns_auth(self) -> bool:
        """AUTH and HELLO are answered here (the config has `auth:`)."""
        return self._auth is not None

    def knows_user(self, name: bytes) -> bool:
        return self._auth is not None and name in self._auth.users

    def refresh(self) -> None:
        """Stay installed only while there is something to check."""
        session = self._session
        needed = self.reply_mode != "on" or (
            self._auth is not None
            and (self.user is None or not self.user.unrestricted or session.pipe is not None)
        )
        session.acl = self if needed else None
        session.update_detour()

    def intercept(self, args: Args) -> bool:
        if self._passing:
            return False
        if self.reply_mode != "on" and args[0].lower() == b"reset":
            self.reply_mode = "on"  # RESET clears CLIENT REPLY OFF|SKIP and answers
            self.refresh()
        if self._auth is not None and self._check_auth(args):
            return True
        if self.reply_mode != "on":
            self._run_muted(args)
            return True
        return False

    # -- authentication --------------------------------------------------------------------

    def _check_auth(self, args: Args) -> bool:
        """True when the request was answered here (it must not run)."""
        name = args[0].lower()
        if name == b"auth":
            self.answer(self._auth_command(args))
            return True
        if name == b"hello":
            self._hello(args)
            return True
        if name == b"reset":
            self.deauthenticate()
            if self._session.pipe is None and self._state.config.upstream.single_node:
                # Nothing upstream to reset (no pipe); the rest of RESET is local state.
                # Cluster mode lets RESET on, to the transaction and pub/sub state too.
                self.answer(self._session.client.reset())
                return True
            return False
        user = self.user
        if user is None:
            if name == b"quit":
                return False
            self.answer(self._before_auth(args))
            return True
        if user.unrestricted:
            return False
        denied = user.may_run(self._state.topology.table, args)
        if denied is None:
            return False
        multi = self._session.client.multi
        if multi is not None:
            multi.on_refused()  # inside MULTI, Redis then answers EXEC with EXECABORT
        self.answer(denied)
        return True

    def _before_auth(self, args: Args) -> bytes:
        """Redis checks the command's name and arity before authentication."""
        spec: CommandSpec | None = self._state.topology.table.get(args[0])
        if spec is None:
            return replies.unknown_command(args).encode()
        if spec.subcommands and len(args) >= 2:
            sub = spec.subcommands.get(args[1].lower())
            if sub is None:
                return replies.unknown_subcommand(spec.name, args[1]).encode()
            spec = sub
        argc, arity = len(args), spec.arity
        if argc != arity if arity >= 0 else argc < -arity:
            return replies.wrong_arity(spec.name).encode()
        return NOAUTH

    def _auth_command(self, args: Args) -> bytes:
        if len(args) < 2:
            return replies.wrong_arity(b"auth").encode()
        if len(args) > 3:
            return replies.SYNTAX.encode()
        username = args[1] if len(args) == 3 else DEFAULT_USER
        return OK if self.login(username, args[-1]) else WRONGPASS

    def login(self, username: bytes, password: bytes) -> bool:
        """Authenticate as `username`; a failure keeps the current user (as Redis does)."""
        assert self._auth is not None
        user = self._auth.check(username, password)
        session = self._session
        if user is None:
            log.warning(
                "client_auth_failed",
                conn_id=session.id,
                peer=session.peer,
                user=username.decode("utf-8", "replace")[:64],
            )
            return False
        session.client.login(user.name)
        log.debug("client_authenticated", conn_id=session.id, user=user.name.decode())
        self.refresh()
        return True

    def deauthenticate(self) -> None:
        self._session.client.logout()
        self.reply_mode = "on"
        self.refresh()

    def _hello(self, args: Args) -> None:
        """HELLO with slotless checking its AUTH options (the rules: routing/client.py)."""
        hello = parse_hello(args)
        if isinstance(hello, ErrorReply):
            self.answer(hello.encode())
            return
        session = self._session
        local = session.local
        if session.pipe is None and not local.hello_needs_pipe(hello):
            self.answer(session.client.hello(hello, self.login, local.server_version))
            return
        forward = session.client.hello_upstream(hello, self.login)
        if isinstance(forward, bytes):
            self.answer(forward)
        elif session.pipe is not None:
            session.pipe.send_args(forward)
        elif self.reply_mode != "on":
            self._muting(lambda: local.start_pipe(forward))
        else:
            local.start_pipe(forward)

    # -- replies ---------------------------------------------------------------------------

    def answer(self, raw: bytes) -> None:
        """Reply in order: through the standalone pipe when there is one."""
        session = self._session
        if self.reply_mode != "on":
            if self.reply_mode == "skip":
                self.reply_mode = "on"
                self.refresh()
            return
        if session.pipe is not None:
            session.pipe.inject(raw)
        else:
            session.reply(raw)

    def set_reply_mode(self, mode: ReplyMode) -> None:
        """CLIENT REPLY: OFF and SKIP mute their own reply, ON answers +OK."""
        self._turned_on = mode == "on"
        self.reply_mode = mode
        self.refresh()

    def _run_muted(self, args: Args) -> None:
        """Serve the request as usual, then drop whatever replies it queued."""
        self._muting(lambda: self._session.handle(args))

    def _muting(self, run: Callable[[], None]) -> None:
        session = self._session
        skipping = self.reply_mode == "skip"
        if skipping:
            self.reply_mode = "on"
        before = len(session.queued_entries)
        self._turned_on = False
        self._passing = True
        try:
            run()
        finally:
            self._passing = False
        if self._turned_on and not skipping:
            return  # CLIENT REPLY ON answers
        session.replace_entries(before, Muted)
        if skipping and self.reply_mode == "on":
            self.refresh()
