//! Routing a tenant-pinned query to one shard on a Citus coordinator.
//!
//! Citus prunes shards from the query's own quals: `SELECT ... FROM projects` without
//! `tenant_id = ...` in its WHERE fans out to every shard, where the shards' policies then drop
//! every other tenant's rows. Citus never folds `current_tenant_id()` (a STABLE call) for a
//! SELECT, so the policy itself cannot route.
//!
//! So this library's `planner_hook` (installed when the library loads, which is after Citus's
//! preload: it runs before Citus's distributed planner and hands it the query) adds
//! `<tenant column> = <current tenant as a Const>` to every query level where a table is
//! - an isolated table (`tenant.isolated_tables`, without shared rows) whose Citus distribution
//!   column is its tenant column,
//! - subject to row security for the user that checks it (`check_enable_rls`: no fold for its
//!   owner, a superuser, a BYPASSRLS role, or with row_security off),
//! - and not on the nullable side of an outer join (the qual goes into that level's WHERE),
//!
//! while a *verified* transaction-scoped context is in force on this coordinator
//! (`current_tenant_id()`, which on a coordinator requires the node context the workers get to
//! agree) and cross-tenant mode is off. The added qual only repeats what the shards' policies
//! enforce anyway (rows of other tenants are invisible there), so it can only restrict, never
//! widen: the policies still decide. INSERT (also INSERT ... SELECT, whose pinned SELECT would make
//! Citus COPY the rows into the shards, which row security refuses) and MERGE are left alone,
//! with everything under them.
//!
//! Cached plans: a plan with a folded tenant carries a plan-invalidation item
//! (`PlanInvalItem` on PROCOID with a hash of its own). Whenever the node context changes to name
//! another tenant or cross-tenant mode (its assign hook, `on_node_context`), this backend's
//! callbacks for that item run, and every cached plan folded for the earlier tenant is re-planned
//! before its next run. A context being cleared (COMMIT) invalidates nothing: a plan folded for
//! tenant A run without a context sees nothing either way.
//!
//! Single node (no Citus loaded): the hook passes every query through untouched.

use crate::context;
use crate::nesting::Nesting;
use crate::privilege;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void};

struct Backend<T>(T);
// SAFETY: a PostgreSQL backend runs our code on one thread only.
unsafe impl<T> Sync for Backend<T> {}

static PREV: Backend<Cell<pg_sys::planner_hook_type>> = Backend(Cell::new(None));
/// Nesting of the hook: only the outermost planning folds (Citus plans subqueries again, and the
/// lookups below run queries of their own).
static DEPTH: Nesting = Nesting::new();
/// The tenant cached plans of this backend were folded for, if any since the last invalidation.
static FOLDED: Backend<Cell<Option<i64>>> = Backend(Cell::new(None));
/// Per table: the tenant column that is also its distribution column (attnum), or None.
type TenantColumns = HashMap<u32, Option<i16>>;
static TABLES: Backend<RefCell<Option<TenantColumns>>> = Backend(RefCell::new(None));

/// The hash of our plan-invalidation item (a PROCOID entry no function is likely to share; a
/// collision only re-plans more).
const INVAL_HASH: u32 = 0x71f7_0a7e;

pub fn init() {
    unsafe {
        PREV.0.set(pg_sys::planner_hook);
        pg_sys::planner_hook = Some(planner);
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(subxact_callback), std::ptr::null_mut());
    }
}

/// Part of the library's one relcache callback (context.rs registers it: the slots are few).
pub fn relcache_changed(relid: pg_sys::Oid) {
    // No catalog access here: forget what we know (all of it, or that table).
    let Ok(mut tables) = TABLES.0.try_borrow_mut() else {
        return;
    };
    if relid == pg_sys::InvalidOid {
        *tables = None;
    } else if let Some(t) = tables.as_mut() {
        t.remove(&relid.to_u32());
    }
}

