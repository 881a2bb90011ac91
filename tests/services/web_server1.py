from testinfra import ServiceSpec

WEB_SERVER1 = ServiceSpec(
    name="web_server1",
    image="src/python/labrador/web_server1:image",
    command=("{python}", "-m", "labrador.web_server1.main", "--fd", "{fd}"),
    # On the host's network, at a port testinfra reserves: a container starts faster without a
    # network namespace, bridge and port proxy of its own.
    args=("--host", "{host}", "--port", "{port}"),
    host_network=True,
)
