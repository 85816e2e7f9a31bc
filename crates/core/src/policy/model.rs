/*!
The validated policy: what the rest of the gateway works from. Every value here has passed
`check`; secrets named by the policy (pseudonymisation keys, partner credentials) have been
resolved from the environment. Built by [`super::load`] from the files' wire format.
*/
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::filter::FilterProgram;
use crate::optout::Scope;

/// The whole policy as loaded from one directory.
#[derive(Debug)]
pub struct Policy {
    /// Content hash of every policy file (12 hex digits): goes into data-use tags and `policy_info`.
    pub version: String,
    pub gateway: GatewayConfig,
    /// Partners by id (the file name without `.yaml`).
    pub partners: BTreeMap<String, Arc<Partner>>,
}

/// One variable the policy reads a secret from: who it belongs to and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretVariable<'a> {
    pub env: &'a str,
    /// The partner whose secret it is; `None` for the gateway's own.
    pub owner: Option<&'a str>,
    /// `pseudonymisation key`, `API credential`, `admin token`, ...
    pub what: &'static str,
    /// The secret itself, where it was read (serve), to tell two variables holding one value.
    pub value: Option<&'a [u8]>,
}

impl SecretVariable<'_> {
    /// `acme's API credential`, `the gateway's admin token`.
    pub fn describe(&self) -> String {
        match self.owner {
            Some(id) => format!("{id}'s {}", self.what),
            None => format!("the gateway's {}", self.what),
        }
    }
}

/// What a partner's pseudonymisation key is called in [`SecretVariable::what`].
pub const PSEUDONYMISATION_KEY: &str = "pseudonymisation key";
/// What a partner's `upstream_auth` secret is called in [`SecretVariable::what`].
pub const API_CREDENTIAL: &str = "API credential";

impl Policy {
    /// Every variable the policy reads a secret from: the gateway's first, then each
    /// partner's pseudonymisation key and API credential. Each secret must serve one purpose:
    /// a partner sent a variable that holds another secret (another partner's credential or
    /// key, the admin token, the ledger key) would hold that secret.
    pub fn secret_variables<'a>(&'a self) -> Vec<SecretVariable<'a>> {
        let g = &self.gateway;
        let var = |env: &'a String, owner: Option<&'a str>, what, value: Option<&'a [u8]>| {
            SecretVariable {
                env,
                owner,
                what,
                value,
            }
        };
        let postgres = match &g.optouts {
            Some(OptOutStoreConfig::Postgres(pg)) => Some(&pg.url_env),
            _ => None,
        };
        let mut vars: Vec<SecretVariable<'a>> = [
            g.admin_token_env
                .as_ref()
                .map(|e| var(e, None, "admin token", None)),
            g.ledger.as_ref().map(|l| {
                var(
                    &l.subject_key_env,
                    None,
                    "ledger key",
                    l.subject_key.as_deref(),
                )
            }),
            g.callers.as_ref().and_then(|c| {
                let e = c.hs256_secret_env.as_ref()?;
                Some(var(
                    e,
                    None,
                    "caller HS256 secret",
                    c.hs256_secret.as_deref(),
                ))
            }),
            postgres.map(|e| var(e, None, "opt-out database URL", None)),
        ]
        .into_iter()
        .flatten()
        .collect();
        for p in self.partners.values() {
            let owner = Some(p.id.as_str());
            if let Some(env) = &p.pseudonymize_key_env {
                let value = p.pseudonymize_key.as_deref();
                vars.push(var(env, owner, PSEUDONYMISATION_KEY, value));
            }
            if let Some(source) = &p.upstream_auth_source {
                let value = p.upstream_auth.as_ref().map(|a| a.secret.as_bytes());
                vars.push(var(&source.env, owner, API_CREDENTIAL, value));
            }
        }
        vars
    }
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub limits: Limits,
    /// Name of the env var that holds the admin bearer token; `None` or unset = admin writes refused.
    pub admin_token_env: Option<String>,
    pub optouts: Option<OptOutStoreConfig>,
    pub callers: Option<CallersConfig>,
    /// `None` only with `signing: { disabled: true }` (a missing section is a `check` error).
    pub signing: Option<SigningConfig>,
    /// TLS on the proxy listener; `None` = plain HTTP.
    pub tls: Option<ListenerTls>,
    /// The disclosure ledger; `None` = off.
    pub ledger: Option<LedgerConfig>,
    /// `shadow.policy`: the candidate policy directory (resolved against the policy directory's
    /// parent); `None` = no shadow policy.
    pub shadow: Option<std::path::PathBuf>,
}

