#!/usr/bin/env bash
# Starts PostgreSQL configured from the environment, with the variables of the official image:
#   POSTGRES_PASSWORD          the superuser's password (required unless the auth method is trust)
#   POSTGRES_USER              the superuser (default postgres)
#   POSTGRES_DB                a database created for it (default: $POSTGRES_USER)
#   POSTGRES_HOST_AUTH_METHOD  pg_hba.conf method for TCP clients (default scram-sha-256)
#   POSTGRES_INITDB_ARGS       extra initdb arguments (split at spaces); the cluster is then
#                              initialised at start, as the official image does
# so a test can use this image or an official one. Arguments starting with '-' go to postgres.
#
# Unlike the official image, the cluster is initialised when the image is built (`bake`), so a
# container does not run initdb (about a second). At its first start it applies the environment in
# single-user mode (tens of milliseconds, no temporary server to start and stop), then execs postgres,
# which therefore receives the stop signal itself. POSTGRES_DB is not created then but renamed from
# a spare database baked with the cluster: copying template1 into the container's layer would take
# most of a second. An empty $PGDATA (a tmpfs, a volume: much faster for writes than the container's
# layer) gets a copy of the baked cluster, kept for that in $BAKED_CLUSTER.
set -Eeuo pipefail

TEST_CONF=/etc/postgresql/labrador-test.conf
BAKED_CLUSTER=/var/lib/postgresql/baked
# Present only in the cluster baked into the image, until a container has applied its environment.
BAKED_MARKER=labrador-baked
# A copy of template1 made at build time, which becomes POSTGRES_DB (or is dropped).
SPARE_DB=labrador_spare

