"""PostgreSQL for tests: honest readiness, and a database per test cloned from a migrated template.

psycopg (3) is imported only when a check probes or a database is made: testinfra itself does not
need it. The scheme (the idea of pgtestdb and IntegreSQL):

- **Template.** Per server and per migration set, one database `tt_<key>`, where the key hashes
  the migrations' key (the files' names and contents, or a callable's declared key) and the
  server's version. The first process that needs it builds it under an advisory lock held in
  the server itself, which every process sharing the server sees (and which the server drops if
  the process dies): into `tb_<owner>_<key>`, migrated, marked a template closed to connections,
  then renamed into place, so a template that exists is complete. Everyone else finds it.
- **Clones.** `CREATE DATABASE tc_<owner>_<n> TEMPLATE tt_<key> STRATEGY FILE_COPY`: a file copy
  of the template, tens of milliseconds. A thread of each process makes them ahead (a bounded
  number); a test takes a ready one, and it is dropped in the background after the test.
- **Owners in names.** `<owner>` is the process (pid, start time, pid namespace, boot: see
  _owner), so no two processes ever make the same name, and a database whose owner is dead
  (SIGKILL mid-test, mid-clone) is dropped by the next sweep: when a pool starts and when it
  closes. The sweep first ends the dead owner's sessions (their application_name names the
  owner): a CREATE DATABASE still running for a dead client is rolled back, instead of landing
  after the sweep. A database kept after a failed test carries a comment that says so: no sweep
  drops it (`python -m testinfra` does not list databases: drop it by hand when done).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal
from urllib.parse import quote

from testinfra._errors import MigrationError
from testinfra._errors import SpecError
from testinfra._errors import StateError
from testinfra._errors import StateTimeoutError
from testinfra._opened import Opened
from testinfra._owner import Owner
from testinfra._readiness import Probed

if TYPE_CHECKING:
    import psycopg

Strategy = Literal["FILE_COPY", "WAL_LOG"]
_PSYCOPG_HINT = "install psycopg 3 (pip install 'psycopg[binary]') to use PostgreSQL checks and databases"
_CONNECT_TIMEOUT = 5  # seconds; libpq wants whole seconds (and treats 1 as 2)
# Sessions that end a dead owner's work wait this long for it (pg_terminate_backend, milliseconds).
_TERMINATE_WAIT_MS = 5000
_LOCK_POLL_FIRST = 0.01
_LOCK_POLL_MAX = 0.2
_APP_PREFIX = "testinfra:"
# Names: template, a template being built, a clone. NAMEDATALEN is 64.
_TEMPLATE, _BUILD, _CLONE = "tt_", "tb_", "tc_"
# Seconds before a clone pool tries again after a failure nobody was waiting for.
_RETRY_MAKE = 0.5
# Numbers the clones of every pool of this process (pools of one owner share its name tag).
_CLONE_NUMBERS = itertools.count(1)
# The comment that marks a database kept after a failed test (--testinfra-keep-on-failure).
KEPT_COMMENT = "testinfra: kept after a failed test"


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise StateError(_PSYCOPG_HINT) from exc
    return psycopg


@dataclass(frozen=True, kw_only=True)
class PostgresCheck:
    """Ready when `SELECT 1` succeeds as `user` in `dbname`: the server is up, listens, accepts the
    configured password and has the configured database (a TCP accept or a log line proves none
    of that: Docker's proxy accepts first, and the official image logs "ready" for a temporary
    server too). Database fixtures log in with the same credentials."""

    user: str = "postgres"
    password: str | None = None
    dbname: str = "postgres"

    def __post_init__(self) -> None:
        for name in ("user", "dbname"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise SpecError(f"PostgresCheck {name}={value!r} must be a non-empty string")
        if self.password is not None and not isinstance(self.password, str):
            raise SpecError(
                f"PostgresCheck password must be a string or None, not {type(self.password).__name__}"
            )

    def probe(self, target: Probed) -> bool:
        psycopg = _psycopg()
        try:
            with psycopg.connect(
                host=target.host,
                port=target.port,
                user=self.user,
                password=self.password,
                dbname=self.dbname,
                connect_timeout=2,
            ) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def __repr__(self) -> str:
        # Never the password: reprs end up in error messages and logs.
        return f"PostgresCheck(user={self.user!r}, dbname={self.dbname!r})"


@dataclass(frozen=True, kw_only=True)
class Migrations:
    """What makes a template: a directory of `.sql` files, or a callable, and the key that changes
    whenever what it applies does (a changed key means a new template).

    - ``directory``: every ``*.sql`` file in it, applied in the order of their names (``0001_x.sql``,
      ``0002_y.sql``), all in one transaction; the key is a hash of their names and contents.
    - ``apply``: called with a psycopg connection to the template being built (committed after
      it returns); give ``key`` too, e.g. a hash of the files it reads.
    """

    directory: Path | None = None
    apply: Callable[[Any], object] | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if (self.directory is None) == (self.apply is None):
            raise SpecError(
                "Migrations needs either directory= (of .sql files) or apply= (a callable), not both"
            )
        if self.directory is not None:
            object.__setattr__(self, "directory", Path(self.directory))
            if self.key is not None:
                raise SpecError("Migrations(directory=...) computes its key from the files; drop key=")
        if self.apply is not None:
            if not callable(self.apply):
                raise SpecError(f"Migrations apply={self.apply!r} is not callable")
            if not isinstance(self.key, str) or not self.key:
                raise SpecError(
                    "Migrations(apply=...) needs key=: a string that changes whenever what it applies "
                    "changes (e.g. a hash of its files), so the template is rebuilt then and only then"
                )

    def files(self) -> list[Path]:
        """The directory's migration files, in the order they apply."""
        assert self.directory is not None
        if not self.directory.is_dir():
            raise MigrationError(
                f"migrations directory {self.directory} does not exist (or is not a directory)"
            )
        return sorted(path for path in self.directory.iterdir() if path.suffix == ".sql" and path.is_file())

    def fingerprint(self) -> str:
        """The migrations' key: a hash of the files, or the callable's declared key."""
        if self.key is not None:
            return hashlib.sha256(self.key.encode()).hexdigest()
        digest = hashlib.sha256()
        for path in self.files():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()

    def run(self, conn: psycopg.Connection[Any]) -> None:
        """Apply them on `conn`; MigrationError names the file (and line) that failed."""
        psycopg = _psycopg()
        if self.apply is not None:
            what = getattr(self.apply, "__qualname__", repr(self.apply))
            try:
                self.apply(conn)
                conn.commit()
            except psycopg.Error as exc:
                raise MigrationError(f"migrations {what} failed: {_pg_message(exc)}") from exc
            except Exception as exc:  # the callable's own error (it may name its file): kept whole
                raise MigrationError(f"migrations {what} failed: {exc}") from exc
            return
        with conn.transaction():
            for path in self.files():
                sql = path.read_text(encoding="utf-8")
                try:
                    # Bytes, without parameters: sent as one simple query, so a file may hold many statements.
                    conn.execute(sql.encode())
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"migration {path.name} failed{_line(sql, exc)}: {_pg_message(exc)} ({path})"
                    ) from exc


