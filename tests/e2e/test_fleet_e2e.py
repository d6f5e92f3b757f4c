"""Two real `loramux serve` gateways over one real PostgreSQL (fake engine): a change made on
gateway A (register, traffic split, promote, retire, key revoke) takes effect on gateway B
within 2 s, the same user gets the same version on both, and two conflicting changes at once
end in one winner and one 409. B polls only every 30 s, so only NOTIFY can be that quick."""

from __future__ import annotations

import concurrent.futures
import functools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.builders import write_lora_folder
from tests.postgres import PostgresServer
from tests.reliability.harness import ADMIN, BASE, Server, start_server

pytestmark = pytest.mark.postgres

WITHIN_S = 2.0


def _gateway_yaml(dsn: str, name: str, state: Path) -> str:
    return (
        "engine: {kind: fake}\n"
        f"registry: {{store: postgres, database_url: '{dsn}', watch_interval_s: 30}}\n"
        f"decisions: {{dir: {state / name / 'decisions'}}}\n"
    )


@pytest.fixture
def fleet(tmp_path: Path, postgres_server: PostgresServer) -> Iterator[tuple[Server, Server]]:
    dsn = postgres_server.url(postgres_server.create_database("fleet"))
    shared = tmp_path / "shared-data"  # the adapter volume every gateway mounts
    servers: list[Server] = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            servers.append(
                start_server(tmp_path / name, _gateway_yaml(dsn, name, tmp_path), data_dir=shared)
            )
        yield servers[0], servers[1]
    finally:
        for server in servers:
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait(timeout=10)


def _within(check: Callable[[], bool], what: str, limit: float = WITHIN_S) -> float:
    """Seconds until `check()` holds; fails past `limit`."""
    started = time.monotonic()
    while not check():
        took = time.monotonic() - started
        assert took < limit, f"{what}: not within {limit:g} s"
        time.sleep(0.02)
    return time.monotonic() - started


def _register(server: Server, folder: Path, name: str = "hr") -> str:
    r = httpx.post(
        f"{server.url}/v1/adapters", json={"name": name, "path": str(folder)}, headers=ADMIN
    )
    assert r.status_code in (200, 201), r.text
    return str(r.json()["version"]["id"])


def _adapter(server: Server, name: str = "hr") -> dict[str, object]:
    r = httpx.get(f"{server.url}/v1/adapters/{name}", headers=ADMIN)
    return dict(r.json()) if r.status_code == 200 else {}


def _version_for(client: openai.OpenAI, user: str) -> str:
    raw = client.chat.completions.with_raw_response.create(
        model="hr", messages=[{"role": "user", "content": "hello"}], user=user, max_tokens=4
    )
    return raw.headers["x-loramux-adapter-version"]


