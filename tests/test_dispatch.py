"""The dispatcher end to end: a real SQLite store, fake gateways, the real reactor.

Each test checks what a user would see: the message's state and attempts,
the network's words kept in ``status``/``error``, each part's state and
gateway, and which gateway was handed what. Waits poll the store with a
bounded timeout; no test asserts how fast something happened.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from smsd.config import Rewrite, RouteSection
from smsd.configschema import Duration
from smsd.core.dispatch import Dispatcher
from smsd.core.pool import Pool
from smsd.core.routing import Router
from smsd.gateways.base import Health
from smsd.model import Report, State
from tests.fakes import (
    ALICE,
    BOB,
    OK,
    SWEDEN,
    TEMPORARY,
    FakeGatewayError,
    NodeTestCase,
    WatchedStore,
    add,
    fails,
    fast_settings,
    hang,
    new_message,
    ok,
    per_part,
    permanent,
    provider_id,
    raises,
    reactor,
    short,
    sleep,
    states,
    temporary,
    throttled,
    wait_for,
    wait_message,
    wait_state,
)

DELIVRD = "stat:DELIVRD err:000"
TO_SWEDEN = RouteSection(gateways=["A"], prefix=["+46"], fallback=["F"])


class DispatchTestCase(NodeTestCase):
    async def wait_all(self, ids: list[int], state: State, timeout: float = 5.0) -> None:
        """Every message in ``state``."""

        async def done() -> bool:
            return set((await states(self.store, ids)).values()) == {state.value}

        await wait_for(done, timeout=timeout, what=f"{len(ids)} messages to be {state.value}")

    def lease(self, message_id: int) -> tuple[str | None, float | None]:
        """The lease as an operator would see it with the sqlite3 shell."""
        conn = sqlite3.connect(self.path)
        try:
            row = conn.execute(
                "SELECT lease_owner, lease_until FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
        finally:
            conn.close()
        return row[0], row[1]


class SendTests(DispatchTestCase):
    async def test_sent_at_once_after_wake_then_delivered_by_report(self) -> None:
        """A submit wakes the idle dispatcher (its next poll is 30 s away): sent, then delivered."""
        node = self.node(settings=fast_settings(poll=Duration(30)))
        a = node.gateway("A")
        node.start()
        await sleep(0.2)  # the start-up claim found nothing: asleep until the poll
        (mid,) = await add(self.store, new_message())
        node.dispatcher.wake()  # what Submitter's ``committed`` does

        m = await wait_state(self.store, mid, State.SENT, timeout=3)
        self.assertEqual(a.received(), [mid])
        self.assertEqual((m["gateway"], m["attempts"], m["error"]), ("A", 1, None))
        (part,) = m["parts"]
        self.assertEqual(
            (part["state"], part["gateway"], part["provider_id"]),
            ("sent", "A", provider_id("A", mid, 1)),
        )

        node.reports.report(Report("A", provider_id("A", mid, 1), State.DELIVERED, DELIVRD))
        m = await wait_state(self.store, mid, State.DELIVERED)
        self.assertEqual(m["status"], DELIVRD)
        self.assertEqual((m["parts"][0]["state"], m["parts"][0]["status"]), ("delivered", DELIVRD))
        self.assertEqual(node.changed(mid), [State.SENT, State.DELIVERED])

    async def test_multipart_message_goes_in_one_send(self) -> None:
        """All parts of a message go to one gateway together, each with its own provider id."""
        node = self.node()
        a = node.gateway("A")
        node.start()
        (mid,) = await add(self.store, new_message(parts=3))
        node.dispatcher.wake()
        m = await wait_state(self.store, mid, State.SENT)
        self.assertEqual([s.seqs for s in a.sent], [[1, 2, 3]])
        self.assertEqual(
            [(p["state"], p["provider_id"]) for p in m["parts"]],
            [("sent", provider_id("A", mid, seq)) for seq in (1, 2, 3)],
        )

    async def test_equal_weights_share_the_load_and_a_down_gateway_gets_nothing(self) -> None:
        """Two healthy gateways of weight 1 share 40 messages about evenly; a down one gets none."""
        node = self.node()
        a = node.gateway("A")
        b = node.gateway("B")
        c = node.gateway("C", health=Health.DOWN)
        node.start()
        ids = await add(self.store, *(new_message() for _ in range(40)))
        node.dispatcher.wake()
        await self.wait_all(ids, State.SENT)
        self.assertEqual(c.sent, [])
        self.assertEqual(sorted(a.received() + b.received()), ids)  # each once
        self.assertTrue(15 <= len(a.sent) <= 25, f"A got {len(a.sent)} of 40")

    async def test_pinned_message_goes_only_to_its_gateway(self) -> None:
        """A message the client pinned to B goes through B even though A is free."""
        node = self.node()
        a = node.gateway("A")
        b = node.gateway("B")
        node.start()
        ids = await add(self.store, *(new_message(pin_gateway="B") for _ in range(6)))
        node.dispatcher.wake()
        await self.wait_all(ids, State.SENT)
        self.assertEqual((a.received(), sorted(b.received())), ([], ids))


class FailoverTests(DispatchTestCase):
    async def test_temporary_error_fails_over_in_the_same_attempt(self) -> None:
        """A refuses for now: B sends it at once; one attempt, B's name on it."""
        node = self.node()
        a = node.gateway("A", script=[temporary("A: throttled")])
        b = node.gateway("B")
        node.start()
        (mid,) = await add(self.store, new_message())
        node.dispatcher.wake()
        m = await wait_state(self.store, mid, State.SENT)
        self.assertEqual((a.received(), b.received()), ([mid], [mid]))
        self.assertEqual((m["gateway"], m["attempts"], m["error"]), ("B", 1, None))
        self.assertEqual(m["parts"][0]["gateway"], "B")

    async def test_failover_sends_only_the_parts_still_to_go(self) -> None:
        """A accepts part 1 and refuses part 2 for now: B gets part 2 only; reports match both."""
        node = self.node()
        a = node.gateway("A", script=[per_part(OK, TEMPORARY, status="A: queue full")])
        b = node.gateway("B")
        node.start()
        (mid,) = await add(self.store, new_message(parts=2))
        node.dispatcher.wake()
        m = await wait_state(self.store, mid, State.SENT)
        self.assertEqual([s.seqs for s in a.sent], [[1, 2]])
        self.assertEqual([s.seqs for s in b.sent], [[2]])
        self.assertEqual(m["attempts"], 1)
        self.assertEqual(
            [(p["seq"], p["state"], p["gateway"], p["provider_id"]) for p in m["parts"]],
            [
                (1, "sent", "A", provider_id("A", mid, 1)),
                (2, "sent", "B", provider_id("B", mid, 2)),
            ],
        )

        node.reports.report(Report("A", provider_id("A", mid, 1), State.DELIVERED, DELIVRD))
        node.reports.report(Report("B", provider_id("B", mid, 2), State.DELIVERED, DELIVRD))
        m = await wait_state(self.store, mid, State.DELIVERED)
        self.assertEqual([p["state"] for p in m["parts"]], ["delivered", "delivered"])

    async def test_gateway_failing_in_a_row_leaves_the_pool(self) -> None:
        """After max_failures temporary errors in a row A is paused; B carries the rest."""
        node = self.node()
        a = node.gateway("A", default=temporary("A: link trouble"), max_failures=2, down_for=30)
        b = node.gateway("B")
        node.start()
        ids = await add(self.store, *(new_message() for _ in range(10)))
        node.dispatcher.wake()
        await self.wait_all(ids, State.SENT)
        self.assertEqual(len(a.sent), 2)
        self.assertEqual(sorted(b.received()), ids)
        for mid in ids:
            self.assertEqual((await self.store.get_message(mid))["attempts"], 1)
        self.assertEqual(node.member("A").state(reactor.seconds()), "paused")

    async def test_route_rewrites_the_number_for_its_gateways(self) -> None:
        """The gateway gets the rewritten number; the outbox keeps the one the user gave."""
        rewrite = RouteSection(
            gateways=["A"], prefix=["+46"], rewrite=Rewrite(r"^\+46(\d+)$", r"0\1")
        )
        node = self.node(routes=[rewrite])
        a = node.gateway("A")
        node.start()
        (mid,) = await add(self.store, new_message(SWEDEN))
        node.dispatcher.wake()
        m = await wait_state(self.store, mid, State.SENT)
        self.assertEqual((a.sent[0].message.recipient, m["recipient"]), ("0701234567", SWEDEN))


