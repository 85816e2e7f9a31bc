//! Hardening against the real gateway in front of a recording partner that honours opt-outs:
//! whatever form an opted-out customer's id takes — in the URL, in a record, under a
//! case-folded key — it never reaches the partner, and an explicit `remove` beats `allow`.
mod util;

use util::*;

const SECRET: &str = "SECRET";

fn biz_partner(upstream: &str) -> String {
    marketing_partner(
        upstream,
        r#"  - path: /v1/whole
    methods: [POST]
    records: records[*]
    subject: customer_id
    allow:
      - records[*].**
  - path: /v1/members
    methods: [POST]
    records: records[*]
    subject: customer_id
    allow:
      - records[*].*
  - path: /v1/customers/{id}
    methods: [GET]
    query: [ref, q]
  - path: /v1/people/{cid:subject}
    methods: [GET]
  - path: /v1/lookup
    methods: [GET]
    query: [ref:subject, q]
  - path: /v1/contacts
    methods: [POST]
    records: $
    subject: customer_id
    allow: [customer_id, Email, name, sl.x, sl.y]
    transform:
      Email: remove
      sl.*: remove
allowed_callers: [marketing-service]
upstream_auth: { header: x-api-key, env: BIZ_KEY }
"#,
    )
}

const ENV: &[(&str, &str)] = &[
    ("BIZ_KEY", "biz-secret"),
    ("IDS_ADMIN_TOKEN", "admin-secret"),
];

struct Setup {
    mock: Mock,
    gateway: Gateway,
}

