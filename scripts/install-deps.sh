#!/bin/sh
# Installs what the local provider runs: PostgreSQL 15, pg_auto_failover
# (monitor extension and pg_autoctl) and haproxy, from Debian's packages,
# prometheus-postgres-exporter for every node's metrics,
# and what the tests use besides: psql and Python's psycopg2 as clients of
# an attached app.
# Idempotent: does nothing when everything is there. Needs root (or sudo).
set -eu

packages="postgresql-15 postgresql-client-15 postgresql-15-auto-failover pg-auto-failover-cli haproxy prometheus-postgres-exporter pkg-config libssl-dev python3 python3-psycopg2"

have() {
    dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

missing=""
for p in $packages; do
    have "$p" || missing="$missing $p"
done

if [ -z "$missing" ]; then
    echo "install-deps: all present ($packages)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -n "$0" "$@"
    fi
    echo "install-deps: missing:$missing; run this script as root" >&2
    exit 1
fi

echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update
# Install the PostgreSQL packages without creating the default cluster:
# flyplan makes its own clusters and the default one would take port 5432.
mkdir -p /etc/postgresql-common/createcluster.d
if [ ! -e /etc/postgresql-common/createcluster.d/50-flyplan.conf ]; then
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/50-flyplan.conf
fi
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends $missing

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
test -x /usr/bin/prometheus-postgres-exporter
echo "install-deps: done"
