//! Identity inside the tenant (issue 15, stage A): the application's own JWT as the context, the
//! end user and tenant role it carries, memberships, uuid tenant keys, audit rows that name people,
//! and cross-tenant mode audited statement by statement. JWTs are made here with jsonwebtoken and
//! the test-only keys of `crates/qft-jwt/testdata/` (never use them for anything else); every
//! refusal is checked as the NOSUPERUSER application role, with its context compared before and
//! after.

use qft_integration_tests::postgres::Client;
use qft_integration_tests::*;
use serde_json::{json, Value};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

const SECRET: &str = "an HS256 secret of at least thirty-two bytes, for tests only";
const SECRET64: &str =
    "an HS512 secret of at least sixty-four bytes, for tests only, no more and no less than that";

fn testdata(name: &str) -> String {
    std::fs::read_to_string(workspace_root().join("crates/qft-jwt/testdata").join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every algorithm, registered under its own name as kid: (kid/alg, public key, private key).
fn keys() -> Vec<(&'static str, String, EncodingKey)> {
    let rsa = || EncodingKey::from_rsa_pem(testdata("rsa.key").as_bytes()).unwrap();
    vec![
        (
            "HS256",
            SECRET.into(),
            EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        ),
        (
            "HS384",
            SECRET64.into(),
            EncodingKey::from_secret(SECRET64.as_bytes()).unwrap(),
        ),
        (
            "HS512",
            SECRET64.into(),
            EncodingKey::from_secret(SECRET64.as_bytes()).unwrap(),
        ),
        ("RS256", testdata("rsa.pub"), rsa()),
        ("RS384", testdata("rsa.pub"), rsa()),
        ("RS512", testdata("rsa.pkcs1.pub"), rsa()),
        ("PS256", testdata("rsa.pub"), rsa()),
        (
            "ES256",
            testdata("ec256.pub"),
            EncodingKey::from_ec_pem(testdata("ec256.key").as_bytes()).unwrap(),
        ),
        (
            "ES384",
            testdata("ec384.pub"),
            EncodingKey::from_ec_pem(testdata("ec384.key").as_bytes()).unwrap(),
        ),
        (
            "EdDSA",
            testdata("ed25519.pub"),
            EncodingKey::from_ed_pem(testdata("ed25519.key").as_bytes()).unwrap(),
        ),
    ]
}

fn alg(name: &str) -> Algorithm {
    name.parse().unwrap()
}

fn sign(alg_name: &str, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut h = Header::new(alg(alg_name));
    h.kid = kid.map(str::to_string);
    encode(&h, claims, key).unwrap()
}

fn hs(claims: &Value) -> String {
    sign(
        "HS256",
        Some("HS256"),
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        claims,
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(tenant: &str, user: &str, role: &str) -> Value {
    // iat: now, not earlier: a single-use (jti) token issued before the database was created is
    // refused, like one issued before a crash.
    json!({"sub": user, "tenant_id": tenant, "tenant_role": role, "iat": now(), "exp": now() + 300})
}

/// The fixture's database with every key registered by the admin.
fn jwt_db(label: &str) -> TestDb {
    let db = TestDb::new(label).with_projects();
    let mut admin = db.connect("admin");
    for (kid, public, _) in keys() {
        admin
            .execute("SELECT tenant.add_jwt_key($1, $1, $2)", &[&kid, &public])
            .unwrap_or_else(|e| panic!("{kid}: {e}"));
    }
    db
}

/// (tenant id, user, role) as the getters say.
fn context(c: &mut Client) -> (Option<i64>, Option<String>, Option<String>) {
    let r = c
        .query_one(
            "SELECT tenant.current_tenant_id(), tenant.current_user_id(), tenant.current_tenant_role()",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

fn in_ctx(tenant: i64, user: &str, role: &str) -> (Option<i64>, Option<String>, Option<String>) {
    (Some(tenant), Some(user.into()), Some(role.into()))
}

const NONE: (Option<i64>, Option<String>, Option<String>) = (None, None, None);

fn set_jwt(c: &mut Client, token: &str) -> Result<i64, qft_integration_tests::postgres::Error> {
    c.query_one("SELECT tenant.set_tenant_jwt($1)", &[&token])
        .map(|r| r.get(0))
}

#[test]
fn every_algorithm_enters_its_tenant_with_user_and_role() {
    let db = jwt_db("jwt_algs");
    let mut app = db.connect("app");
    let mut su = db.superuser();
    let acme_uuid: String = one(
        &mut su,
        "SELECT uuid::text FROM tenant.tenants WHERE slug = 'acme'",
    );
    for (kid, _, private) in keys() {
        let token = sign(kid, Some(kid), &private, &claims("acme", "alice", "viewer"));
        app.batch_execute("BEGIN").unwrap();
        let entered: i64 = app
            .query_one(
                "SELECT tenant.set_tenant_jwt($1, is_local => true)",
                &[&token],
            )
            .unwrap_or_else(|e| panic!("{kid}: {e}"))
            .get(0);
        assert_eq!(entered, 1, "{kid}");
        assert_eq!(visible(&mut app), ACME, "{kid}");
        assert_eq!(context(&mut app), in_ctx(1, "alice", "viewer"), "{kid}");
        assert_eq!(
            one::<String>(&mut app, "SELECT tenant.current_tenant_uuid()::text"),
            acme_uuid
        );
        app.batch_execute("COMMIT").unwrap();
        assert_eq!(context(&mut app), NONE, "{kid}: local ends with COMMIT");
        assert_eq!(visible(&mut app), vec![]);
    }
    // The only key is used for a token without kid; with several keys a kid is required.
    let no_kid = sign(
        "HS256",
        None,
        &keys()[0].2,
        &claims("acme", "alice", "viewer"),
    );
    let (code, msg) = refusal(set_jwt(&mut app, &no_kid));
    assert_eq!(code, "42501");
    assert!(msg.contains("no kid"), "{msg}");
    let only = TestDb::new("jwt_only").with_projects();
    only.connect("admin")
        .execute("SELECT tenant.add_jwt_key('main', 'HS256', $1)", &[&SECRET])
        .unwrap();
    let mut app = only.connect("app");
    assert_eq!(set_jwt(&mut app, &no_kid).unwrap(), 1);
    assert_eq!(context(&mut app), in_ctx(1, "alice", "viewer"));
}

#[track_caller]
fn refusal<T: std::fmt::Debug>(
    r: Result<T, qft_integration_tests::postgres::Error>,
) -> (String, String) {
    let e = r.expect_err("expected an error");
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    (sqlstate(&e), msg)
}

#[test]
fn bad_tokens_are_refused_with_the_context_unchanged() {
    let db = jwt_db("jwt_bad");
    let mut admin = db.connect("admin");
    admin
        .execute(
            "SELECT tenant.add_jwt_key('strict', 'HS256', $1, issuer => 'https://auth.example', audience => 'qf-api')",
            &[&SECRET],
        )
        .unwrap();
    admin
        .batch_execute(
            "SELECT tenant.create_tenant('sleepy'); SELECT tenant.suspend_tenant('sleepy')",
        )
        .unwrap();
    let mut app = db.connect("app");
    // The application is in globex as bob.
    set_jwt(&mut app, &hs(&claims("globex", "bob", "admin"))).unwrap();
    let before = in_ctx(2, "bob", "admin");
    assert_eq!(context(&mut app), before);

    let keys = keys();
    let private = |kid: &str| &keys.iter().find(|k| k.0 == kid).unwrap().2;
    let good = claims("acme", "alice", "viewer");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        c
    };
    let rs = sign("RS256", Some("RS256"), private("RS256"), &good);
    let parts: Vec<&str> = rs.split('.').collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut other = good.clone();
    other["tenant_id"] = json!("globex");
    let tampered_payload = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(other.to_string()),
        parts[2]
    );
    let mut sig = b64.decode(parts[2]).unwrap();
    sig[10] ^= 0x40;
    let tampered_sig = format!("{}.{}.{}", parts[0], parts[1], b64.encode(&sig));
    let other_rsa = EncodingKey::from_rsa_pem(testdata("rsa2.key").as_bytes()).unwrap();
    let none_header = b64.encode(json!({"alg": "none", "kid": "HS256"}).to_string());
    let alg_none = format!("{none_header}.{}.", b64.encode(good.to_string()));
    // HS256 "signed" with the RS256 key's public PEM as the secret, naming the RS256 key.
    let confusion = sign(
        "HS256",
        Some("RS256"),
        &EncodingKey::from_secret(testdata("rsa.pub").as_bytes()).unwrap(),
        &good,
    );
    let strict = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        c["iss"] = json!("https://auth.example");
        c["aud"] = json!("qf-api");
        f(&mut c);
        sign(
            "HS256",
            Some("strict"),
            &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
            &c,
        )
    };
    // The strict key itself works with the right iss and aud (so the cases below fail for their reason).
    let mut probe = db.connect("app2");
    assert_eq!(set_jwt(&mut probe, &strict(&|_| {})).unwrap(), 1);
    let cases: Vec<(&str, String, &str)> = vec![
        ("tampered signature", tampered_sig, "signature"),
        ("tampered payload", tampered_payload, "signature"),
        (
            "wrong key",
            sign("RS256", Some("RS256"), &other_rsa, &good),
            "signature",
        ),
        ("alg none", alg_none, "unsigned"),
        ("HS/RS confusion", confusion, "registered for RS256 only"),
        (
            "expired",
            hs(&with(&|c| c["exp"] = json!(now() - 120))),
            "expired",
        ),
        (
            "no exp",
            hs(&with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            })),
            "exp",
        ),
        (
            "not yet valid",
            hs(&with(&|c| c["nbf"] = json!(now() + 600))),
            "not valid before",
        ),
        (
            "issued in the future",
            hs(&with(&|c| c["iat"] = json!(now() + 600))),
            "in the future",
        ),
        (
            "wrong issuer",
            strict(&|c| c["iss"] = json!("https://evil.example")),
            "iss",
        ),
        (
            "no issuer",
            strict(&|c| {
                c.as_object_mut().unwrap().remove("iss");
            }),
            "iss",
        ),
        (
            "wrong audience",
            strict(&|c| c["aud"] = json!("other-api")),
            "aud",
        ),
        (
            "missing tenant claim",
            hs(&with(&|c| {
                c.as_object_mut().unwrap().remove("tenant_id");
            })),
            "tenant_id",
        ),
        (
            "unknown tenant",
            hs(&with(&|c| c["tenant_id"] = json!("nope"))),
            "does not exist",
        ),
        (
            "unknown tenant id",
            hs(&with(&|c| c["tenant_id"] = json!(999))),
            "does not exist",
        ),
        (
            "suspended tenant",
            hs(&with(&|c| c["tenant_id"] = json!("sleepy"))),
            "suspended",
        ),
        (
            "unknown kid",
            sign("HS256", Some("nope"), private("HS256"), &good),
            "kid",
        ),
        ("garbage", "not.a.jwt".into(), "compact JWS"),
        ("empty", String::new(), "compact JWS"),
    ];
    for (label, token, expect) in cases {
        let (code, msg) = refusal(set_jwt(&mut app, &token));
        assert_eq!(code, "42501", "{label}: {msg}");
        assert!(msg.contains(expect), "{label}: {msg}");
        assert_eq!(context(&mut app), before, "{label}");
        assert_eq!(visible(&mut app), GLOBEX, "{label}");
    }
    // NULL token, NULL is_local.
    expect_sqlstate(
        app.query_one("SELECT tenant.set_tenant_jwt(NULL)", &[]),
        "42501",
    );
    let fresh = hs(&good);
    expect_sqlstate(
        app.query_one("SELECT tenant.set_tenant_jwt($1, NULL)", &[&fresh]),
        "22004",
    );
    assert_eq!(context(&mut app), before);
    // Only tenant_user members may call it at all.
    let mut nobody = db.connect("nobody");
    expect_sqlstate(set_jwt(&mut nobody, &fresh), "42501");
    assert_eq!(context(&mut nobody), NONE);
    assert_eq!(db.all_projects().len(), 6);
}

#[test]
fn a_bound_role_cannot_use_another_tenants_jwt() {
    let db = jwt_db("jwt_bound");
    let mut su = db.superuser();
    su.batch_execute(&format!("GRANT tenant_user TO {}", db.role("bi")))
        .unwrap();
    db.connect("admin")
        .batch_execute(&format!(
            "SELECT tenant.bind_role('{}', 'globex')",
            db.role("bi")
        ))
        .unwrap();
    let mut bi = db.connect("bi");
    assert_eq!(visible(&mut bi), GLOBEX);
    let (code, msg) = refusal(set_jwt(&mut bi, &hs(&claims("acme", "alice", "admin"))));
    assert_eq!(code, "42501");
    assert!(msg.contains("bound"), "{msg}");
    assert_eq!(visible(&mut bi), GLOBEX);
    assert_eq!(context(&mut bi), (Some(2), None, None));
    // Its own tenant's JWT: still globex, now with the user and role.
    assert_eq!(
        set_jwt(&mut bi, &hs(&claims("globex", "gina", "viewer"))).unwrap(),
        2
    );
    assert_eq!(context(&mut bi), in_ctx(2, "gina", "viewer"));
    // A plain set_tenant of its tenant carries no user.
    bi.batch_execute("SELECT tenant.set_tenant('globex')")
        .unwrap();
    assert_eq!(context(&mut bi), (Some(2), None, None));
    assert_eq!(db.all_projects().len(), 6);
}

#[test]
fn a_jti_is_single_use_across_sessions_and_becomes_the_request_id() {
    let db = jwt_db("jwt_jti");
    let mut c = claims("acme", "alice", "viewer");
    c["jti"] = json!("req-7f3a");
    let once = hs(&c);
    let mut app = db.connect("app");
    app.batch_execute("BEGIN").unwrap();
    app.query_one("SELECT tenant.set_tenant_jwt($1, true)", &[&once])
        .unwrap();
    assert_eq!(
        one::<Option<String>>(
            &mut app,
            "SELECT current_setting('qualityfoundry_tenant.request_id')"
        ),
        Some("req-7f3a".into())
    );
    app.batch_execute("COMMIT").unwrap();
    // A second session (another tenant's login that saw the token) and this one again: refused.
    let mut other = db.connect("app2");
    set_jwt(&mut other, &hs(&claims("globex", "gus", "user"))).unwrap();
    let (code, msg) = refusal(set_jwt(&mut other, &once));
    assert_eq!(code, "42501");
    assert!(msg.contains("already been used"), "{msg}");
    assert_eq!(context(&mut other), in_ctx(2, "gus", "user"));
    expect_sqlstate(set_jwt(&mut app, &once), "42501");
    assert_eq!(context(&mut app), NONE);
    // A jti needs an iat (so a restart cannot reopen it).
    let mut c = claims("acme", "alice", "viewer");
    c["jti"] = json!("req-no-iat");
    c.as_object_mut().unwrap().remove("iat");
    let (code, msg) = refusal(set_jwt(&mut app, &hs(&c)));
    assert_eq!(code, "42501");
    assert!(msg.contains("iat"), "{msg}");
    // Without a jti a JWT is a bearer token for its lifetime (the application's access token).
    let reusable = hs(&claims("acme", "alice", "viewer"));
    assert_eq!(set_jwt(&mut app, &reusable).unwrap(), 1);
    assert_eq!(set_jwt(&mut other, &reusable).unwrap(), 1);
}

#[test]
fn require_signed_context_is_satisfied_by_a_jwt_and_the_scope_rule_applies() {
    let db = jwt_db("jwt_rules");
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "SELECT tenant.set_role_rules('{}', require_signed_context => true); \
         SELECT tenant.set_role_rules('{}', context_scope => 'transaction')",
        db.role("app"),
        db.role("app2")
    ))
    .unwrap();
    let mut app = db.connect("app");
    expect_sqlstate(
        app.batch_execute("SELECT tenant.set_tenant('acme')"),
        "42501",
    );
    assert_eq!(
        set_jwt(&mut app, &hs(&claims("acme", "alice", "viewer"))).unwrap(),
        1
    );
    assert_eq!(visible(&mut app), ACME);
    let mut app2 = db.connect("app2");
    set_jwt(&mut app2, &hs(&claims("globex", "gus", "user"))).unwrap();
    assert_eq!(
        context(&mut app2),
        NONE,
        "session scope is local under the rule"
    );
    app2.batch_execute("BEGIN").unwrap();
    set_jwt(&mut app2, &hs(&claims("globex", "gus", "user"))).unwrap();
    assert_eq!(context(&mut app2), in_ctx(2, "gus", "user"));
    assert_eq!(visible(&mut app2), GLOBEX);
    app2.batch_execute("COMMIT").unwrap();
    assert_eq!(context(&mut app2), NONE);
}

