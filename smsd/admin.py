"""smsd-admin: users, the queue, test messages and injected SMS, from a shell.

It works on the daemon's own store through the Store interface and the core
(Submitter, Receiver), so whatever it writes obeys the daemon's rules
(numbers, sender policies, quotas) and the daemon may keep running: SQLite in
WAL mode with a busy timeout lets both write, each in its turn.

Scripts call it, so the command line and the ``--json`` output are a stable
interface. Expected failures are one line ``smsd-admin: <reason>`` on stderr
and exit status 1; usage and configuration errors exit with 2.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import re
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Sequence
from email.utils import parseaddr
from typing import Any, TextIO

import attrs
from twisted.internet import task
from twisted.internet.defer import gatherResults

from protocols import sip, xmpp
from smsd import numbers, text
from smsd.config import Config, ConfigError, load
from smsd.core.inbound import Receiver
from smsd.core.routing import Router
from smsd.core.submit import Refused, SubmitSettings, Submitter
from smsd.core.users import account_problem, hash_password
from smsd.model import Inbound, SenderPolicy, State, Submission, User
from smsd.store import Store, StoreError, open_store
from smsd.store.schema import SchemaTooNew

PROG = "smsd-admin"

_NAME = re.compile(r"[\w.@+-]{1,64}")
# The option that supplies what each sender policy needs (policy -> User field, option).
_POLICY_NEEDS = {
    SenderPolicy.FIXED: ("senders", "--sender"),
    SenderPolicy.MOBILE: ("mobile", "--mobile"),
    SenderPolicy.DEDICATED: ("dedicated", "--dedicated"),
}


class AdminError(Exception):
    """An expected failure: one line on stderr, never a traceback."""

    def __init__(self, reason: str, code: int = 1) -> None:
        super().__init__(reason)
        self.code = code


@attrs.frozen
class Context:
    """What a command may use: the checked configuration, the open store, the reactor."""

    config: Config
    store: Store
    reactor: Any
    out: TextIO


Command = Callable[[Context, argparse.Namespace], Awaitable[None]]


# -- checks: everything is validated before anything is written -------------------------------


def check_name(name: str) -> str:
    """User names travel in HTTP Basic auth and mail bodies: no spaces, no ':'."""
    if not _NAME.fullmatch(name):
        raise AdminError(
            f"invalid user name {name!r}: use letters, digits and . _ @ + - (at most 64)"
        )
    return name


def check_email(raw: str) -> str:
    """A bare address (no display name) with one '@' and no spaces."""
    value = raw.strip()
    name, address = parseaddr(value)
    local, _, domain = address.rpartition("@")
    if (
        name
        or address != value
        or value.count("@") != 1
        or not local
        or not domain
        or any(c.isspace() or not c.isprintable() for c in value)
        or domain.startswith(".")
        or domain.endswith(".")
        or ".." in domain
    ):
        raise AdminError(f"invalid e-mail address {raw!r}")
    return value


def check_date(raw: str) -> str:
    try:
        return datetime.date.fromisoformat(raw).isoformat()
    except ValueError:
        raise AdminError(f"invalid date {raw!r}: expected YYYY-MM-DD") from None


def check_country(raw: str) -> str:
    if not numbers.country_ok(raw):
        raise AdminError(f"invalid country {raw!r}: expected an ISO 3166 code such as US or DE")
    return raw.upper()


def check_number(raw: str, country: str, what: str, *, short_codes: bool = True) -> str:
    try:
        return numbers.normalise(raw, country, short_codes=short_codes)
    except numbers.NumberError as e:
        raise AdminError(f"invalid {what}: {e}") from None


def check_sender(raw: str, country: str, what: str = "sender ID") -> str:
    try:
        return numbers.parse_sender(raw, country).value
    except numbers.NumberError as e:
        raise AdminError(f"invalid {what}: {e}") from None


def _unique(values: Sequence[str]) -> tuple[str, ...]:
    """In order, without repeats (the store would see a repeated number as taken)."""
    return tuple(dict.fromkeys(values))


def user_fields(args: argparse.Namespace, base: User, site_country: str) -> dict[str, Any]:
    """The fields the options name, checked and normalised; the others stay as in ``base``."""
    fields: dict[str, Any] = {}
    if args.country is not None:
        fields["default_country"] = check_country(args.country)
    elif getattr(args, "no_country", False):
        fields["default_country"] = None
    country = fields.get("default_country", base.default_country) or site_country
    if args.email is not None:
        fields["emails"] = _unique([check_email(e) for e in args.email])
    if args.mobile is not None:
        fields["mobile"] = check_number(args.mobile, country, "mobile number", short_codes=False)
    elif getattr(args, "no_mobile", False):
        fields["mobile"] = None
    if args.dedicated is not None:
        fields["dedicated"] = _unique(
            [check_number(d, country, "dedicated number") for d in args.dedicated]
        )
    elif getattr(args, "no_dedicated", False):
        fields["dedicated"] = ()
    if args.alias is not None:
        fields["aliases"] = _unique([check_alias(a) for a in args.alias])
    elif getattr(args, "no_aliases", False):
        fields["aliases"] = ()
    if args.contact is not None:
        fields["contacts"] = check_contacts(args.contact, country)
    elif getattr(args, "no_contacts", False):
        fields["contacts"] = ()
    if args.forward is not None:
        fields["forward"] = args.forward
    if args.sender_policy is not None:
        fields["sender_policy"] = SenderPolicy(args.sender_policy)
    if args.sender is not None:
        fields["senders"] = _unique([check_sender(s, country) for s in args.sender])
    elif getattr(args, "no_senders", False):
        fields["senders"] = ()
    if args.monthly_limit is not None:
        fields["monthly_limit"] = args.monthly_limit
    if args.expires is not None:
        fields["expires"] = check_date(args.expires)
    elif getattr(args, "no_expires", False):
        fields["expires"] = None
    if args.active is not None:
        fields["active"] = args.active
    if args.transliterate is not None:
        fields["transliterate"] = (
            None if args.transliterate == "site" else args.transliterate == "yes"
        )
    return fields


def check_alias(word: str) -> str:
    """A sort word: one word, as the first word of an SMS would be."""
    if not word or len(word) > 40 or any(c.isspace() or c == "#" for c in word):
        raise AdminError(f"sort word {word!r}: one word without '#', up to 40 characters", 2)
    return word.lower()


def check_contacts(pairs: Sequence[str], country: str) -> tuple[tuple[str, str], ...]:
    """``["Bob=+15557654321", ...]``: the address book, names unique whatever their case."""
    book: dict[str, tuple[str, str]] = {}
    for pair in pairs:
        name, sep, number = pair.partition("=")
        name = name.strip()
        if not sep or not name or any(c.isspace() for c in name) or len(name) > 40:
            raise AdminError(f"contact {pair!r}: NAME=NUMBER, the name one word", 2)
        book[name.casefold()] = (name, check_number(number.strip(), country, f"number of {name}"))
    return tuple(book.values())


def check_policy(user: User) -> None:
    """Refuse an account whose sender policy could never give a sender ID, or that
    forwards to a mobile it does not have."""
    if user.forward and not user.mobile:
        raise AdminError("--forward needs --mobile: where would the SMS go?", 2)
    need = _POLICY_NEEDS.get(user.sender_policy)
    if need is not None and not getattr(user, need[0]):
        raise AdminError(f"sender policy {user.sender_policy.value!r} needs {need[1]}")


# -- passwords --------------------------------------------------------------------------------


def read_password(stdin: TextIO) -> str:
    """Twice from the terminal without echo, or one line from a pipe."""
    if stdin.isatty():
        try:
            first = getpass.getpass("New password: ")
            second = getpass.getpass("Repeat password: ")
        except EOFError:
            raise AdminError("no password given") from None
        if first != second:
            raise AdminError("the passwords do not match")
        password = first
    else:
        password = stdin.readline().rstrip("\r\n")
    if not password:
        raise AdminError("empty password")
    return password


# -- reading things back ----------------------------------------------------------------------


def month(now: float) -> str:
    """The usage period a submission at ``now`` is counted in (as core.submit counts)."""
    return datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m")


def account_status(user: User, today: datetime.date) -> str:
    if not user.active:
        return "inactive"
    return "expired" if account_problem(user, today) else "active"


def user_record(user: User, used: int, period: str, today: datetime.date) -> dict[str, Any]:
    """Every field but the password hash, plus this month's usage and the account status."""
    record = attrs.asdict(user, filter=lambda a, _: a.name not in ("password_hash", "sip_ha1"))
    record["sender_policy"] = user.sender_policy.value
    record["contacts"] = dict(user.contacts)
    record.update(period=period, used_this_month=used, status=account_status(user, today))
    return record


