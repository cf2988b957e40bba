//! Signed tenant context: `sign_context` for the auth service (tenant_admin) and
//! `set_tenant_signed` for application roles. Keys live in `tenant.signing_keys`, readable only by
//! the registry owner (row security with FORCE and no policy keeps even `pg_read_all_data` members
//! out); the token logic itself is in `token.rs`.
//!
//! Tokens are single-use: the first `set_tenant_signed` records the token id in
//! `tenant.used_tokens`, a table every backend shares, and any later use — by this session or
//! another — is refused until the token expires (then the row is pruned). The table is UNLOGGED
//! (no WAL, so using a token does not make a read-only request wait for a WAL flush); a crash
//! empties it, and so it keeps a marker row whose time says since when it remembers: tokens issued
//! before that are refused, so nothing used before a crash can be used again after it.

use crate::context;
use crate::error;
use crate::privilege::{self, TENANT_ADMIN, TENANT_USER};
use crate::token::{self, Claims};
use pgrx::datum::{Interval, Uuid};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::PgOid;
use std::cell::{Cell, RefCell};

const PG_EPOCH_UNIX: i64 = 946_684_800;
/// The marker row of `tenant.used_tokens`: its `expires_at` is the time since which the table
/// remembers every use (set when the table was created, or found empty after a crash).
const MARKER: [u8; 16] = [0; 16];
/// Expired rows are pruned by every this many `sign_context` calls of a backend.
const PRUNE_EVERY: u32 = 100;

struct Backend<T>(T);
// SAFETY: a PostgreSQL backend runs our code on one thread only.
unsafe impl<T> Sync for Backend<T> {}

/// Since when `tenant.used_tokens` remembers, read once per backend (a crash, the only thing that
/// empties the table, also ends every backend).
static REMEMBERS_SINCE: Backend<Cell<Option<i64>>> = Backend(Cell::new(None));
static CONSUME: Backend<RefCell<Option<OwnedPreparedStatement>>> = Backend(RefCell::new(None));
static SIGNED: Backend<Cell<u32>> = Backend(Cell::new(0));

pub(crate) fn now_unix() -> i64 {
    (unsafe { pg_sys::GetCurrentTimestamp() }) / 1_000_000 + PG_EPOCH_UNIX
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    if !unsafe { pg_sys::pg_strong_random(out.as_mut_ptr().cast(), N) } {
        error::raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "could not generate random bytes".into(),
            None,
            None,
        );
    }
    out
}

fn spi_failed(e: pgrx::spi::Error) -> ! {
    error::raise(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("signing key access failed: {e}"),
        None,
        None,
    )
}

/// The newest unretired key, created on first use (a restored database starts with none).
fn current_key() -> (i32, Vec<u8>) {
    privilege::as_owner(|| {
        let found = Spi::get_two::<i32, Vec<u8>>(
            "SELECT id, secret FROM tenant.signing_keys WHERE retired_at IS NULL ORDER BY id DESC LIMIT 1",
        );
        match found {
            Ok((Some(id), Some(secret))) => (id, secret),
            Ok(_) | Err(pgrx::spi::Error::InvalidPosition) => insert_key(),
            Err(e) => spi_failed(e),
        }
    })
}

fn insert_key() -> (i32, Vec<u8>) {
    let secret = random_bytes::<32>().to_vec();
    // No row limit: SPI would stop a limited INSERT before its statement trigger fires.
    let id = Spi::connect_mut(|c| {
        c.update(
            "INSERT INTO tenant.signing_keys(secret) VALUES ($1) RETURNING id",
            None,
            &[secret.clone().into()],
        )?
        .first()
        .get_one::<i32>()
    })
    .unwrap_or_else(|e| spi_failed(e))
    .expect("INSERT ... RETURNING returns a row");
    (id, secret)
}

/// The secret of a key that is still accepted. Cached per backend: verifying a token costs no
/// query once its key has been seen.
fn key_by_id(key_id: i32) -> Option<Vec<u8>> {
    let key = context::cached_signing_key(key_id, || {
        privilege::as_owner(|| {
            Spi::connect(|c| {
                let t = c.select(
                    "SELECT secret, pg_catalog.floor(pg_catalog.date_part('epoch', retired_at))::bigint \
                     FROM tenant.signing_keys WHERE id = $1",
                    Some(1),
                    &[key_id.into()],
                )?;
                if t.is_empty() {
                    return Ok(None);
                }
                let t = t.first();
                Ok(t.get::<Vec<u8>>(1)?.map(|secret| context::SigningKey { secret, retired_at: t.get::<i64>(2).ok().flatten() }))
            })
        })
        .unwrap_or_else(|e| spi_failed(e))
    })?;
    match key.retired_at {
        Some(retired) if retired <= now_unix() => None,
        _ => Some(key.secret),
    }
}

