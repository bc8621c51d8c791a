//! The machine config `fly pg create` gives a postgres-flex node: guest,
//! checks, services, mounts and metadata.

use super::*;

/// The guest of a machine: explicit `cpu_kind`/`cpus` win over the preset
/// named by `vm_size` (`shared-cpu-2x`, `performance-4x`).
pub(super) fn guest_of(m: &MachineSpec) -> MachineGuest {
    let (mut kind, mut cpus) = ("shared".to_string(), 1u32);
    if let Some(size) = &m.vm_size {
        if let Some(n) = size
            .strip_prefix("shared-cpu-")
            .and_then(|n| n.strip_suffix('x'))
        {
            kind = "shared".into();
            cpus = n.parse().unwrap_or(1);
        } else if let Some(n) = size
            .strip_prefix("performance-")
            .and_then(|n| n.strip_suffix('x'))
        {
            kind = "performance".into();
            cpus = n.parse().unwrap_or(1);
        }
    }
    if let Some(k) = &m.cpu_kind {
        kind = k.clone();
    }
    if let Some(n) = m.cpus {
        cpus = n;
    }
    let memory_mb = m.memory_mb.map_or(256 * cpus, |m| m as u32);
    MachineGuest {
        cpu_kind: kind,
        cpus,
        memory_mb,
        rest: BTreeMap::new(),
    }
}

fn http_check(path: &str) -> MachineCheck {
    MachineCheck {
        port: Some(CHECK_PORT),
        kind: "http".into(),
        path: path.into(),
        interval: "15s".into(),
        timeout: "10s".into(),
        rest: BTreeMap::new(),
    }
}

fn pg_service(port: u16) -> MachineService {
    MachineService {
        protocol: "tcp".into(),
        internal_port: port,
        ports: vec![MachinePort {
            port: Some(port),
            handlers: vec!["pg_tls".into()],
            rest: BTreeMap::new(),
        }],
        concurrency: Some(MachineServiceConcurrency {
            kind: "connections".into(),
            hard_limit: 1000,
            soft_limit: 1000,
        }),
        // flyctl leaves autostart off for Postgres (flypg/launcher.go:178-194):
        // the proxy must not start a node stopped on purpose.
        autostart: Some(false),
        rest: BTreeMap::new(),
    }
}

/// A postgres-flex machine configuration, as `fly pg create` makes it:
/// `PRIMARY_REGION`, the pg/role/vm checks on port 5500, the 5432 proxy and
/// 5433 direct services with the `pg_tls` handler, metrics on 9187, the data
/// volume on `/data`, restart always, and the metadata flyctl sets.
pub fn postgres_flex_config(
    image: &str,
    primary_region: &str,
    guest: MachineGuest,
    volume_id: &str,
    index: u32,
) -> MachineConfig {
    let mut env = BTreeMap::new();
    env.insert("PRIMARY_REGION".to_string(), primary_region.to_string());
    let mut checks = BTreeMap::new();
    checks.insert("pg".to_string(), http_check("/flycheck/pg"));
    checks.insert("role".to_string(), http_check("/flycheck/role"));
    checks.insert("vm".to_string(), http_check("/flycheck/vm"));
    let mut metadata = BTreeMap::new();
    metadata.insert(meta::FLY_PLATFORM_VERSION.to_string(), "v2".to_string());
    metadata.insert(meta::FLY_MANAGED_POSTGRES.to_string(), "true".to_string());
    metadata.insert(meta::MANAGED_BY_FLY_DEPLOY.to_string(), "true".to_string());
    metadata.insert(meta::INDEX.to_string(), index.to_string());
    metadata.insert(
        meta::FLYPLAN_VERSION.to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    MachineConfig {
        image: image.to_string(),
        env,
        guest: Some(guest),
        mounts: vec![MachineMount {
            volume: volume_id.to_string(),
            path: DATA_PATH.to_string(),
            rest: BTreeMap::new(),
        }],
        services: vec![pg_service(PG_PROXY_PORT), pg_service(PG_DIRECT_PORT)],
        checks,
        metadata,
        metrics: Some(MachineMetrics {
            path: "/metrics".into(),
            port: 9187,
        }),
        restart: Some(MachineRestart {
            policy: "always".into(),
            max_retries: None,
        }),
        rest: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine that names no size.
    fn bare_machine() -> MachineSpec {
        MachineSpec {
            cpu_kind: None,
            cpus: None,
            id: None,
            image: None,
            index: 0,
            instance_id: None,
            leader: None,
            machine_name: None,
            memory_mb: None,
            region: "iad".into(),
            role: Role::Candidate,
            role_check: None,
            state: "running".into(),
            vm_size: None,
            volume: None,
        }
    }

    #[test]
    fn guests_come_from_presets_with_explicit_values_winning() {
        let mut m = bare_machine();
        m.vm_size = Some("performance-2x".into());
        m.memory_mb = Some(4096);
        let g = guest_of(&m);
        assert_eq!(
            (g.cpu_kind.as_str(), g.cpus, g.memory_mb),
            ("performance", 2, 4096)
        );
        m.cpus = Some(4);
        m.cpu_kind = Some("shared".into());
        let g = guest_of(&m);
        assert_eq!((g.cpu_kind.as_str(), g.cpus), ("shared", 4));
    }

    #[test]
    fn the_machine_config_is_the_one_fly_pg_create_makes() {
        let c = postgres_flex_config(
            "flyio/postgres-flex:15",
            "iad",
            guest_of(&bare_machine()),
            "vol_1",
            0,
        );
        assert_eq!(c.env["PRIMARY_REGION"], "iad");
        assert_eq!(c.mounts[0].path, "/data");
        assert_eq!(c.checks["role"].path, "/flycheck/role");
        assert_eq!(c.checks["role"].port, Some(5500));
        assert_eq!(c.services.len(), 2);
        assert_eq!(c.services[0].ports[0].handlers, vec!["pg_tls"]);
        assert_eq!(c.metadata["fly-managed-postgres"], "true");
        assert_eq!(c.metadata["flyplan-index"], "0");
        assert_eq!(c.restart.as_ref().unwrap().policy, "always");
    }
}
