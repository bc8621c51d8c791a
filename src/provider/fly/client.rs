//! The HTTP client of the Fly Machines API: the token as flyctl sends it, per-request
//! timeout, bounded retries with exponential backoff and jitter on 429 (with
//! `Retry-After`), 5xx and connection errors, and errors that name the step
//! and the request. Never logs the token or a request body.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::api::ErrorResponse;
use crate::provider::ProviderError;

/// The header that carries a machine lease's nonce.
pub const LEASE_NONCE_HEADER: &str = "fly-machine-lease-nonce";

/// How often and how patiently a request is retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further one.
    pub base_delay: Duration,
    /// Upper bound of the exponential delay.
    pub max_delay: Duration,
    /// Upper bound of a server's `Retry-After`.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based): exponential, capped,
    /// with "equal jitter" (half fixed, half random) so that concurrent
    /// clients spread out.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        let jitter_ms = half.as_millis() as u64;
        let extra = if jitter_ms == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(rand::random_range(0..=jitter_ms))
        };
        half + extra
    }
}

/// A parsed `Retry-After`: delta seconds, or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let now = time::OffsetDateTime::now_utc();
    let secs = (when - now).whole_milliseconds().max(0) as u64;
    Some(Duration::from_millis(secs))
}

/// The `Authorization` value flyctl sends for a token: one that already
/// names the `FlyV1` scheme (what `fly tokens create` prints) keeps it;
/// any other is sent as `Bearer`, a `Bearer ` the user typed not doubled.
pub fn authorization(token: &str) -> String {
    let token = token.trim();
    if token.starts_with("FlyV1 ") {
        return token.to_string();
    }
    let bare = token.strip_prefix("Bearer ").unwrap_or(token).trim();
    format!("Bearer {bare}")
}

/// The Machines API client.
pub struct FlyClient {
    http: reqwest::Client,
    /// `…/v1`, without a trailing slash.
    base: Url,
    /// The whole `Authorization` header value (see [`authorization`]).
    token: String,
    request_timeout: Duration,
    retry: RetryPolicy,
}

impl std::fmt::Debug for FlyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlyClient")
            .field("base", &self.base.as_str())
            .field("token", &"(redacted)")
            .finish()
    }
}

impl FlyClient {
    /// # Errors
    /// When `base_url` is not an absolute http(s) URL or the TLS backend
    /// cannot be set up.
    pub fn new(
        base_url: &str,
        token: String,
        request_timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<Self, ProviderError> {
        let mut base = Url::parse(base_url.trim_end_matches('/'))
            .map_err(|e| ProviderError::failed("fly API base URL", format!("{base_url}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ProviderError::failed(
                "fly API base URL",
                format!("{base_url}: not an http(s) URL"),
            ));
        }
        base.path_segments_mut()
            .expect("http URLs have paths")
            .pop_if_empty()
            .push("v1");
        let http = reqwest::Client::builder()
            .user_agent(concat!("flyplan/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::failed("fly API client", e.to_string()))?;
        Ok(FlyClient {
            http,
            base,
            token: authorization(&token),
            request_timeout,
            retry: RetryPolicy {
                max_attempts: retry.max_attempts.max(1),
                ..retry
            },
        })
    }

    /// A request to `/v1/<segments...>`; `label` says which step or
    /// observation it serves ("create machine[iad:1]").
    pub fn request<'a>(&'a self, label: &'a str, method: Method, segments: &[&str]) -> Call<'a> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("http URLs have paths")
            .extend(segments);
        let shown = format!("/{}", segments.join("/"));
        Call {
            client: self,
            label,
            method,
            url,
            shown_path: shown,
            body: None,
            nonce: None,
            timeout: None,
            max_attempts: None,
        }
    }
}

/// A reply body of an API call that succeeded.
pub struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

/// One attempt at a call that creates something.
pub enum Attempt<T> {
    /// It answered with success.
    Done(T),
    /// A 5xx, 429 or transport error: it may or may not have happened, so
    /// look before trying again.
    Unsure(String),
}

/// One API call, built then sent.
#[derive(Clone)]
pub struct Call<'a> {
    client: &'a FlyClient,
    label: &'a str,
    method: Method,
    url: Url,
    shown_path: String,
    body: Option<Vec<u8>>,
    nonce: Option<String>,
    timeout: Option<Duration>,
    /// Overrides the retry policy's attempts.
    max_attempts: Option<u32>,
}

impl<'a> Call<'a> {
    /// Send once, never retried: for creates, whose retry after a lost
    /// answer could make a second one. A 4xx other than 429 is an error.
    ///
    /// # Errors
    /// A client error, or an answer that does not decode.
    pub async fn attempt<T: DeserializeOwned>(mut self) -> Result<Attempt<T>, ProviderError> {
        self.max_attempts = Some(1);
        let what = self.what();
        let mut unsure: Vec<StatusCode> = (500..=599)
            .filter_map(|c| StatusCode::from_u16(c).ok())
            .collect();
        unsure.extend([StatusCode::TOO_MANY_REQUESTS, StatusCode::REQUEST_TIMEOUT]);
        match self.send_raw(&unsure).await {
            Ok(reply) if reply.status.is_success() => decode(&what, &reply.body).map(Attempt::Done),
            Ok(reply) => Ok(Attempt::Unsure(format!(
                "HTTP {}: {}",
                reply.status.as_u16(),
                error_message(&reply.body)
            ))),
            Err(e) if e.to_string().contains("HTTP 4") => Err(e),
            Err(e) => Ok(Attempt::Unsure(e.to_string())),
        }
    }