class RetryTests(DispatchTestCase):
    async def test_temporary_error_on_the_only_gateway_retries_later(self) -> None:
        """Queued again with attempts 1 and the SMSC's words, not sent before its due time."""
        node = self.node(settings=fast_settings(retry_min=Duration(0.5), retry_max=Duration(2)))
        a = node.gateway("A", script=[temporary("A: SMSC busy")])
        node.start()
        (mid,) = await add(self.store, new_message())
        node.dispatcher.wake()

        m = await wait_message(
            self.store, mid, lambda m: m["attempts"] == 1, what="the first attempt"
        )
        self.assertEqual((m["state"], m["error"], m["status"]), ("queued", "A: SMSC busy",
                                                                 "A: SMSC busy"))  # fmt: skip
        self.assertEqual(m["parts"][0]["state"], "queued")
        due = m["due_at"]
        # Back-off has 10% jitter (see BackoffTests for the bound it should keep).
        self.assertGreaterEqual(due - a.sent[0].at, 0.5 * 0.9 - 0.01)

        m = await wait_state(self.store, mid, State.SENT)
        self.assertEqual((m["attempts"], m["error"], len(a.sent)), (2, None, 2))
        self.assertGreaterEqual(a.sent[1].at, due)

    async def test_permanent_error_fails_with_the_gateways_words(self) -> None:
        """Refused for good: failed at once, the network's own words kept on message and part."""
        words = "A: ESME_RINVDSTADR invalid destination"
        node = self.node()
        a = node.gateway("A", default=permanent(words))
        node.start()
        (mid,) = await add(self.store, new_message())
        node.dispatcher.wake()
        m = await wait_state(self.store, mid, State.FAILED)
        self.assertEqual((m["attempts"], m["error"], m["status"]), (1, words, words))
        part = m["parts"][0]
        self.assertEqual((part["state"], part["status"], part["gateway"]), ("failed", words, "A"))
        self.assertEqual(len(a.sent), 1)
        (change,) = node.changes
        self.assertEqual(
            (change.message_id, change.state, change.status), (mid, State.FAILED, words)
        )

    async def test_max_attempts_gives_up(self) -> None:
        """After max_attempts temporary errors: failed, "gave up after N attempts: <words>"."""
        node = self.node(settings=fast_settings(max_attempts=3, retry_min=Duration(0.1)))
        a = node.gateway("A", default=temporary("A: no credit"))
        node.start()
        (mid,) = await add(self.store, new_message(parts=2))
        node.dispatcher.wake()
        m = await wait_state(self.store, mid, State.FAILED)
        self.assertEqual(m["error"], "gave up after 3 attempts: A: no credit")
        self.assertEqual((m["attempts"], len(a.sent)), (3, 3))
        self.assertEqual([p["state"] for p in m["parts"]], ["failed", "failed"])

    async def test_throttled_is_requeued_without_an_attempt_or_a_strike(self) -> None:
        """ESME_RTHROTTLED: back to the queue for a moment, no attempt, no circuit breaker."""
        node = self.node()
        a = node.gateway("A", script=[throttled()] * 3, max_failures=1)
        node.start()
        (mid,) = await add(self.store, new_message())
        node.dispatcher.wake()
        m = await wait_state(self.store, mid, State.SENT, timeout=10)
        self.assertEqual((m["attempts"], len(a.sent)), (1, 4))  # 3 refusals, then accepted
        self.assertEqual(node.member("A").failures, 0)
        self.assertEqual(node.dispatcher.counters["throttled"], 3)

    async def test_send_with_no_answer_times_out_and_fails_over(self) -> None:
        """A hung driver: after send_timeout the message goes through the other gateway."""
        node = self.node()
        node.gateway("A", default=hang(), send_timeout=0.3, weight=1000)
        b = node.gateway("B")
        node.start()
        (mid,) = await add(self.store, new_message())
        node.dispatcher.wake()
        m = await wait_state(self.store, mid, State.SENT, timeout=5)
        self.assertEqual((m["gateway"], m["attempts"]), ("B", 1))
        self.assertEqual(b.received(), [mid])
        self.assertEqual(node.member("A").in_flight, 0)  # its window slot is free again

    async def test_send_that_raises_is_a_temporary_error(self) -> None:
        """A driver that raises: logged, the message retried and sent, not lost."""
        node = self.node()
        a = node.gateway("A", script=[raises(FakeGatewayError("driver crashed"))])
        node.start()
        (mid,) = await add(self.store, new_message())
        node.dispatcher.wake()
        m = await wait_message(self.store, mid, lambda m: m["attempts"] >= 1)
        self.assertEqual(m["status"], "gateway error: driver crashed")
        m = await wait_state(self.store, mid, State.SENT)
        self.assertEqual((m["attempts"], len(a.sent)), (2, 2))
        self.assertEqual(len(self.flushLoggedErrors(FakeGatewayError)), 1)

    async def test_send_that_fails_its_deferred_is_a_temporary_error(self) -> None:
        """A driver whose Deferred fails: the same as raising, the message is sent later."""
        node = self.node()
        a = node.gateway("A", script=[fails(FakeGatewayError("link reset"))])
        node.start()
        (mid,) = await add(self.store, new_message())
        node.dispatcher.wake()
        m = await wait_state(self.store, mid, State.SENT)
        self.assertEqual((m["attempts"], len(a.sent)), (2, 2))
        self.assertEqual(len(self.flushLoggedErrors(FakeGatewayError)), 1)

    async def test_missing_results_are_retried_not_lost(self) -> None:
        """A driver answers for part 1 of 3 only: parts 2 and 3 are sent on the next attempt."""
        node = self.node()
        a = node.gateway("A", script=[short(1)])
        node.start()
        (mid,) = await add(self.store, new_message(parts=3))
        node.dispatcher.wake()
        m = await wait_message(self.store, mid, lambda m: m["attempts"] >= 1)
        self.assertEqual(m["status"], "no result from gateway")
        m = await wait_state(self.store, mid, State.SENT)
        self.assertEqual([s.seqs for s in a.sent], [[1, 2, 3], [2, 3]])
        self.assertEqual(
            [(p["state"], p["provider_id"]) for p in m["parts"]],
            [("sent", provider_id("A", mid, seq)) for seq in (1, 2, 3)],
        )


