"""Credentials from the stations file kept in the persistent store, so rotations survive."""

import attrs

from ocpp_trio.domain.credentials import PasswordHashing, hash_password, verify_password
from ocpp_trio.security.config import parse_stations, use_persistent_credentials
from ocpp_trio.store.sqlite import open_sqlite_store

CHEAP = PasswordHashing(scrypt_log2_n=6, scrypt_r=4)

FILE = """
[[station]]
identity = "CS001"
security_profile = 1
password = "a-long-random-password-1"

[[station]]
identity = "CS002"
security_profile = 1
password = "another-random-password-2"
"""


async def test_file_stations_are_copied_and_rotated_passwords_survive(tmp_path):
    db = tmp_path / "csms.db"
    config = parse_stations(FILE, hashing=CHEAP)

    async with open_sqlite_store(db) as store:
        auth = config.authenticator()
        assert await use_persistent_credentials(auth, store.credentials) == 2
        assert auth.store is store.credentials
        record = await store.credentials.get("CS001")
        assert record is not None
        assert verify_password("a-long-random-password-1", record.password_hash or "")
        # a rotation, as rotate_password / PasswordChangeObserver would store it
        rotated = hash_password("the-rotated-password-123", hashing=CHEAP)
        await store.credentials.put(attrs.evolve(record, password_hash=rotated))

    # a restart with the same (now stale) file: the stored password wins, nothing is new
    async with open_sqlite_store(db) as store:
        auth = parse_stations(FILE, hashing=CHEAP).authenticator()
        assert await use_persistent_credentials(auth, store.credentials) == 0
        record = await store.credentials.get("CS001")
        assert record is not None
        assert verify_password("the-rotated-password-123", record.password_hash or "")
        assert not verify_password("a-long-random-password-1", record.password_hash or "")
        other = await store.credentials.get("CS002")
        assert other is not None
        assert verify_password("another-random-password-2", other.password_hash or "")
