"""Which gateways may carry a message: ordered rules, first match wins.

A message pinned to a gateway (the client named one) goes there only. A
rule matches on number (regular expression and/or prefixes) and user; it
names the gateways that share the traffic, fallbacks used only while none of
those is up, and an optional rewrite of the number for those gateways.
Without a matching rule every gateway is a candidate.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import attrs

from smsd.config import RouteSection
from smsd.model import Message


@attrs.frozen
class Route:
    gateways: tuple[str, ...]
    fallback: tuple[str, ...] = ()
    number: str | None = None  # rewritten number; None: unchanged


@attrs.frozen
class Rule:
    gateways: tuple[str, ...]
    fallback: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    prefixes: tuple[str, ...] = ()
    users: frozenset[str] = frozenset()
    rewrite: tuple[re.Pattern[str], str] | None = None

    def matches(self, message: Message) -> bool:
        number = message.recipient
        if self.prefixes and not number.startswith(self.prefixes):
            return False
        if self.pattern is not None and not self.pattern.search(number):
            return False
        return not self.users or message.user in self.users


class Router:
    def __init__(self, rules: Sequence[Rule], gateway_ids: Sequence[str]) -> None:
        self._rules = tuple(rules)
        self._default = Route(tuple(gateway_ids))

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

    def route(self, message: Message) -> Route:
        if message.gateway is not None:
            return Route((message.gateway,))
        for rule in self._rules:
            if rule.matches(message):
                number = None
                if rule.rewrite is not None:
                    pattern, replace = rule.rewrite
                    number = pattern.sub(replace, message.recipient)
                return Route(rule.gateways, rule.fallback, number)
        return self._default
