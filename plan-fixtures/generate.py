#!/usr/bin/env python3
"""Writes the inputs of the plan fixtures: each case's fly.toml, env, args
and live.json. live.json is made by applying the case's *live* config with
the file provider (`flyplan --live FILE apply`), then edited for drift.
The expected outputs are written by the test with FLYPLAN_UPDATE_FIXTURES=1.

    cargo build && python3 plan-fixtures/generate.py [CASE...]
    FLYPLAN_UPDATE_FIXTURES=1 cargo test --test plan_fixtures
"""
import json, os, shutil, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(HERE, "..", "target", "debug", "flyplan")
ENV = {"PG_PASSWORD": "fixture-secret-value-1", "APP_USER_PASSWORD": "fixture-secret-value-2"}
BENV = dict(ENV, S3_URL="https://fixtureaccess:fixture-secret-value-3@fly.storage.tigris.dev/pg-backups/pg-fixture")

def toml(instances=3, sync=1, replicas="{ ams = 1 }", image="flyio/postgres-flex:15",
         size="10gb", retention=7, scheduled="true", vm_size="shared-cpu-1x", memory="512mb",
         attachments=("myapp",), extra_attach="", users="", restore="", counts=True, params="",
         backup=""):
    # Without a size, [[mounts]] leaves initial_size out.
    size_line = f'\n  initial_size = "{size}"' if size else ""
    att = "".join(f'\n[[attachments]]\n  app = "{a}"\n' for a in attachments)
    # Without counts, [postgres] says neither instances nor read_replicas
    # (nor sync_standbys, which needs instances).
    topology = f"""
  instances = {instances}
  sync_standbys = {sync}
  read_replicas = {replicas}""" if counts else ""
    return f'''app = "pg-fixture"
primary_region = "iad"

[build]
  image = "{image}"

[postgres]{topology}
  operator_password = "PG_PASSWORD"{restore}
{params}{backup}{users}
[secrets]
  PG_PASSWORD = {{ from_env = "PG_PASSWORD" }}
  APP_USER_PASSWORD = {{ from_env = "APP_USER_PASSWORD" }}{S3_SECRET if backup else ""}

[[mounts]]
  source = "pg_data"
  destination = "/data"{size_line}
  snapshot_retention = {retention}
  scheduled_snapshots = {scheduled}

[[vm]]
  size = "{vm_size}"
  memory = "{memory}"
{att}{extra_attach}'''

S3_SECRET = '''
  S3_ARCHIVE_CONFIG = { from_env = "S3_URL" }'''

BACKUP = '''
[postgres.backup]
  secret = "S3_ARCHIVE_CONFIG"
'''

BACKUP_CHANGED = '''
[postgres.backup]
  secret = "S3_ARCHIVE_CONFIG"
  archive_timeout = "30s"
  recovery_window = "2w"
'''

def archiving_drift(data):
    find(data, "backup_policy.pg-fixture")["attrs"]["archiving"] = "archive_command is not flyplan's"

SEED = '''[services.postgres]
  image = "flyio/postgres:14"
  disable_proxy = true
  internal_port = 5432
  restart_policy = "fail"

[[services.postgres.processes]]
  name = "postgres"
  command = "bin/fly-postgres"

[[services.postgres.env]]
  PG_PORT = "5432"
  PG_USER = "fly"
  PG_PASSWORD = "$PG_PASSWORD"
  PG_DATABASE = "myapp_db"
'''

USERS = '''
[[postgres.users]]
  name = "app_user"
  login = true
  connection_limit = 20
  member_of = ["pg_read_all_data"]
  password_secret = "APP_USER_PASSWORD"

[[postgres.databases]]
  name = "analytics"
  owner = "app_user"
'''

PARAMS_RELOAD = '''
[postgres.parameters]
  work_mem = "8MB"
  statement_timeout = "30s"
'''
PARAMS_RESTART = '''  max_connections = 300
  shared_buffers = "256MB"
'''

BASE = toml()

