"""The configuration as administrators meet it: the embedded default, the annotated
``etc/smsd.toml``, and one clear line for every kind of mistake, in-process and
from ``twistd smsd``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import typing
from typing import Any

import attrs
from twisted.trial import unittest

from smsd.config import (
    GATEWAY_TYPES,
    Config,
    ConfigError,
    DispatchSection,
    GatewaySection,
    HttpSection,
    InboundSection,
    Rewrite,
    RouteSection,
    SipSection,
    SmsdSection,
    SmtpSection,
    SnppSection,
    StoreSection,
    TextSection,
    XmppSection,
    load,
)
from smsd.configschema import Duration, convert, parse_duration
from smsd.gateways import loopback, modem, smpp, ucp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "etc", "smsd.toml")
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")

# The tables of the file, in the order etc/smsd.toml has them, and the classes
# whose fields are their keys ([[gateway]]: the common keys and loopback's own).
SECTIONS: dict[str, tuple[type, ...]] = {
    "smsd": (SmsdSection,),
    "store": (StoreSection,),
    "text": (TextSection,),
    "dispatch": (DispatchSection,),
    "inbound": (InboundSection,),
    "http": (HttpSection,),
    "smtp": (SmtpSection,),
    "snpp": (SnppSection,),
    "xmpp": (XmppSection,),
    "sip": (SipSection,),
    "gateway": (GatewaySection, loopback.Options, modem.Options, smpp.Options, ucp.Options),
    "route": (RouteSection,),
}

GATEWAY = """
[[gateway]]
id = "loopback"
type = "loopback"
"""

# "[name]" or "[[name]]", possibly commented out ("# [[route]]").
HEADER = re.compile(r"^(?P<comment>#\s*)?\[\[?(?P<name>[a-z_]+)\]\]?\s*(?:#.*)?$")
# "key = value" or "# key = value" (exactly one space after "#": prose is never
# written that way, and indented examples in the prose are not key lines).
KEY = re.compile(r"^(?P<comment># )?(?P<key>[A-Za-z_][A-Za-z0-9_]*) = (?P<value>.+)$")


@attrs.frozen
class Header:
    """A table header line of the example file."""

    line: int
    name: str
    commented: bool


@attrs.frozen
class Entry:
    """A ``key = value`` line of the example file, active or commented out."""

    line: int
    section: str
    key: str
    value: Any
    commented: bool
    in_comment: bool  # the table header above is commented out too


@attrs.frozen
class Example:
    """etc/smsd.toml taken apart into lines, table headers and key lines."""

    lines: list[str]
    headers: list[Header]
    entries: list[Entry]

    def first(self) -> dict[tuple[str, str], Entry]:
        """The first line of each (section, key): where the key is documented."""
        out: dict[tuple[str, str], Entry] = {}
        for e in self.entries:
            out.setdefault((e.section, e.key), e)
        return out

    def keys(self, section: str) -> set[str]:
        return {e.key for e in self.entries if e.section == section}

    def uncomment(self, lines: set[int]) -> str:
        """The file with the ``# `` of the given lines removed."""
        out = [
            re.sub(r"^#\s*", "", text) if i in lines else text for i, text in enumerate(self.lines)
        ]
        return "\n".join(out) + "\n"


def parse_example(text: str) -> Example:
    """Find headers and key lines; every value is parsed with tomllib."""
    lines = text.splitlines()
    headers: list[Header] = []
    entries: list[Entry] = []
    section, in_comment = "", False
    for i, line in enumerate(lines):
        header = HEADER.match(line)
        if header:
            section, in_comment = header["name"], bool(header["comment"])
            headers.append(Header(i, section, in_comment))
            continue
        key = KEY.match(line)
        if key:
            try:
                value = tomllib.loads(f"v = {key['value']}")["v"]
            except tomllib.TOMLDecodeError as e:
                raise AssertionError(f"etc/smsd.toml line {i + 1}: {line!r}: {e}") from None
            entries.append(Entry(i, section, key["key"], value, bool(key["comment"]), in_comment))
    return Example(lines, headers, entries)


