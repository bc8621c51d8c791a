//! The in-memory Fly the scripted API answers from: apps, machines with
//! leases and postgres-flex role checks, volumes that attach to machines,
//! and versioned secrets. It refuses what the API refuses (a volume in use,
//! an update without the lease's nonce, a shrink).
//!
//! Machines boot as postgres-flex does (fly-apps/postgres-flex at
//! d263c9ed9427; see [`Model::boot`]): a node without the secrets it needs
//! crash-loops, the first node to initialise becomes primary, a node that
//! boots before the cluster is initialised is a race, and the `role` check
//! reports `primary` or `replica`.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// An answer: status, JSON body, extra headers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Option<Value>,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: Some(body),
            headers: Vec::new(),
        }
    }
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            body: None,
            headers: Vec::new(),
        }
    }
    pub fn error(status: u16, message: &str) -> Reply {
        Reply::json(status, json!({ "error": message }))
    }
}

#[derive(Debug, Clone)]
pub struct MachineRec {
    /// The machine as the API shows it (`Machine`).
    pub json: Value,
    pub lease: Option<String>,
    /// Reads of this machine left before postgres-flex has booted; its
    /// checks are critical until then.
    pub boot_reads_left: u32,
    /// Why the node cannot boot (crash-looping), if it cannot.
    pub crash: Option<String>,
}

impl MachineRec {
    pub fn id(&self) -> &str {
        self.json["id"].as_str().unwrap()
    }
    pub fn state(&self) -> &str {
        self.json["state"].as_str().unwrap_or("")
    }
    pub fn region(&self) -> &str {
        self.json["region"].as_str().unwrap_or("")
    }
}

#[derive(Debug, Clone)]
pub struct SecretRec {
    pub value: String,
    pub digest: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Default)]
pub struct AppRec {
    pub name: String,
    pub org: String,
    pub role: Option<String>,
    pub machines: BTreeMap<String, MachineRec>,
    /// Volumes as the API shows them (`Volume`).
    pub volumes: BTreeMap<String, Value>,
    pub secrets: BTreeMap<String, SecretRec>,
    pub secrets_version: u64,
    /// `VolumeSnapshot`s by volume id (Fly takes them; tests add them).
    pub snapshots: BTreeMap<String, Vec<Value>>,
    /// What only the GraphQL API shows.
    pub graphql: super::graphql::GraphqlState,
    /// postgres-flex's `INITIALIZED` flag in Consul: a primary has booted.
    pub initialized: bool,
    /// Nodes that booted before the cluster was initialised.
    pub races: Vec<String>,
    /// repmgr's members: machine ids registered by booting, removed by
    /// `pg_unregister` on the primary.
    pub members: Vec<String>,
    /// Every `exec` as `(machine id, command)`.
    pub execs: Vec<(String, Vec<String>)>,
    /// Switchovers done, as `(old primary, new primary)`.
    pub switchovers: Vec<(String, String)>,
    /// postgres-flex's user configuration in Consul (raw values, as
    /// `settings/update/postgres` stores them).
    pub pg_user_config: BTreeMap<String, String>,
    /// What each node applied of it (`settings/apply`), by machine id.
    pub pg_applied: BTreeMap<String, BTreeMap<String, String>>,
    /// postgres-flex's barman settings (see [`super::barman`]).
    pub barman: super::barman::BarmanStore,
    /// The base backups `flexctl backup list` shows (see [`super::flexctl`]).
    pub backups: super::flexctl::BackupStore,
}

impl AppRec {
    pub fn live_machines(&self) -> impl Iterator<Item = &MachineRec> {
        self.machines.values().filter(|m| m.state() != "destroyed")
    }
    pub fn live_volumes(&self) -> impl Iterator<Item = &Value> {
        self.volumes.values().filter(|v| v["state"] != "destroyed")
    }
    /// The machine in `region` whose config says `flyplan-index` = `index`.
    pub fn machine_at(&self, region: &str, index: u32) -> Option<&MachineRec> {
        self.live_machines().find(|m| {
            m.region() == region
                && m.json["config"]["metadata"]["flyplan-index"]
                    .as_str()
                    .and_then(|s| s.parse::<u32>().ok())
                    == Some(index)
        })
    }
}

/// Fly, in memory.
#[derive(Debug, Default)]
pub struct Model {
    pub apps: BTreeMap<String, AppRec>,
    seq: u64,
    /// The leader's own PostgreSQL, which `psql` run through `exec`
    /// reaches (one server stands for every node's copy of the data).
    pub postgres: Option<std::sync::Arc<super::postgres::Server>>,
    /// The last request was an `exec` of `psql` that only read.
    pub last_exec_read_only: bool,
    /// Attachment records removed so far (record ids never repeat).
    pub detached_attachments: usize,
}

/// The shell line flyplan runs `psql` under through `exec` (its
/// `src/provider/fly/exec.rs`), written out here so a change to it is seen:
/// postgres-flex's own `bin/connect` form, `psql` to `127.0.0.1:5433` as
/// `postgres` with `OPERATOR_PASSWORD` from the machine's environment.
pub const PSQL_SCRIPT: &str = "PGPASSWORD=\"$OPERATOR_PASSWORD\" exec psql -h 127.0.0.1 -p 5433 \
     -U postgres -d \"$1\" -X -q -A -t -v ON_ERROR_STOP=1 -v VERBOSITY=terse \"${@:2}\"";