def _utc(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    units = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{u}" for n, u in units if n][:2]
    return " ".join(shown) or "0s"


def _limit(n: int) -> str:
    return str(n) if n else "none"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _today(ctx: Context) -> datetime.date:
    return datetime.datetime.fromtimestamp(ctx.reactor.seconds(), datetime.UTC).date()


async def _get_user(store: Store, name: str) -> User:
    user = await store.get_user(name)
    if user is None:
        raise AdminError(f"no user {name!r}")
    return user


# -- commands ---------------------------------------------------------------------------------


async def user_add(ctx: Context, args: argparse.Namespace) -> None:
    base = User(name=check_name(args.name), created_at=ctx.reactor.seconds())
    user = attrs.evolve(base, **user_fields(args, base, ctx.config.smsd.default_country))
    check_policy(user)
    user = attrs.evolve(user, **_secrets(ctx, user.name, args.password))
    await ctx.store.add_user(user)
    print(f"added user {user.name}", file=ctx.out)


async def user_set(ctx: Context, args: argparse.Namespace) -> None:
    current = await _get_user(ctx.store, args.name)
    fields = user_fields(args, current, ctx.config.smsd.default_country)
    if not fields:
        raise AdminError("nothing to change: name at least one option (see user set --help)")
    user = attrs.evolve(current, **fields)
    check_policy(user)
    await ctx.store.update_user(user)
    print(f"updated user {user.name}", file=ctx.out)


async def user_passwd(ctx: Context, args: argparse.Namespace) -> None:
    """The password was read before the store was opened (main), never from the reactor."""
    current = await _get_user(ctx.store, args.name)
    await ctx.store.update_user(attrs.evolve(current, **_secrets(ctx, current.name, args.password)))
    print(f"password of {current.name} changed", file=ctx.out)


def _secrets(ctx: Context, name: str, password: str) -> dict[str, str]:
    """What a password becomes: its hash, and the SIP digest secret for the site's realm
    (the realm is part of it: changing [sip] realm needs the passwords set again)."""
    realm = ctx.config.sip.realm or ctx.config.smsd.domain
    return {"password_hash": hash_password(password), "sip_ha1": sip.ha1(name, realm, password)}


async def user_del(ctx: Context, args: argparse.Namespace) -> None:
    await ctx.store.delete_user(args.name)
    print(f"deleted user {args.name}", file=ctx.out)


async def user_list(ctx: Context, args: argparse.Namespace) -> None:
    period, today = month(ctx.reactor.seconds()), _today(ctx)
    users = await ctx.store.list_users()
    used = await gatherResults([ctx.store.usage(u.name, period) for u in users], consumeErrors=True)
    if args.json:
        records = [user_record(u, n, period, today) for u, n in zip(users, used, strict=True)]
        json.dump(records, ctx.out, indent=2)
        print(file=ctx.out)
        return
    rows = [["NAME", "POLICY", "LIMIT", f"USED {period}", "STATUS"]]
    for u, n in zip(users, used, strict=True):
        rows.append(
            [
                u.name,
                u.sender_policy.value,
                _limit(u.monthly_limit),
                str(n),
                account_status(u, today),
            ]
        )
    for line in _table(rows):
        print(line, file=ctx.out)


async def user_show(ctx: Context, args: argparse.Namespace) -> None:
    user = await _get_user(ctx.store, args.name)
    period = month(ctx.reactor.seconds())
    used = await ctx.store.usage(user.name, period)
    record = user_record(user, used, period, _today(ctx))
    if args.json:
        json.dump(record, ctx.out, indent=2)
        print(file=ctx.out)
        return
    site = ctx.config.smsd.default_country
    lines = [
        ("name", user.name),
        ("status", record["status"]),
        ("emails", ", ".join(user.emails) or "-"),
        ("mobile", user.mobile or "-"),
        ("dedicated", ", ".join(user.dedicated) or "-"),
        ("sort words", ", ".join(user.aliases) or "-"),
        ("contacts", ", ".join(f"{n}={num}" for n, num in user.contacts) or "-"),
        ("forward", "to the mobile" if user.forward else "no"),
        ("sender policy", user.sender_policy.value),
        ("senders", ", ".join(user.senders) or "-"),
        ("monthly limit", _limit(user.monthly_limit)),
        (f"used in {period}", str(used)),
        ("expires", user.expires or "never"),
        ("active", "yes" if user.active else "no"),
        ("country", user.default_country or f"{site} (site default)"),
        ("transliterate", {None: "site default", True: "yes", False: "no"}[user.transliterate]),
        ("created", _utc(user.created_at)),
    ]
    for line in _table([[f"{k}:", v] for k, v in lines]):
        print(line, file=ctx.out)


async def queue(ctx: Context, args: argparse.Namespace) -> None:
    now = ctx.reactor.seconds()
    stats = await ctx.store.queue_stats(now, full=True)  # type: ignore[call-arg]
    oldest = stats.get("oldest_queued")
    stats["oldest_queued_age"] = None if oldest is None else round(now - oldest, 3)
    if args.json:
        json.dump(stats, ctx.out, indent=2)
        print(file=ctx.out)
        return
    for line in queue_lines(stats, now):
        print(line, file=ctx.out)


def queue_lines(stats: dict[str, Any], now: float) -> list[str]:
    states = stats.get("states", {})
    rows = [[f"{s.value}:", str(states.get(s.value, 0))] for s in State]
    oldest = stats.get("oldest_queued")
    rows += [
        ["oldest queued:", "-" if oldest is None else f"{_utc(oldest)} ({_age(now - oldest)} ago)"],
        ["due now:", str(stats.get("due", 0))],
        ["pending reports:", str(stats.get("pending_reports", 0))],
        ["inbound SMS:", str(stats.get("inbound", 0))],
    ]
    lines = _table(rows)
    gateways = stats.get("gateways", {})
    if gateways:
        lines.append("per gateway:")
        order = [s.value for s in State]
        for gateway, counts in sorted(gateways.items()):
            shown = ", ".join(
                f"{s} {counts[s]}" for s in sorted(counts, key=lambda s: _rank(order, s))
            )
            lines.append(f"  {gateway or '(none yet)'}: {shown}")
    return lines


def _rank(order: list[str], state: str) -> int:
    return order.index(state) if state in order else len(order)


async def send(ctx: Context, args: argparse.Namespace) -> None:
    """Queue through the core like any channel; the daemon's dispatcher finds it on its poll.

    Too long a text is refused rather than cut: someone at a shell can shorten it.
    """
    user = await _get_user(ctx.store, args.user) if args.user is not None else None
    submission = Submission(
        recipients=tuple(args.to),
        text=args.text,
        sender=args.sender,
        maxmsgs=args.maxmsgs,
        flash=args.flash,
        channel="admin",
        origin=PROG,
    )
    router = Router.from_config(ctx.config.routes, ctx.config.gateway_ids())
    submitter = Submitter(
        ctx.store, SubmitSettings.from_config(ctx.config), ctx.reactor, router=router
    )
    try:
        accepted = await submitter.submit(
            submission, user, maxmsgs=ctx.config.http.maxmsgs, truncate=False
        )
    except Refused as e:
        cause = f" ({e.__cause__})" if e.__cause__ is not None else ""
        raise AdminError(e.reason + cause) from None
    for a in accepted:
        print(f"OK {a.id} {a.recipient} {a.parts}", file=ctx.out)


async def inject(ctx: Context, args: argparse.Namespace) -> None:
    """Store an SMS as a gateway would hand it over: for replies in demos and tests."""
    ids = ctx.config.gateway_ids()
    gateway = args.gateway if args.gateway is not None else ids[0]
    if gateway not in ids:
        raise AdminError(f"unknown gateway {gateway!r} (configured: {', '.join(ids)})")
    country = ctx.config.smsd.default_country
    sender = check_sender(args.sender, country, "sender (--from)")
    recipient = check_number(args.to, country, "recipient (--to)")
    encoding, parts, _ = text.count(args.text)
    inbound = Inbound(
        gateway, sender, recipient, args.text, encoding=encoding.value, parts=max(parts, 1)
    )
    inbox_id = await Receiver(ctx.store, ctx.reactor).receive(inbound)
    print(inbox_id, file=ctx.out)


def check_jid(raw: str) -> str:
    """A bare JID (user@domain), as the XMPP gateway links it."""
    jid = xmpp.parse_jid(raw.strip())
    if jid is None or not jid.user or jid.resource:
        raise argparse.ArgumentTypeError(f"expected a bare JID like alice@example.org, got {raw!r}")
    return jid.userhost()


async def xmpp_link(ctx: Context, args: argparse.Namespace) -> None:
    """The JID is this user's: it sends as them, and gets their SMS unless --no-inbound."""
    now = ctx.reactor.seconds()
    await ctx.store.link_jid(args.jid, args.name, not args.no_inbound, now)
    print(f"linked {args.jid} to user {args.name}", file=ctx.out)


async def xmpp_unlink(ctx: Context, args: argparse.Namespace) -> None:
    if not await ctx.store.unlink_jid(args.jid):
        raise AdminError(f"{args.jid} is not linked")
    print(f"unlinked {args.jid}", file=ctx.out)


async def xmpp_list(ctx: Context, args: argparse.Namespace) -> None:
    links = await ctx.store.jid_links(args.user)
    if args.json:
        records = [{"jid": k.jid, "user": k.user, "inbound": k.inbound} for k in links]
        json.dump(records, ctx.out, indent=2)
        print(file=ctx.out)
        return
    rows = [["JID", "USER", "INBOUND"]]
    rows += [[k.jid, k.user, "yes" if k.inbound else "no"] for k in links]
    for line in _table(rows):
        print(line, file=ctx.out)


# -- the command line -------------------------------------------------------------------------


def _count(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {n}")
    return n


def _user_options(p: argparse.ArgumentParser, *, setting: bool) -> None:
    """The account options of ``user add`` and ``user set``; ``set`` can also clear fields."""

    def pair(option: str, clear: str | None, **kw: Any) -> None:
        group = p.add_mutually_exclusive_group() if setting and clear else p
        group.add_argument(option, **kw)
        if setting and clear:
            group.add_argument(clear, action="store_true", help=f"clear {option}")

    pair(
        "--email",
        None,
        action="append",
        required=not setting,
        metavar="E",
        help="e-mail address (repeat for more)",
    )
    pair("--mobile", "--no-mobile", metavar="M", help="the user's own mobile number")
    pair(
        "--dedicated",
        "--no-dedicated",
        action="extend",
        nargs="+",
        metavar="D",
        help="dedicated numbers: SMS to them come back to this user",
    )
    pair(
        "--alias",
        "--no-aliases",
        action="extend",
        nargs="+",
        metavar="W",
        help="sort words: an SMS that comes in starting with one is this user's",
    )
    pair(
        "--contact",
        "--no-contacts",
        action="extend",
        nargs="+",
        metavar="NAME=NUMBER",
        help="the address book (all of it): names the user may page by (SNPP)",
    )
    forward = p.add_mutually_exclusive_group()
    forward.add_argument(
        "--forward",
        dest="forward",
        action="store_const",
        const=True,
        help="SMS that come in for this user go to their --mobile too",
    )
    forward.add_argument(
        "--no-forward", dest="forward", action="store_const", const=False, help="do not forward"
    )
    p.add_argument(
        "--sender-policy",
        choices=[s.value for s in SenderPolicy],
        help="which sender IDs the user may use (default: device)",
    )
    pair(
        "--sender",
        "--no-senders",
        action="extend",
        nargs="+",
        metavar="S",
        help="allowed sender IDs for the 'fixed' policy (the first is the default)",
    )
    p.add_argument(
        "--monthly-limit", type=_count, metavar="N", help="SMS parts per month; 0: no limit"
    )
    pair("--expires", "--no-expires", metavar="YYYY-MM-DD", help="last day the account works")
    pair("--country", "--no-country", metavar="CC", help="country for national numbers")
    p.add_argument(
        "--transliterate",
        choices=["yes", "no", "site"],
        help="replace characters outside GSM 7-bit (one cheap SMS) instead of sending UCS-2;"
        " site: the site's [text] transliterate",
    )
    status = p.add_mutually_exclusive_group()
    status.add_argument(
        "--active", dest="active", action="store_const", const=True, help="enable the account"
    )
    status.add_argument(
        "--inactive", dest="active", action="store_const", const=False, help="disable the account"
    )


def _global_options(p: argparse.ArgumentParser, default: Any) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        default=default,
        help="TOML configuration (default: the embedded default)",
    )
    p.add_argument("--data-dir", metavar="DIR", default=default, help="overrides [smsd] data_dir")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, None)
    # The same options are accepted after the command; SUPPRESS keeps an absent one
    # there from hiding one given before the command.
    late = argparse.ArgumentParser(add_help=False)
    _global_options(late, argparse.SUPPRESS)

    parser = argparse.ArgumentParser(
        prog=PROG, parents=[common], description="Manage smsd users and look into its queues."
    )
    commands = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")

    def command(
        group: Any, name: str, func: Command, help: str, ask_password: bool = False
    ) -> argparse.ArgumentParser:
        p = group.add_parser(name, parents=[late], help=help, description=help)
        p.set_defaults(func=func, ask_password=ask_password)
        return p

    user = commands.add_parser("user", help="manage accounts")
    users = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")

    p = command(users, "add", user_add, "create an account", ask_password=True)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--password", metavar="P", help="without it: asked for (or read from stdin)")
    _user_options(p, setting=False)

    command(users, "list", user_list, "one line per account").add_argument(
        "--json", action="store_true"
    )
    p = command(users, "show", user_show, "every field of one account and its usage")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true")

    p = command(users, "set", user_set, "change fields of an account (each option replaces one)")
    p.add_argument("name", metavar="NAME")
    _user_options(p, setting=True)

    p = command(users, "passwd", user_passwd, "set a new password", ask_password=True)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--password", metavar="P", help="without it: asked for (or read from stdin)")

    command(users, "del", user_del, "delete an account").add_argument("name", metavar="NAME")

    command(commands, "queue", queue, "counts of the outbox and inbox").add_argument(
        "--json", action="store_true"
    )

    p = command(commands, "send", send, "queue an SMS, with the daemon's checks")
    p.add_argument("--to", action="append", required=True, metavar="N", help="repeat for more")
    p.add_argument("--from", dest="sender", metavar="S", help="sender ID")
    p.add_argument("--user", metavar="NAME", help="on behalf of this user (policy, quota)")
    p.add_argument("--maxmsgs", type=int, metavar="N", help="most SMS parts for the text")
    p.add_argument("--flash", action="store_true", help="class 0: shown, not stored")
    p.add_argument("text", metavar="TEXT")

    p = command(commands, "inject", inject, "store an SMS as if a gateway had received it")
    p.add_argument("--from", dest="sender", required=True, metavar="N")
    p.add_argument("--to", required=True, metavar="N")
    p.add_argument("--gateway", metavar="ID", help="default: the first configured gateway")
    p.add_argument("text", metavar="TEXT")

    chat = commands.add_parser("xmpp", help="JIDs linked to accounts (the XMPP gateway)")
    links = chat.add_subparsers(dest="xmpp_command", required=True, metavar="ACTION")
    p = command(links, "link", xmpp_link, "link a bare JID to an account")
    p.add_argument("name", metavar="NAME")
    p.add_argument("jid", metavar="JID", type=check_jid)
    p.add_argument(
        "--no-inbound", action="store_true", help="sends as the user, gets no SMS as chat"
    )
    p = command(links, "unlink", xmpp_unlink, "remove a JID's link")
    p.add_argument("jid", metavar="JID", type=check_jid)
    p = command(links, "list", xmpp_list, "the linked JIDs")
    p.add_argument("--user", metavar="NAME", help="only this user's")
    p.add_argument("--json", action="store_true")
    return parser


