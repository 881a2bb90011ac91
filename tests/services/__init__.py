"""Labrador's services as testinfra specs: one description, run in a container or as a process.

One module per service, so a test target depends only on the services it starts.
"""
