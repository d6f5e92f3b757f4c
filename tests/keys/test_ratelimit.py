"""Token buckets per key: requests and tokens per minute, estimates settled to real use."""

from __future__ import annotations

import pytest

from loramux.errors import RateLimitError
from loramux.keys.ratelimit import Limits, RateLimiter, estimate_tokens


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_requests_per_minute_burst_then_refill(clock: Clock) -> None:
    limiter = RateLimiter(clock)
    limits = Limits(rpm=2)
    limiter.count_request("k", limits)
    limiter.count_request("k", limits)
    with pytest.raises(RateLimitError) as info:
        limiter.count_request("k", limits)
    assert info.value.retry_after_s == 30  # 2 a minute: one every 30 s
    assert info.value.type == "requests"
    clock.now += 30
    limiter.count_request("k", limits)


def test_keys_have_separate_buckets(clock: Clock) -> None:
    limiter = RateLimiter(clock)
    limiter.count_request("a", Limits(rpm=1))
    limiter.count_request("b", Limits(rpm=1))
    with pytest.raises(RateLimitError):
        limiter.count_request("a", Limits(rpm=1))


def test_no_limit_never_refuses(clock: Clock) -> None:
    limiter = RateLimiter(clock)
    for _ in range(1000):
        limiter.count_request("k", Limits())
    assert limiter.charge_tokens("k", Limits(), 10**9) is None


def test_token_estimate_is_settled_to_the_real_count(clock: Clock) -> None:
    limiter = RateLimiter(clock)
    limits = Limits(tpm=100)
    charge = limiter.charge_tokens("k", limits, 100)
    assert charge is not None
    with pytest.raises(RateLimitError) as info:
        limiter.charge_tokens("k", limits, 10)
    assert info.value.type == "tokens"
    assert info.value.retry_after_s == 6  # 10 tokens at 100 a minute
    charge.settle(40)  # 60 of the estimate come back
    charge.settle(0)  # a second settlement changes nothing
    assert limiter.charge_tokens("k", limits, 60) is not None
    with pytest.raises(RateLimitError):
        limiter.charge_tokens("k", limits, 1)


def test_use_over_the_estimate_is_owed_by_the_next_request(clock: Clock) -> None:
    limiter = RateLimiter(clock)
    limits = Limits(tpm=60)
    charge = limiter.charge_tokens("k", limits, 30)
    assert charge is not None
    charge.settle(90)  # the bucket is now 30 in debt
    with pytest.raises(RateLimitError) as info:
        limiter.charge_tokens("k", limits, 1)
    assert info.value.retry_after_s == 31  # 31 tokens at 1 a second
    clock.now += 31
    assert limiter.charge_tokens("k", limits, 1) is not None


def test_a_request_larger_than_the_allowance_takes_a_full_bucket(clock: Clock) -> None:
    limiter = RateLimiter(clock)
    limits = Limits(tpm=50)
    charge = limiter.charge_tokens("k", limits, 500)
    assert charge is not None
    assert charge.estimate == 50
    with pytest.raises(RateLimitError):
        limiter.charge_tokens("k", limits, 500)
    clock.now += 60
    assert limiter.charge_tokens("k", limits, 500) is not None


def test_estimate_counts_four_characters_per_prompt_token_plus_max_tokens() -> None:
    assert estimate_tokens(13, 10) == 14
    assert estimate_tokens(0, 256) == 256


def test_use_is_reported_and_other_processes_use_is_absorbed() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    seen: list[tuple[str, int, int]] = []
    limiter.on_use = lambda key, requests, tokens: seen.append((key, requests, tokens))
    limits = Limits(rpm=10, tpm=1000)
    limiter.count_request("k", limits)
    charge = limiter.charge_tokens("k", limits, 100)
    assert charge is not None
    charge.settle(40)
    assert seen == [("k", 1, 0), ("k", 0, 40)]  # final use: the real tokens, not the estimate
    limiter.absorb("k", 9, 0)  # another gateway used the rest of the minute
    with pytest.raises(RateLimitError):
        limiter.count_request("k", limits)
    now[0] = 6.0  # one request refilled (10 per minute)
    limiter.count_request("k", limits)


def test_use_absorbed_before_a_key_is_seen_here_is_owed_by_its_first_bucket() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    limiter.absorb("k", 10, 0)
    now[0] = 12.0  # two of the ten refilled meanwhile
    limits = Limits(rpm=10)
    for _ in range(2):
        limiter.count_request("k", limits)
    with pytest.raises(RateLimitError):
        limiter.count_request("k", limits)