#[test]
fn the_tenant_claim_takes_a_slug_an_id_or_a_uuid_and_the_claim_names_are_settings() {
    let db = jwt_db("jwt_claims");
    let mut su = db.superuser();
    let uuid: String = one(
        &mut su,
        "SELECT uuid::text FROM tenant.tenants WHERE slug = 'globex'",
    );
    let mut app = db.connect("app");
    for tenant in [
        json!("globex"),
        json!("2"),
        json!(2),
        json!(uuid),
        json!(uuid.to_uppercase()),
    ] {
        let mut c = claims("x", "gus", "user");
        c["tenant_id"] = tenant.clone();
        assert_eq!(set_jwt(&mut app, &hs(&c)).unwrap(), 2, "{tenant}");
    }
    // Other claim names, set by a superuser for the role.
    su.batch_execute(&format!(
        "ALTER ROLE {0} IN DATABASE {1} SET qualityfoundry_tenant.jwt_tenant_claim = 'org'; \
         ALTER ROLE {0} IN DATABASE {1} SET qualityfoundry_tenant.jwt_role_claim = 'https://qf/role'",
        db.role("app2"),
        db.name
    ))
    .unwrap();
    let mut app2 = db.connect("app2");
    let mut c = claims("globex", "gus", "user");
    let (code, msg) = refusal(set_jwt(&mut app2, &hs(&c)));
    assert_eq!(code, "42501");
    assert!(msg.contains("\"org\""), "{msg}");
    c["org"] = json!("acme");
    c["https://qf/role"] = json!("auditor");
    assert_eq!(set_jwt(&mut app2, &hs(&c)).unwrap(), 1);
    assert_eq!(context(&mut app2), in_ctx(1, "gus", "auditor"));
    // The settings are superuser-only: the application cannot point them at another claim.
    for sql in [
        "SET qualityfoundry_tenant.jwt_tenant_claim = 'sub'",
        "SET qualityfoundry_tenant.jwt_role_claim = 'sub'",
        "SET qualityfoundry_tenant.jwt_leeway = 300",
        "SET qualityfoundry_tenant.identity = ''",
        "SET qualityfoundry_tenant.request_id = 'x'",
        "SET qualityfoundry_tenant.require_membership = off",
    ] {
        expect_sqlstate(app2.batch_execute(sql), "42501");
    }
    assert_eq!(context(&mut app2), in_ctx(1, "gus", "auditor"));
    su.batch_execute(&format!("ALTER ROLE {} RESET ALL", db.role("app2")))
        .unwrap();
    // Leeway: a token expired 20 s ago passes the default 30 s, not 0.
    let mut c = claims("acme", "alice", "viewer");
    c["exp"] = json!(now() - 20);
    let late = hs(&c);
    assert_eq!(set_jwt(&mut app, &late).unwrap(), 1);
    su.batch_execute(&format!(
        "ALTER ROLE {} IN DATABASE {} SET qualityfoundry_tenant.jwt_leeway = 0",
        db.role("app"),
        db.name
    ))
    .unwrap();
    let mut strict = db.connect("app");
    expect_sqlstate(set_jwt(&mut strict, &late), "42501");
    assert_eq!(context(&mut strict), NONE);
}