/// The shell line flyplan runs to learn its digest of the machine's
/// `S3_ARCHIVE_CONFIG` (its `src/provider/fly/backup.rs`), written out
/// here so a change to it is seen. Answered with the app's current value:
/// the scripted machines run with the app's latest secrets.
pub const DIGEST_SCRIPT: &str = "set -o pipefail; printf 'flyplan-secret-v1\\0%s\\0%s\\0%s' \
     \"$1\" \"$2\" \"${S3_ARCHIVE_CONFIG:?is not set}\" | sha256sum";

/// Fly's own digest of a secret value (not flyplan's).
pub fn fly_digest(value: &str) -> String {
    hex::encode(&Sha256::digest(format!("fly:{value}").as_bytes())[..8])
}

impl Model {
    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// A stamp that grows by one second per object.
    fn now(&mut self) -> String {
        let s = self.next();
        format!(
            "2024-06-01T{:02}:{:02}:{:02}Z",
            s / 3600,
            (s / 60) % 60,
            s % 60
        )
    }

    /// Ids that look random, so that sorting by id is not creation order.
    fn id(&mut self, prefix: &str, len: usize) -> String {
        let n = self.next();
        let h = hex::encode(Sha256::digest(n.to_le_bytes()));
        format!("{prefix}{}", &h[..len])
    }

    pub fn app(&self, name: &str) -> &AppRec {
        &self.apps[name]
    }

    pub fn app_mut(&mut self, name: &str) -> &mut AppRec {
        self.apps.get_mut(name).unwrap()
    }

    /// Set a secret as `fly secrets set` would (outside flyplan).
    pub fn set_secret_outside(&mut self, app: &str, name: &str, value: &str) {
        let now = self.now();
        let a = self.app_mut(app);
        a.secrets.insert(
            name.to_string(),
            SecretRec {
                value: value.to_string(),
                digest: fly_digest(value),
                created_at: now,
            },
        );
        a.secrets_version += 1;
    }

    /// Make the role check of a machine report `output` (`primary`, `replica`).
    /// `fly image update` run outside flyplan: every machine updated to
    /// `image` and restarted, the barman settings put back to postgres-flex's
    /// defaults (flyctl#4340, [`super::barman::image_updated`]).
    pub fn image_update_outside(&mut self, app: &str, image: &str) {
        let ids: Vec<String> = self
            .app(app)
            .live_machines()
            .map(|m| m.id().to_string())
            .collect();
        for id in ids {
            let instance = self.id("01J", 23).to_uppercase();
            let m = self.app_mut(app).machines.get_mut(&id).unwrap();
            m.json["config"]["image"] = json!(image);
            m.json["instance_id"] = json!(instance);
            Self::restart(m);
            // flyctl waits for each machine's checks before the next.
            for _ in 0..Self::BOOT_READS {
                self.boot(app, &id);
            }
        }
        super::barman::image_updated(&mut self.app_mut(app).barman);
    }

    pub fn set_role(&mut self, app: &str, machine_id: &str, output: &str) {
        let m = self.app_mut(app).machines.get_mut(machine_id).unwrap();
        for c in m.json["checks"].as_array_mut().unwrap() {
            if c["name"] == "role" {
                c["output"] = json!(output);
            }
        }
    }

    pub fn set_state(&mut self, app: &str, machine_id: &str, state: &str) {
        let m = self.app_mut(app).machines.get_mut(machine_id).unwrap();
        m.json["state"] = json!(state);
    }