class ThrottleTests(DispatchTestCase):
    async def test_throughput_and_window_are_respected(self) -> None:
        """30 messages at 20/s with window 5: never more than 5 open, the bucket holds, all sent."""
        rate, window = 20.0, 5
        node = self.node()
        a = node.gateway("A", default=ok(delay=0.05), window=window, throughput=rate)
        node.start()
        ids = await add(self.store, *(new_message() for _ in range(30)))
        node.dispatcher.wake()
        await self.wait_all(ids, State.SENT, timeout=10)

        self.assertLessEqual(a.max_in_flight, window)
        self.assertEqual(sorted(a.received()), ids)
        # Token bucket, burst = one second's worth: in any stretch of time from
        # one send to a later one, at most burst + rate * stretch sends (one
        # more for the clock readings of dispatcher and fake differing).
        times = sorted(s.at for s in a.sent)
        for i in range(len(times)):
            for j in range(i, len(times)):
                allowed = rate + rate * (times[j] - times[i]) + 1
                self.assertLessEqual(
                    j - i + 1, allowed, f"sends {i}..{j} within {times[j] - times[i]:.3f}s"
                )
        for start in times:  # the same, per half-second window
            in_window = sum(1 for t in times if start <= t < start + 0.5)
            self.assertLessEqual(in_window, rate + rate * 0.5 + 1)

    async def test_window_holds_messages_of_a_gateway_that_never_answers(self) -> None:
        """Window 3 and no answers: exactly 3 in flight, the rest wait; an answer lets them go."""
        node = self.node()
        a = node.gateway("A", default=hang(), window=3)
        node.start()
        ids = await add(self.store, *(new_message() for _ in range(7)))
        node.dispatcher.wake()
        await wait_for(lambda: len(a.sent) == 3, what="3 messages in flight")
        await sleep(0.5)  # several polls
        self.assertEqual((len(a.sent), a.in_flight), (3, 3))
        now = await states(self.store, ids)
        self.assertLessEqual(set(now.values()), {"sending", "queued"})
        for mid in a.received():
            self.assertEqual(now[mid], "sending")

        a.default = ok()
        a.answer_hung()
        await self.wait_all(ids, State.SENT)
        self.assertEqual(sorted(a.received()), ids)  # each exactly once
        self.assertLessEqual(a.max_in_flight, 3)


