"""update_station_security: a station's security settings changed together, in one write, and
never seen half-changed by a connection check running at the same time."""

from __future__ import annotations

import base64

import pytest
import trio

from ocpp_trio import (
    DuplicatePolicy,
    InMemoryCredentialStore,
    SecurityProfile,
    StationAuthenticator,
    StationCredentials,
    hash_password,
    update_station_security,
)
from ocpp_trio.domain.credentials import PasswordHashing, verify_password
from ocpp_trio.errors import IncompatibleSecuritySettings, SecuritySettingsConflict
from ocpp_trio.protocol.version import Version
from ocpp_trio.security.config import parse_stations, use_persistent_credentials
from ocpp_trio.security.throttle import LoginLimits
from ocpp_trio.transport.server import ConnectionRequest, Rejection

FAST = PasswordHashing(algorithm="pbkdf2-sha256", pbkdf2_iterations=1000)
PW_A = "first-password-of-A"
PW_B = "second-password-of-B"


class CountingStore(InMemoryCredentialStore):
    """A credential store whose every access is a checkpoint (as any real store's I/O is), and
    which counts its writes."""

    def __init__(self, records: list[StationCredentials]) -> None:
        super().__init__(records)
        self.puts = 0

    async def get(self, identity: str) -> StationCredentials | None:
        await trio.lowlevel.checkpoint()
        return await super().get(identity)

    async def put(self, credentials: StationCredentials) -> None:
        await trio.lowlevel.checkpoint()
        self.puts += 1
        await super().put(credentials)


def record(profile: int = 2, password: str = PW_A) -> StationCredentials:
    return StationCredentials(
        identity="CS1",
        security_profile=profile,
        password_hash=hash_password(password, hashing=FAST),
    )


async def test_settings_change_together_in_one_write() -> None:
    store = CountingStore([record()])
    new = await update_station_security(
        store,
        "CS1",
        security_profile=3,
        certificate_common_names=["SN-1", "SN-2"],
        certificate_organization="CPO",
        duplicate_connections="refuse",
    )
    assert store.puts == 1
    assert await store.get("CS1") == new
    assert new.security_profile is SecurityProfile.TLS_CLIENT_CERTIFICATE
    assert new.certificate_common_names == ("SN-1", "SN-2")
    assert new.duplicate_connections is DuplicatePolicy.REFUSE
    assert new.password_hash is not None  # kept: not named
    # a new password replaces the current one and settles a pending one
    pending = await update_station_security(
        store, "CS1", pending_password_hash=hash_password("pending-password-x", hashing=FAST)
    )
    assert pending.pending_password_hash is not None
    changed = await update_station_security(
        store, "CS1", security_profile=2, password=PW_B, hashing=FAST
    )
    assert changed.pending_password_hash is None
    assert changed.password_hash is not None
    assert verify_password(PW_B, changed.password_hash)
    assert store.puts == 3
    # nothing changes: nothing written
    await update_station_security(store, "CS1", security_profile=2)
    assert store.puts == 3


async def test_invalid_changes_write_nothing() -> None:
    store = CountingStore([record()])
    before = await store.get("CS1")
    with pytest.raises(ValueError, match="invalid security settings"):
        await update_station_security(store, "CS1", security_profile=5)
    with pytest.raises(ValueError, match="invalid security settings"):
        await update_station_security(store, "CS1", duplicate_connections="both")
    with pytest.raises(ValueError, match="password hash"):
        await update_station_security(store, "CS1", password_hash="not-a-hash")
    with pytest.raises(ValueError, match="not both"):
        await update_station_security(store, "CS1", password="x" * 20, password_hash=None)
    with pytest.raises(IncompatibleSecuritySettings, match="needs a password"):
        await update_station_security(store, "CS1", password_hash=None)
    with pytest.raises(ValueError, match="must not be empty"):
        await update_station_security(store, "CS1", certificate_common_names=[" "])
    with pytest.raises(LookupError):
        await update_station_security(store, "NOPE", security_profile=3)
    assert await store.get("CS1") == before
    assert store.puts == 0


async def test_create_and_compare_and_swap() -> None:
    store = CountingStore([])
    with pytest.raises(ValueError, match="security profile"):
        await update_station_security(store, "NEW", create=True)
    made = await update_station_security(store, "NEW", create=True, security_profile=3)
    assert made == StationCredentials(identity="NEW", security_profile=3)
    changed = await update_station_security(
        store, "NEW", expected=made, duplicate_connections="refuse"
    )
    # the old version no longer matches: refused, nothing written
    with pytest.raises(SecuritySettingsConflict):
        await update_station_security(store, "NEW", expected=made, certificate_organization="X")
    assert await store.get("NEW") == changed


