"""Redis for the tests: the docker/redis image, or the host's redis-server as a process.

No persistence either way; port 6379 in the container.
"""

from testinfra import LogCheck
from testinfra import ServiceSpec

REDIS = ServiceSpec(
    name="redis",
    image="docker/redis:image",
    command=(
        "redis-server",
        "--bind",
        "{host}",
        "--port",
        "{port}",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
    ),  # fmt: skip
    port=6379,
    # A stopgap until testinfra has a PING check: the line comes once per start, but after
    # restart() the old one is still in the logs.
    ready=LogCheck(r"Ready to accept connections"),
)


def url(host: str, port: int, db: int = 0) -> str:
    """A connection URL for the service at `host`:`port`, database index `db`."""
    return f"redis://{host}:{port}/{db}"
