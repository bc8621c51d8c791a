#!/bin/sh
# Installs what the local provider runs: PostgreSQL 15, pg_auto_failover
# (monitor extension and pg_autoctl) and haproxy, from Debian's packages,
# barman-cloud (Debian's barman-cli-cloud) for backups to an object store,
# prometheus-postgres-exporter for every node's metrics,
# and what the tests use besides: psql and Python's psycopg2 as clients of
# an attached app, pgbackrest and openssl for the backup benchmark, and
# moto's S3 server (from PyPI, in a venv at $FLYPLAN_MOTO_VENV, default
# /opt/flyplan-test/moto) as the object store.
# Idempotent: does nothing when everything is there. Needs root (or sudo).
set -eu

packages="postgresql-15 postgresql-client-15 postgresql-15-auto-failover pg-auto-failover-cli haproxy prometheus-postgres-exporter pkg-config libssl-dev python3 python3-psycopg2 python3-venv barman-cli-cloud pgbackrest openssl"
moto_venv="${FLYPLAN_MOTO_VENV:-/opt/flyplan-test/moto}"
moto_version="5.2.5"

have() {
    dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

missing=""
for p in $packages; do
    have "$p" || missing="$missing $p"
done

moto_ok() {
    "$moto_venv/bin/python" -c "import moto, flask; assert moto.__version__ == '$moto_version'" 2>/dev/null \
        && test -x "$moto_venv/bin/moto_server"
}

if [ -z "$missing" ] && moto_ok; then
    echo "install-deps: all present ($packages; moto $moto_version in $moto_venv)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -n "$0" "$@"
    fi
    echo "install-deps: missing:$missing; run this script as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if [ -n "$missing" ]; then
    echo "install-deps: installing$missing"
    apt-get update
    # Install the PostgreSQL packages without creating the default cluster:
    # flyplan makes its own clusters and the default one would take port 5432.
    mkdir -p /etc/postgresql-common/createcluster.d
    if [ ! -e /etc/postgresql-common/createcluster.d/50-flyplan.conf ]; then
        echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/50-flyplan.conf
    fi
    # shellcheck disable=SC2086
    apt-get install -y --no-install-recommends $missing
fi

# The S3-compatible server of the backup tests: a real process on loopback.
# Debian's own python3 makes the venv (not whatever python3 is first on PATH).
if ! moto_ok; then
    echo "install-deps: installing moto[server] $moto_version into $moto_venv"
    /usr/bin/python3 -m venv "$moto_venv"
    "$moto_venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$moto_version"
fi

# flyplan runs one exporter per node on ports it allocates; the package's
# own service (port 9187, the default cluster) is not wanted.
if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now prometheus-postgres-exporter >/dev/null 2>&1 || true
fi

# Servers started by flyplan as root run as the `postgres` user, which the
# packages create; check that it exists.
id postgres >/dev/null
test -x /usr/lib/postgresql/15/bin/postgres
command -v pg_autoctl >/dev/null
command -v haproxy >/dev/null || test -x /usr/sbin/haproxy
command -v barman-cloud-wal-archive >/dev/null
moto_ok
test -x /usr/bin/prometheus-postgres-exporter
echo "install-deps: done"
