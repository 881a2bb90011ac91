"""Redis for tests: a database index, or a key prefix, per test, on one shared server.

redis-py is imported only when a handle is made: testinfra itself does not need it.

- **Index** (the default): each test holds one of the server's numbered databases (1 .. N-1;
  `--databases N` raises N, 16 by default). Who holds which is a lease key in database 0,
  `testinfra:lease:<index>`, set only if absent (`SET NX`): the server decides, so two processes
  can never take one index. The index is flushed when taken and again when given back. The
  lease names its holder's owner (see _owner): a lease whose owner is dead is taken over, with a
  compare-and-set script, so a SIGKILLed process blocks nothing for long.
- **Prefix**: each test gets a key prefix no other test has (`ti:<owner>:<n>:`) in database 0;
  its keys are deleted after the test, and a sweep deletes those of dead owners. Only for code
  that prefixes every key it writes (e.g. web_server2's WEB_SERVER2_REDIS_PREFIX).
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal

from testinfra._errors import StateError
from testinfra._errors import StateTimeoutError
from testinfra._opened import Opened
from testinfra._owner import Owner

if TYPE_CHECKING:
    import redis

Isolation = Literal["index", "prefix"]
ISOLATIONS: tuple[Isolation, ...] = ("index", "prefix")
_REDIS_HINT = "install redis-py (pip install redis) to use Redis databases"
_LEASE = "testinfra:lease:"
_PREFIX = "ti:"
_DEFAULT_DATABASES = 16
_POLL_FIRST = 0.01
_POLL_MAX = 0.2
_SCAN_BATCH = 500
_TIMEOUT = 5.0
# Take a lease if it is absent, or still held by the dead holder the caller saw (ARGV[2]).
_TAKE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 1 end
if ARGV[2] ~= '' and redis.call('GET', KEYS[1]) == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
"""
# Give a lease back only if we still hold it.
_GIVE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Numbers the prefixes and holders of every allocator of this process (they share its owner).
_SERIALS = itertools.count(1)


def _redis() -> Any:
    try:
        import redis
    except ImportError as exc:
        raise StateError(_REDIS_HINT) from exc
    return redis


@dataclass(frozen=True, kw_only=True)
class RedisServer:
    name: str  # the service's name, for messages
    host: str
    port: int
    # Where other services reach it (a container's address on Docker's default network, or the same).
    peer_host: str
    peer_port: int

    def client(self, db: int = 0, **kwargs: Any) -> redis.Redis:
        redis = _redis()
        options = {"socket_timeout": _TIMEOUT, "socket_connect_timeout": _TIMEOUT, **kwargs}
        return redis.Redis(host=self.host, port=self.port, db=db, **options)  # type: ignore[no-any-return]

    def __str__(self) -> str:
        return f"{self.name} ({self.host}:{self.port})"


def _holder_owner(value: bytes | str | None) -> Owner | None:
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    return Owner.parse(text.split("/", 1)[0])