    /// Answer a request the checker matched to `op`.
    pub fn handle(
        &mut self,
        op: &str,
        segs: &[String],
        query: &[(String, String)],
        body: Option<&Value>,
        nonce: Option<&str>,
    ) -> Reply {
        let q = |k: &str| query.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
        let app_name = segs.get(1).cloned().unwrap_or_default();
        if op == "POST /apps" {
            return self.create_app(body.unwrap());
        }
        if op == "GET /apps" {
            let org = q("org_slug").unwrap_or("");
            let apps: Vec<Value> = self
                .apps
                .values()
                .filter(|a| a.org == org)
                .map(|a| json!({"id": a.name, "name": a.name, "machine_count": a.live_machines().count()}))
                .collect();
            return Reply::json(200, json!({"apps": apps, "total_apps": apps.len()}));
        }
        if !self.apps.contains_key(&app_name) {
            return Reply::error(404, &format!("app {app_name} not found"));
        }
        let id = segs.get(3).cloned().unwrap_or_default();
        match op {
            "GET /apps/{app_name}" => {
                let a = self.app(&app_name);
                let status = if a.live_machines().next().is_some() {
                    "deployed"
                } else {
                    "pending"
                };
                let mut v = json!({"id": a.name, "name": a.name, "status": status,
                    "organization": {"name": a.org, "slug": a.org}});
                if let Some(r) = &a.role {
                    v["app_role"] = json!(r);
                }
                Reply::json(200, v)
            }
            "DELETE /apps/{app_name}" => {
                self.apps.remove(&app_name);
                Reply::empty(202)
            }
            "GET /apps/{app_name}/secrets" => {
                let list: Vec<Value> = self
                    .app(&app_name)
                    .secrets
                    .iter()
                    .map(
                        |(n, s)| json!({"name": n, "digest": s.digest, "created_at": s.created_at}),
                    )
                    .collect();
                Reply::json(200, json!({ "secrets": list }))
            }
            "POST /apps/{app_name}/secrets" => self.update_secrets(&app_name, body.unwrap()),
            "GET /apps/{app_name}/machines" => {
                let list: Vec<Value> = self
                    .app(&app_name)
                    .live_machines()
                    .map(|m| m.json.clone())
                    .collect();
                Reply::json(200, Value::Array(list))
            }
            "POST /apps/{app_name}/machines" => self.create_machine(&app_name, body.unwrap()),
            _ if op.starts_with("GET /apps/{app_name}/volumes") && segs.len() == 3 => {
                let list: Vec<Value> = self.app(&app_name).live_volumes().cloned().collect();
                Reply::json(200, Value::Array(list))
            }
            "POST /apps/{app_name}/volumes" => self.create_volume(&app_name, body.unwrap()),
            "GET /apps/{app_name}/volumes/{volume_id}/snapshots" => {
                match self.app(&app_name).volumes.get(&id) {
                    Some(_) => {
                        let list = self.app(&app_name).snapshots.get(&id).cloned();
                        Reply::json(200, Value::Array(list.unwrap_or_default()))
                    }
                    None => Reply::error(404, "volume not found"),
                }
            }
            "GET /apps/{app_name}/volumes/{volume_id}" => {
                match self.app(&app_name).volumes.get(&id) {
                    Some(v) if v["state"] != "destroyed" => Reply::json(200, v.clone()),
                    _ => Reply::error(404, "volume not found"),
                }
            }
            "POST /apps/{app_name}/volumes/{volume_id}"
            | "PUT /apps/{app_name}/volumes/{volume_id}" => {
                self.update_volume(&app_name, &id, body.unwrap())
            }
            "PUT /apps/{app_name}/volumes/{volume_id}/extend" => {
                self.extend_volume(&app_name, &id, body.unwrap())
            }
            "DELETE /apps/{app_name}/volumes/{volume_id}" => self.delete_volume(&app_name, &id),
            _ if op.starts_with("GET /apps/{app_name}/machines/{machine_id}")
                || op.starts_with("POST /apps/{app_name}/machines/{machine_id}")
                || op.starts_with("DELETE /apps/{app_name}/machines/{machine_id}") =>
            {
                if op == "GET /apps/{app_name}/machines/{machine_id}" {
                    self.boot(&app_name, &id);
                }
                if op == "POST /apps/{app_name}/machines/{machine_id}/exec" {
                    return self.exec(&app_name, &id, body.unwrap());
                }
                self.machine_op(
                    op,
                    &app_name,
                    &id,
                    segs,
                    q("state"),
                    q("instance_id"),
                    q("kill"),
                    body,
                    nonce,
                )
            }
            _ => Reply::error(501, &format!("the scripted API does not model {op}")),
        }
    }

    fn create_app(&mut self, body: &Value) -> Reply {
        let (Some(name), Some(org)) = (body["app_name"].as_str(), body["org_slug"].as_str()) else {
            return Reply::error(422, "app_name and org_slug are required");
        };
        if self.apps.contains_key(name) {
            return Reply::error(422, "Name has already been taken");
        }
        self.apps.insert(
            name.to_string(),
            AppRec {
                name: name.to_string(),
                org: org.to_string(),
                role: body["app_role_id"].as_str().map(str::to_string),
                ..Default::default()
            },
        );
        Reply::empty(201)
    }

    fn update_secrets(&mut self, app: &str, body: &Value) -> Reply {
        let now = self.now();
        let a = self.app_mut(app);
        for (name, value) in body["values"].as_object().unwrap() {
            match value.as_str() {
                Some(v) => {
                    a.secrets.insert(
                        name.clone(),
                        SecretRec {
                            value: v.to_string(),
                            digest: fly_digest(v),
                            created_at: now.clone(),
                        },
                    );
                }
                None => {
                    a.secrets.remove(name);
                }
            }
        }
        a.secrets_version += 1;
        let list: Vec<Value> = a
            .secrets
            .iter()
            .map(|(n, s)| json!({"name": n, "digest": s.digest, "created_at": s.created_at}))
            .collect();
        Reply::json(200, json!({"secrets": list, "version": a.secrets_version}))
    }

    fn create_volume(&mut self, app: &str, body: &Value) -> Reply {
        let (Some(name), Some(region), Some(size)) = (
            body["name"].as_str(),
            body["region"].as_str(),
            body["size_gb"].as_u64(),
        ) else {
            return Reply::error(422, "name, region and size_gb are required");
        };
        let retention = body["snapshot_retention"].as_u64().unwrap_or(5);
        if !(1..=60).contains(&retention) {
            return Reply::error(422, "snapshot_retention must be between 1 and 60");
        }
        let id = self.id("vol_", 16);
        let now = self.now();
        let v = json!({
            "id": id, "name": name, "state": "created", "region": region,
            "zone": "z1", "size_gb": size, "encrypted": body["encrypted"].as_bool().unwrap_or(true),
            "fstype": "ext4", "snapshot_retention": retention,
            "auto_backup_enabled": body["auto_backup_enabled"].as_bool().unwrap_or(true),
            "attached_machine_id": null, "attached_alloc_id": null, "created_at": now,
        });
        self.app_mut(app).volumes.insert(id, v.clone());
        Reply::json(200, v)
    }