def live_from(config_text, edit=None, env=None, name="fly.toml", case="pg-fixture"):
    """Apply config_text to an empty file live state; return the live JSON."""
    with tempfile.TemporaryDirectory() as d:
        # The app name comes from the directory in the services dialect.
        sub = os.path.join(d, case)
        os.mkdir(sub)
        cfg = os.path.join(sub, name)
        open(cfg, "w").write(config_text)
        live = os.path.join(d, "live.json")
        # BENV adds only the store URL, which a case without backups never reads.
        e = dict(os.environ, **(env or BENV))
        subprocess.run([BIN, "--live", live, "apply", "-c", cfg, "--auto-approve", "--allow-destroy"],
                       check=True, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        data = json.load(open(live))
    # The first candidate leads, as after a fresh create.
    for r in data["resources"]:
        if r["address"] == "machine[iad:0]":
            r["attrs"]["leader"] = True
    if edit:
        edit(data)
    return data

def find(data, address):
    return next(r for r in data["resources"] if r["address"] == address)

def drop(data, address):
    data["resources"] = [r for r in data["resources"] if r["address"] != address]

def set_leader(data, address):
    for r in data["resources"]:
        if r["kind"] == "machine":
            r["attrs"]["leader"] = r["address"] == address

def stopped(address):
    def f(data):
        find(data, address)["attrs"]["state"] = "stopped"
    return f

def with_user(name, absent=False):
    def f(data):
        data["resources"].append({"address": f"user.{name}", "kind": "user",
            "attrs": {"login": True, "superuser": False}})
    return f

def foreign_secret(data):
    data["resources"].append({"address": "secret.FLY_CONSUL_URL", "kind": "secret",
        "attrs": {"digest": "sha256:changed-outside-flyplan", "managed_by": "outside-flyplan"},
        "sensitive": ["digest"]})

def parameter(name, value):
    def f(data):
        data["resources"].append({"address": f"parameter.{name}", "kind": "parameter",
            "attrs": {"value": value}})
    return f

def both(*fs):
    def f(data):
        for g in fs:
            g(data)
    return f

EMPTY = {"app": "", "resources": []}
ROT = dict(ENV, PG_PASSWORD="fixture-secret-value-rotated")

CASES = {
    "01-create-from-nothing": (BASE, EMPTY),
    "02-no-op": (BASE, BASE),
    "03-add-node": (toml(instances=4), BASE),
    "04-remove-node-blocked": (toml(instances=2), BASE),
    "05-remove-node-allowed": (toml(instances=2), BASE, None, "--allow-destroy"),
    "06-add-read-replica-region": (toml(replicas="{ ams = 1, syd = 2 }"), BASE),
    "07-remove-read-replica-region": (toml(replicas="{}"), BASE, None, "--allow-destroy"),
    "08-development-to-ha": (BASE, toml(instances=1, sync=0, replicas="{}")),
    "09-sync-standbys-change": (toml(sync=2), BASE),
    "10-image-upgrade-order": (toml(image="flyio/postgres-flex:15.8"), BASE),
    "11-image-upgrade-leader-elsewhere": (toml(image="flyio/postgres-flex:15.8"), (BASE, lambda d: set_leader(d, "machine[iad:1]"))),
    "12-secret-rotation": (BASE, BASE, ROT),
    "13-attach": (toml(attachments=("myapp", "billing-worker")), BASE),
    "14-detach": (toml(attachments=()), BASE),
    "15-attachment-custom-names": (toml(extra_attach='\n[[attachments]]\n  app = "billing-worker"\n  database = "billing"\n  user = "billing_worker"\n  variable = "BILLING_DATABASE_URL"\n  superuser = false\n'), BASE),
    "16-snapshot-retention-change": (toml(retention=14), BASE),
    "17-scheduled-snapshots-off": (toml(scheduled="false"), BASE),
    "18-volume-grow": (toml(size="20gb"), BASE),
    "19-volume-shrink-refused": (toml(size="5gb"), BASE),
    "20-vm-size-change": (toml(vm_size="performance-2x", memory="4gb"), BASE),
    "21-seed-dialect-from-nothing": (SEED, EMPTY),
    "22-drift-node-missing": (BASE, (BASE, lambda d: drop(d, "machine[iad:2]"))),
    "23-drift-node-stopped": (BASE, (BASE, stopped("machine[iad:1]"))),
    "24-drift-leader-lost": (BASE, (BASE, both(stopped("machine[iad:0]"), lambda d: set_leader(d, "machine[iad:1]")))),
    "25-destroy-app-blocked": (BASE, BASE, None, "--destroy"),
    "26-destroy-app-allowed": (BASE, BASE, None, "--destroy --allow-destroy"),
    "27-declared-users-and-databases": (toml(users=USERS), BASE),
    "28-user-ensure-absent": (toml(users='\n[[postgres.users]]\n  name = "old_user"\n  ensure = "absent"\n'), (BASE, with_user("old_user"))),
    "29-undeclared-role-left-alone": (BASE, (BASE, with_user("someone_elses"))),
    "30-attachment-database-change": (toml(attachments=(), extra_attach='\n[[attachments]]\n  app = "myapp"\n  database = "myapp_v2"\n'), BASE),
    "31-development-from-nothing": (toml(instances=1, sync=0, replicas="{}", attachments=()), EMPTY),
    "32-seed-dialect-no-op": (SEED, SEED),
    "34-user-membership-change": (toml(users=USERS.replace('["pg_read_all_data"]', '["pg_read_all_data", "pg_monitor"]')), toml(users=USERS)),
    "35-secret-made-outside-flyplan-left-alone": (BASE, (BASE, foreign_secret)),
    "36-attachment-password-changed-outside": (BASE, (BASE, lambda d: find(d, "attachment.myapp")["attrs"].update(credentials="password changed outside flyplan"))),
    "37-counts-not-declared-keep-live": (toml(counts=False), BASE),
    "38-counts-not-declared-new-app": (toml(counts=False), EMPTY),
    "39-volume-size-not-declared-keep-live": (toml(size=None), BASE),
    "41-parameters-reload-only": (toml(params=PARAMS_RELOAD), (toml(params=PARAMS_RELOAD.replace('"8MB"', '"4MB"')), parameter("log_min_duration_statement", "1s"))),
    "40-parameters-restart": (toml(params=PARAMS_RELOAD + PARAMS_RESTART), (BASE, both(parameter("work_mem", "8MB"), parameter("statement_timeout", "30s"), parameter("max_connections", "100")))),
    "42-backup-added": (toml(backup=BACKUP), BASE, BENV),
    "43-backup-settings-changed": (toml(backup=BACKUP_CHANGED), toml(backup=BACKUP), BENV),
    "44-backup-removed-blocked": (BASE, toml(backup=BACKUP), BENV),
    "45-backup-archiving-drift": (toml(backup=BACKUP), (toml(backup=BACKUP), archiving_drift), BENV),
    "33-restore-from-snapshot": (toml(restore='\n  restore_from = "snap-pg-fixture-pg_data-20261120T000000Z"'), EMPTY),
}

def main():
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build")
    only = sys.argv[1:]
    for name, case in CASES.items():
        if only and name not in only:
            continue
        want, live = case[0], case[1]
        env = case[2] if len(case) > 2 and case[2] else ENV
        args = case[3] if len(case) > 3 else ""
        d = os.path.join(HERE, name)
        os.makedirs(d, exist_ok=True)
        open(os.path.join(d, "fly.toml"), "w").write(want)
        open(os.path.join(d, "env"), "w").write("".join(f"{k}={v}\n" for k, v in sorted(env.items())))
        if args:
            open(os.path.join(d, "args"), "w").write(args + "\n")
        elif os.path.exists(os.path.join(d, "args")):
            os.remove(os.path.join(d, "args"))
        if isinstance(live, dict):
            data = live
        elif isinstance(live, tuple):
            data = live_from(live[0], live[1], case=name)
        else:
            data = live_from(live, case=name)
        with open(os.path.join(d, "live.json"), "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        print("wrote", name)

main()
