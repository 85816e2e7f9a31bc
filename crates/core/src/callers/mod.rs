/*!
Caller authentication: who inside OhSoft may send customer data out.

A caller presents `Authorization: Bearer <JWT>`. [`CallerVerifier`] checks it against the
configured issuer, audience and keys and yields a [`Caller`] (its `sub` and groups), which
[`Caller::may_use`] matches against a partner's `allowed_callers`.

Rules (see the README, "Callers and data-use tokens"):
- `iss`, `aud`, `exp` and `sub` are required; `nbf` is honoured when present. `exp` has no
  leeway; `nbf` and `iat` may be [`LEEWAY_SECS`] ahead ([`check_times`]). `iss` must be one string (RFC 7519), never an array that happens to
  hold the expected issuer.
- A token may not live longer than the verifier's maximum lifetime (`exp − iat`, or
  `exp − now` for a token without `iat`; an `iat` in the future is refused), so a leaked
  long-lived token is not a credential forever.
- The algorithm comes from the configured key, looked up by the token's `kid` (a token
  without `kid` may use the only key when exactly one is configured, or the one key without
  a kid of its algorithm, e.g. an HS256 secret next to a key set). A token whose `alg`
  differs from its key's is refused, so `none` and RS/HS confusion cannot happen.
- HS256 exists only when a secret is configured explicitly ([`CallerKeys::add_hs256_secret`]).

Pure: the key material and the current time are handed in.
*/
pub mod cache;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

pub use cache::TokenCache;

use crate::jose::{self, KeyError, PrivateKey, PublicKey, LEEWAY_SECS};
use crate::policy::Partner;
use crate::{Refusal, RefusalKind};

/// The `WWW-Authenticate` challenge of a 401 that names no error (no credential at all), both
/// for callers and for the admin API; a token error appends its `error` and description.
pub const BEARER_CHALLENGE: &str = "Bearer realm=\"partner-gateway\"";
/// Longest bearer token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longest caller token lifetime accepted unless configured otherwise, in seconds (one day).
pub const DEFAULT_MAX_TOKEN_LIFETIME_SECS: u64 =
    crate::policy::model::DEFAULT_MAX_TOKEN_LIFETIME_SECS;
/// The `typ` header of caller tokens minted by [`mint_caller_token`].
pub const CALLER_TOKEN_TYP: &str = "JWT";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub sub: String,
    /// Values of the configured groups claim (empty when none is configured or present).
    pub groups: Vec<String>,
}

impl Caller {
    /// Whether this caller may use a partner whose `allowed_callers` is `allowed`:
    /// its `sub` or any of its groups is listed.
    pub fn may_use(&self, allowed: &[String]) -> bool {
        allowed
            .iter()
            .any(|a| *a == self.sub || self.groups.iter().any(|g| g == a))
    }

    /// A caller known by its `sub` alone (no token, so no groups): `explain --caller`.
    pub fn named(sub: &str) -> Caller {
        Caller {
            sub: sub.to_string(),
            groups: Vec::new(),
        }
    }

    /// Whether this caller may send to `partner`: the one check, for the proxy and `explain`.
    pub fn check_partner(&self, partner: &Partner) -> Result<(), Refusal> {
        if self.may_use(&partner.allowed_callers) {
            Ok(())
        } else {
            Err(Refusal::new(
                RefusalKind::CallerNotAllowed,
                format!(
                    "caller {:?} may not send to partner {:?}",
                    self.sub, partner.id
                ),
            ))
        }
    }
}

