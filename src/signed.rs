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
use std::cell::Cell;

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
///
/// Written straight into the table and its primary key, without SPI, a plan or a role switch
/// (the request path's dearest part when it was an `INSERT ... ON CONFLICT`). A lock on the token
/// id, held only around the insert, serialises its users there. The row goes in with a partial
/// unique check of the primary key (one descent; no wait, no error); if the index already holds
/// an entry for the id, the row is taken back and a dirty-snapshot probe says whose the entry is —
/// committed or this transaction's own: used; another transaction's still in progress: wait for
/// that transaction (a `transactionid` lock, as an `INSERT` would), then try again. No code runs
/// but the table's and its index's access methods: the table has no triggers, defaults or
/// constraints the caller could have planted (the owner alone can alter it).
pub(crate) fn consume(token_id: [u8; 16], expires_at: i64) -> bool {
    unsafe {
        if pg_sys::RecoveryInProgress() || pg_sys::XactReadOnly {
            error::raise(
                PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
                "cannot record the token's use in a read-only transaction".into(),
                Some(
                    "Tokens are single-use: using one writes its id to tenant.used_tokens.".into(),
                ),
                Some("Call it in a read-write transaction on the primary.".into()),
            );
        }
        let heap = pg_sys::table_open(used_tokens_oid(), pg_sys::RowExclusiveLock as i32);
        #[cfg(not(feature = "pg18"))]
        let pk = pg_sys::RelationGetPrimaryKeyIndex(heap);
        #[cfg(feature = "pg18")]
        let pk = pg_sys::RelationGetPrimaryKeyIndex(heap, false);
        if pk == pg_sys::InvalidOid {
            error::raise(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                "tenant.used_tokens has no primary key".into(),
                None,
                Some("Re-create the extension's tables: ALTER EXTENSION qualityfoundry_tenant UPDATE, or reinstall.".into()),
            );
        }
        // The insert below maintains the primary key alone and fires nothing: an index or a
        // trigger someone added to the table would be left wrong or skipped, so refuse instead.
        let indexes = pg_sys::RelationGetIndexList(heap);
        let index_count = if indexes.is_null() {
            0
        } else {
            (*indexes).length
        };
        pg_sys::list_free(indexes);
        // (trigdesc, not relhastriggers, which stays set after the last trigger is dropped.)
        if index_count != 1 || !(*heap).trigdesc.is_null() {
            error::raise(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "tenant.used_tokens has indexes or triggers besides its primary key".into(),
                Some("Using a signed token writes its id straight into the table and its primary key, which maintains nothing else.".into()),
                Some("Drop the indexes and triggers added to tenant.used_tokens.".into()),
            );
        }
        let index = pg_sys::index_open(pk, pg_sys::RowExclusiveLock as i32);
        // A uuid Datum points at its 16 bytes (pg_uuid_t).
        let mut id = token_id;
        let id_datum = pg_sys::Datum::from(id.as_mut_ptr());
        let tag = token_lock_tag(&token_id);
        let first_use = loop {
            pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as i32, false, false);
            let (inserted, mut tid) = insert(heap, index, id_datum, expires_at);
            if inserted {
                pg_sys::LockRelease(&tag, pg_sys::ExclusiveLock as i32, false);
                break true;
            }
            // The index holds another entry for the id: take our row back, then see whose it is.
            pg_sys::CommandCounterIncrement();
            pg_sys::simple_heap_delete(heap, &mut tid);
            let found = probe(heap, index, id_datum);
            pg_sys::LockRelease(&tag, pg_sys::ExclusiveLock as i32, false);
            match found {
                Probe::Used => break false,
                Probe::InProgress(xid, mut tid) => pg_sys::XactLockTableWait(
                    xid,
                    heap,
                    &mut tid,
                    pg_sys::XLTW_Oper::XLTW_InsertIndex,
                ),
                // That transaction ended (rolled back) in between: try again.
                Probe::Unused => {}
            }
        };
        // The table and index locks stay until the transaction ends, like an INSERT's.
        pg_sys::index_close(index, pg_sys::NoLock as i32);
        pg_sys::table_close(heap, pg_sys::NoLock as i32);
        first_use
    }
}

