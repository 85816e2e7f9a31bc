/*!
The policy files' wire format: a serde mirror of `gateway.yaml` and `partners/<id>.yaml`
(README "Policy reference"), with the line of every value a later check may complain about.

Nothing here decides whether a value is acceptable beyond its YAML type; that is
[`super::load`]'s job. Unknown keys, duplicate keys, wrong types and YAML syntax errors are
reported here as [`YamlError`]s, every one of them ([`all_errors`]; a syntax error ends the
file's list).

The same types generate the policy files' JSON Schema ([`gateway_schema`], [`partner_schema`],
committed under `policy/schema/`): every struct here derives `JsonSchema` too, so a new key is
in the schema as soon as it is in the wire format (regenerate with
`UPDATE_SCHEMA=1 cargo test --test schema`).
*/
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use schemars::JsonSchema;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::{MessageFormatter, UserMessageFormatter};

/// `policy/gateway.yaml`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    /// The proxy listener, `IP:PORT`; default `127.0.0.1:8080`.
    pub listen: Option<Spanned<String>>,
    /// The admin listener (metrics, health, JWKS, opt-out API), `IP:PORT`; default `127.0.0.1:9090`.
    pub admin_listen: Option<Spanned<String>>,
    pub limits: Option<Spanned<LimitsFile>>,
    /// Env var holding the admin bearer token.
    pub admin_token_env: Option<Spanned<String>>,
    /// The durable opt-out store; without it no partner may honour opt-outs.
    pub optouts: Option<Spanned<OptOutsFile>>,
    /// Who inside OhSoft may send; required unless `allow_unauthenticated: true`.
    pub callers: Option<Spanned<CallersFile>>,
    /// The gateway's key for data-use tokens.
    pub signing: Option<Spanned<SigningFile>>,
    /// TLS on the proxy listener (omitted = plain HTTP).
    pub tls: Option<Spanned<ListenerTlsFile>>,
    /// The disclosure ledger: one record per forwarded request (omitted = no ledger).
    pub ledger: Option<Spanned<LedgerFile>>,
    /// A candidate policy decided beside the active one on live traffic, never forwarded.
    pub shadow: Option<Spanned<ShadowFile>>,
}

/// `shadow:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShadowFile {
    /// The candidate policy directory (with its own `gateway.yaml` and `partners/`), relative to
    /// the policy directory's parent. Only its partners, routes and limits decide.
    pub policy: Spanned<String>,
}

/// `ledger:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LedgerFile {
    /// Directory of the hash-chained JSONL files, relative to the policy directory's parent.
    pub path: Spanned<String>,
    /// Env var holding the HMAC key for customer ids in the ledger.
    pub subject_key_env: Spanned<String>,
    /// Start a new file past this size in bytes (default 67108864); the chain continues.
    pub rotate_bytes: Option<Spanned<u64>>,
}

/// `tls:` in `gateway.yaml`: the proxy listener's certificate and, optionally, mTLS.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsFile {
    /// PEM certificate chain, leaf first.
    pub cert: Spanned<String>,
    /// PEM private key (PKCS#8, SEC1 or RSA).
    pub key: Spanned<String>,
    /// PEM CA certificates every client certificate must chain to (mTLS).
    pub client_ca: Option<Spanned<String>>,
    /// `san_dns`: the client certificate's first DNS SAN is the caller `sub`.
    #[schemars(extend("enum" = ["san_dns", null]))]
    pub client_identity: Option<Spanned<String>>,
}

/// `tls:` in a partner file: how the gateway verifies (and authenticates to) an `https` upstream.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerTlsFile {
    /// PEM CA certificates trusted instead of the system roots.
    pub ca: Option<Spanned<String>>,
    /// Name sent as SNI and verified, instead of the upstream's host.
    pub server_name: Option<Spanned<String>>,
    /// PEM certificate chain presented to the partner (mTLS).
    pub client_cert: Option<Spanned<String>>,
    /// Its private key.
    pub client_key: Option<Spanned<String>>,
}

