from testinfra import ServiceSpec

WEB_SERVER1 = ServiceSpec(
    name="web_server1",
    image="src/python/labrador/web_server1:image",
    command=("{python}", "-m", "labrador.web_server1.main", "--fd", "{fd}"),
    port=80,
)
