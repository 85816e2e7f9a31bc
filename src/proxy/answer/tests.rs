use super::*;
use Arrival::{Partial, Whole};

fn partner(headers: &[(&str, &str)]) -> ResponseHeader {
    let mut h = ResponseHeader::build(200, None).unwrap();
    for (n, v) in headers {
        h.append_header(n.to_string(), *v).unwrap();
    }
    h
}

fn names(h: &ResponseHeader) -> Vec<String> {
    h.headers.keys().map(|k| k.as_str().to_string()).collect()
}

#[test]
fn only_listed_headers_pass() {
    let p = partner(&[
        ("content-type", "application/json"),
        ("set-cookie", "a=b"),
        ("www-authenticate", "Bearer"),
        ("x-rate", "5"),
        ("proxy-authenticate", "x"),
        ("server", "nginx"),
        ("etag", "\"1\""),
    ]);
    let route = vec!["x-rate".to_string(), "set-cookie".to_string()];
    let h = caller_header(&p, &route, None, Framing::Length(2)).unwrap();
    assert_eq!(
        names(&h),
        vec!["content-type", "x-rate", "etag", "content-length"]
    );
}

#[test]
fn a_header_carrying_the_credential_is_dropped() {
    let p = partner(&[
        ("content-type", "application/json"),
        ("x-echo", "Bearer PARTNER-secret"),
        ("location", "/x?token=partner-secret"),
    ]);
    let route = vec!["x-echo".to_string()];
    let h = caller_header(&p, &route, Some("partner-secret"), Framing::Chunked).unwrap();
    assert_eq!(names(&h), vec!["content-type", "transfer-encoding"]);
}

/// An obsolete line fold inside the credential comes joined with a space (HTTP/1 library).
#[test]
fn a_header_carrying_the_credential_split_by_a_fold_is_dropped() {
    let p = partner(&[
        ("content-type", "application/json"),
        ("x-echo", "rawp-SeC rEt-TOKEN-42"),
        ("x-ok", "rawp-SeC other"),
        ("location", "https://p.example/cb?t=rawp-SeC%20rEt-TOKEN-42"),
        ("etag", "\"rawp-SeCrEt%09-TOKEN-42\""),
    ]);
    let route = vec!["x-echo".to_string(), "x-ok".to_string()];
    let h = caller_header(&p, &route, Some("rawp-SeCrEt-TOKEN-42"), Framing::Chunked).unwrap();
    assert_eq!(names(&h), vec!["content-type", "x-ok", "transfer-encoding"]);
}

/// A credential split over several lines of one header (which HTTP reads as one value joined
/// by commas), by a comma, or by an invisible character is still the credential.
#[test]
fn a_header_carrying_the_credential_over_several_lines_is_dropped() {
    let p = partner(&[
        ("content-type", "application/json"),
        ("etag", "\"RWSEC\""),
        ("etag", "\"RETCRED\""),
        ("x-rate", "RWSECRET,CRED"),
        ("vary", "RWSECRET\u{200b}CRED"),
        ("cache-control", "private=\"RWSEC\\RET\\CRED\""),
        ("x-ok", "RWSECRET"),
        ("x-ok", "other"),
        ("x-list", "a, b"),
        ("x-list", "c"),
    ]);
    let route = vec![
        "x-rate".to_string(),
        "x-ok".to_string(),
        "x-list".to_string(),
    ];
    let h = caller_header(&p, &route, Some("RWSECRETCRED"), Framing::Chunked).unwrap();
    assert_eq!(
        names(&h),
        vec!["content-type", "x-ok", "x-list", "transfer-encoding"]
    );
    assert_eq!(h.headers.get_all("x-ok").iter().count(), 2);
    assert_eq!(h.headers.get_all("x-list").iter().count(), 2);
}

#[test]
fn a_header_carrying_the_credential_percent_encoded_is_dropped() {
    let p = partner(&[
        ("content-type", "application/json"),
        ("location", "https://p.example/x?t=S3cr3t%2BTok%2Fen%3D%3D"),
        ("x-echo", "s3cr3t%2btok%2Fen%3d%3D"),
        ("etag", "\"S3cr3t%2BTok\""),
        (
            "x-next",
            "https://idp.example/login?next=https%3A%2F%2Fp.example%2Fcb%3Ft%3DS3cr3t%252BTok%252Fen%253D%253D",
        ),
    ]);
    let route = vec!["x-echo".to_string(), "x-next".to_string()];
    let h = caller_header(&p, &route, Some("S3cr3t+Tok/en=="), Framing::Chunked).unwrap();
    assert_eq!(names(&h), vec!["content-type", "etag", "transfer-encoding"]);
}