/// `limits:`; each member defaults to [`crate::policy::Limits::default`].
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub max_body_bytes: Option<Spanned<u64>>,
    pub max_depth: Option<Spanned<u64>>,
    pub upstream_timeout_ms: Option<Spanned<u64>>,
    /// Deadline for a caller's whole request head, in milliseconds (default 10000).
    pub header_timeout_ms: Option<Spanned<u64>>,
    /// Deadline for a caller's whole request body, in milliseconds (default 30000).
    pub body_timeout_ms: Option<Spanned<u64>>,
    /// Largest request head (request line and headers), in bytes (default 65536).
    pub max_header_bytes: Option<Spanned<u64>>,
    /// Most client connections open at once (default 10000).
    pub max_connections: Option<Spanned<u64>>,
    /// Largest body after undoing its Content-Encoding, in bytes (default `max_body_bytes`).
    pub max_decoded_bytes: Option<Spanned<u64>>,
}

/// `optouts:`: exactly one of `path` and `postgres`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptOutsFile {
    /// Directory of the embedded store, relative to the policy directory's parent.
    pub path: Option<Spanned<String>>,
    /// A PostgreSQL database shared by several replicas.
    pub postgres: Option<Spanned<PostgresFile>>,
}

/// `optouts.postgres:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresFile {
    /// Env var holding the connection URL.
    pub url_env: Spanned<String>,
    /// Table of current opt-outs (default `optouts`).
    pub table: Option<Spanned<String>>,
    /// Past this age of a replica's copy, opt-out routes answer 503 (default 30).
    pub max_staleness_s: Option<Spanned<u64>>,
}

/// `callers:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallersFile {
    /// Expected `iss` of caller tokens.
    pub issuer: Option<Spanned<String>>,
    /// Expected `aud` of caller tokens.
    pub audience: Option<Spanned<String>>,
    /// JWKS file with the callers' public keys.
    pub keys: Option<Spanned<String>>,
    /// Local development only: accept requests without a caller token.
    pub allow_unauthenticated: Option<Spanned<bool>>,
    /// Env var holding an HS256 shared secret for caller tokens.
    pub hs256_secret_env: Option<Spanned<String>>,
    /// Claim listing the caller's groups.
    pub groups_claim: Option<Spanned<String>>,
    /// Longest caller token lifetime accepted (`exp - iat`, or `exp - now` without `iat`), in seconds (default 86400).
    pub max_token_lifetime_s: Option<Spanned<u64>>,
}

/// `signing:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SigningFile {
    /// `true`: run without data-use tokens (then no other key may be given).
    pub disabled: Option<Spanned<bool>>,
    pub issuer: Option<Spanned<String>>,
    /// PKCS#8 Ed25519 or P-256 private key file.
    pub key: Option<Spanned<String>>,
    pub kid: Option<Spanned<String>>,
    /// Extra public key files to publish in the JWKS (key rotation).
    pub publish: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `policy/partners/<id>.yaml`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerFile {
    /// `contractor | business_partner | co_branded | government`.
    #[schemars(extend("enum" = ["contractor", "business_partner", "co_branded", "government"]))]
    pub kind: Spanned<String>,
    /// Why this partner gets data; goes into its data-use tag.
    pub purpose: Spanned<String>,
    /// `http(s)://host[:port]` of the partner API.
    pub upstream: Spanned<String>,
    pub routes: Spanned<Vec<Spanned<RouteFile>>>,
    /// Caller `sub` values that may use this partner.
    pub allowed_callers: Option<Spanned<Vec<Spanned<String>>>>,
    /// Env var holding the HMAC key for `pseudonymize`.
    pub pseudonymize_key_env: Option<Spanned<String>>,
    /// The partner's credential.
    pub upstream_auth: Option<Spanned<UpstreamAuthFile>>,
    /// Opt-out scopes honoured, replacing the kind's default.
    pub honor_optouts: Option<Spanned<Vec<Spanned<String>>>>,
    /// Government partners: the header carrying the legal basis reference.
    pub legal_basis_header: Option<Spanned<String>>,
    /// Government partners: a regular expression the whole reference must match.
    pub legal_basis_format: Option<Spanned<String>>,
    /// TLS toward an `https` upstream.
    pub tls: Option<Spanned<PartnerTlsFile>>,
}

