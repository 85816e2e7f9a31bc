/*!
The `tls:` sections of the policy: the proxy listener's (`gateway.yaml`) and a partner's
(`partners/<id>.yaml`), validated as far as the core can without reading the files they name.
The shell reads and checks the certificate and key files themselves (PEM, key matches
certificate, expiry) and reports on the lines kept in [`NamedFile`].

Choices where the contract is silent:
- A partner `tls` section on an `http://` upstream is an error: it would suggest an encryption
  that does not happen.
- `client_cert` and `client_key` come together or not at all.
- `server_name` must be a DNS name or an IP address (never empty: an empty SNI would switch
  certificate verification off in the TLS stack), without `_`: the TLS stack sends and verifies
  a first label's `_` as `-`, so the name checked would not be the one written.
*/
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use super::file::{ListenerTlsFile, PartnerTlsFile, Spanned};
use super::model::{ClientIdentity, ListenerTls, NamedFile, PartnerTls, Upstream};

/// One problem found in a `tls:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Problem {
    pub line: u64,
    pub message: String,
}

fn line<T>(s: &Spanned<T>) -> u64 {
    s.referenced.line().max(1)
}

/// A file key: must be non-empty; resolved against `base`.
fn named(
    source: &str,
    key: &'static str,
    value: &Spanned<String>,
    base: &Path,
    problems: &mut Vec<Problem>,
) -> Option<NamedFile> {
    if value.value.trim().is_empty() {
        problems.push(Problem {
            line: line(value),
            message: format!("{key} is empty"),
        });
        return None;
    }
    if super::load::looks_like_key_material(&value.value) {
        problems.push(Problem {
            line: line(value),
            message: format!(
                "{key} holds key material, not the path of a file; the value is not shown"
            ),
        });
        return None;
    }
    Some(NamedFile {
        path: super::load::resolve(base, &value.value),
        key,
        source: source.to_string(),
        line: line(value),
    })
}

/// `tls:` of `gateway.yaml`.
pub(super) fn listener(
    source: &str,
    f: &Spanned<ListenerTlsFile>,
    base: &Path,
    problems: &mut Vec<Problem>,
) -> Option<ListenerTls> {
    let before = problems.len();
    let t = &f.value;
    let cert = named(source, "tls.cert", &t.cert, base, problems);
    let key = named(source, "tls.key", &t.key, base, problems);
    let client_ca = t
        .client_ca
        .as_ref()
        .and_then(|c| named(source, "tls.client_ca", c, base, problems));
    let client_identity = match &t.client_identity {
        None => None,
        Some(v) if v.value == "san_dns" => {
            if t.client_ca.is_none() {
                problems.push(Problem {
                    line: line(v),
                    message: "tls.client_identity needs tls.client_ca (the CA whose client certificates identify callers)".into(),
                });
            }
            Some(ClientIdentity::SanDns)
        }
        Some(v) => {
            problems.push(Problem {
                line: line(v),
                message: format!(
                    "unknown tls.client_identity {:?} (expected san_dns)",
                    v.value
                ),
            });
            None
        }
    };
    if problems.len() > before {
        return None;
    }
    Some(ListenerTls {
        cert: cert?,
        key: key?,
        client_ca,
        client_identity,
    })
}

/// The warning for a plain-HTTP listener reachable from other machines, if `listen` is one.
pub(super) fn plain_listen_warning(listen: SocketAddr) -> Option<String> {
    (!listen.ip().is_loopback()).then(|| {
        format!(
            "listen {listen} is not a loopback address and there is no `tls` section: customer data would cross the network unencrypted"
        )
    })
}

/// Whether `name` may be sent as SNI and verified: a DNS name (letters, digits, `-`, `.`,
/// labels of 1 to 63 characters) or an IP address.
pub(crate) fn valid_server_name(name: &str) -> bool {
    if name.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    // No IP address as written (`1.2.3`, `127.0.0.01`), and no certificate can name it.
    if numeric_last_label(name) {
        return false;
    }
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Whether the last label of `name` is a number, decimal or `0x` hex: resolvers take such a
/// name for an IPv4 address, also in shorthand (`127.1`, `0x7f.1`) that certificates and
/// people read otherwise.
pub(crate) fn numeric_last_label(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or_default();
    let hex = last.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("0x"))
        && last[2..].bytes().all(|b| b.is_ascii_hexdigit());
    !last.is_empty() && (last.bytes().all(|b| b.is_ascii_digit()) || hex)
}

/// `tls:` of a partner file. `upstream` is `None` when the upstream itself did not validate.
pub(super) fn partner(
    source: &str,
    f: &Spanned<PartnerTlsFile>,
    upstream: Option<&Upstream>,
    base: &Path,
    problems: &mut Vec<Problem>,
) -> Option<PartnerTls> {
    let before = problems.len();
    let t = &f.value;
    if upstream.is_some_and(|u| !u.tls) {
        problems.push(Problem {
            line: line(f),
            message: "tls is set but the upstream is http://: use an https:// upstream".into(),
        });
    }
    let ca =
        t.ca.as_ref()
            .and_then(|c| named(source, "tls.ca", c, base, problems));
    let server_name = t.server_name.as_ref().and_then(|n| {
        let name = n.value.to_ascii_lowercase();
        if valid_server_name(&name) {
            Some(name)
        } else {
            problems.push(Problem {
                line: line(n),
                message: format!(
                    "invalid tls.server_name {:?}: expected a DNS name (letters, digits, `-` and `.`) or an IP address",
                    n.value
                ),
            });
            None
        }
    });
    let client_cert = match (&t.client_cert, &t.client_key) {
        (Some(c), Some(k)) => {
            let cert = named(source, "tls.client_cert", c, base, problems);
            let key = named(source, "tls.client_key", k, base, problems);
            cert.zip(key)
        }
        (Some(c), None) => {
            problems.push(Problem {
                line: line(c),
                message: "tls.client_cert needs tls.client_key".into(),
            });
            None
        }
        (None, Some(k)) => {
            problems.push(Problem {
                line: line(k),
                message: "tls.client_key needs tls.client_cert".into(),
            });
            None
        }
        (None, None) => None,
    };
    if problems.len() > before {
        return None;
    }
    Some(PartnerTls {
        ca,
        server_name,
        client_cert,
    })
}

#[cfg(test)]
mod tests;
