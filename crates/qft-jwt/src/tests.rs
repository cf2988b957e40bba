//! Tokens are made here with jsonwebtoken's encoder and the test-only keys in `testdata/`
//! (generated with openssl for these tests; never use them for anything else).

use super::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

const NOW: i64 = 1_800_000_000;
const SECRET: &str = "0123456789abcdef0123456789abcdef";
const SECRET64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn data(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/");
    std::fs::read_to_string(format!("{path}{name}")).unwrap()
}

fn checks() -> Checks<'static> {
    Checks {
        now: NOW,
        leeway: 30,
        tenant_claim: "tenant_id",
        role_claim: "tenant_role",
    }
}

fn claims() -> Value {
    json!({"sub": "alice", "tenant_id": "acme", "tenant_role": "viewer", "exp": NOW + 300, "iat": NOW - 10})
}

fn sign_with(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_string);
    encode(&h, claims, key).unwrap()
}

fn encoding(alg: &str) -> EncodingKey {
    match alg {
        "HS256" | "HS384" => EncodingKey::from_secret(SECRET64.as_bytes()).unwrap(),
        "HS512" => EncodingKey::from_secret(format!("{SECRET64}{SECRET64}").as_bytes()).unwrap(),
        "RS256" | "RS384" | "RS512" | "PS256" => {
            EncodingKey::from_rsa_pem(data("rsa.key").as_bytes()).unwrap()
        }
        "ES256" => EncodingKey::from_ec_pem(data("ec256.key").as_bytes()).unwrap(),
        "ES384" => EncodingKey::from_ec_pem(data("ec384.key").as_bytes()).unwrap(),
        "EdDSA" => EncodingKey::from_ed_pem(data("ed25519.key").as_bytes()).unwrap(),
        _ => unreachable!(),
    }
}

fn public(alg: &str) -> String {
    match alg {
        "HS256" | "HS384" => SECRET64.to_string(),
        "HS512" => format!("{SECRET64}{SECRET64}"),
        "RS256" | "RS384" | "RS512" | "PS256" => data("rsa.pub"),
        "ES256" => data("ec256.pub"),
        "ES384" => data("ec384.pub"),
        "EdDSA" => data("ed25519.pub"),
        _ => unreachable!(),
    }
}

fn key(alg: &str) -> Key {
    Key::parse("k1", alg, &public(alg), None, None).unwrap()
}

#[test]
fn every_algorithm_verifies_its_own_tokens() {
    for alg in ALGORITHMS {
        let token = sign_with(
            algorithm(alg).unwrap(),
            &encoding(alg),
            Some("k1"),
            &claims(),
        );
        let id =
            verify(&token, "k1", &key(alg), checks()).unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        assert_eq!(
            id,
            Identity {
                tenant: "acme".into(),
                user: Some("alice".into()),
                role: Some("viewer".into()),
                jti: None,
                expires_at: NOW + 300,
                issued_at: Some(NOW - 10),
            },
            "{alg}"
        );
    }
}

