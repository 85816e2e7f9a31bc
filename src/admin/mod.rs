/*!
The admin listener: `/metrics` (Prometheus text), `/healthz` (the process is up), `/readyz`
(policy and opt-out data loaded), `/.well-known/jwks.json` (keys partners verify data-use
tokens with), the `/optouts` API, `POST /reload`, and behind the admin token the read-only
reports `/drift` (unknown fields per route) and `/shadow` (where the candidate policy decides
differently). It never proxies anything to a partner.
*/
use std::sync::Arc;

use async_trait::async_trait;
use gateway_core::policy::Limits;
use gateway_core::refusal::error_body;
use gateway_core::{Refusal, RefusalKind};
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::conn_limits;
use crate::gateway::{Gateway, Readiness};

pub mod optouts;
mod reload;

/// Largest admin request body (an opt-out change is a few hundred bytes).
const MAX_ADMIN_BODY: usize = 64 * 1024;

pub struct AdminApp {
    gateway: Arc<Gateway>,
    refused: RefusedTokens,
}

impl AdminApp {
    pub fn new(gateway: Arc<Gateway>) -> AdminApp {
        AdminApp {
            gateway,
            refused: RefusedTokens::default(),
        }
    }

    async fn route(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: &[u8],
    ) -> (u16, &'static str, Vec<u8>) {
        if path == "/optouts" || path.starts_with("/optouts/") {
            let (env_name, token) = self.admin_token();
            let backend = self.gateway.optout_backend();
            let response = optouts::handle(
                backend.as_deref(),
                token.as_deref(),
                &env_name,
                method,
                path,
                authorization,
                body,
            )
            .await;
            if response.status == 200 && method != "GET" {
                self.gateway.refresh_optout_gauge();
            }
            let status = if response.www_authenticate {
                401
            } else {
                response.status
            };
            return (status, JSON, response.body);
        }
        if path == "/drift" {
            return self.report(method, authorization, "drift", || {
                (200, self.gateway.drift.to_json())
            });
        }
        if path == "/shadow" {
            return self.report(method, authorization, "shadow", || {
                let active = self.gateway.active();
                match &active.shadow {
                    Some(_) => (200, self.gateway.shadow.to_json(&active)),
                    None => (404, serde_json::json!({
                        "error": "not_configured",
                        "message": "no shadow policy is configured: add `shadow: { policy: DIR }` to gateway.yaml",
                        "shadow": false,
                    })),
                }
            });
        }
        if path == "/reload" {
            let response = reload::handle(&self.gateway, method, authorization).await;
            let status = if response.www_authenticate {
                401
            } else {
                response.status
            };
            return (status, JSON, response.body);
        }
        match (method, path) {
            ("GET", "/metrics") => {
                // Replicas change opt-outs without an admin call here: refresh at each scrape.
                self.gateway.refresh_optout_gauge();
                self.gateway.refresh_optouts_staleness();
                (
                    200,
                    "text/plain; version=0.0.4",
                    self.gateway.metrics.render(),
                )
            }
            ("GET", "/healthz") => (200, JSON, br#"{"status":"ok"}"#.to_vec()),
            ("GET", "/readyz") => readyz(self.gateway.ready(), self.gateway.signing_disabled()),
            ("GET", "/.well-known/jwks.json") => (200, JSON, self.gateway.active().jwks()),
            (_, "/metrics" | "/healthz" | "/readyz" | "/.well-known/jwks.json") => (
                405,
                JSON,
                error_body("method_not_allowed", "only GET and HEAD are allowed here"),
            ),
            _ => (404, JSON, error_body("not_found", "no such admin endpoint")),
        }
    }
}

impl AdminApp {
    /// The name of the admin token's environment variable and its value, if set.
    fn admin_token(&self) -> (String, Option<String>) {
        let active = self.gateway.active();
        let env_name = active.policy.gateway.admin_token_env.clone();
        let token = env_name
            .as_deref()
            .and_then(|name| std::env::var(name).ok());
        (env_name.unwrap_or_else(|| "admin_token_env".into()), token)
    }

    /// A read-only report behind the admin token (`/drift`, `/shadow`): GET only.
    fn report(
        &self,
        method: &str,
        authorization: Option<&str>,
        api: &str,
        body: impl FnOnce() -> (u16, serde_json::Value),
    ) -> (u16, &'static str, Vec<u8>) {
        let (env_name, token) = self.admin_token();
        if let Err(refused) =
            optouts::check_admin_token(token.as_deref(), &env_name, authorization, api)
        {
            let status = if refused.www_authenticate {
                401
            } else {
                refused.status
            };
            return (status, JSON, refused.body);
        }
        if method != "GET" {
            return (
                405,
                JSON,
                error_body("method_not_allowed", "only GET and HEAD are allowed here"),
            );
        }
        let (status, body) = body();
        (status, JSON, serde_json::to_vec(&body).unwrap_or_default())
    }
}

const JSON: &str = "application/json";

/// Requests refused for a missing or wrong admin token: someone guessing the token shows in
/// the log, at most one line every [`REFUSED_LOG_EVERY_S`] seconds (a flood of guesses does
/// not flood the log), with the count so far and the endpoint of the latest (never its path's
/// customer id, nor anything of the token given).
#[derive(Default)]
struct RefusedTokens {
    count: std::sync::atomic::AtomicU64,
    last_log: std::sync::atomic::AtomicI64,
}

const REFUSED_LOG_EVERY_S: i64 = 10;

impl RefusedTokens {
    fn note(&self, method: &str, path: &str) {
        use std::sync::atomic::Ordering;
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let now = crate::gateway::now_unix() as i64;
        let last = self.last_log.load(Ordering::Relaxed);
        let due = now - last >= REFUSED_LOG_EVERY_S
            && self
                .last_log
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok();
        if due {
            let endpoint = if path.starts_with("/optouts") {
                "/optouts"
            } else {
                path
            };
            // The method is the caller's text: only a standard one is written as itself.
            let method = match method {
                "GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS" => method,
                _ => "other",
            };
            log::warn!(
                "admin API: {count} requests refused so far for a missing or wrong admin token (latest: {method} {endpoint})"
            );
        }
    }
}

/// The `Allow` header of a 405 from the admin listener: what each endpoint takes.
fn allowed_methods(path: &str) -> &'static str {
    match path {
        "/reload" => "POST",
        _ if path == "/optouts" || path.starts_with("/optouts/") => "GET, HEAD, PUT, DELETE",
        _ => "GET, HEAD",
    }
}

