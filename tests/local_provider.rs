//! The local provider against real servers: a 3-node pg_auto_failover
//! cluster with haproxy in front, built step by step, written to, failed
//! over by killing the leader, repaired, and destroyed.

#[path = "support/procs.rs"]
mod procs;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flyplan::live::Live;
use flyplan::model::{
    Address, Agreed, AppSpec, DatabaseSpec, Digest as ModelDigest, EndpointSpec, FormationSpec,
    Kind, MachineSpec, Resource, Role, SecretSpec, SnapshotPolicySpec, Spec, UserSpec, VolumeSpec,
};
use flyplan::plan::{Action, Step};
use flyplan::provider::local::LocalProvider;
use flyplan::provider::{Outcome, Provider, ProviderError, SecretValues, StepContext};
use sha2::{Digest, Sha256};

const PASSWORD: &str = "correct horse 'battery' staple";

/// A state dir under /tmp that the `postgres` user can traverse, and an app
/// whose every process is stopped when the test ends, passed or not.
struct Cluster {
    provider: LocalProvider,
    app: String,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn new(app: &str) -> Self {
        init_tracing();
        require_tools();
        let dir = tempfile::Builder::new()
            .prefix("flyplan-test-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let provider = LocalProvider::new(dir.path().to_path_buf()).expect("local provider");
        Cluster {
            provider,
            app: app.to_string(),
            _dir: dir,
        }
    }

    fn perform(&self, step: &Step, secrets: &SecretValues) -> Outcome {
        let ctx = StepContext {
            app: &self.app,
            secrets,
            restore: None,
            operator_password: None,
            steps: &[],
        };
        self.provider
            .perform(step, &ctx)
            .unwrap_or_else(|e| panic!("{} {}: {e}", step.action.as_str(), step.address))
    }

    fn observe(&self) -> Live {
        self.provider.observe(&self.app).expect("observe")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let logs = self.provider.app_dir(&self.app).join("logs");
        if logs.exists() && std::thread::panicking() {
            // Keep the servers' logs of a failed run for the reader.
            let keep = std::env::temp_dir().join(format!("{}-logs", self.app));
            let _ = std::fs::remove_dir_all(&keep);
            if std::fs::create_dir_all(&keep).is_ok() {
                for e in std::fs::read_dir(&logs).into_iter().flatten().flatten() {
                    let _ = std::fs::copy(e.path(), keep.join(e.file_name()));
                }
                eprintln!("server logs kept in {}", keep.display());
            }
        }
        if let Err(e) = self.provider.destroy_all(&self.app) {
            eprintln!("cleanup of {} failed: {e}", self.app);
        }
    }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "flyplan=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Fail loudly, never skip, when the servers are not installed.
fn require_tools() {
    let found = ["/usr/bin/pg_autoctl", "/usr/lib/postgresql/15/bin/postgres"]
        .iter()
        .all(|p| Path::new(p).exists())
        || std::env::var_os("FLYPLAN_PG_BINDIR").is_some();
    assert!(
        found,
        "pg_autoctl or PostgreSQL 15 is missing: run scripts/install-deps.sh (as root) first"
    );
}

fn step(id: usize, action: Action, r: Resource) -> Step {
    let (before, after) = match action {
        Action::Delete => (Some(r.clone()), None),
        _ => (None, Some(r.clone())),
    };
    Step {
        id,
        address: r.address.clone(),
        kind: r.kind(),
        action,
        reason: "test".to_string(),
        before,
        after,
        changed: vec![],
        blocked: None,
        depends_on: vec![],
        notes: vec![],
    }
}

fn digest(app: &str, name: &str, value: &str) -> String {
    let h = Sha256::digest(format!("flyplan-secret-v1\0{app}\0{name}\0{value}").as_bytes());
    format!("sha256:{}", hex::encode(h))
}

fn machine(region: &str, index: u32, role: Role) -> Resource {
    let mut m = MachineSpec::new(region, index, role, "running");
    m.image = Some("flyio/postgres-flex:15".into());
    m.vm_size = Some("shared-cpu-1x".into());
    m.memory_mb = Some(512);
    m.cpus = Some(1);
    m.cpu_kind = Some("shared".into());
    m.volume = Some(Address::volume("pg_data", region, index));
    Resource::new(Address::machine(region, index), Spec::Machine(m))
}

fn volume(region: &str, index: u32) -> Resource {
    Resource::new(
        Address::volume("pg_data", region, index),
        Spec::Volume(VolumeSpec::new("pg_data", region, 1)),
    )
}

/// The machine spec of a resource.
fn spec(r: &Resource) -> &MachineSpec {
    r.machine().expect("a machine")
}

/// The attributes of `desired` that differ in `live` (what a plan compares).
fn differing(desired: &Resource, live: &Live) -> Vec<String> {
    let Some(l) = live.get(&desired.address) else {
        return vec!["<missing>".to_string()];
    };
    let (want, have) = (desired.spec.attrs(), l.spec.attrs());
    desired
        .spec
        .changed(&l.spec)
        .into_iter()
        .map(|k| format!("{k}: want {}, have {:?}", want[k], have.get(k)))
        .collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(port: u16, dbname: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .password(PASSWORD)
        .dbname(dbname)
        .connect_timeout(Duration::from_secs(1))
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Insert one row through the endpoint; the id when the commit was
/// acknowledged.
async fn write_row(
    client: &mut Option<tokio_postgres::Client>,
    port: u16,
    value: &str,
) -> Option<i64> {
    if client.as_ref().is_none_or(|c| c.is_closed()) {
        *client = connect(port, "appdb").await.ok();
    }
    let c = client.as_ref()?;
    match c
        .query_one("insert into t (v) values ($1) returning id", &[&value])
        .await
    {
        Ok(row) => Some(row.get(0)),
        Err(_) => {
            *client = None;
            None
        }
    }
}

fn pgdata(cluster: &Cluster, region: &str, index: u32) -> PathBuf {
    cluster
        .provider
        .app_dir(&cluster.app)
        .join("volumes")
        .join(format!("pg_data-{region}-{index}"))
        .join("pgdata")
}

fn first_line_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_three_node_cluster_is_built_survives_the_loss_of_its_leader_and_is_repaired() {
    let cluster = Cluster::new("fp-local-test");
    let app = cluster.app.clone();
    let secrets = SecretValues::new(BTreeMap::from([(
        "PG_PASSWORD".to_string(),
        PASSWORD.to_string(),
    )]));

    let app_r = Resource::new(
        Address::app(&app),
        Spec::App(AppSpec::new(Some("iad".into()), "running")),
    );
    let secret_r = Resource::new(
        Address::secret("PG_PASSWORD"),
        Spec::Secret(SecretSpec::with_digest(digest(
            &app,
            "PG_PASSWORD",
            PASSWORD,
        ))),
    );
    let nodes = [
        ("iad", 0, Role::Candidate),
        ("iad", 1, Role::Candidate),
        ("ams", 0, Role::Replica),
    ];
    let machines: Vec<Resource> = nodes
        .iter()
        .map(|(r, i, role)| machine(r, *i, *role))
        .collect();
    let volumes: Vec<Resource> = nodes.iter().map(|(r, i, _)| volume(r, *i)).collect();
    let formation_r = Resource::new(
        Address::formation(&app),
        Spec::Formation(FormationSpec {
            sync_standbys: Some(Agreed::One(1)),
        }),
    );
    let endpoint_r = Resource::new(
        Address::endpoint(&app),
        Spec::Endpoint(EndpointSpec {
            state: "running".into(),
        }),
    );
    let mut user = UserSpec::new(true, true);
    user.createdb = Some(true);
    user.createrole = Some(true);
    user.replication = Some(true);
    user.connection_limit = Some(-1);
    user.member_of = Some(Vec::new());
    user.password_secret = Some("PG_PASSWORD".into());
    user.password = Some(ModelDigest(digest(&app, "PG_PASSWORD", PASSWORD)));
    let user_r = Resource::new(Address::user("postgres"), Spec::User(user));
    let db_r = Resource::new(
        Address::database("appdb"),
        Spec::Database(DatabaseSpec {
            owner: "postgres".into(),
        }),
    );
    let policy_r = Resource::new(
        Address::snapshot_policy("pg_data"),
        Spec::SnapshotPolicy(SnapshotPolicySpec {
            retention_days: Some(Agreed::One(7)),
            scheduled: Some(Agreed::One(true)),
            snapshot_time: Some("03:00".into()),
        }),
    );

    // Apply from nothing; volumes and machines in parallel, as the apply
    // executor runs independent steps.
    let started = Instant::now();
    assert_eq!(
        cluster.perform(&step(0, Action::Create, app_r.clone()), &secrets),
        Outcome::Created
    );
    assert_eq!(
        cluster.perform(&step(1, Action::Create, secret_r.clone()), &secrets),
        Outcome::Created
    );
    std::thread::scope(|s| {
        for v in &volumes {
            s.spawn(|| cluster.perform(&step(2, Action::Create, v.clone()), &secrets));
        }
    });
    eprintln!("monitor and volumes: {:?}", started.elapsed());
    std::thread::scope(|s| {
        let handles: Vec<_> = machines
            .iter()
            .map(|m| s.spawn(|| cluster.perform(&step(3, Action::Create, m.clone()), &secrets)))
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), Outcome::Created);
        }
    });
    eprintln!("three machines: {:?}", started.elapsed());
    for r in [&formation_r, &endpoint_r, &user_r, &db_r, &policy_r] {
        cluster.perform(&step(4, Action::Create, r.clone()), &secrets);
    }
    eprintln!(
        "TIMING apply from nothing to healthy: {:?}",
        started.elapsed()
    );

    // Live state equals desired state, observed quickly.
    let _ = cluster.observe();
    let t = Instant::now();
    let live = cluster.observe();
    eprintln!("TIMING observe of a live 3-node cluster: {:?}", t.elapsed());
    let all: Vec<&Resource> = [
        &app_r,
        &secret_r,
        &formation_r,
        &endpoint_r,
        &user_r,
        &db_r,
        &policy_r,
    ]
    .into_iter()
    .chain(&machines)
    .chain(&volumes)
    .collect();
    for r in &all {
        assert!(
            differing(r, &live).is_empty(),
            "{}: {:?}",
            r.address,
            differing(r, &live)
        );
    }
    let leaders: Vec<&Resource> = live
        .of_kind(Kind::Machine)
        .filter(|m| m.is_leader())
        .collect();
    assert_eq!(leaders.len(), 1, "exactly one leader: {live:#?}");
    let leader = leaders[0].clone();
    assert_eq!(spec(&leader).region, "iad");

    // Doing it again changes nothing.
    for r in &all {
        let action = if r.kind() == Kind::Machine || r.kind() == Kind::App {
            Action::Update
        } else {
            Action::Create
        };
        assert_eq!(
            cluster.perform(&step(9, action, (*r).clone()), &secrets),
            Outcome::NotNeeded,
            "{}",
            r.address
        );
    }

    let status = cluster.provider.node_status(&app).expect("status");
    eprintln!("status: {status:#?}");
    assert_eq!(status.iter().filter(|n| n.role == "leader").count(), 1);

    // Write through the endpoint, read on every node's direct port.
    let (_, ep_port) = cluster.provider.endpoint_url(&app).expect("endpoint");
    let rt = rt();
    let mut writer = None;
    rt.block_on(async {
        let c = connect(ep_port, "appdb")
            .await
            .expect("password login through the endpoint");
        c.batch_execute("create table t (id bigserial primary key, v text not null)")
            .await
            .unwrap();
    });
    let first = rt
        .block_on(write_row(&mut writer, ep_port, "first"))
        .expect("first write");
    for m in &machines {
        let port = cluster
            .provider
            .node_port(&app, &m.address)
            .expect("node port");
        let seen = rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(c) = connect(port, "appdb").await {
                    if let Ok(rows) = c.query("select v from t where id = $1", &[&first]).await {
                        if rows.len() == 1 {
                            return true;
                        }
                    }
                }
                if Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        assert!(seen, "row visible on {}", m.address);
    }

    // Kill the leader (keeper and postgres, -9) while writing.
    let mut acked: BTreeSet<i64> = BTreeSet::from([first]);
    for i in 0..20 {
        acked.insert(
            rt.block_on(write_row(&mut writer, ep_port, &format!("before {i}")))
                .expect("write"),
        );
    }
    let region = spec(&leader).region.clone();
    let index = spec(&leader).index;
    let keeper_pid = leader.checks.pid.expect("keeper pid") as i32;
    let postmaster = first_line_pid(&pgdata(&cluster, &region, index).join("postmaster.pid"));
    procs::kill_trees(&[keeper_pid, postmaster]);
    let killed = Instant::now();
    let killed_at_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let failover = loop {
        if let Some(id) = rt.block_on(write_row(&mut writer, ep_port, "after")) {
            acked.insert(id);
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(120),
            "no write accepted within 120 s of killing the leader"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("TIMING failover (leader killed to first accepted write): {failover:?}");
    // Right after the promotion the endpoint may briefly refuse while the
    // new leader settles (wait_primary -> primary): retry each write for a
    // few seconds; only acknowledged writes count.
    for i in 0..10 {
        let deadline = Instant::now() + Duration::from_secs(10);
        let id = loop {
            if let Some(id) = rt.block_on(write_row(&mut writer, ep_port, &format!("after {i}"))) {
                break id;
            }
            assert!(
                Instant::now() < deadline,
                "write {i} after failover not accepted within 10 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        acked.insert(id);
    }
    let present: BTreeSet<i64> = rt.block_on(async {
        let c = connect(ep_port, "appdb").await.unwrap();
        c.query("select id from t", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    });
    let lost: Vec<&i64> = acked.difference(&present).collect();
    assert!(lost.is_empty(), "acknowledged rows lost: {lost:?}");

    // The dead node is drift; updating it to running brings it back as a standby.
    let live = cluster.observe();
    let dead = live.get(&leader.address).expect("old leader observed");
    assert_ne!(spec(dead).state, "running", "{dead:#?}");
    assert!(!dead.is_leader());
    let desired = machines
        .iter()
        .find(|m| m.address == leader.address)
        .unwrap()
        .clone();
    let mut repair = step(10, Action::Update, desired.clone());
    repair.before = Some(dead.clone());
    repair.changed = vec!["state".to_string()];
    let t = Instant::now();
    assert_eq!(cluster.perform(&repair, &secrets), Outcome::Updated);
    eprintln!("TIMING old leader back as a standby: {:?}", t.elapsed());
    let live = cluster.observe();
    let back = live.get(&leader.address).unwrap();
    assert_eq!(spec(back).state, "running", "{back:#?}");
    assert_eq!(spec(back).leader, Some(false));
    assert_eq!(
        back.checks.pg_state.as_deref(),
        Some("secondary"),
        "{back:#?}"
    );
    assert!(
        differing(&desired, &live).is_empty(),
        "{:?}",
        differing(&desired, &live)
    );
    let new_leader = live.leader().expect("a leader");
    assert_ne!(new_leader.address, leader.address);

    // A changed image restarts the leader: it hands over first and comes
    // back as a standby.
    let leader_now = new_leader.clone();
    let mut upgraded = machines
        .iter()
        .find(|m| m.address == leader_now.address)
        .unwrap()
        .clone();
    upgraded.machine_mut().expect("a machine").image = Some("flyio/postgres-flex:15.8".into());
    let mut upgrade = step(11, Action::Update, upgraded.clone());
    upgrade.before = Some(leader_now.clone());
    upgrade.changed = vec!["image".to_string()];
    let t = Instant::now();
    assert_eq!(cluster.perform(&upgrade, &secrets), Outcome::Updated);
    eprintln!("TIMING leader restart with switchover: {:?}", t.elapsed());
    let live = cluster.observe();
    assert!(
        differing(&upgraded, &live).is_empty(),
        "{:?}",
        differing(&upgraded, &live)
    );
    assert_eq!(
        spec(live.get(&leader_now.address).unwrap()).leader,
        Some(false)
    );
    let leader_after = live.leader().expect("a leader after the switchover");
    assert_eq!(spec(leader_after).region, "iad");
    assert!(
        rt.block_on(write_row(&mut writer, ep_port, "after switchover"))
            .is_some()
            || rt
                .block_on(write_row(&mut writer, ep_port, "after switchover"))
                .is_some()
    );

    // Removing the read replica drops it from the formation.
    let replica = machines.iter().find(|m| spec(m).region == "ams").unwrap();
    let t = Instant::now();
    assert_eq!(
        cluster.perform(&step(12, Action::Delete, replica.clone()), &secrets),
        Outcome::Deleted
    );
    eprintln!("TIMING read replica removed: {:?}", t.elapsed());
    assert_eq!(
        cluster.perform(&step(12, Action::Delete, replica.clone()), &secrets),
        Outcome::NotNeeded
    );
    let live = cluster.observe();
    assert!(live.get(&replica.address).is_none());
    assert_eq!(live.of_kind(Kind::Machine).count(), 2);

    // Destroy: nothing of the app keeps running.
    drop(writer);
    if std::env::var_os("FLYPLAN_TEST_KEEP_LOGS").is_some() {
        let keep = std::env::temp_dir().join(format!("{app}-logs"));
        let _ = std::fs::remove_dir_all(&keep);
        std::fs::create_dir_all(&keep).unwrap();
        for e in std::fs::read_dir(cluster.provider.app_dir(&app).join("logs"))
            .unwrap()
            .flatten()
        {
            std::fs::copy(e.path(), keep.join(e.file_name())).unwrap();
        }
        eprintln!("TIMING killed at {:?} (unix)", killed_at_unix);
    }
    cluster.provider.destroy_all(&app).expect("destroy");
    let left = cluster.provider.app_processes(&app);
    assert!(left.is_empty(), "processes left: {left:?}");
    assert!(!cluster.provider.app_dir(&app).exists());
    assert!(cluster.observe().resources.is_empty());
}

/// One contender of [`every_losing_lock_attempt_names_the_live_holder`]:
/// run as a child process of that test, a no-op otherwise. It waits for the
/// common start instant, tries the lock, and prints `won <pid>` (then holds
/// the lock, and leaves like a crash when asked to) or `lost <holder>`.
#[test]
#[ignore = "a child process of every_losing_lock_attempt_names_the_live_holder"]
fn lock_race_contender() {
    let Some(path) = std::env::var_os("FLYPLAN_TEST_LOCK_RACE") else {
        return;
    };
    let start: u128 = std::env::var("FLYPLAN_TEST_LOCK_START")
        .unwrap()
        .parse()
        .unwrap();
    let unix_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    };
    while unix_ms() < start {
        std::hint::spin_loop();
    }
    match flyplan::provider::lock::lock_file(Path::new(&path), "race") {
        Ok(guard) => {
            println!("won {}", std::process::id());
            std::thread::sleep(Duration::from_millis(700));
            if std::env::var_os("FLYPLAN_TEST_LOCK_CRASH").is_some() {
                // Gone without releasing: the holder file stays behind.
                std::process::exit(0);
            }
            drop(guard);
        }
        Err(ProviderError::Locked { holder, .. }) => println!("lost {holder}"),
        Err(e) => println!("error {e}"),
    }
}

#[test]
fn every_losing_lock_attempt_names_the_live_holder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apply.lock");
    let mut previous: Option<String> = None;
    for round in 0..6 {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 300;
        let children: Vec<_> = (0..8)
            .map(|_| {
                let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
                cmd.args(["--exact", "lock_race_contender", "--ignored", "--nocapture"])
                    .env("FLYPLAN_TEST_LOCK_RACE", &path)
                    .env("FLYPLAN_TEST_LOCK_START", start.to_string())
                    .stdout(std::process::Stdio::piped());
                if round % 2 == 1 {
                    cmd.env("FLYPLAN_TEST_LOCK_CRASH", "1");
                }
                cmd.spawn().unwrap()
            })
            .collect();
        let lines: Vec<String> = children
            .into_iter()
            .map(|c| String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap())
            .flat_map(|out| {
                out.lines()
                    .filter(|l| {
                        l.starts_with("won ") || l.starts_with("lost ") || l.starts_with("error ")
                    })
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        let won: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("won "))
            .collect();
        assert_eq!(won.len(), 1, "round {round}: {lines:?}");
        let winner = format!("pid {} since", won[0]);
        for l in &lines {
            if let Some(holder) = l.strip_prefix("lost ") {
                assert!(
                    holder.starts_with(&winner),
                    "round {round}: a loser named {holder:?}, the holder was {winner:?} (before: {previous:?})"
                );
            } else {
                assert!(l.starts_with("won "), "round {round}: {l}");
            }
        }
        assert_eq!(lines.len(), 8, "round {round}: {lines:?}");
        previous = Some(winner);
    }
}

#[test]
fn a_second_lock_on_the_same_app_fails_fast_naming_the_holder() {
    let cluster = Cluster::new("fp-lock-test");
    let first = cluster.provider.lock(&cluster.app).expect("first lock");
    let t = Instant::now();
    let second = cluster.provider.lock(&cluster.app);
    assert!(t.elapsed() < Duration::from_secs(1));
    match second {
        Err(ProviderError::Locked { app, holder }) => {
            assert_eq!(app, cluster.app);
            assert!(
                holder.contains(&format!("pid {}", std::process::id())),
                "{holder}"
            );
        }
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("expected Locked, got a second lock"),
    }
    drop(first);
    cluster
        .provider
        .lock(&cluster.app)
        .expect("lock after release");
}