    fn update_volume(&mut self, app: &str, id: &str, body: &Value) -> Reply {
        let Some(v) = self.app_mut(app).volumes.get_mut(id) else {
            return Reply::error(404, "volume not found");
        };
        if let Some(r) = body["snapshot_retention"].as_u64() {
            if !(1..=60).contains(&r) {
                return Reply::error(422, "snapshot_retention must be between 1 and 60");
            }
            v["snapshot_retention"] = json!(r);
        }
        if let Some(b) = body["auto_backup_enabled"].as_bool() {
            v["auto_backup_enabled"] = json!(b);
        }
        Reply::json(200, v.clone())
    }

    fn extend_volume(&mut self, app: &str, id: &str, body: &Value) -> Reply {
        let Some(v) = self.app_mut(app).volumes.get_mut(id) else {
            return Reply::error(404, "volume not found");
        };
        let want = body["size_gb"].as_u64().unwrap_or(0);
        if want <= v["size_gb"].as_u64().unwrap() {
            return Reply::error(422, "size_gb must be larger than the current size");
        }
        v["size_gb"] = json!(want);
        let attached = !v["attached_machine_id"].is_null();
        Reply::json(200, json!({"volume": v.clone(), "needs_restart": attached}))
    }

    fn delete_volume(&mut self, app: &str, id: &str) -> Reply {
        let Some(v) = self.app_mut(app).volumes.get_mut(id) else {
            return Reply::error(404, "volume not found");
        };
        if v["state"] == "destroyed" {
            return Reply::error(404, "volume not found");
        }
        if !v["attached_machine_id"].is_null() {
            return Reply::error(422, "volume is attached to a machine");
        }
        v["state"] = json!("destroyed");
        Reply::json(200, v.clone())
    }

    /// Reads a machine takes to boot.
    pub const BOOT_READS: u32 = 2;

    /// Why a node of `app` cannot boot, from postgres-flex's source:
    /// - `cmd/start/main.go:19-24` panics unless `SU_PASSWORD`,
    ///   `OPERATOR_PASSWORD` and `REPL_PASSWORD` are set;
    /// - `internal/flypg/state/store.go:81-117`: `Node.Init` needs
    ///   `FLY_CONSUL_URL` or `CONSUL_URL`, with a token in the userinfo
    ///   ("consul token not set") and a path (`pathPrefix` panics).
    ///
    /// With `restart: always` such a node restarts forever: `started`, its
    /// checks never passing.
    fn boot_failure(a: &AppRec) -> Option<String> {
        for n in ["SU_PASSWORD", "OPERATOR_PASSWORD", "REPL_PASSWORD"] {
            if !a.secrets.contains_key(n) {
                return Some(format!("panic: {n} is required"));
            }
        }
        let url = ["FLY_CONSUL_URL", "CONSUL_URL"]
            .iter()
            .find_map(|n| a.secrets.get(*n))
            .map(|s| s.value.clone());
        let Some(url) = url else {
            return Some("failed to initialize node: consul token not set".into());
        };
        let Ok(u) = url::Url::parse(&url) else {
            return Some("failed to initialize node: bad consul url".into());
        };
        if u.password().unwrap_or(u.username()).is_empty() {
            return Some("failed to initialize node: consul token not set".into());
        }
        if u.path().trim_matches('/').is_empty() {
            return Some("panic: consul url has no path".into());
        }
        None
    }

