//! Fly's GraphQL API (`POST {FLY_API_BASE_URL}/graphql`), for what only it
//! offers a postgres-flex cluster: the organization's node id, a Flycast
//! (`private_v6`) address, the inter-node SSH certificate, the Consul URL,
//! and the attachment records `fly pg attach` and `fly pg detach` keep.
//! Each operation is the document fly-go sends, with the same variables.

use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::client::{authorization, RetryPolicy};
use crate::provider::ProviderError;

/// fly-go `resource_organizations.go` (`GetOrganizationBySlug`): the org's
/// node id, which `allocateIpAddress` and `issueCertificate` take.
pub const ORGANIZATION: &str =
    "query($slug: String!) { organization(slug: $slug) { id slug name type } }";

/// fly-go `resource_ip_addresses.go` (`GetIPAddresses`): is there a
/// `private_v6` (Flycast) address already?
pub const APP_IP_ADDRESSES: &str = "query($appName: String!) { app(name: $appName) { \
     ipAddresses { nodes { id address type region createdAt } } } }";

/// fly-go `resource_ip_addresses.go` (`AllocateIPAddress`).
pub const ALLOCATE_IP_ADDRESS: &str = "mutation($input: AllocateIPAddressInput!) { \
     allocateIpAddress(input: $input) { ipAddress { id address type region createdAt } } }";

/// fly-go `resource_ssh.go` (`IssueSSHCertificate`).
pub const ISSUE_CERTIFICATE: &str = "mutation($input: IssueCertificateInput!) { \
     issueCertificate(input: $input) { certificate key } }";

/// fly-go `resource_postgres.go` (`EnablePostgresConsul`).
pub const ENABLE_POSTGRES_CONSUL: &str = "mutation($appName: ID!) { \
     enablePostgresConsul(input: { appId: $appName }) { consulUrl } }";

/// fly-go `resource_postgres.go` (`AttachPostgresCluster`): the record
/// `fly pg attach` leaves (flyctl `internal/command/postgres/attach.go`
/// 235-242, 287), so `fly pg detach` finds what flyplan attached.
pub const ATTACH_POSTGRES_CLUSTER: &str = "mutation($input: AttachPostgresClusterInput!) { \
     attachPostgresCluster(input: $input) { app { name } postgresClusterApp { name } \
     environmentVariableName } }";

/// fly-go `resource_postgres.go` (`DetachPostgresCluster`), as `fly pg
/// detach` sends it (flyctl `internal/command/postgres/detach.go:159-167`).
pub const DETACH_POSTGRES_CLUSTER: &str = "mutation($input: DetachPostgresClusterInput!) { \
     detachPostgresCluster(input: $input) { clientMutationId } }";

/// fly-go `resource_postgres.go` (`ListPostgresClusterAttachments`), as
/// `fly pg detach` reads them (`detach.go:109-116`).
pub const POSTGRES_ATTACHMENTS: &str = "query($appName: String!, $postgresAppName: String!) { \
     postgresAttachments(appName: $appName, postgresAppName: $postgresAppName) { \
     nodes { id databaseName databaseUser environmentVariableName } } }";

/// A `PostgresClusterAttachment`: Fly's record of an attachment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentRecord {
    pub id: String,
    pub database_name: String,
    pub database_user: String,
    pub environment_variable_name: String,
}

/// The GraphQL client.
pub struct GraphqlClient {
    http: reqwest::Client,
    url: Url,
    authorization: String,
    request_timeout: Duration,
    retry: RetryPolicy,
}

impl std::fmt::Debug for GraphqlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphqlClient")
            .field("url", &self.url.as_str())
            .field("token", &"(redacted)")
            .finish()
    }
}

#[derive(Deserialize)]
struct Answer {
    data: Option<Value>,
    #[serde(default)]
    errors: Vec<AnswerError>,
}

#[derive(Deserialize)]
struct AnswerError {
    message: String,
}

/// An IP address of an app.
#[derive(Debug, Clone, Deserialize)]
pub struct IpAddress {
    pub id: Option<String>,
    pub address: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub region: Option<String>,
}

