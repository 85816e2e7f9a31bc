/*!
JOSE key material and the rules shared by every token the gateway reads or writes: public keys
from a JWKS document or PEM, private keys from PKCS#8 PEM, the algorithms each kind of token may
use, and the clock leeway.

Every key carries the one algorithm it may be used with, fixed when the key is loaded
(`OKP`/Ed25519 → EdDSA, `EC`/P-256 → ES256, `RSA` → RS256, an explicit secret → HS256).
A token never chooses the algorithm: verification refuses a token whose `alg` differs from
its key's. Symmetric keys never come from a key set; only [`PublicKey::hs256`] makes one.

Used by [`crate::callers`] (verifying caller tokens) and [`crate::tagging`] (the gateway's
signing key and the published JWKS).
*/
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{Map, Value};

/// Clock skew tolerated, in seconds: on a data-use token's `exp`, `nbf` and `iat` (a partner's
/// clock against the gateway's), and on a caller token's `nbf` and `iat` only (its `exp` is a hard
/// deadline, see `callers::check_times`).
pub const LEEWAY_SECS: u64 = 30;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Smallest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_HS256_SECRET_BYTES: usize = 32;
/// Longest `kid` accepted.
pub const MAX_KID_LEN: usize = 256;

/// Why key material could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key set is not valid JSON: {0}")]
    Json(String),
    #[error("key set has no \"keys\" array")]
    NotAKeySet,
    #[error("key {key}: {reason}")]
    BadKey { key: String, reason: String },
    #[error("kid {0:?} is used by more than one key")]
    DuplicateKid(String),
    #[error("{0}")]
    Pem(String),
    #[error("no usable key found")]
    Empty,
    #[error("the HS256 secret has {0} bytes; at least {MIN_HS256_SECRET_BYTES} are required")]
    WeakSecret(usize),
    #[error("{0}")]
    PrivateKey(String),
    #[error("signing failed: {0}")]
    Signing(String),
}

fn bad(key: &str, reason: impl Into<String>) -> KeyError {
    KeyError::BadKey {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// The JOSE name of an algorithm this crate supports.
pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::EdDSA => "EdDSA",
        Algorithm::ES256 => "ES256",
        Algorithm::RS256 => "RS256",
        Algorithm::HS256 => "HS256",
        _ => "unsupported",
    }
}

/// Every asymmetric algorithm accepted for caller tokens.
pub const CALLER_ALGORITHMS: &[Algorithm] = &[Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256];
/// Algorithms of the gateway's own data-use tokens (EdDSA or ES256, see the README).
pub const DATA_USE_ALGORITHMS: &[Algorithm] = &[Algorithm::EdDSA, Algorithm::ES256];