def _pg_message(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    return str(primary or exc).strip()


def _line(sql: str, exc: BaseException) -> str:
    position = getattr(getattr(exc, "diag", None), "statement_position", None)
    if not position or not str(position).isdigit():
        return ""
    return f" at line {sql[: int(position)].count(chr(10)) + 1}"


def _owner_tag(owner: Owner) -> str:
    # Identifiers stay lowercase letters, digits and '_' (no quoting surprises in psql).
    return str(owner).replace("-", "_")


def name_owner(name: str) -> Owner | None:
    """The owner a clone or build database's name carries; None for any other name."""
    if not name.startswith((_CLONE, _BUILD)):
        return None
    parts = name[len(_CLONE) :].split("_")
    return Owner.parse("-".join(parts[:4])) if len(parts) >= 5 else None


def _conninfo(**params: object) -> str:
    """A libpq key=value string; values quoted as libpq requires."""
    items = []
    for key, value in params.items():
        if value is None:
            continue
        text = str(value)
        if not text or any(ch in text for ch in " '\\"):
            text = "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
        items.append(f"{key}={text}")
    return " ".join(items)


@dataclass(frozen=True, kw_only=True)
class Server:
    """Where a PostgreSQL server answers, and who logs in (a superuser, or a role with CREATEDB
    that may end its own sessions)."""

    name: str  # the service's name, for messages
    host: str
    port: int
    # Where other services reach it (a container's address on Docker's default network, or the same).
    peer_host: str
    peer_port: int
    user: str
    password: str | None
    admin_db: str

    def connect(self, dbname: str | None = None, *, autocommit: bool = False, **kwargs: Any) -> Any:
        psycopg = _psycopg()
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=dbname or self.admin_db,
            autocommit=autocommit,
            connect_timeout=_CONNECT_TIMEOUT,
            **kwargs,
        )

    def admin(self, owner: Owner) -> Any:
        """An autocommit session in the admin database, named for `owner` (see the sweep)."""
        return self.connect(autocommit=True, application_name=f"{_APP_PREFIX}{owner}")

    def __str__(self) -> str:
        return f"{self.name} ({self.user}@{self.host}:{self.port})"