def read_example() -> Example:
    with open(EXAMPLE, encoding="utf-8") as f:
        return parse_example(f.read())


def fields(section: str) -> dict[str, tuple[type, attrs.Attribute[Any], Any]]:
    """Key name -> (class, attrs field, resolved type) for one table of the file."""
    out = {}
    for cls in SECTIONS[section]:
        hints = typing.get_type_hints(cls)
        for f in attrs.fields(cls):
            out[f.name] = (cls, f, hints[f.name])
    return out


def default_of(field: attrs.Attribute[Any]) -> Any:
    """The field's default (attrs.NOTHING for required keys)."""
    if isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
        return field.default.factory()
    return field.default


def same_settings(a: Config, b: Config) -> bool:
    """Equal in everything but the file name."""
    return attrs.evolve(a, path="") == attrs.evolve(b, path="")


class TempDirMixin:
    """A temporary directory per test, removed afterwards."""

    dir: str

    def make_dir(self, case: unittest.SynchronousTestCase) -> str:
        self.dir = tempfile.mkdtemp(prefix="smsd-config-test-")
        case.addCleanup(shutil.rmtree, self.dir, True)
        return self.dir

    def write(self, text: str | bytes, name: str = "smsd.toml") -> str:
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(text.encode() if isinstance(text, str) else text)
        return path


class EmbeddedDefaultTests(TempDirMixin, unittest.SynchronousTestCase):
    """``twistd -n smsd`` with no --config: one machine, no hardware."""

    def setUp(self) -> None:
        self.config = load(None)
        self.make_dir(self)

    def test_name(self) -> None:
        self.assertEqual(self.config.path, "<embedded default>")

    def test_one_loopback_gateway(self) -> None:
        self.assertEqual(len(self.config.gateways), 1)
        (gateway,) = self.config.gateways
        self.assertEqual((gateway.common.id, gateway.common.type), ("loopback", "loopback"))
        self.assertEqual(gateway.options, loopback.Options())
        self.assertEqual(gateway.common, GatewaySection(id="loopback", type="loopback"))
        self.assertEqual(self.config.gateway_ids(), ["loopback"])

    def test_no_routes(self) -> None:
        self.assertEqual(self.config.routes, [])

    def test_http_on_8080(self) -> None:
        self.assertEqual(self.config.http.listen, ["tcp:8080"])

    def test_data_dir(self) -> None:
        self.assertEqual(self.config.data_dir, "./smsd-data")
        self.assertEqual(self.config.smsd.data_dir, "./smsd-data")

    def test_default_country(self) -> None:
        self.assertEqual(self.config.smsd.default_country, "US")

    def test_trusted_networks_are_loopback(self) -> None:
        self.assertEqual(self.config.smsd.trusted_networks, ["127.0.0.1/32", "::1/128"])

    def test_sections_are_the_code_defaults(self) -> None:
        self.assertEqual(self.config.smsd, SmsdSection())
        self.assertEqual(self.config.store, StoreSection())
        self.assertEqual(self.config.text, TextSection())
        self.assertEqual(self.config.dispatch, DispatchSection())
        self.assertEqual(self.config.http, HttpSection())

    def test_data_dir_argument_overrides(self) -> None:
        config = load(None, data_dir="/var/lib/smsd")
        self.assertEqual(config.data_dir, "/var/lib/smsd")
        self.assertEqual(config.smsd.data_dir, "/var/lib/smsd")
        self.assertEqual(config.gateway_ids(), ["loopback"])

    def test_data_dir_argument_overrides_the_file(self) -> None:
        path = self.write('[smsd]\ndata_dir = "/srv/a"\n' + GATEWAY)
        self.assertEqual(load(path).data_dir, "/srv/a")
        self.assertEqual(load(path, data_dir="/srv/b").data_dir, "/srv/b")