#[test]
fn a_tampered_payload_or_signature_is_refused() {
    for alg in ["HS256", "RS256", "ES256", "EdDSA"] {
        let token = sign_with(algorithm(alg).unwrap(), &encoding(alg), None, &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let mut other = claims();
        other["tenant_id"] = json!("globex");
        let forged_payload = URL_SAFE_NO_PAD.encode(other.to_string());
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(
            verify(&forged, "k1", &key(alg), checks()),
            Err(JwtError::BadSignature),
            "{alg}"
        );
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[0] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
        assert!(
            verify(&flipped, "k1", &key(alg), checks()).is_err(),
            "{alg}"
        );
    }
}

#[test]
fn another_key_of_the_same_algorithm_is_refused() {
    let other = EncodingKey::from_rsa_pem(data("rsa2.key").as_bytes()).unwrap();
    let token = sign_with(Algorithm::RS256, &other, None, &claims());
    assert_eq!(
        verify(&token, "k1", &key("RS256"), checks()),
        Err(JwtError::BadSignature)
    );
    let token = sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another secret of at least 32 bytes!!").unwrap(),
        None,
        &claims(),
    );
    assert_eq!(
        verify(&token, "k1", &key("HS256"), checks()),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn alg_none_and_algorithm_confusion_are_refused() {
    let body = URL_SAFE_NO_PAD.encode(claims().to_string());
    for alg in ["none", "None", "NONE"] {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "typ": "JWT"}).to_string());
        for sig in ["", "AAAA"] {
            let t = format!("{header}.{body}.{sig}");
            assert_eq!(
                verify(&t, "k1", &key("HS256"), checks()),
                Err(JwtError::NoneAlgorithm)
            );
        }
    }
    // HS256 "signed" with the RSA key's public PEM as the secret, against the RS256 key.
    let pem = public("RS256");
    let confused = sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(pem.as_bytes()).unwrap(),
        None,
        &claims(),
    );
    assert_eq!(
        verify(&confused, "k1", &key("RS256"), checks()),
        Err(JwtError::AlgorithmMismatch {
            token: "HS256".into(),
            kid: "k1".into(),
            key: "RS256".into()
        })
    );
    // Same family, other hash: still only the key's algorithm.
    let t = sign_with(Algorithm::RS512, &encoding("RS512"), None, &claims());
    assert!(matches!(
        verify(&t, "k1", &key("RS256"), checks()),
        Err(JwtError::AlgorithmMismatch { .. })
    ));
    let t = sign_with(Algorithm::HS512, &encoding("HS512"), None, &claims());
    assert!(matches!(
        verify(&t, "k1", &key("HS256"), checks()),
        Err(JwtError::AlgorithmMismatch { .. })
    ));
}

#[test]
fn times_exp_nbf_iat_with_leeway() {
    let k = key("HS256");
    let sign = |c: &Value| sign_with(Algorithm::HS256, &encoding("HS256"), None, c);
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        verify(&sign(&c), "k1", &k, checks()),
        Err(JwtError::MissingExp)
    );
    c["exp"] = json!("tomorrow");
    assert_eq!(
        verify(&sign(&c), "k1", &k, checks()),
        Err(JwtError::MissingExp)
    );
    // Expired beyond the leeway; within it still good.
    c["exp"] = json!(NOW - 31);
    assert_eq!(
        verify(&sign(&c), "k1", &k, checks()),
        Err(JwtError::Expired { exp: NOW - 31 })
    );
    c["exp"] = json!(NOW - 29);
    assert!(verify(&sign(&c), "k1", &k, checks()).is_ok());
    let strict = Checks {
        leeway: 0,
        ..checks()
    };
    c["exp"] = json!(NOW);
    assert_eq!(
        verify(&sign(&c), "k1", &k, strict),
        Err(JwtError::Expired { exp: NOW })
    );
    // nbf in the future beyond the leeway.
    let mut c = claims();
    c["nbf"] = json!(NOW + 31);
    assert_eq!(
        verify(&sign(&c), "k1", &k, checks()),
        Err(JwtError::NotYetValid { nbf: NOW + 31 })
    );
    c["nbf"] = json!(NOW + 29);
    assert!(verify(&sign(&c), "k1", &k, checks()).is_ok());
    // iat in the future.
    let mut c = claims();
    c["iat"] = json!(NOW + 3600);
    assert_eq!(
        verify(&sign(&c), "k1", &k, checks()),
        Err(JwtError::IssuedInFuture { iat: NOW + 3600 })
    );
    c["iat"] = json!(-5.5e300);
    assert_eq!(
        verify(&sign(&c), "k1", &k, checks()),
        Err(JwtError::BadTime("iat"))
    );
    // Fractional NumericDates are fine.
    let mut c = claims();
    c["exp"] = json!((NOW + 10) as f64 + 0.5);
    assert_eq!(
        verify(&sign(&c), "k1", &k, checks()).unwrap().expires_at,
        NOW + 10
    );
}