/// One entry of `routes:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// Template: literal segments and `{name}`.
    pub path: Spanned<String>,
    /// HTTP methods, in capitals.
    #[schemars(extend("items" = { "type": "string", "enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] }))]
    pub methods: Option<Spanned<Vec<Spanned<String>>>>,
    /// Field path of the customer records; `$` when the body is one record.
    pub records: Option<Spanned<String>>,
    /// Member of each record holding the customer id.
    pub subject: Option<Spanned<String>>,
    /// Field paths that pass unchanged.
    pub allow: Option<Spanned<Vec<Spanned<String>>>>,
    /// Field path → transform name, in the order written. A `None` value is an unquoted YAML null.
    pub transform: Option<Spanned<TransformMap>>,
    /// Query parameters that may pass.
    pub query: Option<Spanned<Vec<Spanned<String>>>>,
    /// Extra request headers that may pass.
    pub headers: Option<Spanned<Vec<Spanned<String>>>>,
    /// `+json` media types filtered like `application/json`.
    pub json_types: Option<Spanned<Vec<Spanned<String>>>>,
    /// Partner answer headers relayed to the caller beyond the defaults.
    pub response_headers: Option<Spanned<Vec<Spanned<String>>>>,
    /// Request Content-Encodings this route decodes before filtering: `gzip`, `deflate`, `br`.
    pub decode: Option<Spanned<Vec<Spanned<String>>>>,
    /// Allow or transform path (as written there) → fideslang data category name.
    pub categories: Option<Spanned<CategoryMap>>,
    /// `ndjson`: the body is a stream of records, one JSON object per line, each filtered on
    /// its own and forwarded chunked as soon as it is decided.
    #[schemars(extend("enum" = ["ndjson", null]))]
    pub stream: Option<Spanned<String>>,
}

/// `categories:` entries: field path → data category name, in the order written.
pub type CategoryMap = Entries<Spanned<String>, Spanned<String>>;

/// `transform:` entries: field path → transform name; `None` is an unquoted YAML null.
pub type TransformMap = Entries<Spanned<String>, Spanned<Option<String>>>;

/// `upstream_auth:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamAuthFile {
    pub header: Spanned<String>,
    /// Put before the secret, e.g. `"Bearer "`.
    pub prefix: Option<Spanned<String>>,
    /// Env var holding the secret.
    pub env: Spanned<String>,
}

/// A value with where it was written. Deserializes exactly like `serde_saphyr::Spanned`; its
/// JSON Schema is the value's.
#[derive(Debug, Clone)]
pub struct Spanned<T> {
    pub value: T,
    pub referenced: serde_saphyr::Location,
    pub defined: serde_saphyr::Location,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<T>::deserialize(deserializer)?;
        Ok(Spanned {
            value: s.value,
            referenced: s.referenced,
            defined: s.defined,
        })
    }
}

impl<T: JsonSchema> JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

/// A YAML mapping kept as its entries in document order (duplicate keys are refused by the parser).
#[derive(Debug)]
pub struct Entries<K, V>(pub Vec<(K, V)>);

/// A mapping with string keys and `V` values.
impl<K, V: JsonSchema> JsonSchema for Entries<K, V> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        Cow::Owned(format!("Map_of_{}", V::schema_name()))
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "additionalProperties": generator.subschema_for::<V>(),
        })
    }
}

/// The JSON Schema of `policy/gateway.yaml`.
pub fn gateway_schema() -> serde_json::Value {
    schemars::schema_for!(GatewayFile).to_value()
}