/// Why a caller was not authenticated. Every variant is a 401 `unauthenticated`; the
/// `Display` text is the refusal message (it never echoes the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("the authorization header does not use the bearer scheme")]
    NotBearer,
    #[error("malformed authorization header")]
    MalformedHeader,
    #[error("the bearer token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("malformed bearer token")]
    Malformed,
    #[error("the token is signed with an unknown key")]
    UnknownKey,
    #[error("the token algorithm does not match its key")]
    WrongAlgorithm,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token issuer is not accepted")]
    WrongIssuer,
    #[error("the token audience is not accepted")]
    WrongAudience,
    #[error("the token's {0} claim is missing or not valid")]
    MissingClaim(&'static str),
    #[error("the token claim {0} is invalid")]
    InvalidClaim(&'static str),
    #[error("the token lives longer than the {0} seconds allowed")]
    LifetimeTooLong(u64),
}

impl AuthError {
    /// The RFC 6750 error code: `None` when the request carried no bearer credential at all.
    pub fn oauth_error(&self) -> Option<&'static str> {
        match self {
            AuthError::Missing | AuthError::NotBearer => None,
            AuthError::MalformedHeader | AuthError::TooLong => Some("invalid_request"),
            _ => Some("invalid_token"),
        }
    }

    /// The `WWW-Authenticate` value to send with the 401, e.g.
    /// `Bearer realm="partner-gateway", error="invalid_token", error_description="the token has expired"`.
    pub fn www_authenticate(&self) -> String {
        match self.oauth_error() {
            None => BEARER_CHALLENGE.to_string(),
            Some(code) => {
                let description: String = self
                    .to_string()
                    .chars()
                    .filter(|c| matches!(c, ' '..='~') && !matches!(c, '"' | '\\'))
                    .collect();
                format!("{BEARER_CHALLENGE}, error=\"{code}\", error_description=\"{description}\"")
            }
        }
    }

    /// The refusal for the response body (401 `unauthenticated`).
    pub fn to_refusal(&self) -> Refusal {
        Refusal::new(RefusalKind::Unauthenticated, self.to_string())
    }
}

/// The keys callers' tokens may be signed with.
#[derive(Debug, Clone, Default)]
pub struct CallerKeys {
    keys: Vec<PublicKey>,
}

impl CallerKeys {
    pub fn new() -> Self {
        CallerKeys::default()
    }

    /// The contents of the `callers.keys` file: a JWKS document, or one or more PEM public keys.
    pub fn parse(contents: &[u8]) -> Result<Self, KeyError> {
        let text = std::str::from_utf8(contents).map_err(|_| {
            KeyError::Pem("the key file is neither a JWKS document nor PEM text".into())
        })?;
        if text.trim_start().starts_with('{') {
            CallerKeys::from_jwks_json(text)
        } else if text.contains("-----BEGIN ") {
            let mut keys = CallerKeys::new();
            keys.add_pem(None, contents)?;
            Ok(keys)
        } else {
            Err(KeyError::Pem(
                "the key file is neither a JWKS document nor PEM text".into(),
            ))
        }
    }

    /// Every signature key of a JWKS document; at least one is required.
    pub fn from_jwks_json(json: &str) -> Result<Self, KeyError> {
        let mut keys = CallerKeys::new();
        keys.add_jwks_json(json)?;
        Ok(keys)
    }

    /// Adds every signature key of a JWKS document; at least one is required.
    pub fn add_jwks_json(&mut self, json: &str) -> Result<(), KeyError> {
        let found = jose::parse_jwks(json, jose::CALLER_ALGORITHMS)?;
        if found.is_empty() {
            return Err(KeyError::Empty);
        }
        found.into_iter().try_for_each(|k| self.push(k))
    }

    /// Adds the public keys of a PEM file (Ed25519, P-256 or RSA `PUBLIC KEY` blocks). A `kid`
    /// may be given only when the file holds one key.
    pub fn add_pem(&mut self, kid: Option<&str>, pem: &[u8]) -> Result<(), KeyError> {
        let text = std::str::from_utf8(pem)
            .map_err(|_| KeyError::Pem("the key file is not PEM text".into()))?;
        let blocks = jose::pem_blocks(text)?;
        if blocks.is_empty() {
            return Err(KeyError::Pem("no PEM block found".into()));
        }
        if kid.is_some() && blocks.len() > 1 {
            return Err(KeyError::Pem(
                "a kid can name only one key, but the PEM file holds several".into(),
            ));
        }
        for block in &blocks {
            self.push(PublicKey::from_public_pem(
                kid,
                block,
                jose::CALLER_ALGORITHMS,
            )?)?;
        }
        Ok(())
    }

    /// Accepts HS256 tokens signed with `secret` (at least 32 bytes). Only for explicit
    /// configuration (`hs256_secret_env`); a key set never adds one.
    pub fn add_hs256_secret(&mut self, kid: Option<&str>, secret: &[u8]) -> Result<(), KeyError> {
        self.push(PublicKey::hs256(kid, secret)?)
    }

