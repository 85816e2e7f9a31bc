//! A streamed body on a gateway without a ledger (so subject ids are not collected): an
//! opted-out customer's line is still dropped, whichever chunks its record is cut into, and
//! `explain` shows the same outcome line by line.
mod util;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use util::*;

const TOKEN: &str = "stream-optouts-admin";

/// The marketing partner with a streaming contacts route.
fn partner(upstream: &str) -> String {
    marketing_partner(
        upstream,
        "  - path: /v1/contacts\n    methods: [POST]\n    stream: ndjson\n    subject: customer_id\n    allow: [customer_id, city]\nallowed_callers: [marketing]\n",
    )
}

#[test]
fn an_opted_out_line_is_dropped_without_a_ledger_wherever_it_is_cut() {
    let mock = Mock::start();
    let gw = Gateway::start(
        "optouts: { path: data/optouts }\nadmin_token_env: STREAM_OPTOUTS_ADMIN\n",
        &[("ads", &partner(&mock.url()))],
        &[("STREAM_OPTOUTS_ADMIN", TOKEN)],
    );
    let auth = format!("Bearer {TOKEN}");
    let r = http1::send(
        &gw.admin.to_string(),
        "PUT",
        "/optouts/c-out",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        Some(br#"{"scopes": ["partner_sharing"]}"#),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // The opted-out id is cut inside, as is the CRLF after it; each chunk is sent on its own.
    let chunks: &[&str] = &[
        "{\"customer_id\":\"c-1\",\"city\":\"Ulm\",\"phone\":\"1\"}\n{\"customer_id\":\"c-o",
        "ut\",\"city\":\"SECRET\"}\r",
        "\n{\"customer_id\":\"c-2\"}\n{\"customer_id\":\"c-out\"}",
    ];
    let stream = TcpStream::connect(gw.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    writer
        .write_all(b"POST /ads/v1/contacts HTTP/1.1\r\nhost: gw\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n")
        .unwrap();
    for chunk in chunks {
        std::thread::sleep(Duration::from_millis(20));
        let frame = format!("{:x}\r\n{chunk}\r\n", chunk.len());
        writer.write_all(frame.as_bytes()).unwrap();
    }
    writer.write_all(b"0\r\n\r\n").unwrap();
    let r = http1::read_response(stream, false).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("ohsoft-records-dropped"), Some("2"));
    assert_eq!(
        mock.only_body(),
        "{\"customer_id\":\"c-1\",\"city\":\"Ulm\"}\n{\"customer_id\":\"c-2\"}\n"
    );
    assert!(
        !gw.policy.root().join("data/ledger").exists(),
        "no ledger is configured"
    );

    // `explain` shows the same bytes, and which line was dropped and what changed in which,
    // taking a body without a content-type for the route's NDJSON.
    let body = chunks.concat();
    let mut explain = std::process::Command::new(BIN);
    explain
        .args(["explain", "--policy"])
        .arg(gw.policy.policy())
        .args(["--partner", "ads", "--path", "/v1/contacts"])
        .current_dir(gw.policy.root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = output_with_stdin(&mut explain, body.as_bytes());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), mock.only_body());
    for line in [
        "  removed      line 1: phone\n",
        "  dropped      line 2 (customer \"c-out\" opted out)\n",
        "  dropped      line 4 (customer \"c-out\" opted out)\n",
        "  records forwarded: 2, dropped: 2\n",
    ] {
        assert!(stderr.contains(line), "{line:?} not in\n{stderr}");
    }
}
