"""The gateway pool: token buckets, windows, the circuit breaker and the pick.

Synchronous: no reactor runs. Times are plain numbers passed in, as the
dispatcher passes ``reactor.seconds()``.
"""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from smsd.core.pool import Availability, Member, Pool, TokenBucket
from smsd.gateways.base import Health
from tests.fakes import Events, FakeGateway

T0 = 1_800_000_000.0


def member(gateway_id: str, *, health: Health = Health.UP, **options: Any) -> Member:
    """A pool member around a fake gateway, created at T0."""
    return Member(FakeGateway(gateway_id, Events(), health=health), now=T0, **options)


def fill(m: Member, n: int, now: float = T0) -> None:
    """Start ``n`` one-part sends on ``m``."""
    for _ in range(n):
        m.start(1, now)


class TokenBucketTests(unittest.SynchronousTestCase):
    def test_burst_is_one_seconds_worth(self) -> None:
        """A fresh bucket lets ``rate`` parts go at once, then no more."""
        bucket = TokenBucket(5.0, T0)
        for _ in range(5):
            self.assertTrue(bucket.ready(T0))
            bucket.take(1, T0)
        self.assertFalse(bucket.ready(T0))

    def test_refills_at_rate(self) -> None:
        """Empty, it allows one more part every 1/rate seconds."""
        bucket = TokenBucket(5.0, T0)
        bucket.take(5, T0)
        self.assertAlmostEqual(bucket.wait(T0), 0.2)
        self.assertFalse(bucket.ready(T0 + 0.19))
        self.assertTrue(bucket.ready(T0 + 0.201))
        self.assertEqual(bucket.wait(T0 + 0.201), 0.0)

    def test_burst_does_not_grow_while_idle(self) -> None:
        """A long pause gives back one burst, not everything saved up."""
        bucket = TokenBucket(5.0, T0)
        sent = 0
        while bucket.ready(T0 + 3600):
            bucket.take(1, T0 + 3600)
            sent += 1
        self.assertEqual(sent, 5)

    def test_slow_rate_still_lets_one_go(self) -> None:
        """Below one part a second the burst is one part, the next after 1/rate."""
        bucket = TokenBucket(0.5, T0)
        self.assertTrue(bucket.ready(T0))
        bucket.take(1, T0)
        self.assertAlmostEqual(bucket.wait(T0), 2.0)
        self.assertFalse(bucket.ready(T0 + 1.9))
        self.assertTrue(bucket.ready(T0 + 2.001))

    def test_multipart_message_goes_into_debt(self) -> None:
        """A 4-part message may go with one token left; the next waits until the debt is paid."""
        bucket = TokenBucket(2.0, T0)
        bucket.take(1, T0)  # one token left
        self.assertTrue(bucket.ready(T0))
        bucket.take(4, T0)  # -3
        self.assertFalse(bucket.ready(T0))
        self.assertAlmostEqual(bucket.wait(T0), 2.0)  # back to one token: 4 / rate
        self.assertFalse(bucket.ready(T0 + 1.9))
        self.assertTrue(bucket.ready(T0 + 2.001))

    def test_average_rate_holds_over_time(self) -> None:
        """Sending whenever allowed for 10 s gives burst + rate * 10 parts."""
        bucket = TokenBucket(4.0, T0)
        sent = 0
        now = T0
        while now < T0 + 10:
            if bucket.ready(now):
                bucket.take(1, now)
                sent += 1
            else:
                now += bucket.wait(now)
        self.assertIn(sent, range(4 + 40 - 1, 4 + 40 + 2))


class MemberTests(unittest.SynchronousTestCase):
    def test_usable_only_when_enabled_up_and_not_paused(self) -> None:
        """A gateway that is starting, down or disabled is left out of the pool."""
        self.assertTrue(member("a").usable(T0))
        self.assertFalse(member("a", health=Health.STARTING).usable(T0))
        self.assertFalse(member("a", health=Health.DOWN).usable(T0))
        self.assertFalse(member("a", enabled=False).usable(T0))
        self.assertEqual(member("a", enabled=False).state(T0), "disabled")

    def test_window_limits_messages_in_flight(self) -> None:
        """With ``window`` sends open it has no room; one answer makes room again."""
        m = member("a", window=2)
        self.assertTrue(m.has_room(T0))
        fill(m, 2)
        self.assertEqual(m.in_flight, 2)
        self.assertFalse(m.has_room(T0))
        m.finish(T0, sent=1, temporary_error=False)
        self.assertEqual(m.in_flight, 1)
        self.assertTrue(m.has_room(T0))
        self.assertEqual(m.sent, 1)

    def test_throughput_limits_room(self) -> None:
        """With a throughput limit it has room only while its bucket has a token."""
        m = member("a", window=100, throughput=2.0)
        fill(m, 2)
        self.assertFalse(m.has_room(T0))
        self.assertTrue(m.has_room(T0 + 0.5))

    def test_multipart_takes_a_token_per_part(self) -> None:
        """A 3-part message at 3 parts/s uses the whole second's burst."""
        m = member("a", window=100, throughput=3.0)
        m.start(3, T0)
        self.assertFalse(m.has_room(T0 + 0.3))
        self.assertTrue(m.has_room(T0 + 0.334))


class CircuitBreakerTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.m = member("a", max_failures=3, down_for=30.0)

    def fail(self, now: float, n: int = 1) -> None:
        for _ in range(n):
            self.m.start(1, now)
            self.m.finish(now, sent=0, temporary_error=True)

    def succeed(self, now: float) -> None:
        self.m.start(1, now)
        self.m.finish(now, sent=1, temporary_error=False)

    def test_paused_after_max_failures_in_a_row(self) -> None:
        """Two errors leave it in; the third takes it out for down_for seconds."""
        self.fail(T0, 2)
        self.assertTrue(self.m.usable(T0))
        self.fail(T0 + 1)
        self.assertFalse(self.m.usable(T0 + 1))
        self.assertEqual(self.m.state(T0 + 1), "paused")
        self.assertFalse(self.m.usable(T0 + 30.9))
        self.assertTrue(self.m.usable(T0 + 31))
        self.assertEqual(self.m.state(T0 + 31), "up")
        self.assertEqual(self.m.errors, 3)

    def test_one_more_chance_after_the_pause(self) -> None:
        """After the pause a single further error takes it out again."""
        self.fail(T0, 3)
        self.fail(T0 + 31)
        self.assertFalse(self.m.usable(T0 + 31))
        self.assertEqual(self.m.down_until, T0 + 61)

    def test_success_after_the_pause_closes_the_breaker(self) -> None:
        """A success after the pause resets it: it takes max_failures errors again."""
        self.fail(T0, 3)
        self.succeed(T0 + 31)
        self.fail(T0 + 32, 2)
        self.assertTrue(self.m.usable(T0 + 32))

    def test_success_resets_the_count(self) -> None:
        """Errors that are not in a row never pause it."""
        for i in range(10):
            self.fail(T0 + i, 2)
            self.succeed(T0 + i)
        self.assertTrue(self.m.usable(T0 + 10))
        self.assertEqual(self.m.errors, 20)


class PickTests(unittest.SynchronousTestCase):
    def test_weights_split_traffic_smoothly(self) -> None:
        """Weights 3:1 over 400 picks give 300:100, the light one every fourth, not in runs."""
        pool = Pool([member("a", weight=3), member("b", weight=1)])
        picks = [pool.pick(("a", "b"), T0).id for _ in range(400)]  # type: ignore[union-attr]
        self.assertEqual(picks.count("a"), 300)
        self.assertEqual(picks.count("b"), 100)
        for i in range(len(picks) - 3):
            self.assertEqual(
                picks[i : i + 4].count("b"), 1, f"picks {i}..{i + 3}: {picks[i : i + 4]}"
            )

    def test_equal_weights_alternate(self) -> None:
        """Two gateways of equal weight take turns."""
        pool = Pool([member("a"), member("b")])
        picks = [pool.pick(("a", "b"), T0).id for _ in range(6)]  # type: ignore[union-attr]
        self.assertEqual(picks, ["a", "b", "a", "b", "a", "b"])

    def test_only_usable_members_with_room(self) -> None:
        """Down, disabled, paused or full members are passed over; none left: None."""
        full = member("full", window=1)
        fill(full, 1)
        paused = member("paused", max_failures=1, down_for=60)
        paused.start(1, T0)
        paused.finish(T0, sent=0, temporary_error=True)
        pool = Pool(
            [
                member("down", health=Health.DOWN),
                member("off", enabled=False),
                full,
                paused,
                member("ok"),
            ]
        )
        ids = ("down", "off", "full", "paused", "ok")
        self.assertEqual({pool.pick(ids, T0).id for _ in range(10)}, {"ok"})  # type: ignore[union-attr]
        self.assertIsNone(pool.pick(ids[:4], T0))

    def test_throttled_member_is_passed_over(self) -> None:
        """A member whose bucket is empty gives way to the others until it refills."""
        throttled = member("slow", throughput=1.0)
        pool = Pool([throttled, member("fast")])
        picks = []
        for _ in range(4):
            m = pool.pick(("slow", "fast"), T0)
            assert m is not None
            m.start(1, T0)
            picks.append(m.id)
        self.assertEqual(picks, ["slow", "fast", "fast", "fast"])
        self.assertEqual(pool.pick(("slow", "fast"), T0 + 0.1).id, "fast")  # type: ignore[union-attr]

    def test_exclude(self) -> None:
        """A failover never picks a gateway that was already tried."""
        pool = Pool([member("a"), member("b")])
        self.assertEqual(
            {pool.pick(("a", "b"), T0, exclude=("a",)).id for _ in range(5)},  # type: ignore[union-attr]
            {"b"},
        )
        self.assertIsNone(pool.pick(("a", "b"), T0, exclude=("a", "b")))

    def test_only_the_named_members(self) -> None:
        """Only the route's gateways are candidates; unknown ids are ignored."""
        pool = Pool([member("a"), member("b")])
        self.assertEqual({pool.pick(("b", "nope"), T0).id for _ in range(5)}, {"b"})  # type: ignore[union-attr]
        self.assertIsNone(pool.pick(("nope",), T0))
        self.assertIsNone(pool.pick((), T0))


