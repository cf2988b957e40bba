//! Signed tenant-context tokens: pure logic, no backend needed.
//!
//! Format: `v1.<key id>.<tenant id>.<expiry, unix seconds>.<base64url HMAC-SHA256>`; the MAC covers
//! everything before the last dot. The fields are readable on purpose — a token is a capability,
//! not a secret; what makes it unforgeable is the key, which only the registry owner can read.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub key_id: i32,
    pub tenant_id: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    Expired { expired_at: i64 },
}

impl TokenError {
    pub fn describe(&self) -> String {
        match self {
            TokenError::Malformed => {
                "the token is not of the form v1.<key>.<tenant>.<expiry>.<mac>".into()
            }
            TokenError::BadSignature => {
                "the token's signature does not match (tampered, or signed with another key)".into()
            }
            TokenError::Expired { expired_at } => {
                format!("the token expired at unix time {expired_at}")
            }
        }
    }
}

fn payload(claims: &Claims) -> String {
    format!(
        "v1.{}.{}.{}",
        claims.key_id, claims.tenant_id, claims.expires_at
    )
}

pub fn sign(claims: &Claims, key: &[u8]) -> String {
    let payload = payload(claims);
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(payload.as_bytes());
    let tag = mac.finalize().into_bytes();
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Reads the claims without trusting them: the caller needs the key id to find the key.
pub fn parse(token: &str) -> Result<(Claims, Vec<u8>), TokenError> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 5 || parts[0] != "v1" {
        return Err(TokenError::Malformed);
    }
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(parts[1]) || !digits(parts[2]) || !digits(parts[3]) {
        return Err(TokenError::Malformed);
    }
    let claims = Claims {
        key_id: parts[1].parse().map_err(|_| TokenError::Malformed)?,
        tenant_id: parts[2].parse().map_err(|_| TokenError::Malformed)?,
        expires_at: parts[3].parse().map_err(|_| TokenError::Malformed)?,
    };
    // Re-rendering must give back the same text, so "007" and "7" are not two tokens.
    if payload(&claims) != parts[..4].join(".") {
        return Err(TokenError::Malformed);
    }
    let tag = URL_SAFE_NO_PAD
        .decode(parts[4])
        .map_err(|_| TokenError::Malformed)?;
    Ok((claims, tag))
}

/// Verifies the MAC in constant time, then the expiry.
pub fn verify(token: &str, key: &[u8], now_unix: i64) -> Result<Claims, TokenError> {
    let (claims, tag) = parse(token)?;
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(payload(&claims).as_bytes());
    mac.verify_slice(&tag)
        .map_err(|_| TokenError::BadSignature)?;
    if claims.expires_at <= now_unix {
        return Err(TokenError::Expired {
            expired_at: claims.expires_at,
        });
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OTHER: &[u8] = b"fedcba9876543210fedcba9876543210";

    fn claims() -> Claims {
        Claims {
            key_id: 3,
            tenant_id: 42,
            expires_at: 1_000,
        }
    }

    #[test]
    fn round_trip() {
        let t = sign(&claims(), KEY);
        assert!(t.starts_with("v1.3.42.1000."));
        assert_eq!(verify(&t, KEY, 999), Ok(claims()));
    }

    #[test]
    fn expired_at_and_after_expiry() {
        let t = sign(&claims(), KEY);
        assert_eq!(
            verify(&t, KEY, 1_000),
            Err(TokenError::Expired { expired_at: 1_000 })
        );
        assert_eq!(
            verify(&t, KEY, 5_000),
            Err(TokenError::Expired { expired_at: 1_000 })
        );
    }

    #[test]
    fn other_key_is_rejected() {
        let t = sign(&claims(), OTHER);
        assert_eq!(verify(&t, KEY, 0), Err(TokenError::BadSignature));
    }

    #[test]
    fn tampered_fields_are_rejected() {
        let t = sign(&claims(), KEY);
        for (from, to) in [(".42.", ".43."), (".1000.", ".9999."), ("v1.3.", "v1.4.")] {
            let forged = t.replacen(from, to, 1);
            assert_eq!(
                verify(&forged, KEY, 0),
                Err(TokenError::BadSignature),
                "{forged}"
            );
        }
        let mut bytes = t.into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(bytes).unwrap();
        assert!(verify(&flipped, KEY, 0).is_err());
    }

    #[test]
    fn malformed_tokens() {
        let good = sign(&claims(), KEY);
        let leading_zero = good.replacen(".42.", ".042.", 1);
        for bad in [
            "",
            "v1",
            "v2.3.42.1000.abc",
            "v1.3.42.1000",
            "v1.x.42.1000.abc",
            "v1.3.-42.1000.abc",
            "v1.3.42.1000.!!!",
            leading_zero.as_str(),
        ] {
            assert_eq!(
                parse(bad).map(|_| ()),
                Err(TokenError::Malformed),
                "{bad:?}"
            );
        }
    }
}