#[test]
fn identity_follows_every_setter_rollback_reset_and_session_user() {
    let db = jwt_db("jwt_follow");
    let mut app = db.connect("app");
    set_jwt(&mut app, &hs(&claims("acme", "alice", "viewer"))).unwrap();
    assert_eq!(context(&mut app), in_ctx(1, "alice", "viewer"));
    // A transaction that switches and rolls back leaves the identity as it was.
    app.batch_execute("BEGIN").unwrap();
    set_jwt(&mut app, &hs(&claims("globex", "gus", "admin"))).unwrap();
    assert_eq!(context(&mut app), in_ctx(2, "gus", "admin"));
    app.batch_execute("ROLLBACK").unwrap();
    assert_eq!(context(&mut app), in_ctx(1, "alice", "viewer"));
    // A local plain set_tenant of the same tenant carries no user, and the old one comes back.
    app.batch_execute("BEGIN; SELECT tenant.set_tenant('acme', true);")
        .unwrap();
    assert_eq!(context(&mut app), (Some(1), None, None));
    app.batch_execute("COMMIT").unwrap();
    assert_eq!(context(&mut app), in_ctx(1, "alice", "viewer"));
    app.batch_execute("SELECT tenant.set_tenant('acme')")
        .unwrap();
    assert_eq!(context(&mut app), (Some(1), None, None));
    set_jwt(&mut app, &hs(&claims("acme", "alice", "viewer"))).unwrap();
    app.batch_execute("SELECT tenant.clear_tenant()").unwrap();
    assert_eq!(context(&mut app), NONE);
    for reset in ["RESET ALL", "DISCARD ALL"] {
        set_jwt(&mut app, &hs(&claims("acme", "alice", "viewer"))).unwrap();
        app.batch_execute(reset).unwrap();
        assert_eq!(context(&mut app), NONE, "{reset}");
    }
    // Suspending the tenant voids the identity with the context.
    set_jwt(&mut app, &hs(&claims("acme", "alice", "viewer"))).unwrap();
    let mut admin = db.connect("admin");
    admin
        .batch_execute("SELECT tenant.suspend_tenant('acme')")
        .unwrap();
    assert_eq!(context(&mut app), NONE);
    admin
        .batch_execute("SELECT tenant.resume_tenant('acme')")
        .unwrap();
    assert_eq!(context(&mut app), in_ctx(1, "alice", "viewer"));
    // A pooler connected as a superuser: the next session user does not inherit it.
    let mut pooler = db.superuser();
    pooler
        .batch_execute(&format!("SET SESSION AUTHORIZATION {}", db.role("app")))
        .unwrap();
    set_jwt(&mut pooler, &hs(&claims("acme", "alice", "viewer"))).unwrap();
    assert_eq!(context(&mut pooler), in_ctx(1, "alice", "viewer"));
    pooler
        .batch_execute(&format!("SET SESSION AUTHORIZATION {}", db.role("app2")))
        .unwrap();
    assert_eq!(context(&mut pooler), NONE);
    // A forged identity (alice as admin, tied to this very role) by startup option, by a
    // placeholder set before the library loads, or by SET once it is loaded: never honoured.
    let app_oid: u32 = one(
        &mut db.superuser(),
        &format!("SELECT '{}'::regrole::oid", db.role("app")),
    );
    let forged = format!("1@{app_oid};YWxpY2U;YWRtaW4");
    for how in ["option", "placeholder", "set"] {
        let client = match how {
            "option" => db
                .try_connect(
                    "app",
                    &format!("-c qualityfoundry_tenant.identity={forged}"),
                )
                .ok(),
            "placeholder" => {
                let mut c = db.connect("app");
                let _ =
                    c.batch_execute(&format!("SET qualityfoundry_tenant.identity = '{forged}'"));
                Some(c)
            }
            _ => {
                let mut c = db.connect("app");
                c.batch_execute("SELECT tenant.set_tenant('acme')").unwrap();
                expect_sqlstate(
                    c.batch_execute(&format!("SET qualityfoundry_tenant.identity = '{forged}'")),
                    "42501",
                );
                Some(c)
            }
        };
        if let Some(mut c) = client {
            c.batch_execute("SELECT tenant.set_tenant('acme')").unwrap();
            assert_eq!(context(&mut c), (Some(1), None, None), "{how}");
        }
    }
}