/// Default `ledger.rotate_bytes`: 64 MiB.
pub const DEFAULT_LEDGER_ROTATE_BYTES: u64 = 64 * 1024 * 1024;

/// `ledger:` in `gateway.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerConfig {
    /// Directory of the ledger files (resolved against the policy directory's parent).
    pub path: std::path::PathBuf,
    /// Name of the env var holding the subject HMAC key.
    pub subject_key_env: String,
    /// The key's bytes, when the environment was read (serve; `None` for `check` without env).
    pub subject_key: Option<Vec<u8>>,
    /// A new file starts past this many bytes.
    pub rotate_bytes: u64,
}

/// A file the policy names, with where it is named (for `FILE:LINE` diagnostics about its content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedFile {
    /// Resolved against the directory that holds the policy directory.
    pub path: std::path::PathBuf,
    /// The key naming it, e.g. `tls.cert`.
    pub key: &'static str,
    /// The policy file that names it, as shown in diagnostics.
    pub source: String,
    pub line: u64,
}

/// How a caller is identified by its client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIdentity {
    /// The certificate's first DNS subject alternative name.
    SanDns,
}

/// `tls:` of `gateway.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    pub cert: NamedFile,
    pub key: NamedFile,
    pub client_ca: Option<NamedFile>,
    pub client_identity: Option<ClientIdentity>,
}

/// `tls:` of a partner file (an `https` upstream without one is verified against the system roots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerTls {
    pub ca: Option<NamedFile>,
    pub server_name: Option<String>,
    /// Certificate and key presented to the partner; both or neither.
    pub client_cert: Option<(NamedFile, NamedFile)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_depth: usize,
    pub upstream_timeout: Duration,
    /// The whole request head must arrive within this time.
    pub header_timeout: Duration,
    /// The whole request body must arrive within this time.
    pub body_timeout: Duration,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// Most client connections open at once.
    pub max_connections: usize,
    /// Largest body after undoing its Content-Encoding, in bytes.
    pub max_decoded_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 8 * 1024 * 1024,
            max_depth: 64,
            upstream_timeout: Duration::from_millis(10_000),
            header_timeout: Duration::from_millis(10_000),
            body_timeout: Duration::from_millis(30_000),
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            max_decoded_bytes: 8 * 1024 * 1024,
        }
    }
}

/// Where opt-outs are kept: `optouts: { path: .. }` or `optouts: { postgres: { .. } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptOutStoreConfig {
    /// The embedded durable store in one directory (relative paths resolved against the policy
    /// directory's parent). One gateway process owns it.
    Embedded { path: std::path::PathBuf },
    /// A PostgreSQL database shared by several gateway replicas.
    Postgres(PostgresOptOuts),
}

impl OptOutStoreConfig {
    /// The embedded store's directory (`None` for PostgreSQL).
    pub fn embedded_path(&self) -> Option<&std::path::Path> {
        match self {
            OptOutStoreConfig::Embedded { path } => Some(path),
            OptOutStoreConfig::Postgres(_) => None,
        }
    }
}

/// `optouts: { postgres: { url_env, table, max_staleness_s } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptOuts {
    /// Env var holding the connection URL (`postgres://user:pass@host/db?sslmode=require`);
    /// the URL itself is read by the shell when it connects and never kept in the policy.
    pub url_env: String,
    /// Table of current opt-outs; the change log is `{table}_changes`, the change counter
    /// `{table}_seq` and the notification channel `{table}_changes`.
    pub table: String,
    /// Past this age of the in-memory copy, routes that honour opt-outs answer 503.
    pub max_staleness: Duration,
}