    fn push(&mut self, key: PublicKey) -> Result<(), KeyError> {
        if let Some(kid) = key.kid() {
            if self.keys.iter().any(|k| k.kid() == Some(kid)) {
                return Err(KeyError::DuplicateKid(kid.to_string()));
            }
        }
        self.keys.push(key);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// `kid=… alg=…` per key, for the startup log.
    pub fn describe(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| {
                format!(
                    "kid={} alg={}",
                    k.kid().unwrap_or("(none)"),
                    jose::alg_name(k.algorithm())
                )
            })
            .collect()
    }

    /// The key for a token: the key with the token's `kid`; else, when the token names no kid
    /// or the only configured key has none, that only key; else the one key *without* a kid
    /// whose algorithm is the token's (an HS256 secret next to a key set). A token naming a kid
    /// that a kid-carrying key set does not have gets no key. The key's algorithm is then
    /// required of the token.
    fn select(&self, kid: Option<&str>, alg: Algorithm) -> Option<&PublicKey> {
        if let Some(kid) = kid {
            if let Some(k) = self.keys.iter().find(|k| k.kid() == Some(kid)) {
                return Some(k);
            }
        }
        if let [only] = self.keys.as_slice() {
            return (kid.is_none() || only.kid().is_none()).then_some(only);
        }
        let mut keyless = self
            .keys
            .iter()
            .filter(|k| k.kid().is_none() && k.algorithm() == alg);
        match (keyless.next(), keyless.next()) {
            (Some(k), None) => Some(k),
            _ => None,
        }
    }
}

/// Verifies callers' bearer tokens.
#[derive(Debug, Clone)]
pub struct CallerVerifier {
    keys: CallerKeys,
    issuer: String,
    audience: String,
    groups_claim: Option<String>,
    /// Longest accepted lifetime, in seconds.
    max_lifetime: u64,
    /// Tokens this verifier has already verified (shared by its clones).
    cache: Arc<TokenCache>,
}

/// A verified token: the caller, and the times every later use must still be checked against.
struct Verified {
    caller: Caller,
    exp: u64,
    nbf: Option<u64>,
}

impl CallerVerifier {
    /// `groups_claim`: a claim (or dotted path, e.g. `realm_access.roles`) holding the caller's
    /// groups or scopes, as an array of strings or a space-separated string.
    pub fn new(
        keys: CallerKeys,
        issuer: impl Into<String>,
        audience: impl Into<String>,
        groups_claim: Option<String>,
    ) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(CallerVerifier {
            keys,
            issuer: issuer.into(),
            audience: audience.into(),
            groups_claim,
            max_lifetime: DEFAULT_MAX_TOKEN_LIFETIME_SECS,
            cache: Arc::new(TokenCache::default()),
        })
    }

    /// Refuses tokens living longer than `secs` (default [`DEFAULT_MAX_TOKEN_LIFETIME_SECS`]).
    /// Set it before the first verification: cached tokens were checked against the old value.
    pub fn with_max_lifetime(mut self, secs: u64) -> Self {
        self.max_lifetime = secs;
        self.cache = Arc::new(TokenCache::default());
        self
    }

    pub fn keys(&self) -> &CallerKeys {
        &self.keys
    }

    /// Checks the `Authorization` header value (raw bytes, as received). Not UTF-8 → malformed.
    pub fn verify_raw(
        &self,
        authorization: Option<&[u8]>,
        now_unix: u64,
    ) -> Result<Caller, AuthError> {
        match authorization {
            None => self.verify(None, now_unix),
            Some(raw) => {
                let s = std::str::from_utf8(raw).map_err(|_| AuthError::MalformedHeader)?;
                self.verify(Some(s), now_unix)
            }
        }
    }

    /// Checks the `Authorization` header value at time `now_unix` (seconds since the epoch).
    pub fn verify(&self, authorization: Option<&str>, now_unix: u64) -> Result<Caller, AuthError> {
        let token = bearer_token(authorization)?;
        self.verify_token(token, now_unix).map(|v| v.caller)
    }

    /// [`CallerVerifier::verify`], remembering verified tokens by their exact bytes: a token
    /// seen before skips the signature check, but `exp` and `nbf` are checked against
    /// `now_unix` on every call (see [`cache`]).
    pub fn verify_cached(
        &self,
        authorization: Option<&str>,
        now_unix: u64,
    ) -> Result<Arc<Caller>, AuthError> {
        let token = bearer_token(authorization)?;
        if let Some(hit) = self.cache.get(token, now_unix) {
            return hit;
        }
        let verified = self.verify_token(token, now_unix)?;
        let caller = Arc::new(verified.caller);
        self.cache
            .insert(token, caller.clone(), verified.exp, verified.nbf, now_unix);
        Ok(caller)
    }

    /// The tokens remembered by [`CallerVerifier::verify_cached`].
    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// The full check of one bearer token: header, key, signature, claims, time.
    fn verify_token(&self, token: &str, now_unix: u64) -> Result<Verified, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.crit.is_some() {
            return Err(AuthError::Malformed);
        }
        let key = self
            .keys
            .select(header.kid.as_deref(), header.alg)
            .ok_or(AuthError::UnknownKey)?;
        if header.alg != key.algorithm() {
            return Err(AuthError::WrongAlgorithm);
        }
        let mut validation = Validation::new(key.algorithm());
        validation.set_required_spec_claims(&["iss", "aud", "exp", "sub"]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        // Time is checked below against the `now_unix` handed in: the core reads no clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, key.decoding_key(), &validation)
                .map_err(map_jwt_error)?;
        let claims = data.claims;
        // jsonwebtoken also accepts an array holding the issuer; RFC 7519 says a string.
        if !matches!(claims.get("iss"), Some(Value::String(_))) {
            return Err(AuthError::InvalidClaim("iss"));
        }

        let exp = numeric_date(claims.get("exp")).ok_or(AuthError::InvalidClaim("exp"))?;
        let nbf = match claims.get("nbf") {
            None => None,
            Some(nbf) => Some(numeric_date(Some(nbf)).ok_or(AuthError::InvalidClaim("nbf"))?),
        };
        check_times(exp, nbf, now_unix)?;
        self.check_lifetime(&claims, exp, now_unix)?;
        let sub = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(AuthError::InvalidClaim("sub")),
        };
        let groups = self
            .groups_claim
            .as_deref()
            .map(|c| groups(&claims, c))
            .unwrap_or_default();
        Ok(Verified {
            caller: Caller { sub, groups },
            exp,
            nbf,
        })
    }
}