#[test]
fn sign_context_tokens_carry_the_user_and_role() {
    let db = TestDb::new("sig_identity").with_projects();
    let mut admin = db.connect("admin");
    let mut app = db.connect("app");
    let t: String = one(
        &mut admin,
        "SELECT tenant.sign_context('acme', '1 minute', user_id => 'alice', tenant_role => 'admin')",
    );
    assert!(t.starts_with("v3."), "{t}");
    app.query_one("SELECT tenant.set_tenant_signed($1)", &[&t])
        .unwrap();
    assert_eq!(context(&mut app), in_ctx(1, "alice", "admin"));
    // The two-argument call still works and carries nobody.
    let t: String = one(
        &mut admin,
        "SELECT tenant.sign_context('globex', '1 minute')",
    );
    assert!(t.starts_with("v2."), "{t}");
    app.query_one("SELECT tenant.set_tenant_signed($1)", &[&t])
        .unwrap();
    assert_eq!(context(&mut app), (Some(2), None, None));
    let t: String = one(
        &mut admin,
        "SELECT tenant.sign_context('acme', user_id => 'bob')",
    );
    app.query_one("SELECT tenant.set_tenant_signed($1)", &[&t])
        .unwrap();
    assert_eq!(context(&mut app), (Some(1), Some("bob".into()), None));
    // A v3 token's user cannot be changed without the key.
    let t: String = one(
        &mut admin,
        "SELECT tenant.sign_context('acme', user_id => 'bob', tenant_role => 'viewer')",
    );
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
    parts[7] = b64.encode("admin");
    expect_sqlstate(
        app.query_one("SELECT tenant.set_tenant_signed($1)", &[&parts.join(".")]),
        "42501",
    );
    assert_eq!(context(&mut app), (Some(1), Some("bob".into()), None));
    for sql in [
        "SELECT tenant.sign_context('acme', user_id => '')",
        "SELECT tenant.sign_context('acme', tenant_role => '')",
        "SELECT tenant.sign_context('acme', tenant_role => repeat('r', 64))",
        "SELECT tenant.sign_context('acme', user_id => E'a\\nb')",
    ] {
        expect_sqlstate(admin.batch_execute(sql), "22023");
    }
}