/// Since when the used-token table remembers (its marker row), writing the marker if a crash
/// emptied the table. Run as the owner.
pub(crate) fn remembers_since() -> i64 {
    if let Some(t) = REMEMBERS_SINCE.0.get() {
        return t;
    }
    let since = privilege::as_owner(|| {
        Spi::connect_mut(|c| {
            let marker = Uuid::from_bytes(MARKER);
            let found = c
                .select(
                    "SELECT expires_at FROM tenant.used_tokens WHERE token_id = $1",
                    Some(1),
                    &[marker.into()],
                )
                .and_then(context::first_value::<i64>)?;
            if let Some(t) = found {
                return Ok::<_, pgrx::spi::Error>(t);
            }
            c.update(
                "INSERT INTO tenant.used_tokens (token_id, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                None,
                &[marker.into(), now_unix().into()],
            )?;
            c.select(
                "SELECT expires_at FROM tenant.used_tokens WHERE token_id = $1",
                Some(1),
                &[marker.into()],
            )
            .and_then(context::first_value::<i64>)
            .map(|t| t.unwrap_or_else(now_unix))
        })
    })
    .unwrap_or_else(|e| spi_failed(e));
    REMEMBERS_SINCE.0.set(Some(since));
    since
}

/// Records a token's first use; false if it was used before (by any session). A concurrent use
/// of the same token waits for the first user's transaction and is refused if that commits.
/// Shared by the extension's own tokens and JWTs with a `jti` (their ids never collide: one is
/// random, the other a hash of key id and jti).
pub(crate) fn consume(token_id: [u8; 16], expires_at: i64) -> bool {
    privilege::as_owner(|| {
        Spi::connect_mut(|c| {
            let mut slot = CONSUME.0.borrow_mut();
            if slot.is_none() {
                let stmt = c.prepare_mut(
                    "INSERT INTO tenant.used_tokens (token_id, expires_at) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING RETURNING 1",
                    &[
                        PgOid::BuiltIn(pg_sys::BuiltinOid::UUIDOID),
                        PgOid::BuiltIn(pg_sys::BuiltinOid::INT8OID),
                    ],
                )?;
                *slot = Some(stmt.keep());
            }
            let stmt = slot.as_ref().expect("prepared above");
            let inserted = c.update(
                stmt,
                None,
                &[Uuid::from_bytes(token_id).into(), expires_at.into()],
            )?;
            Ok::<_, pgrx::spi::Error>(!inserted.is_empty())
        })
    })
    .unwrap_or_else(|e| {
        // A failed plan may be stale (the extension was re-created in this session): drop it.
        CONSUME.0.borrow_mut().take();
        error::raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("could not record the token's use: {e}"),
            None,
            Some("set_tenant_signed writes to tenant.used_tokens: it needs a read-write transaction on the primary.".into()),
        )
    })
}

/// Deletes some expired used-token rows (never the marker). Bounded: at most 1,000 per call.
fn prune() {
    privilege::as_owner(|| {
        Spi::run_with_args(
            "DELETE FROM tenant.used_tokens WHERE token_id IN (SELECT token_id FROM tenant.used_tokens \
             WHERE expires_at < $1 AND token_id <> $2 LIMIT 1000)",
            &[now_unix().into(), Uuid::from_bytes(MARKER).into()],
        )
    })
    .unwrap_or_else(|e| spi_failed(e));
}