    /// One read of a booting machine. When its boot completes, its role is
    /// decided as postgres-flex decides it:
    /// - `internal/flypg/node.go:178-215, 355-397`: without Consul's
    ///   `INITIALIZED` flag a primary-region node provisions itself as
    ///   primary; a node outside `PRIMARY_REGION` cannot register as
    ///   primary (`node.go:366-371`) and fails;
    /// - with the flag, a node joins as a standby; outside the primary
    ///   region its repmgr priority is 0 (`internal/flypg/repmgr.go:187-189`),
    ///   so it is never promoted;
    /// - `internal/flycheck/role.go:38-63`: the role check reports
    ///   `primary` or `replica`.
    fn boot(&mut self, app: &str, id: &str) {
        let a = self.app_mut(app);
        let Some(m) = a.machines.get(id) else { return };
        if m.crash.is_some() || m.boot_reads_left == 0 || m.state() != "started" {
            return;
        }
        let left = m.boot_reads_left - 1;
        let in_primary_region =
            m.json["config"]["env"]["PRIMARY_REGION"].as_str() == Some(m.region());
        let had_role = m.json["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == "role"))
            .and_then(|c| c["output"].as_str())
            .filter(|o| *o == "primary" || *o == "replica")
            .map(str::to_string);
        let initialized = a.initialized;
        let m = a.machines.get_mut(id).unwrap();
        m.boot_reads_left = left;
        if left > 0 {
            return;
        }
        let role = match had_role {
            Some(r) => r,
            None if !initialized && in_primary_region => "primary".to_string(),
            None if !initialized => {
                m.crash = Some("cannot register as primary outside PRIMARY_REGION".into());
                return;
            }
            None => "replica".to_string(),
        };
        m.json["checks"] = Self::checks(&role);
        let first_init = role == "primary" && !a.initialized;
        if role == "primary" {
            a.initialized = true;
        }
        if !a.members.iter().any(|x| x == id) {
            a.members.push(id.to_string());
        }
        // The first primary's PostInit gives `postgres` the password
        // `OPERATOR_PASSWORD` (postgres-flex `internal/flypg/node.go:233-244`,
        // `internal/flypg/admin/admin.go:38-68`).
        let operator = a.secrets.get("OPERATOR_PASSWORD").map(|s| s.value.clone());
        if let (true, Some(server), Some(pw)) = (first_init, &self.postgres, operator) {
            server.set_operator_password(&pw);
        }
    }

    /// `exec` inside a machine, answered as fly-go decodes it:
    /// `{exit_code, stdout, stderr}`. Known commands:
    /// - `pg_unregister <base64 machine id>` (postgres-flex
    ///   `cmd/pg_unregister/main.go:17-92`): on the primary only (it runs
    ///   `repmgr ... unregister` against the local primary), removes the
    ///   member and answers `{"success": true, ...}` on stdout
    ///   (`internal/utils/response.go`).
    fn exec(&mut self, app: &str, id: &str, body: &Value) -> Reply {
        use base64::Engine as _;
        let command: Vec<String> = body["command"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(str::to_string))
            .collect();
        let a = self.app_mut(app);
        a.execs.push((id.to_string(), command.clone()));
        let Some(m) = a.machines.get(id).filter(|m| m.state() != "destroyed") else {
            return Reply::error(404, &format!("machine {id} not found"));
        };
        if m.state() != "started" {
            return Reply::error(412, "failed_precondition: machine is not started");
        }
        let is_primary =
            m.json["checks"].as_array().into_iter().flatten().any(|c| {
                c["name"] == "role" && c["output"] == "primary" && c["status"] == "passing"
            });
        let out = |code: i64, stdout: String, stderr: &str| {
            Reply::json(
                200,
                json!({"exit_code": code, "stdout": stdout, "stderr": stderr}),
            )
        };
        match command.first().map(String::as_str) {
            Some("pg_unregister") => {
                let target = command
                    .get(1)
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .and_then(|b| String::from_utf8(b).ok());
                let Some(target) = target else {
                    return out(1, String::new(), "usage: pg_unregister <base64 machine id>");
                };
                if !is_primary {
                    let msg = json!({"success": false, "message": "this node is not the primary"});
                    return out(0, msg.to_string(), "");
                }
                let before = a.members.len();
                a.members.retain(|x| *x != target);
                let msg = if a.members.len() < before {
                    json!({"success": true, "message": format!("unregistered {target}"), "data": null})
                } else {
                    json!({"success": false, "message": format!("{target} is not a member"), "data": null})
                };
                out(0, msg.to_string(), "")
            }
            Some("flexctl") => {
                let args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
                let enabled = a.secrets.contains_key("S3_ARCHIVE_CONFIG");
                let (code, stdout, stderr) =
                    super::flexctl::handle(&mut a.backups, enabled, is_primary, &args);
                self.last_exec_read_only = args.get(1) == Some(&"list");
                out(code, stdout, &stderr)
            }
            Some("curl") => {
                let id = id.to_string();
                self.admin_api(app, &id, &command)
            }
            Some("gosu") => {
                let region_ok =
                    m.json["config"]["env"]["PRIMARY_REGION"].as_str() == Some(m.region());
                let ssh = a.secrets.contains_key("SSH_KEY") && a.secrets.contains_key("SSH_CERT");
                let id = id.to_string();
                self.repmgr_switchover(app, &id, &command, region_ok, ssh)
            }
            Some("bash") if command.get(2).map(String::as_str) == Some(DIGEST_SCRIPT) => {
                self.last_exec_read_only = true;
                let a = self.app(app);
                match (
                    a.secrets.get("S3_ARCHIVE_CONFIG"),
                    command.get(4),
                    command.get(5),
                ) {
                    (Some(v), Some(app_arg), Some(name)) => {
                        let mut h = Sha256::new();
                        for part in ["flyplan-secret-v1", app_arg, name] {
                            h.update(part.as_bytes());
                            h.update(b"\0");
                        }
                        h.update(v.value.as_bytes());
                        out(0, format!("{}  -\n", hex::encode(h.finalize())), "")
                    }
                    _ => out(
                        1,
                        String::new(),
                        "digest: line 1: S3_ARCHIVE_CONFIG: is not set",
                    ),
                }
            }
            Some("bash") => {
                let stdin = body["stdin"].as_str().unwrap_or("").to_string();
                let operator = a.secrets.get("OPERATOR_PASSWORD").map(|s| s.value.clone());
                self.psql(&command, &stdin, operator, is_primary)
            }
            _ => out(127, String::new(), "command not found"),
        }
    }

    /// `curl -sS -f -X METHOD [-H 'Content-Type: application/json' -d BODY]
    /// http://localhost:5500/commands/admin/settings/...` in a machine:
    /// postgres-flex's settings API (`internal/api/handler.go`,
    /// `handle_admin.go`): `update/postgres` stores the raw values of
    /// settings PostgreSQL knows in the user configuration (Consul);
    /// `apply` makes this node take it; `view/postgres` answers, for the
    /// names asked that the configuration holds, the node's value as
    /// `pg_settings` shows it (the raw value's quotes gone). A view is a read.
    fn admin_api(&mut self, app: &str, id: &str, command: &[String]) -> Reply {
        let out = |code: i64, stdout: &str, stderr: &str| {
            Reply::json(
                200,
                json!({"exit_code": code, "stdout": stdout, "stderr": stderr}),
            )
        };
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        let (method, body, url) = match args.as_slice() {
            ["curl", "-sS", "-f", "-X", m, "-H", "Content-Type: application/json", "-d", b, u] => {
                (*m, Some(*b), *u)
            }
            ["curl", "-sS", "-f", "-X", m, u] => (*m, None, *u),
            _ => return out(2, "", &format!("unexpected command {command:?}")),
        };
        let Some(path) = url.strip_prefix("http://localhost:5500/commands/admin/settings/") else {
            return out(22, "", "curl: (22) The requested URL returned error: 404");
        };
        let body: Value = body
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        const KNOWN: [&str; 4] = [
            "synchronous_standby_names",
            "max_connections",
            "shared_buffers",
            "work_mem",
        ];
        self.last_exec_read_only = method == "GET";
        let a = self.app_mut(app);
        if path.ends_with("/barman") {
            let enabled = a.secrets.contains_key("S3_ARCHIVE_CONFIG");
            let (code, stdout, stderr) =
                super::barman::handle(&mut a.barman, enabled, method, path, &body);
            return out(code, &stdout, &stderr);
        }
        match (method, path) {
            ("GET", "view/postgres") => {
                let names: Vec<&str> = body
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let applied = a.pg_applied.get(id).cloned().unwrap_or_default();
                let settings: Vec<Value> = applied
                    .iter()
                    .filter(|(k, _)| names.contains(&k.as_str()))
                    .map(|(k, v)| json!({"name": k, "setting": v.trim_matches('\'')}))
                    .collect();
                out(
                    0,
                    &json!({"result": {"settings": settings}}).to_string(),
                    "",
                )
            }
            ("POST", "update/postgres") => {
                let Some(map) = body.as_object() else {
                    return out(22, "", "curl: (22) The requested URL returned error: 500");
                };
                for (k, v) in map {
                    if !KNOWN.contains(&k.as_str()) {
                        return out(22, "", "curl: (22) The requested URL returned error: 500");
                    }
                    a.pg_user_config
                        .insert(k.clone(), v.as_str().unwrap_or_default().to_string());
                }
                let msg = json!({"result": {"message": "Updated", "restart_required": false}});
                out(0, &msg.to_string(), "")
            }
            ("POST", "apply") => {
                let config = a.pg_user_config.clone();
                a.pg_applied.insert(id.to_string(), config);
                out(0, "", "")
            }
            _ => out(22, "", "curl: (22) The requested URL returned error: 405"),
        }
    }

    /// `gosu postgres repmgr standby switchover -f /data/repmgr.conf
    /// (--dry-run | --siblings-follow)` on a standby. From repmgr's
    /// documentation and postgres-flex: repmgr refuses to run as root
    /// (postgres-flex runs it with `gosu postgres`, `cmd/start/main.go:102`);
    /// a switchover reaches the primary over SSH, set up from `SSH_KEY` and
    /// `SSH_CERT` (`internal/flypg/ssh.go:15-103`); a node outside
    /// `PRIMARY_REGION` has priority 0 (`internal/flypg/repmgr.go:187-189`)
    /// and is no candidate. The real switchover swaps the two nodes' roles
    /// and is recorded in [`AppRec::switchovers`].
    fn repmgr_switchover(
        &mut self,
        app: &str,
        id: &str,
        command: &[String],
        in_primary_region: bool,
        ssh: bool,
    ) -> Reply {
        let out = |code: i64, stdout: &str, stderr: &str| {
            Reply::json(
                200,
                json!({"exit_code": code, "stdout": stdout, "stderr": stderr}),
            )
        };
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        let mode = match args.as_slice() {
            ["gosu", "postgres", "repmgr", "standby", "switchover", "-f", "/data/repmgr.conf", m] => {
                *m
            }
            _ => return out(1, "", &format!("unexpected command {command:?}")),
        };
        if mode != "--dry-run" && mode != "--siblings-follow" {
            return out(1, "", &format!("unexpected option {mode}"));
        }
        let a = self.app_mut(app);
        let role_of = |m: &MachineRec| {
            m.json["checks"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["name"] == "role"))
                .and_then(|c| c["output"].as_str())
                .unwrap_or("")
                .to_string()
        };
        if role_of(&a.machines[id]) != "replica" {
            return out(1, "", "ERROR: this node is not a standby");
        }
        if !in_primary_region {
            return out(
                1,
                "",
                "ERROR: this node has priority 0 and cannot be promoted",
            );
        }
        let Some(primary) = a
            .live_machines()
            .find(|m| role_of(m) == "primary" && m.state() == "started")
            .map(|m| m.id().to_string())
        else {
            return out(1, "", "ERROR: unable to find the current primary");
        };
        if !ssh {
            return out(
                1,
                "",
                "ERROR: unable to connect via SSH to host of the primary",
            );
        }
        if mode == "--dry-run" {
            return out(
                0,
                "INFO: prerequisites for executing STANDBY SWITCHOVER are met\n",
                "",
            );
        }
        for (m, role) in [(id, "primary"), (primary.as_str(), "replica")] {
            let m = a.machines.get_mut(m).unwrap();
            m.json["checks"][1]["output"] = json!(role);
        }
        a.switchovers.push((primary, id.to_string()));
        out(
            0,
            "NOTICE: STANDBY SWITCHOVER has completed successfully\n",
            "",
        )
    }

