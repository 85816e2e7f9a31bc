/*!
The public key set served at `{admin}/.well-known/jwks.json`, and the partner/auditor side:
[`verify_data_use_token`].

Key rotation: several keys may be published, one signs. To rotate, (1) publish the new key
next to the current signer, (2) once partners have fetched it, switch the signer to the new key
and keep publishing the old public key, (3) after the last token signed with the old key has
expired ([`MAX_TTL_SECS`] plus leeway), stop publishing it.
*/
use jsonwebtoken::Validation;
use serde_json::Value;

use super::token::{body_sha256, DataUseClaims, TokenSigner, DATA_USE_TOKEN_TYP, MAX_TTL_SECS};
use super::TagError;
use crate::jose::{self, KeyError, PublicKey, DATA_USE_ALGORITHMS, LEEWAY_SECS};

/// The published public keys: the signing key first, then any extra keys (rotation).
#[derive(Debug, Clone)]
pub struct Jwks {
    keys: Vec<PublicKey>,
}

impl Jwks {
    /// A set holding the signer's public key.
    pub fn new(signer: &TokenSigner) -> Self {
        Jwks {
            keys: vec![signer.public_key().clone()],
        }
    }

    /// Publishes one more public key (PEM `PUBLIC KEY`, Ed25519 or P-256) under `kid`.
    pub fn publish_pem(&mut self, kid: &str, pem: &[u8]) -> Result<(), TagError> {
        jose::check_kid(kid)?;
        let text = std::str::from_utf8(pem)
            .map_err(|_| KeyError::Pem("the key file is not PEM text".into()))?;
        let blocks = jose::pem_blocks(text)?;
        let [block] = blocks.as_slice() else {
            return Err(KeyError::Pem(format!(
                "expected one PEM public key, found {} PEM blocks",
                blocks.len()
            ))
            .into());
        };
        self.push(PublicKey::from_public_pem(
            Some(kid),
            block,
            DATA_USE_ALGORITHMS,
        )?)
    }

    /// Publishes every key of a JWKS document; each must have a `kid`.
    pub fn publish_jwks_json(&mut self, json: &str) -> Result<(), TagError> {
        for key in jose::parse_jwks(json, DATA_USE_ALGORITHMS)? {
            self.push(key)?;
        }
        Ok(())
    }

    /// Publishes the contents of a `signing.publish` file: a JWKS document (kids inside), or a
    /// PEM public key published under `kid_for_pem`.
    pub fn publish_file(&mut self, contents: &[u8], kid_for_pem: &str) -> Result<(), TagError> {
        match std::str::from_utf8(contents) {
            Ok(text) if text.trim_start().starts_with('{') => self.publish_jwks_json(text),
            _ => self.publish_pem(kid_for_pem, contents),
        }
    }

    fn push(&mut self, key: PublicKey) -> Result<(), TagError> {
        let kid = key.kid().ok_or_else(|| KeyError::BadKey {
            key: "published key".into(),
            reason: "every published key needs a kid".into(),
        })?;
        if self.keys.iter().any(|k| k.kid() == Some(kid)) {
            return Err(KeyError::DuplicateKid(kid.to_string()).into());
        }
        self.keys.push(key);
        Ok(())
    }

    /// The kids, signing key first.
    #[cfg(test)]
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().filter_map(PublicKey::kid).collect()
    }

    /// `{"keys": [...]}`.
    pub fn to_value(&self) -> Value {
        let keys: Vec<Value> = self.keys.iter().filter_map(PublicKey::to_jwk).collect();
        serde_json::json!({ "keys": keys })
    }

    /// The JSON document served at `/.well-known/jwks.json` (`application/jwk-set+json`).
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }
}

/// Why a data-use token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenVerifyError {
    #[error("key set: {0}")]
    Jwks(#[from] KeyError),
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("the token has no kid")]
    NoKid,
    #[error("no key with kid {0:?} in the key set")]
    UnknownKid(String),
    #[error("the token algorithm does not match its key")]
    WrongAlgorithm,
    #[error("the token type is not {DATA_USE_TOKEN_TYP}")]
    WrongType,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token claims are invalid: {0}")]
    Claims(String),
    #[error("the token expired at {exp} (now {now})")]
    Expired { exp: u64, now: u64 },
    #[error("the token was issued in the future (iat {iat}, now {now})")]
    IssuedInFuture { iat: u64, now: u64 },
    #[error("the token lives {0} s; at most {MAX_TTL_SECS} s are allowed")]
    LifetimeTooLong(u64),
    #[error("body_sha256 does not match the body: token says {token}, body has {body}")]
    BodyMismatch { token: String, body: String },
}