/// The time rules of a caller token, for a full verification and a cache hit alike. `exp` is a
/// hard deadline, without leeway: an expired credential proves nothing, and callers renew
/// theirs before it. `nbf` (and `iat`, see [`CallerVerifier::check_lifetime`]) may be up to
/// [`LEEWAY_SECS`] ahead of this clock: an identity provider whose clock runs a little ahead
/// must not make its fresh tokens fail.
pub(crate) fn check_times(exp: u64, nbf: Option<u64>, now_unix: u64) -> Result<(), AuthError> {
    if now_unix >= exp {
        return Err(AuthError::Expired);
    }
    if nbf.is_some_and(|nbf| nbf > now_unix.saturating_add(LEEWAY_SECS)) {
        return Err(AuthError::NotYetValid);
    }
    Ok(())
}

impl CallerVerifier {
    /// `exp − iat` (or `exp − now` without `iat`) within the maximum lifetime. An `iat` in the
    /// future would let a short-looking token be used long before it was "issued": refused.
    /// A cache hit needs no second check: with `iat` the lifetime is fixed, without it it
    /// only shrinks as time passes.
    fn check_lifetime(
        &self,
        claims: &Map<String, Value>,
        exp: u64,
        now_unix: u64,
    ) -> Result<(), AuthError> {
        let start = match claims.get("iat") {
            None => now_unix,
            Some(iat) => {
                let iat = numeric_date(Some(iat)).ok_or(AuthError::InvalidClaim("iat"))?;
                if iat > now_unix.saturating_add(LEEWAY_SECS) {
                    return Err(AuthError::InvalidClaim("iat"));
                }
                iat
            }
        };
        if exp.saturating_sub(start) > self.max_lifetime {
            return Err(AuthError::LifetimeTooLong(self.max_lifetime));
        }
        Ok(())
    }
}

