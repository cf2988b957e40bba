//! Signed tenant context: `sign_context` for the auth service (tenant_admin) and
//! `set_tenant_signed` for application roles. Keys live in `tenant.signing_keys`, readable only by
//! the registry owner; the token logic itself is in `token.rs`.

use crate::context;
use crate::error;
use crate::privilege::{self, TENANT_ADMIN, TENANT_USER};
use crate::token::{self, Claims};
use pgrx::datum::Interval;
use pgrx::pg_sys;
use pgrx::prelude::*;

const PG_EPOCH_UNIX: i64 = 946_684_800;

fn now_unix() -> i64 {
    (unsafe { pg_sys::GetCurrentTimestamp() }) / 1_000_000 + PG_EPOCH_UNIX
}

fn fresh_secret() -> Vec<u8> {
    let mut secret = vec![0u8; 32];
    if !unsafe { pg_sys::pg_strong_random(secret.as_mut_ptr().cast(), secret.len()) } {
        error::raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "could not generate a random signing key".into(),
            None,
            None,
        );
    }
    secret
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
    let secret = fresh_secret();
    let id = Spi::get_one_with_args::<i32>(
        "INSERT INTO tenant.signing_keys(secret) VALUES ($1) RETURNING id",
        &[secret.clone().into()],
    )
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

/// A token that lets an application role enter `tenant` until it expires. For the auth service.
#[pg_extern(volatile, parallel_unsafe)]
fn sign_context(
    tenant: Option<&str>,
    valid_for: default!(Option<Interval>, "'5 minutes'"),
) -> String {
    privilege::require_role_of(privilege::caller(), TENANT_ADMIN, "sign a tenant context");
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
    let (key_id, secret) = current_key();
    token::sign(
        &Claims {
            key_id,
            tenant_id: row.id,
            expires_at: expires_at.unwrap_or(0),
        },
        &secret,
    )
}

/// Enters the tenant a valid token names. Tampered, expired or foreign tokens: 42501.
#[pg_extern(volatile, parallel_unsafe)]
fn set_tenant_signed(token: Option<&str>, is_local: default!(bool, false)) -> i64 {
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
    match token::verify(token, &secret, now_unix()) {
        Ok(claims) => context::enter_signed(claims.tenant_id, is_local),
        Err(e) => reject(e.describe()),
    }
}

/// Makes a new signing key current. Tokens signed with older keys stay valid for `grace`.
#[pg_extern(volatile, parallel_unsafe)]
fn rotate_signing_key(grace: default!(Option<Interval>, "'10 minutes'")) -> i32 {
    privilege::require_role_of(privilege::caller(), TENANT_ADMIN, "rotate the signing key");
    privilege::as_owner(|| {
        Spi::run_with_args(
            "UPDATE tenant.signing_keys SET retired_at = pg_catalog.now() + COALESCE($1, interval '0') \
             WHERE retired_at IS NULL",
            &[grace.into()],
        )
        .unwrap_or_else(|e| spi_failed(e));
        let (id, _) = insert_key();
        Spi::run_with_args(
            "SELECT tenant._audit('signing_key_rotated', NULL, NULL, pg_catalog.jsonb_build_object('key_id', $1))",
            &[id.into()],
        )
        .unwrap_or_else(|e| spi_failed(e));
        id
    })
}
