//! Attachments flyplan did not make: those `fly pg attach` made (flyctl
//! `internal/command/postgres/attach.go:219-335`), known from Fly's
//! attachment records. Their role carries no flyplan mark and the cluster's
//! ledger has no entry for them, so they are found through the records of
//! each app of the organization (`postgresAttachments(appName,
//! postgresAppName)`, as `fly pg detach` reads them), and checked on the
//! leader: the role logs in, the database exists, the consumer app has the
//! variable.
//!
//! Fly never returns the variable's value, so flyplan cannot tell whether
//! it still holds the role's password: such an attachment is taken as
//! valid while those three hold. Once flyplan sets its password (any
//! change to it), it is checked as flyplan's own.

use std::collections::BTreeSet;

use reqwest::Method;

use super::api::ListAppsResponse;
use super::sql::FlyConsumers;
use crate::model::{Address, AttachmentSpec, Resource, Spec};
use crate::provider::pg::attachments::VALID;
use crate::provider::ProviderError;
use crate::sql::{self, Session};

/// Attachments recorded by Fly for apps of the organization other than the
/// cluster and those in `seen`.
pub(super) async fn observe(
    consumers: &FlyConsumers<'_>,
    session: &impl Session,
    seen: &BTreeSet<String>,
) -> Result<Vec<Resource>, ProviderError> {
    let org = &consumers.p.org_slug;
    let label = format!("list the apps of organization {org}");
    let apps: ListAppsResponse = consumers
        .p
        .client
        .request(&label, Method::GET, &["apps"])
        .query("org_slug", org)
        .send()
        .await?;
    let mut out = Vec::new();
    let mut databases: Option<BTreeSet<String>> = None;
    for app in apps.apps {
        let app = app.name;
        if app == consumers.cluster || seen.contains(&app) {
            continue;
        }
        let records = consumers.records(&app).await?;
        let Some(record) = records.into_iter().next() else {
            continue;
        };
        if databases.is_none() {
            databases = Some(
                sql::connectable_databases(session)
                    .await?
                    .into_iter()
                    .collect(),
            );
        }
        let role = sql::read_role(session, &record.database_user).await?;
        let has_variable = consumers.list_secrets(&app).await?.is_some_and(|s| {
            s.secrets
                .iter()
                .any(|s| s.name == record.environment_variable_name)
        });
        let credentials = match &role {
            None => "role missing",
            Some(r) if !r.spec.login => "login disabled outside flyplan",
            Some(_)
                if !databases
                    .as_ref()
                    .is_some_and(|d| d.contains(&record.database_name)) =>
            {
                "database missing"
            }
            Some(_) if !has_variable => "secret missing",
            Some(_) => VALID,
        };
        out.push(Resource::new(
            Address::attachment(&app),
            Spec::Attachment(AttachmentSpec {
                credentials: credentials.to_string(),
                database: record.database_name,
                superuser: role.map(|r| r.spec.superuser),
                user: record.database_user,
                variable: record.environment_variable_name,
            }),
        ));
    }
    Ok(out)
}