#[test]
fn issuer_and_audience_when_the_key_has_them() {
    let k = Key::parse(
        "k1",
        "HS256",
        SECRET64,
        Some("https://auth.example"),
        Some("qf-api"),
    )
    .unwrap();
    let sign = |c: &Value| sign_with(Algorithm::HS256, &encoding("HS256"), None, c);
    // The audience is right, the issuer missing (with both missing, jsonwebtoken reports
    // whichever of its required claims it happens to check first).
    let mut c = claims();
    c["aud"] = json!("qf-api");
    assert!(matches!(
        verify(&sign(&c), "k1", &k, checks()),
        Err(JwtError::WrongIssuer { .. })
    ));
    c["iss"] = json!("https://evil.example");
    c["aud"] = json!("qf-api");
    assert!(matches!(
        verify(&sign(&c), "k1", &k, checks()),
        Err(JwtError::WrongIssuer { .. })
    ));
    c["iss"] = json!("https://auth.example");
    assert!(verify(&sign(&c), "k1", &k, checks()).is_ok());
    c["aud"] = json!(["other", "qf-api"]);
    assert!(verify(&sign(&c), "k1", &k, checks()).is_ok());
    c["aud"] = json!(["other"]);
    assert!(matches!(
        verify(&sign(&c), "k1", &k, checks()),
        Err(JwtError::WrongAudience { .. })
    ));
    c.as_object_mut().unwrap().remove("aud");
    assert!(matches!(
        verify(&sign(&c), "k1", &k, checks()),
        Err(JwtError::WrongAudience { .. })
    ));
    c["aud"] = json!(42);
    assert!(matches!(
        verify(&sign(&c), "k1", &k, checks()),
        Err(JwtError::WrongAudience { .. })
    ));
    // A key without them does not look at them.
    assert!(verify(&sign(&c), "k1", &key("HS256"), checks()).is_ok());
}

#[test]
fn identity_claims() {
    let k = key("HS256");
    let sign = |c: &Value| sign_with(Algorithm::HS256, &encoding("HS256"), None, c);
    let mut c = claims();
    c.as_object_mut().unwrap().remove("tenant_id");
    assert_eq!(
        verify(&sign(&c), "k1", &k, checks()),
        Err(JwtError::MissingTenant {
            claim: "tenant_id".into()
        })
    );
    c["org"] = json!(42);
    c["role"] = json!("admin");
    c["jti"] = json!("req-1");
    let custom = Checks {
        tenant_claim: "org",
        role_claim: "role",
        ..checks()
    };
    let id = verify(&sign(&c), "k1", &k, custom).unwrap();
    assert_eq!(
        (id.tenant.as_str(), id.role.as_deref(), id.jti.as_deref()),
        ("42", Some("admin"), Some("req-1"))
    );
    for bad in [
        json!(-1),
        json!(1.5),
        json!(true),
        json!(["acme"]),
        json!(""),
        json!("a\nb"),
    ] {
        c["org"] = bad.clone();
        assert!(
            matches!(
                verify(&sign(&c), "k1", &k, custom),
                Err(JwtError::BadClaim { .. })
            ),
            "{bad}"
        );
    }
    let mut c = claims();
    for (claim, bad) in [
        ("sub", json!(7)),
        ("sub", json!("")),
        ("tenant_role", json!(["a"])),
        ("tenant_role", json!("x".repeat(64))),
        ("jti", json!({})),
    ] {
        let mut d = c.clone();
        d[claim] = bad;
        assert!(
            matches!(
                verify(&sign(&d), "k1", &k, checks()),
                Err(JwtError::BadClaim { .. })
            ),
            "{claim}"
        );
    }
    // No sub, no role: the context carries none.
    c.as_object_mut().unwrap().remove("sub");
    c.as_object_mut().unwrap().remove("tenant_role");
    let id = verify(&sign(&c), "k1", &k, checks()).unwrap();
    assert_eq!((id.user, id.role), (None, None));
}

#[test]
fn malformed_tokens() {
    let k = key("HS256");
    let good = sign_with(Algorithm::HS256, &encoding("HS256"), None, &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let crit =
        URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "crit": ["exp"], "exp": 1}).to_string());
    for bad in [
        String::new(),
        "abc".into(),
        "a.b".into(),
        format!("{good}.x"),
        format!("!!.{}.{}", parts[1], parts[2]),
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode("not json"),
            parts[1],
            parts[2]
        ),
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode("{\"typ\":\"JWT\"}"),
            parts[1],
            parts[2]
        ),
        format!("{crit}.{}.{}", parts[1], parts[2]),
        "x".repeat(MAX_TOKEN_BYTES + 1),
    ] {
        assert!(verify(&bad, "k1", &k, checks()).is_err(), "{bad:.40}");
    }
    // Claims that are not an object.
    let t = sign_with(Algorithm::HS256, &encoding("HS256"), None, &json!([1, 2]));
    assert!(verify(&t, "k1", &k, checks()).is_err());
}