/// Called by the node context's assign hook with the tenant and cross-tenant mode the new value
/// claims (None when it was cleared; unverified: invalidating more is always safe). Only flags of
/// cached plans are flipped, which is safe in an assign hook.
pub fn on_node_context(claim: Option<(i64, bool)>) {
    let Some(folded) = FOLDED.0.get() else {
        return;
    };
    let Some((tenant, cross)) = claim else {
        return; // cleared: a plan folded for `folded` sees nothing without a context anyway
    };
    if tenant != folded || cross {
        invalidate();
    }
}

fn invalidate() {
    FOLDED.0.set(None);
    unsafe {
        pg_sys::CallSyscacheCallbacks(pg_sys::SysCacheIdentifier::PROCOID as c_int, INVAL_HASH)
    };
}

// PostgreSQL's planner called directly, not through pgrx's guarded binding: that one turns an
// ERROR into a Rust panic, which could not unwind out of this unguarded hook (and re-raising it
// would lose the error's fields), as cross_audit.rs does for the executor.
unsafe extern "C" {
    #[link_name = "standard_planner"]
    fn raw_standard_planner(
        parse: *mut pg_sys::Query,
        query_string: *const c_char,
        cursor_options: c_int,
        bound_params: pg_sys::ParamListInfo,
    ) -> *mut pg_sys::PlannedStmt;
}

// The hook itself is not #[pg_guard] and holds nothing to drop: PostgreSQL's ERRORs from the
// planners below pass through it as they are, and its frame stays small (planning nests: SPI
// inside functions inside planning), as cross_audit.rs's hooks do. What may allocate or raise is
// in the guarded functions it calls. DEPTH is put back by the (sub)transaction callbacks when an
// ERROR skips the reset.
unsafe extern "C-unwind" fn planner(
    parse: *mut pg_sys::Query,
    query_string: *const c_char,
    cursor_options: c_int,
    bound_params: pg_sys::ParamListInfo,
) -> *mut pg_sys::PlannedStmt {
    let depth = DEPTH.get();
    let citus = crate::citus::loaded();
    if citus {
        // Every planning, nested ones included: Citus plans the subqueries it makes again.
        crate::security_quals::protect(parse);
    }
    let folded = if depth == 0 && citus {
        try_fold(parse)
    } else {
        0
    };
    DEPTH.set(depth + 1);
    let stmt = match PREV.0.get() {
        Some(prev) => prev(parse, query_string, cursor_options, bound_params),
        None => raw_standard_planner(parse, query_string, cursor_options, bound_params),
    };
    DEPTH.set(depth);
    if folded != 0 {
        mark_folded(stmt, folded);
    }
    stmt
}

/// The fold on a Citus coordinator: the tenant folded in, or 0.
#[pg_guard]
unsafe extern "C-unwind" fn try_fold(parse: *mut pg_sys::Query) -> i64 {
    if crate::citus::node() != crate::citus::Node::Coordinator {
        return 0;
    }
    // The lookups below plan queries of their own: not folded.
    DEPTH.set(1);
    PgTryBuilder::new(|| fold(parse).unwrap_or(0))
        .finally(|| DEPTH.set(0))
        .execute()
}

/// A plan with a folded tenant: re-planned when the node context names another tenant.
#[pg_guard]
unsafe extern "C-unwind" fn mark_folded(stmt: *mut pg_sys::PlannedStmt, tenant: i64) {
    let mut item = PgBox::<pg_sys::PlanInvalItem>::alloc_node(pg_sys::NodeTag::T_PlanInvalItem);
    item.cacheId = pg_sys::SysCacheIdentifier::PROCOID as c_int;
    item.hashValue = INVAL_HASH;
    (*stmt).invalItems = pg_sys::lappend((*stmt).invalItems, item.into_pg().cast());
    if FOLDED.0.get().is_some_and(|t| t != tenant) {
        invalidate();
    }
    FOLDED.0.set(Some(tenant));
}

#[pg_guard]
unsafe extern "C-unwind" fn xact_callback(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    DEPTH.on_xact(event);
}

#[pg_guard]
unsafe extern "C-unwind" fn subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    my_subid: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut c_void,
) {
    DEPTH.on_subxact(event, my_subid);
}

