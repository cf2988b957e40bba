//! Signed tenant-context tokens: pure logic, no backend needed.
//!
//! Format: `v2.<key id>.<tenant id>.<issued at>.<expires at>.<token id>.<base64url HMAC-SHA256>`
//! (times in unix seconds, the token id 32 lower-case hex digits of randomness); the MAC covers
//! everything before the last dot. The fields are readable on purpose — a token is a capability,
//! not a secret; what makes it unforgeable is the key, which only the registry owner can read, and
//! what makes it single-use is the token id, which the database records on first use.
//! 0.1.0's `v1` tokens had no token id: they are refused (they could be replayed).
//!
//! A token that names the end user and tenant role (`sign_context(user_id => ..., tenant_role =>
//! ...)`) is `v3`: the same fields, then `<base64url user>.<base64url role>` (empty when not
//! given), then the MAC over all of it. A token without them stays `v2`, so one identity has one
//! spelling.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub key_id: i32,
    pub tenant_id: i64,
    pub issued_at: i64,
    pub expires_at: i64,
    /// 16 random bytes, written as 32 hex digits (a uuid's text form without dashes).
    pub token_id: [u8; 16],
    /// The end user and tenant role the context carries (v3 tokens).
    pub user: Option<String>,
    pub role: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    OldFormat,
    BadSignature,
    Expired { expired_at: i64 },
    IssuedBeforeStart { issued_at: i64 },
}

impl TokenError {
    pub fn describe(&self) -> String {
        match self {
            TokenError::Malformed => {
                "the token is not of the form v2.<key>.<tenant>.<issued>.<expiry>.<id>.<mac> \
                 (or v3 with the user and role before the mac)"
                    .into()
            }
            TokenError::OldFormat => {
                "v1 tokens (qualityfoundry_tenant 0.1.0) are no longer accepted: they could be replayed".into()
            }
            TokenError::BadSignature => {
                "the token's signature does not match (tampered, or signed with another key)".into()
            }
            TokenError::Expired { expired_at } => {
                format!("the token expired at unix time {expired_at}")
            }
            TokenError::IssuedBeforeStart { issued_at } => format!(
                "the token was issued at unix time {issued_at}, before the server last started \
                 (tokens used before a restart are not remembered across it)"
            ),
        }
    }
}

