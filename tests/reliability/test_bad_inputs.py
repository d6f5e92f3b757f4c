"""A corpus of bad input, each case through the real app: every one is a 4xx in OpenAI's error
envelope with a message that says what is wrong, never a 500, and none leaves state behind
(no adapter registered, no staging leftovers, nothing generated)."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.builders import write_lora_folder
from tests.fakes import FaultyEngine
from tests.reliability.harness import BASE, app_client, chat

LIMITS = (
    "server: {max_request_bytes: 65536}\n"
    "limits: {max_messages: 16, max_message_chars: 20000}\n"
    "registry: {limits: {max_total_bytes: 1048576, max_file_bytes: 1048576}}\n"
)
DEEP = b"[" * 20_000 + b"]" * 20_000  # far past any JSON parser's recursion limit


@dataclass
class Case:
    name: str
    status: int
    words: str
    """Must appear in the error message."""
    method: str = "POST"
    path: str = "/v1/chat/completions"
    json_body: Any = None
    raw: bytes | None = None
    files: Callable[[Path], dict[str, Any]] | None = None
    data: dict[str, str] = field(default_factory=dict)
    param: str | None = "-"
    """Expected `param` ("-": not checked)."""
    code: str | None = "-"


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _adapter(tmp: Path) -> dict[str, bytes]:
    folder = write_lora_folder(tmp / "src-adapter")
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _upload(make: Callable[[Path], bytes], filename: str) -> Callable[[Path], dict[str, Any]]:
    return lambda tmp: {"file": (filename, make(tmp), "application/octet-stream")}


def _traversal_zip(tmp: Path) -> bytes:
    return _zip({**_adapter(tmp), "../../escape.json": b"{}"})


def _absolute_zip(tmp: Path) -> bytes:
    return _zip({**_adapter(tmp), "/etc/cron.d/evil": b"* * * * * root true"})


def _symlink_tar(tmp: Path) -> bytes:
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for name, data in _adapter(tmp).items():
        info = tarfile.TarInfo(name)
        info.size = len(data)
        members.append((info, data))
    link = tarfile.TarInfo("secrets.json")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    members.append((link, None))
    return _tar(members)


class _Boom:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("unpickled!",))


def _pickle_zip(tmp: Path) -> bytes:
    files = _adapter(tmp)
    del files["adapter_model.safetensors"]
    return _zip({**files, "adapter_model.bin": pickle.dumps(_Boom())})


def _pickle_beside_safetensors(tmp: Path) -> bytes:
    return _zip({**_adapter(tmp), "training_args.bin": pickle.dumps(_Boom())})


def _pickle_renamed_zip(tmp: Path) -> bytes:
    files = _adapter(tmp)
    files["adapter_model.safetensors"] = pickle.dumps(_Boom())
    return _zip(files)


def _not_an_archive(tmp: Path) -> bytes:
    return b"this is not a zip or a tarball" * 10


CASES = [
    # -- bytes that are not JSON ------------------------------------------------------------
    Case("invalid utf-8", 400, "UTF-8", raw=b'{"model": "x", "messages": "\xff\xfe\xfd"}'),
    Case("not json", 400, "not valid JSON", raw=b"{model: x"),
    Case("empty body", 400, "body is empty", raw=b""),
    Case("json null", 400, "dictionary or object", raw=b"null"),
    Case("deeply nested json", 400, "nested", raw=b'{"model": "x", "deep": ' + DEEP + b"}"),
    Case("deeply nested route body", 400, "nested", path="/v1/route", raw=b'{"x": ' + DEEP + b"}"),
    # -- sizes ---------------------------------------------------------------------------------
    Case("huge body", 413, "limit of 65536 bytes", json_body=chat("x" * 70_000)),
    Case("huge prompt", 400, "limit of 20000", json_body=chat("y" * 20_001)),
    Case(
        "prompt over the context",
        400,
        "context length",
        json_body=chat("w " * 3000),
        code="context_length_exceeded",
    ),
    Case(
        "too many messages",
        400,
        "limit of 16",
        json_body={"model": BASE, "messages": [{"role": "user", "content": "hi"}] * 17},
        param="messages",
    ),
    Case("max_tokens huge", 400, "limit of 64", json_body=chat(max_tokens=10**30)),
    # -- empty -------------------------------------------------------------------------------------
    Case("empty prompt", 400, "user message with text", json_body=chat(""), param="messages"),
    Case("blank prompt", 400, "user message with text", json_body=chat("  \n "), param="messages"),
    Case(
        "empty completions prompt",
        400,
        "must not be empty",
        path="/v1/completions",
        json_body={"model": BASE, "prompt": ""},
        param="prompt",
    ),
    Case("empty messages", 400, "at least 1", json_body={"model": BASE, "messages": []}),
    # -- wrong types ----------------------------------------------------------------------------
    Case("messages a string", 400, "list", json_body={"model": BASE, "messages": "hi"}),
    Case("model a number", 400, "valid string", json_body={**chat(), "model": 5}, param="model"),
    Case("max_tokens a word", 400, "integer", json_body=chat(max_tokens="ten"), param="max_tokens"),
    Case("temperature a list", 400, "number", json_body=chat(temperature=[1]), param="temperature"),
    Case(
        "temperature NaN",
        400,
        "temperature",
        raw=json.dumps(chat(temperature=float("nan"))).encode(),
    ),
    Case(
        "max_tokens Infinity", 400, "finite", raw=json.dumps(chat(max_tokens=float("inf"))).encode()
    ),
    # -- out of range, and strings for booleans (#19) -----------------------------------------
    Case("seed over 64 bits", 400, "less than or equal", json_body=chat(seed=2**64), param="seed"),
    Case("seed 2**63", 400, "less than or equal", json_body=chat(seed=2**63), param="seed"),
    Case("seed under -2**63", 400, "greater than", json_body=chat(seed=-(2**63) - 1), param="seed"),
    Case(
        "completions seed huge",
        400,
        "less than",
        path="/v1/completions",
        json_body={"model": BASE, "prompt": "hi", "seed": 10**30},
        param="seed",
    ),
    Case("stream a string", 400, "valid boolean", json_body=chat(stream="yes"), param="stream"),
    Case("stream 1", 400, "valid boolean", json_body=chat(stream=1), param="stream"),
    Case(
        "include_usage a string",
        400,
        "valid boolean",
        json_body=chat(stream=True, stream_options={"include_usage": "true"}),
        param="stream_options.include_usage",
    ),
    Case(
        "key base a string",
        400,
        "valid boolean",
        path="/v1/keys",
        json_body={"department": "hr", "base": "no"},
        param="base",
    ),
    Case(
        "key weight zero",
        400,
        "greater than",
        path="/v1/keys",
        json_body={"department": "hr", "weight": 0},
        param="weight",
    ),
    Case("a message null", 400, "dictionary", json_body={"model": BASE, "messages": [None]}),
    Case(
        "content a number",
        400,
        "valid string",
        json_body={"model": BASE, "messages": [{"role": "user", "content": 5}]},
    ),
    Case(
        "tool message without tool_call_id",
        400,
        "tool_call_id",
        json_body={"model": BASE, "messages": [{"role": "tool", "content": "x"}]},
        param="messages.0.tool_call_id",
    ),
    Case(
        "lone surrogate",
        400,
        "not valid Unicode",
        raw=b'{"model": "' + BASE.encode() + b'", "messages": [{"role": "user", '
        b'"content": "a\\ud800b"}]}',
        param="messages.0.content",
    ),
    Case(
        "lone surrogate in the model",
        400,
        "not valid Unicode",
        raw=b'{"model": "x\\udfff", "messages": [{"role": "user", "content": "hi"}]}',
        param="model",
    ),
    Case(
        "lone surrogate in an admin body",
        400,
        "not valid Unicode",
        path="/v1/adapters",
        raw=b'{"name": "hr", "path": "/x", "description": "\\ud83d"}',
        param="description",
    ),
    Case(
        "feedback rating",
        400,
        "rating",
        path="/v1/feedback",
        json_body={"request_id": "r", "rating": "meh"},
    ),
    # -- unknown fields where they are not accepted (admin bodies) -----------------------
    Case(
        "unknown admin field",
        400,
        "colour",
        path="/v1/adapters",
        json_body={"name": "hr", "path": "/nowhere", "colour": "red"},
    ),
    Case(
        "unknown traffic field",
        400,
        "extra",
        method="PUT",
        path="/v1/adapters/hr/traffic",
        json_body={"versions": {}, "extra": 1},
    ),
    # -- path tricks ------------------------------------------------------------------------
    Case(
        "model path trick", 404, "does not exist", json_body={**chat(), "model": "../../etc/passwd"}
    ),
    Case(
        "adapter name path trick",
        400,
        "not allowed",
        path="/v1/adapters",
        json_body={"name": "../hr", "path": "/etc"},
    ),
    Case(
        "adapter path trick",
        400,
        "is relative",  # refused before anything is resolved
        path="/v1/adapters",
        json_body={"name": "hr", "path": "../../../../../../etc/passwd"},
    ),
    Case(
        "url path trick", 404, "adapter", method="GET", path="/v1/adapters/..%2F..%2Fetc%2Fpasswd"
    ),
    Case(
        "archive with ../",
        400,
        "outside the archive",
        path="/v1/adapters",
        files=_upload(_traversal_zip, "hr.zip"),
        data={"name": "hr"},
        code="invalid_archive",
    ),
    Case(
        "archive with an absolute path",
        400,
        "absolute path",
        path="/v1/adapters",
        files=_upload(_absolute_zip, "hr.zip"),
        data={"name": "hr"},
        code="invalid_archive",
    ),
    Case(
        "archive with a symlink",
        400,
        "is a link",
        path="/v1/adapters",
        files=_upload(_symlink_tar, "hr.tar.gz"),
        data={"name": "hr"},
        code="invalid_archive",
    ),
    Case(
        "not an archive",
        400,
        "zip",
        path="/v1/adapters",
        files=_upload(_not_an_archive, "hr.zip"),
        data={"name": "hr"},
        code="invalid_archive",
    ),
    # -- pickles ----------------------------------------------------------------------------------
    Case(
        "pickle weights",
        400,
        "pickle",
        path="/v1/adapters",
        files=_upload(_pickle_zip, "hr.zip"),
        data={"name": "hr"},
        code="invalid_adapter",
    ),
    Case(
        "pickle beside the weights",
        400,
        "pickle",
        path="/v1/adapters",
        files=_upload(_pickle_beside_safetensors, "hr.zip"),
        data={"name": "hr"},
        code="invalid_adapter",
    ),
    Case(
        "pickle named .safetensors",
        400,
        "safetensors",
        path="/v1/adapters",
        files=_upload(_pickle_renamed_zip, "hr.zip"),
        data={"name": "hr"},
        code="invalid_adapter",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_bad_input_is_a_clear_4xx_and_changes_nothing(
    tmp_path: Path, case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = FaultyEngine()
    async with app_client(tmp_path, engine, LIMITS) as (_, client):
        kwargs: dict[str, Any] = {}
        if case.raw is not None:
            kwargs = {"content": case.raw, "headers": {"content-type": "application/json"}}
        elif case.files is not None:
            kwargs = {"files": case.files(tmp_path), "data": case.data}
        elif case.json_body is not None:
            kwargs = {"json": case.json_body}
        r = await client.request(case.method, case.path, **kwargs)
        adapters = (await client.get("/v1/adapters")).json()["data"]
    assert r.status_code == case.status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert case.words in error["message"], error["message"]
    if case.param != "-":
        assert error["param"] == case.param
    if case.code != "-":
        assert error["code"] == case.code
    assert adapters == []
    staging = tmp_path / "data" / "adapters" / ".staging"
    assert not staging.exists() or not any(staging.iterdir())
    assert engine.finished == []
    assert "unpickled!" not in capsys.readouterr().out


async def test_no_op_openai_fields_and_escaped_emoji_are_accepted(tmp_path: Path) -> None:
    """OpenAI fields at the value that changes nothing are accepted (others are refused, see
    tests/api/test_chat_api.py). A surrogate *pair* is valid JSON for a character outside the
    BMP."""
    async with app_client(tmp_path, FaultyEngine()) as (_, client):
        r = await client.post(
            "/v1/chat/completions",
            json=chat(frequency_penalty=0, tools=[], response_format={"type": "text"}),
        )
        emoji = await client.post(
            "/v1/chat/completions",
            content=b'{"model": "' + BASE.encode() + b'", "messages": [{"role": "user", '
            b'"content": "hi \\ud83d\\ude00"}]}',
            headers={"content-type": "application/json"},
        )
    assert r.status_code == 200
    assert emoji.status_code == 200
    assert emoji.json()["choices"][0]["message"]["content"] == "[base] hi \U0001f600"