/// `biz` (a business partner: honours `partner_sharing`) in front of the recording mock, with
/// `c-200` and `300` opted out.
fn start() -> Setup {
    let mock = Mock::start();
    let gateway = Gateway::start(
        "admin_token_env: IDS_ADMIN_TOKEN\noptouts: { path: data/optouts }\n",
        &[("biz", &biz_partner(&mock.url()))],
        ENV,
    );
    let s = Setup { mock, gateway };
    for id in ["c-200", "300"] {
        let body = serde_json::json!({ "scopes": ["partner_sharing"] }).to_string();
        let r = http1::send(
            &s.gateway.admin.to_string(),
            "PUT",
            &format!("/optouts/{id}"),
            &[
                ("authorization", "Bearer admin-secret"),
                ("content-type", "application/json"),
            ],
            Some(body.as_bytes()),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    s
}

impl Setup {
    #[track_caller]
    fn assert_nothing_forwarded(&self) {
        let received = self.mock.received();
        assert!(
            received.is_empty(),
            "refused requests reached the partner: {received:#?}"
        );
    }

    fn get(&self, target: &str) -> Response {
        self.gateway.send("GET", target, &[], None)
    }
}

#[test]
fn opted_out_ids_in_other_url_spellings_never_reach_the_partner() {
    let s = start();
    // The plain spellings pass the check (and are 451 when opted out).
    let r = s.get("/biz/v1/customers/c-1?ref=c-2");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(s.mock.received().len(), 1);
    let r = s.get("/biz/v1/people/c-1");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = s.get("/biz/v1/lookup?ref=c-1&q=x&other=y");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(s.mock.received().len(), 3);
    let cases: &[(&str, u16, &str)] = &[
        ("/biz/v1/customers/c-200", 451, "subject_opted_out"),
        ("/biz/v1/customers/C-200", 451, "subject_opted_out"),
        ("/biz/v1/customers/300", 451, "subject_opted_out"),
        ("/biz/v1/customers/c-1?ref=c-200", 451, "subject_opted_out"),
        ("/biz/v1/customers/c-1?ref=C-200", 451, "subject_opted_out"),
        ("/biz/v1/customers/c-200;v=1", 400, "bad_request"),
        ("/biz/v1/customers/c-200%3Bv=1", 400, "bad_request"),
        ("/biz/v1/customers/0300", 400, "bad_request"),
        ("/biz/v1/customers/+300", 400, "bad_request"),
        ("/biz/v1/customers/300.0", 400, "bad_request"),
        ("/biz/v1/customers/c-200%20", 400, "bad_request"),
        ("/biz/v1/customers/%20c-200", 400, "bad_request"),
        ("/biz/v1/customers/c-200+", 400, "bad_request"),
        ("/biz/v1/customers/c-200%00", 400, "bad_request"),
        ("/biz/v1/customers/c-1?ref=c-100,c-200", 400, "bad_request"),
        (
            "/biz/v1/customers/c-1?ref=c-100%2Cc-200",
            400,
            "bad_request",
        ),
        ("/biz/v1/customers/c-1?ref=c-200%00", 400, "bad_request"),
        ("/biz/v1/customers/c-1?ref=c-200+", 400, "bad_request"),
        ("/biz/v1/customers/c-1?ref=%2B300", 400, "bad_request"),
        ("/biz/v1/customers/c-1?q=x&ref=0300", 400, "bad_request"),
        ("/biz/v1/people/c-200", 451, "subject_opted_out"),
        ("/biz/v1/people/0300", 422, "subject_missing"),
        ("/biz/v1/people/c-200%20", 422, "subject_missing"),
        ("/biz/v1/people/c-100;c-200", 422, "subject_missing"),
        // Read as `c-200` by a partner that decodes the path again.
        ("/biz/v1/people/c-200%3F", 422, "subject_missing"),
        ("/biz/v1/people/c-200%23x", 422, "subject_missing"),
        ("/biz/v1/people/%2563-200", 400, "bad_request"),
        ("/biz/v1/customers/c-1?ref=%2563-200", 400, "bad_request"),
        (
            "/biz/v1/customers/c-1?ref=c-1%26ref%3Dc-200",
            400,
            "bad_request",
        ),
        // A query parameter typed as the customer id: bad forms are 422, like a typed path.
        ("/biz/v1/lookup?ref=c-200", 451, "subject_opted_out"),
        ("/biz/v1/lookup?ref=0300", 422, "subject_missing"),
        ("/biz/v1/lookup?ref=c-200%20", 422, "subject_missing"),
        ("/biz/v1/lookup?ref=", 422, "subject_missing"),
        ("/biz/v1/lookup?q=x&ref=c-100,c-200", 422, "subject_missing"),
    ];
    for (target, status, code) in cases {
        let r = s.get(target);
        assert_eq!(
            r.status,
            *status,
            "{target}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_refused(&r, *status, code);
    }
    assert_eq!(
        s.mock.received().len(),
        3,
        "a refused request reached the partner"
    );
}

#[test]
fn subject_ids_a_partner_could_read_as_another_customer_are_refused() {
    let s = start();
    let json = [("content-type", "application/json")];
    for id in [
        r#""0300""#,
        r#""+300""#,
        r#""300.0""#,
        r#""3e2""#,
        r#"" 300""#,
        r#""300 ""#,
        r#""c-200\u0000""#,
        r#""c-200\n""#,
        r#""\uff43-200""#,
        "9007199254740993",
        "-9007199254740993",
        "12345678901234567890",
    ] {
        let body = format!(
            r#"{{"campaign":"x","contacts":[{{"customer_id":"c-1","name":"ok"}},{{"customer_id":{id},"name":"SECRET"}}]}}"#
        );
        let r = s
            .gateway
            .send("POST", "/biz/v1/audiences", &json, Some(body.as_bytes()));
        assert_refused(&r, 422, "subject_missing");
    }
    s.assert_nothing_forwarded();
    // The same ids in their one plain form: opted-out records dropped, the rest forwarded;
    // a large integer passes as a string.
    let body = r#"{"contacts":[{"customer_id":"300","name":"SECRET"},{"customer_id":300,"name":"SECRET"},{"customer_id":"C-200","name":"SECRET"},{"customer_id":"12345678901234567890","name":"ok"},{"customer_id":9007199254740991,"name":"ok"}]}"#;
    let r = s
        .gateway
        .send("POST", "/biz/v1/audiences", &json, Some(body.as_bytes()));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("ohsoft-records-dropped"), Some("3"));
    let forwarded = s.mock.only_body();
    assert!(!forwarded.contains(SECRET), "{forwarded}");
    assert!(forwarded.contains("12345678901234567890"), "{forwarded}");
}

#[test]
fn an_explicit_remove_beats_allow() {
    let s = start();
    let r = s.gateway.post_json(
        "/biz/v1/contacts",
        r#"{"customer_id":"c-1","Email":"SECRET@x","name":"ok","sl":{"x":"SECRET","y":"SECRET"}}"#,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        s.mock.only_body(),
        r#"{"customer_id":"c-1","name":"ok","sl":{}}"#
    );
}

#[test]
fn a_case_folded_subject_key_never_carries_an_opted_out_customer() {
    let s = start();
    for route in ["/biz/v1/whole", "/biz/v1/members"] {
        for key in [
            "Customer_Id",
            "CUSTOMER_ID",
            "cu\u{17f}tomer_id",
            "cu\\u017ftomer_id",
        ] {
            let body = format!(
                r#"{{"records":[{{"customer_id":"c-1","{key}":"c-200","name":"SECRET"}}]}}"#
            );
            let r = s.gateway.post_json(route, &body);
            assert_refused(&r, 400, "bad_request");
        }
    }
    s.assert_nothing_forwarded();
    let r = s.gateway.post_json(
        "/biz/v1/whole",
        r#"{"records":[{"customer_id":"c-1","name":"ok"}]}"#,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn check_warns_about_wildcard_record_paths_on_opt_out_partners() {
    let s = start();
    let output = std::process::Command::new(BIN)
        .args(["check", "--policy"])
        .arg(s.gateway.policy.policy())
        .current_dir(s.gateway.policy.root())
        .env("BIZ_KEY", "k")
        .env("IDS_ADMIN_TOKEN", "t")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(0), "{text}");
    for path in ["records[*].**", "records[*].*"] {
        assert!(
            text.contains(&format!(
                "{path:?} passes record members through a wildcard"
            )),
            "{path}: {text}"
        );
    }
}