class AvailabilityTests(DispatchTestCase):
    async def test_nothing_is_claimed_while_every_gateway_is_down(self) -> None:
        """The only gateway is down: the message waits queued, no attempt; it goes when it is up."""
        node = self.node()
        a = node.gateway("A", health=Health.DOWN)
        node.start()
        (mid,) = await add(self.store, new_message())
        node.dispatcher.wake()
        await sleep(0.4)
        m = await self.store.get_message(mid)
        self.assertEqual((m["state"], m["attempts"], a.sent), ("queued", 0, []))
        a.set_health(Health.UP)  # the health event wakes the dispatcher
        m = await wait_state(self.store, mid, State.SENT, timeout=3)
        self.assertEqual((m["attempts"], a.received()), (1, [mid]))

    async def test_no_gateway_up_for_this_number(self) -> None:
        """Pinned to a down gateway while another is up: back to the queue, no attempt counted."""
        node = self.node()
        a = node.gateway("A", health=Health.DOWN)
        b = node.gateway("B")
        node.start()
        (mid,) = await add(self.store, new_message(pin_gateway="A"))
        node.dispatcher.wake()
        m = await wait_message(
            self.store, mid, lambda m: m["error"] is not None, what="the message to be held"
        )
        self.assertEqual(
            (m["state"], m["attempts"], m["error"]), ("queued", 0, "no gateway up for this number")
        )
        self.assertEqual(self.lease(mid), (None, None))
        a.set_health(Health.UP)
        m = await wait_state(self.store, mid, State.SENT, timeout=3)
        self.assertEqual((m["gateway"], m["attempts"], m["error"]), ("A", 1, None))
        self.assertEqual(b.sent, [])

    async def test_held_message_goes_as_soon_as_its_gateway_is_up(self) -> None:
        """A gateway coming back up sends what waited for it at once, not retry_min later."""
        node = self.node(settings=fast_settings(retry_min=Duration(5)))
        a = node.gateway("A", health=Health.DOWN)
        node.gateway("B")
        node.start()
        (mid,) = await add(self.store, new_message(pin_gateway="A"))
        node.dispatcher.wake()
        await wait_message(self.store, mid, lambda m: m["error"] is not None)
        a.set_health(Health.UP)
        await wait_state(self.store, mid, State.SENT, timeout=2)

    async def test_fallback_used_while_primary_is_down(self) -> None:
        """The route's gateway is down: its fallback carries the message."""
        node = self.node(routes=[TO_SWEDEN])
        a = node.gateway("A", health=Health.DOWN)
        f = node.gateway("F")
        node.start()
        (mid,) = await add(self.store, new_message(SWEDEN))
        node.dispatcher.wake()
        m = await wait_state(self.store, mid, State.SENT)
        self.assertEqual((m["gateway"], a.sent, f.received()), ("F", [], [mid]))

    async def test_busy_primary_is_waited_for_not_the_fallback(self) -> None:
        """The route's gateway is up but full: the message waits for it; the fallback stays idle."""
        node = self.node(routes=[TO_SWEDEN])
        a = node.gateway("A", window=1, script=[hang()])
        f = node.gateway("F")
        node.start()
        (first,) = await add(self.store, new_message(SWEDEN))
        node.dispatcher.wake()
        await wait_for(lambda: a.sent, what="the first message in flight")
        (second,) = await add(self.store, new_message(SWEDEN))
        node.dispatcher.wake()
        await sleep(0.5)
        self.assertEqual(f.sent, [])
        self.assertIn((await self.store.get_message(second))["state"], ("queued", "sending"))

        a.answer_hung()
        await self.wait_all([first, second], State.SENT)
        self.assertEqual((a.received(), f.sent), ([first, second], []))

    async def test_busy_gateway_does_not_hold_up_other_routes(self) -> None:
        """A's window is full with a backlog for A: a message routed to idle B still goes."""
        routes = [
            RouteSection(gateways=["A"], prefix=["+46"]),
            RouteSection(gateways=["B"], prefix=["+1"]),
        ]
        node = self.node(routes=routes)
        node.gateway("A", window=1, default=hang())
        b = node.gateway("B", window=2)
        await add(self.store, *(new_message(SWEDEN, due_in=-1) for _ in range(4)))
        (us,) = await add(self.store, new_message(ALICE))
        node.start()
        await wait_state(self.store, us, State.SENT, timeout=3)
        self.assertEqual(b.received(), [us])

    async def test_hung_gateway_backlog_stays_queued_while_others_flow(self) -> None:
        """Routed messages: A's backlog is not claimed while A is full, B's traffic goes."""
        routes = [
            RouteSection(gateways=["A"], prefix=["+46"]),
            RouteSection(gateways=["B"], prefix=["+1"]),
        ]
        watched = WatchedStore(self.store)
        node = self.node(watched, routes=routes)
        a = node.gateway("A", window=1, default=hang())
        b = node.gateway("B", window=2)
        key = Router.from_config(routes, ["A", "B"]).key_for  # as the Submitter keys them
        backlog = await add(
            self.store, *(new_message(SWEDEN, route=key(SWEDEN, None, None)) for _ in range(20))
        )
        node.start()
        await wait_for(lambda: a.sent, what="A busy with one message")
        ours = await add(
            self.store, *(new_message(ALICE, route=key(ALICE, None, None)) for _ in range(5))
        )
        node.dispatcher.wake()
        for mid in ours:
            await wait_state(self.store, mid, State.SENT, timeout=3)
        self.assertEqual(sorted(b.received()), sorted(ours))
        states = [(await self.store.get_message(mid))["state"] for mid in backlog]
        self.assertEqual(states.count("sending"), 1)  # the one A holds
        self.assertEqual(states.count("queued"), 19)  # the rest never left the queue

    async def test_idle_throttled_gateway_does_not_make_the_dispatcher_spin(self) -> None:
        """A message waits for a full gateway while a throttled one idles: polls, no busy loop."""
        routes = [
            RouteSection(gateways=["A"], prefix=["+46"]),
            RouteSection(gateways=["T"], prefix=["+1"]),
        ]
        watched = WatchedStore(self.store)
        node = self.node(watched, routes=routes)
        a = node.gateway("A", window=1, default=hang())
        node.gateway("T", throughput=5.0)
        node.start()
        await add(self.store, new_message(SWEDEN), new_message(SWEDEN))
        node.dispatcher.wake()
        await wait_for(lambda: a.sent, what="a message in flight")
        await sleep(0.2)
        before = sum(watched.calls.values())
        await sleep(1.0)
        calls = sum(watched.calls.values()) - before
        # A poll every 0.2 s is a claim and a next_due query: about 10 store calls a second.
        self.assertLess(calls, 40, f"{calls} store calls in one idle second: {watched.calls}")


