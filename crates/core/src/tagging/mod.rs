/*!
Data-use tagging: the `ohsoft-data-use` structured header and the signed `ohsoft-data-use-token`.
The signing key and the current time are handed in; nothing here reads files or the clock.

- [`header`]: [`DataUseTag`] → the RFC 8941 dictionary sent as `ohsoft-data-use`.
- [`token`]: [`TokenSigner`] signs the per-request JWS (EdDSA or ES256, `kid` in the header)
  whose `body_sha256` binds it to the exact bytes forwarded.
- [`jwks`]: the public key set served at `/.well-known/jwks.json` (the signing key plus keys
  still published during a rotation) and [`verify_data_use_token`] for partners and auditors.
*/
pub mod header;
pub mod jwks;
pub mod token;

#[cfg(test)]
mod tests;

pub use header::{DataUseTag, DATA_USE_HEADER, DATA_USE_TOKEN_HEADER};
pub use jwks::{verify_data_use_token, Jwks, TokenVerifyError};
pub use token::{
    body_sha256, body_sha256_of, DataUseClaims, TokenInput, TokenSigner, DATA_USE_TOKEN_TYP,
    MAX_TTL_SECS,
};

use crate::jose::KeyError;

/// Why a data-use tag or token could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("data-use member {member} {value:?} is not a printable ASCII string")]
    InvalidValue { member: &'static str, value: String },
    /// Not a `source`: the message already holds it, and `{:#}` would print it twice.
    #[error("signing key: {0}")]
    Key(KeyError),
    #[error("signing key must be Ed25519 (EdDSA) or P-256 (ES256), not {0}")]
    UnsupportedKey(&'static str),
    #[error("{0} must not be empty")]
    Empty(&'static str),
}

impl From<KeyError> for TagError {
    fn from(e: KeyError) -> Self {
        TagError::Key(e)
    }
}