/// The credentials of `Bearer <credentials>`, as any bearer scheme reads them (callers and
/// the admin API): the scheme in any case, spaces or tabs around and between, nothing empty.
pub fn bearer_credentials(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization
        .ok_or(AuthError::Missing)?
        .trim_matches(|c| c == ' ' || c == '\t');
    if value.is_empty() {
        return Err(AuthError::Missing);
    }
    let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::NotBearer);
    }
    let credentials = rest.trim_start_matches([' ', '\t']);
    if credentials.is_empty() {
        return Err(AuthError::MalformedHeader);
    }
    Ok(credentials)
}

/// The token of `Bearer <token>`: [`bearer_credentials`] that are an RFC 6750 `b64token` of
/// at most [`MAX_TOKEN_BYTES`].
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let token = bearer_credentials(authorization)?;
    // RFC 6750 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::TooLong);
    }
    let body = token.trim_end_matches('=');
    if body.is_empty()
        || !body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
    {
        return Err(AuthError::MalformedHeader);
    }
    Ok(token)
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => AuthError::BadSignature,
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::UnsupportedAlgorithm => {
            AuthError::WrongAlgorithm
        }
        K::InvalidIssuer => AuthError::WrongIssuer,
        K::InvalidAudience => AuthError::WrongAudience,
        K::ExpiredSignature => AuthError::Expired,
        K::ImmatureSignature => AuthError::NotYetValid,
        K::MissingRequiredClaim(c) => AuthError::MissingClaim(match c.as_str() {
            "iss" => "iss",
            "aud" => "aud",
            "exp" => "exp",
            "sub" => "sub",
            _ => "required",
        }),
        K::InvalidClaimFormat(_) => AuthError::InvalidClaim("time"),
        K::InvalidEcdsaKey | K::InvalidEddsaKey | K::InvalidRsaKey(_) | K::InvalidKeyFormat => {
            AuthError::BadSignature
        }
        _ => AuthError::Malformed,
    }
}

/// A JWT NumericDate as whole seconds (fractions are truncated); negative or non-numeric → `None`.
pub(crate) fn numeric_date(v: Option<&Value>) -> Option<u64> {
    let n = v?.as_number()?;
    if let Some(u) = n.as_u64() {
        return Some(u);
    }
    let f = n.as_f64()?;
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then_some(f as u64)
}

/// The caller's groups: the claim named `claim`, or the nested claim its dotted path names
/// (`realm_access.roles`). When both exist the token names two sets of groups (a custom claim
/// spelled like the path beside the path itself) and none is taken: the caller is judged by
/// its `sub` alone.
fn groups(claims: &Map<String, Value>, claim: &str) -> Vec<String> {
    let literal = claims.get(claim);
    let nested = claim.contains('.').then(|| {
        let mut parts = claim.split('.');
        let mut cur = claims.get(parts.next()?)?;
        for p in parts {
            cur = cur.as_object()?.get(p)?;
        }
        Some(cur)
    });
    let value = match (literal, nested.flatten()) {
        (Some(_), Some(_)) => None,
        (literal, nested) => literal.or(nested),
    };
    match value {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// What goes into a caller token minted for local testing (`partner-gateway token`).
#[derive(Debug, Clone)]
pub struct CallerTokenInput<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub sub: &'a str,
    pub kid: Option<&'a str>,
    pub now_unix: u64,
    pub ttl_secs: u64,
}

/// Mints a caller token signed with a private key (PKCS#8 Ed25519 or P-256, or RSA) with
/// claims `iss`, `aud`, `sub`, `iat`, `nbf`, `exp`.
pub fn mint_caller_token(
    private_pem: &[u8],
    input: &CallerTokenInput<'_>,
) -> Result<String, KeyError> {
    if input.sub.is_empty() {
        return Err(KeyError::Signing("sub must not be empty".into()));
    }
    if let Some(kid) = input.kid {
        jose::check_kid(kid)?;
    }
    let key = PrivateKey::from_pem(private_pem)?;
    let claims = serde_json::json!({
        "iss": input.issuer,
        "aud": input.audience,
        "sub": input.sub,
        "iat": input.now_unix,
        "nbf": input.now_unix,
        "exp": input.now_unix.saturating_add(input.ttl_secs.max(1)),
    });
    key.sign_jwt(input.kid, CALLER_TOKEN_TYP, &claims)
}

/// The algorithm names accepted for caller tokens.
pub fn supported_algorithms() -> &'static [Algorithm] {
    jose::CALLER_ALGORITHMS
}