/// What the fold puts in: the tenant as a value of the tenant column's type.
struct Fold {
    tenant: i64,
    uuid: Option<pgrx::datum::Uuid>,
    any: bool,
}

/// Adds the quals; returns the tenant when anything was folded.
unsafe fn fold(parse: *mut pg_sys::Query) -> Option<i64> {
    // The node context first: without one there is nothing to fold, and current_tenant_id()
    // is not asked (it refuses pg_dump sessions without a context, and this runs for every
    // query, the dump's catalog queries included).
    let claims = crate::citus::node_claims()?;
    if parse.is_null() || claims.cross || claims.tenant <= 0 || context::cross_tenant_active() {
        return None;
    }
    let tenant = claims.tenant;
    if context::current_tenant_id() != Some(tenant) {
        return None;
    }
    let mut f = Fold {
        tenant,
        uuid: None,
        any: false,
    };
    each_query_level(parse.cast(), &mut |q| {
        // Not into INSERT (... SELECT) or MERGE: a pinned SELECT under an INSERT makes Citus
        // pull it to the coordinator and COPY the rows into the shards, which row security
        // refuses there; Citus plans those itself as before.
        let descend = matches!(
            (*q).commandType,
            pg_sys::CmdType::CMD_SELECT | pg_sys::CmdType::CMD_UPDATE | pg_sys::CmdType::CMD_DELETE
        );
        if descend {
            fold_level(q, &mut f);
        }
        descend
    });
    f.any.then_some(tenant)
}

/// Calls `visit` for every query level under `node` (sublinks, subqueries, CTEs), outermost
/// first; a level for which it returns false is not descended into.
pub unsafe fn each_query_level(
    node: *mut pg_sys::Node,
    visit: &mut dyn FnMut(*mut pg_sys::Query) -> bool,
) {
    let mut visit = visit;
    walk_levels(
        node,
        (&mut visit as *mut &mut dyn FnMut(*mut pg_sys::Query) -> bool).cast(),
    );
}

#[pg_guard]
unsafe extern "C-unwind" fn walk_levels(node: *mut pg_sys::Node, ctx: *mut c_void) -> bool {
    if node.is_null() {
        return false;
    }
    if (*node).type_ == pg_sys::NodeTag::T_Query {
        let q = node.cast::<pg_sys::Query>();
        let visit = &mut *ctx.cast::<&mut dyn FnMut(*mut pg_sys::Query) -> bool>();
        if !visit(q) {
            return false;
        }
        return pg_sys::query_tree_walker(q, Some(walk_levels), ctx, 0);
    }
    pg_sys::expression_tree_walker(node, Some(walk_levels), ctx)
}

/// The range-table indexes at this level whose rows a WHERE qual may restrict without changing
/// the query's meaning: FROM items and inner joins, the preserved side of a LEFT/RIGHT join.
unsafe fn restrictable(node: *mut pg_sys::Node, out: &mut Vec<i32>) {
    if node.is_null() {
        return;
    }
    match (*node).type_ {
        pg_sys::NodeTag::T_RangeTblRef => out.push((*node.cast::<pg_sys::RangeTblRef>()).rtindex),
        pg_sys::NodeTag::T_FromExpr => {
            let from = node.cast::<pg_sys::FromExpr>();
            for item in list_ptrs((*from).fromlist) {
                restrictable(item, out);
            }
        }
        pg_sys::NodeTag::T_JoinExpr => {
            let j = node.cast::<pg_sys::JoinExpr>();
            match (*j).jointype {
                pg_sys::JoinType::JOIN_INNER => {
                    restrictable((*j).larg, out);
                    restrictable((*j).rarg, out);
                }
                pg_sys::JoinType::JOIN_LEFT => restrictable((*j).larg, out),
                pg_sys::JoinType::JOIN_RIGHT => restrictable((*j).rarg, out),
                _ => {}
            }
        }
        _ => {}
    }
}

unsafe fn list_ptrs(list: *mut pg_sys::List) -> Vec<*mut pg_sys::Node> {
    let list = pgrx::PgList::<pg_sys::Node>::from_pg(list);
    list.iter_ptr().collect()
}

