//! JWT verification for qualityfoundry_tenant, as plain Rust (no backend, tested with `cargo test`).
//!
//! The extension stores verification keys (`tenant.add_jwt_key`) and lets an application role enter
//! a tenant with the JWT its auth service issued (`tenant.set_tenant_jwt`). This crate holds every
//! decision that does not need the database:
//!
//! - [`Key::parse`]: what a key may be. One algorithm per key (HS256/384/512 with a shared secret of
//!   at least the hash's size, RFC 7518 §3.2; RS256/384/512 and PS256 with an RSA public key of
//!   at least 2048 bits; ES256/ES384 on P-256/P-384; EdDSA on Ed25519), given as a PEM public key
//!   or one JWK. Private keys are refused: the database only verifies.
//! - [`peek`] and [`choose_key`]: which key a token names (`kid`, or the only key there is).
//! - [`verify`]: the signature with that key's algorithm only (so `alg: none` and HS/RS confusion
//!   fail before any cryptography), then `exp` (required), `nbf` and `iat` against the caller's
//!   clock with a leeway, `iss` and `aud` when the key has them, and the identity the context
//!   carries: tenant, end user (`sub`), tenant role and `jti`.
//!
//! Signature checks are jsonwebtoken's (RustCrypto backend); this crate adds the policy around them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Longest token accepted (a JWT in a header is rarely over 8 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longest end-user id (`sub`, `sign_context(user_id => ...)`).
pub const MAX_USER_BYTES: usize = 256;
/// Longest tenant role.
pub const MAX_ROLE_BYTES: usize = 63;
/// Longest request id (`set_request_id`, a `jti` used as one).
pub const MAX_REQUEST_ID_BYTES: usize = 200;
/// Longest key id.
pub const MAX_KID_BYTES: usize = 200;

/// The algorithms a key may be registered for, as written in `alg`.
pub const ALGORITHMS: [&str; 10] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
];

fn algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Hmac {
        min_bytes: usize,
    },
    Rsa,
    Ec {
        curve: &'static str,
        point_bytes: usize,
    },
    Ed,
}

fn family(alg: Algorithm) -> Family {
    match alg {
        Algorithm::HS256 => Family::Hmac { min_bytes: 32 },
        Algorithm::HS384 => Family::Hmac { min_bytes: 48 },
        Algorithm::HS512 => Family::Hmac { min_bytes: 64 },
        Algorithm::ES256 => Family::Ec {
            curve: "P-256",
            point_bytes: 65,
        },
        Algorithm::ES384 => Family::Ec {
            curve: "P-384",
            point_bytes: 97,
        },
        Algorithm::EdDSA => Family::Ed,
        _ => Family::Rsa,
    }
}

/// Why a key cannot be registered. Each renders as a message a DBA can act on (SQLSTATE 22023).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    BadKid(String),
    UnknownAlgorithm(String),
    Malformed(String),
    PrivateKey,
    WeakSecret {
        alg: String,
        bytes: usize,
        need: usize,
    },
    WeakRsa {
        bits: usize,
    },
    Mismatch(String),
    BadClaimValue(&'static str),
}

impl KeyError {
    pub fn describe(&self) -> String {
        match self {
            KeyError::BadKid(why) => format!("invalid key id: {why}"),
            KeyError::UnknownAlgorithm(a) => format!(
                "unsupported JWT algorithm \"{a}\" (use one of {})",
                ALGORITHMS.join(", ")
            ),
            KeyError::Malformed(why) => format!("malformed key: {why}"),
            KeyError::PrivateKey => {
                "the key is a private key: register the public key (the database only verifies)"
                    .into()
            }
            KeyError::WeakSecret { alg, bytes, need } => format!(
                "a {alg} secret must be at least {need} bytes (RFC 7518 section 3.2); this one has {bytes}"
            ),
            KeyError::WeakRsa { bits } => {
                format!("RSA keys must be at least 2048 bits (RFC 7518); this one has {bits}")
            }
            KeyError::Mismatch(why) => format!("the key does not fit: {why}"),
            KeyError::BadClaimValue(what) => {
                format!("{what} must be a non-empty string without control characters")
            }
        }
    }
}

