//! Request and response bodies of the Fly Machines API, as far as flyplan
//! uses them. Field names follow the published OpenAPI description
//! (`machines-openapi.yaml`); the few newer fields it lacks are marked.
//!
//! Responses are decoded leniently (unknown fields ignored, most fields
//! optional) because the API adds fields over time; requests carry only
//! fields the description (or a marked newer field) defines.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /apps` (`CreateAppRequest`).
#[derive(Debug, Clone, Serialize)]
pub struct CreateAppRequest {
    pub app_name: String,
    pub org_slug: String,
    /// `postgres_cluster` marks the app as a Postgres cluster, as `fly pg create` does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_role_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

/// `GET /apps/{app_name}` (`App`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct App {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub organization: Option<Organization>,
    /// Newer than the 2024 description: `postgres_cluster` for Postgres apps.
    #[serde(default)]
    pub app_role: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Organization {
    #[serde(default)]
    pub slug: String,
}

/// `Machine`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Machine {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub instance_id: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub config: MachineConfig,
    #[serde(default)]
    pub checks: Vec<CheckStatus>,
}

/// `CheckStatus`: a health check's last result.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CheckStatus {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub output: String,
    #[serde(default)]
    pub updated_at: String,
}

/// `api.MachineConfig`: only the fields flyplan sets. On update flyplan
/// sends back the machine's current configuration with its own changes, so
/// the fields it does not model are kept in `rest` and passed through.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MachineConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<MachineGuest>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MachineMount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<MachineService>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, MachineCheck>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MachineMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<MachineRestart>,
    /// Fields of `api.MachineConfig` flyplan does not model, kept as read.
    #[serde(flatten)]
    pub rest: BTreeMap<String, serde_json::Value>,
}

/// `api.MachineGuest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MachineGuest {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cpu_kind: String,
    #[serde(default)]
    pub cpus: u32,
    #[serde(default)]
    pub memory_mb: u32,
    #[serde(flatten)]
    pub rest: BTreeMap<String, serde_json::Value>,
}

/// `api.MachineMount`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MachineMount {
    #[serde(default)]
    pub volume: String,
    #[serde(default)]
    pub path: String,
    #[serde(flatten)]
    pub rest: BTreeMap<String, serde_json::Value>,
}

/// `api.MachineService`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MachineService {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(default)]
    pub internal_port: u16,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<MachinePort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<MachineServiceConcurrency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autostart: Option<bool>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, serde_json::Value>,
}

/// `api.MachinePort`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MachinePort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handlers: Vec<String>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, serde_json::Value>,
}

/// `api.MachineServiceConcurrency`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MachineServiceConcurrency {
    #[serde(rename = "type")]
    pub kind: String,
    pub hard_limit: u32,
    pub soft_limit: u32,
}

/// `api.MachineCheck`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MachineCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interval: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub timeout: String,
    #[serde(flatten)]
    pub rest: BTreeMap<String, serde_json::Value>,
}

/// `api.MachineMetrics`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MachineMetrics {
    pub path: String,
    pub port: u16,
}

/// `api.MachineRestart`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MachineRestart {
    pub policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
}

/// `POST /apps/{app_name}/machines` (`CreateMachineRequest`) and
/// `POST /apps/{app_name}/machines/{machine_id}` (`UpdateMachineRequest`).
#[derive(Debug, Clone, Serialize)]
pub struct MachineRequest {
    pub config: MachineConfig,
    pub region: String,
    /// Newer than the 2024 description (fly-go `LaunchMachineInput`): the
    /// machine starts only once it can see this version of the app secrets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_secrets_version: Option<u64>,
}

/// `CreateLeaseRequest`.
#[derive(Debug, Clone, Serialize)]
pub struct CreateLeaseRequest {
    pub ttl: u64,
    pub description: String,
}

/// A lease as the 2024 description has it (`Lease`, nonce at the top) or
/// as the API answers today (`{"status": ..., "data": {"nonce": ...}}`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LeaseReply {
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub data: Option<LeaseData>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct LeaseData {
    #[serde(default)]
    pub nonce: Option<String>,
}

impl LeaseReply {
    pub fn nonce(&self) -> Option<&str> {
        self.nonce
            .as_deref()
            .or_else(|| self.data.as_ref().and_then(|d| d.nonce.as_deref()))
            .filter(|n| !n.is_empty())
    }
}

/// `Volume`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Volume {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub size_gb: u64,
    #[serde(default)]
    pub attached_machine_id: Option<String>,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub snapshot_retention: Option<u64>,
    /// Newer than the 2024 description; absent means Fly's default (on).
    #[serde(default)]
    pub auto_backup_enabled: Option<bool>,
}