/// A verification key bound to one algorithm.
#[derive(Clone)]
pub struct PublicKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
    /// The public JWK (kty, crv, x, y / n, e); `None` for HS256 secrets, which are never published.
    jwk: Option<Map<String, Value>>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("alg", &alg_name(self.alg))
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }

    pub(crate) fn set_kid(&mut self, kid: Option<&str>) -> Result<(), KeyError> {
        if let Some(k) = kid {
            check_kid(k)?;
        }
        self.kid = kid.map(str::to_string);
        Ok(())
    }

    /// The public JWK with `kid`, `alg` and `use: "sig"`, as published in a JWKS.
    /// `None` for HS256 secrets.
    pub fn to_jwk(&self) -> Option<Value> {
        let mut m = self.jwk.clone()?;
        if let Some(kid) = &self.kid {
            m.insert("kid".into(), Value::String(kid.clone()));
        }
        m.insert("alg".into(), Value::String(alg_name(self.alg).into()));
        m.insert("use".into(), Value::String("sig".into()));
        Some(Value::Object(m))
    }

    /// An HS256 key from an explicitly configured secret.
    pub fn hs256(kid: Option<&str>, secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_HS256_SECRET_BYTES {
            return Err(KeyError::WeakSecret(secret.len()));
        }
        if let Some(k) = kid {
            check_kid(k)?;
        }
        Ok(PublicKey {
            kid: kid.map(str::to_string),
            alg: Algorithm::HS256,
            key: DecodingKey::from_secret(secret),
            jwk: None,
        })
    }

    /// One JWK. `Ok(None)` when the key is not meant for signatures (`"use": "enc"`).
    /// `label` names the key in errors when it has no `kid`.
    pub fn from_jwk(
        jwk: &Value,
        label: &str,
        allowed: &[Algorithm],
    ) -> Result<Option<Self>, KeyError> {
        let obj = jwk
            .as_object()
            .ok_or_else(|| bad(label, "is not a JSON object"))?;
        let kid = jwk_kid(obj, label)?;
        let label = kid
            .as_deref()
            .map(|k| format!("{k:?}"))
            .unwrap_or_else(|| label.to_string());
        let label = label.as_str();
        match obj.get("use") {
            None => {}
            Some(Value::String(u)) if u == "sig" => {}
            Some(Value::String(_)) => return Ok(None),
            Some(_) => return Err(bad(label, "use must be a string")),
        }
        let kty = str_member(obj, "kty", label)?;
        let declared = match obj.get("alg") {
            None => None,
            Some(Value::String(a)) => Some(a.as_str()),
            Some(_) => return Err(bad(label, "alg must be a string")),
        };
        if kty != "oct" {
            check_public_only(obj, label)?;
        }
        let (alg, key, public) = match kty {
            "OKP" => okp_key(obj, label)?,
            "EC" => ec_key(obj, label)?,
            "RSA" => rsa_key(obj, label)?,
            "oct" => {
                return Err(bad(
                    label,
                    "symmetric keys are not accepted from a key set; configure an HS256 secret explicitly",
                ))
            }
            other => return Err(bad(label, format!("key type {other:?} is not supported"))),
        };
        if let Some(d) = declared {
            if d != alg_name(alg) {
                return Err(bad(
                    label,
                    format!(
                        "alg {d:?} does not fit this {kty} key (only {} is supported)",
                        alg_name(alg)
                    ),
                ));
            }
        }
        if !allowed.contains(&alg) {
            return Err(bad(
                label,
                format!("{} keys are not accepted here", alg_name(alg)),
            ));
        }
        probe(&key, alg).map_err(|reason| bad(label, reason))?;
        Ok(Some(PublicKey {
            kid,
            alg,
            key,
            jwk: Some(public),
        }))
    }

    /// One PEM block holding a public key (`PUBLIC KEY`, or `RSA PUBLIC KEY`).
    pub fn from_public_pem(
        kid: Option<&str>,
        block: &PemBlock,
        allowed: &[Algorithm],
    ) -> Result<Self, KeyError> {
        let label = kid
            .map(|k| format!("{k:?}"))
            .unwrap_or_else(|| format!("PEM block {}", block.index + 1));
        let decoding = match block.label.as_str() {
            "PUBLIC KEY" => DecodingKey::from_ed_pem(block.text.as_bytes())
                .or_else(|_| DecodingKey::from_ec_pem(block.text.as_bytes()))
                .or_else(|_| DecodingKey::from_rsa_pem(block.text.as_bytes()))
                .map_err(|_| bad(&label, "not an Ed25519, P-256 or RSA public key"))?,
            "RSA PUBLIC KEY" => DecodingKey::from_rsa_pem(block.text.as_bytes())
                .map_err(|_| bad(&label, "not an RSA public key"))?,
            l if l.contains("PRIVATE KEY") => {
                return Err(bad(&label, "is a private key; give the public key only"));
            }
            l => return Err(bad(&label, format!("PEM type {l:?} is not a public key"))),
        };
        let jwk =
            Jwk::from_decoding_key(&decoding, None).map_err(|e| bad(&label, e.to_string()))?;
        let mut value = serde_json::to_value(&jwk).map_err(|e| bad(&label, e.to_string()))?;
        if let (Some(obj), Some(k)) = (value.as_object_mut(), kid) {
            obj.insert("kid".into(), Value::String(k.to_string()));
        }
        PublicKey::from_jwk(&value, &label, allowed)?
            .ok_or_else(|| bad(&label, "not a signature key"))
    }
}

