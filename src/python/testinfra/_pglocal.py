"""Run a throwaway PostgreSQL as a local process, for the process backend.

    python -m testinfra._pglocal --port N [--data-dir DIR] [--user U] [--password P] [--db D]

initdb into DIR (when DIR is empty or missing; a DIR that already holds a cluster is started as it
is, like a restarted container), create the user's password and database, then run postgres on
127.0.0.1:N with its Unix socket in DIR and the same test settings as the docker/postgres image.
Without --data-dir, DIR is a new temporary directory, removed when postgres has stopped (but not
if the launcher is killed with SIGKILL: then `release_leftovers` and removing it are up to whoever
chose to kill it).
The launcher stays the parent of postgres:

- SIGTERM and SIGINT become a fast shutdown (SIGINT to postgres: open transactions are aborted
  instead of waited for); the launcher exits with postgres' status.
- postgres dies with the launcher: it carries the kernel's parent-death signal, set in the child
  after any change of user, because changing credentials clears it.
- As root, initdb and postgres (which refuse root) run as an unprivileged user, `postgres` by
  default (Debian's postgresql packages create it); DIR is handed over to that user. When DIR's
  parent is a private directory of ours (e.g. testinfra's 0700 `{workdir}`: pass
  `--data-dir {workdir}/data`), that user is allowed through it (search permission, not listing):
  DIR itself must stay ours to remove, so it cannot be handed over whole.

Only the standard library is used, so the file also runs on its own, with any Python 3.9+.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import NamedTuple

_PR_SET_PDEATHSIG = 1
# sun_path is 108 bytes, NUL included.
_MAX_SOCKET_PATH = 107
_PACKAGE_HINT = "install PostgreSQL's server package (Debian: apt-get install postgresql-15)"

# As in docker/postgres/postgresql.test.conf: durability traded for speed, the data dies with the test.
TEST_SETTINGS: tuple[tuple[str, str], ...] = (
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("wal_level", "minimal"),
    ("max_wal_senders", "0"),
    ("max_wal_size", "1GB"),
    ("checkpoint_timeout", "30min"),
    # CREATE DATABASE ... TEMPLATE fails or waits while anyone, autovacuum included, uses the template.
    ("autovacuum", "off"),
    ("jit", "off"),
    # Every CREATE DATABASE ... STRATEGY FILE_COPY checkpoints twice: not worth a log line each.
    ("log_checkpoints", "off"),
)


class LaunchError(Exception):
    """A problem the user can fix; printed without a traceback."""


class Binaries(NamedTuple):
    initdb: str
    postgres: str


class RunAs(NamedTuple):
    """Who runs initdb and postgres: None fields mean "as the launcher itself"."""

    name: str
    uid: int | None = None
    gid: int | None = None


def find_binaries(bin_dir: str | None = None) -> Binaries:
    """initdb and postgres from `bin_dir`, else the newest /usr/lib/postgresql/*/bin, else PATH."""
    if bin_dir is not None:
        candidates = [bin_dir]
    else:

        def major(path: str) -> int:
            version = Path(path).parent.name
            return int(version) if version.isdigit() else -1

        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major, reverse=True)
        on_path = shutil.which("initdb")
        if on_path is not None:
            candidates.append(str(Path(on_path).parent))
    for directory in candidates:
        initdb, postgres = Path(directory, "initdb"), Path(directory, "postgres")
        if os.access(initdb, os.X_OK) and os.access(postgres, os.X_OK):
            return Binaries(str(initdb), str(postgres))
    where = bin_dir or "/usr/lib/postgresql/*/bin or on PATH"
    raise LaunchError(f"PostgreSQL's initdb and postgres were not found in {where}: {_PACKAGE_HINT}")