class ScheduleTests(DispatchTestCase):
    async def test_expired_when_claimed_is_not_sent(self) -> None:
        """Validity already over when its turn comes: expired, never handed to a gateway."""
        node = self.node()
        a = node.gateway("A")
        node.start()
        (mid,) = await add(self.store, new_message(due_in=-2, expires_in=-1, parts=2))
        node.dispatcher.wake()
        m = await wait_state(self.store, mid, State.EXPIRED)
        self.assertEqual((m["error"], a.sent), ("validity period ended", []))
        self.assertEqual([p["state"] for p in m["parts"]], ["expired", "expired"])
        self.assertEqual(node.changed(mid), [State.EXPIRED])

    async def test_expired_when_claimed_counts_no_attempt(self) -> None:
        """A message that was never tried shows 0 attempts."""
        node = self.node()
        node.gateway("A")
        node.start()
        (mid,) = await add(self.store, new_message(due_in=-2, expires_in=-1))
        node.dispatcher.wake()
        m = await wait_state(self.store, mid, State.EXPIRED)
        self.assertEqual(m["attempts"], 0)

    async def test_housekeeping_expires_queued_messages(self) -> None:
        """The periodic housekeeping expires queued messages past validity and tells notify."""
        node = self.node()
        a = node.gateway("A")
        node.start()
        (mid,) = await add(self.store, new_message(due_in=60, expires_in=-1))
        await node.dispatcher._maintain()  # what runs every 30 s
        m = await self.store.get_message(mid)
        self.assertEqual((m["state"], m["error"], a.sent), ("expired", "validity period ended", []))
        self.assertEqual(node.changed(mid), [State.EXPIRED])

    async def test_scheduled_message_waits_for_its_time(self) -> None:
        """Due 0.3 s from now: still queued right after the wake, sent once due (not before)."""
        node = self.node()
        a = node.gateway("A")
        node.start()
        (mid,) = await add(self.store, new_message(due_in=0.3))
        node.dispatcher.wake()
        await sleep(0.05)
        m = await self.store.get_message(mid)
        self.assertEqual((m["state"], a.sent), ("queued", []))
        m = await wait_state(self.store, mid, State.SENT, timeout=3)
        self.assertGreaterEqual(a.sent[0].at, m["due_at"])

    async def test_work_queued_by_another_process_is_found_by_the_poll(self) -> None:
        """Another process adds a message to the same file (no wake): the poll picks it up."""
        node = self.node(settings=fast_settings(poll=Duration(0.3)))
        a = node.gateway("A")
        node.start()
        await sleep(0.5)  # idle, between polls
        other = self.open_store()
        (mid,) = await add(other, new_message())
        await wait_state(self.store, mid, State.SENT, timeout=3)
        self.assertEqual(a.received(), [mid])