impl PostgresOptOuts {
    pub const DEFAULT_TABLE: &'static str = "optouts";
    pub const DEFAULT_MAX_STALENESS_S: u64 = 30;
    /// Longest table name: `{table}_changes` must fit PostgreSQL's 63-byte identifiers.
    pub const MAX_TABLE_LEN: usize = 48;
    /// Longest `max_staleness_s` accepted (an hour): past it, failing closed would hardly mean
    /// anything.
    pub const MAX_STALENESS_S: u64 = 3600;

    /// PostgreSQL's reserved key words (reserved, and reserved but usable as function or type
    /// names), which cannot name a table unquoted, and the `pg_` names of its system catalogs.
    pub fn reserved_word(name: &str) -> bool {
        const RESERVED: &[&str] = &[
            "all",
            "analyse",
            "analyze",
            "and",
            "any",
            "array",
            "as",
            "asc",
            "asymmetric",
            "authorization",
            "binary",
            "both",
            "case",
            "cast",
            "check",
            "collate",
            "collation",
            "column",
            "concurrently",
            "constraint",
            "create",
            "cross",
            "current_catalog",
            "current_date",
            "current_role",
            "current_schema",
            "current_time",
            "current_timestamp",
            "current_user",
            "default",
            "deferrable",
            "desc",
            "distinct",
            "do",
            "else",
            "end",
            "except",
            "false",
            "fetch",
            "for",
            "foreign",
            "freeze",
            "from",
            "full",
            "grant",
            "group",
            "having",
            "ilike",
            "in",
            "initially",
            "inner",
            "intersect",
            "into",
            "is",
            "isnull",
            "join",
            "lateral",
            "leading",
            "left",
            "like",
            "limit",
            "localtime",
            "localtimestamp",
            "natural",
            "not",
            "notnull",
            "null",
            "offset",
            "on",
            "only",
            "or",
            "order",
            "outer",
            "overlaps",
            "placing",
            "primary",
            "references",
            "returning",
            "right",
            "select",
            "session_user",
            "similar",
            "some",
            "symmetric",
            "system_user",
            "table",
            "tablesample",
            "then",
            "to",
            "trailing",
            "true",
            "union",
            "unique",
            "user",
            "using",
            "variadic",
            "verbose",
            "when",
            "where",
            "window",
            "with",
        ];
        // `pg_` names PostgreSQL's system catalogs.
        RESERVED.contains(&name) || name.starts_with("pg_")
    }

    /// A table name we put into SQL unquoted: lowercase ASCII letters, digits and `_`,
    /// starting with a letter or `_`, at most [`Self::MAX_TABLE_LEN`] bytes.
    pub fn valid_table(name: &str) -> bool {
        name.len() <= Self::MAX_TABLE_LEN
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    }
}

/// Longest caller token lifetime accepted unless `callers.max_token_lifetime_s` says otherwise (one day).
pub const DEFAULT_MAX_TOKEN_LIFETIME_SECS: u64 = 86_400;

#[derive(Debug, Clone)]
pub struct CallersConfig {
    pub issuer: String,
    pub audience: String,
    /// JWKS file with the callers' public keys; `None` when the policy names none
    /// (`allow_unauthenticated`, or HS256 only).
    pub keys: Option<NamedFile>,
    pub allow_unauthenticated: bool,
    /// Env var holding an HS256 shared secret for caller tokens (tests and local setups).
    pub hs256_secret_env: Option<String>,
    /// The secret from `hs256_secret_env`; `None` in check mode (secrets are not resolved).
    pub hs256_secret: Option<Vec<u8>>,
    /// Claim listing the caller's groups, if callers may be allowed by group.
    pub groups_claim: Option<String>,
    /// Longest caller token lifetime accepted, in seconds.
    pub max_token_lifetime_s: u64,
}

#[derive(Debug, Clone)]
pub struct SigningConfig {
    pub issuer: String,
    pub key: NamedFile,
    pub kid: String,
    /// Extra public key files published in the JWKS beside the signing key (key rotation).
    pub publish: Vec<NamedFile>,
}

/// Recipient kind, from the privacy policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartnerKind {
    Contractor,
    BusinessPartner,
    CoBranded,
    Government,
}

