/*!
The opt-out admin API (`/optouts/{customer_id}` on the admin listener) as one plain function:
the HTTP server hands it the request's method, path, `Authorization` header and body, and
sends back what it returns.

- Every call needs `Authorization: Bearer <token>`, the token being read from the environment
  variable `admin_token_env` names. Unset (or empty) → every call is refused with 403; a
  missing or wrong token → 401 with `WWW-Authenticate`. Tokens are compared in constant time.
- `PUT /optouts/{id}` `{"scopes": [..]}` adds scopes; 200 `{"customer_id", "scopes"}` with
  every scope the customer now has, sent only once the change is on disk.
- `GET /optouts/{id}` → 200 with the same shape, or 404 `not_found`.
- `DELETE /optouts/{id}` with no body removes every scope; with `{"scopes": [..]}` only those;
  200 with the scopes left (maybe `[]`), or 404 when the customer had none.
- The id is one path segment, percent-decoded (`/optouts/a%2Fb` is customer `a/b`).
- Bad JSON, unknown members, an empty or bad scope list, a bad id → 400 `bad_request`;
  store not loaded, or the opt-out database unreachable → 503 `not_ready` (nothing was
  acknowledged; retry); other methods → 405; a failed write → 500.
*/

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use gateway_core::optout::{validate_customer_id, Scope};

use crate::optout::{BackendError, OptOutBackend};

/// Most scopes one request may name.
pub const MAX_SCOPES_PER_REQUEST: usize = 256;

/// What to answer. The body is always JSON; when `www_authenticate` is set the server adds a
/// `WWW-Authenticate: Bearer` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminResponse {
    pub status: u16,
    pub body: Vec<u8>,
    pub www_authenticate: bool,
}

impl AdminResponse {
    pub fn json(status: u16, value: &serde_json::Value) -> AdminResponse {
        AdminResponse {
            status,
            body: serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec()),
            www_authenticate: false,
        }
    }

    pub fn error(status: u16, code: &str, message: &str) -> AdminResponse {
        AdminResponse {
            status,
            body: gateway_core::refusal::error_body(code, message),
            www_authenticate: false,
        }
    }

    fn scopes(id: &str, scopes: &[Scope]) -> AdminResponse {
        let scopes: Vec<&str> = scopes.iter().map(Scope::as_str).collect();
        Self::json(
            200,
            &serde_json::json!({"customer_id": id, "scopes": scopes}),
        )
    }
}