def run_as(os_user: str) -> RunAs:
    if os.geteuid() != 0:
        return RunAs(pwd.getpwuid(os.geteuid()).pw_name)
    try:
        entry = pwd.getpwnam(os_user)
    except KeyError:
        raise LaunchError(
            f"PostgreSQL does not run as root and there is no user {os_user!r} to run it as: "
            f"{_PACKAGE_HINT} (it creates the user 'postgres'), or pass --os-user"
        ) from None
    return RunAs(os_user, entry.pw_uid, entry.pw_gid)


def _drop_privileges(who: RunAs) -> None:
    if who.uid is None or who.gid is None:
        return
    os.initgroups(who.name, who.gid)
    os.setgid(who.gid)
    os.setuid(who.uid)


def _can_use(directory: Path, who: RunAs) -> bool:
    """Whether `who` may create files in `directory` (ancestors traversable included)."""
    if who.uid is None:
        return os.access(directory, os.R_OK | os.W_OK | os.X_OK)
    pid = os.fork()
    if pid == 0:  # the child asks the kernel as that user: modes, groups and ACLs all count
        try:
            _drop_privileges(who)
            os._exit(0 if os.access(directory, os.R_OK | os.W_OK | os.X_OK) else 1)
        except BaseException:
            os._exit(2)
    return os.waitpid(pid, 0)[1] == 0


def prepare_data_dir(data_dir: Path, who: RunAs, port: int) -> bool:
    """Check and create `data_dir`; True when it already holds a cluster to start as it is."""
    socket_path = data_dir / f".s.PGSQL.{port}"
    if len(os.fsencode(socket_path)) > _MAX_SOCKET_PATH:
        raise LaunchError(
            f"the socket path {socket_path} is {len(os.fsencode(socket_path))} bytes, more than the "
            f"{_MAX_SOCKET_PATH} a Unix socket allows: use a shorter --data-dir"
        )
    if (data_dir / "PG_VERSION").is_file():
        if _postmaster_state(data_dir) == "zombie":
            # A SIGKILLed postgres nobody has reaped yet: postgres would take it for a running one.
            release_leftovers(data_dir)
        return True
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise LaunchError(f"cannot create the data directory {data_dir}: {exc.strerror}") from exc
    if any(data_dir.iterdir()):
        raise LaunchError(f"{data_dir} is neither empty nor a PostgreSQL data directory: give an empty one")
    if who.uid is not None and who.gid is not None:
        os.chown(data_dir, who.uid, who.gid)
        if not _can_use(data_dir, who):
            _let_through(data_dir.parent)
        if not _can_use(data_dir, who):
            raise LaunchError(
                f"user {who.name!r} cannot use {data_dir}: a parent directory is closed to it (e.g. a 0700 "
                "temporary directory of root's); choose a --data-dir every parent of which it may enter"
            )
    return False


def _let_through(directory: Path) -> None:
    """Give others search permission on `directory` if it is ours and closed to them."""
    try:
        info = os.lstat(directory)
    except OSError:
        return
    if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & stat.S_IXOTH:
        os.chmod(directory, stat.S_IMODE(info.st_mode) | stat.S_IXOTH)


def _process_state(pid: int) -> str:
    """'running', 'zombie' (dead, not yet reaped by whoever inherited it) or 'gone'."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return "zombie" if stat.rpartition(")")[2].split()[0] == "Z" else "running"


def _postmaster_state(data_dir: Path) -> str:
    """The state of the process named in `data_dir`'s postmaster.pid ('gone' without one)."""
    try:
        return _process_state(int((data_dir / "postmaster.pid").read_text().split()[0]))
    except (OSError, ValueError, IndexError):
        return "gone"