impl PartnerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PartnerKind::Contractor => "contractor",
            PartnerKind::BusinessPartner => "business_partner",
            PartnerKind::CoBranded => "co_branded",
            PartnerKind::Government => "government",
        }
    }

    /// The `use` member of the `ohsoft-data-use` tag.
    pub fn data_use(self) -> &'static str {
        match self {
            PartnerKind::Contractor => "on-behalf-of-ohsoft",
            PartnerKind::BusinessPartner => "partner-sharing",
            PartnerKind::CoBranded => "co-branded",
            PartnerKind::Government => "legal-obligation",
        }
    }
}

/// Where a partner's API lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl Upstream {
    /// `host:port`, for connecting.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The header a partner's credential travels in (lowercase) and the variable it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSource {
    pub header: String,
    pub env: String,
}

#[derive(Debug, Clone)]
pub struct UpstreamAuth {
    /// Lowercase header name, e.g. `authorization`.
    pub header: String,
    /// The full header value (prefix + secret from the environment).
    pub value: String,
    /// The secret alone: a partner answer header carrying it is never relayed.
    pub secret: String,
}

#[derive(Debug)]
pub struct Partner {
    pub id: String,
    pub kind: PartnerKind,
    pub purpose: String,
    pub upstream: Upstream,
    pub routes: Vec<Route>,
    pub allowed_callers: Vec<String>,
    /// HMAC key for `pseudonymize`, resolved from `pseudonymize_key_env`.
    pub pseudonymize_key: Option<Vec<u8>>,
    /// The name of the variable the key comes from (`explain` resolves only the one it needs).
    pub pseudonymize_key_env: Option<String>,
    pub upstream_auth: Option<UpstreamAuth>,
    /// Where `upstream_auth` puts the credential and where it reads it from, kept when the
    /// secret is not resolved (`check`, `diff` and policy tests know them all the same).
    pub upstream_auth_source: Option<CredentialSource>,
    /// Opt-out scopes this partner's routes honour (kind default, or `honor_optouts`).
    pub honor_optouts: Vec<Scope>,
    /// Lowercase header name; `Some` for government partners.
    pub legal_basis_header: Option<String>,
    /// What a legal-basis reference must look like (the whole value must match), if set.
    pub legal_basis_format: Option<regex::Regex>,
    /// TLS settings for an `https` upstream.
    pub tls: Option<PartnerTls>,
}

impl Partner {
    /// The name sent as SNI and verified in the partner's certificate: `tls.server_name`, or the
    /// upstream's host (an IP address is verified against the certificate's IP SANs). Never empty.
    pub fn server_name(&self) -> &str {
        self.tls
            .as_ref()
            .and_then(|t| t.server_name.as_deref())
            .unwrap_or(&self.upstream.host)
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    /// The path template as written (`/v1/tickets/{id}`): the `route` metric label.
    pub template: String,
    pub segments: Vec<RouteSegment>,
    /// Path parameters typed as customer ids (`{cid:subject}`): on a partner that honours
    /// opt-outs each must be a valid id (else 422) and is checked against the opt-outs.
    pub subject_params: Vec<String>,
    /// Query parameters typed as customer ids (`query: [ref:subject]`), likewise.
    pub subject_query: Vec<String>,
    /// Uppercase method names.
    pub methods: Vec<String>,
    /// `None`: the route takes no body (neither `allow` nor `transform`).
    pub filter: Option<Arc<FilterProgram>>,
    /// Query parameters that may pass.
    pub query: Vec<String>,
    /// Extra request headers that may pass, lowercase.
    pub headers: Vec<String>,
    /// `+json` media types (lowercase, no parameters) this route filters besides `application/json`.
    pub json_types: Vec<String>,
    /// Partner answer headers relayed to the caller beyond the defaults, lowercase.
    pub response_headers: Vec<String>,
    /// Request Content-Encodings this route decodes before filtering (others are 415).
    pub decode: Vec<ContentCoding>,
    /// The route's allow paths, then its transform paths (`remove` excluded), as written, with
    /// their data categories. Indexed like the filter's [`crate::filter::Report::matched`].
    pub fields: Vec<RouteField>,
    /// `Some` on a streaming route (`stream: ndjson`): the body is taken record by record.
    pub stream: Option<StreamFormat>,
}

/// How a streaming route's body is framed (`stream:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFormat {
    /// `application/x-ndjson`: one JSON object per line, each line one record.
    Ndjson,
}