    /// `bash -c PSQL_SCRIPT psql DB [-1] -f -` in a machine: the real `psql`
    /// run against the loopback server with the machine's
    /// `OPERATOR_PASSWORD`; on a node that is not the primary every
    /// transaction is read-only, as on a repmgr standby.
    ///
    /// A script that is one `select` outside `-1` counts as a read: it is
    /// run in a read-only transaction, so PostgreSQL itself refuses it if
    /// it writes, and the request is recorded as a read.
    fn psql(
        &mut self,
        command: &[String],
        stdin: &str,
        operator: Option<String>,
        is_primary: bool,
    ) -> Reply {
        let out = |code: i64, stdout: &str, stderr: &str| {
            Reply::json(
                200,
                json!({"exit_code": code, "stdout": stdout, "stderr": stderr}),
            )
        };
        let rest = command.get(5..).unwrap_or_default();
        let args_ok = matches!(
            rest.iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .as_slice(),
            ["-f", "-"] | ["-1", "-f", "-"]
        );
        if command.get(1).map(String::as_str) != Some("-c")
            || command.get(2).map(String::as_str) != Some(PSQL_SCRIPT)
            || command.get(3).map(String::as_str) != Some("psql")
            || command.get(4).is_none()
            || !args_ok
        {
            return out(2, "", &format!("unexpected command {command:?}"));
        }
        let read_only = rest.len() == 2
            && stdin
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("select ");
        self.last_exec_read_only = read_only;
        let Some(server) = &self.postgres else {
            return out(2, "", "psql: error: connection to server at \"127.0.0.1\", port 5433 failed: Connection refused");
        };
        let Some(operator) = operator else {
            return out(2, "", "psql: error: fe_sendauth: no password supplied");
        };
        let mut args = vec!["-d".to_string(), command[4].clone()];
        args.extend(
            [
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-v",
                "VERBOSITY=terse",
            ]
            .map(str::to_string),
        );
        args.extend(rest.iter().cloned());
        let run = server.psql(&operator, &args, stdin, read_only || !is_primary);
        out(run.exit_code, &run.stdout, &run.stderr)
    }

