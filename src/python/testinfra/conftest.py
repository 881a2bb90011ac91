pytest_plugins = ["testinfra.plugin", "pytester"]
