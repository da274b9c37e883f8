"""The `auth:` section: users, secrets from the environment, command rules."""

from __future__ import annotations

import pytest

from conf import ConfigError, parse_config
from conf.schema import AuthConfig, UserConfig

NODES = {"nodes": ["127.0.0.1:7000"]}


def parse(auth: object, environ: dict[str, str] | None = None) -> AuthConfig | None:
    return parse_config({"upstream": NODES, "auth": auth}, "x.yaml", environ or {}).auth


def test_absent_or_null_means_no_auth() -> None:
    assert parse_config({"upstream": NODES}).auth is None
    assert parse(None) is None


def test_password_users_and_env() -> None:
    auth = parse(
        {
            "password_env": "TOP",
            "users": [
                {"name": "app", "password_env": "APP"},
                {"name": "reader", "password": "r", "commands": ["+@read", " -GET ", "nocommands"]},
            ],
        },
        {"TOP": "t", "APP": "a"},
    )
    assert auth == AuthConfig(
        password="t",
        users=(UserConfig("app", "a"), UserConfig("reader", "r", ("+@read", "-get", "nocommands"))),
    )


def test_secrets_stay_out_of_repr() -> None:
    auth = parse({"password": "hunter2", "users": [{"name": "u", "password": "swordfish"}]})
    assert "hunter2" not in repr(auth) and "swordfish" not in repr(auth)


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({}, "x.yaml: auth: set password (or password_env), users, or both"),
        ({"pasword": "x"}, 'auth.pasword: unknown key (did you mean "auth.password"?)'),
        (
            {"password": "x", "password_env": "TOP"},
            "auth.password_env: set either password or password_env, not both",
        ),
        ({"password_env": "MISSING"}, 'auth.password_env: environment variable "MISSING" is not'),
        ({"password_env": "EMPTY"}, 'auth.password_env: environment variable "EMPTY" is empty'),
        ({"password": ""}, "auth.password: must not be empty"),
        ({"users": {"name": "u"}}, "auth.users: expected a list of users"),
        ({"users": [{"password": "p"}]}, "auth.users[0].name: every user needs a name"),
        ({"users": [{"name": "a b", "password": "p"}]}, "auth.users[0].name: expected printable"),
        ({"users": [{"name": "u"}]}, "auth.users[0].password: every user needs a password"),
        (
            {"users": [{"name": "u", "password_env": "MISSING"}]},
            'auth.users[0].password_env: environment variable "MISSING" is not set',
        ),
        (
            {"users": [{"name": "u", "password": "p"}, {"name": "u", "password": "q"}]},
            'auth.users[1].name: "u" is listed twice (also auth.users[0])',
        ),
        (
            {"password": "p", "users": [{"name": "default", "password": "q"}]},
            'auth.users[0].name: "default" is the user of auth.password',
        ),
        (
            {"users": [{"name": "u", "password": "p", "commands": "+@all"}]},
            "auth.users[0].commands: expected a list of rules",
        ),
        (
            {"users": [{"name": "u", "password": "p", "commands": ["get"]}]},
            'auth.users[0].commands[0]: expected "+command"',
        ),
        (
            {"users": [{"name": "u", "password": "p", "commands": ["+@nope"]}]},
            'auth.users[0].commands[0]: unknown command category "@nope"',
        ),
        (
            {"users": [{"name": "u", "password": "p", "commands": ["+bad name"]}]},
            "auth.users[0].commands[0]: expected a command name",
        ),
        (
            {"users": [{"name": "u", "password": "p", "role": "x"}]},
            "auth.users[0].role: unknown key",
        ),
    ],
)
def test_mistakes_name_the_key(auth: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(auth, {"TOP": "t", "EMPTY": ""})
    assert message in str(info.value)
    assert "\n" not in str(info.value)