def release_leftovers(data_dir: Path) -> bool:
    """Remove what a postgres killed by SIGKILL left behind in `data_dir`; True if there was any.

    A postgres stopped any other way removes its lock files and its System V shared memory segment
    (a few bytes, but the kernel allows only `kernel.shmmni` of them). After SIGKILL they stay:
    postgres cleans them itself when it restarts in the same directory, unless its dead postmaster
    is still a zombie (nobody has reaped it yet), and nobody does when the directory is deleted.
    Call this before deleting a data directory. A running postgres is left alone.
    """
    pid_file = data_dir / "postmaster.pid"
    if _postmaster_state(data_dir) == "running":
        return False
    try:
        key, shmid = (int(field) for field in pid_file.read_text().splitlines()[6].split())
    except (OSError, ValueError, IndexError):
        return False  # no such file (a clean stop), or not one postgres wrote
    try:
        rows = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except OSError:
        rows = []
    for row in rows:
        fields = row.split()
        # key shmid perms size cpid lpid nattch ...: only our segment, once nobody is attached.
        if int(fields[0]) == key and int(fields[1]) == shmid and int(fields[6]) == 0:
            ipc_rmid = 0
            ctypes.CDLL(None, use_errno=True).shmctl(shmid, ipc_rmid, None)
    for lock in data_dir.glob(".s.PGSQL.*.lock"):
        lock.unlink(missing_ok=True)
    pid_file.unlink(missing_ok=True)
    return True


class Launcher:
    """Runs the children one at a time, and turns SIGTERM/SIGINT into their orderly end."""

    def __init__(self, who: RunAs) -> None:
        self._who = who
        self._child: subprocess.Popen[bytes] | None = None
        self._is_server = False
        self._parent = os.getpid()
        # Loaded now: the child calls prctl between fork and exec, where loading a library is unsafe.
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._stopping = False

    def stopping(self) -> bool:
        """Whether SIGTERM or SIGINT has come (a method: a signal handler changes it at any time)."""
        return self._stopping

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True
        self._forward_stop()

    def _forward_stop(self) -> None:
        child = self._child
        if child is not None and child.poll() is None:
            # postgres: SIGINT is its fast shutdown. initdb and single-user mode clean up on SIGTERM.
            child.send_signal(signal.SIGINT if self._is_server else signal.SIGTERM)

    def _preexec(self) -> None:
        # In the child, after Popen has changed user and group (that clears the parent-death signal).
        # SIGQUIT is postgres' immediate shutdown: it stops its backends and removes its shared memory.
        self._libc.prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT)
        if os.getppid() != self._parent:
            os._exit(1)  # the launcher died before the signal was armed

    def run(self, argv: list[str], *, stdin: bytes = b"", quiet: bool = True, server: bool = False) -> int:
        """Run `argv` to its end; `quiet` drops its stdout (its errors, on stderr, stay in the log)."""
        if self.stopping():
            return 1
        self._is_server = server
        groups = None
        if self._who.uid is not None and self._who.gid is not None:
            groups = os.getgrouplist(self._who.name, self._who.gid)  # not root's groups
        self._child = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL if quiet else None,
            user=self._who.uid,
            group=self._who.gid,
            extra_groups=groups,
            preexec_fn=self._preexec,
        )
        if self.stopping():  # a signal that came while the child was being started
            self._forward_stop()
        try:
            self._child.communicate(stdin)
        finally:
            self._child.wait()
        return self._child.returncode


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def setup_sql(user: str, password: str | None, db: str) -> str:
    """Statements for single-user mode (-j: each ends with a semicolon and a blank line)."""
    statements = []
    if password is not None:
        statements.append(f"ALTER ROLE {sql_ident(user)} PASSWORD {sql_literal(password)};")
    if db != "postgres":
        statements.append(f"CREATE DATABASE {sql_ident(db)} OWNER {sql_ident(user)};")
    return "".join(f"{statement}\n\n" for statement in statements)


def server_argv(binaries: Binaries, data_dir: Path, host: str, port: int, extra: Sequence[str]) -> list[str]:
    argv = [binaries.postgres, "-D", str(data_dir), "-p", str(port)]
    settings = [
        ("listen_addresses", host),
        ("unix_socket_directories", str(data_dir)),
        *TEST_SETTINGS,
    ]
    for name, value in settings:
        argv += ["-c", f"{name}={value}"]
    for setting in extra:
        argv += ["-c", setting]
    return argv


