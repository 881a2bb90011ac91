#!/bin/sh
# Like the official image: arguments starting with '-' are options for redis-server, added after the
# image's configuration (e.g. `docker run labrador/redis:7 --databases 64`).
set -e
if [ "${1#-}" != "$1" ]; then
  set -- redis-server /etc/redis/labrador.conf "$@"
fi
exec "$@"