/// The JSON Schema of `policy/partners/<id>.yaml`.
pub fn partner_schema() -> serde_json::Value {
    schemars::schema_for!(PartnerFile).to_value()
}

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for Entries<K, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<K, V>(PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<K, V> {
            type Value = Entries<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}

/// A file that is not valid YAML or does not fit the wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    /// 1-based; 1 when the parser knows no better.
    pub line: u64,
    /// 1-based, in characters; 0 when the parser does not say.
    pub column: u64,
    /// One line, lowercase, naming the field where it can.
    pub message: String,
}

/// Parses `gateway.yaml`.
pub fn parse_gateway(text: &str) -> Result<GatewayFile, YamlError> {
    parse(text)
}

/// Parses a `partners/<id>.yaml`.
pub fn parse_partner(text: &str) -> Result<PartnerFile, YamlError> {
    parse(text)
}

/// Parses any YAML file with the policy files' rules (strict booleans, one-line errors with a
/// line number): policy test files use it too.
pub fn parse_yaml<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, YamlError> {
    parse(text)
}

/// Most errors reported for one file.
const MAX_FILE_ERRORS: usize = 50;

/// The key a YAML error is about, and whether the file means the same without it: an unknown
/// key is ignored anyway, while a key given twice or with the wrong type is a real setting
/// whose absence may change what the rest of the file means.
fn error_key(message: &str) -> Option<(&str, bool)> {
    let prefixes = [
        ("unknown field `", true),
        ("duplicate key `", false),
        ("invalid value for `", false),
    ];
    prefixes.iter().find_map(|(prefix, harmless)| {
        let key = message.strip_prefix(prefix)?.split('`').next()?;
        Some((key, *harmless))
    })
}

/// Every error `parse` would report for `text`, not just the first: serde stops at the first
/// unknown key, key given twice or value of the wrong type, so that key's block is blanked out
/// (keeping line numbers) and the file is parsed again, until it parses or fails for another
/// reason (which is reported too). A required key blanked this way is not reported again as
/// missing.
///
/// When the file parses once only its unknown keys are blanked out, that parse comes back
/// too, so the caller can report the file's other (semantic) errors in the same run. With a
/// key given twice or of the wrong type blanked out, the file would be checked without a
/// setting it has, so it is not.
pub fn all_errors<T: for<'de> Deserialize<'de> + JsonSchema>(
    text: &str,
    first: YamlError,
) -> (Vec<YamlError>, Option<T>) {
    let mut errors = vec![first];
    let mut blanked: Vec<String> = Vec::new();
    let mut harmless_only = true;
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    while errors.len() < MAX_FILE_ERRORS {
        let last = &errors[errors.len() - 1];
        let Some((key, harmless)) = error_key(&last.message) else {
            break;
        };
        let at = (last.line as usize).saturating_sub(1);
        let Some(key_line) = lines.get(at) else { break };
        let indent = key_line.len() - key_line.trim_start().len();
        // Only a key that starts its own line can be cut out without changing anything else,
        // or an entry of a flow mapping on one line (`limits: { typo: 1, ... }`): the one the
        // parser points at, which may be named like the key that starts the line.
        let at_byte = column_byte(key_line, last.column);
        let flow = without_flow_entry(key_line, key, at_byte);
        // The line's own key is the one meant when the parser points at it, or at its value for
        // a value of the wrong type (a key named like it further along is not).
        let own_key = key_line.trim_start().starts_with(&format!("{key}:"))
            && at_byte.is_none_or(|b| b == indent || !harmless && b > indent + key.len());
        if flow.is_some() || !own_key {
            let Some(without) = flow else {
                break;
            };
            lines[at] = without;
            harmless_only &= harmless;
            blanked.push(key.to_string());
            // The same complaint at the same place is about the entry that moved there (each
            // cut shortens the line, so this ends).
            match parse::<T>(&lines.join("\n")) {
                Ok(parsed) => return (errors, harmless_only.then_some(parsed)),
                Err(e) if is_missing(&e.message, &blanked) => break,
                Err(e) => errors.push(e),
            }
            continue;
        }
        let mut end = at + 1;
        while end < lines.len() {
            let l = &lines[end];
            let l_indent = l.len() - l.trim_start().len();
            // A block sequence may stand at its key's own indent (`key:` then `- x`).
            let item = l_indent == indent && l.trim_start().starts_with('-');
            if !l.trim().is_empty() && l_indent <= indent && !item {
                break;
            }
            end += 1;
        }
        if !cuttable(&lines[at..end]) || inside_flow(&lines, at) {
            break;
        }
        for line in &mut lines[at..end] {
            line.clear();
        }
        harmless_only &= harmless;
        blanked.push(key.to_string());
        match parse::<T>(&lines.join("\n")) {
            Ok(parsed) => return (errors, harmless_only.then_some(parsed)),
            Err(e) if same_error(&e, last) => break,
            Err(e) if is_missing(&e.message, &blanked) => break,
            Err(e) => errors.push(e),
        }
    }
    let more = other_missing_keys::<T>(text, &errors);
    errors.extend(more);
    errors.truncate(MAX_FILE_ERRORS);
    (errors, None)
}

