# testinfra is not installed as a distribution inside this repo, so load its plugin module here.
pytest_plugins = ["testinfra.plugin"]
