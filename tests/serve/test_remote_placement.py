"""Placement of adapter versions on a pool of vLLM replicas: the hashing and hotness rules on
their own, then the remote engine over several fake vLLM servers (threads, and processes killed
with SIGKILL for the fault tests)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from loramux.config import EngineConfig, RemoteEngineConfig
from loramux.errors import AdapterError, EngineUnavailableError
from loramux.serve.engine import generate
from loramux.serve.placement import TrafficShare, rank, replicas_wanted
from loramux.serve.remote import RemoteEngine
from loramux.serve.types import GenerationRequest, SamplingParams
from loramux.types import AdapterRef, ChatMessage
from tests.serve.fake_vllm_server import FakeVLLM, Served, ServedProcess

MODEL = "base-model"
URLS = [f"http://10.0.0.{i}:8000" for i in range(1, 5)]


def adapter(name: str, tmp_path: Path) -> AdapterRef:
    return AdapterRef(key=f"{name}@1", path=tmp_path / name)


def request(text: str, ref: AdapterRef | None = None, max_tokens: int = 16) -> GenerationRequest:
    sampling = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    return GenerationRequest("t", sampling, (ChatMessage("user", text),), adapter=ref)


def where(text: str) -> str:
    """The replica that answered: `[hr@1@r0] ...` -> `r0`."""
    return text.split("]")[0].rsplit("@", 1)[1]


# -- the rules ---------------------------------------------------------------------------------


def test_rendezvous_ranking_is_stable_and_a_lost_replica_moves_only_its_own_versions() -> None:
    keys = [f"a{i}@v{i % 7}" for i in range(400)]
    first = {k: rank(k, URLS)[0] for k in keys}
    assert first == {k: rank(k, list(reversed(URLS)))[0] for k in keys}  # order does not matter
    spread = Counter(first.values())
    assert set(spread) == set(URLS)
    assert min(spread.values()) > 60  # about 100 each: the hash spreads the versions
    lost = URLS[2]
    rest = [u for u in URLS if u != lost]
    for k in keys:
        after = rank(k, rest)
        if first[k] != lost:
            assert after[0] == first[k]  # untouched
        else:
            assert after[0] == rank(k, URLS)[1]  # the next one of its own ranking


@pytest.mark.parametrize(
    ("share", "k", "live", "want"),
    [
        (0.0, 1, 4, 1),
        (0.25, 1, 4, 1),  # exactly 1/N: one replica carries it
        (0.26, 1, 4, 2),  # above 1/N: a second replica
        (0.6, 1, 4, 3),
        (1.0, 1, 4, 4),
        (0.0, 2, 4, 2),
        (0.0, 3, 2, 2),  # k above the live replicas: all of them
        (0.5, None, 3, 3),  # `all`
        (0.9, 1, 0, 0),  # nothing live
        (0.0, 1, 1, 1),
    ],
)
def test_replicas_wanted_follows_the_traffic_share(
    share: float, k: int | None, live: int, want: int
) -> None:
    assert replicas_wanted(share, k, live) == want


def test_traffic_share_counts_the_last_window_only() -> None:
    share = TrafficShare(window=10)
    for _ in range(3):
        share.record("a@1")
    assert share.share("a@1") == pytest.approx(0.3)  # over the window, not over 3 requests
    for _ in range(10):
        share.record("b@1")
    assert share.share("a@1") == 0.0
    assert share.share("b@1") == 1.0
    with pytest.raises(ValueError, match="at least one"):
        TrafficShare(window=0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("replicas_per_adapter", 0, "replicas >= 1, or `all`"),
        ("replicas_per_adapter", "some", "replicas_per_adapter"),
        ("max_adapters_per_replica", 0, "max_adapters_per_replica"),
        ("traffic_window", 0, "traffic_window"),
        ("probe_interval_s", 0, "probe_interval_s"),
        ("replicas_per_adaptor", 2, "replicas_per_adaptor"),  # a typo is refused, not ignored
    ],
)
def test_bad_placement_settings_are_refused_naming_the_key(
    field: str, value: Any, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        RemoteEngineConfig(urls=URLS[:1], **{field: value})


def test_a_replica_named_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"urls\n.*10.0.0.1:8000 given twice"):
        RemoteEngineConfig(urls=[URLS[0], URLS[1], URLS[0] + "/"])


# -- the engine over fake servers --------------------------------------------------------------


@pytest.fixture
def three() -> Iterator[list[Served]]:
    served = [Served(FakeVLLM(f"r{i}")).start() for i in range(3)]
    yield served
    for s in served:
        s.stop()


def config_for(urls: list[str], **remote: Any) -> EngineConfig:
    return EngineConfig(remote=RemoteEngineConfig(urls=urls, **remote))


async def started(urls: list[str], **remote: Any) -> RemoteEngine:
    engine = RemoteEngine(config_for(urls, **remote), model_id=MODEL, probe_interval_s=0.1)
    await engine.start()
    return engine


@pytest.fixture
async def engines() -> AsyncIterator[list[RemoteEngine]]:
    made: list[RemoteEngine] = []
    yield made
    for e in made:
        await e.stop()


async def test_two_gateways_with_the_same_replicas_place_each_version_alike(
    three: list[Served], engines: list[RemoteEngine], tmp_path: Path
) -> None:
    urls = [s.url for s in three]
    engines += [await started(urls), await started(list(reversed(urls)))]
    names = [f"d{i}" for i in range(30)]  # the ports are random: 30 miss a replica at 1e-5
    holders: dict[str, set[str]] = {}
    for name in names:
        for engine in engines:
            await engine.add_adapter(adapter(name, tmp_path))
        holders[name] = {s.url for s in three if f"{name}@1" in s.fake.adapters}
    for name in names:  # one replica each, the first of the version's ranking, on both
        assert holders[name] == {rank(f"{name}@1", urls)[0]}
    assert len({h for hs in holders.values() for h in hs}) == 3  # the versions spread out
    for name in names:
        for engine in engines:
            result = await generate(engine, request("x", adapter(name, tmp_path)))
            assert where(result.text) == next(s.fake.name for s in three if s.url in holders[name])
    assert sum(s.fake.loads for s in three) == len(names)  # the second gateway loaded nothing


async def test_k2_places_a_version_on_two_replicas_and_spreads_its_requests(
    three: list[Served], engines: list[RemoteEngine], tmp_path: Path
) -> None:
    urls = [s.url for s in three]
    engines.append(await started(urls, replicas_per_adapter=2))
    hr = adapter("hr", tmp_path)
    await engines[0].add_adapter(hr)
    held = [s for s in three if "hr@1" in s.fake.adapters]
    assert {s.url for s in held} == set(rank("hr@1", urls)[:2])
    for s in three:
        s.fake.token_delay_s = 0.03
    results = await asyncio.gather(*(generate(engines[0], request("a b", hr)) for _ in range(6)))
    assert Counter(where(r.text) for r in results) == {s.fake.name: 3 for s in held}


async def test_requests_go_to_the_least_loaded_holder(
    three: list[Served], engines: list[RemoteEngine], tmp_path: Path
) -> None:
    urls = [s.url for s in three]
    engines.append(await started(urls, replicas_per_adapter="all"))
    engine, hr = engines[0], adapter("hr", tmp_path)
    await engine.add_adapter(hr)
    for s in three:
        s.fake.token_delay_s = 0.05
    long = asyncio.create_task(generate(engine, request("w " * 12, max_tokens=40)))
    await asyncio.sleep(0.1)
    assert [r.inflight for r in engine.replicas].count(1) == 1
    busy = next(r for r in engine.replicas if r.inflight == 1)
    results = await asyncio.gather(*(generate(engine, request("a", hr)) for _ in range(2)))
    names = {s.url: s.fake.name for s in three}
    # Both go to the two idle replicas, one each; the busy one is skipped.
    assert sorted(where(r.text) for r in results) == sorted(
        names[r.url] for r in engine.replicas if r is not busy
    )
    await long


async def test_each_replica_keeps_its_budget_unloading_the_least_recently_used(
    engines: list[RemoteEngine], tmp_path: Path
) -> None:
    one = Served(FakeVLLM("r0")).start()
    try:
        engines.append(await started([one.url], max_adapters_per_replica=2))
        engine = engines[0]
        for name in "abcad":
            ref = adapter(name, tmp_path)
            await engine.add_adapter(ref)
            assert (await generate(engine, request("x", ref))).text.startswith(f"[{name}@1@r0]")
            assert len(one.fake.adapters) <= 2
        assert set(one.fake.adapters) == {"a@1", "d@1"}  # c pushed a out, a b, d c
        assert engine.loaded_adapters() == ["a@1", "b@1", "c@1", "d@1"]  # known, placed or not
        # A version unloaded from its replica loads again on its next request.
        result = await generate(engine, request("x", adapter("b", tmp_path)))
        assert result.text.startswith("[b@1@r0]")
        assert set(one.fake.adapters) == {"d@1", "b@1"}
        stats = engine.pool.stats()[0]
        assert (stats["loads"], stats["unloads"], stats["placements"]) == (6, 4, 2)
        # Versions in use are never unloaded: the load goes over budget, then trims.
        one.fake.token_delay_s = 0.05
        running = [
            asyncio.create_task(generate(engine, request("w " * 10, adapter(n, tmp_path))))
            for n in "db"
        ]
        await asyncio.sleep(0.15)
        assert (await generate(engine, request("x", adapter("a", tmp_path)))).text.startswith(
            "[a@1@r0]"
        )
        assert set(one.fake.adapters) == {"d@1", "b@1", "a@1"}
        assert all(r.completion_tokens == 11 for r in await asyncio.gather(*running))
        for _ in range(50):
            if len(one.fake.adapters) == 2:
                break
            await asyncio.sleep(0.02)
        # a's request ended first, while d and b still ran: a was the one free to go.
        assert set(one.fake.adapters) == {"d@1", "b@1"}
    finally:
        one.stop()


async def test_a_hot_version_gets_more_replicas_under_load(
    three: list[Served], engines: list[RemoteEngine], tmp_path: Path
) -> None:
    urls = [s.url for s in three]
    engines.append(await started(urls, traffic_window=20))
    engine, hot, cold = engines[0], adapter("hot", tmp_path), adapter("cold", tmp_path)
    await engine.add_adapter(hot)
    await engine.add_adapter(cold)
    assert sum("hot@1" in s.fake.adapters for s in three) == 1
    for s in three:
        s.fake.token_delay_s = 0.03
    await asyncio.gather(*(generate(engine, request("a b c", hot)) for _ in range(20)))
    # Its share is 20/20 > 2/3: all three replicas may hold it, and concurrent requests use them.
    assert sum("hot@1" in s.fake.adapters for s in three) == 3
    assert sum("cold@1" in s.fake.adapters for s in three) == 1  # a cold one stays on one


async def test_an_adapter_a_replica_refuses_goes_to_the_next_of_its_ranking(
    three: list[Served], engines: list[RemoteEngine], tmp_path: Path
) -> None:
    urls = [s.url for s in three]
    order = rank("hr@1", urls)
    by_url = {s.url: s for s in three}
    by_url[order[0]].fake.refuse.add("hr@1")
    engines.append(await started(urls))
    hr = adapter("hr", tmp_path)
    await engines[0].add_adapter(hr)
    assert "hr@1" in by_url[order[1]].fake.adapters
    result = await generate(engines[0], request("x", hr))
    assert where(result.text) == by_url[order[1]].fake.name
    for s in three:
        s.fake.refuse.add("bad@1")
    with pytest.raises(AdapterError, match="no replica could load adapter bad@1"):
        await engines[0].add_adapter(adapter("bad", tmp_path))


async def test_a_replica_failing_its_probe_leaves_only_the_third_time_in_a_row(
    three: list[Served], engines: list[RemoteEngine]
) -> None:
    engine = RemoteEngine(config_for([s.url for s in three]), model_id=MODEL, probe_interval_s=60)
    engines.append(engine)
    await engine.start()
    sick = engine.replicas[0]
    three[0].fake.models_fail = True
    for expected in (True, True, False):
        await engine.pool.probe()
        assert sick.healthy is expected
    three[0].fake.models_fail = False
    await engine.pool.probe()
    assert sick.healthy
    three[1].stop()  # refused: out at the first probe
    await engine.pool.probe()
    assert not engine.replicas[1].healthy


async def cut_at_home(
    three: list[Served], engines: list[RemoteEngine], tmp_path: Path
) -> tuple[RemoteEngine, AdapterRef, Served]:
    """An engine over `three` with adapter hr placed; its home replica cuts its next stream."""
    urls = [s.url for s in three]
    engine = RemoteEngine(config_for(urls), model_id=MODEL, probe_interval_s=60)
    engines.append(engine)
    await engine.start()
    ref = adapter("hr", tmp_path)
    await engine.add_adapter(ref)
    home = next(s for s in three if s.url == rank(ref.key, urls)[0])
    home.fake.cut_streams = 1
    return engine, ref, home


async def test_a_cut_stream_fails_its_request_but_a_replica_that_answers_stays(
    three: list[Served], engines: list[RemoteEngine], tmp_path: Path
) -> None:
    engine, ref, home = await cut_at_home(three, engines, tmp_path)
    got: list[str] = []

    async def read() -> None:
        async for chunk in engine.stream(request("a b c", ref)):
            got.append(chunk.text)

    with pytest.raises(EngineUnavailableError, match="in the middle of this answer"):
        await read()
    assert got == [f"[{ref.key}@{home.fake.name}]"]  # the first token, then the cut
    for _ in range(50):  # asked again at once (not at the next probe, a minute away)
        if all(r.healthy for r in engine.replicas):
            break
        await asyncio.sleep(0.02)
    replica = next(r for r in engine.replicas if r.url == home.url)
    assert replica.healthy
    assert ref.key in replica.adapters  # its placement kept: no cold load elsewhere
    result = await generate(engine, request("a b c", ref))
    assert where(result.text) == home.fake.name
    assert sum(s.fake.loads for s in three) == 1


async def test_a_buffered_request_cut_mid_answer_is_answered_whole_elsewhere(
    three: list[Served], engines: list[RemoteEngine], tmp_path: Path
) -> None:
    """No `stream`: nothing reached the client, so the answer starts again on another replica."""
    engine, ref, home = await cut_at_home(three, engines, tmp_path)
    result = await generate(engine, replace(request("a b c", ref), buffered=True))
    assert home.fake.cut_streams == 0  # its first try was cut mid-answer on its home
    # Whole and once (the cut try's first token is not in it), from the next replica.
    assert result.text == f"[{ref.key}@{where(result.text)}] a b c"
    assert where(result.text) != home.fake.name
    assert result.finish_reason is not None
    assert result.completion_tokens > 0


# -- faults: replicas killed with SIGKILL ------------------------------------------------------


@pytest.fixture
def processes() -> Iterator[list[ServedProcess]]:
    made = [ServedProcess(f"p{i}", token_delay_s=0.02).start() for i in range(3)]
    yield made
    for p in made:
        p.kill()


@pytest.mark.slow
async def test_a_killed_replica_fails_only_the_streams_it_had_started(
    processes: list[ServedProcess], engines: list[RemoteEngine], tmp_path: Path
) -> None:
    urls = [p.url for p in processes]
    engines.append(await started(urls))
    engine = engines[0]
    refs = [adapter(f"t{i}", tmp_path) for i in range(9)]
    for ref in refs:
        await engine.add_adapter(ref)
    homes = Counter(rank(r.key, urls)[0] for r in refs)
    at = urls.index(homes.most_common(1)[0][0])  # the ports are random: kill the busiest home
    victim = processes[at]
    owned = [r for r in refs if rank(r.key, urls)[0] == victim.url]
    ok, failed, cut_on_victim = Counter[str](), [], 0
    stop = asyncio.Event()

    async def client(seed: int) -> None:
        rnd = random.Random(seed)
        while not stop.is_set():
            ref = rnd.choice(refs)
            got = []
            # Odd clients collect their answers (no `stream`): those never fail here.
            req = replace(request("one two three four five six", ref), buffered=seed % 2 == 1)
            try:
                async for chunk in engine.stream(req):
                    got.append(chunk.text)
                text = "".join(got)
                # Whole and once: a retry after tokens were sent would repeat them.
                assert text == f"[{ref.key}@{where(text)}] one two three four five six"
                ok[where(text)] += 1
            except EngineUnavailableError as exc:
                failed.append((got, str(exc), req.buffered))

    clients = [asyncio.create_task(client(i)) for i in range(6)]
    await asyncio.sleep(1.0)
    cut_on_victim = next(r for r in engine.replicas if r.url == victim.url).inflight
    victim.kill()
    await asyncio.sleep(1.5)
    stop.set()
    await asyncio.gather(*clients)
    assert ok[victim.name] > 0  # the victim served before it died
    assert sum(ok.values()) > 30
    # Only streams already under way on the victim failed, each after its first tokens.
    assert len(failed) <= cut_on_victim
    assert all(got and "in the middle of this answer" in msg for got, msg, _ in failed)
    assert not [msg for _, msg, buffered in failed if buffered]  # those start again elsewhere
    # The victim's versions moved to the next replica of their rankings and answer there.
    for ref in owned:
        result = await generate(engine, request("x", ref))
        assert where(result.text) == {p.url: p.name for p in processes}[rank(ref.key, urls)[1]]
    # The replica comes back on its port and gets its versions back (the probe places them).
    back = ServedProcess(victim.name, port=victim.port, token_delay_s=0.02).start()
    processes[at] = back
    for _ in range(100):
        if {r.key for r in owned} <= back.adapters():
            break
        await asyncio.sleep(0.05)
    assert {r.key for r in owned} <= back.adapters()
    result = await generate(engine, request("x", owned[0]))
    second = {p.url: p.name for p in processes}[rank(owned[0].key, urls)[1]]
    assert where(result.text) in {victim.name, second}  # home, or its copy until evicted


async def test_no_request_fails_while_another_replica_can_serve_it(
    three: list[Served], engines: list[RemoteEngine], tmp_path: Path
) -> None:
    urls = [s.url for s in three]
    engines.append(await started(urls))
    engine = engines[0]
    ref = adapter("hr", tmp_path)
    await engine.add_adapter(ref)
    home = next(s for s in three if s.url == rank(ref.key, urls)[0])
    home.stop()  # gone before the request: the connection is refused, the next replica serves
    results = await asyncio.gather(*(generate(engine, request("a b", ref)) for _ in range(5)))
    assert all(where(r.text) not in ("", home.fake.name) for r in results)
    assert engine.ready
    for s in three:
        if s is not home:
            s.stop()
    with pytest.raises(EngineUnavailableError, match="retry shortly"):
        await generate(engine, request("a b", ref))
    assert not engine.ready