/// Handles one `/optouts...` request. `admin_token` is the value of the environment variable
/// named `admin_token_env` (`None` when unset).
pub async fn handle(
    store: Option<&dyn OptOutBackend>,
    admin_token: Option<&str>,
    admin_token_env: &str,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> AdminResponse {
    if let Err(refused) = check_admin_token(admin_token, admin_token_env, authorization, "opt-out")
    {
        return refused;
    }
    if !matches!(method, "GET" | "PUT" | "DELETE") {
        return AdminResponse::error(
            405,
            "method_not_allowed",
            &format!(
                "{method} is not allowed on /optouts/{{customer_id}} (use GET, PUT or DELETE)"
            ),
        );
    }
    let id = match customer_id_from_path(path) {
        Ok(id) => id,
        Err(Missing::NotOptouts) => {
            return AdminResponse::error(404, "not_found", "no such admin endpoint")
        }
        Err(Missing::Bad(message)) => return AdminResponse::error(400, "bad_request", &message),
    };
    let Some(store) = store else {
        return AdminResponse::error(503, "not_ready", "opt-out data is not loaded");
    };
    match method {
        "GET" => match store.get(&id).await {
            Ok(Some(scopes)) => AdminResponse::scopes(&id, &scopes),
            Ok(None) => not_found(&id),
            Err(e) => internal(&e),
        },
        "PUT" => put(store, &id, body).await,
        _ => delete(store, &id, body).await,
    }
}

/// `PUT /optouts/{customer_id}`: adds the body's scopes.
async fn put(store: &dyn OptOutBackend, id: &str, body: &[u8]) -> AdminResponse {
    // An opt-out no request could match would be acknowledged and never honoured.
    if let Err(e) = gateway_core::optout::id::check_new_opt_out_id(id) {
        return AdminResponse::error(
            400,
            "bad_request",
            &format!("invalid customer id: it is {e}, which no request can carry as a subject id"),
        );
    }
    let scopes = match scopes_from_body(body, true) {
        Ok(Some(scopes)) => scopes,
        Ok(None) => {
            return AdminResponse::error(400, "bad_request", r#"expected a body {"scopes": [..]}"#)
        }
        Err(message) => return AdminResponse::error(400, "bad_request", &message),
    };
    match store.put(id, &scopes).await {
        Ok(now) => {
            // An event without the id or the scope names (any text the body gives): neither
            // reaches a log line.
            log::info!(
                "opt-out recorded: {} scope(s) given (the customer now has {})",
                scopes.len(),
                now.len()
            );
            AdminResponse::scopes(id, &now)
        }
        Err(e) => internal(&e),
    }
}

/// `DELETE /optouts/{customer_id}`: removes the body's scopes, or every scope without a body.
async fn delete(store: &dyn OptOutBackend, id: &str, body: &[u8]) -> AdminResponse {
    let scopes = match scopes_from_body(body, false) {
        Ok(scopes) => scopes,
        Err(message) => return AdminResponse::error(400, "bad_request", &message),
    };
    match store.delete(id, scopes.as_deref()).await {
        Ok(Some(left)) => {
            let removed = scopes.map_or("every scope".into(), |s| format!("{} scope(s)", s.len()));
            log::info!(
                "opt-out removed: {removed} (the customer has {} left)",
                left.len()
            );
            AdminResponse::scopes(id, &left)
        }
        Ok(None) => not_found(id),
        Err(e) => internal(&e),
    }
}

fn not_found(id: &str) -> AdminResponse {
    AdminResponse::error(
        404,
        "not_found",
        &format!("customer {id:?} has no opt-outs"),
    )
}

fn internal(e: &BackendError) -> AdminResponse {
    log::error!("opt-out change failed: {e:#}");
    match e {
        // Nothing was acknowledged: the caller retries (PUT and DELETE are idempotent).
        BackendError::Unavailable(_) | BackendError::Unwritable(_) => {
            AdminResponse::error(503, "not_ready", &e.to_string())
        }
        BackendError::Failed(_) => AdminResponse::error(
            500,
            "internal_error",
            &format!("the opt-out store failed: {e}"),
        ),
    }
}

/// The admin bearer token check every admin endpoint but the public ones makes: `admin_token`
/// is the value of the variable `admin_token_env` names. Unset or empty → 403 `admin_disabled`
/// (`api` names what is disabled); missing or wrong → 401 with a `WWW-Authenticate` challenge.
pub fn check_admin_token(
    admin_token: Option<&str>,
    admin_token_env: &str,
    authorization: Option<&str>,
    api: &str,
) -> Result<(), AdminResponse> {
    let Some(token) = admin_token.filter(|t| !t.is_empty()) else {
        return Err(AdminResponse::error(
            403,
            "admin_disabled",
            &format!(
                "the {api} admin API is disabled: {} is not set or empty",
                gateway_core::policy::env_variable_unquoted(admin_token_env)
            ),
        ));
    };
    if !bearer_matches(authorization, token) {
        let mut response = AdminResponse::error(
            401,
            "unauthenticated",
            "missing or invalid admin token (send Authorization: Bearer <token>)",
        );
        response.www_authenticate = true;
        return Err(response);
    }
    Ok(())
}

/// `Authorization: Bearer <token>` (read as every bearer credential is) with the right token.
/// Both sides are hashed first so that neither the comparison nor the lengths leak timing.
fn bearer_matches(authorization: Option<&str>, token: &str) -> bool {
    let Ok(given) = gateway_core::callers::bearer_credentials(authorization) else {
        return false;
    };
    let given = Sha256::digest(given.as_bytes());
    let want = Sha256::digest(token.as_bytes());
    bool::from(given.ct_eq(&want))
}

enum Missing {
    /// Not an `/optouts` path at all.
    NotOptouts,
    Bad(String),
}

/// The percent-decoded, validated id of `/optouts/{id}` (a query string is ignored).
fn customer_id_from_path(path: &str) -> Result<String, Missing> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let rest = match path.strip_prefix("/optouts") {
        Some("") | Some("/") => {
            return Err(Missing::Bad(
                "missing customer id: use /optouts/{customer_id}".into(),
            ));
        }
        Some(rest) => rest.strip_prefix('/').ok_or(Missing::NotOptouts)?,
        None => return Err(Missing::NotOptouts),
    };
    if rest.contains('/') {
        return Err(Missing::Bad(format!(
            "customer id {rest:?} must be one path segment (percent-encode '/' as %2F)"
        )));
    }
    let bytes = rest.as_bytes();
    for (i, _) in rest.match_indices('%') {
        if !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err(Missing::Bad(format!(
                "customer id {rest:?} has a malformed percent escape"
            )));
        }
    }
    let id = percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .map_err(|_| {
            Missing::Bad(format!(
                "customer id {rest:?} is not UTF-8 once percent-decoded"
            ))
        })?
        .into_owned();
    validate_customer_id(&id).map_err(|e| Missing::Bad(format!("invalid customer id: {e}")))?;
    Ok(id)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = r#"an object {"scopes": [..]}"#)]
struct ScopesBody {
    scopes: Vec<String>,
}

/// `{"scopes": [..]}` with at least one valid scope, or `None` for no body at all (a body of
/// only whitespace is refused: on `DELETE` it would otherwise remove every scope). Scopes to
/// record (`PUT`) are read with [`Scope::parse_new`]; scopes to remove with [`Scope::parse`],
/// so that whatever a store holds can be removed.
fn scopes_from_body(body: &[u8], to_record: bool) -> Result<Option<Vec<Scope>>, String> {
    if body.is_empty() {
        return Ok(None);
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(r#"expected a JSON object {"scopes": [..]}"#.into());
    }
    let parsed: ScopesBody =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
    if parsed.scopes.is_empty() {
        return Err(
            "scopes is empty: list at least one scope (DELETE with no body removes every scope)"
                .into(),
        );
    }
    if parsed.scopes.len() > MAX_SCOPES_PER_REQUEST {
        return Err(format!(
            "too many scopes in one request (at most {MAX_SCOPES_PER_REQUEST})"
        ));
    }
    parsed
        .scopes
        .iter()
        .map(|s| {
            if to_record {
                Scope::parse_new(s)
            } else {
                Scope::parse(s)
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests;
