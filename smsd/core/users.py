"""Accounts: password hashes, the twisted.cred checker every channel uses, a short cache.

Passwords are stored as scrypt hashes (memory-hard, in the standard
library). Checking one costs tens of milliseconds of CPU, so it runs in a
thread, and a successful check is remembered for a minute (keyed by a
salted digest of the password, never the password) so that an application
posting with Basic auth does not pay it on every request.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import os
import time
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from zope.interface import Interface, implementer

from smsd.model import User

_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return "$".join(
        [
            "scrypt",
            str(_N),
            str(_R),
            str(_P),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        ]
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=256 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


_dummy_hash: list[str] = []


def _dummy() -> str:
    """A hash checked for unknown users, so that they cost as much as known ones.

    Made on first use: smsd-admin never needs it.
    """
    if not _dummy_hash:
        _dummy_hash.append(hash_password(os.urandom(8).hex()))
    return _dummy_hash[0]


def account_problem(user: User, today: datetime.date | None = None) -> str | None:
    """Why this account may not send now, or None."""
    if not user.active:
        return "account disabled"
    if user.expires:
        today = today or datetime.datetime.now(datetime.UTC).date()
        if today > datetime.date.fromisoformat(user.expires):
            return f"account expired on {user.expires}"
    return None


class Directory:
    """Users as the channels see them: cached reads, authentication."""

    def __init__(
        self, store: Any, reactor: Any, *, ttl: float = 5.0, auth_ttl: float = 60.0
    ) -> None:
        self._store = store
        self._reactor = reactor
        self._ttl = ttl
        self._auth_ttl = auth_ttl
        self._users: dict[str, tuple[float, User | None]] = {}
        self._verified: dict[str, tuple[float, bytes]] = {}
        self._pepper = os.urandom(16)

    def get(self, name: str) -> Deferred[User | None]:
        now = time.monotonic()
        hit = self._users.get(name)
        if hit is not None and hit[0] > now:
            return succeed(hit[1])

        def remember(user: User | None) -> User | None:
            if len(self._users) > 10_000:
                self._users.clear()
            self._users[name] = (time.monotonic() + self._ttl, user)
            return user

        return self._store.get_user(name).addCallback(remember)

    def by_email(self, address: str) -> Deferred[User | None]:
        """The active user one of whose mail addresses this is (any case), or None."""
        d = self._store.user_by_email(address)
        return d.addCallback(lambda name: None if name is None else self.get(name))

    def forget(self, name: str) -> None:
        self._users.pop(name, None)
        self._verified.pop(name, None)

    def authenticate(self, name: str, password: str) -> Deferred[User]:
        """The user, or UnauthorizedLogin (unknown user and wrong password look alike)."""

        def check(user: User | None) -> Any:
            stored = user.password_hash if user is not None else _dummy()
            # The remembered check is bound to the stored hash: a changed
            # password counts as soon as the user record is read again.
            token = hashlib.sha256(
                b"\0".join((self._pepper, name.encode(), stored.encode(), password.encode()))
            ).digest()
            hit = self._verified.get(name)
            if (
                user is not None
                and hit
                and hit[0] > time.monotonic()
                and hmac.compare_digest(hit[1], token)
            ):
                return user
            pool = self._reactor.getThreadPool()
            d = deferToThreadPool(self._reactor, pool, verify_password, password, stored)
            return d.addCallback(verified, user, token)

        def verified(ok: bool, user: User | None, token: bytes) -> User:
            if not ok or user is None:
                raise UnauthorizedLogin("wrong user name or password")
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[name] = (time.monotonic() + self._auth_ttl, token)
            return user

        return self.get(name).addCallback(check)


@implementer(ICredentialsChecker)
class UserChecker:
    """twisted.cred checker over the user store: the avatar id is the user name."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes]:
        username = credentials.username
        password = credentials.password
        if isinstance(username, bytes):
            username = username.decode("utf-8", "replace")
        if isinstance(password, bytes):
            password = password.decode("utf-8", "replace")
        return self.directory.authenticate(username, password).addCallback(
            lambda user: user.name.encode()
        )


class IAccount(Interface):
    """The avatar every channel logs in for: an smsd account (smsd.model.User)."""


@implementer(IRealm)
class AccountRealm:
    """Gives the account behind an authenticated name."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def requestAvatar(self, avatar_id: Any, mind: Any, *interfaces: Any) -> Deferred[Any]:
        if IAccount not in interfaces:
            raise NotImplementedError("smsd accounts offer IAccount only")
        name = avatar_id.decode() if isinstance(avatar_id, bytes) else avatar_id

        def found(user: User | None) -> tuple[Any, User, Any]:
            if user is None:  # deleted between the check and now
                raise UnauthorizedLogin("no such user")
            return IAccount, user, lambda: None

        return self.directory.get(name).addCallback(found)


def make_portal(directory: Directory) -> Portal:
    """The twisted.cred portal every channel logs users in through."""
    return Portal(AccountRealm(directory), [UserChecker(directory)])