/// Every key of a JWKS document (`{"keys": [...]}`) that is meant for signatures.
pub fn parse_jwks(json: &str, allowed: &[Algorithm]) -> Result<Vec<PublicKey>, KeyError> {
    let doc: Value = serde_json::from_str(json).map_err(|e| KeyError::Json(e.to_string()))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(KeyError::NotAKeySet)?;
    let mut out = Vec::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        if let Some(key) = PublicKey::from_jwk(k, &format!("#{}", i + 1), allowed)? {
            out.push(key);
        }
    }
    Ok(out)
}

/// One `-----BEGIN <label>----- ... -----END <label>-----` block of a PEM file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemBlock {
    pub label: String,
    /// The whole block, markers included.
    pub text: String,
    /// Position in the file, from 0.
    pub index: usize,
}

/// Splits a PEM file into its blocks (text around them is ignored).
pub fn pem_blocks(text: &str) -> Result<Vec<PemBlock>, KeyError> {
    const BEGIN: &str = "-----BEGIN ";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let label_end = after
            .find("-----")
            .ok_or_else(|| KeyError::Pem("PEM BEGIN line is not terminated".into()))?;
        let label = &after[..label_end];
        // A BEGIN line that lost its dashes runs on into the key: never quote such a "label".
        let plausible = label.len() <= 40
            && label
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ');
        if !plausible {
            return Err(KeyError::Pem(
                "a PEM BEGIN line is malformed (its dashes are missing or the key is pasted on one line)"
                    .into(),
            ));
        }
        let end_marker = format!("-----END {label}-----");
        let end = rest[start..]
            .find(&end_marker)
            .ok_or_else(|| KeyError::Pem(format!("PEM block {label:?} has no END line")))?;
        let stop = start + end + end_marker.len();
        out.push(PemBlock {
            label: label.to_string(),
            text: rest[start..stop].to_string(),
            index: out.len(),
        });
        rest = &rest[stop..];
    }
    Ok(out)
}

/// A signing key: PKCS#8 Ed25519 or P-256, or RSA (PKCS#8 or PKCS#1).
pub struct PrivateKey {
    alg: Algorithm,
    key: EncodingKey,
    public: PublicKey,
    /// The parsed signing key, made once: `jsonwebtoken::encode` parses the PKCS#8 key and
    /// derives its public key (a scalar multiplication as costly as the signature itself) on
    /// every call.
    signer: Signer,
}

/// A signing key ready to sign (RSA keys sign through `jsonwebtoken`, never on a request path).
enum Signer {
    Ed25519(Box<ed25519_dalek::SigningKey>),
    P256(Box<p256::ecdsa::SigningKey>),
    /// A backend the shell installed with [`PrivateKey::use_signer`].
    External(Box<dyn RawSigner>),
    Other,
}

/// Signs a JWS signing input with a backend the core cannot hold itself (the shell's ES256
/// through ring, which draws each nonce from the system's random numbers). Returns the raw
/// signature: for ES256 `r || s`, 64 bytes.
pub trait RawSigner: Send + Sync {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String>;
}