/// A verification key as registered: its algorithm, the parsed key, and the issuer and audience
/// a token must carry (when set).
#[derive(Clone)]
pub struct Key {
    alg: Algorithm,
    alg_name: &'static str,
    decoding: DecodingKey,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("alg", &self.alg_name)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

fn plain_text(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(char::is_control)
}

/// Checks a key id: non-empty, at most 200 bytes, no control characters.
pub fn check_kid(kid: &str) -> Result<(), KeyError> {
    if !plain_text(kid) {
        return Err(KeyError::BadKid(
            "it must be non-empty, without control characters".into(),
        ));
    }
    if kid.len() > MAX_KID_BYTES {
        return Err(KeyError::BadKid(format!(
            "it is longer than {MAX_KID_BYTES} bytes"
        )));
    }
    Ok(())
}

/// The label of a PEM block (`PUBLIC KEY`, `RSA PRIVATE KEY`, ...), if `text` is one.
fn pem_label(text: &str) -> Option<&str> {
    let rest = text.trim_start().strip_prefix("-----BEGIN ")?;
    let end = rest.find("-----")?;
    Some(&rest[..end])
}

fn b64url(field: &str, v: &Value) -> Result<Vec<u8>, KeyError> {
    let s = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| KeyError::Malformed(format!("the JWK has no \"{field}\" string")))?;
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| KeyError::Malformed(format!("the JWK's \"{field}\" is not base64url")))
}

fn rsa_bits(modulus: &[u8]) -> usize {
    let trimmed: Vec<u8> = modulus.iter().copied().skip_while(|&b| b == 0).collect();
    match trimmed.first() {
        None => 0,
        Some(first) => trimmed.len() * 8 - first.leading_zeros() as usize,
    }
}

