"""The gateway pool: who is healthy, who has room, who is next.

Each gateway is a member with a window (messages in flight), an optional
token bucket (parts per second) and a circuit breaker: after
``max_failures`` temporary errors in a row it leaves the pool for
``down_for`` seconds, then gets one more chance. Among the members that can
take a message now, smooth weighted round-robin picks one, so traffic
splits by weight and a busy or throttled member is passed over rather than
waited for.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import Any

from twisted.logger import Logger

from smsd.config import GatewaySection
from smsd.gateways.base import Gateway, Health

log = Logger()


class TokenBucket:
    """``rate`` parts a second, a burst of one second's worth.

    A message of several parts may take the bucket below zero; the next one
    then waits until it is back to one token, so the average rate holds.
    """

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def ready(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= 1.0

    def take(self, n: int, now: float) -> None:
        self._refill(now)
        self.tokens -= n

    def wait(self, now: float) -> float:
        """Seconds until a message may go."""
        self._refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate


class Availability(enum.Enum):
    READY = "ready"  # someone can take it now
    BUSY = "busy"  # someone is up but full or throttled: wait
    DOWN = "down"  # nobody is up


class Member:
    def __init__(
        self,
        gateway: Gateway,
        *,
        now: float,
        window: int = 10,
        throughput: float = 0.0,
        weight: int = 1,
        max_failures: int = 5,
        down_for: float = 30.0,
        enabled: bool = True,
        send_timeout: float = 0.0,
    ) -> None:
        self.gateway = gateway
        self.id = gateway.id
        self.window = window
        self.weight = weight
        self.bucket = TokenBucket(throughput, now) if throughput > 0 else None
        self.max_failures = max_failures
        self.down_for = down_for
        self.enabled = enabled
        self.send_timeout = send_timeout  # 0: wait as long as the driver takes
        self.in_flight = 0
        self.failures = 0  # temporary errors in a row
        self.down_until = 0.0
        self.current = 0  # smooth weighted round-robin state
        self.sent = 0
        self.errors = 0

    @classmethod
    def from_settings(cls, gateway: Gateway, common: GatewaySection, now: float) -> Member:
        """A member as its [[gateway]] table describes it."""
        return cls(
            gateway,
            now=now,
            window=gateway.in_flight_limit(common.window),
            throughput=common.throughput,
            weight=common.weight,
            max_failures=common.max_failures,
            down_for=common.down_for,
            enabled=common.enabled,
            send_timeout=common.send_timeout,
        )

    def usable(self, now: float) -> bool:
        return self.enabled and self.gateway.health == Health.UP and now >= self.down_until

    def has_room(self, now: float) -> bool:
        return self.in_flight < self.window and (self.bucket is None or self.bucket.ready(now))

    def start(self, parts: int, now: float) -> None:
        self.in_flight += 1
        if self.bucket is not None:
            self.bucket.take(parts, now)

    def finish(self, now: float, *, sent: int, temporary_error: bool) -> None:
        self.in_flight -= 1
        self.sent += sent
        if not temporary_error:
            self.failures = 0
            return
        self.errors += 1
        self.failures += 1
        if self.failures >= self.max_failures:
            self.down_until = now + self.down_for
            self.failures = self.max_failures - 1  # one more error after the pause: out again
            log.warn(
                "gateway {gateway} out of the pool for {seconds:.0f}s"
                " after {count} errors in a row",
                gateway=self.id,
                seconds=self.down_for,
                count=self.max_failures,
            )

    def state(self, now: float) -> str:
        if not self.enabled:
            return Health.DISABLED.value
        if now < self.down_until:
            return "paused"
        return self.gateway.health.value

    def status(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.gateway.type,
            "state": self.state(now),
            "reason": self.gateway.health_reason,
            "in_flight": self.in_flight,
            "window": self.window,
            "throughput": self.bucket.rate if self.bucket else None,
            "sent_parts": self.sent,
            "errors": self.errors,
            **self.gateway.status(),
        }


class Pool:
    def __init__(self, members: Iterable[Member]) -> None:
        self.members = {m.id: m for m in members}

    def availability(self, ids: Sequence[str], now: float) -> Availability:
        up = [m for m in self._get(ids) if m.usable(now)]
        if not up:
            return Availability.DOWN
        if any(m.has_room(now) for m in up):
            return Availability.READY
        return Availability.BUSY

    def pick(self, ids: Sequence[str], now: float, exclude: Sequence[str] = ()) -> Member | None:
        """The member to send through now, or None if none of ``ids`` can take it."""
        ready = [
            m for m in self._get(ids) if m.id not in exclude and m.usable(now) and m.has_room(now)
        ]
        if not ready:
            return None
        if len(ready) == 1:
            return ready[0]
        total = 0
        best = ready[0]
        for m in ready:
            m.current += m.weight
            total += m.weight
            if m.current > best.current:
                best = m
        best.current -= total
        return best

    def capacity(self, now: float, horizon: float, ids: Sequence[str] | None = None) -> int:
        """How many messages the usable members (of ``ids``) could start within ``horizon``."""
        room = 0
        for m in self.members.values() if ids is None else self._get(ids):
            if not m.usable(now):
                continue
            free = max(0, m.window - m.in_flight)
            if m.bucket is not None and free:
                free = max(1, min(free, int(m.bucket.rate * horizon)))
            room += free
        return room

    def next_change(self, now: float, ids: Sequence[str] | None = None) -> float | None:
        """When a throttled or paused member (of ``ids``) will next be able to send.

        Only times still to come: a member that can send now is no change.
        """
        times = []
        for m in self.members.values() if ids is None else self._get(ids):
            if not m.enabled or m.gateway.health != Health.UP:
                continue
            if now < m.down_until:
                times.append(m.down_until)
            elif m.bucket is not None and m.in_flight < m.window:
                wait = m.bucket.wait(now)
                if wait > 0:
                    times.append(now + wait)
        return min(times) if times else None

    def _get(self, ids: Sequence[str]) -> list[Member]:
        return [self.members[i] for i in ids if i in self.members]

    def status(self, now: float) -> list[dict[str, Any]]:
        return [m.status(now) for m in self.members.values()]
