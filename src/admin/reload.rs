//! `POST /reload` on the admin listener: reload the policy now. Needs the admin bearer token
//! (the variable `admin_token_env` names; unset → 403, missing or wrong → 401). Answers 200
//! `{"version": ".."}` once the new policy serves, or 422 `invalid_policy` with every
//! `FILE:LINE: message` in `errors` (and in `message`); the previous policy then keeps serving.
use std::sync::Arc;

use gateway_core::refusal::error_body;
use gateway_core::RefusalKind;

use super::optouts::{check_admin_token, AdminResponse};
use crate::gateway::Gateway;

pub async fn handle(
    gateway: &Arc<Gateway>,
    method: &str,
    authorization: Option<&str>,
) -> AdminResponse {
    let env_name = gateway.active().policy.gateway.admin_token_env.clone();
    let token = env_name
        .as_deref()
        .and_then(|name| std::env::var(name).ok());
    let name = env_name.as_deref().unwrap_or("admin_token_env");
    if let Err(refused) = check_admin_token(token.as_deref(), name, authorization, "reload") {
        return refused;
    }
    if method != "POST" {
        return response(
            405,
            error_body("method_not_allowed", "only POST is allowed on /reload"),
        );
    }
    // Reading and checking files blocks: off the admin listener's threads.
    let gateway = gateway.clone();
    match tokio::task::spawn_blocking(move || crate::reload::reload(&gateway)).await {
        Ok(Ok(version)) => response(
            200,
            serde_json::to_vec(&serde_json::json!({ "version": version })).unwrap_or_default(),
        ),
        Ok(Err(rejection)) => {
            let message = format!(
                "the policy was not reloaded; the previous policy keeps serving:\n{}",
                rejection.errors.join("\n")
            );
            let body = serde_json::json!({
                "error": "invalid_policy",
                "message": message,
                "errors": rejection.errors,
            });
            response(422, serde_json::to_vec(&body).unwrap_or_default())
        }
        Err(e) => response(
            500,
            error_body(
                RefusalKind::Internal.code(),
                &format!("the reload did not finish: {e}"),
            ),
        ),
    }
}

fn response(status: u16, body: Vec<u8>) -> AdminResponse {
    AdminResponse {
        status,
        body,
        www_authenticate: false,
    }
}
