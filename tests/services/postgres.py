"""PostgreSQL for the tests: the docker/postgres image, or the host's PostgreSQL as a process.

Either way: user, password and database "labrador", port 5432 in the container.
"""

from testinfra import LogCheck
from testinfra import ServiceSpec

USER = PASSWORD = DB = "labrador"

POSTGRES = ServiceSpec(
    name="postgres",
    image="docker/postgres:image",
    # initdb into a temporary directory (removed when postgres stops), then postgres on {port}.
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
        "--user",
        USER,
        "--password",
        PASSWORD,
        "--db",
        DB,
    ),  # fmt: skip
    port=5432,
    # The official image's variables, so an official postgres image works here too.
    env={"POSTGRES_USER": USER, "POSTGRES_PASSWORD": PASSWORD, "POSTGRES_DB": DB},
    # A stopgap until testinfra has a query check (SELECT 1 as USER in DB). This image and the
    # launcher print the line once, when the real server is ready; but the official image prints it
    # for its temporary server too, and after restart() the old line is still in the logs.
    ready=LogCheck(r"database system is ready to accept connections"),
    # initdb at start (process backend) takes a second or more on a busy machine.
    start_timeout=60.0,
)


def url(host: str, port: int, db: str = DB) -> str:
    """A connection URL for the service at `host`:`port` (e.g. a handle's host and port)."""
    return f"postgresql://{USER}:{PASSWORD}@{host}:{port}/{db}"
