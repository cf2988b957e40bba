//! The application's own JWT as the tenant context: verification keys (`add_jwt_key`,
//! `drop_jwt_key`, for tenant_admin) and `set_tenant_jwt` (for tenant_user), plus the request id
//! the audit log records. The decisions about keys and tokens are in the pgrx-free `qft-jwt`
//! crate; this module reads the keys (as the registry owner: `tenant.jwt_keys` has row security
//! with FORCE and no policy, like the signing keys), caches them per backend until the key table
//! changes, and hands a verified token's tenant, user and role to the context (`context.rs`),
//! which applies every rule the other setters apply.

use crate::context::{self, Token, TokenTenant};
use crate::error;
use crate::privilege::{self, TENANT_ADMIN, TENANT_SUPERUSER, TENANT_USER};
use crate::settings;
use crate::signed;
use pgrx::prelude::*;
use qft_jwt::{Checks, JwtError, Key};
use std::cell::RefCell;
use std::rc::Rc;

struct Backend<T>(T);
// SAFETY: a PostgreSQL backend runs our code on one thread only.
unsafe impl<T> Sync for Backend<T> {}

/// A registered key as parsed (or why it cannot be used: a row written around add_jwt_key).
type Registered = Vec<(String, Result<Key, String>)>;
/// The parsed keys and the registry generation they were read in.
type Cached = Option<(u64, Rc<Registered>)>;
static KEYS: Backend<RefCell<Cached>> = Backend(RefCell::new(None));

/// Runs a data-changing statement with RETURNING and says whether it returned a row. Never with a
/// row limit: SPI stops a limited INSERT/DELETE early, before its statement triggers (the key
/// table's cache invalidation) fire.
fn changed_a_row(query: &str, args: &[pgrx::datum::DatumWithOid]) -> bool {
    Spi::connect_mut(|c| c.update(query, None, args).map(|t| !t.is_empty()))
        .unwrap_or_else(|e| spi_failed(e))
}

fn spi_failed(e: pgrx::spi::Error) -> ! {
    error::raise(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("JWT key access failed: {e}"),
        None,
        None,
    )
}

/// Every registered key, parsed once per backend and registry generation (the key table's
/// trigger invalidates it in every backend at commit).
fn keys() -> Rc<Registered> {
    let generation = context::generation();
    if let Some((at, keys)) = KEYS.0.borrow().as_ref() {
        if *at == generation {
            return keys.clone();
        }
    }
    let rows = privilege::as_owner(|| {
        Spi::connect(|c| {
            let t = c.select(
                "SELECT kid, alg, key, issuer, audience FROM tenant.jwt_keys ORDER BY kid",
                None,
                &[],
            )?;
            let mut out = Vec::new();
            for row in t {
                out.push((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?.unwrap_or_default(),
                    row.get::<String>(3)?.unwrap_or_default(),
                    row.get::<String>(4)?,
                    row.get::<String>(5)?,
                ));
            }
            Ok::<_, pgrx::spi::Error>(out)
        })
    })
    .unwrap_or_else(|e| spi_failed(e));
    let parsed: Registered = rows
        .into_iter()
        .map(|(kid, alg, key, iss, aud)| {
            let k = Key::parse(&kid, &alg, &key, iss.as_deref(), aud.as_deref())
                .map_err(|e| e.describe());
            (kid, k)
        })
        .collect();
    let parsed = Rc::new(parsed);
    if context::generation() == generation {
        *KEYS.0.borrow_mut() = Some((generation, parsed.clone()));
    }
    parsed
}

/// Registers a verification key. Bad algorithm, malformed or weak key, duplicate kid: 22023 and
/// nothing stored.
#[pg_extern(schema = "tenant", volatile, parallel_unsafe)]
fn add_jwt_key(
    kid: Option<&str>,
    alg: Option<&str>,
    key: Option<&str>,
    issuer: default!(Option<&str>, "NULL"),
    audience: default!(Option<&str>, "NULL"),
) {
    privilege::require_role_of(privilege::caller(), TENANT_ADMIN, "add a JWT key");
    let (Some(kid), Some(alg), Some(material)) = (kid, alg, key) else {
        error::raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "kid, alg and key must not be NULL".into(),
            None,
            None,
        )
    };
    if let Err(e) = Key::parse(kid, alg, material, issuer, audience) {
        error::invalid(
            format!("cannot add JWT key \"{kid}\": {}", e.describe()),
            Some(format!(
                "alg is one of {}; key is the shared secret (HS*), a PEM public key or one JWK as JSON.",
                qft_jwt::ALGORITHMS.join(", ")
            )),
        );
    }
    let added = privilege::as_owner(|| {
        if !changed_a_row(
            "INSERT INTO tenant.jwt_keys (kid, alg, key, issuer, audience) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (kid) DO NOTHING RETURNING true",
            &[kid.into(), alg.into(), material.into(), issuer.into(), audience.into()],
        ) {
            return false;
        }
        Spi::run_with_args(
            "SELECT tenant._audit('jwt_key_added', $1, NULL, pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('alg', $2::text, 'issuer', $3::text, 'audience', $4::text)))",
            &[kid.into(), alg.into(), issuer.into(), audience.into()],
        )
        .unwrap_or_else(|e| spi_failed(e));
        true
    });
    if !added {
        error::invalid(
            format!("a JWT key with kid \"{kid}\" already exists"),
            Some("Drop it first with tenant.drop_jwt_key(), or use another kid.".into()),
        );
    }
}