/// serde names one missing key and stops. When that key is one of the file's own required
/// top-level keys, the others the file lacks are listed beside it, at the same line, so one
/// `check` shows everything to add. A missing key of a nested mapping stays the only one named.
fn other_missing_keys<T: JsonSchema>(text: &str, errors: &[YamlError]) -> Vec<YamlError> {
    let Some(first) = errors
        .iter()
        .find(|e| e.message.starts_with("missing field `"))
    else {
        return Vec::new();
    };
    let schema = schemars::schema_for!(T);
    let required: Vec<&str> = schema
        .get("required")
        .and_then(serde_json::Value::as_array)
        .map(|keys| keys.iter().filter_map(serde_json::Value::as_str).collect())
        .unwrap_or_default();
    let Ok(present) = parse::<std::collections::BTreeMap<String, serde::de::IgnoredAny>>(text)
    else {
        return Vec::new();
    };
    let is_first = |key: &str| first.message == format!("missing field `{key}`");
    let missing: Vec<&str> = required
        .into_iter()
        .filter(|key| !present.contains_key(*key))
        .collect();
    if !missing.iter().any(|key| is_first(key)) {
        return Vec::new();
    }
    missing
        .into_iter()
        .filter(|key| !is_first(key))
        .map(|key| YamlError {
            line: first.line,
            column: first.column,
            message: format!("missing field `{key}`"),
        })
        .collect()
}

/// `line` without the `key: value` entry of a flow mapping that opens and closes on it (the
/// comma before the entry goes too, or the one after it when it comes first): the innermost
/// entry that holds byte `at` (where the parser placed the error: the key, or the value of a
/// wrong type), or without `at` the innermost one named `key`. Only plain lines are cut: one
/// with a quote, a tag, an anchor or an alias (`"` `'` `!` `&` `*`) is read the way only a YAML
/// parser reads it, so `None` (the listing ends there), as it is when no entry fits.
fn without_flow_entry(line: &str, key: &str, at: Option<usize>) -> Option<String> {
    let code = code_of(line);
    if code.contains(['"', '\'', '!', '&', '*']) {
        return None;
    }
    let named = |&&(start, end): &&Span| {
        let entry = line.get(start + 1..end).unwrap_or("").trim_start();
        entry
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
    };
    let holds = |&&(start, end): &&Span| at.is_none_or(|at| start < at && at < end);
    let entries = flow_entries(code);
    // Of nested entries that both hold `at`, the inner one starts later.
    let &(start, end) = entries
        .iter()
        .filter(named)
        .filter(holds)
        .max_by_key(|(start, _)| *start)?;
    let bytes = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    if bytes[start] == b',' {
        out.push_str(&line[..start]);
        out.push_str(&line[end..]);
    } else {
        // The first entry: keep its `{`, drop the comma after it.
        let after = if bytes[end] == b',' { end + 1 } else { end };
        out.push_str(&line[..=start]);
        out.push_str(&line[after..]);
    }
    Some(out)
}

/// An entry of a flow mapping: the byte before it (`{` or `,`) and the byte after (`,` or `}`).
type Span = (usize, usize);