/// A single-use token that lets an application role enter `tenant` until it expires. For the
/// auth service.
#[pg_extern(schema = "tenant", volatile, parallel_unsafe)]
fn sign_context(
    tenant: Option<&str>,
    valid_for: default!(Option<Interval>, "'5 minutes'"),
    user_id: default!(Option<&str>, "NULL"),
    tenant_role: default!(Option<&str>, "NULL"),
) -> String {
    privilege::require_role_of(privilege::caller(), TENANT_ADMIN, "sign a tenant context");
    for (what, value, max) in [
        ("user_id", user_id, qft_jwt::MAX_USER_BYTES),
        ("tenant_role", tenant_role, qft_jwt::MAX_ROLE_BYTES),
    ] {
        if let Some(Err(why)) = value.map(|v| qft_jwt::check_text(v, max)) {
            error::invalid(
                format!("{what} {why}"),
                Some(format!(
                    "Pass NULL for none, or a string of at most {max} bytes without control characters."
                )),
            );
        }
    }
    let Some(tenant_text) = tenant else {
        error::raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "tenant must not be NULL".into(),
            None,
            None,
        )
    };
    let Some(row) = context::resolve(tenant_text) else {
        error::invalid(format!("tenant \"{tenant_text}\" does not exist"), None)
    };
    let (expires_at, positive) = Spi::get_two_with_args::<i64, bool>(
        "SELECT pg_catalog.ceil(pg_catalog.date_part('epoch', pg_catalog.now() + $1))::bigint, $1 > interval '0'",
        &[valid_for.into()],
    )
    .unwrap_or_else(|e| spi_failed(e));
    if positive != Some(true) {
        error::invalid(
            "valid_for must be a positive interval".into(),
            Some("For example '5 minutes'.".into()),
        );
    }
    // The marker exists before the token does, so a fresh table never refuses it.
    remembers_since();
    let count = SIGNED.0.get().wrapping_add(1);
    SIGNED.0.set(count);
    if count.is_multiple_of(PRUNE_EVERY) {
        prune();
    }
    let (key_id, secret) = current_key();
    token::sign(
        &Claims {
            key_id,
            tenant_id: row.id,
            issued_at: now_unix(),
            expires_at: expires_at.unwrap_or(0),
            token_id: random_bytes::<16>(),
            user: user_id.map(str::to_string),
            role: tenant_role.map(str::to_string),
        },
        &secret,
    )
}

/// Enters the tenant a valid, unused token names. Tampered, expired, foreign, retired-key or
/// already used tokens: 42501.
#[pg_extern(schema = "tenant", volatile, parallel_unsafe)]
fn set_tenant_signed(token: Option<&str>, is_local: default!(Option<bool>, false)) -> i64 {
    privilege::require_role_of(privilege::caller(), TENANT_USER, "set the tenant context");
    let token = token.unwrap_or("");
    let reject = |why: String| -> ! {
        error::denied(
            "invalid tenant context token".into(),
            Some(why),
            Some("Ask the auth service for a new token.".into()),
        )
    };
    let claims = match token::parse(token) {
        Ok((claims, _)) => claims,
        Err(e) => reject(e.describe()),
    };
    let Some(secret) = key_by_id(claims.key_id) else {
        reject(format!(
            "signing key {} is unknown or retired in this database",
            claims.key_id
        ))
    };
    let claims = match token::verify(token, &secret, now_unix(), remembers_since()) {
        Ok(claims) => claims,
        Err(e) => reject(e.describe()),
    };
    if !consume(claims.token_id, claims.expires_at) {
        reject(format!(
            "token {} has already been used (tokens are single-use)",
            token::token_id_hex(&claims.token_id)
        ));
    }
    context::enter_token(
        context::Token {
            tenant: context::TokenTenant::Id(claims.tenant_id),
            user: claims.user,
            role: claims.role,
            kind: "token",
        },
        is_local,
    )
}

/// Makes a new signing key current. Every other key stops being accepted after `grace` at the
/// latest (a key already retiring sooner keeps its earlier time); `grace => '0'` retires them all
/// at once.
#[pg_extern(schema = "tenant", volatile, parallel_unsafe)]
fn rotate_signing_key(grace: default!(Option<Interval>, "'10 minutes'")) -> i32 {
    privilege::require_role_of(privilege::caller(), TENANT_ADMIN, "rotate the signing key");
    let negative = Spi::get_one_with_args::<bool>("SELECT $1 < interval '0'", &[grace.into()])
        .unwrap_or_else(|e| spi_failed(e));
    if negative == Some(true) {
        error::invalid(
            "grace must not be negative".into(),
            Some("Pass '0' to retire every other key now.".into()),
        );
    }
    privilege::as_owner(|| {
        Spi::run_with_args(
            "UPDATE tenant.signing_keys SET retired_at = pg_catalog.now() + COALESCE($1, interval '0') \
             WHERE retired_at IS NULL OR retired_at > pg_catalog.now() + COALESCE($1, interval '0')",
            &[grace.into()],
        )
        .unwrap_or_else(|e| spi_failed(e));
        let (id, _) = insert_key();
        Spi::run_with_args(
            "SELECT tenant._audit('signing_key_rotated', NULL, NULL, pg_catalog.jsonb_build_object('key_id', $1))",
            &[id.into()],
        )
        .unwrap_or_else(|e| spi_failed(e));
        prune();
        id
    })
}