async def test_concurrent_changes_of_different_settings_are_both_kept() -> None:
    store = CountingStore([record()])
    async with trio.open_nursery() as nursery:
        for n in range(20):
            nursery.start_soon(
                lambda n=n: update_station_security(
                    store, "CS1", certificate_common_names=[f"SN-{n}"]
                )
            )
            nursery.start_soon(
                lambda n=n: update_station_security(store, "CS1", certificate_organization=f"O-{n}")
            )
    final = await store.get("CS1")
    assert final is not None
    assert final.certificate_common_names[0].startswith("SN-")
    assert final.certificate_organization is not None
    assert store.puts == 40


def upgrade(password: str, *, remote: str) -> ConnectionRequest:
    token = base64.b64encode(f"CS1:{password}".encode()).decode()
    return ConnectionRequest(
        identity="CS1",
        path="/CS1",
        offered_versions=(Version.V201,),
        offered_subprotocols=("ocpp2.0.1",),
        headers=(("authorization", f"Basic {token}"),),
        remote=remote,
    )


async def test_a_check_racing_with_changes_sees_old_or_new_never_a_mix() -> None:
    """Settings A: profile 1 (plain WebSocket), password A, duplicates replace the old
    connection. Settings B: profile 2 (TLS required), password B, duplicates refused. A plain
    request with password B is refused under A (wrong password) and under B (no TLS): only a
    mix (A's profile with B's password) lets it in. A plain request with password A is let in
    only under A, and then with A's duplicate policy."""
    a = StationCredentials(
        identity="CS1",
        security_profile=1,
        password_hash=hash_password(PW_A, hashing=FAST),
        duplicate_connections="replace",
    )
    b = StationCredentials(
        identity="CS1",
        security_profile=2,
        password_hash=hash_password(PW_B, hashing=FAST),
        duplicate_connections="refuse",
    )
    store = CountingStore([a])
    limits = LoginLimits(
        free_failures=1_000_000, remember_logins=False, hash_queue=1000, in_flight_per_key=1000
    )
    auth = StationAuthenticator(store, limits=limits)
    outcomes: dict[str, list[int]] = {"A": [], "B": []}
    rounds = 300
    done = trio.Event()

    async def flip() -> None:
        current = a
        while not done.is_set():
            target = b if current == a else a
            current = await update_station_security(
                store,
                "CS1",
                expected=current,
                security_profile=target.security_profile,
                password_hash=target.password_hash,
                duplicate_connections=target.duplicate_connections,
            )

    async def check(password: str, kind: str, n: int) -> None:
        request = upgrade(password, remote=f"127.0.0.{n % 200 + 1}:{40000 + n}")
        answer = await auth(request)
        outcomes[kind].append(0 if answer is None else answer.status_code)
        if kind == "B":
            assert answer is not None, "let in with a mix of old and new settings"
        elif answer is None:
            assert auth.admitted_duplicate_policy(request) is DuplicatePolicy.REPLACE
        else:
            assert isinstance(answer, Rejection)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(flip)
        async with trio.open_nursery() as checks:
            for n in range(rounds):
                checks.start_soon(check, PW_B, "B", n)
                checks.start_soon(check, PW_A, "A", n)
        done.set()
    # both settings were seen: A let in sometimes, refused (B: no TLS) other times
    assert 0 in outcomes["A"]
    assert 403 in outcomes["A"]
    assert set(outcomes["B"]) <= {401, 403, 503}
    assert len(outcomes["B"]) == rounds
    assert store.puts > 10


async def test_run_time_changes_survive_a_restart_unless_the_file_changed() -> None:
    text = """
        [[station]]
        identity = "CS1"
        security_profile = 2
        password = "a-long-file-password"
        duplicate_connections = "replace"
    """
    persistent = InMemoryCredentialStore()
    auth = parse_stations(text, hashing=FAST).authenticator()
    assert await use_persistent_credentials(auth, persistent) == 1
    await update_station_security(persistent, "CS1", duplicate_connections="refuse")
    # restarted with the same file: the run-time change stays
    again = parse_stations(text, hashing=FAST).authenticator()
    assert await use_persistent_credentials(again, persistent) == 0
    kept = await persistent.get("CS1")
    assert kept is not None
    assert kept.duplicate_connections is DuplicatePolicy.REFUSE
    # the file's entry edited: the file's settings apply again, the password stays
    edited = parse_stations(
        text.replace('"replace"', '"replace"\ncertificate_organization = "O"'), hashing=FAST
    )
    assert await use_persistent_credentials(edited.authenticator(), persistent) == 0
    now = await persistent.get("CS1")
    assert now is not None
    assert now.duplicate_connections is DuplicatePolicy.REPLACE
    assert now.certificate_organization == "O"
    assert now.password_hash == kept.password_hash