/// Checks a data-use token as a partner or auditor would: the signature with the key its
/// `kid` names in `jwks_json`, `typ`, `iat`/`exp` against `now_unix` (with
/// [`LEEWAY_SECS`]), a lifetime of at most [`MAX_TTL_SECS`], and, when `expected_body` is
/// given, that `body_sha256` is the digest of those exact bytes. The caller checks `aud`
/// (its own partner id) and `iss` on the returned claims.
pub fn verify_data_use_token(
    jwks_json: &str,
    token: &str,
    expected_body: Option<&[u8]>,
    now_unix: u64,
) -> Result<DataUseClaims, TokenVerifyError> {
    let token = token.trim();
    let published = jose::parse_jwks(jwks_json, DATA_USE_ALGORITHMS)?;
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| TokenVerifyError::Malformed(e.to_string()))?;
    if header.crit.is_some() {
        return Err(TokenVerifyError::Malformed(
            "unsupported critical header".into(),
        ));
    }
    if header.typ.as_deref() != Some(DATA_USE_TOKEN_TYP) {
        return Err(TokenVerifyError::WrongType);
    }
    let kid = header.kid.as_deref().ok_or(TokenVerifyError::NoKid)?;
    let key = published
        .iter()
        .find(|k| k.kid() == Some(kid))
        .ok_or_else(|| TokenVerifyError::UnknownKid(kid.to_string()))?;
    if header.alg != key.algorithm() {
        return Err(TokenVerifyError::WrongAlgorithm);
    }
    let mut validation = Validation::new(key.algorithm());
    validation.set_required_spec_claims(&["iss", "aud", "exp", "sub"]);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    // `aud` is the partner id: the partner compares it with its own on the returned claims.
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<DataUseClaims>(token, key.decoding_key(), &validation)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature => TokenVerifyError::BadSignature,
                K::InvalidAlgorithm => TokenVerifyError::WrongAlgorithm,
                K::MissingRequiredClaim(_) | K::Json(_) => TokenVerifyError::Claims(e.to_string()),
                _ => TokenVerifyError::Malformed(e.to_string()),
            }
        })?;
    let claims = data.claims;
    check_times(&claims, now_unix)?;
    check_body(&claims, expected_body)?;
    Ok(claims)
}

/// `iat` not in the future, `exp` after `iat` within [`MAX_TTL_SECS`], and not expired (all
/// with [`LEEWAY_SECS`]).
fn check_times(claims: &DataUseClaims, now_unix: u64) -> Result<(), TokenVerifyError> {
    if claims.iat > now_unix.saturating_add(LEEWAY_SECS) {
        return Err(TokenVerifyError::IssuedInFuture {
            iat: claims.iat,
            now: now_unix,
        });
    }
    if claims.exp <= claims.iat {
        return Err(TokenVerifyError::Claims("exp is not after iat".into()));
    }
    if claims.exp - claims.iat > MAX_TTL_SECS {
        return Err(TokenVerifyError::LifetimeTooLong(claims.exp - claims.iat));
    }
    if claims
        .nbf
        .is_some_and(|nbf| nbf > now_unix.saturating_add(LEEWAY_SECS))
    {
        return Err(TokenVerifyError::Claims("not valid yet (nbf)".into()));
    }
    if now_unix >= claims.exp.saturating_add(LEEWAY_SECS) {
        return Err(TokenVerifyError::Expired {
            exp: claims.exp,
            now: now_unix,
        });
    }
    Ok(())
}

/// The body the token binds: its digest, or none for a stream's token.
fn check_body(
    claims: &DataUseClaims,
    expected_body: Option<&[u8]>,
) -> Result<(), TokenVerifyError> {
    // A token binds its body's digest, or says it is a stream's (which binds none): never
    // both, never neither.
    match (&claims.body_sha256, claims.stream) {
        (Some(_), false) | (None, true) => {}
        (None, false) => return Err(TokenVerifyError::Claims("missing body_sha256".into())),
        (Some(_), true) => {
            return Err(TokenVerifyError::Claims(
                "a stream token carries no body_sha256".into(),
            ))
        }
    }
    if let Some(body) = expected_body {
        let digest = body_sha256(body);
        if claims.body_sha256.as_deref() != Some(digest.as_str()) {
            return Err(TokenVerifyError::BodyMismatch {
                token: claims
                    .body_sha256
                    .clone()
                    .unwrap_or_else(|| "nothing (a stream token)".into()),
                body: digest,
            });
        }
    }
    Ok(())
}