def test_a_change_on_gateway_a_takes_effect_on_gateway_b_within_2_s(
    fleet: tuple[Server, Server], tmp_path: Path
) -> None:
    a, b = fleet
    folders = [write_lora_folder(tmp_path / f"src{i}", seed=i) for i in range(2)]
    made = httpx.post(
        f"{a.url}/v1/keys", json={"department": "hr", "adapters": ["hr"]}, headers=ADMIN
    )
    assert made.status_code == 201, made.text
    key, key_id = made.json()["key"], made.json()["id"]
    on_a = openai.OpenAI(base_url=f"{a.url}/v1", api_key=key, max_retries=0)
    on_b = openai.OpenAI(base_url=f"{b.url}/v1", api_key=key, max_retries=0)
    took: dict[str, float] = {}

    # register on A -> usable on B
    v1 = _register(a, folders[0])
    took["register"] = _within(lambda: "hr" in {m.id for m in on_b.models.list()}, "register")
    assert _version_for(on_b, "u0") == v1

    # traffic split on A -> B, and sticky users agree across gateways
    v2 = _register(a, folders[1])
    r = httpx.put(
        f"{a.url}/v1/adapters/hr/traffic", json={"versions": {v1: 50, v2: 50}}, headers=ADMIN
    )
    assert r.status_code == 200, r.text
    split = {v1: 50, v2: 50}
    took["traffic"] = _within(lambda: _adapter(b).get("traffic") == split, "traffic split")
    users = [f"user-{i}" for i in range(16)]
    picked_a = {u: _version_for(on_a, u) for u in users}
    picked_b = {u: _version_for(on_b, u) for u in users}
    assert picked_a == picked_b
    assert set(picked_a.values()) == {v1, v2}  # both versions really are in play

    # promote on A -> B
    r = httpx.post(f"{a.url}/v1/adapters/hr/promote", json={"version": v2}, headers=ADMIN)
    assert r.status_code == 200, r.text
    took["promote"] = _within(lambda: _version_for(on_b, "user-0") == v2, "promote")
    assert all(_version_for(on_b, u) == v2 for u in users[:4])

    # retire on A -> B refuses the retired version by name
    r = httpx.post(f"{a.url}/v1/adapters/hr/versions/{v1}/retire", headers=ADMIN)
    assert r.status_code == 200, r.text

    def retired_on_b() -> bool:
        try:
            on_b.chat.completions.create(
                model=f"hr@{v1}", messages=[{"role": "user", "content": "x"}], max_tokens=2
            )
        except openai.NotFoundError:
            return True
        return False

    took["retire"] = _within(retired_on_b, "retire")

    # key revoked on A -> 401 on B
    assert httpx.delete(f"{a.url}/v1/keys/{key_id}", headers=ADMIN).status_code == 200

    def refused_on_b() -> bool:
        try:
            on_b.models.list()
        except openai.AuthenticationError:
            return True
        return False

    took["key revoke"] = _within(refused_on_b, "key revoke")
    print("propagation A -> B:", {k: f"{v * 1000:.0f} ms" for k, v in took.items()})  # noqa: T201