impl Key {
    /// Parses and checks a key for registration. `material` is the shared secret (HS*: its UTF-8
    /// bytes, or one JWK of kty "oct"), or a PEM public key, or one JWK as JSON.
    pub fn parse(
        kid: &str,
        alg_name: &str,
        material: &str,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<Key, KeyError> {
        check_kid(kid)?;
        let alg =
            algorithm(alg_name).ok_or_else(|| KeyError::UnknownAlgorithm(alg_name.to_string()))?;
        let alg_name = ALGORITHMS
            .iter()
            .copied()
            .find(|a| *a == alg_name)
            .expect("known algorithm");
        for (what, v) in [("issuer", issuer), ("audience", audience)] {
            if v.is_some_and(|v| !plain_text(v)) {
                return Err(KeyError::BadClaimValue(what));
            }
        }
        if material.is_empty() {
            return Err(KeyError::Malformed("the key is empty".into()));
        }
        let trimmed = material.trim();
        let decoding = if trimmed.starts_with('{') {
            Self::from_jwk(kid, alg, alg_name, trimmed)?
        } else if let Some(label) = pem_label(trimmed) {
            Self::from_pem(alg, label, trimmed)?
        } else {
            match family(alg) {
                Family::Hmac { min_bytes } => {
                    Self::secret(alg_name, material.as_bytes(), min_bytes)?
                }
                _ => {
                    return Err(KeyError::Malformed(format!(
                        "{alg_name} needs a PEM public key (-----BEGIN PUBLIC KEY-----) or one JWK as JSON"
                    )))
                }
            }
        };
        let key = Key {
            alg,
            alg_name,
            decoding,
            issuer: issuer.map(str::to_string),
            audience: audience.map(str::to_string),
        };
        key.self_check()?;
        Ok(key)
    }

    fn secret(alg_name: &str, bytes: &[u8], min_bytes: usize) -> Result<DecodingKey, KeyError> {
        if bytes.len() < min_bytes {
            return Err(KeyError::WeakSecret {
                alg: alg_name.to_string(),
                bytes: bytes.len(),
                need: min_bytes,
            });
        }
        DecodingKey::from_secret(bytes).map_err(|e| KeyError::Malformed(e.to_string()))
    }

    fn from_pem(alg: Algorithm, label: &str, pem: &str) -> Result<DecodingKey, KeyError> {
        if label.contains("PRIVATE") {
            return Err(KeyError::PrivateKey);
        }
        let bad = |e: jsonwebtoken::errors::Error| {
            KeyError::Malformed(format!(
                "not a valid PEM public key for this algorithm ({e})"
            ))
        };
        match family(alg) {
            Family::Hmac { .. } => Err(KeyError::Mismatch(
                "HS algorithms take the shared secret, not a PEM key".into(),
            )),
            Family::Rsa => {
                if label != "PUBLIC KEY" && label != "RSA PUBLIC KEY" {
                    return Err(KeyError::Malformed(format!(
                        "expected an RSA public key PEM, got \"{label}\""
                    )));
                }
                DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(bad)
            }
            Family::Ec { .. } => DecodingKey::from_ec_pem(pem.as_bytes()).map_err(bad),
            Family::Ed => DecodingKey::from_ed_pem(pem.as_bytes()).map_err(bad),
        }
    }

    fn from_jwk(
        kid: &str,
        alg: Algorithm,
        alg_name: &str,
        json: &str,
    ) -> Result<DecodingKey, KeyError> {
        let v: Value = serde_json::from_str(json)
            .map_err(|e| KeyError::Malformed(format!("not valid JSON ({e})")))?;
        if !v.is_object() {
            return Err(KeyError::Malformed("a JWK is a JSON object".into()));
        }
        if v.get("keys").is_some() {
            return Err(KeyError::Malformed(
                "this is a JWK set: register each key with its own kid".into(),
            ));
        }
        let text = |field: &str| v.get(field).and_then(Value::as_str);
        if let Some(a) = text("alg") {
            if a != alg_name {
                return Err(KeyError::Mismatch(format!(
                    "the JWK says alg \"{a}\", the key is registered for {alg_name}"
                )));
            }
        }
        if let Some(u) = text("use") {
            if u != "sig" {
                return Err(KeyError::Mismatch(format!(
                    "the JWK's use is \"{u}\", not \"sig\""
                )));
            }
        }
        if let Some(k) = text("kid") {
            if k != kid {
                return Err(KeyError::Mismatch(format!(
                    "the JWK's kid is \"{k}\", not \"{kid}\""
                )));
            }
        }
        let kty = text("kty").unwrap_or("");
        let fam = family(alg);
        // A private JWK carries "d" (RSA, EC, OKP) or is a secret; only oct may hold a secret.
        if v.get("d").is_some() {
            return Err(KeyError::PrivateKey);
        }
        let expected_kty = match fam {
            Family::Hmac { .. } => "oct",
            Family::Rsa => "RSA",
            Family::Ec { .. } => "EC",
            Family::Ed => "OKP",
        };
        if kty != expected_kty {
            return Err(KeyError::Mismatch(format!(
                "{alg_name} needs a JWK of kty \"{expected_kty}\", this one has \"{kty}\""
            )));
        }
        match fam {
            Family::Hmac { min_bytes } => Self::secret(alg_name, &b64url("k", &v)?, min_bytes),
            Family::Ec { curve, .. } => {
                if text("crv") != Some(curve) {
                    return Err(KeyError::Mismatch(format!(
                        "{alg_name} needs curve {curve}, the JWK has {:?}",
                        text("crv").unwrap_or("none")
                    )));
                }
                Self::via_jwk(&v)
            }
            Family::Ed => {
                if text("crv") != Some("Ed25519") {
                    return Err(KeyError::Mismatch(
                        "EdDSA keys must be on curve Ed25519".into(),
                    ));
                }
                Self::via_jwk(&v)
            }
            Family::Rsa => {
                b64url("n", &v)?;
                b64url("e", &v)?;
                Self::via_jwk(&v)
            }
        }
    }

    fn via_jwk(v: &Value) -> Result<DecodingKey, KeyError> {
        let jwk: Jwk = serde_json::from_value(v.clone())
            .map_err(|e| KeyError::Malformed(format!("not a valid JWK ({e})")))?;
        DecodingKey::from_jwk(&jwk).map_err(|e| KeyError::Malformed(format!("{e}")))
    }

    /// Proves the parsed key is usable for its algorithm (jsonwebtoken parses some keys only when
    /// verifying) and strong enough.
    fn self_check(&self) -> Result<(), KeyError> {
        let bytes = self.decoding.try_get_as_bytes().ok();
        match family(self.alg) {
            Family::Hmac { .. } => Ok(()),
            Family::Rsa => {
                let modulus = match self.decoding.kind() {
                    jsonwebtoken::DecodingKeyKind::RsaModulusExponent { n, e } => {
                        if e.iter().all(|&b| b == 0) {
                            return Err(KeyError::Malformed("the RSA exponent is zero".into()));
                        }
                        n.clone()
                    }
                    jsonwebtoken::DecodingKeyKind::SecretOrDer(der) => {
                        let provider = jsonwebtoken::crypto::CryptoProvider::try_get_default()
                            .ok_or_else(|| KeyError::Malformed("no crypto provider".into()))?;
                        (provider.key_utils.rsa_pub_components_from_public_key)(der)
                            .map_err(|e| {
                                KeyError::Malformed(format!("not an RSA public key ({e})"))
                            })?
                            .0
                    }
                };
                let bits = rsa_bits(&modulus);
                if bits < 2048 {
                    return Err(KeyError::WeakRsa { bits });
                }
                Ok(())
            }
            Family::Ec { curve, point_bytes } => {
                if bytes.map(<[u8]>::len) != Some(point_bytes) {
                    return Err(KeyError::Mismatch(format!(
                        "{} needs a key on curve {curve}",
                        self.alg_name
                    )));
                }
                self.trial()
            }
            Family::Ed => {
                if bytes.map(<[u8]>::len) != Some(32) {
                    return Err(KeyError::Malformed(
                        "an Ed25519 public key is 32 bytes".into(),
                    ));
                }
                self.trial()
            }
        }
    }

    /// Builds the verifier once (EC and Ed keys are parsed there): an error means a bad key.
    fn trial(&self) -> Result<(), KeyError> {
        jsonwebtoken::crypto::verify("AA", b"x", &self.decoding, self.alg)
            .map(|_| ())
            .map_err(|e| KeyError::Malformed(format!("{e}")))
    }

    pub fn algorithm(&self) -> &'static str {
        self.alg_name
    }
}