impl Signer {
    fn new(alg: Algorithm, key: &EncodingKey) -> Result<Signer, KeyError> {
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        let invalid = |_| KeyError::PrivateKey(format!("{} key is invalid", alg_name(alg)));
        Ok(match alg {
            Algorithm::EdDSA => Signer::Ed25519(Box::new(
                ed25519_dalek::SigningKey::from_pkcs8_der(key.as_bytes()).map_err(invalid)?,
            )),
            Algorithm::ES256 => Signer::P256(Box::new(
                p256::ecdsa::SigningKey::from_pkcs8_der(key.as_bytes()).map_err(invalid)?,
            )),
            _ => Signer::Other,
        })
    }
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("alg", &alg_name(self.alg))
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Reads the one private key of a PEM file and checks that it signs what its public key verifies.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let text = std::str::from_utf8(pem)
            .map_err(|_| KeyError::PrivateKey("key file is not PEM text".into()))?;
        let blocks = pem_blocks(text)?;
        let private: Vec<&PemBlock> = blocks
            .iter()
            .filter(|b| b.label.contains("PRIVATE KEY"))
            .collect();
        let block = match private.as_slice() {
            [one] => *one,
            [] if blocks.iter().any(|b| b.label.contains("PUBLIC KEY")) => {
                return Err(KeyError::PrivateKey(
                    "this is a public key; a private key is needed".into(),
                ))
            }
            [] => return Err(KeyError::PrivateKey("no PEM private key found".into())),
            _ => {
                return Err(KeyError::PrivateKey(
                    "more than one private key in the file".into(),
                ))
            }
        };
        let bytes = block.text.as_bytes();
        let (alg, key) = match block.label.as_str() {
            "PRIVATE KEY" => {
                if let Ok(k) = EncodingKey::from_ed_pem(bytes) {
                    (Algorithm::EdDSA, k)
                } else if let Ok(k) = EncodingKey::from_ec_pem(bytes) {
                    (Algorithm::ES256, k)
                } else if let Ok(k) = EncodingKey::from_rsa_pem(bytes) {
                    (Algorithm::RS256, k)
                } else {
                    return Err(KeyError::PrivateKey(
                        "not a PKCS#8 Ed25519, P-256 or RSA private key".into(),
                    ));
                }
            }
            "RSA PRIVATE KEY" => (
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(bytes)
                    .map_err(|_| KeyError::PrivateKey("not an RSA private key".into()))?,
            ),
            "EC PRIVATE KEY" => {
                return Err(KeyError::PrivateKey(
                    "SEC1 EC keys are not supported; convert with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.p8.pem`"
                        .into(),
                ))
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err(KeyError::PrivateKey("encrypted private keys are not supported".into()))
            }
            l => return Err(KeyError::PrivateKey(format!("PEM type {l:?} is not supported"))),
        };
        let jwk = Jwk::from_encoding_key(&key, alg).map_err(|_| {
            KeyError::PrivateKey(match alg {
                Algorithm::ES256 => "EC key is not on curve P-256".to_string(),
                _ => format!("{} key is invalid", alg_name(alg)),
            })
        })?;
        let value = serde_json::to_value(&jwk).map_err(|e| KeyError::PrivateKey(e.to_string()))?;
        let public = PublicKey::from_jwk(&value, "private key", CALLER_ALGORITHMS)
            .map_err(|e| KeyError::PrivateKey(e.to_string()))?
            .ok_or_else(|| KeyError::PrivateKey("not a signature key".into()))?;
        let signer = Signer::new(alg, &key)?;
        let pk = PrivateKey {
            alg,
            key,
            public,
            signer,
        };
        pk.self_test()?;
        Ok(pk)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The matching public key (without a kid).
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The key as PKCS#8 DER, for Ed25519 and P-256 keys (to build another backend from).
    pub fn pkcs8_der(&self) -> Option<&[u8]> {
        matches!(self.alg, Algorithm::EdDSA | Algorithm::ES256).then(|| self.key.as_bytes())
    }

    /// Signs through `signer` from now on, once a signature it made has verified with this
    /// key's public key; on any failure the key keeps signing as before.
    pub fn use_signer(&mut self, signer: Box<dyn RawSigner>) -> Result<(), KeyError> {
        let before = std::mem::replace(&mut self.signer, Signer::External(signer));
        if let Err(e) = self.self_test() {
            self.signer = before;
            return Err(e);
        }
        Ok(())
    }

    /// Signs `header.claims` as a compact JWS with this key's algorithm.
    pub fn sign_jwt<T: serde::Serialize>(
        &self,
        kid: Option<&str>,
        typ: &str,
        claims: &T,
    ) -> Result<String, KeyError> {
        self.sign_jws(&self.jws_header(kid, typ)?, claims)
    }

    /// The base64url JWS header [`PrivateKey::sign_jwt`] writes for `kid` and `typ`: a signer
    /// that signs many tokens of one kind makes it once and calls [`PrivateKey::sign_jws`].
    pub fn jws_header(&self, kid: Option<&str>, typ: &str) -> Result<String, KeyError> {
        let mut header = jsonwebtoken::Header::new(self.alg);
        header.typ = Some(typ.to_string());
        header.kid = kid.map(str::to_string);
        let json = serde_json::to_vec(&header).map_err(|e| KeyError::Signing(e.to_string()))?;
        Ok(URL_SAFE_NO_PAD.encode(json))
    }

