"""From the outbox to the gateways: claim, route, pick, send, record.

The dispatcher keeps no queue of its own: it claims due messages from the
store in batches (each claim a lease), so that a crash or a second node
never loses or doubles a message. New messages that can go at once are
leased in the very commit that stores them (``offer``/``take``, used by the
Submitter); the rest wait in the queue. A submit wakes the dispatcher;
otherwise it sleeps until the next message is due, or ``poll`` seconds to
notice work queued by other processes.

Claims are per route: each route is asked for only what its gateways can
start within a quarter of the lease, so a busy, throttled or down gateway
leaves its backlog in the queue and never takes the room of other routes,
and nothing waits in memory past its lease (leases are renewed while it
does). Results are recorded in batches: every outcome of one reactor turn
goes to the store in one operation.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from smsd.config import DispatchSection
from smsd.core.pool import Availability, Member, Pool
from smsd.core.routing import Route, Router
from smsd.model import Message, PartResult, State
from smsd.store import Change, Claim, Outcome
from smsd.traffic import TrafficLog

log = Logger()

Notify = Callable[[list[Change]], None]


THROTTLED_DELAY = 1.0  # seconds a message refused for speed waits before it is claimed again


class SendTimeout(Exception):
    """A gateway did not answer a send within its send_timeout."""


@attrs.define
class _Waiting:
    message: Message
    route: Route


@attrs.define(slots=True)
class _Send:
    """A message handed to a gateway, until it answers or times out."""

    message: Message
    route: Route
    member: Member
    tried: tuple[str, ...]  # gateways tried in this attempt, this one last
    done: tuple[PartResult, ...]  # parts another gateway took before a fail-over
    deadline: float | None


class Dispatcher(Service):
    name = "dispatcher"

    def __init__(
        self,
        *,
        store: Any,
        router: Router,
        pool: Pool,
        reactor: Any,
        owner: str,
        settings: DispatchSection,
        notify: Notify,
        traffic: TrafficLog | None = None,
    ) -> None:
        self.store = store
        self.router = router
        self.pool = pool
        self.reactor = reactor
        self.owner = owner
        self.settings = settings
        self.notify = notify
        self.traffic = traffic
        self._routes = router.routes()
        self._waiting: dict[str, deque[_Waiting]] = {}  # by route key
        self._waiting_count = 0
        self._flying: set[int] = set()  # ids of messages a gateway is sending
        self._promised: dict[str | None, int] = {}  # room offered to the Submitter
        self._open_sends: dict[str, dict[int, _Send]] = {}  # by gateway, oldest first
        self._token = 0
        self._sweeper = LoopingCall(self._sweep_timeouts)
        self._sweeper.clock = reactor
        self._claiming = False
        # Nothing is claimed or leased at commit before the start has taken back the
        # leases of an earlier run: that release is by owner, and would take back (and
        # so send twice) what this run had claimed meanwhile.
        self._ready = False
        self._look = False  # something may have become due: claim at the next pump
        self._more = False  # the last claim was full: there may be more due
        self._pump_call: Any = None
        self._timer: Any = None
        self._in_flight = 0
        self._outcomes: list[Outcome] = []
        self._flush_call: Any = None
        self._recording: set[Deferred[Any]] = set()
        self._maintenance: LoopingCall | None = None
        self._last_purge = 0.0
        self.counters = {
            "sent": 0,
            "failed": 0,
            "retried": 0,
            "expired": 0,
            "throttled": 0,
            "claims": 0,  # claims from the store (not counting those made at commit)
            "claimed": 0,  # messages they brought
        }

    # Life -----------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        now = self.reactor.seconds()
        d = self.store.reroute(list(self._routes))
        d.addCallback(lambda _: self.store.release_leases(self.owner, now, True))
        d.addCallback(self._released)
        d.addErrback(self._release_failed)
        self._maintenance = LoopingCall(self._maintain)
        self._maintenance.clock = self.reactor
        # Often enough to renew leases well before they run out.
        self._maintenance.start(min(30.0, self.settings.lease / 3), now=False)
        if any(m.send_timeout for m in self.pool.members.values()):
            self._sweeper.start(
                min(1.0, *(m.send_timeout for m in self.pool.members.values() if m.send_timeout)),
                now=False,
            )

    def _released(self, count: int) -> None:
        if count:
            log.info("took back {count} messages left in flight by an earlier run", count=count)
        self._ready = True
        self.wake()

    def _release_failed(self, failure: Failure) -> None:
        log.failure("cannot release old leases", failure)
        self._ready = True
        self.wake()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        for call in (self._pump_call, self._timer):
            if call is not None and call.active():
                call.cancel()
        self._pump_call = self._timer = None
        if self._maintenance is not None and self._maintenance.running:
            self._maintenance.stop()
        if self._sweeper.running:
            self._sweeper.stop()
        now = self.reactor.seconds()
        for queue in self._waiting.values():  # claimed but not handed to a gateway
            self._release(queue, now, now, None)
        self._waiting.clear()
        return self._drain(self.reactor.seconds() + 15.0)

    def _drain(self, deadline: float) -> Deferred[None]:
        """Wait for sends in flight (until ``deadline``), then for the last records."""
        d: Deferred[None] = Deferred()

        def check() -> None:
            if (self._in_flight or self._claiming) and self.reactor.seconds() < deadline:
                self.reactor.callLater(0.05, check)
                return
            if self._in_flight:
                log.warn(
                    "{count} sends still open at shutdown; they stay leased", count=self._in_flight
                )
            self._flush()
            pending = list(self._recording)
            if not pending:
                d.callback(None)
                return
            DeferredList(pending).addBoth(lambda _: d.callback(None))

        check()
        return d

    # Pumping ---------------------------------------------------------------

    def wake(self) -> None:
        """There may be new work: a submit was committed, a gateway came up, time passed."""
        self._look = True
        self._schedule_pump()

    def _schedule_pump(self) -> None:
        """Hand out what waits; claim more only if there may be more (see _pump)."""
        if self.running and self._pump_call is None:
            self._pump_call = self.reactor.callLater(0, self._pump)

    def _sleep_until(self, when: float) -> None:
        if not self.running:
            return
        delay = max(0.0, when - self.reactor.seconds())
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= when:
                return
            self._timer.cancel()
        self._timer = self.reactor.callLater(delay, self._wake_from_timer)

    def _wake_from_timer(self) -> None:
        self._timer = None
        self.wake()

    def _pump(self) -> None:
        self._pump_call = None
        if not self.running or not self._ready:
            return
        now = self.reactor.seconds()
        self._hand_out(now)
        # Claim only when there may be something to claim: after a wake, or
        # when the last claim came back full. A send that finishes frees room
        # but brings no new work: claiming then would mean one tiny claim per
        # message under load.
        if self._claiming or not (self._look or self._more):
            return
        limits = self._claim_limits(now)
        if not limits:
            self._sleep_until(self._next_change(now, None))
            return
        self._claiming = True
        self._look = False
        limit = min(self.settings.batch, sum(limits.values()))
        d = self.store.claim(self.owner, now, self.settings.lease, limit, limits)
        d.addCallbacks(self._claimed, self._claim_failed, callbackArgs=(limits,))

    def _claim_limits(self, now: float) -> dict[str | None, int]:
        """How many due messages of each route could start soon.

        Routes whose gateways are all busy, throttled or down are left out,
        so that what they cannot carry stays in the queue instead of taking
        the room of routes that can go. A quarter of the lease is the
        horizon: a throttled gateway never holds a message past its lease.
        """
        horizon = self.settings.lease / 4
        limits: dict[str | None, int] = {}
        for key, route in self._routes.items():
            candidates = self._candidates(route, now)
            room = self.pool.capacity(now, horizon, candidates) - self._waiting_for(key)
            room -= self._promised.get(key, 0)
            if room > 0:
                limits[key] = min(room, self.settings.batch)
        # Messages with no route key (queued by an older configuration or a
        # tool that does not route) may go wherever there is room; those that
        # then have to wait keep the key found for them when they are released.
        # What waits for a busy route takes no room from the others, but the
        # waiting as a whole stays bounded.
        blocked = sum(
            len(q)
            for q in self._waiting.values()
            if self.pool.availability(self._candidates(q[0].route, now), now)
            is not Availability.READY
        )
        room = self.pool.capacity(now, horizon) - (self._waiting_count - blocked)
        room -= sum(self._promised.values())
        room = min(room, 2 * self.settings.batch - self._waiting_count)
        if room > 0:
            limits[None] = min(room, self.settings.batch)
        return limits

    def offer(self) -> Claim | None:
        """What new messages this node can start now, for the Submitter to lease as
        it commits them (they skip the queue and a claim). Promised room is kept
        out of further claims until ``take`` says what was taken."""
        if not self.running or not self._ready:
            return None
        now = self.reactor.seconds()
        limits = {k: n for k, n in self._claim_limits(now).items() if k is not None}
        if not limits:
            return None
        for key, n in limits.items():
            self._promised[key] = self._promised.get(key, 0) + n
        return Claim(self.owner, now + self.settings.lease, limits)

    def take(self, messages: list[Message], claim: Claim) -> None:
        """Messages leased at commit, ready to send."""
        for key, n in claim.limits.items():
            left = self._promised.get(key, 0) - n
            if left > 0:
                self._promised[key] = left
            else:
                self._promised.pop(key, None)
        if not messages:
            return
        now = self.reactor.seconds()
        if not self.running:  # stopped meanwhile: back to the queue
            for m in messages:
                self._add_outcome(Outcome(m.id, None, (), State.QUEUED, now, now, False))
            return
        for m in messages:
            self._wait(m)
        self._hand_out(now)

    def _waiting_for(self, key: str) -> int:
        queue = self._waiting.get(key)
        return len(queue) if queue else 0

    def _claimed(self, messages: list[Message], limits: dict[str | None, int]) -> None:
        self._claiming = False
        self.counters["claims"] += 1
        self.counters["claimed"] += len(messages)
        now = self.reactor.seconds()
        if not self.running:  # stopped while the claim was on its way: give them back
            for m in messages:
                self._add_outcome(Outcome(m.id, None, (), State.QUEUED, now, now, False))
            self._flush()
            return
        counts: dict[str | None, int] = {}
        for m in messages:
            key = m.route if m.route in limits else None
            counts[key] = counts.get(key, 0) + 1
            self._wait(m)
        self._hand_out(now)
        self._more = any(counts.get(key, 0) >= n for key, n in limits.items())
        if self._more or self._look:
            self._schedule_pump()
        elif messages:
            self._sleep_until(now + self.settings.poll)  # work queued by other processes
        else:
            self.store.next_due().addCallbacks(self._schedule_next, self._claim_failed)

    def _schedule_next(self, due: float | None) -> None:
        now = self.reactor.seconds()
        limit = now + self.settings.poll
        if due is not None and due <= now:
            # Due, yet not claimed: its gateways have no room. Their health
            # changing wakes us; look again at the poll interval anyway.
            due = None
        self._sleep_until(limit if due is None else min(due, limit))

    def _claim_failed(self, failure: Failure) -> None:
        self._claiming = False
        log.failure("claiming messages from the store failed", failure)
        self._sleep_until(self.reactor.seconds() + max(self.settings.poll, 1.0))

    def _hand_out(self, now: float) -> None:
        """Give waiting messages to gateways with room; keep those that must wait.

        Waiting messages are grouped by route, so that when a route's gateways
        are full the rest of its group is passed over at once: a pump costs
        what it sends, not what waits.
        """
        for key in list(self._waiting):
            queue = self._waiting[key]
            candidates = self._candidates(queue[0].route, now)
            while queue:
                w = queue[0]
                m = w.message
                if m.expires_at <= now:
                    queue.popleft()
                    self._waiting_count -= 1
                    self.counters["expired"] += 1
                    self._add_outcome(
                        Outcome(
                            m.id, None, (), State.EXPIRED, now, None, False, "validity period ended"
                        )
                    )
                    continue
                member = self.pool.pick(candidates, now) if candidates else None
                if member is None:
                    break
                queue.popleft()
                self._waiting_count -= 1
                self._send(m, w.route, member, now, (), ())
            if queue and (
                not candidates or self.pool.availability(candidates, now) is Availability.DOWN
            ):
                # Nobody who may carry them is up: back to the queue, no attempt
                # counted. They are not claimed again until a gateway comes up.
                self._release(queue, now, now, "no gateway up for this number")
            if not queue:
                del self._waiting[key]
        if self._waiting:
            waited_for = {g for q in self._waiting.values() for g in q[0].route.gateways}
            self._sleep_until(self._next_change(now, sorted(waited_for)))

    def _next_change(self, now: float, ids: list[str] | None) -> float:
        change = self.pool.next_change(now, ids)
        return change if change is not None else now + self.settings.poll

    def _wait(self, message: Message) -> None:
        route = self.router.route(message)
        queue = self._waiting.get(route.key)
        if queue is None:
            queue = self._waiting[route.key] = deque()
        queue.append(_Waiting(message, route))
        self._waiting_count += 1

    def _release(self, queue: deque[_Waiting], now: float, due: float, error: str | None) -> None:
        """Claimed messages that were not sent go back to the queue, no attempt counted.

        They keep the route found for them, so that they are not claimed again
        until that route can carry them.
        """
        while queue:
            w = queue.popleft()
            self._waiting_count -= 1
            self._add_outcome(
                Outcome(w.message.id, None, (), State.QUEUED, now, due, False, error, w.route.key)
            )

    def reachable(self, number: str, user: str | None, pinned: str | None = None) -> bool:
        """Is a gateway up that could carry an SMS to ``number`` now (route or fallback)?

        For channels whose clients would rather try another path than wait in
        the queue (a paging system: SNPP answers 554 and the pager goes elsewhere).
        """
        route = self.router.route_for(number, user, pinned)
        ids = route.gateways + route.fallback
        return self.pool.availability(ids, self.reactor.seconds()) is not Availability.DOWN

    def _candidates(self, route: Route, now: float) -> tuple[str, ...]:
        """The route's gateways, or its fallbacks while none of those is up."""
        if route.fallback and self.pool.availability(route.gateways, now) is Availability.DOWN:
            return route.fallback
        return route.gateways

    # Sending ---------------------------------------------------------------

    def _send(
        self,
        message: Message,
        route: Route,
        member: Member,
        now: float,
        tried: tuple[str, ...],
        done: tuple[PartResult, ...],
    ) -> None:
        outgoing = message
        if route.number is not None and member.id in route.gateways:  # not for fallbacks
            outgoing = attrs.evolve(message, recipient=route.number)
        member.start(len(message.parts), now)
        self._in_flight += 1
        self._flying.add(message.id)
        self._token += 1
        token = self._token
        # Open sends are kept per gateway in the order they started, which is
        # also the order of their deadlines: the timeout sweep looks only at
        # the oldest. (A timer per send would make the reactor's heap churn.)
        deadline = now + member.send_timeout if member.send_timeout else None
        send = _Send(message, route, member, (*tried, member.id), done, deadline)
        self._open_sends.setdefault(member.id, {})[token] = send
        try:
            d = member.gateway.send(outgoing)
        except Exception:
            d = fail(Failure())
        d.addCallbacks(
            self._answered, self._failed, callbackArgs=(token, send), errbackArgs=(token, send)
        )

    def _answered(self, results: list[PartResult], token: int, send: _Send) -> None:
        if self._open_sends[send.member.id].pop(token, None) is not None:
            self._finish(results, send)
        # else: timed out already, and dealt with as a temporary error

    def _failed(self, failure: Failure, token: int, send: _Send) -> None:
        if self._open_sends[send.member.id].pop(token, None) is not None:
            self._finish(self._send_error(failure, send.message), send)
        else:
            log.failure("late failure from gateway {id}", failure, id=send.member.id)

    def _finish(self, results: list[PartResult], send: _Send) -> None:
        try:
            self._sent(results, send)
        except Exception:
            log.failure("recording a send result failed")

    def _sweep_timeouts(self) -> None:
        """Time out the sends a gateway has not answered within its send_timeout:
        a driver that never answers must not hold its messages and window
        slots for ever. A late answer is then dropped."""
        now = self.reactor.seconds()
        for pending in list(self._open_sends.values()):
            while pending:
                token, send = next(iter(pending.items()))
                if send.deadline is None or send.deadline > now:
                    break
                del pending[token]
                why = f"no answer from the gateway in {send.member.send_timeout:g}s"
                log.warn("message {id}: {why}", id=send.message.id, why=why)
                self._finish(self._send_error(Failure(SendTimeout(why)), send.message), send)

    def _send_error(self, failure: Failure, message: Message) -> list[PartResult]:
        if not failure.check(SendTimeout):
            log.failure("gateway send raised for message {id}", failure, id=message.id)
        status = f"gateway error: {failure.getErrorMessage()}"
        return [PartResult(p.seq, False, status=status, temporary=True) for p in message.parts]

    def _sent(self, results: list[PartResult], send: _Send) -> None:
        message, route, member, tried, done = (
            send.message,
            send.route,
            send.member,
            send.tried,
            send.done,
        )
        self._in_flight -= 1
        self._flying.discard(message.id)
        now = self.reactor.seconds()
        if len(results) != len(message.parts):  # a driver bug: never lose a part over it
            by_seq = {r.seq: r for r in results}
            missing = PartResult(0, False, status="no result from gateway")
            results = [by_seq.get(p.seq, attrs.evolve(missing, seq=p.seq)) for p in message.parts]
        ok: list[int] = []
        temporary: list[PartResult] = []
        permanent: list[PartResult] = []
        for r in results:
            if r.ok:
                ok.append(r.seq)
            else:
                (temporary if r.temporary else permanent).append(r)
        throttled = bool(temporary) and all(r.throttled for r in temporary)
        # A throttled link is not a failing one: no strike against the gateway.
        member.finish(now, sent=len(ok), temporary_error=bool(temporary) and not throttled)
        if ok and self.traffic is not None:
            self.traffic.outbound(message, member.id, ok, now)
        all_results = (*done, *results)
        if permanent:
            state, due, error = State.FAILED, None, permanent[0].status or "refused by the network"
            self.counters["failed"] += 1
        elif temporary:
            if self.running:
                candidates = self._candidates(route, now)
                other = self.pool.pick(candidates, now, exclude=tried) if candidates else None
                if other is not None:  # fail over at once, with the parts still to go
                    left = tuple(p for p in message.parts if p.seq not in ok)
                    ok_results = tuple(
                        r if r.gateway else attrs.evolve(r, gateway=member.id)
                        for r in all_results
                        if r.ok
                    )  # results without a gateway are the last one's, so stamp them now
                    self._send(
                        attrs.evolve(message, parts=left), route, other, now, tried, ok_results
                    )
                    return
            attempts = message.attempts + 1
            error = temporary[0].status or "temporary error"
            if throttled:  # back to the queue for a moment; not an attempt
                self.counters["throttled"] += 1
                self._add_outcome(
                    Outcome(
                        message.id,
                        member.id,
                        all_results,
                        State.QUEUED,
                        now,
                        now + THROTTLED_DELAY,
                        False,
                        error,
                    )
                )
                self._schedule_pump()
                return
            if self.settings.max_attempts and attempts >= self.settings.max_attempts:
                state, due = State.FAILED, None
                error = f"gave up after {attempts} attempts: {error}"
                self.counters["failed"] += 1
            else:
                state, due = State.QUEUED, now + self.backoff(attempts)
                self.counters["retried"] += 1
        else:
            state, due, error = State.SENT, None, None
            self.counters["sent"] += 1
        self._add_outcome(Outcome(message.id, member.id, all_results, state, now, due, True, error))
        self._schedule_pump()  # room for the messages that wait

    def backoff(self, attempts: int) -> float:
        """Exponential back-off with 10% jitter (so that retries do not come in
        waves), never outside retry_min..retry_max."""
        low, high = self.settings.retry_min, self.settings.retry_max
        delay = min(high, low * 2 ** min(attempts - 1, 64)) * random.uniform(0.9, 1.1)
        return min(high, max(low, delay))

    # Recording -------------------------------------------------------------

    def _add_outcome(self, outcome: Outcome) -> None:
        if outcome.state == State.QUEUED and outcome.due_at is not None:
            self._sleep_until(outcome.due_at)  # look again when it is due
        self._outcomes.append(outcome)
        if self._flush_call is None:
            self._flush_call = self.reactor.callLater(0, self._flush)

    def _flush(self) -> None:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        if not self._outcomes:
            return
        batch, self._outcomes = self._outcomes, []
        d = self.store.record(batch, self.owner)
        self._recording.add(d)
        d.addBoth(self._recorded, d, batch)

    def _recorded(self, result: Any, d: Deferred[Any], batch: list[Outcome]) -> None:
        self._recording.discard(d)
        if isinstance(result, Failure):
            # The messages stay leased; after the lease they are sent again.
            log.failure("recording {count} send results failed", result, count=len(batch))
            return
        if result:
            self.notify(result)

    # Housekeeping ----------------------------------------------------------

    def _maintain(self) -> Deferred[None]:
        now = self.reactor.seconds()
        mine = [w.message.id for q in self._waiting.values() for w in q] + list(self._flying)
        d = self.store.renew(self.owner, mine, now + self.settings.lease)
        d.addCallback(lambda _: self.store.expire(now))
        d.addCallback(self._expired)
        d.addCallback(lambda _: self.store.release_leases(self.owner, now, False))
        if self.settings.purge_after and now - self._last_purge > 3600:
            self._last_purge = now
            d.addCallback(lambda _: self.store.purge(now - self.settings.purge_after))
        d.addErrback(lambda f: log.failure("queue housekeeping failed", f))
        d.addCallback(lambda _: self.wake())
        return d

    def _expired(self, changes: list[Change]) -> None:
        if changes:
            self.counters["expired"] += len(changes)
            log.info("{count} messages expired in the queue", count=len(changes))
            self.notify(changes)

    def status(self) -> dict[str, Any]:
        return {
            "waiting": self._waiting_count,
            "in_flight": self._in_flight,
            **self.counters,
        }