unsafe fn check_as_user(_q: *mut pg_sys::Query, rte: *mut pg_sys::RangeTblEntry) -> pg_sys::Oid {
    #[cfg(feature = "pg15")]
    {
        (*rte).checkAsUser
    }
    #[cfg(feature = "pg18")]
    {
        if (*rte).perminfoindex == 0 {
            return pg_sys::InvalidOid;
        }
        (*pg_sys::getRTEPermissionInfo((*_q).rteperminfos, rte)).checkAsUser
    }
}

unsafe fn fold_level(q: *mut pg_sys::Query, f: &mut Fold) {
    if (*q).jointree.is_null() {
        return;
    }
    let mut rels = Vec::new();
    restrictable((*q).jointree.cast(), &mut rels);
    for rtindex in rels {
        let rte = pg_sys::list_nth((*q).rtable, rtindex - 1).cast::<pg_sys::RangeTblEntry>();
        if (*rte).rtekind != pg_sys::RTEKind::RTE_RELATION {
            continue;
        }
        let relid = (*rte).relid;
        let Some(attnum) = tenant_column(relid) else {
            continue;
        };
        if pg_sys::check_enable_rls(relid, check_as_user(q, rte), true)
            != pg_sys::CheckEnableRlsResult::RLS_ENABLED as c_int
        {
            continue;
        }
        if already_pinned((*(*q).jointree).quals, rtindex, attnum) {
            continue; // Citus prunes by the query's own equality; a fold would only tie the plan
        }
        let Some(qual) = equality(rtindex, relid, attnum, f) else {
            continue;
        };
        let j = (*q).jointree;
        (*j).quals = if (*j).quals.is_null() {
            qual
        } else {
            pg_sys::make_and_qual((*j).quals, qual)
        };
        f.any = true;
    }
}

/// Whether this level's WHERE already pins the tenant column to one value the way Citus's own
/// fast-path router planner recognises (Citus 13, `DistKeyInSimpleOpExpression`): in its top-level
/// AND list, `col = Const` (not NULL) or `col = $n` (an external parameter), either side, each
/// operand under implicit coercions only, with an operator that is a btree equality (also a
/// cross-type one: `bigint_col = 3`, an integer literal, is `int84eq`). Citus routes such a
/// query by itself (a Param by deferred pruning), so it is left as it is: folding it too would
/// only tie its cached plan to one tenant, and a second appearance of the distribution column
/// takes the query off Citus's fast path (planned in full on every execution). Anything else is
/// folded; the fold only ever narrows what a query reads, so a shape missed here costs planning
/// time, never isolation.
unsafe fn already_pinned(quals: *mut pg_sys::Node, rtindex: i32, attnum: i16) -> bool {
    if quals.is_null() {
        return false;
    }
    let conjuncts = match (*quals).type_ {
        pg_sys::NodeTag::T_BoolExpr
            if (*quals.cast::<pg_sys::BoolExpr>()).boolop == pg_sys::BoolExprType::AND_EXPR =>
        {
            list_ptrs((*quals.cast::<pg_sys::BoolExpr>()).args)
        }
        pg_sys::NodeTag::T_List => list_ptrs(quals.cast()),
        _ => vec![quals],
    };
    conjuncts.into_iter().any(|c| pins(c, rtindex, attnum))
}

unsafe fn pins(node: *mut pg_sys::Node, rtindex: i32, attnum: i16) -> bool {
    if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_OpExpr {
        return false;
    }
    let op = node.cast::<pg_sys::OpExpr>();
    let args = list_ptrs((*op).args);
    let [a, b] = args[..] else {
        return false;
    };
    let (a, b) = (
        pg_sys::strip_implicit_coercions(a),
        pg_sys::strip_implicit_coercions(b),
    );
    let is_col = |n: *mut pg_sys::Node| {
        !n.is_null() && (*n).type_ == pg_sys::NodeTag::T_Var && {
            let v = n.cast::<pg_sys::Var>();
            (*v).varno == rtindex && (*v).varattno == attnum && (*v).varlevelsup == 0
        }
    };
    let is_value = |n: *mut pg_sys::Node| {
        !n.is_null()
            && match (*n).type_ {
                pg_sys::NodeTag::T_Const => !(*n.cast::<pg_sys::Const>()).constisnull,
                pg_sys::NodeTag::T_Param => {
                    (*n.cast::<pg_sys::Param>()).paramkind == pg_sys::ParamKind::PARAM_EXTERN
                }
                _ => false,
            }
    };
    if !((is_col(a) && is_value(b)) || (is_col(b) && is_value(a))) {
        return false;
    }
    // A btree equality operator (of any opfamily, cross-type ones included): what Citus's
    // OperatorImplementsEquality accepts.
    !pg_sys::get_mergejoin_opfamilies((*op).opno).is_null()
}

