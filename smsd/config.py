"""smsd's configuration: one TOML file, typed and checked before anything starts.

Every key that exists is declared here with its default and a doc string;
``etc/smsd.toml`` documents the same keys (a test keeps the two in step).
A wrong or unknown key stops the start with one line: ``file: key: problem``.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import re
import socket
import tomllib
from typing import Any

import attrs
import phonenumbers

from smsd.configschema import ConfigError, Duration, between, build, key_name, one_of, setting

__all__ = ["Config", "ConfigError", "load"]


def _networks(value: list[str]) -> None:
    for v in value:
        try:
            ipaddress.ip_network(v, strict=False)
        except ValueError:
            raise ValueError(f"not a network like '10.0.0.0/8': {v!r}") from None


def _country(value: str) -> str:
    if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"not an ISO 3166 country code that has phone numbers: {value!r}")
    return value.upper()


def _endpoints(value: list[str]) -> None:
    from twisted.internet.endpoints import serverFromString

    for v in value:
        try:
            serverFromString(_NoReactor(), v)
        except Exception as e:  # the parser raises many kinds for bad strings
            raise ValueError(f"not a Twisted endpoint like 'tcp:8080': {v!r} ({e})") from None


class _NoReactor:
    """Endpoint parsing only stores the reactor; nothing is listened on here."""


def _regex(value: str) -> None:
    try:
        re.compile(value)
    except re.error as e:
        raise ValueError(f"bad regular expression {value!r}: {e}") from None


def _prefixes(value: list[str]) -> None:
    for v in value:
        if not re.fullmatch(r"\+?[0-9]{1,15}", v):
            raise ValueError(
                f"a prefix is '+' and digits (numbers are matched in E.164, '+4670...'),"
                f" or digits for short codes; got {v!r}"
            )


@attrs.frozen
class SmsdSection:
    domain: str = setting("sms.example.org", "mail and XMPP addresses are +1555...@domain")
    data_dir: str = setting("./smsd-data", "where the database, logs and loopback output live")
    default_country: str = setting("US", "ISO country for national numbers", _country)
    trusted_networks: list[str] = setting(
        factory=lambda: ["127.0.0.1/32", "::1/128"],
        doc="clients from these networks may submit without credentials",
        check=_networks,
    )
    admin_email: str = setting("", "where alerts go (gateway down and back up)")
    node_id: str = setting("", "this node's name in leases; empty: the host name")
    traffic_log: str = setting("traffic.log", "one line per SMS part, in data_dir; empty: off")


def _store_url(value: str) -> None:
    if value and not (value.startswith("sqlite:///") and len(value) > len("sqlite:///")):
        raise ValueError(
            f"expected sqlite:///relative/path.db or sqlite:////absolute/path.db, got {value!r}"
        )


@attrs.frozen
class StoreSection:
    url: str = setting(
        "",
        "sqlite:///smsd.db (relative: inside data_dir) or sqlite:////abs/path.db;"
        " empty: smsd.db in data_dir",
        _store_url,
    )
    synchronous: str = setting(
        "full",
        "SQLite fsync policy: full survives power loss, normal only a crash",
        one_of("full", "normal"),
    )
    batch: int = setting(512, "most operations in one commit", between(1, 100_000))
    writer: str = setting(
        "process",
        "where commits run: a process of its own (beside the reactor, on another core)"
        " or a thread (sharing the reactor's GIL)",
        one_of("process", "thread"),
    )


@attrs.frozen
class TextSection:
    transliterate: bool = setting(
        False, "replace characters outside GSM 7-bit instead of sending UCS-2 (site default)"
    )
    ref16: bool = setting(False, "16-bit concatenation references (152/66/133 per part)")


@attrs.frozen
class DispatchSection:
    batch: int = setting(256, "messages claimed from the store at a time", between(1, 10_000))
    validity: Duration = setting(
        Duration(5 * 86400), "how long a message may wait before it expires", between(1, 1e9)
    )
    retry_min: Duration = setting(
        Duration(10), "first retry delay after a temporary error", between(0.01, 1e7)
    )
    retry_max: Duration = setting(
        Duration(3600), "longest retry delay (doubles up to this)", between(0.01, 1e7)
    )
    max_attempts: int = setting(
        0, "give up after this many attempts; 0: until it expires", between(0, 1_000_000)
    )
    lease: Duration = setting(
        Duration(300), "a claimed message returns to the queue after this", between(5, 1e6)
    )
    poll: Duration = setting(
        Duration(1), "how often to look for work submitted elsewhere", between(0.01, 3600)
    )
    purge_after: Duration = setting(
        Duration(90 * 86400), "delete finished messages this long after; 0: keep"
    )


@attrs.frozen
class InboundSection:
    reassembly_timeout: Duration = setting(
        Duration(600),
        "parts of a long SMS whose siblings never come are stored one by one after this",
        between(1, 7 * 86400),
    )
    owner_tag: bool = setting(True, "#user@example.org# in the text chooses whose SMS it is")
    owner_dedicated: bool = setting(True, "an SMS to a dedicated number is that user's")
    reply_window: Duration = setting(
        Duration(7 * 86400), "an answer goes to who wrote to the phone this recently; 0: off"
    )
    owner_sort_word: bool = setting(True, "a first word that is a user's sort word chooses them")
    default_mailbox: str = setting("", "where SMS nobody owns are mailed; empty: kept unowned")
    conflict_text: str = setting(
        "Several people wrote to you from this number. Start your answer with"
        " #their@address# to choose.",
        "sent to a phone whose answer could be for several people; empty: none",
    )
    reply_expiry: Duration = setting(
        Duration(5 * 86400), "a reply mail the relay does not take is given up after this"
    )


def _relay(value: str) -> None:
    if value:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected host:port, got {value!r}")


@attrs.frozen
class SmtpSection:
    listen: list[str] = setting(
        factory=list, doc="endpoints for mail to SMS, e.g. tcp:25; []: off", check=_endpoints
    )
    relay: str = setting(
        "", "host:port of the mail server for alerts; empty: a Maildir in data_dir", _relay
    )
    relay_user: str = setting("", "account on the relay (AUTH); empty: none")
    relay_password: str = setting("", "its password (never logged)")
    relay_tls: bool = setting(False, "require STARTTLS with the relay (else used when offered)")
    relay_ca: str = setting("", "PEM file of the CA that signed the relay's certificate")
    maxmsgs: int = setting(10, "default most SMS parts a mail may take", between(1, 128))
    truncate: bool = setting(True, "cut text that needs more than maxmsgs parts (else 550)")
    max_recipients: int = setting(100, "most numbers in one mail", between(1, 100_000))
    max_size: int = setting(1_048_576, "largest mail in bytes", between(1024, 1 << 30))
    tls_cert: str = setting("", "PEM certificate (and chain) for STARTTLS; empty: no STARTTLS")
    tls_key: str = setting("", "PEM private key for STARTTLS; empty: in tls_cert")
    auth_without_tls: bool = setting(False, "allow AUTH before STARTTLS (passwords in the clear)")
    anonymous: bool = setting(
        False, "trusted networks: a sender address that is no user's may send too (uncharged)"
    )
    batch_address: str = setting(
        "", "mail to this address carries the 2sms body (id:, password:, message:); empty: off"
    )
    text: str = setting(
        "body",
        "what becomes the SMS: body (the subject when it is empty), subject, or both",
        one_of("body", "subject", "both"),
    )
    delay_warning: Duration = setting(
        Duration(4 * 3600), "tell a mail's sender when its SMS is not sent after this; 0: never"
    )


def _groups(value: dict[str, list[str]]) -> None:
    for name, members in value.items():
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"group name {name!r}: one word")
        if not members:
            raise ValueError(f"group {name!r} has no numbers")


@attrs.frozen
class SnppSection:
    listen: list[str] = setting(
        factory=lambda: ["tcp:4444"],
        doc="endpoints for SNPP paging (RFC 1861), e.g. tcp:444; []: off",
        check=_endpoints,
    )
    maxmsgs: int = setting(10, "default most SMS parts a page may take", between(1, 128))
    truncate: bool = setting(True, "cut text that needs more than maxmsgs parts (else 550)")
    max_recipients: int = setting(100, "most pagers in one transaction", between(1, 100_000))
    max_text: int = setting(8192, "longest text (MESS or DATA) in bytes", between(160, 1 << 20))
    idle_timeout: Duration = setting(
        Duration(300), "close sessions silent for this long", between(1, 86400)
    )
    anonymous: bool = setting(
        False, "clients outside trusted_networks may page without LOGIn too (uncharged)"
    )
    login_failures: int = setting(3, "failed LOGIns before 421 and the end", between(1, 100))
    alert_flash: bool = setting(False, "ALERt 1 sends a flash SMS (class 0)")
    caller: str = setting(
        "text",
        "what CALLerid does: text (before the message) or sender (the sender ID, if allowed)",
        one_of("text", "sender"),
    )
    when_down: str = setting(
        "refuse",
        "SEND while no gateway could carry it: refuse (554) or queue",
        one_of("refuse", "queue"),
    )
    groups: dict[str, list[str]] = setting(
        factory=dict, doc="pager IDs that page several numbers", check=_groups
    )


def _client_endpoint(value: str) -> None:
    from twisted.internet.endpoints import clientFromString

    if value:
        try:
            clientFromString(_NoReactor(), value)
        except Exception as e:  # the parser raises many kinds for bad strings
            raise ValueError(
                f"not a Twisted client endpoint like 'tcp:127.0.0.1:5347': {value!r} ({e})"
            ) from None


def _domain(value: str) -> str:
    if value and not re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*", value):
        raise ValueError(f"not a domain name like 'sms.example.org': {value!r}")
    return value.lower()


def _domains(value: list[str]) -> list[str]:
    return [_domain(v) for v in value]


@attrs.frozen
class XmppSection:
    server: str = setting(
        "",
        "the XMPP server's component port, a Twisted client endpoint like"
        " tcp:127.0.0.1:5347; empty: off",
        _client_endpoint,
    )
    component: str = setting("", "the gateway's domain (XEP-0114); empty: [smsd] domain", _domain)
    secret: str = setting("", "the component secret shared with the server (never logged)")
    name: str = setting("SMS", "the gateway's name in service discovery")
    trusted_domains: list[str] = setting(
        factory=list,
        doc="bare JIDs of these domains are the smsd users of the same name (alice@example.org"
        " is user alice) without registering",
        check=_domains,
    )
    allowed_domains: list[str] = setting(
        factory=list, doc="only JIDs of these domains may use the gateway; []: any", check=_domains
    )
    registration: bool = setting(
        True, "users may link their JID to their smsd account (jabber:iq:register)"
    )
    maxmsgs: int = setting(10, "most SMS parts a chat message may take", between(1, 128))
    truncate: bool = setting(
        False, "cut text that needs more than maxmsgs parts (else a not-acceptable error)"
    )
    offline: str = setting(
        "store",
        "an SMS for a user not seen online: store (sent anyway, their server keeps it)"
        " or mail (to their mailbox instead)",
        one_of("store", "mail"),
    )
    reconnect_min: Duration = setting(
        Duration(1),
        "first wait before connecting again after the stream was lost",
        between(0.01, 3600),
    )
    reconnect_max: Duration = setting(
        Duration(60), "the wait doubles up to this", between(0.01, 86400)
    )
    keepalive: Duration = setting(
        Duration(60),
        "ping through the server this often; no answer within as long: reconnect",
        between(1, 86400),
    )
    receipts: int = setting(
        100_000,
        "most sent messages whose delivery receipt (XEP-0184) is remembered, in memory",
        between(0, 10_000_000),
    )


def parse_udp(value: str) -> tuple[int, str] | None:
    """``udp:5060[:interface=ADDR]`` -> (5060, ADDR or ""); None for another endpoint
    (Twisted's endpoint strings have no UDP, so SIP reads its own)."""
    kind, _, rest = value.partition(":")
    if kind != "udp":
        return None
    port, _, option = rest.partition(":")
    interface = ""
    if option:
        name, sep, interface = option.partition("=")
        if name != "interface" or not sep or not interface:
            raise ValueError(f"expected udp:PORT[:interface=ADDRESS], got {value!r}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected udp:PORT[:interface=ADDRESS], got {value!r}")
    return int(port), interface


def _sip_endpoints(value: list[str]) -> None:
    _endpoints([v for v in value if parse_udp(v) is None])


@attrs.frozen
class SipSection:
    listen: list[str] = setting(
        factory=lambda: ["udp:5060", "tcp:5060"],
        doc="endpoints for SIP MESSAGE (udp:PORT, tcp:PORT, with :interface=); []: off",
        check=_sip_endpoints,
    )
    realm: str = setting("", "digest realm; empty: [smsd] domain")
    maxmsgs: int = setting(10, "default most SMS parts a MESSAGE may take", between(1, 128))
    truncate: bool = setting(True, "cut text that needs more than maxmsgs parts (else 413)")
    max_body: int = setting(16384, "largest MESSAGE body over TCP, bytes", between(256, 1 << 20))
    max_body_udp: int = setting(1300, "largest MESSAGE body over UDP, bytes", between(256, 8192))
    nonce_lifetime: Duration = setting(
        Duration(300), "a digest nonce is good this long", between(10, 86400)
    )
    register_min: Duration = setting(
        Duration(60), "shortest registration accepted (423 below)", between(1, 86400)
    )
    register_max: Duration = setting(
        Duration(3600), "longest registration granted", between(60, 7 * 86400)
    )
    when_down: str = setting(
        "refuse",
        "MESSAGE while no gateway could carry it: refuse (503 with Retry-After) or queue",
        one_of("refuse", "queue"),
    )
    retry_after: Duration = setting(
        Duration(60), "the Retry-After of such a 503", between(1, 86400)
    )


@attrs.frozen
class HttpSection:
    listen: list[str] = setting(
        factory=lambda: ["tcp:8080"],
        doc="Twisted endpoints; ssl:443:privateKey=...:certKey=...",
        check=_endpoints,
    )
    maxmsgs: int = setting(10, "default most SMS parts a message may take", between(1, 128))
    truncate: bool = setting(True, "cut text that needs more than maxmsgs parts (else 400)")
    max_recipients: int = setting(100, "most numbers in one request", between(1, 100_000))
    max_body: int = setting(1_048_576, "largest request body in bytes", between(1024, 1 << 30))
    realm: str = setting("smsd", "HTTP Basic realm")
    idle_timeout: Duration = setting(
        Duration(300), "close keep-alive connections silent for this long", between(1, 86400)
    )
    callback_timeout: Duration = setting(Duration(10), "timeout of one status callback POST")
    callback_attempts: int = setting(
        5, "tries of a status callback before giving up", between(1, 100)
    )
    workers: int = setting(
        0,
        "processes that serve HTTP beside the main one, which commits what they take;"
        " 0: the main process serves HTTP itself",
        between(0, 64),
    )


@attrs.frozen
class GatewaySection:
    """Keys every gateway has; the remaining keys belong to its type."""

    id: str = setting(doc="unique name, used in routes, logs and the API")
    type: str = setting(doc="loopback, modem, smpp or ucp")
    enabled: bool = setting(True, "false keeps it configured but out of the pool")
    throughput: float = setting(
        0.0, "SMS parts per second at most; 0: no limit", between(0, 1_000_000)
    )
    window: int = setting(10, "messages in flight at once", between(1, 100_000))
    weight: int = setting(1, "share of traffic against the other candidates", between(1, 1000))
    sender: str = setting("", "sender ID for users whose policy is 'device'")
    max_failures: int = setting(
        5, "temporary errors in a row that take it out of the pool", between(1, 10_000)
    )
    down_for: Duration = setting(Duration(30), "how long it stays out before a new try")
    send_timeout: Duration = setting(
        Duration(60), "a send with no answer after this counts as a temporary error; 0: none"
    )


@attrs.frozen
class Rewrite:
    pattern: str = setting(doc="regular expression on the E.164 number", check=_regex)
    replace: str = setting(doc="replacement (\\1 for groups)")


@attrs.frozen
class RouteSection:
    gateways: list[str] = setting(doc="gateway ids that share the matching traffic")
    match: str = setting("", "regular expression the number must match (search)", _regex)
    prefix: list[str] = setting(
        factory=list, doc="number prefixes, e.g. ['+46', '+47']", check=_prefixes
    )
    users: list[str] = setting(factory=list, doc="only messages of these users")
    fallback: list[str] = setting(factory=list, doc="used only while none of gateways is up")
    rewrite: Rewrite | None = setting(None, "number rewrite for these gateways")


@attrs.frozen
class GatewayConfig:
    """One [[gateway]]: the common keys and the type's own options."""

    common: GatewaySection
    options: Any


@attrs.frozen
class Config:
    path: str
    smsd: SmsdSection
    store: StoreSection
    text: TextSection
    dispatch: DispatchSection
    inbound: InboundSection
    http: HttpSection
    smtp: SmtpSection
    snpp: SnppSection
    xmpp: XmppSection
    sip: SipSection
    gateways: list[GatewayConfig]
    routes: list[RouteSection]

    @property
    def data_dir(self) -> str:
        return self.smsd.data_dir

    @property
    def node_id(self) -> str:
        return self.smsd.node_id or socket.gethostname()

    def gateway_ids(self) -> list[str]:
        return [g.common.id for g in self.gateways]


GATEWAY_TYPES = {
    "loopback": "smsd.gateways.loopback",
    "modem": "smsd.gateways.modem",
    "smpp": "smsd.gateways.smpp",
    "ucp": "smsd.gateways.ucp",
}

EMBEDDED_DEFAULT = """
[[gateway]]
id = "loopback"
type = "loopback"
"""

_SECTIONS = {
    "smsd": SmsdSection,
    "store": StoreSection,
    "text": TextSection,
    "dispatch": DispatchSection,
    "inbound": InboundSection,
    "http": HttpSection,
    "smtp": SmtpSection,
    "snpp": SnppSection,
    "xmpp": XmppSection,
    "sip": SipSection,
}


def gateway_module(type_name: str) -> Any:
    return importlib.import_module(GATEWAY_TYPES[type_name])


def load(path: str | None, data_dir: str | None = None) -> Config:
    """Read and check the configuration; ``path=None`` gives the embedded default."""
    if path is None:
        name, table = "<embedded default>", tomllib.loads(EMBEDDED_DEFAULT)
    else:
        name = path
        try:
            with open(path, "rb") as f:
                table = tomllib.load(f)
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not valid UTF-8 at byte {e.start}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
    try:
        config = _from_table(name, table)
    except ConfigError as e:
        raise ConfigError(f"{name}: {e}") from None
    if data_dir is not None:
        config = attrs.evolve(config, smsd=attrs.evolve(config.smsd, data_dir=data_dir))
    return config


def _from_table(name: str, table: dict[str, Any]) -> Config:
    known = {*_SECTIONS, "gateway", "route"}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(
                f"{key_name(key)}: unknown section (known: {', '.join(sorted(known))})"
            )
        if key in _SECTIONS and not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table [{key}]")
    sections = {key: build(cls, table.get(key, {}), key) for key, cls in _SECTIONS.items()}

    gateways = _gateways(table.get("gateway", []))
    ids = {g.common.id for g in gateways}
    lease = sections["dispatch"].lease
    for g in gateways:
        if g.common.send_timeout >= lease:
            raise ConfigError(
                f"gateway.{g.common.id}.send_timeout: must be shorter than dispatch.lease"
                f" ({lease:g}s), or a slow send could be taken over and sent twice"
            )
    routes_raw = table.get("route", [])
    if not isinstance(routes_raw, list):
        raise ConfigError("route: expected [[route]] tables")
    routes = []
    for i, raw in enumerate(routes_raw, 1):
        key = f"route[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{key}: expected a table [[route]], got {raw!r}")
        route = build(RouteSection, raw, key)
        if not route.gateways:
            raise ConfigError(f"{key}.gateways: needs at least one gateway id")
        for field in ("gateways", "fallback"):
            for gid in getattr(route, field):
                if gid not in ids:
                    raise ConfigError(f"{key}.{field}: no gateway with id {gid!r}")
        routes.append(route)
    return Config(path=name, gateways=gateways, routes=routes, **sections)