/// The entries of the flow mappings that open and close on `code` (a line without quotes or
/// comment), each as (the byte of the `{` or `,` before it, the byte of the `,` or `}` after
/// it); brackets of collections that span lines are passed over.
fn flow_entries(code: &str) -> Vec<Span> {
    let mut done = Vec::new();
    // Per bracket open on this line: whether it is a mapping, where its current entry started,
    // and its entries so far (kept only if it closes on this line).
    let mut open: Vec<(bool, usize, Vec<Span>)> = Vec::new();
    for (i, c) in code.bytes().enumerate() {
        match c {
            b'{' | b'[' => open.push((c == b'{', i, Vec::new())),
            b',' => {
                if let Some((mapping, start, entries)) = open.last_mut() {
                    if *mapping {
                        entries.push((*start, i));
                    }
                    *start = i;
                }
            }
            b'}' | b']' => {
                if let Some((mapping, start, mut entries)) = open.pop() {
                    if mapping {
                        entries.push((start, i));
                        done.append(&mut entries);
                    }
                }
            }
            _ => {}
        }
    }
    done
}

/// The same complaint at the same place: the cut did not take the key away.
fn same_error(e: &YamlError, last: &YamlError) -> bool {
    (e.line, e.column, &e.message) == (last.line, last.column, &last.message)
}

/// The byte of `line` at 1-based character `column`, if the parser gave one.
fn column_byte(line: &str, column: u64) -> Option<usize> {
    let column = usize::try_from(column).ok()?.checked_sub(1)?;
    line.char_indices().nth(column).map(|(at, _)| at)
}

/// Does line `at` go on a flow collection written over several lines (`{` or `[` ending the
/// line before, or a `,` ending either)? Then its key is no block of its own: blanking the
/// line would take the entries beside it too.
fn inside_flow(lines: &[String], at: usize) -> bool {
    let before = lines[..at]
        .iter()
        .map(|l| code_of(l).trim_end())
        .rfind(|l| !l.trim().is_empty());
    before.is_some_and(|l| l.ends_with(['{', '[', ',']))
        || lines
            .get(at)
            .is_some_and(|l| code_of(l).trim_end().ends_with(','))
}

/// `line` without its comment: from the first `#` that starts the line or follows a space or a
/// tab (quotes are not looked at: a caller that cuts refuses lines with quotes).
fn code_of(line: &str) -> &str {
    let bytes = line.as_bytes();
    let comment = (0..bytes.len())
        .find(|&i| bytes[i] == b'#' && (i == 0 || matches!(bytes[i - 1], b' ' | b'\t')));
    &line[..comment.unwrap_or(line.len())]
}

/// Can these lines go without breaking the YAML around them: no flow collection opened or
/// closed across their edge (a key inside `{ ... }` over several lines), and no anchor a later
/// alias may name?
fn cuttable(block: &[String]) -> bool {
    let mut depth = 0i32;
    for c in block.iter().flat_map(|l| l.chars()) {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            _ => {}
        }
    }
    depth == 0 && !block.iter().any(|l| l.contains('&'))
}

/// Is `message` serde's complaint that one of the `blanked` keys is missing?
fn is_missing(message: &str, blanked: &[String]) -> bool {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
        .is_some_and(|key| blanked.iter().any(|b| b == key))
}

fn parse<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, YamlError> {
    let mut options = serde_saphyr::Options::default();
    // `yes`/`no`/`on`/`off` are strings, not booleans: `allow_unauthenticated: on` is a type error.
    options.strict_booleans = true;
    options.with_snippet = false;
    serde_saphyr::from_str_with_options(text, options).map_err(|e| yaml_error(&e, text))
}