pub fn token_id_hex(id: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(32);
    for b in id {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

fn parse_hex16(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn part(v: Option<&str>) -> String {
    v.map(|v| URL_SAFE_NO_PAD.encode(v)).unwrap_or_default()
}

fn unpart(v: &str) -> Result<Option<String>, TokenError> {
    if v.is_empty() {
        return Ok(None);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(v)
        .map_err(|_| TokenError::Malformed)?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| TokenError::Malformed)
}

/// The signed text. On every `set_tenant_signed`: written into one buffer, no intermediate strings.
fn payload(claims: &Claims) -> String {
    use std::fmt::Write;
    let v3 = claims.user.is_some() || claims.role.is_some();
    let mut out = String::with_capacity(96);
    out.push_str(if v3 { "v3." } else { "v2." });
    write!(
        out,
        "{}.{}.{}.{}.",
        claims.key_id, claims.tenant_id, claims.issued_at, claims.expires_at
    )
    .expect("writing to a String cannot fail");
    out.push_str(&token_id_hex(&claims.token_id));
    if v3 {
        for v in [claims.user.as_deref(), claims.role.as_deref()] {
            out.push('.');
            out.push_str(&part(v));
        }
    }
    out
}

pub fn sign(claims: &Claims, key: &[u8]) -> String {
    let payload = payload(claims);
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(payload.as_bytes());
    let tag = mac.finalize().into_bytes();
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// A token's text before its MAC (all of it up to the last dot).
fn signed_text(token: &str) -> &str {
    token.rsplit_once('.').map_or("", |(text, _)| text)
}

/// Reads the claims without trusting them: the caller needs the key id to find the key.
pub fn parse(token: &str) -> Result<(Claims, Vec<u8>), TokenError> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.first() == Some(&"v1") {
        return Err(TokenError::OldFormat);
    }
    let fields = match (parts.first(), parts.len()) {
        (Some(&"v2"), 7) => 6,
        (Some(&"v3"), 9) => 8,
        _ => return Err(TokenError::Malformed),
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !parts[1..5].iter().all(|p| digits(p)) {
        return Err(TokenError::Malformed);
    }
    let claims = Claims {
        key_id: parts[1].parse().map_err(|_| TokenError::Malformed)?,
        tenant_id: parts[2].parse().map_err(|_| TokenError::Malformed)?,
        issued_at: parts[3].parse().map_err(|_| TokenError::Malformed)?,
        expires_at: parts[4].parse().map_err(|_| TokenError::Malformed)?,
        token_id: parse_hex16(parts[5]).ok_or(TokenError::Malformed)?,
        user: if fields == 8 { unpart(parts[6])? } else { None },
        role: if fields == 8 { unpart(parts[7])? } else { None },
    };
    // Re-rendering must give back the same text, so "007" and "7" are not two tokens (and a v3
    // token without a user or role is not a second spelling of a v2 one).
    if payload(&claims) != signed_text(token) {
        return Err(TokenError::Malformed);
    }
    let tag = URL_SAFE_NO_PAD
        .decode(parts[fields])
        .map_err(|_| TokenError::Malformed)?;
    Ok((claims, tag))
}

/// Verifies the MAC in constant time, then the expiry, then that the token was issued after
/// `not_before` (the server's start: what was used before it is not remembered).
pub fn verify(
    token: &str,
    key: &[u8],
    now_unix: i64,
    not_before: i64,
) -> Result<Claims, TokenError> {
    let (claims, tag) = parse(token)?;
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    // parse() checked that this text is exactly the claims' canonical rendering.
    mac.update(signed_text(token).as_bytes());
    mac.verify_slice(&tag)
        .map_err(|_| TokenError::BadSignature)?;
    if claims.expires_at <= now_unix {
        return Err(TokenError::Expired {
            expired_at: claims.expires_at,
        });
    }
    if claims.issued_at < not_before {
        return Err(TokenError::IssuedBeforeStart {
            issued_at: claims.issued_at,
        });
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OTHER: &[u8] = b"fedcba9876543210fedcba9876543210";
    const ID: [u8; 16] = [0xab; 16];

    fn claims() -> Claims {
        Claims {
            key_id: 3,
            tenant_id: 42,
            issued_at: 500,
            expires_at: 1_000,
            token_id: ID,
            user: None,
            role: None,
        }
    }

    #[test]
    fn v3_tokens_carry_user_and_role() {
        for (user, role) in [
            (Some("alice"), Some("viewer")),
            (Some("b.o.b"), None),
            (None, Some("admin")),
        ] {
            let c = Claims {
                user: user.map(str::to_string),
                role: role.map(str::to_string),
                ..claims()
            };
            let t = sign(&c, KEY);
            assert!(t.starts_with("v3.3.42.500.1000."), "{t}");
            assert_eq!(t.split('.').count(), 9);
            assert_eq!(verify(&t, KEY, 999, 0), Ok(c.clone()));
            // The user and role are covered by the MAC.
            let parts: Vec<&str> = t.split('.').collect();
            let mut forged = parts.clone();
            let escalated = URL_SAFE_NO_PAD.encode("owner");
            forged[7] = &escalated;
            assert_eq!(
                verify(&forged.join("."), KEY, 999, 0),
                Err(TokenError::BadSignature)
            );
            // A v2 token cannot be relabelled v3 (or back).
            let relabelled = t.replacen("v3.", "v2.", 1);
            assert_eq!(parse(&relabelled).map(|_| ()), Err(TokenError::Malformed));
        }
        let v2 = sign(&claims(), KEY);
        let padded = v2.replacen("v2.", "v3.", 1);
        let parts: Vec<&str> = padded.split('.').collect();
        // v3 with neither a user nor a role is a second spelling of the v2 token: refused.
        let empty_v3 = format!("{}...{}", parts[..6].join("."), parts[6]);
        assert_eq!(empty_v3.split('.').count(), 9);
        assert_eq!(parse(&empty_v3).map(|_| ()), Err(TokenError::Malformed));
        let bad = "v3.3.42.500.1000.abababababababababababababababab.!!.x.abc";
        assert_eq!(parse(bad).map(|_| ()), Err(TokenError::Malformed), "{bad}");
    }

    #[test]
    fn round_trip() {
        let t = sign(&claims(), KEY);
        assert!(
            t.starts_with(&format!("v2.3.42.500.1000.{}.", "ab".repeat(16))),
            "{t}"
        );
        assert_eq!(verify(&t, KEY, 999, 0), Ok(claims()));
    }

    #[test]
    fn expired_at_and_after_expiry() {
        let t = sign(&claims(), KEY);
        assert_eq!(
            verify(&t, KEY, 1_000, 0),
            Err(TokenError::Expired { expired_at: 1_000 })
        );
        assert_eq!(
            verify(&t, KEY, 5_000, 0),
            Err(TokenError::Expired { expired_at: 1_000 })
        );
    }

    #[test]
    fn issued_before_the_server_started() {
        let t = sign(&claims(), KEY);
        assert_eq!(verify(&t, KEY, 600, 500), Ok(claims()));
        assert_eq!(
            verify(&t, KEY, 600, 501),
            Err(TokenError::IssuedBeforeStart { issued_at: 500 })
        );
    }

    #[test]
    fn other_key_is_rejected() {
        let t = sign(&claims(), OTHER);
        assert_eq!(verify(&t, KEY, 0, 0), Err(TokenError::BadSignature));
    }

    #[test]
    fn tampered_fields_are_rejected() {
        let t = sign(&claims(), KEY);
        for (from, to) in [
            (".42.", ".43."),
            (".1000.", ".9999."),
            (".500.", ".900."),
            ("v2.3.", "v2.4."),
            (".abab", ".abac"),
        ] {
            let forged = t.replacen(from, to, 1);
            assert_ne!(forged, t);
            assert_eq!(
                verify(&forged, KEY, 0, 0),
                Err(TokenError::BadSignature),
                "{forged}"
            );
        }
        let mut bytes = t.into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(bytes).unwrap();
        assert!(verify(&flipped, KEY, 0, 0).is_err());
    }

    #[test]
    fn malformed_and_old_tokens() {
        let good = sign(&claims(), KEY);
        let leading_zero = good.replacen(".42.", ".042.", 1);
        let upper_id = good.replacen(&"ab".repeat(16), &"AB".repeat(16), 1);
        let short_id = good.replacen(&"ab".repeat(16), &"ab".repeat(15), 1);
        for bad in [
            "",
            "v2",
            "v3.3.42.500.1000.abababababababababababababababab.abc",
            "v2.3.42.500.1000.abc",
            "v2.x.42.500.1000.abababababababababababababababab.abc",
            "v2.3.-42.500.1000.abababababababababababababababab.abc",
            "v2.3.42.500.1000.abababababababababababababababab.!!!",
            leading_zero.as_str(),
            upper_id.as_str(),
            short_id.as_str(),
        ] {
            assert_eq!(
                parse(bad).map(|_| ()),
                Err(TokenError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse("v1.3.42.1000.abc").map(|_| ()),
            Err(TokenError::OldFormat)
        );
    }

    #[test]
    fn token_ids_render_as_uuid_hex() {
        let mut id = [0u8; 16];
        id[15] = 0x0f;
        assert_eq!(token_id_hex(&id), format!("{}0f", "0".repeat(30)));
        assert_eq!(parse_hex16(&token_id_hex(&id)), Some(id));
    }
}