def _ident(name: str) -> Any:
    return _psycopg().sql.Identifier(name)


def _statement(template: str, *names: str) -> Any:
    return _psycopg().sql.SQL(template).format(*(_ident(name) for name in names))


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _exists(conn: Any, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def drop_database(conn: Any, name: str) -> None:
    """Drop `name` if it exists, ending its sessions (a template is unmarked first)."""
    row = conn.execute("SELECT datistemplate FROM pg_database WHERE datname = %s", (name,)).fetchone()
    if row is None:
        return
    if row[0]:
        conn.execute(_statement("ALTER DATABASE {} IS_TEMPLATE false", name))
    conn.execute(_statement("DROP DATABASE IF EXISTS {} WITH (FORCE)", name))


def sweep(server: Server, owner: Owner) -> list[str]:
    """Drop the clones and half-built templates of dead owners, after ending their sessions;
    returns the names dropped. Owners in another pid namespace or boot are never judged dead."""
    psycopg = _psycopg()
    dropped = []
    with server.admin(owner) as conn:
        sessions = conn.execute(
            "SELECT pid, application_name FROM pg_stat_activity WHERE application_name LIKE %s",
            (f"{_APP_PREFIX}%",),
        ).fetchall()
        dead = []
        for pid, application in sessions:
            session_owner = Owner.parse(application[len(_APP_PREFIX) :])
            if session_owner is not None and not session_owner.alive:
                dead.append(pid)
        if dead:
            conn.execute(
                "SELECT pg_terminate_backend(pid, %s) FROM unnest(%s::int[]) AS pid",
                (_TERMINATE_WAIT_MS, dead),
            )
        rows = conn.execute(
            "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname ~ '^t[bc]_'"
        ).fetchall()
        for name, comment in rows:
            db_owner = name_owner(name)
            if db_owner is None or db_owner.alive or comment == KEPT_COMMENT:
                continue
            try:
                drop_database(conn, name)
                dropped.append(name)
            except psycopg.Error:
                continue  # another process's sweep got there first
    return dropped


def _advisory_key(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def _advisory_lock(conn: Any, key: int, deadline: float, what: str) -> Iterator[None]:
    """Hold a session advisory lock for the block; waits under `deadline`, never forever."""
    interval = _LOCK_POLL_FIRST
    while not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
        if time.monotonic() >= deadline:
            raise StateTimeoutError(
                f"another process has held the lock for {what} past the deadline; if it hangs, its "
                "migrations may be waiting for something (see pg_stat_activity)"
            )
        time.sleep(interval)
        interval = min(interval * 2, _LOCK_POLL_MAX)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # a broken connection drops the lock by itself
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


@dataclass(frozen=True)
class Template:
    name: str
    # Whether this call built it (False: found, built by an earlier process or run).
    built: bool
    seconds: float


def ensure_template(server: Server, migrations: Migrations, owner: Owner, timeout: float) -> Template:
    """The template for `migrations` on `server`, built if no process has built it yet."""
    start = time.monotonic()
    with server.admin(owner) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()[0]
        key = hashlib.sha256(f"{migrations.fingerprint()}\0{version}".encode()).hexdigest()[:32]
        name = f"{_TEMPLATE}{key}"
        if _exists(conn, name):
            return Template(name, False, time.monotonic() - start)
        with _advisory_lock(conn, _advisory_key(name), start + timeout, f"template {name}"):
            if _exists(conn, name):  # built while we waited
                return Template(name, False, time.monotonic() - start)
            build = f"{_BUILD}{_owner_tag(owner)}_{key[:8]}"
            drop_database(conn, build)  # our own, from an attempt that failed half-way
            conn.execute(_statement("CREATE DATABASE {} STRATEGY FILE_COPY", build))
            try:
                with server.connect(build) as target:
                    migrations.run(target)
                # Complete: closed to connections (a clone needs a template nobody is connected to),
                # marked, and only then given the name others look for.
                conn.execute(_statement("ALTER DATABASE {} IS_TEMPLATE true ALLOW_CONNECTIONS false", build))
                conn.execute(_statement("ALTER DATABASE {} RENAME TO {}", build, name))
            except BaseException:
                with contextlib.suppress(Exception):
                    drop_database(conn, build)
                raise
    return Template(name, True, time.monotonic() - start)


class ClonePool:
    """Clones of one template on one server, for this process: made ahead on a thread, handed out
    once each, dropped on another thread after use.

    At most `limit` databases of this pool exist at once (ready, in use, or being dropped); at most
    `ahead` wait ready. `take` waits for one under a deadline, never forever.
    """

    def __init__(
        self,
        server: Server,
        template: str,
        *,
        ahead: int,
        limit: int,
        strategy: Strategy = "FILE_COPY",
        owner: Owner | None = None,
    ) -> None:
        if not 0 <= ahead <= limit or limit < 1:
            raise SpecError(
                f"a clone pool needs 0 <= ahead <= limit and limit >= 1 (ahead={ahead}, limit={limit})"
            )
        if strategy not in ("FILE_COPY", "WAL_LOG"):
            raise SpecError(f"strategy {strategy!r} is not FILE_COPY or WAL_LOG")
        self.server = server
        self.template = template
        self._ahead = ahead
        self._limit = limit
        self._strategy = strategy
        self._owner = owner or Owner.me()
        self._tag = _owner_tag(self._owner)
        self._cond = threading.Condition()
        self._ready: deque[str] = deque()
        self._making = 0
        self._held = 0  # taken and not yet dropped
        self._waiting = 0
        self._failure: BaseException | None = None
        self._closed = False
        self._drops: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._drop_errors: list[BaseException] = []
        # Seconds each clone took to make (for benchmarks and reports).
        self.make_seconds: list[float] = []
        self._maker = threading.Thread(target=self._make_loop, daemon=True, name="testinfra-clones")
        self._dropper = threading.Thread(target=self._drop_loop, daemon=True, name="testinfra-drops")
        self._maker.start()
        self._dropper.start()

    def _clone_name(self) -> str:
        return f"{_CLONE}{self._tag}_{next(_CLONE_NUMBERS)}"

    def _wants_more(self) -> bool:
        coming = len(self._ready) + self._making
        if coming + self._held >= self._limit:
            return False
        return coming < self._ahead or self._waiting > coming

    def _make_loop(self) -> None:
        conn = None
        try:
            while True:
                with self._cond:
                    # (A failure not yet told to a waiting test holds the next attempt back.)
                    while not self._closed and (self._failure is not None or not self._wants_more()):
                        self._cond.wait()
                    if self._closed:
                        return
                    self._making += 1
                name = self._clone_name()
                try:
                    if conn is None:
                        conn = self.server.admin(self._owner)
                    t0 = time.perf_counter()
                    conn.execute(
                        _statement(
                            "CREATE DATABASE {} TEMPLATE {} STRATEGY " + self._strategy, name, self.template
                        )
                    )
                    self.make_seconds.append(time.perf_counter() - t0)
                except Exception as exc:
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            conn.close()
                    conn = None  # (it may be the broken part)
                    with self._cond:
                        self._making -= 1
                        # The tests waiting now fail with it; later ones try again (it may pass, as
                        # "too many clients" does). Nobody waiting: try again after a pause.
                        if self._waiting:
                            self._failure = exc
                        self._cond.notify_all()
                        self._cond.wait(_RETRY_MAKE)
                    continue
                with self._cond:
                    self._making -= 1
                    self._ready.append(name)
                    self._cond.notify_all()
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()

    def _drop_loop(self) -> None:
        conn = None
        while True:
            name = self._drops.get()
            if name is None:
                break
            try:
                if conn is None:
                    conn = self.server.admin(self._owner)
                drop_database(conn, name)
            except Exception as exc:  # raised at close; the sweep after this process ends drops it
                self._drop_errors.append(exc)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
            with self._cond:
                self._held -= 1
                self._cond.notify_all()
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def take(self, timeout: float) -> str:
        """The name of a ready, never-used clone; StateTimeoutError when none comes in `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._waiting += 1
            self._cond.notify_all()
            try:
                while not self._ready:
                    if self._failure is not None:
                        failure, self._failure = self._failure, None
                        self._cond.notify_all()
                        raise StateError(
                            f"could not make a database on {self.server}: {_pg_message(failure)}"
                        ) from failure
                    if self._closed:
                        raise StateError(f"the database pool of {self.server} is closed")
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise StateTimeoutError(
                            f"no database of {self.server} became free within {timeout:.1f}s: this process "
                            f"holds {self._held} of at most {self._limit} (limit=); a test that takes many "
                            "must release some, or raise the limit"
                        )
                    self._cond.wait(left)
                name = self._ready.popleft()
                self._held += 1
                return name
            finally:
                self._waiting -= 1
                self._cond.notify_all()

    def give_back(self, name: str, *, keep: bool = False) -> None:
        """Drop `name` in the background; or, with `keep`, mark it kept (a comment on the database,
        so its name, and every URL that names it, stays valid): no sweep drops it."""
        if not keep:
            self._drops.put(name)
            return
        try:
            with self.server.admin(self._owner) as conn:
                conn.execute(_statement("COMMENT ON DATABASE {} IS " + _quote_literal(KEPT_COMMENT), name))
        finally:
            with self._cond:
                self._held -= 1
                self._cond.notify_all()

    def close(self) -> None:
        """Stop making clones, drop the ready ones and wait for every drop; then sweep. Raises the
        first drop that failed. A server that is gone has nothing left to drop."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._maker.join()
        with self._cond:
            leftovers, self._ready = list(self._ready), deque()
            self._held += len(leftovers)
        for name in leftovers:
            self._drops.put(name)
        self._drops.put(None)
        self._dropper.join()
        if self._drop_errors:
            raise StateError(
                f"could not drop a database of {self.server}: {self._drop_errors[0]}"
            ) from self._drop_errors[0]


class Database:
    """One test's database: cloned from the template, never seen by another test.

    `url` and `dsn` reach it from the tests; `peer_url` from other services (see Server);
    `connect()` opens a psycopg connection that is closed when the test ends.
    """

    def __init__(self, name: str, server: Server) -> None:
        self.name = name
        self.server = server
        self._opened = Opened()

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def user(self) -> str:
        return self.server.user

    @property
    def password(self) -> str | None:
        return self.server.password

    def _url(self, host: str, port: int) -> str:
        auth = quote(self.user, safe="")
        if self.password is not None:
            auth += ":" + quote(self.password, safe="")
        return f"postgresql://{auth}@{host}:{port}/{quote(self.name, safe='')}"

    @property
    def url(self) -> str:
        """postgresql://user:password@host:port/name, from this machine."""
        return self._url(self.host, self.port)

    @property
    def peer_url(self) -> str:
        """The same database as another service reaches it."""
        return self._url(self.server.peer_host, self.server.peer_port)

    @property
    def dsn(self) -> str:
        """A libpq connection string (`host=... port=... dbname=...`), from this machine."""
        return _conninfo(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=self.name
        )

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A psycopg connection to this database (keyword arguments go to psycopg.connect),
        closed when the test ends."""
        return self._opened.add(self.server.connect(self.name, **kwargs))

    def close_connections(self) -> None:
        self._opened.close_all()

    def __repr__(self) -> str:
        return f"<Database {self.name} on {self.server}>"
