/*!
The `ohsoft-data-use-token`: a compact JWS signed with the gateway's key (EdDSA or ES256,
`kid` in the header, `typ` [`DATA_USE_TOKEN_TYP`]) with the claims the README lists:
`iss`, `aud` (partner id), `sub` (caller), `use`, `purpose`, `iat`, `exp` (at most
[`MAX_TTL_SECS`] after `iat`), `jti`, `body_sha256` (base64url, no padding, of the exact bytes
forwarded), `policy_version`, and `legal_basis` when the request carried one. A streamed
request's token ([`TokenSigner::sign_stream`]) has `"stream": true` instead of `body_sha256`:
it is signed before the body exists (the disclosure ledger records the digest afterwards).
*/
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::TagError;
use crate::jose::{alg_name, check_kid, PrivateKey, PublicKey, RawSigner};

/// Longest token lifetime, in seconds (`exp` at most 5 minutes after `iat`).
pub const MAX_TTL_SECS: u64 = 300;
/// The JWS `typ` header of data-use tokens (explicit typing, RFC 8725 §3.11).
pub const DATA_USE_TOKEN_TYP: &str = "ohsoft-data-use+jwt";

/// The claims of a data-use token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataUseClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub purpose: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    /// Absent only on a streamed request's token (`stream: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
    /// True on a streamed request's token, which binds no body digest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    pub policy_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_basis: Option<String>,
    /// Never set by the gateway; a token that carries one is not valid before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// Everything one forwarded request contributes to its token.
#[derive(Debug, Clone, Copy)]
pub struct TokenInput<'a> {
    /// The partner id.
    pub aud: &'a str,
    /// The caller's `sub`.
    pub sub: &'a str,
    /// `PartnerKind::data_use()`.
    pub use_: &'a str,
    pub purpose: &'a str,
    pub policy_version: &'a str,
    /// [`body_sha256`] of the exact body bytes sent to the partner (computed once per request:
    /// the disclosure ledger records the same text).
    pub body_sha256: &'a str,
    pub legal_basis: Option<&'a str>,
    /// Seconds since the epoch; becomes `iat`.
    pub now_unix: u64,
    /// Clamped to 1..=[`MAX_TTL_SECS`].
    pub ttl_secs: u64,
    /// Unique per token (the shell draws it from a random source).
    pub jti: &'a str,
}

/// base64url (no padding) of the SHA-256 of `body`: the `body_sha256` claim.
pub fn body_sha256(body: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(body))
}

/// The `body_sha256` text of a body hashed as it went out, piece by piece.
pub fn body_sha256_of(hasher: Sha256) -> String {
    URL_SAFE_NO_PAD.encode(hasher.finalize())
}

/// The gateway's data-use token signer.
pub struct TokenSigner {
    key: PrivateKey,
    kid: String,
    /// The base64url JWS header of every data-use token (made once).
    header: String,
    issuer: String,
    public: PublicKey,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .field("alg", &self.algorithm())
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// From a PKCS#8 PEM private key: Ed25519 (EdDSA) or P-256 (ES256).
    pub fn from_pkcs8_pem(pem: &[u8], kid: &str, issuer: &str) -> Result<Self, TagError> {
        check_kid(kid)?;
        if issuer.is_empty() {
            return Err(TagError::Empty("issuer"));
        }
        let key = PrivateKey::from_pem(pem)?;
        if !matches!(key.algorithm(), Algorithm::EdDSA | Algorithm::ES256) {
            return Err(TagError::UnsupportedKey(alg_name(key.algorithm())));
        }
        let mut public = key.public_key().clone();
        public.set_kid(Some(kid))?;
        let header = key.jws_header(Some(kid), DATA_USE_TOKEN_TYP)?;
        Ok(TokenSigner {
            key,
            kid: kid.to_string(),
            header,
            issuer: issuer.to_string(),
            public,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The signing key as PKCS#8 DER (for a faster backend the shell builds from it).
    pub fn pkcs8_der(&self) -> Option<&[u8]> {
        self.key.pkcs8_der()
    }

    /// Signs through `signer` from now on, once it has shown that its signatures verify with
    /// this signer's public key (see [`PrivateKey::use_signer`]).
    pub fn use_signer(&mut self, signer: Box<dyn RawSigner>) -> Result<(), TagError> {
        Ok(self.key.use_signer(signer)?)
    }

    /// `EdDSA` or `ES256`.
    pub fn algorithm(&self) -> &'static str {
        alg_name(self.key.algorithm())
    }

    /// The signing key's public half, with this signer's kid.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs the token for one forwarded request.
    pub fn sign(&self, input: &TokenInput<'_>) -> Result<String, TagError> {
        for (name, value) in [
            ("aud", input.aud),
            ("sub", input.sub),
            ("jti", input.jti),
            ("use", input.use_),
        ] {
            if value.is_empty() {
                return Err(TagError::Empty(name));
            }
        }
        let claims = self.claims(input);
        Ok(self.key.sign_jws(&self.header, &claims)?)
    }

    /// Signs the token of a streamed request: `"stream": true` and no `body_sha256`
    /// (`input.body_sha256` is not read).
    pub fn sign_stream(&self, input: &TokenInput<'_>) -> Result<String, TagError> {
        let mut claims = self.claims(&TokenInput {
            body_sha256: "",
            ..*input
        });
        claims.body_sha256 = None;
        claims.stream = true;
        for (name, value) in [("aud", input.aud), ("sub", input.sub), ("jti", input.jti)] {
            if value.is_empty() {
                return Err(TagError::Empty(name));
            }
        }
        Ok(self.key.sign_jws(&self.header, &claims)?)
    }

    /// Signs other claims with this key and kid, as a compact JWS of type `typ` (the
    /// disclosure ledger's checkpoints).
    pub fn sign_claims<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, TagError> {
        Ok(self.key.sign_jwt(Some(&self.kid), typ, claims)?)
    }

    /// The claims [`TokenSigner::sign`] signs (for logs and `explain`).
    pub fn claims(&self, input: &TokenInput<'_>) -> DataUseClaims {
        DataUseClaims {
            iss: self.issuer.clone(),
            aud: input.aud.to_string(),
            sub: input.sub.to_string(),
            use_: input.use_.to_string(),
            purpose: input.purpose.to_string(),
            iat: input.now_unix,
            exp: input
                .now_unix
                .saturating_add(input.ttl_secs.clamp(1, MAX_TTL_SECS)),
            jti: input.jti.to_string(),
            body_sha256: Some(input.body_sha256.to_string()),
            stream: false,
            policy_version: input.policy_version.to_string(),
            legal_basis: input.legal_basis.map(str::to_string),
            nbf: None,
        }
    }
}