log() { printf 'docker-entrypoint: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

init_cluster() {
  local superuser=$1 extra=()
  read -ra extra <<<"${POSTGRES_INITDB_ARGS:-}"
  # C collation with UTF-8: no locale data needed in the image, and byte order is predictable.
  # No fsync during initdb, and 1 MB WAL segments instead of 16: less to write, faster to copy.
  initdb --pgdata="${PGDATA}" --username="${superuser}" --encoding=UTF8 --locale=C \
    --no-sync --wal-segsize=1 --auth-local=trust --auth-host=scram-sha-256 "${extra[@]}" >/dev/null
  printf "\n# Test settings (see the file).\ninclude '%s'\n" "${TEST_CONF}" >>"${PGDATA}/postgresql.conf"
}

sql_literal() { printf "'%s'" "${1//\'/\'\'}"; }
sql_ident() { printf '"%s"' "${1//\"/\"\"}"; }

check_env() {
  : "${POSTGRES_USER:=postgres}"
  : "${POSTGRES_DB:=${POSTGRES_USER}}"
  : "${POSTGRES_PASSWORD:=}"
  : "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
  if [[ -z "${POSTGRES_PASSWORD}" && "${POSTGRES_HOST_AUTH_METHOD}" != trust ]]; then
    die "POSTGRES_PASSWORD is empty: set it (-e POSTGRES_PASSWORD=...), or set POSTGRES_HOST_AUTH_METHOD=trust to accept any client without a password"
  fi
  local name
  for name in POSTGRES_USER POSTGRES_DB POSTGRES_PASSWORD; do
    # Single-user mode reads statements separated by blank lines: a newline could end one early.
    [[ "${!name}" != *$'\n'* ]] || die "${name} must not contain a newline"
  done
  [[ "${POSTGRES_HOST_AUTH_METHOD}" =~ ^[a-z0-9-]+$ ]] ||
    die "POSTGRES_HOST_AUTH_METHOD=${POSTGRES_HOST_AUTH_METHOD} is not an authentication method (e.g. scram-sha-256, md5, trust)"
}

single_user() {
  # -j: a statement ends at a semicolon followed by a blank line; exit_on_error: any error is fatal,
  # so a bad name stops the container instead of being logged and ignored.
  printf '%s\n\n' "$@" |
    postgres --single -j -D "${PGDATA}" -c exit_on_error=on -c fsync=off -c log_checkpoints=off postgres >/dev/null
}

# Creates (or, when it is the bootstrap superuser, updates) POSTGRES_USER, creates POSTGRES_DB (from
# the spare database when `spare` is "spare") and writes pg_hba.conf. `bootstrap` is the superuser
# initdb created.
apply_env() {
  local bootstrap=$1 spare=${2:-} sql=() user db password
  user="$(sql_ident "${POSTGRES_USER}")"
  password=""
  if [[ -n "${POSTGRES_PASSWORD}" ]]; then
    password=" PASSWORD $(sql_literal "${POSTGRES_PASSWORD}")"
  fi
  if [[ "${POSTGRES_USER}" == "${bootstrap}" ]]; then
    [[ -z "${password}" ]] || sql+=("ALTER ROLE ${user}${password};")
  else
    sql+=("CREATE ROLE ${user} SUPERUSER LOGIN${password};")
  fi
  db="$(sql_ident "${POSTGRES_DB}")"
  if [[ "${spare}" == spare && "${POSTGRES_DB}" == postgres ]]; then
    sql+=("DROP DATABASE ${SPARE_DB};")
  elif [[ "${spare}" == spare ]]; then
    [[ "${POSTGRES_DB}" == "${SPARE_DB}" ]] || sql+=("ALTER DATABASE ${SPARE_DB} RENAME TO ${db};")
    sql+=("ALTER DATABASE ${db} OWNER TO ${user};")
  elif [[ "${POSTGRES_DB}" != postgres ]]; then
    sql+=("CREATE DATABASE ${db} OWNER ${user};")
  fi
  if ((${#sql[@]})); then
    single_user "${sql[@]}" || die "could not create user ${POSTGRES_USER} / database ${POSTGRES_DB} (see the errors above)"
  fi
  cat >"${PGDATA}/pg_hba.conf" <<HBA
# Written by docker-entrypoint.sh: sockets inside the container are trusted, TCP clients use
# POSTGRES_HOST_AUTH_METHOD.
local all all trust
host all all all ${POSTGRES_HOST_AUTH_METHOD}
HBA
}

wants_help() {
  local arg
  for arg; do
    case "${arg}" in -'?' | --help | --describe-config | -V | --version) return 0 ;; esac
  done
  return 1
}

main() {
  if [[ "${1:-}" == bake ]]; then
    # At image build time, as the postgres user: the cluster a container starts from.
    init_cluster postgres
    # FILE_COPY: the copy is not written to the WAL, which stays small (it is copied at start).
    single_user "CREATE DATABASE ${SPARE_DB} STRATEGY FILE_COPY;"
    touch "${PGDATA}/${BAKED_MARKER}"
    cp -a "${PGDATA}/." "${BAKED_CLUSTER}/"
    return
  fi
  if [[ "${1:-}" == -* ]]; then
    set -- postgres "$@"
  fi
  if [[ "${1:-}" == postgres ]] && ! wants_help "$@"; then
    if [[ "$(id -u)" == 0 ]]; then
      # PostgreSQL refuses to run as root. A mounted volume or tmpfs may belong to root: hand it over.
      mkdir -p "${PGDATA}"
      find "${PGDATA}" \! -user postgres -exec chown postgres:postgres '{}' +
      chmod 0700 "${PGDATA}"
      exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
    fi
    if [[ -e "${PGDATA}/${BAKED_MARKER}" && -n "${POSTGRES_INITDB_ARGS:-}" ]]; then
      # The baked cluster was made without these arguments: start from nothing, as the official image does.
      find "${PGDATA}" -mindepth 1 -delete
    fi
    if [[ ! -s "${PGDATA}/PG_VERSION" && -z "${POSTGRES_INITDB_ARGS:-}" && -s "${BAKED_CLUSTER}/PG_VERSION" ]]; then
      check_env
      cp -a "${BAKED_CLUSTER}/." "${PGDATA}/"
      apply_env postgres spare
      rm "${PGDATA}/${BAKED_MARKER}"
    elif [[ ! -s "${PGDATA}/PG_VERSION" ]]; then
      check_env
      log "initialising ${PGDATA} (POSTGRES_INITDB_ARGS=${POSTGRES_INITDB_ARGS:-})"
      init_cluster "${POSTGRES_USER}"
      apply_env "${POSTGRES_USER}"
    elif [[ -e "${PGDATA}/${BAKED_MARKER}" ]]; then
      check_env
      apply_env postgres spare
      rm "${PGDATA}/${BAKED_MARKER}"
    else
      log "${PGDATA} holds a configured cluster: starting it as it is"
    fi
  fi
  exec "$@"
}

main "$@"