#[test]
fn framing_follows_the_partner() {
    let cl = partner(&[("content-length", "12")]);
    assert_eq!(framing(&cl, false, Whole(0)), Framing::Length(12));
    let te = partner(&[("content-length", "12"), ("transfer-encoding", "chunked")]);
    assert_eq!(framing(&te, false, Whole(0)), Framing::Chunked);
    assert_eq!(framing(&te, true, Whole(0)), Framing::Close);
    assert_eq!(framing(&partner(&[]), false, Whole(0)), Framing::Chunked);
}

#[test]
fn a_body_still_arriving_goes_chunked_whatever_the_partner_framed() {
    // pingora would hold a length-framed body back until it is complete.
    let cl = partner(&[("content-length", "2000")]);
    assert_eq!(framing(&cl, false, Partial), Framing::Chunked);
    // No chunks in HTTP/1.0: the length stays, so a body broken off is never taken as whole.
    assert_eq!(framing(&cl, true, Partial), Framing::Length(2000));
    let te = partner(&[("transfer-encoding", "chunked")]);
    assert_eq!(framing(&te, false, Partial), Framing::Chunked);
    assert_eq!(framing(&partner(&[]), true, Partial), Framing::Close);
}

#[test]
fn a_body_that_arrived_whole_is_sent_with_its_length() {
    let te = partner(&[("transfer-encoding", "chunked")]);
    assert_eq!(framing(&te, false, Whole(11)), Framing::Length(11));
    assert_eq!(framing(&te, true, Whole(11)), Framing::Length(11));
    assert_eq!(framing(&partner(&[]), true, Whole(3)), Framing::Length(3));
    // The partner's own length stands; a body never makes a 204 or 304 carry one.
    let cl = partner(&[("content-length", "12")]);
    assert_eq!(framing(&cl, false, Whole(12)), Framing::Length(12));
    let mut no_content = partner(&[]);
    no_content.set_status(204).unwrap();
    assert_eq!(framing(&no_content, false, Whole(3)), Framing::Bodiless);
}

#[test]
fn answers_without_a_body_get_no_framing_header() {
    let status = |code: u16, headers: &[(&str, &str)]| {
        let mut h = partner(headers);
        h.set_status(code).unwrap();
        h
    };
    let no_content = status(204, &[("content-length", "0")]);
    assert_eq!(framing(&no_content, false, Whole(0)), Framing::Bodiless);
    assert_eq!(
        framing(&status(204, &[]), true, Whole(0)),
        Framing::Bodiless
    );
    assert_eq!(
        framing(&status(304, &[]), false, Whole(0)),
        Framing::Bodiless
    );
    let sized = status(304, &[("content-length", "12")]);
    assert_eq!(framing(&sized, false, Whole(0)), Framing::Length(12));
    let h = caller_header(&no_content, &[], None, Framing::Bodiless).unwrap();
    assert!(names(&h).is_empty(), "{:?}", names(&h));
}

#[test]
fn headers_the_partner_names_in_connection_are_not_relayed() {
    let p = partner(&[
        ("connection", "ETag, x-rate"),
        ("Connection", "close"),
        ("content-type", "application/json"),
        ("etag", "\"1\""),
        ("x-rate", "5"),
        ("cache-control", "no-store"),
    ]);
    let route = vec!["x-rate".to_string()];
    let h = caller_header(&p, &route, None, Framing::Length(2)).unwrap();
    assert_eq!(
        names(&h),
        vec!["content-type", "cache-control", "content-length"]
    );
}

/// A header of nested `%25` escapes costs a few passes over it, not one per escape (with one
/// per escape, this 200 KB `location` took minutes; no time is asserted here).
#[test]
fn a_deeply_encoded_header_is_checked_in_a_few_passes() {
    let value = format!("%{}", "25".repeat(100_000));
    let p = partner(&[("location", value.as_str())]);
    let h = caller_header(&p, &[], Some("S3cr3t+Tok/en=="), Framing::Chunked).unwrap();
    assert_eq!(names(&h), vec!["location", "transfer-encoding"]);
}