class RedisAllocator:
    """Hands out indexes or prefixes of one server to this process's tests."""

    def __init__(self, server: RedisServer, owner: Owner | None = None) -> None:
        self.server = server
        self._owner = owner or Owner.me()
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None
        self._databases: int | None = None

    def _admin(self) -> redis.Redis:
        with self._lock:
            if self._client is None:
                self._client = self.server.client()
            return self._client

    def databases(self) -> int:
        """How many numbered databases the server has (CONFIG GET databases)."""
        if self._databases is None:
            redis = _redis()
            try:
                reply: dict[str, str] = self._admin().config_get("databases")  # type: ignore[assignment]
                self._databases = int(reply.get("databases", _DEFAULT_DATABASES))
            except redis.ResponseError:  # CONFIG renamed or disabled: assume the default
                self._databases = _DEFAULT_DATABASES
        return self._databases

    def acquire(self, isolation: Isolation, timeout: float) -> RedisDatabase:
        """A database index (or a prefix) no other test holds, empty."""
        redis = _redis()
        try:
            if isolation == "prefix":
                prefix = f"{_PREFIX}{str(self._owner).replace('-', '_')}:{next(_SERIALS)}:"
                return RedisDatabase(self.server, db=0, prefix=prefix)
            index, holder = self._take_index(timeout)
            return RedisDatabase(self.server, db=index, prefix="", holder=holder)
        except redis.RedisError as exc:
            raise StateError(f"could not take a Redis database on {self.server}: {exc}") from exc

    def _take_index(self, timeout: float) -> tuple[int, str]:
        admin = self._admin()
        take = admin.register_script(_TAKE)
        holder = f"{self._owner}/{next(_SERIALS)}"
        deadline = time.monotonic() + timeout
        interval = _POLL_FIRST
        count = self.databases()
        if count < 2:
            raise StateError(
                f"{self.server} has {count} database(s); index isolation needs at least 2 (start it with "
                "--databases 16 or more), or use isolation='prefix'"
            )
        while True:
            for index in range(1, count):
                key = f"{_LEASE}{index}"
                current: bytes | None = admin.get(key)  # type: ignore[assignment]
                dead = ""
                if current is not None:
                    owner = _holder_owner(current)
                    if owner is None or owner.alive:
                        continue
                    dead = current.decode()
                if take(keys=[key], args=[holder, dead]):
                    _flush(self.server, index)
                    return index, holder
            if time.monotonic() >= deadline:
                raise StateTimeoutError(
                    f"every database of {self.server} (1-{count - 1}) stayed in use for {timeout:.1f}s: start "
                    "it with more (--databases 64), run fewer tests at once, or use isolation='prefix'"
                )
            time.sleep(interval)
            interval = min(interval * 2, _POLL_MAX)

    def release(self, database: RedisDatabase) -> None:
        """Empty what `database` held, then free it for another test."""
        redis = _redis()
        database.close_connections()
        try:
            if database.prefix:
                with self.server.client(database.db) as client:
                    _delete_matching(client, database.prefix)
                return
            _flush(self.server, database.db)
            self._admin().register_script(_GIVE)(keys=[f"{_LEASE}{database.db}"], args=[database.holder])
        except redis.RedisError as exc:
            raise StateError(f"could not empty Redis database {database.db} of {self.server}: {exc}") from exc

    def sweep(self) -> int:
        """Delete the keys under prefixes of dead owners; returns how many."""
        client = self._admin()
        found = []
        for key in client.scan_iter(match=f"{_PREFIX}*", count=_SCAN_BATCH):
            owner = Owner.parse(key.decode().split(":")[1].replace("_", "-"))
            if owner is not None and not owner.alive:
                found.append(key)
        for start in range(0, len(found), _SCAN_BATCH):
            client.unlink(*found[start : start + _SCAN_BATCH])
        return len(found)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _flush(server: RedisServer, index: int) -> None:
    with server.client(index) as client:
        client.flushdb()


def _delete_matching(client: redis.Redis, prefix: str) -> None:
    # The prefix holds no glob characters (letters, digits, '_' and ':'), so it matches itself.
    batch = []
    for key in client.scan_iter(match=f"{prefix}*", count=_SCAN_BATCH):
        batch.append(key)
        if len(batch) >= _SCAN_BATCH:
            client.unlink(*batch)
            batch = []
    if batch:
        client.unlink(*batch)


class RedisDatabase:
    """One test's Redis: a database index of its own (`db`), or a key prefix of its own (`prefix`).

    `url` reaches it from the tests (with the index), `peer_url` from other services;
    `connect()` gives a redis-py client, closed when the test ends.
    """

    def __init__(self, server: RedisServer, *, db: int, prefix: str, holder: str = "") -> None:
        self.server = server
        self.db = db
        self.prefix = prefix
        # The lease value that proves this test holds the index ("" with a prefix).
        self.holder = holder
        self._opened = Opened()

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"

    @property
    def peer_url(self) -> str:
        return f"redis://{self.server.peer_host}:{self.server.peer_port}/{self.db}"

    def key(self, name: str) -> str:
        """`name` under this test's prefix (unchanged with index isolation)."""
        return self.prefix + name

    def connect(self, **kwargs: Any) -> redis.Redis:
        """A redis-py client on this database (keyword arguments go to redis.Redis), closed when the
        test ends."""
        return self._opened.add(self.server.client(self.db, **kwargs))

    def close_connections(self) -> None:
        self._opened.close_all()

    def __repr__(self) -> str:
        what = f"prefix {self.prefix!r}" if self.prefix else f"index {self.db}"
        return f"<RedisDatabase {what} on {self.server}>"