class LifeTests(DispatchTestCase):
    async def test_stop_releases_waiting_and_waits_for_sends_in_flight(self) -> None:
        """Stopping: what waits goes back to the queue unsent, what is in flight is recorded."""
        node = self.node()
        a = node.gateway("A", window=1, default=ok(delay=0.2))
        node.gateway("B", window=5)
        node.start()
        ids = await add(self.store, *(new_message(pin_gateway="A") for _ in range(3)))
        node.dispatcher.wake()
        await wait_for(lambda: a.sent, what="one message in flight")

        async def all_claimed() -> bool:
            return set((await states(self.store, ids)).values()) == {"sending"}

        await wait_for(all_claimed, what="the other two claimed")

        await node.dispatcher.stopService()
        (flying,) = a.received()
        now = await states(self.store, ids)
        self.assertEqual(now.pop(flying), "sent")
        self.assertEqual(set(now.values()), {"queued"})
        for mid in now:
            m = await self.store.get_message(mid)
            self.assertEqual((m["attempts"], m["error"]), (0, None))
            self.assertEqual(self.lease(mid), (None, None))

    async def test_stop_while_a_claim_is_on_its_way(self) -> None:
        """Stopping while the store answers a claim: those messages go back to the queue too."""
        watched = WatchedStore(self.store)
        watched.hold_claims = True
        node = self.node(watched)
        a = node.gateway("A")
        ids = await add(self.store, new_message(), new_message(BOB))
        node.start()
        await wait_for(lambda: watched.calls.get("claim"), what="a claim")
        await node.dispatcher.stopService()
        self.assertEqual(await watched.let_claims_through(), 2)
        await sleep(0.1)
        self.assertEqual(a.sent, [])
        self.assertEqual(await states(self.store, ids), {mid: "queued" for mid in ids})

    async def test_nothing_is_claimed_before_old_leases_are_taken_back(self) -> None:
        """The start's release of this owner's old leases would take back, and so send a
        second time, what this run claimed before it finished: so nothing goes before."""
        watched = WatchedStore(self.store)
        release: defer.Deferred[None] = defer.Deferred()
        real = self.store.release_leases

        def held(*args: Any) -> Any:
            return release.addCallback(lambda _: real(*args))

        watched._store = _With(self.store, release_leases=held)
        node = self.node(watched)
        a = node.gateway("A")
        node.start()
        (mid,) = await add(self.store, new_message())
        node.dispatcher.wake()
        await sleep(0.2)
        self.assertIsNone(node.dispatcher.offer())
        self.assertEqual((watched.calls.get("claim"), a.sent), (None, []))
        release.callback(None)
        await wait_state(self.store, mid, State.DELIVERED, State.SENT)
        await sleep(0.2)
        self.assertEqual(a.received(), [mid])

    async def test_restart_sends_what_a_crash_left_in_flight(self) -> None:
        """Messages this node had claimed before a crash are sent after restart; others' are not."""
        (mine,) = await add(self.store, new_message())
        crashed = await self.store.claim("node-1", reactor.seconds(), 300.0, 10)
        self.assertEqual([m.id for m in crashed], [mine])
        (theirs,) = await add(self.store, new_message(BOB))
        await self.store.claim("node-2", reactor.seconds(), 300.0, 10)  # alive, lease valid

        node = self.node(owner="node-1")
        a = node.gateway("A")
        node.start()
        m = await wait_state(self.store, mine, State.SENT, timeout=3)
        self.assertEqual((m["attempts"], a.received()), (1, [mine]))
        await sleep(0.3)
        self.assertEqual((await self.store.get_message(theirs))["state"], "sending")
        self.assertEqual(self.lease(theirs)[0], "node-2")

    async def test_slow_send_is_not_taken_over_by_another_node(self) -> None:
        """Node 1's send outlasts its lease: node 2 must not send the message a second time."""
        settings = fast_settings(lease=Duration(1))
        node1 = self.node(owner="node-1", settings=settings)
        a = node1.gateway("A", default=hang())
        node2 = self.node(self.open_store(), owner="node-2", settings=settings)
        b = node2.gateway("B")
        node1.start()
        (mid,) = await add(self.store, new_message())
        node1.dispatcher.wake()
        await wait_for(lambda: a.sent, what="node 1 to send")
        await sleep(1.2)  # node 1 is alive, its send still open, its lease over
        node2.start()  # takes over expired leases at start (its housekeeping does the same)
        await sleep(0.5)
        a.answer_hung()
        await wait_state(self.store, mid, State.SENT)
        await sleep(0.2)  # node 1's result recorded too
        m = await self.store.get_message(mid)
        self.assertEqual((a.received(), b.received()), ([mid], []))
        part = m["parts"][0]
        self.assertEqual((m["gateway"], part["gateway"]), ("A", "A"))
        self.assertEqual(part["provider_id"], provider_id("A", mid, 1))


