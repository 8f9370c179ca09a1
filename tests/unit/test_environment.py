"""env_file in Docker's env-file format and secret_env, read as a container starts: values in,
never in a message."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.config import parse_config
from deployer.errors import ContainerEnvError
from deployer.rollout.environment import (
    SecretEnvironment,
    parse_env_file,
    read_env_file,
    read_secret_environment,
)

ENVIRON = {"DEPLOYER_TOKEN": "x" * 20, "DB_PASSWORD": "hunter2-db", "FROM_DEPLOYER": "passed"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=1\nB=two words\n", {"A": "1", "B": "two words"}),
        ("# a comment\n\n   \nA=1\n", {"A": "1"}),
        ("  A=1\n\tB=2", {"A": "1", "B": "2"}),  # leading whitespace dropped
        ("A=value with trailing spaces   \n", {"A": "value with trailing spaces   "}),
        ("A=\"quoted\"\nB='single'\n", {"A": '"quoted"', "B": "'single'"}),  # as written
        ("A=x=y=z\n", {"A": "x=y=z"}),
        ("A=\n", {"A": ""}),
        ("A=#not a comment\n", {"A": "#not a comment"}),
        ("A=1\r\nB=2\r\n", {"A": "1", "B": "2"}),
        ("\ufeffA=1\n", {"A": "1"}),
        ("A=1\nA=2\n", {"A": "2"}),  # the later line wins
        ("FROM_DEPLOYER\n", {"FROM_DEPLOYER": "passed"}),  # `KEY` alone: deployer's environment
        ("lower.case-name=ok\n", {"lower.case-name": "ok"}),  # Docker accepts any name
        ("", {}),
    ],
)
def test_dockers_env_file_format(text: str, expected: dict[str, str]) -> None:
    assert parse_env_file(text, "app.env", ENVIRON) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("=hunter2\n", "env_file app.env line 1: no variable name before '='"),
        (
            "A=1\nPASSWORD hunter2\n",
            "env_file app.env line 2: the variable name has a space; write NAME=value",
        ),
        ("PASSWORD =hunter2\n", "env_file app.env line 1: the variable name has a space; write "
         "NAME=value"),
        (
            "# c\nNOT_SET\n",
            "env_file app.env line 2 is a name without a value, and deployer's environment has "
            "no such variable (the line is not shown: it may hold a secret); set it there, or "
            "write NAME=value",
        ),
        (
            "A=1\nhunter2+/x\n",
            "env_file app.env line 2 is not NAME=value (the line is not shown: it may hold a "
            "secret)",
        ),
        ("A=hunter2\0x\n", "env_file app.env line 1: the value of A has a NUL character"),
    ],
)  # fmt: skip
def test_a_bad_line_is_named_by_file_and_number_never_by_value(text: str, expected: str) -> None:
    with pytest.raises(ContainerEnvError) as caught:
        parse_env_file(text, "app.env", ENVIRON)

    assert str(caught.value) == expected
    assert "hunter2" not in str(caught.value)


def test_a_missing_or_non_utf8_file_is_named(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.env"
    latin1.write_bytes(b"A=1\nB=caf\xe9 hunter2\n")

    with pytest.raises(ContainerEnvError) as missing:
        read_env_file(tmp_path / "missing.env", ENVIRON)
    with pytest.raises(ContainerEnvError) as not_utf8:
        read_env_file(latin1, ENVIRON)

    assert str(missing.value) == (
        f"cannot read env_file {tmp_path / 'missing.env'}: No such file or directory; create "
        "it or fix `env_file`"
    )
    assert str(not_utf8.value) == f"env_file {latin1} line 2: not UTF-8 text; save it as UTF-8"


def test_files_in_order_then_secret_env_with_a_summary_of_names_only(tmp_path: Path) -> None:
    (tmp_path / "common.env").write_text("A=common\nB=common\n")
    (tmp_path / "app.env").write_text("B=app\nC=app\nDB_PASSWORD=from-file\n")
    data = {
        "image": "acme/web",
        "ports": "18000-18001",
        "env_file": [str(tmp_path / "common.env"), str(tmp_path / "app.env")],
        "secret_env": ["DB_PASSWORD"],
    }
    service = parse_config({"services": {"web": data}}, environ=ENVIRON).services["web"]

    found = read_secret_environment(service, ENVIRON)

    assert found == SecretEnvironment(
        {"A": "common", "B": "app", "C": "app", "DB_PASSWORD": "hunter2-db"},
        f"env_file {tmp_path / 'common.env'} (A, B); "
        f"env_file {tmp_path / 'app.env'} (B, C, DB_PASSWORD); secret_env (DB_PASSWORD)",
    )
    assert "hunter2-db" not in repr(found)


def test_a_secret_env_variable_gone_from_the_environment_fails_naming_it() -> None:
    data = {"image": "acme/web", "ports": "18000-18001", "secret_env": ["DB_PASSWORD"]}
    service = parse_config({"services": {"web": data}}, environ=ENVIRON).services["web"]

    with pytest.raises(ContainerEnvError) as caught:
        read_secret_environment(service, {"DEPLOYER_TOKEN": "x" * 20})

    assert str(caught.value) == (
        "secret_env: DB_PASSWORD not set in deployer's environment; set it and deploy again"
    )


def test_no_env_file_and_no_secret_env_is_nothing() -> None:
    data = {"image": "acme/web", "ports": "18000-18001"}
    service = parse_config({"services": {"web": data}}, environ=ENVIRON).services["web"]

    assert read_secret_environment(service, ENVIRON) == SecretEnvironment({}, "")


PEM_BODY = [
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj",  # a valid name
    "MZOlYo7Y+SDblAwU/JbOmPsVn1ufAcA3gg4ZzL5cu8ruNWLVa5VJ9ngsNpXzGc5n",
    "ZwGTnOCS0GZkbYpPeMlQcbgdEjBRuX4=",
]


@pytest.mark.parametrize("body", range(len(PEM_BODY)))
def test_a_multi_line_value_fails_without_showing_any_of_its_lines(body: int) -> None:
    key = ["TLS_KEY=-----BEGIN PRIVATE KEY-----", *PEM_BODY[body:], "-----END PRIVATE KEY-----"]
    text = "MODE=on\n" + "\n".join(key) + "\n"

    with pytest.raises(ContainerEnvError) as caught:
        parse_env_file(text, "app.env", ENVIRON)

    message = str(caught.value)
    for line in PEM_BODY:
        for fragment in (line, line[:12], line.rstrip("=")[-12:]):
            assert fragment not in message
    if "=" in PEM_BODY[body]:  # taken as NAME=value (Docker's format): the END line fails
        assert message == "env_file app.env line 4: the variable name has a space; write NAME=value"
    else:
        assert message.startswith("env_file app.env line 3 ")
        assert "(the line is not shown: it may hold a secret)" in message