/// `/readyz`: 200 `ready`; 503 until policy and opt-outs are loaded; 200 `degraded` while a
/// PostgreSQL replica's copy is stale (`optout_routes` says whether they still serve). With
/// `signing: { disabled: true }` a 200 also says `"signing": "disabled"`.
fn readyz(readiness: Readiness, signing_disabled: bool) -> (u16, &'static str, Vec<u8>) {
    match readiness {
        Readiness::Ready if signing_disabled => (
            200,
            JSON,
            br#"{"status":"ready","signing":"disabled"}"#.to_vec(),
        ),
        Readiness::Ready => (200, JSON, br#"{"status":"ready"}"#.to_vec()),
        Readiness::NotReady(why) => (503, JSON, error_body("not_ready", &why)),
        Readiness::Degraded {
            staleness,
            max_staleness,
            refusing,
        } => {
            let mut body = serde_json::json!({
                "status": "degraded",
                "optouts": "stale",
                "staleness_seconds": staleness.as_secs(),
                "max_staleness_seconds": max_staleness.as_secs(),
                "optout_routes": if refusing { "refusing" } else { "serving" },
            });
            if signing_disabled {
                body["signing"] = "disabled".into();
            }
            (200, JSON, serde_json::to_vec(&body).unwrap_or_default())
        }
    }
}

/// The request body: at most [`MAX_ADMIN_BODY`] bytes (a longer announced length is refused
/// before any of it is read), whole within the policy's body deadline.
async fn read_body(session: &mut ServerSession, limits: &Limits) -> Result<Vec<u8>, Refusal> {
    let too_large = || {
        Refusal::new(
            RefusalKind::BodyTooLarge,
            "admin request bodies are limited to 64 KiB",
        )
    };
    let announced = session.req_header().headers.get("content-length");
    let announced = announced.and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_ADMIN_BODY as u64) {
        return Err(too_large());
    }
    let deadline = conn_limits::body_deadline(limits);
    let mut body = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, session.read_request_body()).await {
            Err(_) => return Err(conn_limits::body_timed_out(limits)),
            Ok(Ok(Some(chunk))) if body.len() + chunk.len() <= MAX_ADMIN_BODY => {
                body.extend_from_slice(&chunk)
            }
            Ok(Ok(Some(_))) => return Err(too_large()),
            Ok(Err(_)) => {
                return Err(Refusal::new(
                    RefusalKind::BadRequest,
                    "the request body could not be read",
                ))
            }
            Ok(Ok(None)) => return Ok(body),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        // The head is read: the connection's head limits stop applying to this request.
        conn_limits::head_done(session);
        let req = session.req_header();
        // HEAD is answered as GET, without the body (RFC 9110: wherever GET is).
        let head = req.method == http::Method::HEAD;
        let method = if head { "GET" } else { req.method.as_str() }.to_string();
        let path = req.uri.path().to_string();
        // Two `Authorization` headers are no credential: which one counts would be a guess.
        let mut given = req.headers.get_all("authorization").iter();
        let authorization = match (given.next(), given.next()) {
            (Some(one), None) => one.to_str().ok().map(str::to_string),
            (Some(_), Some(_)) => Some("(more than one authorization header)".to_string()),
            _ => None,
        };
        let limits = self.gateway.active().policy.gateway.limits;
        let (status, content_type, body) = match read_body(session, &limits).await {
            Ok(body) => {
                self.route(&method, &path, authorization.as_deref(), &body)
                    .await
            }
            Err(refusal) => {
                if refusal.kind == RefusalKind::RequestTimeout {
                    let closed = crate::metrics::ConnectionClosed::BodyTimeout;
                    self.gateway.metrics.connection_closed(closed);
                }
                // What is left of the body is not read: the connection closes after the answer.
                session.set_keepalive(None);
                let body = error_body(refusal.code(), refusal.message());
                (refusal.status(), JSON, body)
            }
        };
        conn_limits::request_done(session);
        let mut builder = Response::builder()
            .status(status)
            .header("content-type", content_type)
            .header("content-length", body.len());
        if status == 401 {
            builder = builder.header("www-authenticate", gateway_core::callers::BEARER_CHALLENGE);
            self.refused.note(&method, &path);
        }
        if status == 405 {
            builder = builder.header("allow", allowed_methods(&path));
        }
        let body = if head { Vec::new() } else { body };
        builder
            .body(body)
            .unwrap_or_else(|_| Response::new(Vec::new()))
    }
}