class AvailabilityTests(unittest.SynchronousTestCase):
    def test_ready_busy_down(self) -> None:
        """READY if someone has room, BUSY if someone is up but full, DOWN if nobody is up."""
        a = member("a", window=1)
        pool = Pool([a, member("b", health=Health.DOWN)])
        self.assertIs(pool.availability(("a", "b"), T0), Availability.READY)
        fill(a, 1)
        self.assertIs(pool.availability(("a", "b"), T0), Availability.BUSY)
        self.assertIs(pool.availability(("b",), T0), Availability.DOWN)
        self.assertIs(pool.availability(("nope",), T0), Availability.DOWN)
        self.assertIs(pool.availability((), T0), Availability.DOWN)

    def test_throttled_is_busy(self) -> None:
        """A member waiting for its bucket is busy, not down: messages wait for it."""
        a = member("a", throughput=1.0)
        pool = Pool([a])
        a.start(1, T0)
        self.assertIs(pool.availability(("a",), T0), Availability.BUSY)
        self.assertIs(pool.availability(("a",), T0 + 1), Availability.READY)

    def test_paused_is_down(self) -> None:
        """A member the breaker took out counts as down (so fallbacks are used)."""
        a = member("a", max_failures=1, down_for=10)
        pool = Pool([a])
        a.start(1, T0)
        a.finish(T0, sent=0, temporary_error=True)
        self.assertIs(pool.availability(("a",), T0 + 5), Availability.DOWN)
        self.assertIs(pool.availability(("a",), T0 + 10), Availability.READY)


class CapacityTests(unittest.SynchronousTestCase):
    def test_free_windows_of_usable_members(self) -> None:
        """Capacity is the free room of the usable members' windows."""
        a = member("a", window=5)
        fill(a, 2)
        pool = Pool([a, member("b", window=4), member("down", window=50, health=Health.DOWN)])
        self.assertEqual(pool.capacity(T0, 60.0), 3 + 4)

    def test_throughput_over_the_horizon(self) -> None:
        """A throttled member counts what it may start within the horizon, at least one."""
        pool = Pool(
            [
                member("a", window=100, throughput=2.0),
                member("slow", window=100, throughput=0.01),
            ]
        )
        self.assertEqual(pool.capacity(T0, 1.5), 3 + 1)

    def test_window_still_limits_a_throttled_member(self) -> None:
        """A fast throttled member counts no more than its free window."""
        pool = Pool([member("a", window=4, throughput=1000.0)])
        self.assertEqual(pool.capacity(T0, 75.0), 4)

    def test_full_throttled_member_has_no_capacity(self) -> None:
        """A throttled member whose window is full can start nothing: capacity 0."""
        a = member("a", window=3, throughput=20.0)
        fill(a, 3)
        self.assertFalse(a.has_room(T0))
        self.assertEqual(Pool([a]).capacity(T0, 75.0), 0)


class NextChangeTests(unittest.SynchronousTestCase):
    def test_nothing_to_wait_for(self) -> None:
        """Unthrottled members change only when a send ends: no time to wake up at."""
        self.assertIsNone(Pool([member("a")]).next_change(T0))

    def test_throttled_member_refills(self) -> None:
        """An empty bucket: the time it has a token again."""
        a = member("a", throughput=4.0)
        a.start(4, T0)
        self.assertAlmostEqual(Pool([a]).next_change(T0), T0 + 0.25)  # type: ignore[arg-type]

    def test_paused_member_comes_back(self) -> None:
        """A paused member: the end of its pause; the earliest of several changes wins."""
        a = member("a", max_failures=1, down_for=10)
        a.start(1, T0)
        a.finish(T0, sent=0, temporary_error=True)
        b = member("b", throughput=1.0)
        b.start(1, T0)
        self.assertEqual(Pool([a]).next_change(T0 + 1), T0 + 10)
        self.assertEqual(Pool([a, b]).next_change(T0), T0 + 1)

    def test_full_or_down_members_are_not_waited_for(self) -> None:
        """A full window (an answer frees it) or a down gateway gives no time."""
        full = member("full", window=1, throughput=1.0)
        full.start(1, T0)
        down = member("down", throughput=1.0, health=Health.DOWN)
        down.start(1, T0)
        self.assertIsNone(Pool([full, down]).next_change(T0))