class NotifyTests(DispatchTestCase):
    async def test_notify_hears_sent_delivered_failed_expired(self) -> None:
        """The notify callback gets a Change for each state a client should be told about."""
        node = self.node()
        node.gateway("A")
        node.gateway("R", default=permanent("R: barred"))
        node.start()
        sent, failed, late, old = await add(
            self.store,
            new_message(pin_gateway="A", client_ref="c-1"),
            new_message(BOB, pin_gateway="R"),
            new_message(due_in=-2, expires_in=-1),
            new_message(due_in=60, expires_in=-1),
        )
        node.dispatcher.wake()
        await wait_state(self.store, sent, State.SENT)
        await wait_state(self.store, failed, State.FAILED)
        await wait_state(self.store, late, State.EXPIRED)
        node.reports.report(Report("A", provider_id("A", sent, 1), State.DELIVERED, DELIVRD))
        await wait_state(self.store, sent, State.DELIVERED)
        await node.dispatcher._maintain()

        self.assertEqual(node.changed(sent), [State.SENT, State.DELIVERED])
        self.assertEqual(node.changed(failed), [State.FAILED])
        self.assertEqual(node.changed(late), [State.EXPIRED])
        self.assertEqual(node.changed(old), [State.EXPIRED])
        by_state: dict[tuple[int, State], Any] = {(c.message_id, c.state): c for c in node.changes}
        delivered = by_state[sent, State.DELIVERED]
        self.assertEqual(
            (delivered.status, delivered.recipient, delivered.client_ref, delivered.channel),
            (DELIVRD, ALICE, "c-1", "http"),
        )
        self.assertEqual(by_state[failed, State.FAILED].status, "R: barred")