#[test]
fn require_membership_refuses_tokens_of_non_members() {
    let db = jwt_db("jwt_members");
    let mut admin = db.connect("admin");
    admin
        .batch_execute(
            "INSERT INTO tenant.memberships VALUES (1, 'alice', 'admin'), (1, 'alice', 'viewer'), (2, 'gus', 'user')",
        )
        .unwrap();
    let mut app = db.connect("app");
    // Off: anyone the issuer vouches for enters.
    assert_eq!(
        set_jwt(&mut app, &hs(&claims("acme", "mallory", "admin"))).unwrap(),
        1
    );
    db.superuser()
        .batch_execute(&format!(
            "SELECT tenant.set_role_rules('{}', require_membership => true)",
            db.role("app")
        ))
        .unwrap();
    assert_eq!(
        context(&mut app),
        in_ctx(1, "mallory", "admin"),
        "checked when set"
    );
    app.batch_execute("SELECT tenant.clear_tenant()").unwrap();
    let mut no_sub = claims("acme", "x", "admin");
    no_sub.as_object_mut().unwrap().remove("sub");
    let mut no_role = claims("globex", "gus", "x");
    no_role.as_object_mut().unwrap().remove("tenant_role");
    for (label, token, expect) in [
        (
            "not a member",
            hs(&claims("acme", "mallory", "admin")),
            "not a member",
        ),
        (
            "member of the other tenant",
            hs(&claims("acme", "gus", "user")),
            "not a member",
        ),
        (
            "member with another role",
            hs(&claims("globex", "gus", "admin")),
            "with role \"admin\"",
        ),
        ("no sub", hs(&no_sub), "names no user"),
    ] {
        let (code, msg) = refusal(set_jwt(&mut app, &token));
        assert_eq!(code, "42501", "{label}: {msg}");
        assert!(msg.contains(expect), "{label}: {msg}");
        assert_eq!(context(&mut app), NONE, "{label}");
        assert_eq!(visible(&mut app), vec![]);
    }
    assert_eq!(
        set_jwt(&mut app, &hs(&claims("acme", "alice", "viewer"))).unwrap(),
        1
    );
    assert_eq!(context(&mut app), in_ctx(1, "alice", "viewer"));
    // A token without a role needs any membership, and the context carries no role.
    assert_eq!(set_jwt(&mut app, &hs(&no_role)).unwrap(), 2);
    assert_eq!(context(&mut app), (Some(2), Some("gus".into()), None));
    // Plain set_tenant names no member: refused.
    let (code, msg) = refusal(app.query_one("SELECT tenant.set_tenant('acme')", &[]));
    assert_eq!(code, "42501");
    assert!(msg.contains("members"), "{msg}");
    // The extension's own tokens are checked the same way.
    let t: String = one(
        &mut admin,
        "SELECT tenant.sign_context('acme', user_id => 'mallory', tenant_role => 'admin')",
    );
    expect_sqlstate(
        app.query_one("SELECT tenant.set_tenant_signed($1)", &[&t]),
        "42501",
    );
    let t: String = one(
        &mut admin,
        "SELECT tenant.sign_context('acme', user_id => 'alice', tenant_role => 'admin')",
    );
    app.query_one("SELECT tenant.set_tenant_signed($1)", &[&t])
        .unwrap();
    assert_eq!(context(&mut app), in_ctx(1, "alice", "admin"));
    // A removed membership is refused at the next entry.
    admin
        .batch_execute(
            "DELETE FROM tenant.memberships WHERE user_id = 'alice' AND tenant_role = 'viewer'",
        )
        .unwrap();
    expect_sqlstate(
        set_jwt(&mut app, &hs(&claims("acme", "alice", "viewer"))),
        "42501",
    );
    assert_eq!(context(&mut app), in_ctx(1, "alice", "admin"));
    // The rule, like the others, cannot be switched off by the client.
    let mut forged = db
        .try_connect("app", "-c qualityfoundry_tenant.require_membership=off")
        .unwrap_or_else(|_| db.connect("app"));
    expect_sqlstate(
        set_jwt(&mut forged, &hs(&claims("acme", "mallory", "admin"))),
        "42501",
    );
    // Application roles can neither read nor change memberships; changes are audited.
    for sql in [
        "SELECT * FROM tenant.memberships",
        "INSERT INTO tenant.memberships VALUES (1, 'mallory', 'admin')",
        "DELETE FROM tenant.memberships",
    ] {
        expect_sqlstate(app.batch_execute(sql), "42501");
    }
    for bad in [
        "INSERT INTO tenant.memberships VALUES (1, '', 'admin')",
        "INSERT INTO tenant.memberships VALUES (1, 'x', '')",
        "INSERT INTO tenant.memberships VALUES (999, 'x', 'admin')",
    ] {
        assert!(admin.batch_execute(bad).is_err(), "{bad}");
    }
    let mut su = db.superuser();
    // Dropping a tenant drops its memberships.
    su.batch_execute("SELECT tenant.drop_tenant('globex', delete_rows => true)")
        .unwrap();
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM tenant.memberships WHERE tenant_id = 2"
        ),
        0
    );
}

#[test]
fn keys_are_for_admins_unreadable_and_bad_keys_change_nothing() {
    let db = TestDb::new("jwt_keys").with_projects();
    let mut admin = db.connect("admin");
    let mut app = db.connect("app");
    expect_sqlstate(
        app.execute("SELECT tenant.add_jwt_key('k', 'HS256', $1)", &[&SECRET]),
        "42501",
    );
    admin
        .execute("SELECT tenant.add_jwt_key('k', 'HS256', $1)", &[&SECRET])
        .unwrap();
    let count =
        |db: &TestDb| -> i64 { one(&mut db.superuser(), "SELECT count(*) FROM tenant.jwt_keys") };
    for (label, sql, args) in [
        (
            "duplicate kid",
            "SELECT tenant.add_jwt_key('k', 'HS256', $1)",
            SECRET.to_string(),
        ),
        (
            "bad alg",
            "SELECT tenant.add_jwt_key('k2', 'none', $1)",
            SECRET.to_string(),
        ),
        (
            "weak secret",
            "SELECT tenant.add_jwt_key('k2', 'HS256', $1)",
            "short".to_string(),
        ),
        (
            "private key",
            "SELECT tenant.add_jwt_key('k2', 'RS256', $1)",
            testdata("rsa.key"),
        ),
        (
            "malformed PEM",
            "SELECT tenant.add_jwt_key('k2', 'RS256', $1)",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----".to_string(),
        ),
        (
            "malformed JWK",
            "SELECT tenant.add_jwt_key('k2', 'ES256', $1)",
            "{\"kty\": \"EC\"".to_string(),
        ),
        (
            "wrong curve",
            "SELECT tenant.add_jwt_key('k2', 'ES256', $1)",
            testdata("ec384.pub"),
        ),
        (
            "weak RSA",
            "SELECT tenant.add_jwt_key('k2', 'RS256', $1)",
            testdata("rsa1024.pub"),
        ),
        (
            "empty issuer",
            "SELECT tenant.add_jwt_key('k2', 'HS256', $1, issuer => '')",
            SECRET.to_string(),
        ),
    ] {
        let (code, msg) = refusal(admin.execute(sql, &[&args]));
        assert_eq!(code, "22023", "{label}: {msg}");
        assert_eq!(count(&db), 1, "{label}");
    }
    expect_sqlstate(
        admin.execute("SELECT tenant.add_jwt_key(NULL, 'HS256', $1)", &[&SECRET]),
        "22004",
    );
    // A JWK works too.
    use base64::Engine;
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET);
    let jwk = json!({"kty": "oct", "k": k, "alg": "HS256"});
    admin
        .execute(
            "SELECT tenant.add_jwt_key('jwk', 'HS256', $1)",
            &[&jwk.to_string()],
        )
        .unwrap();
    // Nobody but the owner reads the keys: not the admin, not the app, not pg_read_all_data.
    for role in ["app", "admin", "support", "nobody"] {
        expect_sqlstate(
            db.connect(role)
                .batch_execute("SELECT key FROM tenant.jwt_keys"),
            "42501",
        );
    }
    db.superuser()
        .batch_execute(&format!("GRANT pg_read_all_data TO {}", db.role("nobody")))
        .unwrap();
    assert_eq!(
        one::<i64>(
            &mut db.connect("nobody"),
            "SELECT count(*) FROM tenant.jwt_keys"
        ),
        0
    );
    // An open session honours a dropped key no longer (the cache follows the table).
    let token = sign(
        "HS256",
        Some("k"),
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        &claims("acme", "a", "r"),
    );
    let mut c = claims("acme", "a", "r");
    c["n"] = json!(2);
    let token2 = sign(
        "HS256",
        Some("k"),
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        &c,
    );
    assert_eq!(set_jwt(&mut app, &token).unwrap(), 1);
    admin
        .batch_execute("SELECT tenant.drop_jwt_key('k')")
        .unwrap();
    let (code, msg) = refusal(set_jwt(&mut app, &token2));
    assert_eq!(code, "42501");
    assert!(msg.contains("kid \"k\""), "{msg}");
    expect_sqlstate(
        admin.batch_execute("SELECT tenant.drop_jwt_key('k')"),
        "22023",
    );
    expect_sqlstate(
        app.batch_execute("SELECT tenant.drop_jwt_key('jwk')"),
        "42501",
    );
    let mut su = db.superuser();
    assert_eq!(
        one::<Vec<String>>(
            &mut su,
            "SELECT array_agg(action || ':' || target ORDER BY id) FROM tenant.audit_log WHERE action LIKE 'jwt_key%'"
        ),
        vec!["jwt_key_added:k", "jwt_key_added:jwk", "jwt_key_dropped:k"]
    );
    // No key material in the audit log.
    assert_eq!(
        one::<i64>(
            &mut su,
            &format!(
                "SELECT count(*) FROM tenant.audit_log WHERE detail::text LIKE '%{}%'",
                &SECRET[..20]
            )
        ),
        0
    );
}