/// Removes a verification key: tokens naming it are refused from the next statement on, in
/// every session.
#[pg_extern(schema = "tenant", volatile, parallel_unsafe)]
fn drop_jwt_key(kid: Option<&str>) {
    privilege::require_role_of(privilege::caller(), TENANT_ADMIN, "drop a JWT key");
    let Some(kid) = kid else {
        error::raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "kid must not be NULL".into(),
            None,
            None,
        )
    };
    let dropped = privilege::as_owner(|| {
        if !changed_a_row(
            "DELETE FROM tenant.jwt_keys WHERE kid = $1 RETURNING true",
            &[kid.into()],
        ) {
            return false;
        }
        Spi::run_with_args(
            "SELECT tenant._audit('jwt_key_dropped', $1, NULL, NULL)",
            &[kid.into()],
        )
        .unwrap_or_else(|e| spi_failed(e));
        true
    });
    if !dropped {
        error::invalid(format!("no JWT key has kid \"{kid}\""), None);
    }
}

fn refuse(why: String) -> ! {
    error::denied(
        format!("JWT refused: {why}"),
        None,
        Some("Check the token's issuer, key (tenant.add_jwt_key) and claims; ask the auth service for a new token.".into()),
    )
}

/// Enters the tenant a valid JWT names, carrying its end user (`sub`) and tenant role. Any
/// failure: 42501, context unchanged.
#[pg_extern(schema = "tenant", volatile, parallel_unsafe)]
fn set_tenant_jwt(jwt: Option<&str>, is_local: default!(Option<bool>, false)) -> i64 {
    privilege::require_role_of(privilege::caller(), TENANT_USER, "set the tenant context");
    let jwt = jwt.unwrap_or("");
    let fail = |e: JwtError| -> ! { refuse(e.describe()) };
    let header = qft_jwt::peek(jwt).unwrap_or_else(|e| fail(e));
    let registered = keys();
    let kids: Vec<String> = registered.iter().map(|(k, _)| k.clone()).collect();
    let kid = qft_jwt::choose_key(header.kid.as_deref(), &kids).unwrap_or_else(|e| fail(e));
    let key = match registered.iter().find(|(k, _)| k == kid) {
        Some((_, Ok(key))) => key,
        Some((_, Err(why))) => refuse(format!("key \"{kid}\" cannot be used: {why}")),
        None => fail(JwtError::UnknownKid(kid.to_string())),
    };
    let (tenant_claim, role_claim) = (settings::jwt_tenant_claim(), settings::jwt_role_claim());
    let leeway = settings::jwt_leeway();
    let checks = Checks {
        now: signed::now_unix(),
        leeway,
        tenant_claim: &tenant_claim,
        role_claim: &role_claim,
    };
    let id = qft_jwt::verify(jwt, kid, key, checks).unwrap_or_else(|e| fail(e));
    if let Some(jti) = &id.jti {
        // Single-use, like the extension's own tokens; and, like them, nothing issued before the
        // used-token table last started remembering (a crash) is accepted.
        let since = signed::remembers_since();
        match id.issued_at {
            None => refuse(
                "the token has a jti but no iat: a single-use token must say when it was issued"
                    .into(),
            ),
            Some(t) if t < since => refuse(format!(
                "the token was issued at unix time {t}, before the server last started remembering used tokens"
            )),
            Some(_) => {}
        }
        if !signed::consume(
            qft_jwt::jti_token_id(kid, jti),
            id.expires_at.saturating_add(leeway),
        ) {
            refuse(format!(
                "the token with jti \"{jti}\" has already been used (a JWT with a jti is single-use)"
            ));
        }
    }
    let entered = context::enter_token(
        Token {
            tenant: TokenTenant::Text(id.tenant),
            user: id.user,
            role: id.role,
            kind: "JWT",
        },
        is_local,
    );
    if let Some(jti) = id.jti {
        if settings::request_id().is_none() {
            settings::apply(settings::REQUEST_ID, &jti, true);
        }
    }
    entered
}

/// Sets the request id the audit log records until the end of the transaction (NULL clears it).
#[pg_extern(schema = "tenant", volatile, parallel_unsafe)]
fn set_request_id(id: Option<&str>) {
    let caller = privilege::caller();
    if ![TENANT_USER, TENANT_SUPERUSER, TENANT_ADMIN]
        .iter()
        .any(|r| privilege::has_role(caller, r))
    {
        privilege::require_role_of(caller, TENANT_USER, "set the request id");
    }
    if let Some(Err(why)) = id.map(|v| qft_jwt::check_text(v, qft_jwt::MAX_REQUEST_ID_BYTES)) {
        error::invalid(
            format!("request id {why}"),
            Some(
                "A request id is 1 to 200 bytes without control characters; NULL clears it.".into(),
            ),
        );
    }
    context::warn_if_pointless(true, "request id");
    settings::apply(settings::REQUEST_ID, id.unwrap_or(""), true);
}

/// The request id in force, for tenant._audit.
#[pg_extern(schema = "tenant", name = "_request_id", stable, parallel_safe)]
fn request_id_sql() -> Option<String> {
    settings::request_id()
}