class BackoffTests(unittest.SynchronousTestCase):
    def dispatcher(self, retry_min: float, retry_max: float) -> Dispatcher:
        return Dispatcher(
            store=None,
            router=Router([], ()),
            pool=Pool([]),
            reactor=reactor,
            owner="node-1",
            settings=fast_settings(retry_min=Duration(retry_min), retry_max=Duration(retry_max)),
            notify=lambda changes: None,
        )

    def test_backoff_doubles_up_to_retry_max(self) -> None:
        """Delays double per attempt (give or take 10%) and stop growing at retry_max."""
        d = self.dispatcher(10, 100)
        for attempts, base in ((1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (30, 100)):
            for _ in range(50):
                self.assertTrue(base * 0.9 <= d.backoff(attempts) <= base * 1.1)

    def test_backoff_stays_within_retry_min_and_retry_max(self) -> None:
        """No retry comes sooner than retry_min or later than retry_max."""
        d = self.dispatcher(10, 100)
        self.assertGreaterEqual(min(d.backoff(1) for _ in range(500)), 10)
        self.assertLessEqual(max(d.backoff(9) for _ in range(500)), 100)


class _With:
    """An object's attributes, some replaced."""

    def __init__(self, inner: Any, **replaced: Any) -> None:
        self._inner = inner
        self._replaced = replaced

    def __getattr__(self, name: str) -> Any:
        return self._replaced.get(name) or getattr(self._inner, name)
