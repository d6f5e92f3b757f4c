"""`loramux keys create | list | revoke`: the key is printed once, never listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loramux.cli import app

runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    f = tmp_path / "c.yaml"
    f.write_text(f"paths: {{data_dir: {tmp_path / 'data'}}}\nengine: {{kind: fake}}\n")
    return f


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout


def test_create_list_revoke_through_the_cli(config: Path) -> None:
    code, out = run(
        "keys", "create", "--department", "hr", "--adapters", "hr,it", "--adapters", "legal",
        "--no-base", "--rpm", "60", "--label", "hr chatbot", "--weight", "3",
        "--config", str(config),
    )  # fmt: skip
    assert code == 0, out
    created = json.loads(out)
    key = created["key"]
    assert key.startswith("lmx-")
    assert created["adapters"] == ["hr", "it", "legal"]
    assert (created["base"], created["rag"], created["rpm"], created["tpm"]) == (
        False,
        True,
        60,
        None,
    )
    assert created["weight"] == 3.0
    code, out = run("keys", "list", "--config", str(config))
    assert code == 0, out
    assert key not in out
    listed = json.loads(out)
    assert [(k["id"], k["prefix"], k["department"]) for k in listed] == [
        (created["id"], key[:12], "hr")
    ]
    assert listed[0]["revoked"] is False
    code, out = run("keys", "revoke", created["id"], "--config", str(config))
    assert code == 0, out
    assert json.loads(out)["revoked"] is True
    assert json.loads(run("keys", "list", "--config", str(config))[1])[0]["revoked"] is True


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("keys", "revoke", "nope"), "no API key has the id 'nope'"),
        (("keys", "create", "--department", "hr", "--adapters", "auto"), "reserved"),
        (("keys", "create", "--department", "bad name"), "department 'bad name'"),
    ],
)
def test_cli_key_errors_are_one_line(config: Path, args: tuple[str, ...], words: str) -> None:
    result = runner.invoke(app, [*args, "--config", str(config)])
    assert result.exit_code == 1
    assert words in result.output
    assert "Traceback" not in result.output