impl GraphqlClient {
    /// # Errors
    /// When `base_url` is not an absolute http(s) URL.
    pub fn new(
        base_url: &str,
        token: &str,
        request_timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<Self, ProviderError> {
        let mut url = Url::parse(base_url.trim_end_matches('/')).map_err(|e| {
            ProviderError::failed("fly GraphQL base URL", format!("{base_url}: {e}"))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(ProviderError::failed(
                "fly GraphQL base URL",
                format!("{base_url}: not an http(s) URL"),
            ));
        }
        url.path_segments_mut()
            .expect("http URLs have paths")
            .pop_if_empty()
            .push("graphql");
        let http = reqwest::Client::builder()
            .user_agent(concat!("flyplan/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::failed("fly GraphQL client", e.to_string()))?;
        Ok(GraphqlClient {
            http,
            url,
            authorization: authorization(token),
            request_timeout,
            retry: RetryPolicy {
                max_attempts: retry.max_attempts.max(1),
                ..retry
            },
        })
    }

    /// Run one operation and decode `data`. A query is retried on 429, 5xx
    /// and connection errors; a mutation is sent once, because a retry of
    /// one whose answer was lost could make a second address or
    /// certificate: callers observe before they try again. Any `errors` in
    /// the answer fail the call, as fly-go treats them.
    ///
    /// # Errors
    /// Transport errors, non-2xx statuses, GraphQL errors, and answers that
    /// do not decode.
    pub async fn run<T: DeserializeOwned>(
        &self,
        label: &str,
        document: &str,
        variables: Value,
    ) -> Result<T, ProviderError> {
        let name = operation_name(document);
        let what = format!("{label} (GraphQL {name})");
        let mutation = document.trim_start().starts_with("mutation");
        let attempts = if mutation { 1 } else { self.retry.max_attempts };
        let body = json!({ "query": document, "variables": variables });
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .http
                .post(self.url.clone())
                .header(reqwest::header::AUTHORIZATION, &self.authorization)
                .timeout(self.request_timeout)
                .json(&body)
                .send()
                .await;
            let failure = match sent {
                Ok(resp) => {
                    let status = resp.status();
                    let bytes = resp.bytes().await.unwrap_or_default();
                    tracing::debug!(request = %what, status = status.as_u16(), attempt, "fly GraphQL");
                    if status.is_success() {
                        return decode(&what, &bytes);
                    }
                    let retryable =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    let msg = format!("HTTP {}", status.as_u16());
                    if !retryable {
                        return Err(ProviderError::failed(&what, msg));
                    }
                    msg
                }
                Err(e) => {
                    if !(e.is_connect() || e.is_timeout() || e.is_request()) {
                        return Err(ProviderError::failed(&what, e.to_string()));
                    }
                    if e.is_timeout() {
                        "timed out".to_string()
                    } else {
                        "cannot connect".to_string()
                    }
                }
            };
            if attempt >= attempts {
                let suffix = if attempt > 1 {
                    format!(" (after {attempt} attempts)")
                } else {
                    String::new()
                };
                return Err(ProviderError::failed(&what, format!("{failure}{suffix}")));
            }
            tokio::time::sleep(self.retry.backoff(attempt)).await;
        }
    }

    /// The node id of the organization `slug`.
    ///
    /// # Errors
    /// As [`GraphqlClient::run`]; an organization that does not exist.
    pub async fn organization_id(&self, label: &str, slug: &str) -> Result<String, ProviderError> {
        let data: Value = self
            .run(label, ORGANIZATION, json!({ "slug": slug }))
            .await?;
        data["organization"]["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ProviderError::failed(label, format!("organization {slug} not found")))
    }

    /// The app's IP addresses.
    ///
    /// # Errors
    /// As [`GraphqlClient::run`].
    pub async fn ip_addresses(
        &self,
        label: &str,
        app: &str,
    ) -> Result<Vec<IpAddress>, ProviderError> {
        let data: Value = self
            .run(label, APP_IP_ADDRESSES, json!({ "appName": app }))
            .await?;
        let nodes = data["app"]["ipAddresses"]["nodes"].clone();
        if nodes.is_null() {
            return Ok(Vec::new());
        }
        serde_json::from_value(nodes)
            .map_err(|e| ProviderError::failed(label, format!("unexpected answer: {e}")))
    }

    /// Allocate a Flycast (`private_v6`) address, as `fly pg create` does.
    ///
    /// # Errors
    /// As [`GraphqlClient::run`].
    pub async fn allocate_private_v6(
        &self,
        label: &str,
        app: &str,
        org_id: &str,
        region: Option<&str>,
    ) -> Result<IpAddress, ProviderError> {
        let mut input = json!({ "appId": app, "type": "private_v6", "organizationId": org_id });
        if let Some(r) = region {
            input["region"] = json!(r);
        }
        let data: Value = self
            .run(label, ALLOCATE_IP_ADDRESS, json!({ "input": input }))
            .await?;
        serde_json::from_value(data["allocateIpAddress"]["ipAddress"].clone())
            .map_err(|e| ProviderError::failed(label, format!("unexpected answer: {e}")))
    }

    /// An SSH certificate for `public_key` from the organization's CA, for
    /// the principals postgres-flex's nodes log in as.
    ///
    /// # Errors
    /// As [`GraphqlClient::run`].
    pub async fn issue_certificate(
        &self,
        label: &str,
        org_id: &str,
        app: &str,
        public_key: &str,
    ) -> Result<String, ProviderError> {
        let input = json!({
            "organizationId": org_id,
            "principals": ["root", "fly", "postgres"],
            "appNames": [app],
            "publicKey": public_key,
            "validHours": 876_600,
        });
        let data: Value = self
            .run(label, ISSUE_CERTIFICATE, json!({ "input": input }))
            .await?;
        data["issueCertificate"]["certificate"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ProviderError::failed(label, "no certificate in the answer"))
    }

    /// The Consul URL postgres-flex keeps its cluster state in.
    ///
    /// # Errors
    /// As [`GraphqlClient::run`].
    pub async fn enable_postgres_consul(
        &self,
        label: &str,
        app: &str,
    ) -> Result<String, ProviderError> {
        let data: Value = self
            .run(label, ENABLE_POSTGRES_CONSUL, json!({ "appName": app }))
            .await?;
        data["enablePostgresConsul"]["consulUrl"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ProviderError::failed(label, "no Consul URL in the answer"))
    }
}

impl GraphqlClient {
    /// Fly's attachment records of `pg_app` on the consumer `app`.
    ///
    /// # Errors
    /// As [`GraphqlClient::run`].
    pub async fn postgres_attachments(
        &self,
        label: &str,
        app: &str,
        pg_app: &str,
    ) -> Result<Vec<AttachmentRecord>, ProviderError> {
        let data: Value = self
            .run(
                label,
                POSTGRES_ATTACHMENTS,
                json!({ "appName": app, "postgresAppName": pg_app }),
            )
            .await?;
        serde_json::from_value(data["postgresAttachments"]["nodes"].clone())
            .map_err(|e| ProviderError::failed(label, format!("unexpected answer: {e}")))
    }

    /// Record an attachment as `fly pg attach` does: `manualEntry: true`,
    /// because the role, database and secret are made by the caller.
    ///
    /// # Errors
    /// As [`GraphqlClient::run`].
    pub async fn attach_postgres_cluster(
        &self,
        label: &str,
        app: &str,
        pg_app: &str,
        database: &str,
        user: &str,
        variable: &str,
    ) -> Result<(), ProviderError> {
        let input = json!({
            "appId": app,
            "postgresClusterAppId": pg_app,
            "manualEntry": true,
            "databaseName": database,
            "databaseUser": user,
            "variableName": variable,
        });
        self.run::<Value>(label, ATTACH_POSTGRES_CLUSTER, json!({ "input": input }))
            .await
            .map(drop)
    }

    /// Remove an attachment record, as `fly pg detach` does.
    ///
    /// # Errors
    /// As [`GraphqlClient::run`].
    pub async fn detach_postgres_cluster(
        &self,
        label: &str,
        app: &str,
        pg_app: &str,
        attachment_id: &str,
    ) -> Result<(), ProviderError> {
        let input = json!({
            "appId": app,
            "postgresClusterAppId": pg_app,
            "postgresClusterAttachmentId": attachment_id,
        });
        self.run::<Value>(label, DETACH_POSTGRES_CLUSTER, json!({ "input": input }))
            .await
            .map(drop)
    }
}

/// The root field an operation asks for, to name it in errors.
fn operation_name(document: &str) -> &str {
    let after = document.split_once('{').map_or("", |(_, rest)| rest);
    after
        .trim_start()
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .unwrap_or("")
}

fn decode<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ProviderError> {
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| ProviderError::failed(what, format!("unexpected answer: {e}")))?;
    if !answer.errors.is_empty() {
        let messages: Vec<String> = answer.errors.into_iter().map(|e| e.message).collect();
        return Err(ProviderError::failed(what, messages.join("; ")));
    }
    serde_json::from_value(answer.data.unwrap_or(Value::Null))
        .map_err(|e| ProviderError::failed(what, format!("unexpected answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_named_by_their_root_field() {
        assert_eq!(operation_name(ORGANIZATION), "organization");
        assert_eq!(
            operation_name(ENABLE_POSTGRES_CONSUL),
            "enablePostgresConsul"
        );
        assert_eq!(operation_name(ALLOCATE_IP_ADDRESS), "allocateIpAddress");
        assert_eq!(operation_name(POSTGRES_ATTACHMENTS), "postgresAttachments");
    }

    #[test]
    fn graphql_errors_fail_the_call_with_their_messages() {
        let err = decode::<Value>(
            "x",
            br#"{"data":null,"errors":[{"message":"no such app"}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("no such app"), "{err}");
        let ok: Value = decode("x", br#"{"data":{"a":1}}"#).unwrap();
        assert_eq!(ok["a"], 1);
    }
}
