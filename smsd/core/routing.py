"""Which gateways may carry a message: ordered rules, first match wins.

A message pinned to a gateway (the client named one) goes there only. A
rule matches on number (regular expression and/or prefixes) and user; it
names the gateways that share the traffic, fallbacks used only while none of
those is up, and an optional rewrite of the number for its gateways (not for
the fallbacks, which are often of another kind: a modem wants E.164).
Without a matching rule every gateway is a candidate.

Each route has a key, stored with the message at submit, so that the
dispatcher can claim only messages whose route has room now: a hung or
throttled gateway never holds up the others' traffic. A rule's key is a
digest of what the rule says, so an edited rule gets a new key and the
messages keyed to the old one are routed afresh.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import attrs

from smsd.config import RouteSection
from smsd.model import Message

DEFAULT = "default"


@attrs.frozen
class Route:
    gateways: tuple[str, ...]
    fallback: tuple[str, ...] = ()
    number: str | None = None  # rewritten number for the gateways; None: unchanged
    key: str = DEFAULT


@attrs.frozen
class Rule:
    gateways: tuple[str, ...]
    fallback: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    prefixes: tuple[str, ...] = ()
    users: frozenset[str] = frozenset()
    rewrite: tuple[re.Pattern[str], str] | None = None

    @property
    def key(self) -> str:
        what = repr(
            (
                self.gateways,
                self.fallback,
                self.pattern.pattern if self.pattern else None,
                self.prefixes,
                sorted(self.users),
                (self.rewrite[0].pattern, self.rewrite[1]) if self.rewrite else None,
            )
        )
        return "rule:" + hashlib.sha256(what.encode()).hexdigest()[:12]

    def matches(self, number: str, user: str | None) -> bool:
        if self.prefixes and not number.startswith(self.prefixes):
            return False
        if self.pattern is not None and not self.pattern.search(number):
            return False
        return not self.users or user in self.users


class Router:
    def __init__(self, rules: Sequence[Rule], gateway_ids: Sequence[str]) -> None:
        self._rules = tuple((rule, rule.key) for rule in rules)
        self._gateway_ids = tuple(gateway_ids)
        self._default = Route(self._gateway_ids)

    @classmethod
    def from_config(cls, routes: Sequence[RouteSection], gateway_ids: Sequence[str]) -> Router:
        rules = [
            Rule(
                gateways=tuple(r.gateways),
                fallback=tuple(r.fallback),
                pattern=re.compile(r.match) if r.match else None,
                prefixes=tuple(r.prefix),
                users=frozenset(r.users),
                rewrite=(re.compile(r.rewrite.pattern), r.rewrite.replace) if r.rewrite else None,
            )
            for r in routes
        ]
        return cls(rules, gateway_ids)

    def key_for(self, number: str, user: str | None, pinned: str | None) -> str:
        """The key of the route a new message will take."""
        if pinned is not None:
            return f"gateway:{pinned}"
        for rule, key in self._rules:
            if rule.matches(number, user):
                return key
        return DEFAULT

    def routes(self) -> dict[str, Route]:
        """Every route there is, by key (numbers are not rewritten here)."""
        routes = {key: Route(rule.gateways, rule.fallback, key=key) for rule, key in self._rules}
        routes[DEFAULT] = self._default
        for gateway in self._gateway_ids:
            routes[f"gateway:{gateway}"] = Route((gateway,), key=f"gateway:{gateway}")
        return routes

    def route(self, message: Message) -> Route:
        return self.route_for(message.recipient, message.user, message.gateway)

    def route_for(self, number: str, user: str | None, pinned: str | None) -> Route:
        if pinned is not None:
            return Route((pinned,), key=f"gateway:{pinned}")
        for rule, key in self._rules:
            if rule.matches(number, user):
                rewritten = None
                if rule.rewrite is not None:
                    pattern, replace = rule.rewrite
                    rewritten = pattern.sub(replace, number)
                return Route(rule.gateways, rule.fallback, rewritten, key)
        return self._default
