"""The token-bucket limiter (memory and Redis, same semantics) and the global request limit."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from redis.asyncio import Redis

from guiche.plugin import PluginInfo, WebhookRouteSpec, hookimpl
from guiche.ratelimit import (
    Decision,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    Reservation,
    build_limiter,
)
from guiche.runtime.services import SERVICES

_octets = itertools.count(1)


def fresh_ip() -> str:
    """A client address no other test uses: Redis buckets outlive a test's app."""
    n = next(_octets)
    return f"198.51.{n // 250}.{n % 250 + 1}"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def redis(require_redis: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(require_redis)
    yield client
    await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def limiter_and_clock(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[RateLimiter, Clock]]:
    clock = Clock()
    if request.param == "memory":
        yield MemoryRateLimiter(clock=clock), clock
        return
    redis = Redis.from_url(request.getfixturevalue("require_redis"))
    yield RedisRateLimiter(redis, prefix=f"test:{uuid.uuid4().hex}:", clock=clock), clock
    await redis.aclose()


# --- the limiter -------------------------------------------------------------------------


async def test_bucket_spends_then_refills_at_the_rate(
    limiter_and_clock: tuple[RateLimiter, Clock],
) -> None:
    limiter, clock = limiter_and_clock
    take = lambda: limiter.acquire("k", rate=2.0, burst=3)  # noqa: E731
    assert [await take() for _ in range(3)] == [
        Decision(True, 0.0, 2),
        Decision(True, 0.0, 1),
        Decision(True, 0.0, 0),
    ]
    assert await take() == Decision(False, 0.5, 0)  # one token comes every 0.5 s
    clock.now += 0.25
    denied = await take()
    assert not denied.allowed and denied.retry_after == pytest.approx(0.25)
    clock.now += 0.25
    assert await take() == Decision(True, 0.0, 0)
    clock.now += 3600  # a long idle refills to the burst, not beyond
    assert await take() == Decision(True, 0.0, 2)


async def test_cost_and_separate_keys(limiter_and_clock: tuple[RateLimiter, Clock]) -> None:
    limiter, clock = limiter_and_clock
    assert await limiter.acquire("a", rate=1.0, burst=5, cost=4) == Decision(True, 0.0, 1)
    assert await limiter.acquire("a", rate=1.0, burst=5, cost=3) == Decision(False, 2.0, 1)
    assert await limiter.acquire("b", rate=1.0, burst=5, cost=5) == Decision(True, 0.0, 0)
    clock.now += 2
    assert await limiter.acquire("a", rate=1.0, burst=5, cost=3) == Decision(True, 0.0, 0)


async def test_concurrent_acquires_never_overspend(
    limiter_and_clock: tuple[RateLimiter, Clock],
) -> None:
    limiter, _ = limiter_and_clock
    decisions = await asyncio.gather(
        *(limiter.acquire("burst", rate=0.001, burst=5) for _ in range(20))
    )
    assert sum(decision.allowed for decision in decisions) == 5


@pytest.mark.parametrize(
    ("rate", "burst", "cost"), [(0, 1, 1), (-1.0, 1, 1), (1.0, 0, 1), (1.0, 2, 3), (1.0, 2, 0)]
)
async def test_impossible_parameters_are_refused(
    limiter_and_clock: tuple[RateLimiter, Clock], rate: float, burst: int, cost: int
) -> None:
    limiter, _ = limiter_and_clock
    with pytest.raises(ValueError):
        await limiter.acquire("k", rate=rate, burst=burst, cost=cost)


async def test_redis_buckets_expire_and_use_server_time(redis: Redis) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    limiter = RedisRateLimiter(redis, prefix=prefix)  # time from the Redis server
    assert await limiter.acquire("k", rate=10.0, burst=20) == Decision(True, 0.0, 19)
    ttl_ms = await redis.pttl(prefix + "k")
    assert 0 < ttl_ms <= 3000  # full again after 2 s: kept that long (plus a margin)


# --- reservations ------------------------------------------------------------------------


async def test_concurrent_reservations_are_spaced_one_interval_apart(
    limiter_and_clock: tuple[RateLimiter, Clock],
) -> None:
    limiter, _ = limiter_and_clock
    reservations = await asyncio.gather(
        *(limiter.reserve("k", rate=4.0, burst=2, max_wait=10) for _ in range(10))
    )
    assert all(reservation.allowed for reservation in reservations)
    waits = sorted(reservation.wait for reservation in reservations)
    assert waits == pytest.approx([0, 0] + [n / 4 for n in range(1, 9)])  # burst, then 1/rate
    # acquire sees the booked slots: the 11th token is 9 intervals away, none are left
    assert await limiter.acquire("k", rate=4.0, burst=2) == Decision(False, 2.25, 0)


async def test_a_reservation_beyond_max_wait_takes_nothing(
    limiter_and_clock: tuple[RateLimiter, Clock],
) -> None:
    limiter, clock = limiter_and_clock
    reserve = lambda: limiter.reserve("k", rate=2.0, burst=1, max_wait=1.0)  # noqa: E731
    assert [await reserve() for _ in range(3)] == [
        Reservation(True, 0.0, 0.0),
        Reservation(True, 0.5, 0.0),
        Reservation(True, 1.0, 0.0),  # the debt is now max_wait * rate = 2 tokens
    ]
    refused = [await reserve() for _ in range(3)]
    assert refused == [Reservation(False, 0.0, 0.5)] * 3  # refusals book nothing
    clock.now += 0.5
    assert await reserve() == Reservation(True, 1.0, 0.0)  # the slot retry_after promised
    clock.now += 3600  # the debt is paid, then the bucket refills to the burst, not beyond
    assert await limiter.acquire("k", rate=2.0, burst=1) == Decision(True, 0.0, 0)
    assert not (await limiter.acquire("k", rate=2.0, burst=1)).allowed


async def test_a_zero_max_wait_reservation_is_an_acquire(
    limiter_and_clock: tuple[RateLimiter, Clock],
) -> None:
    limiter, _ = limiter_and_clock
    assert await limiter.reserve("k", rate=2.0, burst=1, max_wait=0) == Reservation(True, 0, 0)
    assert await limiter.reserve("k", rate=2.0, burst=1, max_wait=0) == Reservation(False, 0.0, 0.5)
    assert await limiter.acquire("k", rate=2.0, burst=1) == Decision(False, 0.5, 0)


@pytest.mark.parametrize("max_wait", [-0.1, float("inf"), float("nan")])
async def test_unbounded_or_negative_waits_are_refused(
    limiter_and_clock: tuple[RateLimiter, Clock], max_wait: float
) -> None:
    limiter, _ = limiter_and_clock
    with pytest.raises(ValueError):
        await limiter.reserve("k", rate=1.0, burst=1, max_wait=max_wait)


async def test_redis_bucket_in_debt_outlives_its_debt(redis: Redis) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    limiter = RedisRateLimiter(redis, prefix=prefix)  # time from the Redis server
    for _ in range(6):  # five slots booked ahead: full again only after ~6 s
        assert (await limiter.reserve("k", rate=1.0, burst=1, max_wait=10)).allowed
    ttl_ms = await redis.pttl(prefix + "k")
    assert 5000 < ttl_ms <= 7000  # an expired bucket would forget the debt and overspend


# --- blocks: concurrent reservations booked together, unused tokens refunded -------------


async def test_a_block_books_what_the_calls_one_by_one_would(
    limiter_and_clock: tuple[Any, Clock],
) -> None:
    limiter, clock = limiter_and_clock
    reference = MemoryRateLimiter(clock=clock)  # `_take`, one call after another
    for count, max_wait, step in [(5, 1.0, 0.0), (7, 1.0, 0.3), (1, 0.0, 0.0), (12, 2.5, 4.0)]:
        clock.now += step
        block = await limiter.reserve_block("k", rate=4.0, burst=3, count=count, max_wait=max_wait)
        one_by_one = [
            await reference.reserve("k", rate=4.0, burst=3, max_wait=max_wait) for _ in range(count)
        ]
        assert block == pytest.approx(one_by_one)


async def test_redis_books_concurrent_unit_reservations_in_one_call(redis: Redis) -> None:
    limiter = RedisRateLimiter(redis, prefix=f"test:{uuid.uuid4().hex}:", clock=Clock())
    calls: list[int] = []
    script = limiter._block_script

    async def counted(*, keys: list[str], args: list[Any]) -> Any:
        calls.append(int(args[2]))
        return await script(keys=keys, args=args)

    limiter._block_script = counted  # type: ignore[method-assign]
    reservations = await asyncio.gather(
        *(limiter.reserve("k", rate=80.0, burst=80, max_wait=2.0) for _ in range(100))
    )
    assert calls == [100]  # one round trip for the hundred
    assert sorted(r.wait for r in reservations) == pytest.approx(
        [0.0] * 80 + [n / 80 for n in range(1, 21)]
    )
    assert not limiter._blocks  # no grouper kept for an idle bucket


async def test_a_caller_cancelled_before_its_answer_has_its_token_refunded(redis: Redis) -> None:
    limiter = RedisRateLimiter(redis, prefix=f"test:{uuid.uuid4().hex}:", clock=Clock())
    script = limiter._block_script
    release = asyncio.Event()

    async def slow(*, keys: list[str], args: list[Any]) -> Any:
        answer = await script(keys=keys, args=args)  # booked in Redis...
        await release.wait()  # ...and the answer still on its way
        return answer

    limiter._block_script = slow  # type: ignore[method-assign]
    callers = [
        asyncio.create_task(limiter.reserve("k", rate=1.0, burst=3, max_wait=0)) for _ in range(3)
    ]
    await asyncio.sleep(0.05)
    callers[1].cancel()
    release.set()
    assert (await callers[0]).allowed and (await callers[2]).allowed
    for _ in range(20):  # the refund runs soon after, in the background
        await asyncio.sleep(0.01)
        if not limiter._refunds:
            break
    assert await limiter.acquire("k", rate=1.0, burst=3) == Decision(True, 0.0, 0)
    assert not (await limiter.acquire("k", rate=1.0, burst=3)).allowed


async def test_blocks_with_refunds_keep_the_rate(limiter_and_clock: tuple[Any, Clock]) -> None:
    """Token-bucket bound on the slots kept: in any span, at most burst + rate × span."""
    limiter, clock = limiter_and_clock
    rate, burst = 10.0, 2
    kept: list[float] = []
    for step in range(60):
        block = await limiter.reserve_block("k", rate=rate, burst=burst, count=6, max_wait=0.5)
        granted = [clock.now + r.wait for r in block if r.allowed]
        unused = step % 3  # some booked slots are never used: the farthest ones go back
        if unused:
            await limiter.refund("k", rate=rate, burst=burst, tokens=min(unused, len(granted)))
            granted = granted[: max(0, len(granted) - unused)]
        kept.extend(granted)
        clock.now += 0.07
    kept.sort()
    assert len(kept) > 0.9 * rate * 60 * 0.07  # the rate is used, not starved
    for i, first in enumerate(kept):
        for j in range(i, len(kept)):
            assert j - i + 1 <= burst + rate * (kept[j] - first) + 1e-6


def test_build_limiter_picks_the_backend() -> None:
    assert isinstance(build_limiter(None), MemoryRateLimiter)
    fake_url = "redis://127.0.0.1:6379/0"  # no connection is made until a command runs
    assert isinstance(
        build_limiter(Redis.from_url(fake_url), "postgresql://h/db"), RedisRateLimiter
    )


# --- the global request limit ------------------------------------------------------------


async def provider_hook(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


class HookPlugin:
    @hookimpl
    def guiche_plugin_info(self) -> PluginInfo:
        return PluginInfo(name="ratehook", version="1")

    @hookimpl
    def guiche_webhook_routes(self) -> list[WebhookRouteSpec]:
        return [WebhookRouteSpec("POST", "inbound", provider_hook)]


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings overrides selecting the limiter backend (Redis through REDIS_URL)."""
    if request.param == "memory":
        return {"redis_url": None}
    return {"redis_url": request.getfixturevalue("require_redis")}


@pytest.fixture
def limited(make_client: Any, backend: dict[str, Any]) -> Callable[..., Any]:
    """A client whose requests come through a trusted proxy, so each test picks its IP."""

    async def make(per_minute: int, **overrides: Any) -> Any:
        settings = {"trusted_proxies": ["127.0.0.1"], **backend, **overrides}
        return await make_client(
            extra_plugins=(("ratehook", HookPlugin()),),
            rate_limit_per_minute=per_minute,
            **settings,
        )

    return make


def via(ip: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    return {"X-Forwarded-For": ip, **(headers or {})}


async def _spend(
    client: Any, n: int, headers: dict[str, str], path: str = "/api/v1/auth/me"
) -> None:
    for _ in range(n):
        resp = await client.get(path, headers=headers)
        assert resp.status != 429, await resp.text()


async def _assert_limited(client: Any, headers: dict[str, str]) -> None:
    resp = await client.get("/api/v1/auth/me", headers=headers)
    assert resp.status == 429, await resp.text()
    body = await resp.json()
    assert body["error"]["code"] == "rate_limited"
    assert body["error"]["details"] == {"limit_per_minute": 3}
    # 3 per minute refill one token every 20 s.
    assert 19 <= int(resp.headers["Retry-After"]) <= 20


async def test_anonymous_callers_are_limited_per_ip(limited: Any) -> None:
    client = await limited(3)
    ip, other = fresh_ip(), fresh_ip()
    await _spend(client, 3, via(ip))
    await _assert_limited(client, via(ip))
    await _spend(client, 3, via(other))  # another address has its own budget


async def login_from(client: Any, ip: str, member: Any) -> dict[str, str]:
    resp = await client.post(
        "/api/v1/auth/login",
        json={"email": member.email, "password": member.password},
        headers=via(ip),
    )
    assert resp.status == 200, await resp.text()
    return {"Authorization": f"Bearer {(await resp.json())['access_token']}"}


async def test_users_behind_one_ip_are_limited_separately(limited: Any, company: Any) -> None:
    client = await limited(3)
    ip = fresh_ip()
    agent = await company.add("agent")
    owner_auth = via(ip, await login_from(client, ip, company.owner))
    agent_auth = via(ip, await login_from(client, ip, agent))  # two of the IP's 3 requests
    await _spend(client, 3, owner_auth)
    await _assert_limited(client, owner_auth)
    await _spend(client, 3, agent_auth)
    await _assert_limited(client, agent_auth)
    await _spend(client, 1, via(ip))  # the address itself has one request left
    await _assert_limited(client, via(ip))


async def test_webhooks_health_and_metrics_are_never_limited(limited: Any) -> None:
    client = await limited(1)
    ip = fresh_ip()
    for _ in range(3):
        resp = await client.post("/webhooks/ratehook/inbound", headers=via(ip), json={})
        assert resp.status == 200
        for path in ("/health", "/health/ready", "/metrics"):
            assert (await client.get(path, headers=via(ip))).status == 200
    await _spend(client, 1, via(ip))
    resp = await client.get("/api/v1/auth/me", headers=via(ip))
    assert resp.status == 429


async def test_zero_disables_the_limit(limited: Any) -> None:
    client = await limited(0)
    await _spend(client, 10, via(fresh_ip()))


async def test_forwarded_for_is_read_from_the_right(limited: Any) -> None:
    """The hop our proxy appended names the client; hops the client wrote are not believed,
    and an IPv6 client is keyed by its /64."""
    client = await limited(3, trusted_proxies=["127.0.0.1", "10.0.0.0/8"])
    ip = fresh_ip()
    await _spend(client, 1, via(ip))
    await _spend(client, 1, via(f"{ip}, 10.1.2.3"))  # through a second trusted proxy
    await _spend(client, 1, via(f"203.0.113.9, {ip}"))  # spoofed leftmost hop
    await _assert_limited(client, via(ip))

    prefix = f"2001:db8:{next(_octets):x}:1"
    await _spend(client, 3, via(f"{prefix}::1"))
    await _assert_limited(client, via(f"{prefix}::2"))


async def test_forwarded_for_is_ignored_without_trusted_proxies(make_client: Any) -> None:
    client = await make_client(rate_limit_per_minute=3)  # memory: this app's own buckets
    for n in range(3):
        await _spend(client, 1, via(f"192.0.2.{n + 1}"))
    await _assert_limited(client, via("192.0.2.99"))


async def test_processes_share_the_budget_through_redis(
    make_client: Any, require_redis: str
) -> None:
    settings = {"rate_limit_per_minute": 3, "trusted_proxies": ["127.0.0.1"]}
    first = await make_client(redis_url=require_redis, **settings)
    second = await make_client(redis_url=require_redis, **settings)
    ip = fresh_ip()
    await _spend(first, 2, via(ip))
    await _spend(second, 1, via(ip))
    await _assert_limited(first, via(ip))
    await _assert_limited(second, via(ip))


async def test_a_redis_outage_fails_open(make_client: Any) -> None:
    client = await make_client(rate_limit_per_minute=1)
    unreachable = Redis.from_url("redis://127.0.0.1:1/0")
    client.app[SERVICES].limiter = RedisRateLimiter(unreachable)
    try:
        await _spend(client, 3, {})
    finally:
        await unreachable.aclose()
