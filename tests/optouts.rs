//! Opt-outs end to end, through the real binary: the admin API, record dropping at business
//! partners (and not at contractors), 422/451/503, durability across `kill -9`, fail-closed
//! start on a damaged store, metrics, and the `optouts` and `explain` commands on the same store.
mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use util::*;

/// The environment variable the policy names for the admin token (unusual enough that the
/// test runner's own environment never sets it).
const TOKEN_ENV: &str = "PG_OPTOUTS_TEST_ADMIN_TOKEN";
const TOKEN: &str = "s3cret-admin-token";
const OPTOUTS_YAML: &str =
    "optouts: { path: data/optouts }\nadmin_token_env: PG_OPTOUTS_TEST_ADMIN_TOKEN\n";
const AUTH: &str = "Bearer s3cret-admin-token";

const CONTACTS: &str = "/v1/contacts";

/// A partner with a multi-record route (`contacts[*]`) and, for business partners, a
/// single-record route (`$`). `extra` is appended (e.g. `honor_optouts`).
fn partner(kind: &str, upstream: &str, extra: &str) -> String {
    let single = if kind == "contractor" {
        String::new()
    } else {
        "  - path: /v1/contact\n    methods: [POST]\n    records: $\n    subject: customer_id\n    allow: [customer_id, name]\n".to_string()
    };
    format!(
        r#"kind: {kind}
purpose: marketing
upstream: {upstream}
routes:
  - path: /v1/contacts
    methods: [POST]
    records: contacts[*]
    subject: customer_id
    allow:
      - contacts[*].name
      - contacts[*].customer_id
{single}allowed_callers: [orders-service]
{extra}"#
    )
}

/// A gateway with `bp` (business partner), `bp2` (business partner that also honours the new
/// use `new_use_2027`) and `ctr` (contractor), each with its own recording upstream.
struct Setup {
    bp: Mock,
    bp2: Mock,
    ctr: Mock,
    gw: Gateway,
}

fn setup_with(extra_gateway_yaml: &str, env: &[(&str, &str)]) -> Setup {
    let (bp, bp2, ctr) = (Mock::start(), Mock::start(), Mock::start());
    let gw = Gateway::start(
        extra_gateway_yaml,
        &[
            ("bp", &partner("business_partner", &bp.url(), "")),
            (
                "bp2",
                &partner(
                    "business_partner",
                    &bp2.url(),
                    "honor_optouts: [partner_sharing, \"partner:bp2\", new_use_2027]\n",
                ),
            ),
            ("ctr", &partner("contractor", &ctr.url(), "")),
        ],
        env,
    );
    Setup { bp, bp2, ctr, gw }
}

fn setup() -> Setup {
    setup_with(OPTOUTS_YAML, &[(TOKEN_ENV, TOKEN)])
}