_GATEWAY_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_COMMON_KEYS = tuple(f.name for f in attrs.fields(GatewaySection))


def _gateways(raw: Any) -> list[GatewayConfig]:
    if not isinstance(raw, list):
        raise ConfigError("gateway: expected [[gateway]] tables")
    if not raw:
        raise ConfigError("gateway: at least one [[gateway]] is needed")
    out: list[GatewayConfig] = []
    seen: set[str] = set()
    for i, table in enumerate(raw, 1):
        if not isinstance(table, dict):
            raise ConfigError(f"gateway[{i}]: expected a table [[gateway]], got {table!r}")
        gid = table.get("id")
        label = (
            f"gateway.{gid}"
            if isinstance(gid, str) and _GATEWAY_ID.fullmatch(gid)
            else f"gateway[{i}]"
        )
        common, rest = build(GatewaySection, table, label, extra=True, also=_COMMON_KEYS)
        if not _GATEWAY_ID.fullmatch(common.id):
            raise ConfigError(
                f"{label}.id: use letters, digits, '_', '.', '-' (at most 64), got {common.id!r}"
            )
        if common.id in seen:
            raise ConfigError(f"{label}.id: {common.id!r} is used by another gateway")
        seen.add(common.id)
        if common.type not in GATEWAY_TYPES:
            raise ConfigError(
                f"{label}.type: unknown gateway type {common.type!r}"
                f" (known: {', '.join(sorted(GATEWAY_TYPES))})"
            )
        options = build(gateway_module(common.type).Options, rest, label, also=_COMMON_KEYS)
        out.append(GatewayConfig(common, options))
    return out


def resolve(config: Config, path: str) -> str:
    """A path relative to the data directory (absolute paths stay)."""
    return path if os.path.isabs(path) else os.path.join(config.data_dir, path)