/// Inserts a row for the id and its primary-key entry; false (the row's tid to take back) when
/// the index already holds a live or in-progress entry for it (a partial unique check: no wait,
/// no error).
unsafe fn insert(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    id: pg_sys::Datum,
    expires_at: i64,
) -> (bool, pg_sys::ItemPointerData) {
    unsafe {
        let mut values = [id, pg_sys::Datum::from(expires_at)];
        let mut nulls = [false, false];
        let tuple =
            pg_sys::heap_form_tuple((*heap).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
        pg_sys::simple_heap_insert(heap, tuple);
        let mut key = [id];
        let mut key_null = [false];
        let unique = pg_sys::index_insert(
            index,
            key.as_mut_ptr(),
            key_null.as_mut_ptr(),
            &mut (*tuple).t_self,
            heap,
            pg_sys::IndexUniqueCheck::UNIQUE_CHECK_PARTIAL,
            false,
            pg_sys::BuildIndexInfo(index),
        );
        let tid = (*tuple).t_self;
        pg_sys::heap_freetuple(tuple);
        (unique, tid)
    }
}

/// `tenant.used_tokens`, looked up by name (a re-created extension has a new table).
fn used_tokens_oid() -> pg_sys::Oid {
    unsafe {
        let schema = pg_sys::get_namespace_oid(c"tenant".as_ptr(), false);
        let oid = pg_sys::get_relname_relid(c"used_tokens".as_ptr(), schema);
        if oid == pg_sys::InvalidOid {
            error::raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                "relation \"tenant.used_tokens\" does not exist".into(),
                None,
                Some("Re-create the extension's tables: ALTER EXTENSION qualityfoundry_tenant UPDATE, or reinstall.".into()),
            );
        }
        oid
    }
}

/// The lock that serialises the users of one token id from probe to insert: an advisory-type tag whose
/// last field (`objsubid` in `pg_locks`) no SQL function can take (`pg_advisory_*` use 1 and 2),
/// so no application can hold it to make another session wait.
fn token_lock_tag(token_id: &[u8; 16]) -> pg_sys::LOCKTAG {
    let word = |i: usize| {
        u32::from_be_bytes([
            token_id[i],
            token_id[i + 1],
            token_id[i + 2],
            token_id[i + 3],
        ])
    };
    pg_sys::LOCKTAG {
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: word(0) ^ word(8),
        locktag_field3: word(4) ^ word(12),
        locktag_field4: TOKEN_LOCK_SUBID,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    }
}

/// The `objsubid` of the token locks (see [`token_lock_tag`]).
const TOKEN_LOCK_SUBID: u16 = 0x5154;

/// What the primary key holds for a token id.
enum Probe {
    Unused,
    /// Committed, or this transaction's own (a dirty snapshot sees both).
    Used,
    /// Inserted by this other transaction, still in progress (its row's tid).
    InProgress(pg_sys::TransactionId, pg_sys::ItemPointerData),
}

unsafe fn probe(heap: pg_sys::Relation, index: pg_sys::Relation, id: pg_sys::Datum) -> Probe {
    unsafe {
        let mut snapshot: pg_sys::SnapshotData = std::mem::zeroed();
        snapshot.snapshot_type = pg_sys::SnapshotType::SNAPSHOT_DIRTY;
        let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
        pg_sys::ScanKeyInit(
            &mut key,
            1,
            pg_sys::BTEqualStrategyNumber as u16,
            pg_sys::RegProcedure::from(pg_sys::F_UUID_EQ),
            id,
        );
        #[cfg(not(feature = "pg18"))]
        let scan = pg_sys::index_beginscan(heap, index, &mut snapshot, 1, 0);
        #[cfg(feature = "pg18")]
        let scan = pg_sys::index_beginscan(heap, index, &mut snapshot, std::ptr::null_mut(), 1, 0);
        pg_sys::index_rescan(scan, &mut key, 1, std::ptr::null_mut(), 0);
        let slot = pg_sys::table_slot_create(heap, std::ptr::null_mut());
        let found = if pg_sys::index_getnext_slot(
            scan,
            pg_sys::ScanDirection::ForwardScanDirection,
            slot,
        ) {
            // The dirty snapshot names an inserter that is neither committed nor this transaction.
            if snapshot.xmin != pg_sys::InvalidTransactionId {
                Probe::InProgress(snapshot.xmin, (*slot).tts_tid)
            } else {
                Probe::Used
            }
        } else {
            Probe::Unused
        };
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::index_endscan(scan);
        found
    }
}

/// A fresh token id: the time in microseconds (big-endian), then 8 random bytes. Unique without
/// being secret (the MAC makes a token, not its id); time-ordered so that recording uses appends
/// to the right edge of `used_tokens`' primary key, where a B-tree insert skips the descent.
fn new_token_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    id[..8].copy_from_slice(&now.to_be_bytes());
    id[8..].copy_from_slice(&random_bytes::<8>());
    id
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
            token_id: new_token_id(),
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