def open_configured_store(config: Config) -> Store:
    try:
        return open_store(
            config.store.url,
            config.data_dir,
            synchronous=config.store.synchronous,
            batch=config.store.batch,
        )
    except (StoreError, ValueError) as e:  # a store URL that names no store we have
        raise AdminError(f"{config.path}: store.url: {e}", code=2) from None
    except (OSError, sqlite3.Error, SchemaTooNew) as e:
        raise AdminError(f"cannot open the store: {e}") from None


def _complain(error: BaseException, code: int) -> int:
    print(f"{PROG}: {str(error).replace(chr(10), ' ')}", file=sys.stderr)
    return code


_EXPECTED = (AdminError, StoreError, sqlite3.Error)


def run(func: Command, config: Config, store: Store, args: argparse.Namespace) -> int:
    """Run one command in the reactor; the store is closed whatever happens."""
    finished = False

    async def go(reactor: Any) -> None:
        nonlocal finished
        try:
            await func(Context(config, store, reactor, sys.stdout), args)
        except _EXPECTED as e:
            code = e.code if isinstance(e, AdminError) else 1
            if isinstance(e, sqlite3.Error):
                e = AdminError(f"store error: {e}")
            raise SystemExit(_complain(e, code)) from None
        finally:
            finished = True
            await store.close()

    try:
        task.react(go)
    except SystemExit as e:
        if not finished:  # the reactor was stopped (Ctrl-C) before the command ended
            return 130
        return e.code if isinstance(e.code, int) else 1
    return 0  # not reached: react always exits


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load(args.config, args.data_dir)
    except ConfigError as e:
        return _complain(e, 2)
    try:
        if args.ask_password and args.password is None:
            args.password = read_password(sys.stdin)
        store = open_configured_store(config)
    except AdminError as e:
        return _complain(e, e.code)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    return run(args.func, config, store, args)