#[test]
fn tenants_have_uuid_keys_that_every_tenant_argument_accepts() {
    let db = TestDb::new("uuid_keys").with_projects();
    let mut admin = db.connect("admin");
    let given = "6f1c0a52-3b9e-4c7d-9a1e-0f5b7c2d8e41";
    let id: i64 = admin
        .query_one(
            "SELECT tenant.create_tenant('initech', uuid => $1::text::uuid)",
            &[&given],
        )
        .unwrap()
        .get(0);
    assert_eq!(id, 3);
    let (code, msg) = refusal(admin.query_one(
        "SELECT tenant.create_tenant('other', uuid => $1::text::uuid)",
        &[&given],
    ));
    assert_eq!(code, "42710");
    assert!(msg.contains("uuid"), "{msg}");
    let mut su = db.superuser();
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM tenant.tenants"),
        3
    );
    // Generated for the others, distinct.
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(DISTINCT uuid) FROM tenant.tenants"),
        3
    );
    let acme: String = one(
        &mut su,
        "SELECT uuid::text FROM tenant.tenants WHERE slug = 'acme'",
    );
    let mut app = db.connect("app");
    for spelling in [acme.clone(), acme.to_uppercase()] {
        assert_eq!(
            one::<i64>(&mut app, &format!("SELECT tenant.set_tenant('{spelling}')")),
            1
        );
        assert_eq!(
            one::<String>(&mut app, "SELECT tenant.current_tenant_uuid()::text"),
            acme
        );
    }
    assert_eq!(visible(&mut app), ACME);
    // Other spellings PostgreSQL's uuid input takes are not uuids here (a 32-digit one could be a slug).
    expect_sqlstate(
        app.batch_execute(&format!(
            "SELECT tenant.set_tenant('{}')",
            acme.replace('-', "")
        )),
        "22023",
    );
    expect_sqlstate(
        app.batch_execute(&format!("SELECT tenant.set_tenant('{{{acme}}}')")),
        "22023",
    );
    assert_eq!(visible(&mut app), ACME);
    // The SQL resolver: suspend, bind, sign by uuid.
    admin
        .execute("SELECT tenant.suspend_tenant($1)", &[&given])
        .unwrap();
    assert_eq!(
        one::<String>(&mut su, "SELECT status FROM tenant.tenants WHERE id = 3"),
        "suspended"
    );
    admin
        .execute("SELECT tenant.resume_tenant($1)", &[&given])
        .unwrap();
    admin
        .execute(
            &format!("SELECT tenant.bind_role('{}', $1)", db.role("bi")),
            &[&acme],
        )
        .unwrap();
    assert_eq!(
        one::<i64>(&mut su, "SELECT tenant_id FROM tenant.role_bindings"),
        1
    );
    let t: String = admin
        .query_one("SELECT tenant.sign_context($1)", &[&given])
        .unwrap()
        .get(0);
    assert_eq!(
        one::<i64>(&mut app, &format!("SELECT tenant.set_tenant_signed('{t}')")),
        3
    );
    expect_sqlstate(
        admin.batch_execute("SELECT tenant.suspend_tenant('00000000-0000-0000-0000-000000000000')"),
        "22023",
    );
    app.batch_execute("SELECT tenant.clear_tenant()").unwrap();
    assert_eq!(
        one::<Option<String>>(&mut app, "SELECT tenant.current_tenant_uuid()::text"),
        None
    );
}

#[test]
fn audit_rows_name_the_end_user_the_tenant_role_and_the_request() {
    let db = jwt_db("jwt_audit");
    let mut su = db.superuser();
    su.batch_execute(&format!("GRANT tenant_user TO {}", db.role("support")))
        .unwrap();
    let mut support = db.connect("support");
    let mut c = claims("acme", "sam@support", "support_agent");
    c["jti"] = json!("req-audit-1");
    set_jwt(&mut support, &hs(&c)).unwrap();
    support.batch_execute("BEGIN").unwrap();
    support
        .batch_execute("SELECT tenant.set_request_id('ticket-77')")
        .unwrap();
    support
        .batch_execute("SELECT tenant.enter_cross_tenant('ticket 77')")
        .unwrap();
    support.batch_execute("COMMIT").unwrap();
    support
        .batch_execute("SELECT tenant.exit_cross_tenant()")
        .unwrap();
    type Row = (String, Option<String>, Option<String>, Option<String>);
    let rows: Vec<Row> = su
        .query(
            "SELECT action, end_user, tenant_role, request_id FROM tenant.audit_log \
             WHERE action IN ('cross_tenant_entered', 'cross_tenant_left') ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "cross_tenant_entered".into(),
                Some("sam@support".into()),
                Some("support_agent".into()),
                Some("ticket-77".into())
            ),
            // The request id was transaction-local.
            (
                "cross_tenant_left".into(),
                Some("sam@support".into()),
                Some("support_agent".into()),
                None
            ),
        ]
    );
    // An admin action with a request id; none afterwards.
    let mut admin = db.connect("admin");
    admin
        .batch_execute("BEGIN; SELECT tenant.set_request_id('deploy-12'); SELECT tenant.create_tenant('third'); COMMIT; SELECT tenant.create_tenant('fourth');")
        .unwrap();
    let rows: Vec<(String, Option<String>, Option<String>)> = su
        .query(
            "SELECT target, request_id, end_user FROM tenant.audit_log WHERE action = 'tenant_created' AND target IN ('third', 'fourth') ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("third".into(), Some("deploy-12".into()), None),
            ("fourth".into(), None, None)
        ]
    );
    for (sql, code) in [
        ("SELECT tenant.set_request_id('')", "22023"),
        ("SELECT tenant.set_request_id(repeat('x', 201))", "22023"),
        ("SELECT tenant.set_request_id(E'a\\tb')", "22023"),
    ] {
        expect_sqlstate(admin.batch_execute(sql), code);
    }
    expect_sqlstate(
        db.connect("nobody")
            .batch_execute("SELECT tenant.set_request_id('x')"),
        "42501",
    );
}