impl StreamFormat {
    /// The name in `stream:`.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamFormat::Ndjson => "ndjson",
        }
    }

    /// The media type of such a body, as received and as forwarded.
    pub fn media_type(self) -> &'static str {
        match self {
            StreamFormat::Ndjson => "application/x-ndjson",
        }
    }
}

/// A request Content-Encoding a route may decode (`decode: [gzip, deflate, br]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentCoding {
    /// RFC 1952 gzip (also written `x-gzip`).
    Gzip,
    /// RFC 1950 zlib (HTTP's `deflate`).
    Deflate,
    /// RFC 7932 Brotli.
    Br,
}

impl ContentCoding {
    pub const ALL: [ContentCoding; 3] = [
        ContentCoding::Gzip,
        ContentCoding::Deflate,
        ContentCoding::Br,
    ];

    /// The name in `decode:` and in `Content-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentCoding::Gzip => "gzip",
            ContentCoding::Deflate => "deflate",
            ContentCoding::Br => "br",
        }
    }

    /// A `Content-Encoding` token (any case; `x-gzip` is gzip, RFC 9110 8.4.1.3).
    pub fn parse(token: &str) -> Option<ContentCoding> {
        let t = token.trim().to_ascii_lowercase();
        match t.as_str() {
            "gzip" | "x-gzip" => Some(ContentCoding::Gzip),
            "deflate" => Some(ContentCoding::Deflate),
            "br" => Some(ContentCoding::Br),
            _ => None,
        }
    }
}

/// One allow or transform path of a route and the data category it discloses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteField {
    /// The path as written in the policy.
    pub path: String,
    /// fideslang data category name, if the route's `categories:` gives one.
    pub category: Option<String>,
    /// The path came earlier in the route's fields (allowed and transformed both): this entry
    /// matches the same values as that one, and is not counted again.
    pub repeat: bool,
}

impl RouteField {
    /// The category its values are counted under: its own, or `uncategorized`.
    pub fn category_label(&self) -> &str {
        self.category
            .as_deref()
            .unwrap_or(super::categories::UNCATEGORIZED)
    }
}

impl Route {
    /// The fields that matched at least one forwarded value, with how many, from a filter
    /// report's `matched` counts. A path both allowed and transformed is one field, counted
    /// once (its two entries in `fields` match the same values).
    pub fn matched_fields<'a, 'm>(
        &'a self,
        matched: &'m [u64],
    ) -> impl Iterator<Item = (&'a RouteField, u64)> + use<'a, 'm> {
        self.fields
            .iter()
            .zip(matched)
            .filter(|(field, n)| **n > 0 && !field.repeat)
            .map(|(field, n)| (field, *n))
    }

    /// The paths (sorted, distinct) and categories (sorted, distinct) of the fields that matched
    /// at least one forwarded value, from a filter report's `matched` counts.
    pub fn disclosed(&self, matched: &[u64]) -> (Vec<String>, Vec<String>) {
        let mut paths = Vec::new();
        let mut categories = Vec::new();
        for (field, _) in self.matched_fields(matched) {
            paths.push(field.path.clone());
            categories.extend(field.category.clone());
        }
        paths.sort();
        paths.dedup();
        categories.sort();
        categories.dedup();
        (paths, categories)
    }

    /// Values forwarded per category (`uncategorized` for paths without one), sorted by name.
    pub fn disclosed_by_category(&self, matched: &[u64]) -> Vec<(&str, u64)> {
        let mut counts = std::collections::BTreeMap::new();
        for (field, n) in self.matched_fields(matched) {
            *counts.entry(field.category_label()).or_insert(0) += n;
        }
        counts.into_iter().collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSegment {
    Literal(String),
    /// `{name}`: any one non-empty segment.
    Param(String),
}

/// The metrics label of requests that name no partner of the policy (and of paths that are no
/// route): no partner may have this id, or its traffic would be counted with them.
pub const RESERVED_PARTNER_ID: &str = "unknown";