class ExampleFileTests(TempDirMixin, unittest.SynchronousTestCase):
    """etc/smsd.toml loads as shipped and documents every key with its default."""

    def setUp(self) -> None:
        self.example = read_example()
        self.make_dir(self)

    def test_loads_as_shipped(self) -> None:
        config = load(EXAMPLE)
        self.assertEqual(config.path, EXAMPLE)

    def test_as_shipped_is_the_embedded_default(self) -> None:
        self.assertTrue(same_settings(load(EXAMPLE), load(None)))

    def test_relative_path_loads(self) -> None:
        """From the checkout, as ``load("etc/smsd.toml")``."""
        cwd = os.getcwd()
        os.chdir(ROOT)
        self.addCleanup(os.chdir, cwd)
        self.assertEqual(load("etc/smsd.toml").gateway_ids(), ["loopback"])

    def test_sections_in_order(self) -> None:
        order: list[str] = []
        for h in self.example.headers:
            if h.name not in order:
                order.append(h.name)
        self.assertEqual(order, list(SECTIONS))

    def test_one_active_loopback_gateway(self) -> None:
        active = [h for h in self.example.headers if not h.commented]
        self.assertEqual([h.name for h in active], [*list(SECTIONS)[:10], "gateway"])
        values = {
            e.key: e.value
            for e in self.example.entries
            if e.section == "gateway" and not e.commented and not e.in_comment
        }
        self.assertEqual(values, {"id": "loopback", "type": "loopback"})

    def test_no_active_route(self) -> None:
        self.assertEqual(load(EXAMPLE).routes, [])
        for e in self.example.entries:
            if e.section == "route":
                self.assertTrue(e.commented, f"line {e.line + 1}: {e.key} is active")

    def test_every_key_documented(self) -> None:
        for section in SECTIONS:
            missing = set(fields(section)) - self.example.keys(section)
            self.assertEqual(missing, set(), f"[{section}] lacks {sorted(missing)}")

    def test_rewrite_keys_documented(self) -> None:
        tables = [
            e.value for e in self.example.entries if (e.section, e.key) == ("route", "rewrite")
        ]
        self.assertTrue(tables, "no rewrite = { ... } under [[route]]")
        names = {f.name for f in attrs.fields(Rewrite)}
        for table in tables:
            self.assertIsInstance(table, dict)
            self.assertEqual(set(table), names)

    def test_no_unknown_keys(self) -> None:
        """A key that does not exist would stop smsd when uncommented."""
        for e in self.example.entries:
            self.assertIn(e.section, SECTIONS, f"line {e.line + 1}: key before any section")
            self.assertIn(e.key, fields(e.section), f"line {e.line + 1}: [{e.section}] {e.key}")

    def test_defaults_commented_out(self) -> None:
        """Where a key is documented (its first line), a key with a default is commented."""
        for (section, key), e in self.example.first().items():
            _, field, _ = fields(section)[key]
            if default_of(field) is not attrs.NOTHING:
                self.assertTrue(e.commented, f"line {e.line + 1}: {key} should be '# {key} = '")

    def test_documented_defaults_are_the_code_defaults(self) -> None:
        checked = 0
        for (section, key), e in self.example.first().items():
            _, field, tp = fields(section)[key]
            default = default_of(field)
            if default is attrs.NOTHING or default is None:
                continue  # required, or off unless set (rewrite): no default to show
            if tp is Duration:
                written = parse_duration(e.value)
            else:
                written = convert(tp, e.value, f"{section}.{key}")
            self.assertEqual(written, default, f"line {e.line + 1}: {section}.{key} = {e.value!r}")
            self.assertEqual(type(written), type(default), f"line {e.line + 1}: {key}")
            checked += 1
        self.assertGreater(checked, 40)

    def test_every_key_has_a_comment(self) -> None:
        """The line above where a key is documented says what it does."""
        for (section, key), e in self.example.first().items():
            above = self.example.lines[e.line - 1]
            self.assertTrue(
                above.startswith("# ")
                and not KEY.match(above)
                and not HEADER.match(above)
                and len(above) > 10,
                f"line {e.line + 1}: [{section}] {key} has no comment above it",
            )

    def test_uncommenting_defaults_changes_nothing(self) -> None:
        lines = {e.line for e in self.example.first().values() if e.commented and not e.in_comment}
        path = self.write(self.example.uncomment(lines))
        self.assertTrue(same_settings(load(path), load(None)))

    def test_examples_load_when_uncommented(self) -> None:
        """Every commented-out [[gateway]] and [[route]] works once its "# " is removed."""
        lines = {h.line for h in self.example.headers if h.commented}
        lines |= {e.line for e in self.example.entries if e.in_comment}
        config = load(self.write(self.example.uncomment(lines)))
        commented = [h.name for h in self.example.headers if h.commented]
        self.assertEqual(len(config.gateways), 1 + commented.count("gateway"))
        self.assertEqual(len(config.routes), commented.count("route"))
        self.assertGreater(commented.count("route"), 1)
        self.assertTrue(any(r.rewrite is not None for r in config.routes))
        for g in config.gateways:
            self.assertIn(g.common.type, GATEWAY_TYPES)

    def test_only_existing_gateway_types_are_named(self) -> None:
        """The types that come later are mentioned, but no example uses them."""
        for e in self.example.entries:
            if e.key == "type":
                self.assertIn(e.value, GATEWAY_TYPES, f"line {e.line + 1}")