/// Why a token is refused (SQLSTATE 42501 in the database). The message names what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    TooLong,
    Malformed(String),
    NoneAlgorithm,
    NoKeys,
    KidRequired,
    UnknownKid(String),
    AlgorithmMismatch {
        token: String,
        kid: String,
        key: String,
    },
    BadSignature,
    MissingExp,
    BadTime(&'static str),
    Expired {
        exp: i64,
    },
    NotYetValid {
        nbf: i64,
    },
    IssuedInFuture {
        iat: i64,
    },
    WrongIssuer {
        expected: String,
    },
    WrongAudience {
        expected: String,
    },
    MissingTenant {
        claim: String,
    },
    BadClaim {
        claim: String,
        why: &'static str,
    },
}

impl JwtError {
    pub fn describe(&self) -> String {
        match self {
            JwtError::TooLong => format!("the token is longer than {MAX_TOKEN_BYTES} bytes"),
            JwtError::Malformed(why) => format!("the token is not a compact JWS: {why}"),
            JwtError::NoneAlgorithm => {
                "the token is unsigned (alg \"none\"), which is never accepted".into()
            }
            JwtError::NoKeys => "no JWT verification key is registered (tenant.add_jwt_key)".into(),
            JwtError::KidRequired => {
                "the token has no kid and several keys are registered: the issuer must name its key"
                    .into()
            }
            JwtError::UnknownKid(kid) => format!("no JWT verification key has kid \"{kid}\""),
            JwtError::AlgorithmMismatch { token, kid, key } => format!(
                "the token says alg \"{token}\" but key \"{kid}\" is registered for {key} only"
            ),
            JwtError::BadSignature => {
                "the signature does not match (tampered, or signed with another key)".into()
            }
            JwtError::MissingExp => {
                "the token has no exp claim as a NumericDate (exp is required)".into()
            }
            JwtError::BadTime(claim) => format!("the {claim} claim is not a NumericDate"),
            JwtError::Expired { exp } => format!("the token expired at unix time {exp}"),
            JwtError::NotYetValid { nbf } => {
                format!("the token is not valid before unix time {nbf}")
            }
            JwtError::IssuedInFuture { iat } => {
                format!("the token says it was issued at unix time {iat}, in the future")
            }
            JwtError::WrongIssuer { expected } => {
                format!("the token's iss is not \"{expected}\", the issuer of its key")
            }
            JwtError::WrongAudience { expected } => {
                format!("the token's aud does not include \"{expected}\", the audience of its key")
            }
            JwtError::MissingTenant { claim } => {
                format!("the token has no \"{claim}\" claim naming the tenant")
            }
            JwtError::BadClaim { claim, why } => format!("the \"{claim}\" claim {why}"),
        }
    }
}