fn yaml_error(err: &serde_saphyr::Error, text: &str) -> YamlError {
    let inner = innermost(err);
    let location = inner.location().or_else(|| err.location());
    let line = if is_blank(text) {
        1
    } else {
        location.map_or(1, |l| l.line()).max(1)
    };
    let message = match inner {
        serde_saphyr::Error::Eof { .. } if is_blank(text) => {
            Cow::Borrowed("the file is empty (expected a mapping of settings)")
        }
        serde_saphyr::Error::DuplicateMappingKey { key: Some(key), .. } => {
            Cow::Owned(format!("duplicate key `{key}`"))
        }
        serde_saphyr::Error::DuplicateMappingKey { key: None, .. } => {
            Cow::Borrowed("duplicate key")
        }
        // The YAML parser's own errors (validators, the other source, are not enabled).
        parser @ serde_saphyr::Error::ExternalMessage { .. } => Cow::Owned(format!(
            "invalid YAML: {}{}",
            UserMessageFormatter.format_message(parser),
            unclosed_bracket_hint(text, line)
        )),
        other => UserMessageFormatter.format_message(other),
    };
    let message = one_line(&message);
    let message = match location {
        Some(loc) => explain_type_error(&message, text, loc.line(), loc.column(), loc.span().len()),
        None => message,
    };
    let message = match text.lines().nth(line as usize - 1) {
        // `[a[*].b]`: YAML reads `[` as a nested list and `*` as an alias.
        Some(l) if l.contains("[*]") && l.contains(": [") => {
            format!("{message} (inside `[...]`, quote paths that use `[*]`, or write one per line as `- a[*].b`)")
        }
        _ => message,
    };
    let column = location.map_or(0, |l| l.column());
    YamlError {
        line: tab_line(text, &message, line),
        column,
        message,
    }
}

/// The parser reports a tab where the value before it started (often the line above): the
/// line that holds the tab.
fn tab_line(text: &str, message: &str, line: u64) -> u64 {
    if !message.contains("found a tab") {
        return line;
    }
    let from = usize::try_from(line.saturating_sub(1)).unwrap_or(0);
    let tab = text
        .lines()
        .enumerate()
        .skip(from)
        .find(|(_, l)| l.contains('\t'));
    tab.map_or(line, |(i, _)| i as u64 + 1)
}

/// Unwraps snippet and alias wrappers to the error that says what went wrong.
fn innermost(err: &serde_saphyr::Error) -> &serde_saphyr::Error {
    let mut err = err.without_snippet();
    while let serde_saphyr::Error::AliasError { error, .. } = err {
        err = error.without_snippet();
    }
    err
}

/// A syntax error often shows on the line after an unclosed `[` or `{`: say where it opened.
fn unclosed_bracket_hint(text: &str, error_line: u64) -> String {
    let before = text.lines().take(error_line.saturating_sub(1) as usize);
    let Some((n, l)) = before
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .last()
    else {
        return String::new();
    };
    let content = l.split(" #").next().unwrap_or(l);
    let count = |c: char| content.chars().filter(|&x| x == c).count();
    for (open, close) in [('[', ']'), ('{', '}')] {
        if count(open) > count(close) {
            return format!(" (is the `{open}` on line {} closed?)", n + 1);
        }
    }
    String::new()
}

fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---" || l == "..."
    })
}

fn one_line(message: &str) -> String {
    let joined = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut chars = joined.chars();
    match chars.next() {
        // Messages are lowercase, except where they start with a name such as `YAML`.
        Some(first) if chars.clone().next().is_some_and(|c| c.is_lowercase()) => {
            first.to_lowercase().chain(chars).collect()
        }
        _ => joined,
    }
}

