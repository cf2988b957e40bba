//! Row-secured tables in query shapes Citus 13 plans into a backend crash (called by routing.rs's
//! planner hook, for every planning, wherever Citus is loaded).
//!
//! Citus recursively plans a distributed table it cannot push down with the rest of a query: the
//! nullable side of an outer join whose other side is a recurring relation (`(SELECT 1) s LEFT
//! JOIN dist ON true`, `ref LEFT JOIN dist ...`, `generate_series(...) LEFT JOIN dist`), or a
//! join of a local table with a distributed one. It wraps the table's range-table entry into a
//! new one-entry subquery (`WrapRteRelationIntoSubquery` copies the entry), plans that, and then
//! copies the entry again into the subquery that reads the intermediate result
//! (`CreateOuterSubquery`). Both copies keep the entry's `securityQuals` (the row-security
//! policies the rewriter attached), whose Vars keep the entry's index in the *outer* query:
//! PostgreSQL's planner follows a range-table index the subquery does not have (or one that names
//! another relation) and the backend dies (SIGSEGV in `deconstruct_jointree` or
//! `flatten_join_alias_vars`), for any policy that reads a column, for every role row security
//! applies to. Citus 13.2.2, and its main branch as of May 2026, do this.
//!
//! Two things here:
//! - `wrap_nullable`: before Citus sees a query, a row-secured table on the nullable side of an
//!   outer join becomes `(SELECT <every column> FROM table)`, the entry (and its policies) moved
//!   inside with its Vars renumbered. That is exactly the same query for PostgreSQL (the subquery
//!   is pulled up again, its policies stay security quals of the same table), and Citus plans a
//!   subquery on the nullable side as a whole, policies inside, correctly numbered. Tables with
//!   dropped columns or whose system columns the query reads, and levels with row marks, are left
//!   as they are.
//! - `refuse_misnumbered`: any remaining case (the local-table join above, a shape the wrapping
//!   skipped) shows up when Citus plans its one-entry subquery: a level-0 Var in entry `i`'s
//!   security quals that names another index (the rewriter numbers a policy's Vars with its own
//!   entry's index; nothing else puts Vars there). It is refused with SQLSTATE 0A000 before
//!   PostgreSQL or Citus plan it, so the session survives.
//!
//! Neither weakens anything: the policies stay attached to the same table, and on a Citus cluster
//! the workers apply the shards' copies of them regardless.

use crate::error;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::c_void;

/// Both steps over every query level of `parse`.
#[pg_guard]
pub unsafe extern "C-unwind" fn protect(parse: *mut pg_sys::Query) {
    if !parse.is_null() {
        crate::routing::each_query_level(parse.cast(), &mut |q| {
            refuse_misnumbered(q);
            wrap_nullable(q);
            true
        });
    }
}

unsafe fn rte_at(q: *mut pg_sys::Query, rtindex: i32) -> *mut pg_sys::RangeTblEntry {
    pg_sys::list_nth((*q).rtable, rtindex - 1).cast()
}

unsafe fn list_ptrs<T>(list: *mut pg_sys::List) -> Vec<*mut T> {
    pgrx::PgList::<T>::from_pg(list).iter_ptr().collect()
}

/// The range-table entries this level's security quals read at level 0 (None: none).
unsafe fn security_varnos(rte: *mut pg_sys::RangeTblEntry) -> Option<*mut pg_sys::Bitmapset> {
    if (*rte).securityQuals.is_null() {
        return None;
    }
    let varnos = pg_sys::pull_varnos_of_level(std::ptr::null_mut(), (*rte).securityQuals.cast(), 0);
    (!varnos.is_null()).then_some(varnos)
}