    pub fn query(mut self, key: &str, value: impl AsRef<str>) -> Self {
        self.url.query_pairs_mut().append_pair(key, value.as_ref());
        self
    }

    /// A JSON body. Request bodies are never logged: they may hold secrets.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        self.body = Some(serde_json::to_vec(body).expect("request bodies serialise"));
        self
    }

    pub fn nonce(mut self, nonce: Option<&str>) -> Self {
        self.nonce = nonce.map(str::to_string);
        self
    }

    /// Sent once, never retried: for a command whose retry could run it
    /// twice.
    pub fn once(mut self) -> Self {
        self.max_attempts = Some(1);
        self
    }

    /// A timeout for this request instead of the client's (long polls).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// "create machine[iad:1] (POST /apps/x/machines)"
    pub fn what(&self) -> String {
        format!("{} ({} {})", self.label, self.method, self.shown_path)
    }

    /// Send and decode a JSON answer.
    ///
    /// # Errors
    /// Any status other than 2xx, after retries; an undecodable answer.
    pub async fn send<T: DeserializeOwned>(self) -> Result<T, ProviderError> {
        let what = self.what();
        let reply = self.send_raw(&[]).await?;
        decode(&what, &reply.body)
    }

    /// Send; a 404 is `None`.
    ///
    /// # Errors
    /// As [`Call::send`], except 404.
    pub async fn send_opt<T: DeserializeOwned>(self) -> Result<Option<T>, ProviderError> {
        let what = self.what();
        let reply = self.send_raw(&[StatusCode::NOT_FOUND]).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        decode(&what, &reply.body).map(Some)
    }

    /// Send and ignore the answer's body; returns the status so callers can
    /// tell an accepted status (listed in `accept`) from success.
    ///
    /// # Errors
    /// Any status other than 2xx or one in `accept`, after retries.
    pub async fn send_status(self, accept: &[StatusCode]) -> Result<StatusCode, ProviderError> {
        Ok(self.send_raw(accept).await?.status)
    }