def _at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run the calls in threads released together by a barrier."""
    barrier = threading.Barrier(len(calls))

    def go(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait()
        return call()

    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(go, calls))


def test_conflicting_changes_on_two_gateways_at_once_give_one_409(
    fleet: tuple[Server, Server], tmp_path: Path
) -> None:
    """Two admins each read the adapter (on their own gateway), decide, and change it at once,
    saying which revision they decided from: one wins, the other gets a clear 409."""
    a, b = fleet
    folders = [write_lora_folder(tmp_path / f"src{i}", seed=i) for i in range(2)]
    v1, v2 = _register(a, folders[0]), _register(a, folders[1])
    _within(lambda: len(_adapter(b).get("versions", [])) == 2, "registrations")  # type: ignore[arg-type]
    clients = [httpx.Client(base_url=s.url, headers=ADMIN, timeout=30) for s in (a, b)]
    try:
        for round_ in range(4):
            # from a split neither change asks for (asking for the current split is a no-op)
            reset = clients[0].put("/v1/adapters/hr/traffic", json={"versions": {v1: 50, v2: 50}})
            assert reset.status_code == 200, reset.text
            want = reset.json()["revision"]
            _within(lambda: _adapter(b).get("revision") == want, "the reset on B")  # noqa: B023
            seen = [int(c.get("/v1/adapters/hr").json()["revision"]) for c in clients]
            assert seen[0] == seen[1]
            bodies = [{v1: 100}, {v2: 100}] if round_ % 2 else [{v2: 100}, {v1: 100}]
            responses = _at_once(
                [
                    functools.partial(
                        c.put,
                        "/v1/adapters/hr/traffic",
                        json={"versions": w, "revision": seen[0]},
                    )
                    for c, w in zip(clients, bodies, strict=True)
                ]
            )
            codes = [r.status_code for r in responses]
            assert sorted(codes) == [200, 409], [r.text for r in responses]
            lost = responses[codes.index(409)].json()["error"]
            assert lost["message"].startswith("adapter 'hr' was changed by someone else")
            won = responses[codes.index(200)].json()
            assert won["revision"] == seen[0] + 1
            _within(lambda: _adapter(b).get("revision") == seen[0] + 1, "the winner on B")  # noqa: B023
            for server in (a, b):  # the winner's split on both, never a mix
                assert _adapter(server)["traffic"] == won["traffic"]
    finally:
        for c in clients:
            c.close()


def test_the_same_adapter_registered_on_two_gateways_at_once_keeps_its_files(
    fleet: tuple[Server, Server], tmp_path: Path
) -> None:
    a, b = fleet
    folder = write_lora_folder(tmp_path / "src", seed=7)
    body = {"name": "hr", "path": str(folder)}
    responses = _at_once(
        [
            functools.partial(httpx.post, f"{s.url}/v1/adapters", json=body, headers=ADMIN)
            for s in (a, b)
        ]
    )
    assert sorted(r.status_code for r in responses) == [200, 201], [r.text for r in responses]
    version = responses[0].json()["version"]["id"]
    stored = a.data_dir / "adapters" / "hr" / version
    assert (stored / "adapter_model.safetensors").is_file()  # not discarded by the loser
    for server in (a, b):
        assert [v["id"] for v in _adapter(server)["versions"]] == [version]  # type: ignore[index]


def test_a_database_outage_is_a_clean_503_and_the_gateway_recovers(tmp_path: Path) -> None:
    from tests.postgres import find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed")
    pg = PostgresServer(bin_dir)  # its own: this test stops it
    server: Server | None = None
    try:
        dsn = pg.url(pg.create_database("outage"))
        (tmp_path / "a").mkdir()
        server = start_server(tmp_path / "a", _gateway_yaml(dsn, "a", tmp_path))
        v1 = _register(server, write_lora_folder(tmp_path / "src", seed=1))
        made = httpx.post(
            f"{server.url}/v1/keys", json={"department": "hr", "adapters": ["hr"]}, headers=ADMIN
        )
        key = {"authorization": f"Bearer {made.json()['key']}"}
        chat = {"model": "hr", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}

        def ask() -> httpx.Response:
            return httpx.post(f"{server.url}/v1/chat/completions", json=chat, headers=key)

        assert ask().status_code == 200
        pg.pause()
        time.sleep(1.2)  # past the key cache
        down = ask()
        assert down.status_code == 503, down.text
        assert down.json()["error"]["code"] == "store_unavailable"
        assert down.headers["retry-after"] == "1"
        change = httpx.put(
            f"{server.url}/v1/adapters/hr/traffic", json={"versions": {v1: 100}}, headers=ADMIN
        )
        assert change.status_code == 503, change.text  # nothing half-written
        assert change.json()["error"]["code"] == "store_unavailable"
        pg.start()
        _within(lambda: ask().status_code == 200, "recovery", limit=10)
        assert "Traceback" not in server.output()
    finally:
        if server is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(timeout=10)
        pg.stop()


def test_with_fleet_limits_a_keys_rpm_holds_across_gateways(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    dsn = postgres_server.url(postgres_server.create_database("limits"))
    shared = tmp_path / "shared-data"
    servers: list[Server] = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            yaml = _gateway_yaml(dsn, name, tmp_path) + "auth: {limits_scope: fleet}\n"
            servers.append(start_server(tmp_path / name, yaml, data_dir=shared))
        a, b = servers
        made = httpx.post(f"{a.url}/v1/keys", json={"department": "hr", "rpm": 6}, headers=ADMIN)
        assert made.status_code == 201, made.text
        key = {"authorization": f"Bearer {made.json()['key']}"}

        body = {"model": BASE, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        extra: list[int] = []

        def models(server: Server) -> int:  # a metered request (chat on the base model)
            r = httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=key)
            return r.status_code

        assert models(b) == 200  # 1 on B (B knows the key now)
        assert [models(a) for _ in range(5)] == [200] * 5  # 5 on A: the fleet's 6 are used

        # B hears of A's 5 within the 0.5 s announce interval (+ delivery)
        def refused_on_b() -> bool:
            code = models(b)
            extra.append(code)
            return code == 429

        took = _within(refused_on_b, "B refusing the key", limit=2.0)
        _within(lambda: models(a) == 429, "A hearing of B's use", limit=2.0)
        over = extra.count(200)  # admitted on B before it heard: the documented lag
        print(f"B refused the key {took * 1000:.0f} ms after A used it up; {over} over")  # noqa: T201
    finally:
        for server in servers:
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait(timeout=10)