unsafe fn refuse_misnumbered(q: *mut pg_sys::Query) {
    for (i, rte) in list_ptrs::<pg_sys::RangeTblEntry>((*q).rtable)
        .into_iter()
        .enumerate()
    {
        let own = i as i32 + 1;
        let Some(varnos) = security_varnos(rte) else {
            continue;
        };
        let mut named = 0;
        if pg_sys::bms_get_singleton_member(varnos, &mut named) && named == own {
            continue;
        }
        // Schema-qualified and quoted as SQL writes it: the hint's query can be pasted.
        let table = if (*rte).rtekind == pg_sys::RTEKind::RTE_RELATION {
            let relid = (*rte).relid;
            let name = pg_sys::get_rel_name(relid);
            let nsp = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
            if name.is_null() || nsp.is_null() {
                format!("with oid {}", relid.to_u32())
            } else {
                std::ffi::CStr::from_ptr(pg_sys::quote_qualified_identifier(nsp, name))
                    .to_string_lossy()
                    .into_owned()
            }
        } else {
            "a row-secured table".into()
        };
        error::raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("Citus cannot run this query: it recursively plans table {table}, whose row security policies it would renumber wrongly"),
            Some("Citus 13 copies the policies of a table it wraps into a subquery (the nullable side of an outer join with a reference table, a function or a subquery without tables; a join with a local table) without renumbering them, and PostgreSQL would then crash; the query is refused instead.".into()),
            Some(format!("Write the table as a subquery, e.g. LEFT JOIN (SELECT * FROM {table}) alias, or join it with an inner join.")),
        );
    }
}

/// The range-table indexes at or under `node` that are on the nullable side of an outer join
/// (`nullable`: whether `node` itself is).
unsafe fn nullable_rels(node: *mut pg_sys::Node, nullable: bool, out: &mut Vec<i32>) {
    if node.is_null() {
        return;
    }
    match (*node).type_ {
        pg_sys::NodeTag::T_RangeTblRef if nullable => {
            out.push((*node.cast::<pg_sys::RangeTblRef>()).rtindex)
        }
        pg_sys::NodeTag::T_FromExpr => {
            for item in list_ptrs::<pg_sys::Node>((*node.cast::<pg_sys::FromExpr>()).fromlist) {
                nullable_rels(item, nullable, out);
            }
        }
        pg_sys::NodeTag::T_JoinExpr => {
            let j = node.cast::<pg_sys::JoinExpr>();
            let (left, right) = match (*j).jointype {
                pg_sys::JoinType::JOIN_LEFT => (nullable, true),
                pg_sys::JoinType::JOIN_RIGHT => (true, nullable),
                pg_sys::JoinType::JOIN_FULL => (true, true),
                _ => (nullable, nullable),
            };
            nullable_rels((*j).larg, left, out);
            nullable_rels((*j).rarg, right, out);
        }
        _ => {}
    }
}

/// What `reads_system_column` looks for: a Var of entry `varno` at `level` levels up, attno < 0.
struct SystemColumn {
    varno: i32,
    level: u32,
    found: bool,
}

#[pg_guard]
unsafe extern "C-unwind" fn system_column_walker(
    node: *mut pg_sys::Node,
    ctx: *mut c_void,
) -> bool {
    if node.is_null() {
        return false;
    }
    let s = &mut *ctx.cast::<SystemColumn>();
    match (*node).type_ {
        pg_sys::NodeTag::T_Var => {
            let v = node.cast::<pg_sys::Var>();
            if (*v).varno == s.varno && (*v).varlevelsup == s.level && (*v).varattno < 0 {
                s.found = true;
            }
            false
        }
        pg_sys::NodeTag::T_Query => {
            s.level += 1;
            let r = pg_sys::query_tree_walker(node.cast(), Some(system_column_walker), ctx, 0);
            s.level -= 1;
            r || s.found
        }
        _ => pg_sys::expression_tree_walker(node, Some(system_column_walker), ctx) || s.found,
    }
}

unsafe fn reads_system_column(q: *mut pg_sys::Query, varno: i32) -> bool {
    let mut s = SystemColumn {
        varno,
        level: 0,
        found: false,
    };
    pg_sys::query_tree_walker(
        q,
        Some(system_column_walker),
        (&mut s as *mut SystemColumn).cast(),
        0,
    );
    s.found
}

unsafe fn wrap_nullable(q: *mut pg_sys::Query) {
    if (*q).jointree.is_null()
        || !(*q).rowMarks.is_null()
        || !matches!(
            (*q).commandType,
            pg_sys::CmdType::CMD_SELECT | pg_sys::CmdType::CMD_UPDATE | pg_sys::CmdType::CMD_DELETE
        )
    {
        return;
    }
    let mut rels = Vec::new();
    nullable_rels((*q).jointree.cast(), false, &mut rels);
    for rtindex in rels {
        let rte = rte_at(q, rtindex);
        if (*rte).rtekind != pg_sys::RTEKind::RTE_RELATION
            || rtindex == (*q).resultRelation
            || security_varnos(rte).is_none()
            || reads_system_column(q, rtindex)
        {
            continue;
        }
        if let Some(sub) = subquery_of(q, rte, rtindex) {
            become_subquery(q, rte, sub);
        }
    }
}

