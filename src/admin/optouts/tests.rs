use super::*;

use crate::optout::OptOutStore;

/// The async handler, run to completion (the embedded store never waits).
fn handle(
    store: Option<&OptOutStore>,
    admin_token: Option<&str>,
    admin_token_env: &str,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> AdminResponse {
    let backend = store.map(|s| s as &dyn OptOutBackend);
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(super::handle(
            backend,
            admin_token,
            admin_token_env,
            method,
            path,
            authorization,
            body,
        ))
}

const TOKEN: &str = "s3cret-token";
const ENV: &str = "PARTNER_GATEWAY_ADMIN_TOKEN";
const AUTH: Option<&str> = Some("Bearer s3cret-token");

fn call(
    store: Option<&OptOutStore>,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let r = handle(store, Some(TOKEN), ENV, method, path, AUTH, body.as_bytes());
    let json: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON body");
    (r.status, json)
}

fn ok(id: &str, scopes: &[&str]) -> (u16, serde_json::Value) {
    (
        200,
        serde_json::json!({"customer_id": id, "scopes": scopes}),
    )
}

#[test]
fn token_unset_refuses_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let store = OptOutStore::open(tmp.path()).unwrap();
    for token in [None, Some("")] {
        for method in ["GET", "PUT", "DELETE"] {
            let r = handle(
                Some(&store),
                token,
                ENV,
                method,
                "/optouts/1",
                AUTH,
                br#"{"scopes":["partner_sharing"]}"#,
            );
            assert_eq!(r.status, 403, "{method}");
            let text = String::from_utf8(r.body).unwrap();
            assert!(
                text.contains("PARTNER_GATEWAY_ADMIN_TOKEN is not set"),
                "{text}"
            );
            assert!(text.contains("\"error\":\"admin_disabled\""), "{text}");
        }
    }
    assert_eq!(store.get("1").unwrap(), None);
}

#[test]
fn wrong_or_missing_credentials_get_401() {
    let tmp = tempfile::tempdir().unwrap();
    let store = OptOutStore::open(tmp.path()).unwrap();
    let cases: &[Option<&str>] = &[
        None,
        Some(""),
        Some("Bearer"),
        Some("Bearer "),
        Some("Bearer wrong"),
        Some("Bearer s3cret-token-and-more"),
        Some("Bearer s3cret-toke"),
        Some("Basic s3cret-token"),
        Some("s3cret-token"),
    ];
    for auth in cases {
        let r = handle(
            Some(&store),
            Some(TOKEN),
            ENV,
            "PUT",
            "/optouts/1",
            *auth,
            br#"{"scopes":["partner_sharing"]}"#,
        );
        assert_eq!(r.status, 401, "{auth:?}");
        assert!(r.www_authenticate, "{auth:?}");
        assert!(String::from_utf8(r.body)
            .unwrap()
            .contains("unauthenticated"));
    }
    assert_eq!(store.get("1").unwrap(), None);
    for auth in [
        "Bearer s3cret-token",
        "bearer s3cret-token",
        "BEARER  s3cret-token ",
    ] {
        let r = handle(
            Some(&store),
            Some(TOKEN),
            ENV,
            "GET",
            "/optouts/1",
            Some(auth),
            b"",
        );
        assert_eq!(r.status, 404, "{auth}");
    }
}

#[test]
fn put_get_delete_flow() {
    let tmp = tempfile::tempdir().unwrap();
    let store = OptOutStore::open(tmp.path()).unwrap();
    let s = Some(&store);
    assert_eq!(call(s, "GET", "/optouts/123", "").0, 404);
    assert_eq!(
        call(
            s,
            "PUT",
            "/optouts/123",
            r#"{"scopes": ["partner_sharing"]}"#
        ),
        ok("123", &["partner_sharing"])
    );
    assert_eq!(
        call(
            s,
            "PUT",
            "/optouts/123",
            r#"{"scopes": ["partner:acme-ship"]}"#
        ),
        ok("123", &["partner:acme-ship", "partner_sharing"])
    );
    assert_eq!(
        call(s, "GET", "/optouts/123", ""),
        ok("123", &["partner:acme-ship", "partner_sharing"])
    );
    assert!(
        store.is_opted_out("123", &[Scope::parse("partner_sharing").unwrap()]),
        "in force at once"
    );
    assert_eq!(
        call(
            s,
            "DELETE",
            "/optouts/123",
            r#"{"scopes": ["partner_sharing"]}"#
        ),
        ok("123", &["partner:acme-ship"])
    );
    assert_eq!(call(s, "DELETE", "/optouts/123", ""), ok("123", &[]));
    let (status, body) = call(s, "DELETE", "/optouts/123", "");
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
    assert_eq!(call(s, "GET", "/optouts/123", "").0, 404);
}

