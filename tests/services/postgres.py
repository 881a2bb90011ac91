"""PostgreSQL for the tests: the docker/postgres image, or the host's PostgreSQL as a process.

Either way: user, password and database "labrador", port 5432 in the container, data in memory
(a tmpfs in the container; the instance's private directory for a process).
"""

from testinfra import PostgresCheck
from testinfra import ServiceSpec

USER = PASSWORD = DB = "labrador"

POSTGRES = ServiceSpec(
    name="postgres",
    image="docker/postgres:image",
    # initdb into the instance's private directory (removed with it), then postgres on {port}.
    # `-m` imports the testinfra package first (pytest, the Docker SDK: 0.5-0.9 s here); running
    # the file by its path skips that, but the path then differs from one sandbox to the next.
    command=(
        "{python}",
        "-m",
        "testinfra._pglocal",
        "--host",
        "{host}",
        "--port",
        "{port}",
        "--data-dir",
        "{workdir}/data",
        "--user",
        USER,
        "--password",
        PASSWORD,
        "--db",
        DB,
    ),  # fmt: skip
    port=5432,
    # Every write, CREATE DATABASE included, goes to memory: several times faster than the
    # container's layer, and gone with the container.
    tmpfs=("/var/lib/postgresql/data",),
    # The official image's variables, so an official postgres image works here too.
    env={"POSTGRES_USER": USER, "POSTGRES_PASSWORD": PASSWORD, "POSTGRES_DB": DB},
    # Ready when a query succeeds as USER in DB; the database fixtures log in the same way.
    ready=PostgresCheck(user=USER, password=PASSWORD, dbname=DB),
    # initdb at start (process backend) takes a second or more on a busy machine.
    start_timeout=60.0,
)


def url(host: str, port: int, db: str = DB) -> str:
    """A connection URL for the service at `host`:`port` (e.g. a handle's host and port)."""
    return f"postgresql://{USER}:{PASSWORD}@{host}:{port}/{db}"
