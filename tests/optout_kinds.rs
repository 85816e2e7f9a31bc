//! Which opt-out scopes each recipient kind honours, through the real binary: `co_branded`
//! drops like a business partner (and answers 451/422 on single records), `government` and
//! `contractor` honour nothing by default, and `honor_optouts` replaces the kind's default in
//! both directions. Ids compare as strings (`123` is `"123"`).
mod util;

use serde_json::json;
use util::*;

const TOKEN_ENV: &str = "PG_OPTOUT_KINDS_ADMIN_TOKEN";
const AUTH: &str = "Bearer kinds-admin-token";

/// A partner of `kind` with a multi-record route `/v1/c` and a single-record route `/v1/one`.
fn partner(kind: &str, upstream: &str, extra: &str) -> String {
    format!(
        r#"kind: {kind}
purpose: testing
upstream: {upstream}
routes:
  - path: /v1/c
    methods: [POST]
    records: contacts[*]
    subject: customer_id
    allow: ["contacts[*].customer_id", "contacts[*].name"]
  - path: /v1/one
    methods: [POST]
    records: $
    subject: customer_id
    allow: [customer_id, name]
allowed_callers: [orders-service]
{extra}"#
    )
}

fn opt_out(gw: &Gateway, id: &str, scope: &str) {
    let body = json!({ "scopes": [scope] }).to_string();
    let r = http1::send(
        &gw.admin.to_string(),
        "PUT",
        &format!("/optouts/{id}"),
        &[
            ("authorization", AUTH),
            ("content-type", "application/json"),
        ],
        Some(body.as_bytes()),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// Posts to `/{partner}{path}` (with a legal basis, which only `government` needs).
fn post(gw: &Gateway, partner: &str, path: &str, body: &str) -> Response {
    gw.send(
        "POST",
        &format!("/{partner}{path}"),
        &[
            ("content-type", "application/json"),
            ("ohsoft-legal-basis", "case-2026-1"),
        ],
        Some(body.as_bytes()),
    )
}

/// Customers 1..=6, as numbers for odd ids and strings for even ones.
const BODY: &str = r#"{"contacts":[{"customer_id":1,"name":"a"},{"customer_id":"2","name":"b"},{"customer_id":3,"name":"c"},{"customer_id":"4","name":"d"},{"customer_id":5,"name":"e"},{"customer_id":"6","name":"f"}]}"#;

/// The ids (as written in [`BODY`]) that `partner` received in its last request.
fn received_ids(gw: &Gateway, mock: &Mock, partner: &str) -> Vec<String> {
    let before = mock.received().len();
    let r = post(gw, partner, "/v1/c", BODY);
    assert_eq!(
        r.status,
        200,
        "{partner}: {}",
        String::from_utf8_lossy(&r.body)
    );
    let received = mock.received();
    assert_eq!(received.len(), before + 1, "{partner}: one request");
    let body: serde_json::Value =
        serde_json::from_str(received.last().unwrap()["body"].as_str().unwrap()).unwrap();
    body["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["customer_id"].to_string())
        .collect()
}

#[test]
fn each_kind_honours_its_default_scopes_and_honor_optouts_replaces_them() {
    let mocks: Vec<Mock> = (0..5).map(|_| Mock::start()).collect();
    let partners = [
        ("cob", partner("co_branded", &mocks[0].url(), "")),
        (
            "gov",
            partner(
                "government",
                &mocks[1].url(),
                "legal_basis_header: ohsoft-legal-basis\n",
            ),
        ),
        ("ctr", partner("contractor", &mocks[2].url(), "")),
        (
            "ctrh",
            partner(
                "contractor",
                &mocks[3].url(),
                "honor_optouts: [partner_sharing]\n",
            ),
        ),
        (
            "bpn",
            partner("business_partner", &mocks[4].url(), "honor_optouts: []\n"),
        ),
    ];
    let partners: Vec<(&str, &str)> = partners.iter().map(|(n, p)| (*n, p.as_str())).collect();
    let gw = Gateway::start(
        &format!(
            "optouts: {{ path: data/optouts }}\nadmin_token_env: {TOKEN_ENV}\n\
             ledger: {{ path: data/ledger, subject_key_env: PG_OPTOUT_KINDS_LEDGER_KEY }}\n"
        ),
        &partners,
        &[
            (TOKEN_ENV, "kinds-admin-token"),
            ("PG_OPTOUT_KINDS_LEDGER_KEY", "kinds-ledger-key"),
        ],
    );
    opt_out(&gw, "1", "partner_sharing");
    opt_out(&gw, "2", "partner:cob");
    opt_out(&gw, "3", "partner:gov");
    opt_out(&gw, "4", "partner:ctr");
    opt_out(&gw, "5", "partner:ctrh");
    opt_out(&gw, "6", "partner:bpn");

    let all = ["1", "\"2\"", "3", "\"4\"", "5", "\"6\""];
    let without = |gone: &[&str]| -> Vec<String> {
        all.iter()
            .filter(|id| !gone.contains(id))
            .map(|id| id.to_string())
            .collect()
    };
    // co_branded: as business_partner — partner_sharing and its own partner scope.
    assert_eq!(
        received_ids(&gw, &mocks[0], "cob"),
        without(&["1", "\"2\""])
    );
    // government and contractor: nothing, not even their own partner scope.
    assert_eq!(received_ids(&gw, &mocks[1], "gov"), without(&[]));
    assert_eq!(received_ids(&gw, &mocks[2], "ctr"), without(&[]));
    // honor_optouts replaces the default: exactly the listed scopes.
    assert_eq!(received_ids(&gw, &mocks[3], "ctrh"), without(&["1"]));
    assert_eq!(received_ids(&gw, &mocks[4], "bpn"), without(&[]));

    // co_branded single records: 451 for an opted-out customer, 422 without a subject id;
    // nothing reaches the partner.
    let before = mocks[0].received().len();
    for (body, status, code) in [
        (
            r#"{"customer_id":"1","name":"x"}"#,
            451,
            "subject_opted_out",
        ),
        (r#"{"customer_id":2,"name":"x"}"#, 451, "subject_opted_out"),
        (r#"{"name":"x"}"#, 422, "subject_missing"),
        (r#"{"customer_id":1.5,"name":"x"}"#, 422, "subject_missing"),
    ] {
        assert_refused(&post(&gw, "cob", "/v1/one", body), status, code);
    }
    assert_eq!(mocks[0].received().len(), before);
    // A government body honours no opt-out, so it needs no subject id either.
    let r = post(&gw, "gov", "/v1/one", r#"{"customer_id":"1","name":"x"}"#);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = post(&gw, "gov", "/v1/one", r#"{"name":"x"}"#);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // The contractor that honours partner_sharing refuses a single opted-out record.
    assert_refused(
        &post(&gw, "ctrh", "/v1/one", r#"{"customer_id":1,"name":"x"}"#),
        451,
        "subject_opted_out",
    );
    // Without its legal basis a government request is refused and nothing reaches it.
    let before = mocks[1].received().len();
    let r = gw.post_json("/gov/v1/one", r#"{"customer_id":"1","name":"x"}"#);
    assert_refused(&r, 403, "legal_basis_missing");
    assert_eq!(mocks[1].received().len(), before);
    assert_government_requests_are_audited(&gw);
}

/// Every forwarded government request has a ledger record naming its legal basis; the refused
/// one has none.
fn assert_government_requests_are_audited(gw: &Gateway) {
    let dir = gw.policy.root().join("data/ledger");
    let records: Vec<serde_json::Value> = partner_gateway::ledger::ledger_files(&dir)
        .unwrap()
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(dir.join(f)).unwrap();
            text.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .filter(|l| l["partner"] == "gov")
        .collect();
    assert_eq!(records.len(), 3, "{records:?}");
    for record in &records {
        assert_eq!(record["kind"], "government", "{record}");
        assert_eq!(record["legal_basis"], "case-2026-1", "{record}");
        assert_eq!(record["use"], "legal-obligation", "{record}");
    }
}