    /// Signs `header.claims` as a compact JWS, `header` made by [`PrivateKey::jws_header`].
    pub fn sign_jws<T: serde::Serialize>(
        &self,
        header: &str,
        claims: &T,
    ) -> Result<String, KeyError> {
        let mut payload = Vec::with_capacity(512);
        serde_json::to_writer(&mut payload, claims)
            .map_err(|e| KeyError::Signing(e.to_string()))?;
        // header . payload . signature (an ES256 or EdDSA signature is 86 characters).
        let mut jws = String::with_capacity(header.len() + payload.len().div_ceil(3) * 4 + 96);
        jws.push_str(header);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut jws);
        let signature = self.sign(jws.as_bytes())?;
        jws.push('.');
        jws.push_str(&signature);
        Ok(jws)
    }

    /// The base64url signature of `message` (the JWS signing input).
    fn sign(&self, message: &[u8]) -> Result<String, KeyError> {
        use ed25519_dalek::Signer as _;
        Ok(match &self.signer {
            Signer::Ed25519(key) => URL_SAFE_NO_PAD.encode(key.sign(message).to_bytes()),
            Signer::P256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(message);
                URL_SAFE_NO_PAD.encode(signature.to_bytes())
            }
            Signer::External(signer) => {
                URL_SAFE_NO_PAD.encode(signer.sign(message).map_err(KeyError::Signing)?)
            }
            Signer::Other => jsonwebtoken::crypto::sign(message, &self.key, self.alg)
                .map_err(|e| KeyError::Signing(e.to_string()))?,
        })
    }

    fn self_test(&self) -> Result<(), KeyError> {
        let msg = b"partner-gateway key self-test";
        let sig = self.sign(msg)?;
        match jsonwebtoken::crypto::verify(&sig, msg, &self.public.key, self.alg) {
            Ok(true) => Ok(()),
            _ => Err(KeyError::PrivateKey(
                "the key does not verify its own signature".into(),
            )),
        }
    }
}

/// Builds the verifier once with an empty signature: a public key that is not a valid point
/// fails here, at load time, not on the first request.
fn probe(key: &DecodingKey, alg: Algorithm) -> Result<(), String> {
    match jsonwebtoken::crypto::verify("", b"", key, alg) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("invalid public key: {e}")),
    }
}

pub(crate) fn check_kid(kid: &str) -> Result<(), KeyError> {
    if kid.is_empty() || kid.len() > MAX_KID_LEN || !kid.bytes().all(|b| (0x21..=0x7e).contains(&b))
    {
        return Err(KeyError::BadKey {
            key: format!("{kid:?}"),
            reason: format!(
                "kid must be 1 to {MAX_KID_LEN} printable ASCII characters without spaces"
            ),
        });
    }
    Ok(())
}

/// A JWK's `kid`, checked.
fn jwk_kid(obj: &Map<String, Value>, label: &str) -> Result<Option<String>, KeyError> {
    match obj.get("kid") {
        None => Ok(None),
        Some(Value::String(s)) => {
            check_kid(s)?;
            Ok(Some(s.clone()))
        }
        Some(_) => Err(bad(label, "kid must be a string")),
    }
}

/// A key set holds public keys only: any private member refuses the key.
fn check_public_only(obj: &Map<String, Value>, label: &str) -> Result<(), KeyError> {
    for private in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
        if obj.contains_key(private) {
            return Err(bad(
                label,
                "holds private key material; a key set must hold public keys only",
            ));
        }
    }
    Ok(())
}

/// A key, its algorithm and its public JWK as published.
type JwkKey = (Algorithm, DecodingKey, Map<String, Value>);

/// An Ed25519 `OKP` key.
fn okp_key(obj: &Map<String, Value>, label: &str) -> Result<JwkKey, KeyError> {
    let crv = str_member(obj, "crv", label)?;
    if crv != "Ed25519" {
        return Err(bad(
            label,
            format!("curve {crv:?} is not supported (use Ed25519)"),
        ));
    }
    let x = b64_member(obj, "x", label)?;
    if x.len() != 32 {
        return Err(bad(label, "x must be 32 bytes for Ed25519"));
    }
    let x = URL_SAFE_NO_PAD.encode(&x);
    let key = DecodingKey::from_ed_components(&x).map_err(|e| bad(label, e.to_string()))?;
    let public = jwk_map([("kty", "OKP"), ("crv", "Ed25519"), ("x", &x)]);
    Ok((Algorithm::EdDSA, key, public))
}

