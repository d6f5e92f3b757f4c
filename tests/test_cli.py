"""The CLI: thin commands over importable functions, one readable error line, no traces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from pydantic import BaseModel
from typer.testing import CliRunner

from loramux.cli import app
from loramux.cli.router import router_eval_dir
from loramux.cli.serve import SERVE_OVERRIDES, serve_overrides
from loramux.config import ENV_OVERRIDES, LoramuxConfig, load_config
from tests.builders import write_lora_folder

runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    f = tmp_path / "c.yaml"
    f.write_text(f"paths: {{data_dir: {tmp_path / 'data'}}}\nengine: {{kind: fake}}\n")
    return f


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_register_list_traffic_promote_through_the_cli(config: Path, tmp_path: Path) -> None:
    v1 = write_lora_folder(tmp_path / "a1", seed=1)
    v2 = write_lora_folder(tmp_path / "a2", seed=2)
    code, out = run("adapters", "register", str(v1), "--name", "hr", "--config", str(config))
    assert code == 0, out
    first = json.loads(out)["version"]["id"]
    code, out = run("adapters", "register", str(v2), "--name", "hr", "--config", str(config))
    second = json.loads(out)["version"]["id"]
    code, out = run(
        "adapters", "traffic", "hr", f"{first}=80", f"{second}=20", "--config", str(config)
    )
    assert code == 0, out
    listed = json.loads(run("adapters", "list", "--json", "--config", str(config))[1])
    assert listed[0]["name"] == "hr"
    assert listed[0]["traffic"] == {first: 80, second: 20}
    code, out = run("adapters", "promote", "hr", second, "--config", str(config))
    assert code == 0, out
    shown = json.loads(run("adapters", "show", "hr", "--json", "--config", str(config))[1])
    assert shown["traffic"] == {second: 100}
    assert shown["main_version"] == second


def test_list_show_and_experiment_print_tables_unless_json(config: Path, tmp_path: Path) -> None:
    v1 = write_lora_folder(tmp_path / "a1", seed=1)
    code, out = run(
        "adapters",
        "register",
        str(v1),
        "--name",
        "hr",
        "--department",
        "HR",
        "--config",
        str(config),
    )
    version = json.loads(out)["version"]["id"]
    code, out = run("adapters", "list", "--config", str(config))
    assert code == 0, out
    header, rule, row = out.splitlines()[:3]
    assert header.split()[:4] == ["adapter", "department", "versions", "main"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert row.split()[:4] == ["hr", "HR", "1", version[:12]]
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)
    code, out = run("adapters", "show", "hr", "--config", str(config))
    assert code == 0, out
    assert f"main        {version}" in out
    assert "audit (newest first)" in out
    assert any(line.startswith(version) and "active" in line for line in out.splitlines())
    dead = "http://127.0.0.1:9"  # nothing listens there: read the registry instead
    code, out = run("adapters", "experiment", "hr", "--url", dead, "--config", str(config))
    assert code == 0, out
    assert "TTFT p50/p95 ms" in out
    assert "recommendation: no_experiment" in out
    assert f"no server answered at {dead}" in out
    code, out = run(
        "adapters", "experiment", "hr", "--url", dead, "--json", "--config", str(config)
    )
    assert json.loads(out)["arms"][0]["version"] == version


def test_rollback_and_delete_through_the_cli(config: Path, tmp_path: Path) -> None:
    folders = [write_lora_folder(tmp_path / f"a{i}", seed=i) for i in range(2)]
    ids = []
    for folder in folders:
        code, out = run(
            "adapters", "register", str(folder), "--name", "hr", "--config", str(config)
        )
        ids.append(json.loads(out)["version"]["id"])
    run("adapters", "promote", "hr", ids[1], "--config", str(config))
    code, out = run("adapters", "rollback", "hr", "--config", str(config))
    assert code == 0, out
    assert json.loads(out)["main_version"] == ids[0]
    code, out = run("adapters", "delete", "hr", "--config", str(config))
    assert code == 0, out  # no request was ever served: not serving traffic
    assert json.loads(out)["deleted"] is True
    assert not (tmp_path / "data" / "adapters" / "hr").exists()
    code, out = run("adapters", "show", "hr", "--config", str(config))
    assert code == 1
    assert "no adapter named 'hr'" in out


def test_register_takes_a_relative_path_from_the_current_directory(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_lora_folder(tmp_path / "rel" / "hr", seed=1)
    monkeypatch.chdir(tmp_path / "rel")
    code, out = run("adapters", "register", "hr", "--name", "hr", "--config", str(config))
    assert code == 0, out
    assert json.loads(out)["created"] is True


def test_keys_rotate_expire_and_warn_about_unknown_adapters(config: Path) -> None:
    code, out = run(
        "keys",
        "create",
        "--department",
        "hr",
        "--adapters",
        "hr,nope",
        "--expires-in",
        "30d",
        "--config",
        str(config),
    )
    assert code == 0, out
    assert "warning: adapter(s) 'hr', 'nope' are not registered" in out
    created = json.loads(out[out.index("{") :])
    assert created["expires_at"] is not None
    code, out = run("keys", "rotate", created["id"], "--config", str(config))
    assert code == 0, out
    rotated = json.loads(out[out.index("{") :])
    assert rotated["id"] == created["id"]
    assert rotated["key"] != created["key"]
    assert rotated["rotated_at"] is not None
    code, out = run(
        "keys", "create", "--department", "hr", "--expires-in", "soon", "--config", str(config)
    )
    assert code == 1
    assert "neither a duration" in out


def test_experiment_shows_the_latencies_of_the_running_server(tmp_path: Path) -> None:
    """The CLI asks a real `loramux serve` process for what only it has in memory."""
    import os
    import subprocess
    import sys

    import httpx
    import openai

    from tests.serve_process import free_port, stop, wait_ready

    hr = write_lora_folder(tmp_path / "hr", seed=1)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"paths: {{data_dir: {tmp_path / 'data'}}}\nengine: {{kind: fake}}\n"
        f"auth: {{enabled: false}}\nadapters:\n  hr: {{path: {hr}}}\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LORAMUX_PORT": str(port), "HF_HUB_OFFLINE": "1"}
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "loramux", "serve", "--config", str(config)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            problem = wait_ready(proc, url, log.read_text, timeout=90, interval=0.2)
            assert problem is None, problem
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
            for i in range(3):
                client.chat.completions.create(
                    model="hr",
                    messages=[{"role": "user", "content": "hi"}],
                    max_tokens=4,
                    user=f"u{i}",
                )
            served = httpx.get(f"{url}/v1/adapters/hr/experiment", timeout=10).json()
            code, out = run(
                "adapters", "experiment", "hr", "--url", url, "--json", "--config", str(config)
            )
            assert code == 0, out
            arm = json.loads(out)["arms"][0]
            assert arm["ttft"] is not None
            assert arm["ttft"] == served["arms"][0]["ttft"]
            code, table = run("adapters", "experiment", "hr", "--url", url, "--config", str(config))
            assert f"from the server at {url}" in table
            assert f"{arm['ttft']['p50_ms']:.0f}/{arm['ttft']['p95_ms']:.0f}" in table
        finally:
            stop(proc, timeout=30)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("serve", "--config", "/nonexistent.yaml"), "cannot read config file"),
        (("adapters", "show", "nope"), "no adapter named 'nope'"),
        (("adapters", "traffic", "hr", "abc"), "write VERSION=WEIGHT"),
        (("adapters", "register", "/nonexistent", "--name", "hr"), "/nonexistent"),
        (("train", "--config", "/nonexistent.yaml"), "cannot read config file"),
    ],
)
def test_errors_are_one_line_without_a_trace(
    config: Path, args: tuple[str, ...], words: str
) -> None:
    full = [*args] if "--config" in args else [*args, "--config", str(config)]
    code, out = run(*full)
    assert code == 1
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert lines[0].startswith("error: ")
    assert words in lines[0]
    assert "Traceback" not in out


def test_kb_ingest_reports_added_then_unchanged(config: Path) -> None:
    from tests.conftest import REPO

    doc = str(REPO / "demo" / "handbook" / "security-badges.md")
    code, out = run("kb", "ingest", doc, "--config", str(config))
    assert code == 0, out
    first = json.loads(out[out.index("{") :])
    assert len(first["added"]) == 1
    assert first["chunks"] > 0
    code, out = run("kb", "ingest", doc, "--config", str(config))
    second = json.loads(out[out.index("{") :])
    assert second["added"] == []
    assert len(second["unchanged"]) == 1


def test_serve_that_cannot_start_says_why_in_one_line(tmp_path: Path) -> None:
    """A start-up failure loramux explains (here: an adapter folder that is not there) ends
    the server with that line, not a traceback; a real `loramux serve` process."""
    import os
    import subprocess
    import sys

    from tests.serve_process import free_port

    config = tmp_path / "c.yaml"
    config.write_text(
        f"paths: {{data_dir: {tmp_path / 'data'}}}\nengine: {{kind: fake}}\n"
        f"auth: {{enabled: false}}\nadapters:\n  x: {{path: {tmp_path / 'missing'}}}\n"
    )
    env = {**os.environ, "LORAMUX_PORT": str(free_port()), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "loramux", "serve", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert f"cannot start: adapter 'x': {tmp_path / 'missing'} is not a folder" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_every_serve_override_option_sets_an_existing_config_field_and_names_its_env_var() -> None:
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    options = {p.name: p for p in serve.params if p.name != "config"}
    assert set(options) == set(SERVE_OVERRIDES), "every override flag needs its config field"
    env_of = {target: var for var, target in ENV_OVERRIDES.items()}
    for option, (section, key) in SERVE_OVERRIDES.items():
        assert section in LoramuxConfig.model_fields, f"--{option}: no `{section}` section"
        model = LoramuxConfig.model_fields[section].annotation
        assert isinstance(model, type)
        assert issubclass(model, BaseModel)
        assert key in model.model_fields, f"--{option}: no config field `{section}.{key}`"
        if (section, key) in env_of:
            assert env_of[section, key] in (options[option].help or ""), f"--{option}'s help"


def test_serve_overrides_go_to_their_sections() -> None:
    assert serve_overrides({"host": "0.0.0.0", "engine": "fake", "port": None}) == {
        "server": {"host": "0.0.0.0", "port": None},
        "engine": {"kind": "fake"},
    }


def test_router_eval_writes_where_the_dashboard_looks_by_default(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("paths:\n  data_dir: data\n")
    config = load_config(file, environ={})
    assert router_eval_dir(config) == tmp_path / "data" / "eval" / "router"
    file.write_text("dashboard:\n  eval_dir: charts\n")
    assert router_eval_dir(load_config(file, environ={})) == tmp_path / "charts" / "router"