def _port(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range 1-65535")
    return port


def _setting(text: str) -> str:
    if not re.fullmatch(r"[a-z_.]+=.*", text, flags=re.DOTALL):
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE (e.g. max_connections=200)")
    return text


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m testinfra._pglocal", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--port", type=_port, required=True, help="TCP port, also names the socket")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="cluster directory, created or reused (default: a temporary one, removed at exit)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; '' for the Unix socket only (default: %(default)s)",
    )
    parser.add_argument("--user", default="postgres", help="superuser to create (default: %(default)s)")
    parser.add_argument(
        "--password", default=None, help="its password; TCP clients then need it (default: none, trusted)"
    )
    parser.add_argument("--db", default=None, help="database to create (default: the user's name)")
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        type=_setting,
        metavar="NAME=VALUE",
        help="an extra server setting (repeatable)",
    )
    parser.add_argument("--bin-dir", default=None, help="where initdb and postgres are (default: found)")
    parser.add_argument("--os-user", default="postgres", help="who runs postgres when started as root")
    args = parser.parse_args(argv)
    for name in ("user", "password", "db"):
        value = getattr(args, name)
        if value is not None and ("\n" in value or "\0" in value):
            parser.error(f"--{name} must not contain a newline or NUL")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.data_dir is not None:
        return launch(args, args.data_dir.absolute())
    data_dir = Path(tempfile.mkdtemp(prefix="pglocal-"))
    try:
        return launch(args, data_dir)
    finally:
        release_leftovers(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def launch(args: argparse.Namespace, data_dir: Path) -> int:
    """Prepare `data_dir`, then run postgres in it until it stops; returns the exit status."""
    db = args.db if args.db is not None else args.user
    try:
        binaries = find_binaries(args.bin_dir)
        who = run_as(args.os_user)
        existing = prepare_data_dir(data_dir, who, args.port)
    except LaunchError as exc:
        print(f"pglocal: error: {exc}", file=sys.stderr)
        return 1

    # postgres looks up its working directory at start, and the caller's may be closed to its user.
    os.chdir(data_dir)
    launcher = Launcher(who)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, launcher.on_signal)

    if existing:
        print(
            f"pglocal: {data_dir} holds a cluster: starting it as it is (--user/--password/--db unused)",
            file=sys.stderr,
        )
    else:
        auth_host = "scram-sha-256" if args.password is not None else "trust"
        initdb = [binaries.initdb, "-D", str(data_dir), "-U", args.user, "-E", "UTF8", "--locale=C"]
        initdb += ["--no-sync", "--wal-segsize=1", "--auth-local=trust", f"--auth-host={auth_host}"]
        code = launcher.run(initdb)
        if code != 0:
            print(f"pglocal: error: initdb exited with {code} (its messages are above)", file=sys.stderr)
            return code if code > 0 else 1
        sql = setup_sql(args.user, args.password, db)
        if sql:
            single = [binaries.postgres, "--single", "-j", "-D", str(data_dir)]
            single += ["-c", "exit_on_error=on", "-c", "fsync=off", "-c", "log_checkpoints=off", "postgres"]
            code = launcher.run(single, stdin=sql.encode())
            if code != 0:
                print(
                    f"pglocal: error: could not set up user {args.user!r} / database {db!r}", file=sys.stderr
                )
                return code if code > 0 else 1
    if launcher.stopping():
        return 1
    where = f"{args.host}:{args.port}" if args.host else "the Unix socket only"
    print(f"pglocal: postgres on {where}, socket in {data_dir}", file=sys.stderr)
    code = launcher.run(
        server_argv(binaries, data_dir, args.host, args.port, args.settings), quiet=False, server=True
    )
    if launcher.stopping() and code == 0:
        return 0
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