#[test]
fn choosing_the_key() {
    let one = vec!["a".to_string()];
    let two = vec!["a".to_string(), "b".to_string()];
    assert_eq!(choose_key(None, &one), Ok("a"));
    assert_eq!(choose_key(Some("a"), &two), Ok("a"));
    assert_eq!(choose_key(None, &two), Err(JwtError::KidRequired));
    assert_eq!(choose_key(None, &[]), Err(JwtError::NoKeys));
    assert_eq!(
        choose_key(Some("c"), &two),
        Err(JwtError::UnknownKid("c".into()))
    );
    assert_eq!(
        choose_key(Some("c"), &one),
        Err(JwtError::UnknownKid("c".into()))
    );
    let t = sign_with(Algorithm::HS256, &encoding("HS256"), Some("b"), &claims());
    assert_eq!(
        peek(&t).unwrap(),
        Peek {
            alg: "HS256".into(),
            kid: Some("b".into())
        }
    );
}

#[test]
fn keys_in_every_accepted_form() {
    // PKCS#1 RSA public key, JWKs of each kind.
    Key::parse("k", "RS256", &data("rsa.pkcs1.pub"), None, None).unwrap();
    let rsa_jwk = jwk_of("RS256");
    let k = Key::parse("k", "PS256", &rsa_jwk.replace("RS256", "PS256"), None, None).unwrap();
    let t = sign_with(Algorithm::PS256, &encoding("PS256"), None, &claims());
    assert!(verify(&t, "k", &k, checks()).is_ok());
    for alg in ["ES256", "ES384", "EdDSA", "RS256"] {
        let k = Key::parse("k", alg, &jwk_of(alg), None, None)
            .unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        let t = sign_with(algorithm(alg).unwrap(), &encoding(alg), None, &claims());
        assert!(verify(&t, "k", &k, checks()).is_ok(), "{alg}");
    }
    let oct = json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(SECRET64)}).to_string();
    let k = Key::parse("k", "HS256", &oct, None, None).unwrap();
    let t = sign_with(Algorithm::HS256, &encoding("HS256"), None, &claims());
    assert!(verify(&t, "k", &k, checks()).is_ok());
}

/// A public JWK made from the test keys (through jsonwebtoken's own conversion).
fn jwk_of(alg: &str) -> String {
    let jwk = Jwk::from_encoding_key(&encoding(alg), algorithm(alg).unwrap()).unwrap();
    let mut v = serde_json::to_value(jwk).unwrap();
    v.as_object_mut().unwrap().remove("d");
    v.to_string()
}

