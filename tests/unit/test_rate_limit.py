from api.rate_limit import RateLimiter, retry_after_header


def test_burst_then_refill_at_the_rate():
    limiter = RateLimiter(rate_per_s=2, burst=3)
    assert [limiter.acquire("bank:A", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire("bank:A", now=0.0)
    assert wait == 0.5  # one token comes back every 1/2 s
    assert limiter.acquire("bank:A", now=0.5) == 0.0
    assert limiter.acquire("bank:A", now=0.5) > 0


def test_callers_have_their_own_buckets():
    limiter = RateLimiter(rate_per_s=1, burst=1)
    assert limiter.acquire("bank:A", now=0.0) == 0.0
    assert limiter.acquire("bank:A", now=0.0) > 0
    assert limiter.acquire("bank:B", now=0.0) == 0.0


def test_idle_time_refills_no_more_than_the_burst():
    limiter = RateLimiter(rate_per_s=10, burst=2)
    limiter.acquire("k", now=0.0)
    assert [limiter.acquire("k", now=100.0) for _ in range(3)][:2] == [0.0, 0.0]
    assert limiter.acquire("k", now=100.0) > 0


def test_retry_after_is_whole_seconds_and_at_least_one():
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(1.2) == "2"
