//! A scripted Fly Machines API on loopback for tests: every request is
//! checked against the published OpenAPI description, recorded, and
//! answered from an in-memory model of apps, machines, volumes and secrets;
//! chosen requests can be made to fail.

#![allow(dead_code)]

pub mod barman;
pub mod cluster;
pub mod flexctl;
pub mod flycheck;
pub mod graphql;
pub mod model;
pub mod openapi;
pub mod postgres;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

pub use model::{Model, Reply};
pub use openapi::Spec;

/// The token the scripted API accepts.
pub const TOKEN: &str = "test-token-not-a-secret";

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path without `/v1`.
    pub path: String,
    /// `POST /apps/{app_name}/machines`, when the description has it.
    pub op: Option<String>,
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
    pub nonce: Option<String>,
    /// The `Authorization` header as sent.
    pub authorization: Option<String>,
    /// A GraphQL query (reads nothing but reads).
    pub graphql_query: bool,
    /// An `exec` of `psql` that only ran a query, in a read-only
    /// transaction (see [`Model::psql`]).
    pub read_only_exec: bool,
    pub status: u16,
    pub at: Instant,
}

impl Recorded {
    /// A read: a `GET`, a GraphQL query (not a mutation), or a read-only
    /// `psql` through `exec`.
    pub fn is_get(&self) -> bool {
        self.method == "GET" || self.graphql_query || self.read_only_exec
    }
    pub fn op(&self) -> &str {
        self.op.as_deref().unwrap_or("(unknown)")
    }
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A scripted failure: calls number `from_call ..from_call + times` (1-based,
/// counted per operation) of `op` are answered with `status`.
#[derive(Debug, Clone)]
pub struct Fault {
    pub op: String,
    pub from_call: usize,
    pub times: usize,
    pub status: u16,
    pub message: String,
    pub retry_after: Option<String>,
    /// The request is carried out first and only its answer is the failure
    /// (a create whose answer was lost).
    pub after_work: bool,
}

impl Fault {
    /// `op` as `"POST /apps/{app_name}/machines"`.
    pub fn new(op: &str, from_call: usize, times: usize, status: u16, message: &str) -> Self {
        Fault {
            op: op.to_string(),
            from_call,
            times,
            status,
            message: message.to_string(),
            retry_after: None,
            after_work: false,
        }
    }
    /// Do the work, then answer with the failure.
    pub fn after_work(mut self) -> Self {
        self.after_work = true;
        self
    }
    pub fn retry_after(mut self, value: &str) -> Self {
        self.retry_after = Some(value.to_string());
        self
    }
}

/// Everything the server holds.
pub struct State {
    pub spec: Spec,
    pub model: Model,
    pub requests: Vec<Recorded>,
    pub violations: Vec<String>,
    faults: Vec<Fault>,
    calls: std::collections::BTreeMap<String, usize>,
}

/// The running server; stops when dropped.
pub struct FlyApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FlyApi {
    pub fn start() -> FlyApi {
        let state = Arc::new(Mutex::new(State {
            spec: Spec::load(),
            model: Model::default(),
            requests: Vec::new(),
            violations: Vec::new(),
            faults: Vec::new(),
            calls: Default::default(),
        }));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let state = shared.clone();
                            tokio::spawn(async move {
                                let svc = service_fn(move |req| handle(state.clone(), req));
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), svc)
                                    .await;
                            });
                        }
                    }
                }
            });
        });
        FlyApi {
            addr: addr_rx.recv().unwrap(),
            state,
            shutdown: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The base URL to give the provider (without `/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// Requests that change something (all but GET).
    pub fn changes(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| !r.is_get())
            .collect()
    }

    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    pub fn fail(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    /// An app to attach to, with no machines, in organization `personal`.
    pub fn add_consumer_app(&self, name: &str) {
        self.state().model.apps.insert(
            name.to_string(),
            model::AppRec {
                name: name.to_string(),
                org: "personal".to_string(),
                ..Default::default()
            },
        );
    }

    /// `flyplan --provider fly --state-dir STATE` with flyctl's variables
    /// pointing at this server, and no SQL route.
    pub fn cli(&self, state: &std::path::Path) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_flyplan"));
        c.args(["--provider", "fly", "--state-dir"])
            .arg(state)
            .env("FLY_API_TOKEN", TOKEN)
            .env("FLY_FLAPS_BASE_URL", self.base_url())
            .env("FLY_API_BASE_URL", self.base_url())
            .env_remove("FLYPLAN_FLY_PG_URL")
            .env_remove("PGPASSWORD");
        c
    }

    /// Panics unless the requests so far read roles through `exec` and
    /// changed nothing (only reads, see [`Recorded::is_get`]), all within
    /// the API description.
    pub fn assert_read_roles_and_changed_nothing(&self) {
        let reqs = self.requests();
        assert!(
            reqs.iter()
                .any(|r| r.op() == "POST /apps/{app_name}/machines/{machine_id}/exec"),
            "roles were read through exec"
        );
        let writes: Vec<String> = reqs
            .iter()
            .filter(|r| !r.is_get())
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(writes.is_empty(), "{writes:?}");
        self.assert_conformant();
    }

    /// Panics when a request did not match the API description.
    pub fn assert_conformant(&self) {
        let v = self.state().violations.clone();
        assert!(
            v.is_empty(),
            "requests outside the API description:\n{}",
            v.join("\n")
        );
    }
}

impl Drop for FlyApi {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let method = req.method().as_str().to_string();
    let uri = req.uri().clone();
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // flyctl sends `FlyV1 …` tokens with their own scheme, others as Bearer.
    let authorized = authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))
        || authorization.as_deref() == Some(&format!("FlyV1 {TOKEN}"));
    let nonce = req
        .headers()
        .get("fly-machine-lease-nonce")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let query: Vec<(String, String)> = uri.query().map(url_decode_pairs).unwrap_or_default();
    let raw_path = uri.path();
    let path = percent_decode(raw_path.strip_prefix("/v1").unwrap_or(raw_path));

    let mut st = state.lock().unwrap();
    if raw_path == "/graphql" {
        let reply = graphql_request(&mut st, &method, &authorization, &body);
        drop(st);
        return Ok(respond(reply));
    }
    let mut reply = if !raw_path.starts_with("/v1/") {
        st.violations
            .push(format!("{method} {raw_path}: the API lives under /v1"));
        Reply::error(404, "not found")
    } else if !authorized {
        st.violations
            .push(format!("{method} {path}: no or wrong bearer token"));
        Reply::error(401, "unauthorized")
    } else {
        Reply::empty(200)
    };
    let checked = st.spec.check(&method, &path, &query, &body);
    let op = match checked {
        Ok(op) => Some(op.key()),
        Err(errs) => {
            st.violations.extend(errs);
            if reply.status == 200 {
                reply = Reply::error(400, "request does not match the API description");
            }
            st.spec.find(&method, &path).map(|op| op.key())
        }
    };
    let json_body: Option<Value> = serde_json::from_slice(&body).ok();
    if reply.status == 200 {
        let key = op.clone().unwrap_or_default();
        let n = {
            let c = st.calls.entry(key.clone()).or_default();
            *c += 1;
            *c
        };
        let fault = st
            .faults
            .iter()
            .find(|f| f.op == key && n >= f.from_call && n < f.from_call + f.times)
            .cloned();
        let segs: Vec<String> = path
            .trim_matches('/')
            .split('/')
            .map(str::to_string)
            .collect();
        reply = match fault {
            Some(f) => {
                if f.after_work {
                    st.model
                        .handle(&key, &segs, &query, json_body.as_ref(), nonce.as_deref());
                }
                let mut r = Reply::error(f.status, &f.message);
                if let Some(ra) = f.retry_after {
                    r.headers.push(("retry-after".into(), ra));
                }
                r
            }
            None => st
                .model
                .handle(&key, &segs, &query, json_body.as_ref(), nonce.as_deref()),
        };
    }
    let read_only_exec = std::mem::take(&mut st.model.last_exec_read_only);
    st.requests.push(Recorded {
        method,
        path,
        op,
        query,
        body: json_body,
        nonce,
        authorization,
        graphql_query: false,
        read_only_exec,
        status: reply.status,
        at: Instant::now(),
    });
    drop(st);
    Ok(respond(reply))
}

/// `POST /graphql`: validated against flyctl's schema, recorded as
/// `GraphQL <root field>`, answered from the model (faults apply by that
/// name too).
fn graphql_request(
    st: &mut State,
    method: &str,
    authorization: &Option<String>,
    body: &Bytes,
) -> Reply {
    let json_body: Option<Value> = serde_json::from_slice(body).ok();
    let authorized = authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))
        || authorization.as_deref() == Some(&format!("FlyV1 {TOKEN}"));
    let mut op = None;
    let mut graphql_query = false;
    let reply = if method != "POST" {
        st.violations
            .push(format!("{method} /graphql: GraphQL is POST only"));
        Reply::error(405, "method not allowed")
    } else if !authorized {
        st.violations
            .push("POST /graphql: no or wrong token".into());
        Reply::error(401, "unauthorized")
    } else {
        let body = json_body.clone().unwrap_or(Value::Null);
        match graphql::check(&body) {
            Err(errs) => {
                st.violations.extend(errs);
                graphql::error("request does not validate against the schema")
            }
            Ok(checked) => {
                let key = format!("GraphQL {}", checked.root_fields.join(","));
                op = Some(key.clone());
                graphql_query = !checked.mutation;
                let n = {
                    let c = st.calls.entry(key.clone()).or_default();
                    *c += 1;
                    *c
                };
                let fault = st
                    .faults
                    .iter()
                    .find(|f| f.op == key && n >= f.from_call && n < f.from_call + f.times)
                    .cloned();
                match fault {
                    Some(f) => {
                        if f.after_work {
                            st.model.graphql(&checked, &body);
                        }
                        Reply::error(f.status, &f.message)
                    }
                    None => st.model.graphql(&checked, &body),
                }
            }
        }
    };
    st.requests.push(Recorded {
        method: method.to_string(),
        path: "/graphql".into(),
        op,
        query: Vec::new(),
        body: json_body,
        nonce: None,
        authorization: authorization.clone(),
        graphql_query,
        read_only_exec: false,
        status: reply.status,
        at: Instant::now(),
    });
    reply
}

fn respond(reply: Reply) -> Response<Full<Bytes>> {
    let mut resp = Response::builder().status(reply.status);
    if reply.body.is_some() {
        resp = resp.header("content-type", "application/json");
    }
    for (k, v) in &reply.headers {
        resp = resp.header(k.as_str(), v.as_str());
    }
    let bytes = reply
        .body
        .map(|b| Bytes::from(serde_json::to_vec(&b).unwrap()))
        .unwrap_or_default();
    resp.body(Full::new(bytes)).unwrap()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn url_decode_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}
