from testinfra import ServiceSpec
from tests.services.web_server1 import WEB_SERVER1

WEB_SERVER2 = ServiceSpec(
    name="web_server2",
    image="src/python/labrador/web_server2:image",
    command=("{python}", "-m", "labrador.web_server2.main", "--fd", "{fd}"),
    args=WEB_SERVER1.args,
    host_network=True,
    depends_on=(WEB_SERVER1,),
    # Its health does not depend on web_server1 (it calls it per request): start both at once.
    wait_for_dependencies=False,
    env={
        "WEB_SERVER2_UPSTREAM_URL": "{web_server1.url}",
        # Short, so a test of an unresponsive web_server1 does not wait long for its 504.
        "WEB_SERVER2_UPSTREAM_TIMEOUT": "2",
    },
)