/// Cross-tenant mode, statement by statement: every top-level statement in the server log (also
/// one that rolled back), and the committed ones in tenant.audit_log. On a plain and a preloaded
/// cluster (the hooks come from _PG_init either way).
fn cross_tenant_statements_are_audited(c: &'static Cluster) {
    let db = TestDb::new_on(c, "cross_stmts").with_projects();
    let marker = format!("m{}", std::process::id());
    let mut support = db.connect("support");
    support
        .batch_execute(&format!("SELECT 'before-{marker}' FROM public.projects"))
        .unwrap();
    support
        .batch_execute("SELECT tenant.enter_cross_tenant('ticket 4242')")
        .unwrap();
    support
        .batch_execute(&format!(
            "SELECT count(*) AS read_{marker} FROM public.projects"
        ))
        .unwrap();
    support
        .batch_execute(&format!(
            "UPDATE public.projects SET name = name || '!' WHERE id = 200 /* committed-{marker} */"
        ))
        .unwrap();
    support.batch_execute("BEGIN").unwrap();
    support
        .batch_execute(&format!(
            "DELETE FROM public.projects WHERE id = 100 /* rolled-back-{marker} */"
        ))
        .unwrap();
    support.batch_execute("ROLLBACK").unwrap();
    // Statements that fail while running are in the log: a refused one (permission is checked
    // when the executor starts) and one failing on its data, in a block its ROLLBACK ends.
    expect_sqlstate(
        support.batch_execute(&format!(
            "SELECT secret AS denied_{marker} FROM tenant.signing_keys"
        )),
        "42501",
    );
    support.batch_execute("BEGIN").unwrap();
    assert!(support
        .batch_execute(&format!(
            "SELECT 1 / (g - 1) AS failed_{marker} FROM generate_series(1, 1) g"
        ))
        .is_err());
    support.batch_execute("ROLLBACK").unwrap();
    // A function's inner statements are part of the statement that called it.
    support
        .batch_execute(&format!(
            "DO $$ BEGIN PERFORM count(*) FROM public.projects WHERE name <> 'inner-{marker}'; END $$"
        ))
        .unwrap();
    support
        .batch_execute(&format!(
            "BEGIN READ ONLY; SELECT 1 AS ro_{marker}; COMMIT;"
        ))
        .unwrap();
    // Extended protocol: the statement's text, never its parameters.
    support
        .query(
            &format!("SELECT $1::text AS ext_{marker}"),
            &[&"secret-parameter"],
        )
        .unwrap();
    support
        .batch_execute("SELECT tenant.exit_cross_tenant()")
        .unwrap();
    support
        .batch_execute(&format!("SELECT 'after-{marker}'"))
        .unwrap();
    let mut su = db.superuser();
    let audited: Vec<String> = su
        .query(
            "SELECT detail->>'query' FROM tenant.audit_log WHERE action = 'cross_tenant_statement' ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let has = |needle: &str| audited.iter().filter(|q| q.contains(needle)).count();
    assert_eq!(has(&format!("read_{marker}")), 1, "{audited:#?}");
    assert_eq!(has(&format!("committed-{marker}")), 1, "{audited:#?}");
    assert_eq!(has(&format!("rolled-back-{marker}")), 0, "{audited:#?}");
    assert_eq!(has(&format!("failed_{marker}")), 0, "{audited:#?}");
    assert_eq!(has(&format!("denied_{marker}")), 0, "{audited:#?}");
    assert_eq!(has("DO $$"), 1, "{audited:#?}");
    assert_eq!(has(&format!("ext_{marker}")), 1, "{audited:#?}");
    assert_eq!(
        has(&format!("ro_{marker}")),
        0,
        "read-only: server log only"
    );
    assert_eq!(has("exit_cross_tenant"), 1, "{audited:#?}");
    assert_eq!(
        has(&format!("before-{marker}")) + has(&format!("after-{marker}")),
        0
    );
    assert_eq!(
        one::<i64>(
            &mut su,
            "SELECT count(*) FROM tenant.audit_log WHERE action = 'cross_tenant_statement' \
             AND (detail->>'reason' <> 'ticket 4242' OR session_role <> acting_role::name)"
        ),
        0
    );
    let log = db.cluster.server_log();
    let logged = |needle: &str| {
        log.lines()
            .filter(|l| l.contains("cross-tenant statement by role") && l.contains(needle))
            .count()
    };
    for needle in [
        format!("read_{marker}"),
        format!("committed-{marker}"),
        format!("rolled-back-{marker}"),
        format!("ro_{marker}"),
        format!("ext_{marker}"),
        format!("failed_{marker}"),
        format!("denied_{marker}"),
    ] {
        assert_eq!(logged(&needle), 1, "{needle} in the server log");
    }
    assert_eq!(
        logged(&format!("inner-{marker}")),
        1,
        "only as part of the DO statement"
    );
    assert_eq!(logged("secret-parameter"), 0);
    assert_eq!(
        logged(&format!("before-{marker}")) + logged(&format!("after-{marker}")),
        0
    );
    assert!(log.contains(&format!("role \"{}\"", db.role("support"))));
    assert!(log
        .lines()
        .any(|l| l.contains(&format!("rolled-back-{marker}"))
            && l.contains("reason \"ticket 4242\"")));
}

mod cross_tenant_statements {
    #[test]
    fn plain() {
        super::cross_tenant_statements_are_audited(qft_integration_tests::cluster());
    }
    #[test]
    fn preloaded() {
        super::cross_tenant_statements_are_audited(qft_integration_tests::preloaded_cluster());
    }
}

/// Recording a cross-tenant statement checks the session's role rules, which another session's
/// registry change made stale in the middle of the transaction: the reload runs queries of its
/// own, which must not be recorded again (they were, recursively, until "stack depth limit
/// exceeded").
#[test]
fn a_statement_recorded_after_another_sessions_registry_change_is_audited_once() {
    let db = TestDb::new("cross_stale").with_projects();
    let mut su = db.superuser();
    let rows = |su: &mut postgres::Client| -> Vec<(i64, i32, String)> {
        su.query(
            "SELECT tenant_id, id, name FROM public.projects ORDER BY 1, 2",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
    };
    let before = rows(&mut su);
    let mut support = db.connect("support");
    support
        .batch_execute("BEGIN; SELECT tenant.enter_cross_tenant('stale rules', is_local => true)")
        .unwrap();
    su.batch_execute("SELECT tenant.create_tenant('initech')")
        .unwrap();
    let all: i64 = support
        .query_one("SELECT count(*) FROM public.projects", &[])
        .unwrap()
        .get(0);
    assert_eq!(all as usize, before.len());
    su.batch_execute("SELECT tenant.create_tenant('umbrella')")
        .unwrap();
    support.batch_execute("COMMIT").unwrap();
    let audited: i64 = su
        .query_one(
            "SELECT count(*) FROM tenant.audit_log WHERE action = 'cross_tenant_statement' \
               AND detail->>'reason' = 'stale rules' \
               AND detail->>'query' = 'SELECT count(*) FROM public.projects'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(audited, 1, "the statement is audited once");
    assert_eq!(rows(&mut su), before, "nothing changed");
}

#[test]
fn registry_identity_survives_pg_dump_and_restore() {
    let db = jwt_db("jwt_dump");
    let mut admin = db.connect("admin");
    admin
        .batch_execute("INSERT INTO tenant.memberships VALUES (1, 'alice', 'admin')")
        .unwrap();
    let mut su = db.superuser();
    let uuids: Vec<String> = su
        .query("SELECT uuid::text FROM tenant.tenants ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut restored = db.dump_and_restore();
    let got: Vec<String> = restored
        .query("SELECT uuid::text FROM tenant.tenants ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(got, uuids);
    assert_eq!(
        one::<i64>(&mut restored, "SELECT count(*) FROM tenant.memberships"),
        1
    );
    assert_eq!(
        one::<i64>(&mut restored, "SELECT count(*) FROM tenant.jwt_keys"),
        keys().len() as i64
    );
    assert!(one::<bool>(
        &mut restored,
        "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE oid = 'tenant.jwt_keys'::regclass"
    ));
}

/// The statement hooks sit around every statement of a session that loaded the library: an
/// ERROR must reach the client as PostgreSQL raised it, with the fields ORMs read (constraint,
/// table, column), in and out of cross-tenant mode.
#[test]
fn errors_keep_their_fields_with_the_statement_hooks_installed() {
    let db = TestDb::new("hook_errors").with_projects();
    let mut app = db.connect_in("app", "acme");
    let mut support = db.connect("support");
    support
        .batch_execute("SELECT tenant.enter_cross_tenant('error fields')")
        .unwrap();
    for c in [&mut app, &mut support] {
        for sql in [
            "INSERT INTO public.projects (tenant_id, id, name) VALUES (1, 100, 'dup')",
            "DO $$ BEGIN INSERT INTO public.projects (tenant_id, id, name) VALUES (1, 100, 'dup'); END $$",
        ] {
            let e = c.batch_execute(sql).expect_err("duplicate key");
            let d = e.as_db_error().expect("a server error");
            assert_eq!(d.code().code(), "23505", "{sql}");
            assert_eq!(d.constraint(), Some("projects_pkey"), "{sql}");
            assert_eq!(d.table(), Some("projects"), "{sql}");
            assert_eq!(d.schema(), Some("public"), "{sql}");
        }
        let e = c
            .batch_execute("INSERT INTO public.projects (tenant_id, id) VALUES (1, NULL)")
            .expect_err("not null");
        assert_eq!(e.as_db_error().unwrap().column(), Some("id"));
        // A failed statement in a block, then a handled error in a function: the session goes on.
        c.batch_execute("BEGIN; SAVEPOINT s;").unwrap();
        assert!(c.batch_execute("SELECT 1/0").is_err());
        c.batch_execute("ROLLBACK TO s; COMMIT;").unwrap();
        c.batch_execute(
            "DO $$ BEGIN PERFORM 1/0; EXCEPTION WHEN division_by_zero THEN NULL; END $$",
        )
        .unwrap();
    }
    // The session is still audited statement by statement after all those errors.
    support
        .batch_execute("SELECT 'still-audited' AS x")
        .unwrap();
    assert_eq!(
        one::<i64>(
            &mut db.superuser(),
            "SELECT count(*) FROM tenant.audit_log WHERE action = 'cross_tenant_statement' \
             AND detail->>'query' LIKE '%still-audited%'"
        ),
        1
    );
    assert_eq!(db.all_projects().len(), 6);
}

/// The identity reaches parallel workers with the context (the getters are PARALLEL SAFE and will
/// sit in policies): a per-row filter on the end user and role counts the same in the workers.
#[test]
fn parallel_workers_see_the_end_user_and_role() {
    let db = jwt_db("jwt_parallel");
    db.superuser()
        .batch_execute(
            "INSERT INTO public.projects SELECT 1 + g % 2, 1000 + g, CASE WHEN g % 4 = 0 THEN 'alice' ELSE 'viewer' END \
             FROM generate_series(1, 20000) g; ANALYZE public.projects",
        )
        .unwrap();
    let mut app = db.connect("app");
    app.batch_execute(
        "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0; \
         SET max_parallel_workers_per_gather = 2; SET enable_indexscan = off; SET enable_bitmapscan = off",
    )
    .unwrap();
    set_jwt(&mut app, &hs(&claims("acme", "alice", "viewer"))).unwrap();
    let query = "SELECT count(*) FROM public.projects \
                 WHERE name IN (tenant.current_user_id(), tenant.current_tenant_role())";
    let plan: Vec<String> = app
        .query(
            &format!("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {query}"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    let launched = plan
        .lines()
        .find_map(|l| l.trim().strip_prefix("Workers Launched: "))
        .and_then(|n| n.parse::<u32>().ok());
    assert!(launched.is_some_and(|n| n >= 1), "{plan}");
    // acme has the 10,000 even g: a quarter 'alice', the rest 'viewer'.
    assert_eq!(one::<i64>(&mut app, query), 10_000);
    app.batch_execute("SELECT tenant.set_tenant('acme')")
        .unwrap();
    assert_eq!(
        one::<i64>(&mut app, query),
        0,
        "plain set_tenant carries no identity"
    );
}

/// Check kind 40: whoever could read tenant.jwt_keys (an HS* key signs a JWT for any tenant) is
/// reported, and each fix the checker gives works.
#[test]
fn the_checker_reports_who_could_read_the_jwt_keys() {
    let db = jwt_db("jwt_key_readers");
    let mut su = db.superuser();
    let nobody = db.role("nobody");
    su.batch_execute(&format!("GRANT pg_read_all_data TO {nobody}"))
        .unwrap();
    let mut reader = db.connect("nobody");
    assert_eq!(
        one::<i64>(&mut reader, "SELECT count(*) FROM tenant.jwt_keys"),
        0
    );
    let problems = |db: &TestDb| -> Vec<(String, String, String)> {
        isolation_findings(db)
            .into_iter()
            .filter(|f| f.2.contains("JWT verification keys"))
            .map(|f| (f.1, f.2, f.3))
            .collect()
    };
    assert_eq!(problems(&db), vec![], "row security keeps the reader out");
    // BYPASSRLS with pg_read_all_data reads them: reported, and the fix works.
    su.batch_execute(&format!("ALTER ROLE {nobody} BYPASSRLS"))
        .unwrap();
    let mut reader = db.connect("nobody");
    assert_eq!(
        one::<i64>(&mut reader, "SELECT count(*) FROM tenant.jwt_keys"),
        10
    );
    let found = problems(&db);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, format!("role {nobody}"));
    assert!(found[0].1.contains("BYPASSRLS"), "{found:?}");
    // Public keys are no secret: without an HS* key there is nothing to report.
    let mut admin = db.connect("admin");
    admin
        .batch_execute(
            "SELECT tenant.drop_jwt_key('HS256'); SELECT tenant.drop_jwt_key('HS384'); SELECT tenant.drop_jwt_key('HS512');",
        )
        .unwrap();
    assert_eq!(problems(&db), vec![]);
    admin
        .execute(
            "SELECT tenant.add_jwt_key('HS256', 'HS256', $1)",
            &[&SECRET],
        )
        .unwrap();
    assert_eq!(problems(&db), found);
    su.batch_execute(&found[0].2).unwrap();
    assert_eq!(problems(&db), vec![]);
    // A member of the table's owner can switch row security off.
    let owner: String = one(&mut su, "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = 'tenant.jwt_keys'::regclass");
    let group = db.role("keys_owner");
    su.batch_execute(&format!("CREATE ROLE {group} NOLOGIN"))
        .unwrap();
    su.batch_execute(&format!(
        "ALTER TABLE tenant.jwt_keys OWNER TO {group}; GRANT {group} TO {nobody}"
    ))
    .unwrap();
    let found = problems(&db);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].1.contains(&format!("is a member of {group}")),
        "{found:?}"
    );
    su.batch_execute(&found[0].2).unwrap();
    assert_eq!(problems(&db), vec![]);
    su.batch_execute(&format!("ALTER TABLE tenant.jwt_keys OWNER TO {owner}"))
        .unwrap();
    // Row security switched off.
    su.batch_execute("ALTER TABLE tenant.jwt_keys NO FORCE ROW LEVEL SECURITY")
        .unwrap();
    let found = problems(&db);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "table tenant.jwt_keys");
    su.batch_execute(&found[0].2).unwrap();
    assert_eq!(problems(&db), vec![]);
}
