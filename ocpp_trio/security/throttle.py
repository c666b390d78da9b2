"""Login flood protection for the Basic-auth check: a bounded hashing queue, failure budgets per
identity and per source address with exponential back-off, and a fast path for credentials
that already logged in.

Why: a password check is a deliberately slow hash (tens of milliseconds), so without limits a
flood of wrong passwords keeps every hashing thread busy and good stations wait behind it.
:class:`LoginThrottle` keeps the cost of a flood bounded and small:

* **Bounded hashing.** At most ``hash_concurrency`` checks hash at once and at most
  ``hash_queue`` wait for a turn, of which at most ``in_flight_per_key`` for one identity or
  one address; a request beyond that is answered ``429`` at once, without hashing.  So one
  flooding address holds a few places in the queue, not all of them.
* **Failure budgets.** Each identity and each source address may fail ``free_failures`` times;
  every further failure doubles a back-off (``base_delay`` up to ``max_delay``) during which
  their requests are answered ``429`` (with ``Retry-After``) at once, without hashing.  A
  success clears the address's and the identity's count; a quiet ``forget_after`` seconds too.
* **Known credentials.** A password that logged in before is recognised by a keyed hash
  (HMAC-SHA256 with a random key of this process, kept in memory only, valid only while the
  stored hash it matched is still current), so a returning station logs in at once, also while
  its identity or address is in back-off.  This is what keeps a good station in when a flood
  targets its own identity; a station that never logged in since the process started must wait
  out the back-off like anyone.

Behind a proxy every station has the proxy's address: set ``per_address=False`` and let the
proxy limit per client address.  The tables are bounded (``max_tracked`` entries each; the
oldest are dropped first).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from typing import Final

import attrs
import trio

__all__ = ["LoginLimits", "LoginThrottle", "source_address"]


@attrs.frozen(kw_only=True)
class LoginLimits:
    """The limits of :class:`LoginThrottle` (see the module docs).

    Attributes:
        hash_concurrency: password checks hashing at once (worker threads).
        hash_queue: checks waiting for a hashing turn; more are answered ``429`` at once.
        in_flight_per_key: checks hashing or waiting at once for one identity, and for one
            address (with ``per_address``).
        free_failures: failures allowed per identity and per address before back-off starts.
        base_delay: the first back-off, in seconds; it doubles with each further failure.
        max_delay: the longest back-off.
        forget_after: seconds without a failure after which a budget is forgotten.
        per_address: count failures per source address too (turn off behind a proxy).
        remember_logins: recognise credentials that logged in before without hashing.
        max_tracked: entries kept per table (failure budgets, known logins).
    """

    hash_concurrency: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    hash_queue: int = attrs.field(default=16, validator=attrs.validators.ge(0))
    in_flight_per_key: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    free_failures: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    base_delay: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    max_delay: float = attrs.field(default=300.0, validator=attrs.validators.gt(0))
    forget_after: float = attrs.field(default=900.0, validator=attrs.validators.gt(0))
    per_address: bool = True
    remember_logins: bool = True
    max_tracked: int = attrs.field(default=100_000, validator=attrs.validators.ge(1))


def source_address(remote: str) -> str:
    """The host part of a ``host:port`` / ``[v6]:port`` peer address."""
    if remote.startswith("["):
        return remote[1:].partition("]")[0]
    host, sep, port = remote.rpartition(":")
    return host if sep and port.isdigit() else remote


@attrs.define
class _Budget:
    failures: int = 0
    blocked_until: float = -math.inf
    last: float = 0.0


class _Budgets:
    def __init__(self, limits: LoginLimits) -> None:
        self._limits = limits
        self._table: OrderedDict[str, _Budget] = OrderedDict()

    def __len__(self) -> int:
        return len(self._table)

    def wait(self, key: str, now: float) -> float:
        """Seconds ``key`` must still wait (0: it may try)."""
        budget = self._table.get(key)
        if budget is None:
            return 0.0
        if now - budget.last > self._limits.forget_after:
            del self._table[key]
            return 0.0
        return max(0.0, budget.blocked_until - now)

    def fail(self, key: str, now: float) -> None:
        limits = self._limits
        budget = self._table.pop(key, None) or _Budget()
        if now - budget.last > limits.forget_after:
            budget = _Budget()
        budget.failures += 1
        budget.last = now
        over = budget.failures - limits.free_failures
        if over > 0:
            delay = min(limits.max_delay, limits.base_delay * 2.0 ** min(over - 1, 60))
            budget.blocked_until = max(budget.blocked_until, now + delay)
        self._table[key] = budget  # most recent last
        while len(self._table) > limits.max_tracked:
            self._table.popitem(last=False)

    def clear(self, key: str) -> None:
        self._table.pop(key, None)


class LoginThrottle:
    """The state behind :class:`LoginLimits` for one authenticator (see the module docs).

    Times are trio times (:func:`trio.current_time`), so tests may use a virtual clock.
    """

    def __init__(self, limits: LoginLimits | None = None) -> None:
        self.limits = limits or LoginLimits()
        self.limiter = trio.CapacityLimiter(self.limits.hash_concurrency)
        self._identities = _Budgets(self.limits)
        self._addresses = _Budgets(self.limits)
        self._key = secrets.token_bytes(32)
        # identity -> (keyed digest of the secret, the stored hash it matched)
        self._known: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._waiting = 0
        self._in_flight: dict[str, int] = {}

    # -- budgets -----------------------------------------------------------------------------

    def retry_after(self, identity: str, remote: str) -> float:
        """Seconds before ``identity`` from ``remote`` may be checked again (0: now)."""
        now = trio.current_time()
        wait = self._identities.wait(identity, now)
        if self.limits.per_address:
            wait = max(wait, self._addresses.wait(source_address(remote), now))
        return wait

    def failed(self, identity: str, remote: str) -> None:
        """Count a failed login of ``identity`` from ``remote``."""
        now = trio.current_time()
        self._identities.fail(identity, now)
        if self.limits.per_address:
            self._addresses.fail(source_address(remote), now)

    def succeeded(self, identity: str, remote: str, secret: bytes, encoded: str) -> None:
        """A login with ``secret`` matched the stored hash ``encoded``: clear the budgets and
        remember the credential."""
        self._identities.clear(identity)
        if self.limits.per_address:
            self._addresses.clear(source_address(remote))
        if self.limits.remember_logins:
            self._known.pop(identity, None)
            self._known[identity] = (self._digest(identity, secret), encoded)
            while len(self._known) > self.limits.max_tracked:
                self._known.popitem(last=False)

    # -- the fast path -------------------------------------------------------------------------

    def _digest(self, identity: str, secret: bytes) -> bytes:
        message = identity.encode("utf-8") + b"\0" + secret
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def known(
        self, identity: str, candidates: Iterable[bytes], hashes: Iterable[str]
    ) -> str | None:
        """The stored hash (one of ``hashes``, the record's current ones) that one of
        ``candidates`` matched at an earlier login, or ``None``.  Costs one HMAC per candidate."""
        entry = self._known.get(identity)
        if entry is None:
            return None
        digest, encoded = entry
        if encoded not in hashes:
            del self._known[identity]  # the password changed since
            return None
        for candidate in candidates:
            if hmac.compare_digest(self._digest(identity, candidate), digest):
                return encoded
        return None

    # -- the hashing queue ---------------------------------------------------------------------

    def _keys(self, identity: str, remote: str) -> tuple[str, ...]:
        if self.limits.per_address:
            return ("id:" + identity, "addr:" + source_address(remote))
        return ("id:" + identity,)

    def try_enter(self, identity: str, remote: str) -> bool:
        """Take a place in the hashing queue (``False``: it is full, or holds enough for this
        identity or address already); pair with :meth:`leave`."""
        limits = self.limits
        if self._waiting >= limits.hash_concurrency + limits.hash_queue:
            return False
        keys = self._keys(identity, remote)
        if any(self._in_flight.get(key, 0) >= limits.in_flight_per_key for key in keys):
            return False
        self._waiting += 1
        for key in keys:
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
        return True

    def leave(self, identity: str, remote: str) -> None:
        """Give back the place :meth:`try_enter` took."""
        self._waiting -= 1
        for key in self._keys(identity, remote):
            left = self._in_flight[key] - 1
            if left:
                self._in_flight[key] = left
            else:
                del self._in_flight[key]

    @property
    def tracked(self) -> tuple[int, int, int]:
        """Entries in the identity budgets, the address budgets and the known logins."""
        return len(self._identities), len(self._addresses), len(self._known)


#: seconds a 429 answer asks the client to wait at least
MIN_RETRY_AFTER: Final = 1


def retry_after_header(seconds: float) -> tuple[str, str]:
    """The ``Retry-After`` header for a back-off of ``seconds``."""
    return ("Retry-After", str(max(MIN_RETRY_AFTER, math.ceil(seconds))))
