"""Redis for the tests: the docker/redis image, or the host's redis-server as a process.

No persistence either way; port 6379 in the container; 64 numbered databases, so that many
tests at once can each hold one (redis_fixture's index isolation).
"""

from testinfra import ServiceSpec
from testinfra import TcpCheck

DATABASES = "64"

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
        "--databases",
        DATABASES,
    ),  # fmt: skip
    # Options after the image's configuration (see docker/redis/docker-entrypoint.sh).
    args=("--databases", DATABASES),
    port=6379,
    # PING answered: the server serves commands (a bare accept proves nothing in Docker).
    ready=TcpCheck(send=b"PING\r\n", expect=b"+PONG\r\n"),
)


def url(host: str, port: int, db: int = 0) -> str:
    """A connection URL for the service at `host`:`port`, database index `db`."""
    return f"redis://{host}:{port}/{db}"