class ConfigErrorTests(TempDirMixin, unittest.SynchronousTestCase):
    """Every mistake gives ONE line: ``file: key: problem``."""

    def setUp(self) -> None:
        self.make_dir(self)

    def error(self, text: str | bytes, key: str | None, *fragments: str) -> str:
        """The ConfigError that ``text`` gives, checked for shape and ``fragments``."""
        path = self.write(text)
        with self.assertRaises(ConfigError) as cm:
            load(path)
        message = str(cm.exception)
        self.assertNotIn("\n", message)
        self.assertTrue(message.startswith(f"{path}: "), message)
        if key is not None:
            self.assertTrue(message.startswith(f"{path}: {key}: "), message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

    # Sections and keys

    def test_unknown_section(self) -> None:
        self.error(
            '[ldap]\nurl = "ldap://localhost"\n' + GATEWAY,
            "ldap",
            "unknown section",
            "dispatch, gateway, http, inbound, route, sip, smsd, smtp, snpp, store, text, xmpp",
        )

    def test_section_not_a_table(self) -> None:
        self.error("smsd = 1\n" + GATEWAY, "smsd", "expected a table")

    def test_unknown_key(self) -> None:
        message = self.error("[http]\nport = 8080\n" + GATEWAY, "http.port", "unknown key")
        for known in ("listen", "maxmsgs", "truncate", "realm"):
            self.assertIn(known, message)

    def test_unknown_key_in_smsd(self) -> None:
        self.error('[smsd]\ndomian = "x"\n' + GATEWAY, "smsd.domian", "unknown key", "domain")

    # Types

    def test_string_for_int(self) -> None:
        self.error('[http]\nmaxmsgs = "10"\n' + GATEWAY, "http.maxmsgs", "expected an integer")

    def test_int_for_bool(self) -> None:
        self.error("[http]\ntruncate = 1\n" + GATEWAY, "http.truncate", "expected true or false")

    def test_list_of_ints_for_list_of_strings(self) -> None:
        self.error("[http]\nlisten = [8080]\n" + GATEWAY, "http.listen[0]", "expected a string")

    def test_string_for_list(self) -> None:
        self.error(
            '[smsd]\ntrusted_networks = "10.0.0.0/8"\n' + GATEWAY,
            "smsd.trusted_networks",
            "expected a list",
        )

    def test_bool_for_int(self) -> None:
        self.error(GATEWAY + "window = true\n", "gateway.loopback.window", "expected an integer")

    def test_float_for_int(self) -> None:
        self.error("[store]\nbatch = 1.5\n" + GATEWAY, "store.batch", "expected an integer")

    def test_bool_for_number(self) -> None:
        self.error(GATEWAY + "throughput = true\n", "gateway.loopback.throughput", "a number")

    def test_route_users_not_a_list(self) -> None:
        self.error(
            GATEWAY + '[[route]]\nusers = "alice"\ngateways = ["loopback"]\n',
            "route[1].users",
            "expected a list",
        )

    # Durations

    def test_bad_duration(self) -> None:
        self.error(
            '[dispatch]\nvalidity = "fast"\n' + GATEWAY, "dispatch.validity", "duration", "'fast'"
        )

    def test_negative_duration(self) -> None:
        self.error("[dispatch]\nretry_min = -1\n" + GATEWAY, "dispatch.retry_min", ">= 0")

    def test_bad_duration_in_gateway(self) -> None:
        self.error(GATEWAY + 'latency = "soon"\n', "gateway.loopback.latency", "duration")

    def test_durations_in_every_unit(self) -> None:
        text = (
            '[dispatch]\nvalidity = "2w"\nretry_min = "250ms"\nretry_max = "4h"\n'
            'lease = "10m"\npoll = 0.5\npurge_after = "30d"\n[http]\n'
            'callback_timeout = "30s"\n' + GATEWAY
        )
        dispatch = load(self.write(text)).dispatch
        self.assertEqual(dispatch.validity, 14 * 86400)
        self.assertEqual(dispatch.retry_min, 0.25)
        self.assertEqual(dispatch.retry_max, 4 * 3600)
        self.assertEqual(dispatch.lease, 600)
        self.assertEqual(dispatch.poll, 0.5)
        self.assertEqual(dispatch.purge_after, 30 * 86400)

    # Ranges

    def test_maxmsgs_zero(self) -> None:
        self.error(
            "[http]\nmaxmsgs = 0\n" + GATEWAY, "http.maxmsgs", "must be between 1 and 128", "0"
        )

    def test_maxmsgs_129(self) -> None:
        self.error("[http]\nmaxmsgs = 129\n" + GATEWAY, "http.maxmsgs", "between 1 and 128", "129")

    def test_maxmsgs_limits_accepted(self) -> None:
        for n in (1, 128):
            self.assertEqual(load(self.write(f"[http]\nmaxmsgs = {n}\n" + GATEWAY)).http.maxmsgs, n)

    def test_window_zero(self) -> None:
        self.error(GATEWAY + "window = 0\n", "gateway.loopback.window", "must be between 1")

    def test_synchronous_one_of(self) -> None:
        self.error('[store]\nsynchronous = "off"\n' + GATEWAY, "store.synchronous", "full, normal")

    # Values checked by meaning

    def test_bad_endpoint(self) -> None:
        self.error(
            '[http]\nlisten = ["bogus:1"]\n' + GATEWAY, "http.listen", "'bogus:1'", "tcp:8080"
        )

    def test_endpoints_accepted(self) -> None:
        listen = ["tcp:8080", "tcp:8081:interface=127.0.0.1", "tcp6:8082:interface=\\:\\:1"]
        text = "[http]\nlisten = [" + ", ".join(f"'{e}'" for e in listen) + "]\n" + GATEWAY
        self.assertEqual(load(self.write(text)).http.listen, listen)

    def test_https_without_key_file(self) -> None:
        missing = os.path.join(self.dir, "missing.pem")
        self.error(
            f'[http]\nlisten = ["ssl:8443:privateKey={missing}:certKey={missing}"]\n' + GATEWAY,
            "http.listen",
            "missing.pem",
        )

    def test_bad_network(self) -> None:
        self.error(
            '[smsd]\ntrusted_networks = ["10.0.0.0/33"]\n' + GATEWAY,
            "smsd.trusted_networks",
            "'10.0.0.0/33'",
        )

    def test_hostname_is_not_a_network(self) -> None:
        self.error(
            '[smsd]\ntrusted_networks = ["localhost"]\n' + GATEWAY,
            "smsd.trusted_networks",
            "'localhost'",
        )

    def test_unknown_country(self) -> None:
        self.error('[smsd]\ndefault_country = "XX"\n' + GATEWAY, "smsd.default_country", "'XX'")

    def test_country_in_lower_case(self) -> None:
        config = load(self.write('[smsd]\ndefault_country = "se"\n' + GATEWAY))
        self.assertEqual(config.smsd.default_country, "SE")

    # Routes

    def test_bad_route_regex(self) -> None:
        self.error(
            GATEWAY + "[[route]]\nmatch = '(+46'\ngateways = [\"loopback\"]\n",
            "route[1].match",
            "bad regular expression",
        )

    def test_bad_rewrite_regex(self) -> None:
        self.error(
            GATEWAY + '[[route]]\ngateways = ["loopback"]\n'
            "rewrite = { pattern = '[', replace = '0046' }\n",
            "route[1].rewrite.pattern",
            "bad regular expression",
        )

    def test_rewrite_missing_replace(self) -> None:
        self.error(
            GATEWAY + "[[route]]\ngateways = [\"loopback\"]\nrewrite = { pattern = '^\\+46' }\n",
            "route[1].rewrite.replace",
            "missing",
        )

    def test_route_names_unknown_gateway(self) -> None:
        self.error(
            GATEWAY + '[[route]]\nprefix = ["+46"]\ngateways = ["smpp1"]\n',
            "route[1].gateways",
            "'smpp1'",
        )

    def test_route_fallback_names_unknown_gateway(self) -> None:
        self.error(
            GATEWAY
            + '[[route]]\ngateways = ["loopback"]\n'
            + '[[route]]\ngateways = ["loopback"]\nfallback = ["modem1"]\n',
            "route[2].fallback",
            "'modem1'",
        )

    def test_route_without_gateways(self) -> None:
        self.error(GATEWAY + "[[route]]\nmatch = '^\\+46'\n", "route[1].gateways", "missing")

    def test_route_with_empty_gateways(self) -> None:
        self.error(GATEWAY + "[[route]]\ngateways = []\n", "route[1].gateways", "at least one")

    def test_route_loads(self) -> None:
        config = load(
            self.write(
                GATEWAY + '[[route]]\nmatch = \'^\\+46\'\nprefix = ["+46"]\nusers = ["alice"]\n'
                'gateways = ["loopback"]\nfallback = ["loopback"]\n'
                "rewrite = { pattern = '^\\+46', replace = '0046' }\n"
            )
        )
        (route,) = config.routes
        self.assertEqual(route.match, "^\\+46")
        self.assertEqual(route.rewrite, Rewrite(pattern="^\\+46", replace="0046"))

    # Gateways

    def test_duplicate_gateway_id(self) -> None:
        self.error(GATEWAY + GATEWAY, "gateway.loopback.id", "'loopback'", "another gateway")

    def test_bad_gateway_id(self) -> None:
        self.error(
            '[[gateway]]\nid = "modem 1"\ntype = "loopback"\n',
            "gateway[1].id",
            "letters, digits",
        )

    def test_gateway_id_too_long(self) -> None:
        long_id = "g" * 65
        self.error(
            f'[[gateway]]\nid = "{long_id}"\ntype = "loopback"\n',
            "gateway[1].id",
            "at most 64",
        )

    def test_unknown_gateway_type(self) -> None:
        self.error(
            '[[gateway]]\nid = "http1"\ntype = "http"\n',
            "gateway.http1.type",
            "'http'",
            "known: loopback, modem, smpp, ucp",
        )

    def test_gateway_id_missing(self) -> None:
        self.error('[[gateway]]\ntype = "loopback"\n', "gateway[1].id", "missing (required)")

    def test_gateway_type_missing(self) -> None:
        self.error(
            GATEWAY + '[[gateway]]\nid = "second"\n', "gateway.second.type", "missing (required)"
        )

    def test_gateway_id_not_a_string(self) -> None:
        self.error('[[gateway]]\nid = 1\ntype = "loopback"\n', "gateway[1].id", "a string")

    def test_loopback_failure_rate(self) -> None:
        self.error(
            GATEWAY + "failure_rate = 2\n", "gateway.loopback.failure_rate", "between 0 and 1"
        )

    def test_loopback_reject_rate_type(self) -> None:
        self.error(GATEWAY + 'reject_rate = "10%"\n', "gateway.loopback.reject_rate", "a number")

    def test_unknown_key_in_gateway(self) -> None:
        self.error(
            GATEWAY + 'device = "/dev/ttyUSB0"\n',
            "gateway.loopback.device",
            "unknown key",
            "failure_rate",
        )

    def test_gateway_options_reach_the_config(self) -> None:
        config = load(self.write(GATEWAY + 'failure_rate = 0.5\nlatency = "1s"\nwindow = 3\n'))
        (gateway,) = config.gateways
        self.assertEqual(gateway.options.failure_rate, 0.5)
        self.assertEqual(gateway.options.latency, 1.0)
        self.assertEqual(gateway.common.window, 3)

    def test_no_gateway(self) -> None:
        self.error('[smsd]\ndomain = "sms.example.org"\n', "gateway", "at least one [[gateway]]")

    def test_empty_file(self) -> None:
        self.error("", "gateway", "at least one [[gateway]]")

    def test_gateway_as_a_single_table(self) -> None:
        self.error('[gateway]\nid = "loopback"\ntype = "loopback"\n', "gateway", "[[gateway]]")

    def test_route_as_a_single_table(self) -> None:
        self.error(GATEWAY + '[route]\ngateways = ["loopback"]\n', "route", "[[route]]")

    # The file itself

    def test_not_toml(self) -> None:
        self.error("[smsd]\ndomain = sms.example.org\n" + GATEWAY, None, "not valid TOML", "line 2")

    def test_not_toml_names_column(self) -> None:
        message = self.error("[smsd\n" + GATEWAY, None, "not valid TOML")
        self.assertIn("line 1, column", message)

    def test_missing_file(self) -> None:
        path = os.path.join(self.dir, "nonexistent.toml")
        with self.assertRaises(ConfigError) as cm:
            load(path)
        message = str(cm.exception)
        self.assertNotIn("\n", message)
        self.assertTrue(message.startswith(f"{path}: cannot read"), message)
        self.assertIn("No such file", message)

    def test_directory_instead_of_file(self) -> None:
        with self.assertRaises(ConfigError) as cm:
            load(self.dir)
        self.assertTrue(str(cm.exception).startswith(f"{self.dir}: cannot read"))

    def test_two_mistakes_one_line(self) -> None:
        """Only the first problem found is told: fix it, and the next one shows."""
        self.error("[http]\nmaxmsgs = 0\n[smsd]\ndefault_country = 'XX'\n" + GATEWAY, None)


class ConfigOddInputTests(TempDirMixin, unittest.SynchronousTestCase):
    """Odd input that once escaped as tracebacks or broken lines."""

    def setUp(self) -> None:
        self.make_dir(self)

    def error(self, text: str | bytes, key: str | None, *fragments: str) -> None:
        """As ConfigErrorTests.error; ``key=None`` leaves the key's spelling to the fix."""
        path = self.write(text)
        with self.assertRaises(ConfigError) as cm:
            load(path)
        message = str(cm.exception)
        self.assertNotIn("\n", message)
        self.assertTrue(message.startswith(f"{path}: {key or ''}"), message)
        for fragment in fragments:
            self.assertIn(fragment, message)

    def test_gateway_entry_not_a_table(self) -> None:
        self.error("gateway = [1]\n", "gateway[1]", "expected a table")

    def test_route_entry_not_a_table(self) -> None:
        self.error("route = [1]\n" + GATEWAY, "route[1]", "expected a table")

    def test_gateway_id_with_newline(self) -> None:
        self.error('[[gateway]]\nid = "a\\nb"\ntype = "loopback"\n', None, ".id: ", "letters")

    def test_key_with_newline(self) -> None:
        self.error('[smsd]\n"a\\nb" = 1\n' + GATEWAY, "smsd.", "unknown key")

    def test_not_utf8(self) -> None:
        path = self.write(b"# K\xf6ln\n" + GATEWAY.encode())
        with self.assertRaises(ConfigError) as cm:
            load(path)
        self.assertTrue(str(cm.exception).startswith(f"{path}: "))
        self.assertIn("UTF-8", str(cm.exception))

    def test_nan_duration(self) -> None:
        self.error("[dispatch]\nretry_min = nan\n" + GATEWAY, "dispatch.retry_min", "duration")

    def test_list_type_named_in_plural(self) -> None:
        self.error(
            '[http]\nlisten = "tcp:8080"\n' + GATEWAY, "http.listen", "expected a list of strings"
        )

    def test_unknown_gateway_key_lists_common_keys(self) -> None:
        self.error(GATEWAY + "windw = 3\n", "gateway.loopback.windw", "unknown key", "window")


class DaemonTests(TempDirMixin, unittest.SynchronousTestCase):
    """``twistd -n smsd --config bad.toml``: one line, no traceback, nothing created."""

    def setUp(self) -> None:
        self.make_dir(self)

    def run_twistd(self, config: str) -> tuple[int, str]:
        result = subprocess.run(
            [TWISTD, "-n", "--pidfile=", "smsd", "--config", config],
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return result.returncode, result.stdout + result.stderr

    def refusal(self, config: str) -> str:
        """smsd exits non-zero, creating nothing, with one line and no traceback: that line."""
        code, output = self.run_twistd(config)
        self.assertNotEqual(code, 0, output)
        self.assertNotIn("Traceback", output)
        lines = output.strip().splitlines()
        self.assertEqual(len(lines), 1, output)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "smsd-data")))
        self.assertTrue(lines[0].startswith(f"smsd: {config}: "), lines[0])
        return lines[0]

    def test_value_out_of_range(self) -> None:
        self.write("[http]\nmaxmsgs = 0\n" + GATEWAY, "bad.toml")
        self.assertEqual(
            self.refusal("bad.toml"),
            "smsd: bad.toml: http.maxmsgs: must be between 1 and 128, got 0",
        )

    def test_unknown_gateway_type(self) -> None:
        self.write('[[gateway]]\nid = "http1"\ntype = "http"\n', "bad.toml")
        self.assertEqual(
            self.refusal("bad.toml"),
            "smsd: bad.toml: gateway.http1.type: unknown gateway type 'http'"
            " (known: loopback, modem, smpp, ucp)",
        )

    def test_unknown_section(self) -> None:
        self.write("[smpt]\n" + GATEWAY, "bad.toml")
        self.assertTrue(
            self.refusal("bad.toml").startswith("smsd: bad.toml: smpt: unknown section (known: ")
        )

    def test_bad_endpoint(self) -> None:
        self.write('[http]\nlisten = ["tcp:http"]\n' + GATEWAY, "bad.toml")
        line = self.refusal("bad.toml")
        self.assertTrue(line.startswith("smsd: bad.toml: http.listen: "), line)
        self.assertIn("'tcp:http'", line)

    def test_not_toml(self) -> None:
        self.write("[http\n", "bad.toml")
        line = self.refusal("bad.toml")
        self.assertTrue(line.startswith("smsd: bad.toml: not valid TOML: "), line)
        self.assertIn("line 1, column", line)

    def test_missing_file(self) -> None:
        self.assertEqual(
            self.refusal("nowhere.toml"),
            "smsd: nowhere.toml: cannot read: No such file or directory",
        )

    def test_example_file_is_checked_the_same_way(self) -> None:
        """The shipped file with one key changed the way an administrator would."""
        with open(EXAMPLE, encoding="utf-8") as f:
            text = f.read()
        self.assertIn("# maxmsgs = 10\n", text)
        self.write(text.replace("# maxmsgs = 10\n", "maxmsgs = 200\n"), "smsd.toml")
        self.assertEqual(
            self.refusal("smsd.toml"),
            "smsd: smsd.toml: http.maxmsgs: must be between 1 and 128, got 200",
        )