/// A P-256 `EC` key.
fn ec_key(obj: &Map<String, Value>, label: &str) -> Result<JwkKey, KeyError> {
    let crv = str_member(obj, "crv", label)?;
    if crv != "P-256" {
        return Err(bad(
            label,
            format!("curve {crv:?} is not supported (use P-256)"),
        ));
    }
    let x = b64_member(obj, "x", label)?;
    let y = b64_member(obj, "y", label)?;
    if x.len() != 32 || y.len() != 32 {
        return Err(bad(label, "x and y must be 32 bytes each for P-256"));
    }
    let (x, y) = (URL_SAFE_NO_PAD.encode(&x), URL_SAFE_NO_PAD.encode(&y));
    let key = DecodingKey::from_ec_components(&x, &y).map_err(|e| bad(label, e.to_string()))?;
    let public = jwk_map([("kty", "EC"), ("crv", "P-256"), ("x", &x), ("y", &y)]);
    Ok((Algorithm::ES256, key, public))
}

/// An `RSA` key of at least [`MIN_RSA_BITS`] bits.
fn rsa_key(obj: &Map<String, Value>, label: &str) -> Result<JwkKey, KeyError> {
    let n = b64_member(obj, "n", label)?;
    let e = b64_member(obj, "e", label)?;
    let bits = bit_len(&n);
    if bits < MIN_RSA_BITS {
        return Err(bad(
            label,
            format!("RSA modulus has {bits} bits; at least {MIN_RSA_BITS} are required"),
        ));
    }
    if e.is_empty() || e.len() > 8 || bit_len(&e) < 2 {
        return Err(bad(label, "RSA exponent is invalid"));
    }
    let (n, e) = (
        URL_SAFE_NO_PAD.encode(trim_zeros(&n)),
        URL_SAFE_NO_PAD.encode(trim_zeros(&e)),
    );
    let key = DecodingKey::from_rsa_components(&n, &e).map_err(|e| bad(label, e.to_string()))?;
    let public = jwk_map([("kty", "RSA"), ("n", &n), ("e", &e)]);
    Ok((Algorithm::RS256, key, public))
}

fn str_member<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    label: &str,
) -> Result<&'a str, KeyError> {
    match obj.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(bad(label, format!("{name} must be a string"))),
        None => Err(bad(label, format!("{name} is missing"))),
    }
}

fn b64_member(obj: &Map<String, Value>, name: &str, label: &str) -> Result<Vec<u8>, KeyError> {
    let s = str_member(obj, name, label)?;
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| bad(label, format!("{name} is not base64url")))
}

fn jwk_map<const N: usize>(members: [(&str, &str); N]) -> Map<String, Value> {
    members
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect()
}

fn trim_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

fn bit_len(b: &[u8]) -> usize {
    let b = trim_zeros(b);
    match b.first() {
        None => 0,
        Some(&top) => (b.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BEGIN line that lost its dashes would make the whole key the "label"; errors about
    /// it must not quote it (they reach logs and the reload endpoint's answer).
    #[test]
    fn a_malformed_pem_begin_line_is_refused_without_quoting_the_key() {
        let key = "MC4CAQAwBQYDK2VwBCIEILf73m7Vf0PPXkIYQ5vjCmpqO+uasweaWLj/HHpSZExo";
        for text in [
            format!("-----BEGIN PRIVATE KEY----\n{key}\n-----END PRIVATE KEY-----\n"),
            format!("-----BEGIN PRIVATE KEY\n{key}\n-----END PRIVATE KEY-----\n"),
        ] {
            let message = match pem_blocks(&text) {
                Err(KeyError::Pem(m)) => m,
                other => panic!("{text}: {:?}", other.map(|b| b.len())),
            };
            assert!(!message.contains(&key[..12]), "{message}");
        }
        let good = format!("-----BEGIN PRIVATE KEY-----\n{key}\n-----END PRIVATE KEY-----\n");
        assert_eq!(pem_blocks(&good).map(|b| b.len()).ok(), Some(1));
    }
}
