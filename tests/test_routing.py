"""Routing: which gateways may carry a message, from the [[route]] tables.

Synchronous; routes are built from ``RouteSection`` as the configuration
file gives them.
"""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from smsd.config import Rewrite, RouteSection
from smsd.core.routing import Route, Router
from smsd.model import Message, OutPart

GATEWAYS = ("smpp1", "smpp2", "modem1", "http1")


def message(recipient: str, *, user: str | None = None, gateway: str | None = None) -> Message:
    return Message(
        id=1,
        recipient=recipient,
        sender=None,
        encoding="gsm7",
        dcs=0,
        pid=0,
        parts=(OutPart(1, b"", "hi", None),),
        total=1,
        user=user,
        gateway=gateway,
    )


def router(*routes: RouteSection) -> Router:
    return Router.from_config(list(routes), GATEWAYS)


def route(gateways: list[str], **options: Any) -> RouteSection:
    return RouteSection(gateways=gateways, **options)


class RouterTests(unittest.SynchronousTestCase):
    def test_default_route_is_every_gateway_in_order(self) -> None:
        """Without routes (or when none matches) every gateway is a candidate, in config order."""
        self.assertEqual(router().route(message("+15551230001")), Route(GATEWAYS))
        r = router(route(["smpp1"], prefix=["+46"]))
        self.assertEqual(r.route(message("+15551230001")), Route(GATEWAYS))

    def test_pinned_gateway_wins(self) -> None:
        """A message pinned to a gateway goes there only, whatever the rules say."""
        r = router(route(["smpp1"], prefix=["+46"], fallback=["modem1"]))
        self.assertEqual(
            r.route(message("+46701234567", gateway="http1")),
            Route(("http1",), key="gateway:http1"),
        )

    def test_first_matching_rule_wins(self) -> None:
        """Rules are tried in order; a later rule that also matches is not used."""
        r = router(
            route(["smpp1"], prefix=["+4670"]),
            route(["smpp2"], prefix=["+46"]),
        )
        self.assertEqual(r.route(message("+46701234567")).gateways, ("smpp1",))
        self.assertEqual(r.route(message("+46811234567")).gateways, ("smpp2",))

    def test_prefix_list(self) -> None:
        """Any of the prefixes matches."""
        r = router(route(["smpp1"], prefix=["+46", "+47"]))
        self.assertEqual(r.route(message("+46701234567")).gateways, ("smpp1",))
        self.assertEqual(r.route(message("+4790123456")).gateways, ("smpp1",))
        self.assertEqual(r.route(message("+4520123456")).gateways, GATEWAYS)

    def test_match_is_a_regex_search(self) -> None:
        """``match`` finds the pattern anywhere in the number unless anchored."""
        r = router(route(["modem1"], match="555"), route(["smpp1"], match=r"^\+1"))
        self.assertEqual(r.route(message("+15551230001")).gateways, ("modem1",))
        self.assertEqual(r.route(message("+12121230001")).gateways, ("smpp1",))
        self.assertEqual(r.route(message("+46701234567")).gateways, GATEWAYS)

    def test_users(self) -> None:
        """A rule with users matches only their messages (not anonymous ones)."""
        r = router(route(["http1"], users=["alice", "bob"]))
        self.assertEqual(r.route(message("+15551230001", user="alice")).gateways, ("http1",))
        self.assertEqual(r.route(message("+15551230001", user="carol")).gateways, GATEWAYS)
        self.assertEqual(r.route(message("+15551230001")).gateways, GATEWAYS)

    def test_all_conditions_together(self) -> None:
        """Prefix, pattern and users must all hold; any one failing skips the rule."""
        r = router(route(["smpp2"], prefix=["+46"], match="7[0-9]{8}$", users=["alice"]))
        self.assertEqual(r.route(message("+46701234567", user="alice")).gateways, ("smpp2",))
        self.assertEqual(r.route(message("+45701234567", user="alice")).gateways, GATEWAYS)
        self.assertEqual(r.route(message("+4681234567", user="alice")).gateways, GATEWAYS)
        self.assertEqual(r.route(message("+46701234567", user="bob")).gateways, GATEWAYS)

    def test_rewrite_with_groups(self) -> None:
        """The number the gateways get is rewritten; without a rewrite it stays."""
        r = router(
            route(["smpp1"], prefix=["+46"], rewrite=Rewrite(r"^\+46(\d+)$", r"0\1")),
            route(["smpp2"], prefix=["+47"]),
        )
        self.assertEqual(r.route(message("+46701234567")).number, "0701234567")
        self.assertIsNone(r.route(message("+4790123456")).number)
        self.assertIsNone(r.route(message("+15551230001")).number)

    def test_fallback_carried(self) -> None:
        """The matching rule's fallbacks come with its gateways."""
        r = router(route(["smpp1", "smpp2"], prefix=["+46"], fallback=["modem1"]))
        found = r.route(message("+46701234567"))
        self.assertEqual(
            (found.gateways, found.fallback, found.number), (("smpp1", "smpp2"), ("modem1",), None)
        )

    def test_route_keys(self) -> None:
        """Submit and dispatch agree on a message's route key; an edited rule has a new one."""
        rule = route(["smpp1"], prefix=["+46"])
        r = router(rule)
        key = r.key_for("+46701234567", None, None)
        self.assertTrue(key.startswith("rule:"))
        self.assertEqual(r.route(message("+46701234567")).key, key)
        self.assertEqual(r.key_for("+15551234567", None, None), "default")
        self.assertEqual(r.key_for("+46701234567", None, "smpp1"), "gateway:smpp1")
        self.assertEqual(set(r.routes()), {key, "default", *(f"gateway:{g}" for g in GATEWAYS)})
        edited = router(route(["smpp2"], prefix=["+46"]))
        self.assertNotEqual(edited.key_for("+46701234567", None, None), key)