/// What a token says before it is verified: its algorithm and key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peek {
    pub alg: String,
    pub kid: Option<String>,
}

/// Reads the (unverified) header: three base64url segments, a JSON object with a string `alg`.
pub fn peek(token: &str) -> Result<Peek, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLong);
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(JwtError::Malformed(format!(
            "{} dot-separated parts instead of 3",
            parts.len()
        )));
    }
    let header = URL_SAFE_NO_PAD
        .decode(parts[0])
        .map_err(|_| JwtError::Malformed("the header is not base64url".into()))?;
    let header: Value = serde_json::from_slice(&header)
        .map_err(|_| JwtError::Malformed("the header is not JSON".into()))?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| JwtError::Malformed("the header has no alg".into()))?;
    if alg.eq_ignore_ascii_case("none") {
        return Err(JwtError::NoneAlgorithm);
    }
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => {
            return Err(JwtError::Malformed(
                "the header's kid is not a string".into(),
            ))
        }
    };
    Ok(Peek {
        alg: alg.to_string(),
        kid,
    })
}

/// Which registered key verifies a token: the one its `kid` names, or — for a token without a
/// kid — the only key there is.
pub fn choose_key<'a>(kid: Option<&str>, registered: &'a [String]) -> Result<&'a str, JwtError> {
    match kid {
        Some(kid) => registered
            .iter()
            .find(|k| k.as_str() == kid)
            .map(String::as_str)
            .ok_or_else(|| JwtError::UnknownKid(kid.to_string())),
        None => match registered {
            [] => Err(JwtError::NoKeys),
            [only] => Ok(only.as_str()),
            _ => Err(JwtError::KidRequired),
        },
    }
}

/// The verifier's clock and the claim names in force.
#[derive(Debug, Clone, Copy)]
pub struct Checks<'a> {
    /// Unix seconds.
    pub now: i64,
    /// Seconds of clock skew allowed for exp, nbf and iat.
    pub leeway: i64,
    pub tenant_claim: &'a str,
    pub role_claim: &'a str,
}

/// What a verified token says about the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The tenant claim as text: a slug, an id or a uuid.
    pub tenant: String,
    pub user: Option<String>,
    pub role: Option<String>,
    pub jti: Option<String>,
    pub expires_at: i64,
    /// `iat`, else `nbf`: the earliest the token can have been issued.
    pub issued_at: Option<i64>,
}

fn numeric_date(claims: &Value, claim: &'static str) -> Result<Option<i64>, JwtError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.floor() as i64)),
                    _ => Err(JwtError::BadTime(claim)),
                }
            }
        }
        Some(_) => Err(JwtError::BadTime(claim)),
    }
}

/// A string claim: absent, or a non-empty string without control characters of at most `max`
/// bytes.
fn text_claim(claims: &Value, claim: &str, max: usize) -> Result<Option<String>, JwtError> {
    let bad = |why| JwtError::BadClaim {
        claim: claim.to_string(),
        why,
    };
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            check_text(s, max).map_err(bad)?;
            Ok(Some(s.clone()))
        }
        Some(_) => Err(bad("is not a string")),
    }
}

/// Checks a user id, tenant role or request id: non-empty, at most `max` bytes, no control
/// characters.
pub fn check_text(s: &str, max: usize) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("is empty");
    }
    if s.len() > max {
        return Err("is too long");
    }
    if s.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    Ok(())
}