fn admin(
    gw: &Gateway,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> Response {
    let mut headers = Vec::new();
    if let Some(auth) = auth {
        headers.push(("authorization", auth));
    }
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    http1::send(
        &gw.admin.to_string(),
        method,
        path,
        &headers,
        body.map(str::as_bytes),
    )
    .unwrap()
}

/// PUT /optouts/{id} with the right token; asserts 200 and returns the answer.
fn opt_out(gw: &Gateway, id: &str, scopes: &[&str]) -> Value {
    let body = json!({ "scopes": scopes }).to_string();
    let r = admin(
        gw,
        "PUT",
        &format!("/optouts/{id}"),
        Some(AUTH),
        Some(&body),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    r.json()
}

fn get_optout(gw: &Gateway, id: &str) -> Response {
    admin(gw, "GET", &format!("/optouts/{id}"), Some(AUTH), None)
}

/// A contacts body with these subjects (already JSON-encoded, e.g. `"\"1\""` or `"7"`).
fn contacts(ids: &[&str]) -> String {
    let records: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            format!(r#"{{"name": "N{i}", "customer_id": {id}, "email": "n{i}@example.com"}}"#)
        })
        .collect();
    format!(
        r#"{{"contacts": [{}], "campaign": "spring"}}"#,
        records.join(", ")
    )
}

/// What the partner receives for the records of `ids` (as in [`contacts`]) that pass, compact.
fn forwarded(ids: &[(usize, &str)]) -> String {
    let records: Vec<String> = ids
        .iter()
        .map(|(i, id)| format!(r#"{{"name":"N{i}","customer_id":{id}}}"#))
        .collect();
    format!(r#"{{"contacts":[{}]}}"#, records.join(","))
}

/// The body of the last request `mock` received, and how many it received.
fn last_body(mock: &Mock) -> (usize, String) {
    let received = mock.received();
    let body = received
        .last()
        .map(|r| r["body"].as_str().unwrap().to_string())
        .unwrap_or_default();
    (received.len(), body)
}

fn post(gw: &Gateway, partner: &str, path: &str, body: &str) -> Response {
    gw.post_json(&format!("/{partner}{path}"), body)
}

/// Posts `body` to `partner` and asserts 200, the records-dropped header, and the exact bytes
/// the partner received.
fn assert_forwarded(
    gw: &Gateway,
    mock: &Mock,
    partner: &str,
    body: &str,
    dropped: u64,
    expected: &str,
) {
    let before = mock.received().len();
    let r = post(gw, partner, CONTACTS, body);
    assert_eq!(
        r.status,
        200,
        "{partner}: {}",
        String::from_utf8_lossy(&r.body)
    );
    let header = (dropped > 0).then(|| dropped.to_string());
    assert_eq!(
        r.header("ohsoft-records-dropped").map(str::to_string),
        header,
        "{partner}: records-dropped header"
    );
    let (count, received) = last_body(mock);
    assert_eq!(
        count,
        before + 1,
        "{partner}: one more request at the partner"
    );
    assert_eq!(received, expected, "{partner}: what the partner received");
}

/// Sends and asserts a refusal that reached no partner.
fn assert_refused_nothing_sent(
    gw: &Gateway,
    mock: &Mock,
    partner: &str,
    path: &str,
    body: &str,
    status: u16,
    code: &str,
) {
    let before = mock.received().len();
    let r = post(gw, partner, path, body);
    assert_refused(&r, status, code);
    assert_eq!(
        mock.received().len(),
        before,
        "{partner}{path}: a refused request reached the partner (body {body})"
    );
}

/// Polls `f` until it holds (at most 15 s).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting until {what}");
}

fn run(args: &[&str], policy: &Path, stdin: Option<&str>) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .arg("--policy")
        .arg(policy)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    output_with_stdin(&mut command, stdin.unwrap_or_default().as_bytes())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn optouts_cmd(policy: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command
        .arg("optouts")
        .arg(args[0])
        .arg("--policy")
        .arg(policy);
    command.args(&args[1..]);
    command.output().unwrap()
}

fn write_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn an_api_opt_out_applies_to_the_very_next_request_and_can_be_removed() {
    let s = setup();
    let gw = &s.gw;
    let body = contacts(&["\"1\"", "\"2\"", "\"3\""]);
    let all = forwarded(&[(0, "\"1\""), (1, "\"2\""), (2, "\"3\"")]);
    let without_2 = forwarded(&[(0, "\"1\""), (2, "\"3\"")]);
    assert_forwarded(gw, &s.bp, "bp", &body, 0, &all);

    assert_eq!(
        opt_out(gw, "2", &["partner_sharing"]),
        json!({"customer_id": "2", "scopes": ["partner_sharing"]})
    );
    // The very next request: customer 2 is gone, the others intact and in order.
    assert_forwarded(gw, &s.bp, "bp", &body, 1, &without_2);
    assert_forwarded(gw, &s.bp2, "bp2", &body, 1, &without_2);
    // The contractor still receives every record.
    assert_forwarded(gw, &s.ctr, "ctr", &body, 0, &all);

    let r = get_optout(gw, "2");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"customer_id": "2", "scopes": ["partner_sharing"]})
    );

    // Adding a scope answers with every scope the customer now has (sorted).
    assert_eq!(
        opt_out(gw, "2", &["partner:bp"]),
        json!({"customer_id": "2", "scopes": ["partner:bp", "partner_sharing"]})
    );
    // Idempotent.
    assert_eq!(
        opt_out(gw, "2", &["partner:bp"]),
        json!({"customer_id": "2", "scopes": ["partner:bp", "partner_sharing"]})
    );

    // DELETE some scopes: partner_sharing goes, partner:bp stays.
    let r = admin(
        gw,
        "DELETE",
        "/optouts/2",
        Some(AUTH),
        Some(r#"{"scopes": ["partner_sharing"]}"#),
    );
    assert_eq!(r.status, 200, "{}", text(&r.body));
    assert_eq!(
        r.json(),
        json!({"customer_id": "2", "scopes": ["partner:bp"]})
    );
    assert_forwarded(gw, &s.bp, "bp", &body, 1, &without_2);
    assert_forwarded(gw, &s.bp2, "bp2", &body, 0, &all);

    // DELETE all: the very next request includes customer 2 again.
    let r = admin(gw, "DELETE", "/optouts/2", Some(AUTH), None);
    assert_eq!(r.status, 200, "{}", text(&r.body));
    assert_eq!(r.json(), json!({"customer_id": "2", "scopes": []}));
    assert_forwarded(gw, &s.bp, "bp", &body, 0, &all);

    assert_refused(&get_optout(gw, "2"), 404, "not_found");
    assert_refused(
        &admin(gw, "DELETE", "/optouts/2", Some(AUTH), None),
        404,
        "not_found",
    );
    assert_refused(&get_optout(gw, "never-seen"), 404, "not_found");

    // Removing the last scope by name leaves the customer with none: GET is 404 again.
    opt_out(gw, "3", &["partner_sharing"]);
    let r = admin(
        gw,
        "DELETE",
        "/optouts/3",
        Some(AUTH),
        Some(r#"{"scopes": ["partner_sharing", "research"]}"#),
    );
    assert_eq!(r.status, 200, "{}", text(&r.body));
    assert_eq!(r.json(), json!({"customer_id": "3", "scopes": []}));
    assert_refused(&get_optout(gw, "3"), 404, "not_found");
    assert_forwarded(gw, &s.bp, "bp", &body, 0, &all);

    // Ids are one percent-decoded path segment.
    assert_eq!(
        opt_out(gw, "a%2Fb%20c", &["partner_sharing"]),
        json!({"customer_id": "a/b c", "scopes": ["partner_sharing"]})
    );
    assert_forwarded(
        gw,
        &s.bp,
        "bp",
        &contacts(&["\"a/b c\"", "\"1\""]),
        1,
        &forwarded(&[(1, "\"1\"")]),
    );
}

#[test]
fn partner_scopes_and_new_uses_are_honoured_only_where_they_apply() {
    let s = setup();
    let gw = &s.gw;
    let body = contacts(&["\"1\"", "\"2\"", "\"3\""]);
    let all = forwarded(&[(0, "\"1\""), (1, "\"2\""), (2, "\"3\"")]);

    // partner:bp drops customer 1 at bp only.
    opt_out(gw, "1", &["partner:bp"]);
    // new_use_2027 is honoured only by bp2, which lists it in honor_optouts.
    opt_out(gw, "3", &["new_use_2027"]);
    // A scope for a partner that does not exist (or another partner) changes nothing here.
    opt_out(gw, "2", &["partner:someone-else", "research"]);

    assert_forwarded(
        gw,
        &s.bp,
        "bp",
        &body,
        1,
        &forwarded(&[(1, "\"2\""), (2, "\"3\"")]),
    );
    assert_forwarded(
        gw,
        &s.bp2,
        "bp2",
        &body,
        1,
        &forwarded(&[(0, "\"1\""), (1, "\"2\"")]),
    );
    assert_forwarded(gw, &s.ctr, "ctr", &body, 0, &all);

    // partner:bp2 drops at bp2 only.
    opt_out(gw, "2", &["partner:bp2"]);
    assert_forwarded(
        gw,
        &s.bp,
        "bp",
        &body,
        1,
        &forwarded(&[(1, "\"2\""), (2, "\"3\"")]),
    );
    assert_forwarded(gw, &s.bp2, "bp2", &body, 2, &forwarded(&[(0, "\"1\"")]));
    assert_forwarded(gw, &s.ctr, "ctr", &body, 0, &all);
}

#[test]
fn subject_ids_compare_as_strings_and_bad_ones_are_refused() {
    let s = setup();
    let gw = &s.gw;
    opt_out(gw, "123", &["partner_sharing"]);
    opt_out(gw, "-7", &["partner_sharing"]);
    opt_out(gw, "abc", &["partner_sharing"]);

    // 123 (a number) is customer "123"; "-7" and -7 are one customer; escapes are undone.
    assert_forwarded(
        gw,
        &s.bp,
        "bp",
        &contacts(&["123", "\"124\"", "-7", "\"\\u0061bc\"", "1230", "\"ABC\""]),
        4,
        &forwarded(&[(1, "\"124\""), (4, "1230")]),
    );
    assert_forwarded(
        gw,
        &s.bp,
        "bp",
        &contacts(&["\"123\"", "\"-7\""]),
        2,
        &forwarded(&[]),
    );

    // Not a subject id: 422 subject_missing, nothing at the partner, at either route kind.
    for bad in [
        "123.0",
        "1e2",
        "1E2",
        "-0.5",
        "true",
        "false",
        "null",
        "\"\"",
        // Forms a partner may read as another customer: "0123" and " 123" as 123.
        "\"0123\"",
        "\" 123\"",
        "9007199254740993",
    ] {
        let body = contacts(&["\"124\"", bad]);
        assert_refused_nothing_sent(gw, &s.bp, "bp", CONTACTS, &body, 422, "subject_missing");
        let single = format!(r#"{{"customer_id": {bad}, "name": "X"}}"#);
        assert_refused_nothing_sent(
            gw,
            &s.bp,
            "bp",
            "/v1/contact",
            &single,
            422,
            "subject_missing",
        );
    }
    // An array or object subject is no id either (422), even where the policy allows
    // `customer_id` as a scalar path.
    for bad in ["[123]", "{\"id\": 123}"] {
        let body = contacts(&["\"124\"", bad]);
        assert_refused_nothing_sent(gw, &s.bp, "bp", CONTACTS, &body, 422, "subject_missing");
        let single = format!(r#"{{"customer_id": {bad}, "name": "X"}}"#);
        assert_refused_nothing_sent(
            gw,
            &s.bp,
            "bp",
            "/v1/contact",
            &single,
            422,
            "subject_missing",
        );
    }
    // A contractor honours no opt-outs, so it needs no subject: the record passes as written.
    assert_forwarded(
        gw,
        &s.ctr,
        "ctr",
        &contacts(&["1e2", "null", "123"]),
        0,
        &forwarded(&[(0, "1e2"), (1, "null"), (2, "123")]),
    );
    // Missing altogether.
    assert_refused_nothing_sent(
        gw,
        &s.bp,
        "bp",
        CONTACTS,
        r#"{"contacts": [{"customer_id": "124", "name": "A"}, {"name": "B"}]}"#,
        422,
        "subject_missing",
    );
    assert_refused_nothing_sent(
        gw,
        &s.bp,
        "bp",
        "/v1/contact",
        r#"{"name": "B"}"#,
        422,
        "subject_missing",
    );
    // A subject key twice is a duplicate key: 400, also when the copies agree.
    for dup in [
        r#"{"contacts": [{"customer_id": "124", "customer_id": "123", "name": "A"}]}"#,
        r#"{"contacts": [{"customer_id": "124", "name": "A", "customer_id": "124"}]}"#,
        r#"{"contacts": [{"customer_id": 124, "customer_\u0069d": "124"}]}"#,
    ] {
        assert_refused_nothing_sent(gw, &s.bp, "bp", CONTACTS, dup, 400, "bad_request");
    }
    assert_eq!(s.bp.received().len(), 2);
}

#[test]
fn a_single_record_of_an_opted_out_customer_is_451() {
    let s = setup();
    let gw = &s.gw;
    opt_out(gw, "9", &["partner_sharing"]);
    for body in [
        r#"{"customer_id": "9", "name": "Nine", "email": "nine@example.com"}"#,
        r#"{"customer_id": 9, "name": "Nine"}"#,
    ] {
        assert_refused_nothing_sent(
            gw,
            &s.bp,
            "bp",
            "/v1/contact",
            body,
            451,
            "subject_opted_out",
        );
    }
    // Another customer passes.
    let r = post(
        gw,
        "bp",
        "/v1/contact",
        r#"{"customer_id": 10, "name": "Ten", "x": 1}"#,
    );
    assert_eq!(r.status, 200, "{}", text(&r.body));
    assert_eq!(r.header("ohsoft-records-dropped"), None);
    assert_eq!(s.bp.only_body(), r#"{"customer_id":10,"name":"Ten"}"#);
    let metrics = gw.metrics();
    assert_eq!(
        metric(
            &metrics,
            r#"partner_gateway_requests_refused_total{partner="bp",reason="subject_opted_out"}"#
        ),
        2.0,
        "{metrics}"
    );
}

/// When every record is dropped the request is still forwarded, with an empty array where the
/// records were: the partner's API sees a well-formed (empty) request, the caller gets the
/// partner's answer plus `ohsoft-records-dropped: N` saying why nothing was shared.
#[test]
fn when_every_record_is_dropped_the_partner_receives_an_empty_array() {
    let s = setup();
    let gw = &s.gw;
    opt_out(gw, "1", &["partner_sharing"]);
    opt_out(gw, "2", &["partner:bp"]);
    let body = contacts(&["\"1\"", "2"]);
    assert_forwarded(gw, &s.bp, "bp", &body, 2, r#"{"contacts":[]}"#);
    let metrics = gw.metrics();
    for (series, value) in [
        (
            r#"partner_gateway_records_dropped_total{partner="bp",reason="opted_out",route="/v1/contacts"}"#,
            2.0,
        ),
        (
            r#"partner_gateway_records_forwarded_total{partner="bp",route="/v1/contacts"}"#,
            0.0,
        ),
        (
            r#"partner_gateway_requests_total{partner="bp",route="/v1/contacts",status="200"}"#,
            1.0,
        ),
    ] {
        assert_eq!(metric(&metrics, series), value, "{series}\n{metrics}");
    }
}

#[test]
fn records_after_a_primed_key_order_are_still_judged_one_by_one() {
    // Compact records repeat their key order (the filter's fast path); the ones that then
    // spell, move, re-case or repeat the subject are judged as if read alone.
    let s = setup();
    let gw = &s.gw;
    opt_out(gw, "c-1", &["partner_sharing"]);
    opt_out(gw, "7", &["partner_sharing"]);
    let primer = r#"{"customer_id":"c-2","name":"A"}"#;
    let body = format!(
        r#"{{"contacts":[{primer},{primer},{}]}}"#,
        [
            r#"{"customer\u005fid":"c-1","name":"C"}"#,
            r#"{"name":"D","customer_id":"c-1"}"#,
            r#"{"customer_id":"C-1","name":"E"}"#,
            r#"{"customer_id":"c\u002d1","name":"F"}"#,
            r#"{"customer_id":7,"name":"G"}"#,
            r#"{"customer_id":"c-3","names":"x","nam":"y","name":"H"}"#,
            r#"{"customer_id":"c-3","n\u0061me":"I"}"#,
        ]
        .join(",")
    );
    let expected = format!(
        r#"{{"contacts":[{primer},{primer},{},{}]}}"#,
        r#"{"customer_id":"c-3","name":"H"}"#, r#"{"customer_id":"c-3","n\u0061me":"I"}"#
    );
    assert_forwarded(gw, &s.bp, "bp", &body, 5, &expected);
    for trick in [
        r#"{"customer_id":"c-2","name":"B","customer_id":"c-1"}"#,
        r#"{"customer_id":"c-2","customer_id":"c-1"}"#,
        r#"{"customer_id":"c-2","name":"B","customer\u005fid":"c-1"}"#,
        r#"{"customer_id":"c-2","name":"B","Customer_Id":"c-1"}"#,
        r#"{"customer_id":"c-2","name":"B","cuſtomer_id":"c-1"}"#,
        r#"{"customer_id":"c-2","name":"B","n\u0061me":"C"}"#,
    ] {
        let body = format!(r#"{{"contacts":[{primer},{primer},{trick}]}}"#);
        assert_refused_nothing_sent(gw, &s.bp, "bp", CONTACTS, &body, 400, "bad_request");
    }
    for trick in [
        r#"{"name":"B"}"#,
        r#"{"customer_id":"_7","name":"B"}"#,
        r#"{"customer_id":"+_7","name":"B"}"#,
        r#"{"customer_id":"7.0","name":"B"}"#,
        r#"{"customer_id":"\uff17","name":"B"}"#,
    ] {
        let body = format!(r#"{{"contacts":[{primer},{primer},{trick}]}}"#);
        assert_refused_nothing_sent(gw, &s.bp, "bp", CONTACTS, &body, 422, "subject_missing");
    }
}

#[test]
fn admin_api_needs_the_token_and_valid_input() {
    // The policy names a token variable, but it is not set: every /optouts call is refused.
    let s = setup_with(OPTOUTS_YAML, &[]);
    for (method, body) in [
        ("PUT", Some(r#"{"scopes": ["partner_sharing"]}"#)),
        ("GET", None),
        ("DELETE", None),
    ] {
        let r = admin(&s.gw, method, "/optouts/1", Some(AUTH), body);
        assert_refused(&r, 403, "admin_disabled");
        assert!(text(&r.body).contains(TOKEN_ENV), "{}", text(&r.body));
    }
    // The admin listener's other endpoints are unaffected.
    assert_eq!(s.gw.admin_get("/readyz").status, 200);
    drop(s);

    // No admin_token_env in the policy at all: refused too.
    let s = setup_with("optouts: { path: data/optouts }\n", &[(TOKEN_ENV, TOKEN)]);
    let r = admin(
        &s.gw,
        "PUT",
        "/optouts/1",
        Some(AUTH),
        Some(r#"{"scopes": ["partner_sharing"]}"#),
    );
    assert_refused(&r, 403, "admin_disabled");
    drop(s);

    let s = setup();
    let gw = &s.gw;
    let put = Some(r#"{"scopes": ["partner_sharing"]}"#);
    for auth in [
        None,
        Some("Bearer wrong-token"),
        Some("Bearer s3cret-admin-token-and-more"),
        Some("Basic czNjcmV0LWFkbWluLXRva2Vu"),
        Some("s3cret-admin-token"),
        Some("Bearer"),
    ] {
        for (method, body) in [("PUT", put), ("GET", None), ("DELETE", None)] {
            let r = admin(gw, method, "/optouts/1", auth, body);
            assert_refused(&r, 401, "unauthenticated");
            assert!(
                r.header("www-authenticate")
                    .is_some_and(|v| v.starts_with("Bearer")),
                "{method} {auth:?}: {:?}",
                r.headers
            );
        }
    }
    // Two Authorization headers are no credential, even when one of them is right.
    let r = http1::send(
        &gw.admin.to_string(),
        "GET",
        "/optouts/1",
        &[("authorization", AUTH), ("authorization", "Bearer wrong")],
        None,
    )
    .unwrap();
    assert_refused(&r, 401, "unauthenticated");
    // The scheme is case-insensitive.
    let r = admin(
        gw,
        "GET",
        "/optouts/1",
        Some("bearer s3cret-admin-token"),
        None,
    );
    assert_refused(&r, 404, "not_found");
    // An opt-out no request could ever match is refused, not acknowledged and never honoured.
    for (path, body) in [
        ("/optouts/0456", r#"{"scopes": ["partner_sharing"]}"#),
        ("/optouts/%20pad-1%20", r#"{"scopes": ["partner_sharing"]}"#),
        ("/optouts/zoe%CC%81", r#"{"scopes": ["partner_sharing"]}"#),
        (
            "/optouts/c-1%E2%80%8B",
            r#"{"scopes": ["partner_sharing"]}"#,
        ),
        ("/optouts/c-1", r#"{"scopes": ["Partner_Sharing"]}"#),
    ] {
        let r = admin(gw, "PUT", path, Some(AUTH), Some(body));
        assert_refused(&r, 400, "bad_request");
    }

    for bad in [
        "{",
        "not json",
        "[\"partner_sharing\"]",
        r#"{"scopes": "partner_sharing"}"#,
        r#"{"scopes": []}"#,
        r#"{"scopes": ["partner sharing"]}"#,
        r#"{"scopes": ["partner sharing"]}"#,
        r#"{"scopes": ["partner:"]}"#,
        r#"{"scopes": [""]}"#,
        r#"{"scopes": [1]}"#,
        r#"{"scopes": ["partner_sharing"], "extra": 1}"#,
        r#"{"scope": ["partner_sharing"]}"#,
        "",
    ] {
        let r = admin(gw, "PUT", "/optouts/1", Some(AUTH), Some(bad));
        assert_refused(&r, 400, "bad_request");
    }
    // A body of only whitespace is not "no body": it removes nothing.
    for bad in [
        "{",
        r#"{"scopes": []}"#,
        r#"{"scopes": ["BAD!"]}"#,
        "   ",
        "\r\n",
    ] {
        let r = admin(gw, "DELETE", "/optouts/1", Some(AUTH), Some(bad));
        assert_refused(&r, 400, "bad_request");
    }
    // Bad ids.
    for path in [
        "/optouts/",
        "/optouts",
        "/optouts/a/b",
        "/optouts/%zz",
        "/optouts/a%0Ab",
    ] {
        let r = admin(gw, "PUT", path, Some(AUTH), put);
        assert_refused(&r, 400, "bad_request");
    }
    let huge = format!(
        r#"{{"scopes": ["partner_sharing"], "pad": "{}"}}"#,
        "x".repeat(70_000)
    );
    let r = admin(gw, "PUT", "/optouts/1", Some(AUTH), Some(&huge));
    assert_refused(&r, 413, "body_too_large");
    let long_id = format!("/optouts/{}", "9".repeat(300));
    assert_refused(
        &admin(gw, "PUT", &long_id, Some(AUTH), put),
        400,
        "bad_request",
    );
    let r = admin(gw, "POST", "/optouts/1", Some(AUTH), put);
    assert_refused(&r, 405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD, PUT, DELETE"));
    // Nothing of that was stored.
    assert_refused(&get_optout(gw, "1"), 404, "not_found");
    let metrics = gw.metrics();
    assert_eq!(
        metric(
            &metrics,
            r#"partner_gateway_optouts{scope="partner_sharing"}"#
        ),
        0.0
    );
}

#[test]
fn acknowledged_opt_outs_survive_kill_9() {
    let mut s = setup();
    let body = contacts(&["\"c0\"", "\"c1\"", "\"c2\"", "\"c3\"", "\"keep\"", "\"c4\""]);
    for round in 0..5 {
        let id = format!("c{round}");
        opt_out(&s.gw, &id, &["partner_sharing"]);
        // SIGKILL right after the answer, then start again on the same store.
        s.gw.kill();
        s.gw.spawn();
        for k in 0..=round {
            let r = get_optout(&s.gw, &format!("c{k}"));
            assert_eq!(r.status, 200, "round {round}: c{k} lost: {}", text(&r.body));
            assert_eq!(
                r.json(),
                json!({"customer_id": format!("c{k}"), "scopes": ["partner_sharing"]})
            );
        }
        let kept: Vec<(usize, String)> = (round + 1..4)
            .map(|k| (k, format!("\"c{k}\"")))
            .chain(std::iter::once((4, "\"keep\"".to_string())))
            .chain((round < 4).then(|| (5, "\"c4\"".to_string())))
            .collect();
        let kept: Vec<(usize, &str)> = kept.iter().map(|(i, id)| (*i, id.as_str())).collect();
        assert_forwarded(
            &s.gw,
            &s.bp,
            "bp",
            &body,
            round as u64 + 1,
            &forwarded(&kept),
        );
    }
    // Removals are durable too.
    let r = admin(&s.gw, "DELETE", "/optouts/c0", Some(AUTH), None);
    assert_eq!(r.status, 200);
    let r = admin(
        &s.gw,
        "DELETE",
        "/optouts/c1",
        Some(AUTH),
        Some(r#"{"scopes": ["partner_sharing"]}"#),
    );
    assert_eq!(r.status, 200);
    opt_out(&s.gw, "c2", &["partner:bp"]);
    s.gw.kill();
    s.gw.spawn();
    assert_refused(&get_optout(&s.gw, "c0"), 404, "not_found");
    assert_refused(&get_optout(&s.gw, "c1"), 404, "not_found");
    assert_eq!(
        get_optout(&s.gw, "c2").json(),
        json!({"customer_id": "c2", "scopes": ["partner:bp", "partner_sharing"]})
    );
    assert_forwarded(
        &s.gw,
        &s.bp,
        "bp",
        &body,
        3,
        &forwarded(&[(0, "\"c0\""), (1, "\"c1\""), (4, "\"keep\"")]),
    );
    let metrics = s.gw.metrics();
    assert_eq!(
        metric(
            &metrics,
            r#"partner_gateway_optouts{scope="partner_sharing"}"#
        ),
        3.0,
        "{metrics}"
    );
}

#[test]
fn concurrent_acknowledged_opt_outs_survive_kill_9() {
    let mut s = setup();
    let ids: Vec<String> = (0..24).map(|i| format!("p{i}")).collect();
    std::thread::scope(|scope| {
        for chunk in ids.chunks(6) {
            let gw = &s.gw;
            scope.spawn(move || {
                for id in chunk {
                    opt_out(gw, id, &["partner_sharing"]);
                }
            });
        }
    });
    s.gw.kill();
    s.gw.spawn();
    for id in &ids {
        assert_eq!(get_optout(&s.gw, id).status, 200, "{id} lost");
    }
    let mut quoted: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
    quoted.push("\"other\"".to_string());
    let refs: Vec<&str> = quoted.iter().map(String::as_str).collect();
    assert_forwarded(
        &s.gw,
        &s.bp,
        "bp",
        &contacts(&refs),
        ids.len() as u64,
        &forwarded(&[(ids.len(), "\"other\"")]),
    );
}

/// While the store cannot be opened: `/readyz` 503, opt-out routes 503 `not_ready` with nothing
/// at the partner, contractor routes unaffected.
fn assert_fails_closed(s: &Setup) {
    let gw = &s.gw;
    let r = gw.admin_get("/readyz");
    assert_refused(&r, 503, "not_ready");
    assert_eq!(gw.admin_get("/healthz").status, 200);
    let body = contacts(&["\"1\"", "\"2\""]);
    assert_refused_nothing_sent(gw, &s.bp, "bp", CONTACTS, &body, 503, "not_ready");
    assert_refused_nothing_sent(gw, &s.bp2, "bp2", CONTACTS, &body, 503, "not_ready");
    assert_refused_nothing_sent(
        gw,
        &s.bp,
        "bp",
        "/v1/contact",
        r#"{"customer_id": "1"}"#,
        503,
        "not_ready",
    );
    assert_forwarded(
        gw,
        &s.ctr,
        "ctr",
        &body,
        0,
        &forwarded(&[(0, "\"1\""), (1, "\"2\"")]),
    );
    // The admin API cannot serve or take opt-outs either.
    assert_refused(&get_optout(gw, "1"), 503, "not_ready");
    let r = admin(
        gw,
        "PUT",
        "/optouts/1",
        Some(AUTH),
        Some(r#"{"scopes": ["partner_sharing"]}"#),
    );
    assert_refused(&r, 503, "not_ready");
    let metrics = gw.metrics();
    assert!(
        metric(
            &metrics,
            r#"partner_gateway_requests_refused_total{partner="bp",reason="not_ready"}"#
        ) >= 2.0,
        "{metrics}"
    );
}

#[test]
fn a_store_path_that_is_a_file_fails_closed() {
    // `policy/gateway.yaml` exists and is a regular file, not a store directory.
    let s = setup_with(
        "optouts: { path: policy/gateway.yaml }\nadmin_token_env: PG_OPTOUTS_TEST_ADMIN_TOKEN\n",
        &[(TOKEN_ENV, TOKEN)],
    );
    assert_fails_closed(&s);
}

#[test]
fn a_corrupt_journal_fails_closed_until_repaired() {
    let mut s = setup();
    opt_out(&s.gw, "1", &["partner_sharing"]);
    opt_out(&s.gw, "2", &["partner_sharing"]);
    s.gw.kill();
    let journal = s.gw.policy.root().join("data/optouts/journal");
    let good = std::fs::read(&journal).unwrap();
    // Damage the first change (its customer id byte, after the 24-byte header and the 12-byte
    // frame header and op + id length): a bad record followed by a valid one is corruption,
    // not a torn tail, so the store refuses to load.
    let mut bad = good.clone();
    let at = 24 + 12 + 3;
    assert_eq!(bad[at], b'1', "journal layout changed");
    bad[at] = b'7';
    std::fs::write(&journal, &bad).unwrap();
    s.gw.spawn();
    assert_fails_closed(&s);
    // explain, on the same damaged store, refuses too.
    let out = run(
        &[
            "explain",
            "--partner",
            "bp",
            "--method",
            "POST",
            "--path",
            CONTACTS,
        ],
        &s.gw.policy.policy(),
        Some(&contacts(&["\"1\""])),
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not_ready"),
        "{}",
        text(&out.stderr)
    );

    // Repaired on disk: the gateway's retry picks it up, with the opt-outs in force.
    std::fs::write(&journal, &good).unwrap();
    eventually("the repaired store is loaded", || {
        s.gw.admin_get("/readyz").status == 200
    });
    assert_eq!(
        get_optout(&s.gw, "1").json(),
        json!({"customer_id": "1", "scopes": ["partner_sharing"]})
    );
    assert_forwarded(
        &s.gw,
        &s.bp,
        "bp",
        &contacts(&["\"1\"", "\"2\"", "\"3\""]),
        2,
        &forwarded(&[(2, "\"3\"")]),
    );
}

#[test]
fn a_corrupt_snapshot_fails_closed() {
    let mut s = setup();
    s.gw.kill();
    let csv = write_file(
        s.gw.policy.root(),
        "in.csv",
        "customer_id,scope\n1,partner_sharing\n2,partner_sharing\n",
    );
    let out = optouts_cmd(&s.gw.policy.policy(), &["import", csv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let snapshot = s.gw.policy.root().join("data/optouts/snapshot");
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&snapshot, &bytes).unwrap();
    s.gw.spawn();
    assert_fails_closed(&s);
}

#[test]
fn metrics_count_drops_opt_outs_and_refusals() {
    let s = setup();
    let gw = &s.gw;
    for id in ["1", "2", "3"] {
        opt_out(gw, id, &["partner_sharing"]);
    }
    opt_out(gw, "3", &["partner:bp"]);
    let metrics = gw.metrics();
    assert_eq!(
        metric(
            &metrics,
            r#"partner_gateway_optouts{scope="partner_sharing"} "#
        ),
        3.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, r#"partner_gateway_optouts{scope="partner:bp"} "#),
        1.0,
        "{metrics}"
    );
    let r = admin(gw, "DELETE", "/optouts/1", Some(AUTH), None);
    assert_eq!(r.status, 200);
    assert_eq!(
        metric(
            &gw.metrics(),
            r#"partner_gateway_optouts{scope="partner_sharing"} "#
        ),
        2.0
    );

    let body = contacts(&["\"1\"", "\"2\"", "\"3\"", "\"4\""]);
    for _ in 0..2 {
        assert_eq!(post(gw, "bp", CONTACTS, &body).status, 200);
    }
    assert_eq!(post(gw, "ctr", CONTACTS, &body).status, 200);
    assert_eq!(post(gw, "bp", CONTACTS, &contacts(&["1.5"])).status, 422);
    assert_eq!(
        post(gw, "bp", "/v1/contact", r#"{"customer_id": "2"}"#).status,
        451
    );
    let metrics = gw.metrics();
    for (series, value) in [
        (
            r#"partner_gateway_records_dropped_total{partner="bp",reason="opted_out",route="/v1/contacts"} "#,
            4.0,
        ),
        (
            r#"partner_gateway_records_forwarded_total{partner="bp",route="/v1/contacts"} "#,
            4.0,
        ),
        (
            r#"partner_gateway_records_forwarded_total{partner="ctr",route="/v1/contacts"} "#,
            4.0,
        ),
        (
            r#"partner_gateway_requests_refused_total{partner="bp",reason="subject_missing"} "#,
            1.0,
        ),
        (
            r#"partner_gateway_requests_refused_total{partner="bp",reason="subject_opted_out"} "#,
            1.0,
        ),
    ] {
        assert_eq!(metric(&metrics, series), value, "{series}\n{metrics}");
    }
    // Contractors never drop.
    assert!(
        !metrics.contains(r#"partner_gateway_records_dropped_total{partner="ctr""#),
        "{metrics}"
    );
}

#[test]
fn bulk_import_is_all_or_nothing_and_the_gateway_enforces_it() {
    let mut s = setup();
    let policy = s.gw.policy.policy();
    let root = s.gw.policy.root().to_path_buf();

    // While the gateway holds the store, import is refused (use the admin API then).
    let ok_csv = write_file(
        &root,
        "ok.csv",
        "customer_id,scope\n1,partner_sharing\n\"2\",partner:bp\n2,partner_sharing\n",
    );
    let out = optouts_cmd(&policy, &["import", ok_csv.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("in use"),
        "{}",
        text(&out.stderr)
    );
    s.gw.kill();

    // A bad line: exit 1, FILE:LINE: for each error, nothing imported.
    let bad_csv = write_file(
        &root,
        "bad.csv",
        "customer_id,scope\n5,partner_sharing\n6,Not A Scope\n,partner_sharing\n7,partner_sharing\n",
    );
    let out = optouts_cmd(&policy, &["import", bad_csv.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let shown = bad_csv.display().to_string();
    assert!(stderr.contains(&format!("{shown}:3: ")), "{stderr}");
    assert!(stderr.contains(&format!("{shown}:4: ")), "{stderr}");
    assert!(!stderr.contains(&format!("{shown}:2: ")), "{stderr}");
    assert!(stderr.contains("nothing imported"), "{stderr}");
    assert_eq!(text(&out.stdout), "");
    let bad_ndjson = write_file(
        &root,
        "bad.ndjson",
        "{\"customer_id\": \"8\", \"scopes\": [\"partner_sharing\"]}\n{\"customer_id\": 1e2, \"scopes\": [\"partner_sharing\"]}\n",
    );
    let out = optouts_cmd(&policy, &["import", bad_ndjson.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("{}:2: ", bad_ndjson.display())),
        "{}",
        text(&out.stderr)
    );
    let out = optouts_cmd(&policy, &["count"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "total\t0 opt-outs (0 customers)\n");

    // Good CSV and NDJSON.
    let out = optouts_cmd(&policy, &["import", ok_csv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "imported 3 opt-outs (2 customers)\n");
    let ndjson = write_file(
        &root,
        "more.ndjson",
        "{\"customer_id\": 3, \"scopes\": [\"new_use_2027\", \"partner_sharing\"]}\n\n{\"customer_id\": \"4\", \"scopes\": [\"partner:bp2\"]}\n",
    );
    let out = optouts_cmd(&policy, &["import", ndjson.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "imported 3 opt-outs (2 customers)\n");

    let out = optouts_cmd(&policy, &["count"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "new_use_2027\t1\npartner:bp\t1\npartner:bp2\t1\npartner_sharing\t3\ntotal\t6 opt-outs (4 customers)\n"
    );
    let out = optouts_cmd(&policy, &["export"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let exported: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        exported,
        vec![
            json!({"customer_id": "1", "scopes": ["partner_sharing"]}),
            json!({"customer_id": "2", "scopes": ["partner:bp", "partner_sharing"]}),
            json!({"customer_id": "3", "scopes": ["new_use_2027", "partner_sharing"]}),
            json!({"customer_id": "4", "scopes": ["partner:bp2"]}),
        ]
    );
    let out = optouts_cmd(&policy, &["export", "--format", "csv"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "customer_id,scope\n1,partner_sharing\n2,partner:bp\n2,partner_sharing\n3,new_use_2027\n3,partner_sharing\n4,partner:bp2\n"
    );

    // A started gateway enforces them.
    s.gw.spawn();
    assert_eq!(s.gw.admin_get("/readyz").status, 200);
    let body = contacts(&["\"1\"", "2", "\"3\"", "4", "\"5\""]);
    assert_forwarded(
        &s.gw,
        &s.bp,
        "bp",
        &body,
        3,
        &forwarded(&[(3, "4"), (4, "\"5\"")]),
    );
    assert_forwarded(&s.gw, &s.bp2, "bp2", &body, 4, &forwarded(&[(4, "\"5\"")]));
    assert_forwarded(
        &s.gw,
        &s.ctr,
        "ctr",
        &body,
        0,
        &forwarded(&[(0, "\"1\""), (1, "2"), (2, "\"3\""), (3, "4"), (4, "\"5\"")]),
    );
    assert_eq!(
        get_optout(&s.gw, "3").json(),
        json!({"customer_id": "3", "scopes": ["new_use_2027", "partner_sharing"]})
    );
    assert_eq!(
        metric(
            &s.gw.metrics(),
            r#"partner_gateway_optouts{scope="partner_sharing"} "#
        ),
        3.0
    );
    // export and count read the store while the gateway holds it.
    opt_out(&s.gw, "9", &["partner_sharing"]);
    let out = optouts_cmd(&policy, &["count"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).ends_with("total\t7 opt-outs (5 customers)\n"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn explain_shows_the_dropped_record_from_the_same_store() {
    let mut s = setup();
    opt_out(&s.gw, "2", &["partner_sharing"]);
    let policy = s.gw.policy.policy();
    let body = contacts(&["\"1\"", "2", "\"3\""]);
    let explain = |partner: &str, path: &str, body: &str| {
        run(
            &[
                "explain",
                "--partner",
                partner,
                "--method",
                "POST",
                "--path",
                path,
            ],
            &policy,
            Some(body),
        )
    };

    // With the gateway running (explain opens the store read-only).
    let out = explain("bp", CONTACTS, &body);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let expected = forwarded(&[(0, "\"1\""), (2, "\"3\"")]);
    assert_eq!(text(&out.stdout), expected);
    assert!(
        stderr.contains(r#"dropped      contacts[1] (customer "2" opted out)"#),
        "{stderr}"
    );
    assert!(stderr.contains("dropped: 1"), "{stderr}");
    // ... the same bytes the partner receives.
    assert_forwarded(&s.gw, &s.bp, "bp", &body, 1, &expected);
    // The contractor would get every record.
    let out = explain("ctr", CONTACTS, &body);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("dropped      "));
    // A single record: would be refused with 451.
    let out = explain("bp", "/v1/contact", r#"{"customer_id": 2}"#);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("451 subject_opted_out"),
        "{}",
        text(&out.stderr)
    );

    // An opt-out added just now through the API is seen, and with the gateway stopped too.
    opt_out(&s.gw, "3", &["partner:bp"]);
    s.gw.kill();
    let out = explain("bp", CONTACTS, &body);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(text(&out.stdout), forwarded(&[(0, "\"1\"")]));
    assert!(
        stderr.contains(r#"dropped      contacts[2] (customer "3" opted out)"#),
        "{stderr}"
    );
}