/// `<rtindex>.<attnum> = <tenant>` for the column's type (bigint, integer, uuid), else None.
unsafe fn equality(
    rtindex: i32,
    relid: pg_sys::Oid,
    attnum: i16,
    f: &mut Fold,
) -> Option<*mut pg_sys::Node> {
    let (mut typid, mut typmod, mut coll) = (pg_sys::InvalidOid, 0, pg_sys::InvalidOid);
    pg_sys::get_atttypetypmodcoll(relid, attnum, &mut typid, &mut typmod, &mut coll);
    let value = match typid {
        pg_sys::INT8OID => f.tenant.into_datum(),
        pg_sys::INT4OID => i32::try_from(f.tenant).ok().into_datum(),
        pg_sys::UUIDOID => {
            if f.uuid.is_none() {
                f.uuid = context::current_tenant_uuid();
            }
            f.uuid.into_datum()
        }
        _ => None,
    }?;
    let tc = pg_sys::lookup_type_cache(typid, pg_sys::TYPECACHE_EQ_OPR as c_int);
    if tc.is_null() || (*tc).eq_opr == pg_sys::InvalidOid {
        return None;
    }
    let (mut len, mut byval) = (0i16, false);
    pg_sys::get_typlenbyval(typid, &mut len, &mut byval);
    let var = pg_sys::makeVar(rtindex as _, attnum, typid, typmod, coll, 0);
    let constant = pg_sys::makeConst(typid, -1, coll, len.into(), value, false, byval);
    let op = pg_sys::make_opclause(
        (*tc).eq_opr,
        pg_sys::BOOLOID,
        false,
        var.cast(),
        constant.cast(),
        pg_sys::InvalidOid,
        coll,
    );
    pg_sys::set_opfuncid(op.cast());
    Some(op.cast())
}

/// The attnum of `relid`'s tenant column when it is an isolated table without shared rows whose
/// Citus distribution column is that tenant column (cached per backend until the table's relcache
/// entry is invalidated: enable/disable_isolation and create/undistribute_table all change it).
fn tenant_column(relid: pg_sys::Oid) -> Option<i16> {
    let key = relid.to_u32();
    if let Some(hit) = TABLES
        .0
        .borrow()
        .as_ref()
        .and_then(|t| t.get(&key).copied())
    {
        return hit;
    }
    // Read-only SPI (pgrx's get_one would assign the transaction an id).
    let found = privilege::as_owner(|| {
        Spi::connect(|c| {
            context::first_value::<i16>(c.select(
                "SELECT a.attnum FROM tenant.isolated_tables i
               JOIN pg_catalog.pg_dist_partition p ON p.logicalrelid OPERATOR(pg_catalog.=) i.relid
               JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.relid
                                             AND a.attname OPERATOR(pg_catalog.=) i.tenant_column
              WHERE i.relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid::pg_catalog.regclass
                AND NOT i.allow_shared_rows AND p.partmethod OPERATOR(pg_catalog.=) 'h'
                AND pg_catalog.column_to_column_name(p.logicalrelid, p.partkey)
                    OPERATOR(pg_catalog.=) i.tenant_column::pg_catalog.text",
                Some(1),
                &[relid.into()],
            )?)
        })
    })
    .unwrap_or(None);
    TABLES
        .0
        .borrow_mut()
        .get_or_insert_with(HashMap::new)
        .insert(key, found);
    found
}
