/*!
The query a partner receives: only the parameters the route lists, re-encoded so that no
value can be split into a parameter the policy did not allow.
*/

/// Keeps the allowed parameters, in order, joined by `&` alone. Values keep their
/// percent-escapes; anything not safe to send bare (`;` among them) is percent-encoded, so the
/// partner cannot split a value into a parameter the policy did not allow.
pub(super) fn filter_query(query: Option<&str>, allowed: &[String]) -> (String, Vec<String>) {
    let mut kept = Vec::new();
    let mut removed = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = match pair.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (pair, None),
        };
        let name = percent_encoding::percent_decode_str(raw_name).decode_utf8();
        if name.is_ok_and(|n| allowed.iter().any(|a| *a == n)) {
            let mut out = encode_query_part(raw_name);
            if let Some(v) = raw_value {
                out.push('=');
                out.push_str(&encode_query_part(v));
            }
            kept.push(out);
        } else {
            removed.push(raw_name.to_string());
        }
    }
    (kept.join("&"), removed)
}

fn encode_query_part(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let valid_escape = b == b'%'
            && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
        if valid_escape || b.is_ascii_alphanumeric() || b"-._~+!$'()*,:@/?".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        i += 1;
    }
    out
}