#[test]
fn bad_keys_are_refused_with_their_reason() {
    type Case = (&'static str, String, fn(&KeyError) -> bool);
    let cases: Vec<Case> = vec![
        ("HS1", SECRET64.into(), |e| {
            matches!(e, KeyError::UnknownAlgorithm(_))
        }),
        ("none", SECRET64.into(), |e| {
            matches!(e, KeyError::UnknownAlgorithm(_))
        }),
        ("hs256", SECRET64.into(), |e| {
            matches!(e, KeyError::UnknownAlgorithm(_))
        }),
        ("HS256", "short".into(), |e| {
            matches!(e, KeyError::WeakSecret { need: 32, .. })
        }),
        ("HS512", SECRET.into(), |e| {
            matches!(e, KeyError::WeakSecret { need: 64, .. })
        }),
        ("HS256", String::new(), |e| {
            matches!(e, KeyError::Malformed(_))
        }),
        ("RS256", data("rsa.key"), |e| {
            matches!(e, KeyError::PrivateKey)
        }),
        ("ES256", data("ec256.key"), |e| {
            matches!(e, KeyError::PrivateKey)
        }),
        ("RS256", data("rsa1024.pub"), |e| {
            matches!(e, KeyError::WeakRsa { bits: 1024 })
        }),
        ("RS256", "not a key".into(), |e| {
            matches!(e, KeyError::Malformed(_))
        }),
        ("RS256", data("ec256.pub"), |e| {
            matches!(e, KeyError::Malformed(_))
        }),
        ("ES256", data("ec384.pub"), |e| {
            matches!(e, KeyError::Mismatch(_))
        }),
        ("ES384", data("ec256.pub"), |e| {
            matches!(e, KeyError::Mismatch(_))
        }),
        ("EdDSA", data("ec256.pub"), |e| {
            matches!(e, KeyError::Malformed(_))
        }),
        ("ES256", data("ed25519.pub"), |e| {
            matches!(e, KeyError::Malformed(_))
        }),
        ("HS256", data("rsa.pub"), |e| {
            matches!(e, KeyError::Mismatch(_))
        }),
        (
            "RS256",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".into(),
            |e| matches!(e, KeyError::Malformed(_)),
        ),
        ("RS256", "{".into(), |e| matches!(e, KeyError::Malformed(_))),
        ("RS256", "[1]".into(), |e| {
            matches!(e, KeyError::Malformed(_))
        }),
        (
            "RS256",
            format!("{{\"keys\": [{}]}}", jwk_of("RS256")),
            |e| matches!(e, KeyError::Malformed(_)),
        ),
        ("RS384", jwk_of("RS256"), |e| {
            matches!(e, KeyError::Mismatch(_))
        }),
        (
            "ES256",
            jwk_of("RS256").replace("\"alg\":\"RS256\",", ""),
            |e| matches!(e, KeyError::Mismatch(_)),
        ),
        (
            "ES384",
            jwk_of("ES256").replace("\"alg\":\"ES256\",", ""),
            |e| matches!(e, KeyError::Mismatch(_)),
        ),
        (
            "RS256",
            jwk_of("RS256").replace("\"kty\"", "\"d\":\"AAAA\",\"kty\""),
            |e| matches!(e, KeyError::PrivateKey),
        ),
        (
            "RS256",
            jwk_of("RS256").replace("\"kty\"", "\"use\":\"enc\",\"kty\""),
            |e| matches!(e, KeyError::Mismatch(_)),
        ),
        (
            "RS256",
            jwk_of("RS256").replace("\"kty\"", "\"kid\":\"other\",\"kty\""),
            |e| matches!(e, KeyError::Mismatch(_)),
        ),
        (
            "HS256",
            json!({"kty": "oct", "k": "c2hvcnQ"}).to_string(),
            |e| matches!(e, KeyError::WeakSecret { .. }),
        ),
        (
            "EdDSA",
            json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}).to_string(),
            |e| matches!(e, KeyError::Malformed(_)),
        ),
        (
            "ES256",
            json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}).to_string(),
            |e| matches!(e, KeyError::Mismatch(_) | KeyError::Malformed(_)),
        ),
    ];
    for (alg, material, expect) in cases {
        match Key::parse("k", alg, &material, None, None) {
            Ok(k) => panic!("{alg} {material:.60}: accepted as {k:?}"),
            Err(e) => {
                assert!(expect(&e), "{alg} {material:.60}: {e:?}");
                assert!(!e.describe().is_empty());
            }
        }
    }
    assert!(matches!(
        Key::parse("", "HS256", SECRET64, None, None),
        Err(KeyError::BadKid(_))
    ));
    assert!(matches!(
        Key::parse("a\tb", "HS256", SECRET64, None, None),
        Err(KeyError::BadKid(_))
    ));
    assert!(matches!(
        Key::parse("k", "HS256", SECRET64, Some(""), None),
        Err(KeyError::BadClaimValue("issuer"))
    ));
    assert!(matches!(
        Key::parse("k", "HS256", SECRET64, None, Some("a\n")),
        Err(KeyError::BadClaimValue("audience"))
    ));
    // The weakest accepted secret is exactly the hash size.
    Key::parse("k", "HS256", SECRET, None, None).unwrap();
}

#[test]
fn jti_ids_depend_on_key_and_jti() {
    assert_eq!(jti_token_id("k", "a"), jti_token_id("k", "a"));
    assert_ne!(jti_token_id("k", "a"), jti_token_id("k", "b"));
    assert_ne!(jti_token_id("k", "a"), jti_token_id("j", "a"));
    assert_ne!(jti_token_id("k\0a", ""), jti_token_id("k", "a\0"));
}

#[test]
fn text_limits() {
    assert_eq!(check_text("alice", 10), Ok(()));
    assert!(check_text("", 10).is_err());
    assert!(check_text("x".repeat(11).as_str(), 10).is_err());
    assert!(check_text("a\u{7}", 10).is_err());
}