    /// A restarted node boots again and keeps its role.
    fn restart(m: &mut MachineRec) {
        let role = m.json["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == "role"))
            .and_then(|c| c["output"].as_str())
            .unwrap_or("")
            .to_string();
        m.json["checks"] = Self::booting_checks();
        if role == "primary" || role == "replica" {
            m.json["checks"][1]["output"] = json!(role);
        }
        m.boot_reads_left = Self::BOOT_READS;
    }

    /// Checks of a node still booting or crash-looping.
    fn booting_checks() -> Value {
        json!([
            {"name": "pg", "status": "critical", "output": "booting", "updated_at": "2024-06-01T00:00:00Z"},
            {"name": "role", "status": "critical", "output": "booting", "updated_at": "2024-06-01T00:00:00Z"},
            {"name": "vm", "status": "critical", "output": "booting", "updated_at": "2024-06-01T00:00:00Z"},
        ])
    }

    /// The checks of a booted node, as postgres-flex reports them.
    fn checks(role: &str) -> Value {
        super::flycheck::passing(role)
    }

    fn create_machine(&mut self, app: &str, body: &Value) -> Reply {
        let config = body["config"].clone();
        let Some(region) = body["region"].as_str().map(str::to_string) else {
            return Reply::error(422, "region is required");
        };
        if config["image"].as_str().unwrap_or("").is_empty() {
            return Reply::error(422, "config.image is required");
        }
        let a = self.app(app);
        if let Some(v) = body["min_secrets_version"].as_u64() {
            if v > a.secrets_version {
                return Reply::error(422, &format!("secrets version {v} does not exist yet"));
            }
        }
        let mut mounted = Vec::new();
        for m in config["mounts"].as_array().into_iter().flatten() {
            let vid = m["volume"].as_str().unwrap_or("");
            match a.volumes.get(vid) {
                Some(v) if v["state"] != "destroyed" => {
                    if !v["attached_machine_id"].is_null() {
                        return Reply::error(422, &format!("volume {vid} is already attached"));
                    }
                    if v["region"] != region.as_str() {
                        return Reply::error(422, &format!("volume {vid} is in another region"));
                    }
                    mounted.push(vid.to_string());
                }
                _ => return Reply::error(422, &format!("volume {vid} not found")),
            }
        }
        let crash = Self::boot_failure(a);
        // A node that boots while another is still provisioning the first
        // primary (no INITIALIZED flag yet) takes the "Provisioning primary"
        // path too (postgres-flex internal/flypg/node.go:178-215).
        let booting: Vec<String> = a
            .live_machines()
            .filter(|m| m.crash.is_none() && m.boot_reads_left > 0)
            .map(|m| m.id().to_string())
            .collect();
        let raced = crash.is_none() && !a.initialized && !booting.is_empty();
        let id = self.id("", 14);
        let instance = self.id("01J", 23).to_uppercase();
        let now = self.now();
        let m = json!({
            "id": id, "name": format!("machine-{}", &id[..4]), "state": "started",
            "region": region, "instance_id": instance, "private_ip": "fdaa::1",
            "created_at": now, "updated_at": now, "config": config,
            "image_ref": {"registry": "registry-1.docker.io", "repository": "flyio/postgres-flex",
                          "tag": "15", "labels": {"fly.pg-manager": "repmgr"}},
            "checks": Self::booting_checks(),
        });
        let a = self.app_mut(app);
        if raced {
            a.races.push(format!(
                "machine {id} booted while {booting:?} had not initialised the cluster"
            ));
        }
        for vid in mounted {
            a.volumes.get_mut(&vid).unwrap()["attached_machine_id"] = json!(id);
        }
        a.machines.insert(
            id.clone(),
            MachineRec {
                json: m.clone(),
                lease: None,
                boot_reads_left: Self::BOOT_READS,
                crash,
            },
        );
        let mut shown = m;
        shown["state"] = json!("created");
        Reply::json(200, shown)
    }

    #[allow(clippy::too_many_arguments)]
    fn machine_op(
        &mut self,
        op: &str,
        app: &str,
        id: &str,
        segs: &[String],
        state: Option<&str>,
        instance_id: Option<&str>,
        kill: Option<&str>,
        body: Option<&Value>,
        nonce: Option<&str>,
    ) -> Reply {
        let new_instance = self.id("01J", 23).to_uppercase();
        let a = self.app_mut(app);
        let Some(m) = a.machines.get_mut(id).filter(|m| m.state() != "destroyed") else {
            return Reply::error(404, &format!("machine {id} not found"));
        };
        let lease_ok = |m: &MachineRec| m.lease.is_none() || m.lease.as_deref() == nonce;
        match op {
            "GET /apps/{app_name}/machines/{machine_id}" => Reply::json(200, m.json.clone()),
            "GET /apps/{app_name}/machines/{machine_id}/wait" => {
                if let Some(want) = instance_id {
                    if m.json["instance_id"] != want {
                        return Reply::error(400, "instance_id does not match the machine's");
                    }
                }
                if m.state() == state.unwrap_or("started") {
                    Reply::json(200, json!({"ok": true}))
                } else {
                    Reply::error(408, "deadline_exceeded: machine did not reach the state")
                }
            }
            "POST /apps/{app_name}/machines/{machine_id}/lease" => {
                if m.lease.is_some() {
                    return Reply::error(409, "machine already has an active lease");
                }
                let nonce = format!("nonce-{}", &new_instance[3..11].to_lowercase());
                m.lease = Some(nonce.clone());
                Reply::json(
                    200,
                    json!({"status": "success", "data": {"nonce": nonce, "expires_at": 1717200000,
                           "owner": "test@example.com", "version": m.json["instance_id"]}}),
                )
            }
            "DELETE /apps/{app_name}/machines/{machine_id}/lease" => {
                if m.lease.is_none() {
                    return Reply::error(404, "no lease");
                }
                if m.lease.as_deref() != nonce {
                    return Reply::error(409, "lease nonce mismatch");
                }
                m.lease = None;
                Reply::empty(200)
            }
            "POST /apps/{app_name}/machines/{machine_id}" => {
                if !lease_ok(m) {
                    return Reply::error(409, "machine has an active lease held by someone else");
                }
                let body = body.unwrap();
                let old_mounts = m.json["config"]["mounts"].clone();
                if body["config"]["mounts"] != old_mounts {
                    return Reply::error(422, "the scripted API does not model mount changes");
                }
                let new_image = m.json["config"]["image"] != body["config"]["image"];
                m.json["config"] = body["config"].clone();
                m.json["instance_id"] = json!(new_instance);
                m.json["state"] = json!("started");
                Self::restart(m);
                let reply = Reply::json(200, m.json.clone());
                if new_image {
                    super::barman::image_updated(&mut a.barman);
                }
                reply
            }
            "POST /apps/{app_name}/machines/{machine_id}/start" => {
                if !lease_ok(m) {
                    return Reply::error(409, "machine has an active lease held by someone else");
                }
                let previous = m.state().to_string();
                m.json["state"] = json!("started");
                Self::restart(m);
                Reply::json(200, json!({"previous_state": previous}))
            }
            "POST /apps/{app_name}/machines/{machine_id}/restart" => {
                if !lease_ok(m) {
                    return Reply::error(409, "machine has an active lease held by someone else");
                }
                if m.state() != "started" {
                    return Reply::error(412, "failed_precondition: machine is not started");
                }
                Self::restart(m);
                Reply::empty(200)
            }
            "POST /apps/{app_name}/machines/{machine_id}/stop" => {
                if !lease_ok(m) {
                    return Reply::error(409, "machine has an active lease held by someone else");
                }
                m.json["state"] = json!("stopped");
                Reply::empty(200)
            }
            "GET /apps/{app_name}/machines/{machine_id}/metadata" => {
                Reply::json(200, m.json["config"]["metadata"].clone())
            }
            "POST /apps/{app_name}/machines/{machine_id}/metadata/{key}" => {
                let key = segs[5].clone();
                m.json["config"]["metadata"][key] = body.unwrap()["value"].clone();
                Reply::empty(204)
            }
            "DELETE /apps/{app_name}/machines/{machine_id}" => {
                if !lease_ok(m) {
                    return Reply::error(409, "machine has an active lease held by someone else");
                }
                if m.state() == "started" && kill != Some("true") {
                    return Reply::error(
                        412,
                        "failed_precondition: machine still active, refusing to delete",
                    );
                }
                m.json["state"] = json!("destroyed");
                for v in a.volumes.values_mut() {
                    if v["attached_machine_id"] == id {
                        v["attached_machine_id"] = Value::Null;
                    }
                }
                Reply::empty(200)
            }
            other => Reply::error(501, &format!("the scripted API does not model {other}")),
        }
    }
}