#[test]
fn ids_in_the_path_are_percent_decoded() {
    let tmp = tempfile::tempdir().unwrap();
    let store = OptOutStore::open(tmp.path()).unwrap();
    let s = Some(&store);
    let body = r#"{"scopes": ["partner_sharing"]}"#;
    assert_eq!(
        call(s, "PUT", "/optouts/a%2Fb%20c", body),
        ok("a/b c", &["partner_sharing"])
    );
    assert_eq!(
        call(s, "GET", "/optouts/a%2fb%20c?x=1", ""),
        ok("a/b c", &["partner_sharing"])
    );
    assert_eq!(
        call(s, "PUT", "/optouts/%C3%BC", body),
        ok("ü", &["partner_sharing"])
    );
    assert!(store.get("a/b c").unwrap().is_some());
}

#[test]
fn bad_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let store = OptOutStore::open(tmp.path()).unwrap();
    let long = format!("/optouts/{}", "x".repeat(257));
    let many = format!(
        r#"{{"scopes": [{}]}}"#,
        vec!["\"partner_sharing\""; MAX_SCOPES_PER_REQUEST + 1].join(",")
    );
    // (method, path, body, message fragment)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "PUT",
            "/optouts/1",
            "",
            r#"expected a body {"scopes": [..]}"#,
        ),
        ("PUT", "/optouts/1", "{", "invalid JSON body"),
        ("PUT", "/optouts/1", "[]", "expected a JSON object"),
        ("PUT", "/optouts/1", r#"{"scopes": []}"#, "scopes is empty"),
        (
            "PUT",
            "/optouts/1",
            r#"{"scopes": ["Partner!"]}"#,
            "invalid opt-out scope \"Partner!\"",
        ),
        (
            "PUT",
            "/optouts/1",
            r#"{"scopes": "partner_sharing"}"#,
            "expected a sequence",
        ),
        (
            "PUT",
            "/optouts/1",
            r#"{"scopes": ["partner_sharing"], "why": "x"}"#,
            "unknown field `why`",
        ),
        (
            "PUT",
            "/optouts/1",
            r#"{"scopes": ["partner_sharing"], "scopes": []}"#,
            "duplicate field `scopes`",
        ),
        ("PUT", "/optouts/1", &many, "too many scopes"),
        (
            "DELETE",
            "/optouts/1",
            r#"{"scopes": []}"#,
            "DELETE with no body removes every scope",
        ),
        ("DELETE", "/optouts/1", "null", "expected a JSON object"),
        ("GET", "/optouts/", "", "missing customer id"),
        ("GET", "/optouts", "", "missing customer id"),
        ("GET", "/optouts/a/b", "", "must be one path segment"),
        ("GET", "/optouts/a%zz", "", "malformed percent escape"),
        ("GET", "/optouts/a%2", "", "malformed percent escape"),
        ("GET", "/optouts/%FF", "", "not UTF-8"),
        ("GET", "/optouts/a%0Ab", "", "control character"),
        ("GET", &long, "", "longer than 256 bytes"),
    ];
    for (method, path, body, want) in cases {
        let (status, json) = call(Some(&store), method, path, body);
        assert_eq!(status, 400, "{method} {path} {body}: {json}");
        assert_eq!(json["error"], "bad_request");
        let message = json["message"].as_str().unwrap();
        assert!(message.contains(want), "{method} {path} {body}: {message}");
    }
    assert_eq!(store.customer_count().unwrap(), 0);
}

#[test]
fn methods_paths_and_readiness() {
    let tmp = tempfile::tempdir().unwrap();
    let store = OptOutStore::open(tmp.path()).unwrap();
    for method in ["POST", "PATCH", "HEAD"] {
        let (status, json) = call(Some(&store), method, "/optouts/1", "");
        assert_eq!(
            (status, json["error"].as_str()),
            (405, Some("method_not_allowed")),
            "{method}"
        );
    }
    assert_eq!(call(Some(&store), "GET", "/optoutsx/1", "").0, 404);
    for method in ["GET", "PUT", "DELETE"] {
        let (status, json) = call(
            None,
            method,
            "/optouts/1",
            r#"{"scopes": ["partner_sharing"]}"#,
        );
        assert_eq!(
            (status, json["error"].as_str()),
            (503, Some("not_ready")),
            "{method}"
        );
    }
}

#[test]
fn a_store_that_cannot_write_answers_500() {
    let tmp = tempfile::tempdir().unwrap();
    let store = OptOutStore::open(tmp.path()).unwrap();
    store
        .put("1", &[Scope::parse("partner_sharing").unwrap()])
        .unwrap();
    let reader = OptOutStore::open_read_only(tmp.path()).unwrap();
    let (status, json) = call(
        Some(&reader),
        "PUT",
        "/optouts/2",
        r#"{"scopes": ["partner_sharing"]}"#,
    );
    assert_eq!(
        (status, json["error"].as_str()),
        (500, Some("internal_error"))
    );
    assert_eq!(
        call(Some(&reader), "GET", "/optouts/1", ""),
        ok("1", &["partner_sharing"])
    );
}