/// Turns the parser's type errors (`expected string scalar`, `invalid u64`) into a message that
/// names the field and quotes the value.
fn explain_type_error(message: &str, text: &str, line: u64, column: u64, len: u64) -> String {
    let expected = match message {
        "expected string scalar" => "expected a string",
        "expected sequence start" => "expected a list",
        "expected mapping start" | "expected mapping" => "expected a mapping",
        "invalid boolean (true or false expected)" => "expected true or false",
        "null is not allowed here" => "expected a value, found null",
        m if m.starts_with("invalid u") || m.starts_with("invalid i") => {
            "expected a whole number of at least 0"
        }
        _ => return message.to_string(),
    };
    let Some(source_line) = text.lines().nth(line.saturating_sub(1) as usize) else {
        return expected.to_string();
    };
    let before: String = source_line
        .chars()
        .take(column.saturating_sub(1) as usize)
        .collect();
    let found: String = source_line
        .chars()
        .skip(column.saturating_sub(1) as usize)
        .take(len as usize)
        .collect();
    let key = key_before(&before);
    let found = match found.trim() {
        f if f.starts_with('[') || f == "-" || f.starts_with("- ") => " (found a list)".to_string(),
        f if f.starts_with('{') => " (found a mapping)".to_string(),
        _ if expected.ends_with("null") => String::new(),
        "" => String::new(),
        f if key.is_some_and(may_hold_a_secret) || looks_like_a_secret(f) => {
            " (the value is not shown: it may be a secret)".to_string()
        }
        f => format!(", found `{f}`"),
    };
    match key {
        Some(key) => format!("invalid value for `{key}`: {expected}{found}"),
        None => format!("invalid value: {expected}{found}"),
    }
}

/// Keys whose misplaced value may be a credential (`upstream_auth: "Bearer …"`, a secret where
/// a variable name belongs): a type error does not quote it.
fn may_hold_a_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "upstream_auth"
        || key == "env"
        || key.ends_with("_env")
        || ["secret", "token", "password", "credential"]
            .iter()
            .any(|word| key.contains(word))
}

/// Values that look like a credential whatever key they sit under: a URL with user info
/// (`postgres://user:password@host/db`; the password may hold `/`, `?` or `#`, so any `@`
/// after the scheme counts), a connection string with a password, an HTTP authorization value
/// (`Bearer …`, `Basic …`, `Token …`). Messages about them do not quote them.
pub(crate) fn looks_like_a_secret(value: &str) -> bool {
    let lower = value.trim_matches(['"', '\'', '`']).to_ascii_lowercase();
    let user_info = lower
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('@'));
    // A tab may arrive as itself or escaped by `{:?}`.
    let scheme = ["bearer", "basic", "token", "digest", "negotiate"]
        .iter()
        .any(|s| {
            lower
                .strip_prefix(s)
                .is_some_and(|rest| rest.starts_with([' ', '\t']) || rest.starts_with("\\t"))
        });
    // `password=…` of a connection string (libpq allows spaces around `=`).
    let password = ["password", "passwd"].iter().any(|word| {
        lower
            .match_indices(word)
            .any(|(at, _)| lower[at + word.len()..].trim_start().starts_with('='))
    });
    user_info || password || scheme
}

/// `message` with every quoted part (between backticks or double quotes, as messages quote
/// what a file says) that [`looks_like_a_secret`] replaced by `***`: every diagnostic goes
/// through it, so no check, log line or `/reload` answer repeats a credential written in the
/// wrong place, whichever rule quoted it.
pub(crate) fn redact_quoted_secrets(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find(['`', '"']) {
        let quote = rest.as_bytes()[open] as char;
        out.push_str(&rest[..=open]);
        let inside = &rest[open + 1..];
        // A double-quoted part is Rust's `{:?}`: `\"` inside it does not end it.
        let close = inside.char_indices().find(|&(i, c)| {
            c == quote
                && (quote == '`' || !inside[..i].ends_with('\\') || inside[..i].ends_with("\\\\"))
        });
        let Some((close, _)) = close else {
            out.push_str(inside);
            return out;
        };
        let part = &inside[..close];
        out.push_str(if looks_like_a_secret(part) {
            "***"
        } else {
            part
        });
        out.push(quote);
        rest = &inside[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The last `key:` written before the error's column on its line (`limits: {max_depth: x` → `max_depth`).
fn key_before(before: &str) -> Option<&str> {
    let trimmed = before.trim_end();
    let body = trimmed.strip_suffix(':')?;
    let start = body
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .map_or(0, |i| i + 1);
    let key = &body[start..];
    (!key.is_empty()).then_some(key)
}

#[cfg(test)]
mod tests;