    /// Send with retries. Statuses in `accept` are returned, not failed.
    ///
    /// # Errors
    /// Transport errors and non-2xx statuses not in `accept`, once retries
    /// are spent or not applicable.
    pub async fn send_raw(self, accept: &[StatusCode]) -> Result<Reply, ProviderError> {
        let what = self.what();
        let policy = &RetryPolicy {
            max_attempts: self.max_attempts.unwrap_or(self.client.retry.max_attempts),
            ..self.client.retry.clone()
        };
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut req = self
                .client
                .http
                .request(self.method.clone(), self.url.clone())
                .header(reqwest::header::AUTHORIZATION, &self.client.token)
                .timeout(self.timeout.unwrap_or(self.client.request_timeout))
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(nonce) = &self.nonce {
                req = req.header(LEASE_NONCE_HEADER, nonce);
            }
            if let Some(body) = &self.body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let retry_in: Duration;
            let failure: String;
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                    tracing::debug!(request = %what, status = status.as_u16(), attempt, "fly API");
                    if status.is_success() || accept.contains(&status) {
                        return Ok(Reply { status, body });
                    }
                    failure = format!("HTTP {}: {}", status.as_u16(), error_message(&body));
                    let retryable =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    if !retryable || attempt >= policy.max_attempts {
                        return Err(ProviderError::failed(what, with_attempts(failure, attempt)));
                    }
                    retry_in = match (status, retry_after(&headers)) {
                        (StatusCode::TOO_MANY_REQUESTS, Some(after)) => {
                            after.min(policy.max_retry_after)
                        }
                        _ => policy.backoff(attempt),
                    };
                }
                Err(err) => {
                    failure = transport_message(&err);
                    let retryable = err.is_connect() || err.is_timeout() || err.is_request();
                    if !retryable || attempt >= policy.max_attempts {
                        return Err(ProviderError::failed(what, with_attempts(failure, attempt)));
                    }
                    retry_in = policy.backoff(attempt);
                }
            }
            tracing::warn!(
                request = %what,
                attempt,
                retry_in_ms = retry_in.as_millis() as u64,
                "fly API call failed, retrying: {failure}"
            );
            tokio::time::sleep(retry_in).await;
        }
    }
}

fn with_attempts(message: String, attempts: u32) -> String {
    if attempts > 1 {
        format!("{message} (after {attempts} attempts)")
    } else {
        message
    }
}

fn decode<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ProviderError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"null".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| ProviderError::failed(what, format!("unexpected answer from the API: {e}")))
}

/// The API's own error message (`{"error": "..."}`), else the start of the body.
fn error_message(body: &[u8]) -> String {
    if let Ok(err) = serde_json::from_slice::<ErrorResponse>(body) {
        if let Some(msg) = err.error.or(err.message).filter(|m| !m.is_empty()) {
            return msg;
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(no message)".to_string();
    }
    let mut short: String = text.chars().take(300).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

/// A transport error with its causes, without the URL (it is in `what`).
fn transport_message(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_stays_within_jitter_bounds() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
            max_retry_after: Duration::from_secs(1),
        };
        for _ in 0..50 {
            let d1 = p.backoff(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d2 = p.backoff(2);
            assert!(d2 >= Duration::from_millis(100) && d2 <= Duration::from_millis(200));
            let d5 = p.backoff(5);
            assert!(d5 >= Duration::from_millis(150) && d5 <= Duration::from_millis(300));
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            RETRY_AFTER,
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn error_messages_prefer_the_api_error_field() {
        assert_eq!(
            error_message(br#"{"error":"volume is attached"}"#),
            "volume is attached"
        );
        assert_eq!(error_message(b""), "(no message)");
        assert_eq!(error_message(b"bad gateway"), "bad gateway");
    }

    #[test]
    fn flyv1_tokens_keep_their_scheme_and_others_go_as_bearer() {
        assert_eq!(
            authorization("FlyV1 fm2_abc,fm2_def"),
            "FlyV1 fm2_abc,fm2_def"
        );
        assert_eq!(authorization("  FlyV1 fm2_abc\n"), "FlyV1 fm2_abc");
        assert_eq!(authorization("plain-token"), "Bearer plain-token");
        assert_eq!(authorization("Bearer plain-token"), "Bearer plain-token");
    }

    #[test]
    fn base_url_gets_the_v1_prefix_and_segments_are_escaped() {
        let c = FlyClient::new(
            "http://127.0.0.1:9/",
            "t".into(),
            Duration::from_secs(1),
            RetryPolicy::default(),
        )
        .unwrap();
        let call = c.request("x", Method::GET, &["apps", "a b", "machines"]);
        assert_eq!(
            call.url.as_str(),
            "http://127.0.0.1:9/v1/apps/a%20b/machines"
        );
        assert_eq!(call.what(), "x (GET /apps/a b/machines)");
        assert!(!format!("{c:?}").contains("\"t\""));
    }
}
