//! The push trigger and the metrics endpoint of `flyplan watch --listen`:
//! `POST /hook` wakes the loop at once (a git hook or a forge webhook calls
//! it; the body is ignored, the loop fetches and acts on what it finds), and
//! `GET /metrics` serves the counters in Prometheus text format.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::record::WatchState;

/// Bind `addr` (port 0 picks a free port) and serve until the returned task
/// is aborted. Returns the bound address.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    state: Arc<Mutex<WatchState>>,
    wake: Arc<Notify>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            let wake = wake.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let reply = route(&req, &state, &wake);
                    async move { Ok::<_, Infallible>(reply) }
                });
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!("http connection: {e}");
                }
            });
        }
    });
    Ok((bound, handle))
}

fn route(
    req: &Request<Incoming>,
    state: &Mutex<WatchState>,
    wake: &Notify,
) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/hook") => {
            wake.notify_one();
            reply(
                StatusCode::ACCEPTED,
                "text/plain",
                "reconcile queued\n".into(),
            )
        }
        (&Method::GET, "/metrics") => {
            let text = state.lock().unwrap_or_else(|e| e.into_inner()).metrics();
            reply(StatusCode::OK, "text/plain; version=0.0.4", text)
        }
        (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        (_, "/hook" | "/metrics" | "/healthz") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "POST /hook, GET /metrics\n".into(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "POST /hook, GET /metrics\n".into(),
        ),
    }
}

fn reply(code: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}