fn map_library_error(e: jsonwebtoken::errors::Error, key: &Key) -> JwtError {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => JwtError::BadSignature,
        K::MissingRequiredClaim(c) if c == "exp" => JwtError::MissingExp,
        K::MissingRequiredClaim(c) | K::InvalidClaimFormat(c) if c == "iss" => {
            JwtError::WrongIssuer {
                expected: key.issuer.clone().unwrap_or_default(),
            }
        }
        K::MissingRequiredClaim(c) | K::InvalidClaimFormat(c) if c == "aud" => {
            JwtError::WrongAudience {
                expected: key.audience.clone().unwrap_or_default(),
            }
        }
        K::InvalidClaimFormat(c) if c == "exp" => JwtError::BadTime("exp"),
        K::InvalidIssuer => JwtError::WrongIssuer {
            expected: key.issuer.clone().unwrap_or_default(),
        },
        K::InvalidAudience => JwtError::WrongAudience {
            expected: key.audience.clone().unwrap_or_default(),
        },
        K::InvalidToken => {
            JwtError::Malformed("the header is invalid (e.g. an unsupported crit)".into())
        }
        K::InvalidAlgorithm | K::InvalidAlgorithmName => {
            JwtError::Malformed("the header's alg is not valid for this key".into())
        }
        K::Base64(_) => JwtError::Malformed("a part is not base64url".into()),
        K::Json(_) | K::Utf8(_) => JwtError::Malformed("a part is not valid JSON".into()),
        other => JwtError::Malformed(format!("{other:?}")),
    }
}

/// Verifies `token` with `key` (registered as `kid`) and reads the identity it carries.
pub fn verify(token: &str, kid: &str, key: &Key, checks: Checks) -> Result<Identity, JwtError> {
    let header = peek(token)?;
    // Only the key's own algorithm: this is what stops alg confusion (an HS256 token "signed"
    // with an RSA key's public PEM) before any cryptography runs.
    if header.alg != key.alg_name {
        return Err(JwtError::AlgorithmMismatch {
            token: header.alg,
            kid: kid.to_string(),
            key: key.alg_name.to_string(),
        });
    }
    let mut validation = Validation::new(key.alg);
    // Times are checked below against the caller's clock; presence and format of exp here.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.leeway = 0;
    let mut required = vec!["exp"];
    match &key.issuer {
        Some(iss) => {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        None => validation.iss = None,
    }
    match &key.audience {
        Some(aud) => {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    let data = jsonwebtoken::decode::<Value>(token, &key.decoding, &validation)
        .map_err(|e| map_library_error(e, key))?;
    let claims = data.claims;
    if !claims.is_object() {
        return Err(JwtError::Malformed(
            "the claims are not a JSON object".into(),
        ));
    }
    let exp = numeric_date(&claims, "exp")?.ok_or(JwtError::MissingExp)?;
    let nbf = numeric_date(&claims, "nbf")?;
    let iat = numeric_date(&claims, "iat")?;
    let leeway = checks.leeway.max(0);
    if checks.now >= exp.saturating_add(leeway) {
        return Err(JwtError::Expired { exp });
    }
    if let Some(nbf) = nbf {
        if checks.now.saturating_add(leeway) < nbf {
            return Err(JwtError::NotYetValid { nbf });
        }
    }
    if let Some(iat) = iat {
        if checks.now.saturating_add(leeway) < iat {
            return Err(JwtError::IssuedInFuture { iat });
        }
    }
    let tenant = match claims.get(checks.tenant_claim) {
        None | Some(Value::Null) => {
            return Err(JwtError::MissingTenant {
                claim: checks.tenant_claim.to_string(),
            })
        }
        Some(Value::String(s)) if plain_text(s) && s.len() <= 64 => s.clone(),
        Some(Value::Number(n)) if n.as_u64().is_some() => n.to_string(),
        Some(_) => {
            return Err(JwtError::BadClaim {
                claim: checks.tenant_claim.to_string(),
                why: "is not a tenant slug, id or uuid",
            })
        }
    };
    Ok(Identity {
        tenant,
        user: text_claim(&claims, "sub", MAX_USER_BYTES)?,
        role: text_claim(&claims, checks.role_claim, MAX_ROLE_BYTES)?,
        jti: text_claim(&claims, "jti", MAX_REQUEST_ID_BYTES)?,
        expires_at: exp,
        issued_at: iat.or(nbf),
    })
}

/// The single-use id of a token with a `jti`: 16 bytes of SHA-256 over the key id and the jti,
/// so equal jti values of different keys (issuers) never collide, and the id has the shape of
/// the signed tokens' ids (one table records both).
pub fn jti_token_id(kid: &str, jti: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"qualityfoundry_tenant jwt\0");
    h.update((kid.len() as u64).to_le_bytes());
    h.update(kid.as_bytes());
    h.update(jti.as_bytes());
    let digest = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

#[cfg(test)]
mod tests;