/// `SELECT <every column> FROM <the relation, with its security quals renumbered to 1>`, or None
/// when the relation has a dropped column (its subquery could not have the same columns).
unsafe fn subquery_of(
    _q: *mut pg_sys::Query,
    rte: *mut pg_sys::RangeTblEntry,
    rtindex: i32,
) -> Option<*mut pg_sys::Query> {
    let rel = pg_sys::relation_open((*rte).relid, pg_sys::NoLock as _);
    let desc = pgrx::PgTupleDesc::from_pg_unchecked((*rel).rd_att);
    let mut targets = std::ptr::null_mut::<pg_sys::List>();
    let mut dropped = false;
    for i in 0..desc.len() {
        let Some(a) = desc.get(i) else {
            dropped = true;
            break;
        };
        if a.attisdropped {
            dropped = true;
            break;
        }
        let var = pg_sys::makeVar(
            1,
            (i + 1) as i16,
            a.atttypid,
            a.atttypmod,
            a.attcollation,
            0,
        );
        let name = pg_sys::pstrdup(a.attname.data.as_ptr());
        let tle = pg_sys::makeTargetEntry(var.cast(), (i + 1) as i16, name, false);
        targets = pg_sys::lappend(targets, tle.cast());
    }
    drop(desc);
    pg_sys::relation_close(rel, pg_sys::NoLock as _);
    if dropped || targets.is_null() {
        return None;
    }
    let inner = pg_sys::copyObjectImpl(rte.cast()).cast::<pg_sys::RangeTblEntry>();
    pg_sys::ChangeVarNodes((*inner).securityQuals.cast(), rtindex, 1, 0);
    let sub = PgBox::<pg_sys::Query>::alloc_node(pg_sys::NodeTag::T_Query).into_pg();
    (*sub).commandType = pg_sys::CmdType::CMD_SELECT;
    (*sub).querySource = pg_sys::QuerySource::QSRC_ORIGINAL;
    (*sub).canSetTag = true;
    (*sub).hasRowSecurity = true;
    (*sub).hasSubLinks = pg_sys::checkExprHasSubLink((*inner).securityQuals.cast());
    (*sub).rtable = pg_sys::lappend(std::ptr::null_mut(), inner.cast());
    #[cfg(feature = "pg18")]
    if (*rte).perminfoindex != 0 {
        let perminfo = pg_sys::getRTEPermissionInfo((*_q).rteperminfos, rte);
        (*sub).rteperminfos = pg_sys::lappend(std::ptr::null_mut(), perminfo.cast());
        (*inner).perminfoindex = 1;
    }
    let mut one = PgBox::<pg_sys::RangeTblRef>::alloc_node(pg_sys::NodeTag::T_RangeTblRef);
    one.rtindex = 1;
    (*sub).jointree = pg_sys::makeFromExpr(
        pg_sys::lappend(std::ptr::null_mut(), one.into_pg().cast()),
        std::ptr::null_mut(),
    );
    (*sub).targetList = targets;
    Some(sub)
}

/// Turns the relation entry into a subquery entry (as the rewriter does for a view), keeping its
/// alias and column names, so every Var of the query that reads it stays valid.
unsafe fn become_subquery(
    _q: *mut pg_sys::Query,
    rte: *mut pg_sys::RangeTblEntry,
    sub: *mut pg_sys::Query,
) {
    (*rte).rtekind = pg_sys::RTEKind::RTE_SUBQUERY;
    (*rte).subquery = sub;
    (*rte).security_barrier = false;
    (*rte).securityQuals = std::ptr::null_mut();
    (*rte).relid = pg_sys::InvalidOid;
    (*rte).relkind = 0;
    (*rte).rellockmode = 0;
    (*rte).tablesample = std::ptr::null_mut();
    (*rte).inh = false;
    #[cfg(feature = "pg15")]
    {
        (*rte).requiredPerms = 0;
        (*rte).checkAsUser = pg_sys::InvalidOid;
        (*rte).selectedCols = std::ptr::null_mut();
        (*rte).insertedCols = std::ptr::null_mut();
        (*rte).updatedCols = std::ptr::null_mut();
        (*rte).extraUpdatedCols = std::ptr::null_mut();
    }
    #[cfg(feature = "pg18")]
    {
        (*rte).perminfoindex = 0;
    }
}