/// `CreateVolumeRequest`.
#[derive(Debug, Clone, Serialize)]
pub struct CreateVolumeRequest {
    pub name: String,
    pub region: String,
    pub size_gb: u64,
    pub encrypted: bool,
    pub require_unique_zone: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_retention: Option<u64>,
    /// Newer than the 2024 description (fly-go `CreateVolumeRequest`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_backup_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Placement hints: the guest and image of the machine that will mount
    /// the volume, so it lands on a host that fits it (fly-go
    /// `volume_types.go:48-50`; flyctl `flypg/launcher.go:218-219`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute: Option<MachineGuest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_image: Option<String>,
}

/// `UpdateVolumeRequest`.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateVolumeRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_retention: Option<u64>,
    /// Newer than the 2024 description (fly-go `UpdateVolumeRequest`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_backup_enabled: Option<bool>,
}

/// `ExtendVolumeRequest`.
#[derive(Debug, Clone, Serialize)]
pub struct ExtendVolumeRequest {
    pub size_gb: u64,
}

/// `ExtendVolumeResponse`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExtendVolumeResponse {
    #[serde(default)]
    pub needs_restart: bool,
}

/// `VolumeSnapshot`: one of Fly's daily (or on-demand) volume snapshots.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
pub struct VolumeSnapshot {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub status: String,
}

/// One entry of `GET /apps/{app_name}/secrets` (not in the 2024 description;
/// shape as fly-go `AppSecret`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AppSecret {
    pub name: String,
    #[serde(default)]
    pub digest: String,
}

/// `GET /apps/{app_name}/secrets`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListSecretsResponse {
    #[serde(default)]
    pub secrets: Vec<AppSecret>,
}

/// One entry of `GET /apps?org_slug=` (`ListApp`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListApp {
    pub name: String,
}

/// `GET /apps?org_slug=` (`ListAppsResponse`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListAppsResponse {
    #[serde(default)]
    pub apps: Vec<ListApp>,
}

/// `POST /apps/{app_name}/secrets`: `null` unsets a secret. The values are
/// secret: this type has no `Debug`.
#[derive(Serialize)]
pub struct UpdateSecretsRequest {
    pub values: BTreeMap<String, Option<String>>,
}

/// Answer to `POST /apps/{app_name}/secrets` (fly-go `UpdateAppSecretsResp`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UpdateSecretsResponse {
    #[serde(default)]
    pub secrets: Vec<AppSecret>,
    #[serde(default)]
    pub version: Option<u64>,
}

/// `ErrorResponse`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorResponse {
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// Machine states after which a machine no longer counts.
pub const GONE_MACHINE_STATES: &[&str] = &["destroying", "destroyed"];

/// Volume states after which a volume no longer counts (as flyctl filters).
pub const GONE_VOLUME_STATES: &[&str] = &[
    "scheduling_destroy",
    "fork_cleanup",
    "waiting_for_detach",
    "pending_destroy",
    "destroying",
    "destroyed",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_nonce_is_read_from_either_answer_shape() {
        let described: LeaseReply =
            serde_json::from_str(r#"{"nonce":"n1","expires_at":1}"#).unwrap();
        assert_eq!(described.nonce(), Some("n1"));
        let today: LeaseReply =
            serde_json::from_str(r#"{"status":"success","data":{"nonce":"n2"}}"#).unwrap();
        assert_eq!(today.nonce(), Some("n2"));
        let none: LeaseReply = serde_json::from_str(r#"{"status":"success"}"#).unwrap();
        assert_eq!(none.nonce(), None);
    }

    #[test]
    fn machine_configs_keep_fields_flyplan_does_not_model() {
        let text = r#"{"image":"i","init":{"cmd":["x"]},"guest":{"cpus":1,"memory_mb":256,"cpu_kind":"shared","kernel_args":["a"]}}"#;
        let c: MachineConfig = serde_json::from_str(text).unwrap();
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back["init"]["cmd"][0], "x");
        assert_eq!(back["guest"]["kernel_args"][0], "a");
    }
}

/// `MachineExecRequest`: a command run inside a machine. `stdin` is newer
/// than the 2024 description (fly-go `machine_types.go:1188-1196`).
#[derive(Debug, Clone, Serialize)]
pub struct ExecRequest {
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    pub timeout: u64,
}

/// What `exec` answers: JSON, as fly-go decodes it (`MachineExecResponse`,
/// `machine_types.go:1198-1202`), not the raw bytes the 2024 description
/// says.
#[derive(Debug, Clone, Deserialize)]
pub struct ExecResponse {
    #[serde(default)]
    pub exit_code: i64,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
}
