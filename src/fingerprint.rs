//! `tenant._tenant_schema_fingerprint_rs(schema, tenant_id)`: what pinning
//! (`tenant._pin_unpinned`) and the problem inventory (`tenant._tenant_schema_problems`) of a
//! tenant schema read, in one string (see `tenant._tenant_schema_fingerprint` in
//! `sql/schemas.sql` for what it holds and why). migrate_all computes it once per schema and step,
//! so it reads the catalogs directly — the system caches and index scans of pg_depend, pg_policy,
//! pg_attrdef and pg_inherits — instead of running a catalog query whose executor start-up and
//! relation locks cost more than the rest of a small step. The two extension tables it reads
//! (`role_limits`, `isolated_tables`) are read through their primary keys.
//!
//! Only equality matters: two equal strings mean both checks would find what they found before.
//! Each section is sorted by oid, so the string does not depend on scan order.

use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use std::ffi::CStr;
use std::fmt::Write;

// Catalog relations and indexes (fixed oids of every PostgreSQL release).
const PG_CLASS: u32 = 1259;
const PG_PROC: u32 = 1255;
const PG_TYPE: u32 = 1247;
const PG_NAMESPACE: u32 = 2615;
const PG_STATISTIC_EXT: u32 = 3381;
const PG_DEPEND: u32 = 2608;
const PG_DEPEND_DEPENDER_INDEX: u32 = 2673;
const PG_DEPEND_REFERENCE_INDEX: u32 = 2674;
const PG_POLICY: u32 = 3256;
const PG_POLICY_POLRELID_POLNAME_INDEX: u32 = 3258;
const PG_ATTRDEF: u32 = 2604;
const PG_ATTRDEF_ADRELID_ADNUM_INDEX: u32 = 2656;
const PG_INHERITS: u32 = 2611;
const PG_ATTRIBUTE: u32 = 1249;
const PG_ATTRIBUTE_RELID_ATTNUM_INDEX: u32 = 2659;
const PG_INHERITS_RELID_SEQNO_INDEX: u32 = 2680;

// The fixed-width heads of the catalog rows read through index scans (pgrx binds no header for
// these catalogs, nor pg_statistic_ext on 18); the layouts are those of catalog/pg_*.h, whose
// leading columns are the same from 15 to 18.
#[repr(C)]
struct FormDepend {
    classid: Oid,
    objid: Oid,
    objsubid: i32,
    refclassid: Oid,
    refobjid: Oid,
    refobjsubid: i32,
    deptype: u8,
}
#[repr(C)]
struct FormPolicy {
    oid: Oid,
    polname: pg_sys::NameData,
    polrelid: Oid,
}
#[repr(C)]
struct FormAttrdef {
    oid: Oid,
    adrelid: Oid,
    adnum: i16,
}
#[repr(C)]
struct FormStatisticExt {
    oid: Oid,
    stxrelid: Oid,
    stxname: pg_sys::NameData,
    stxnamespace: Oid,
    stxowner: Oid,
}
#[repr(C)]
struct FormInherits {
    inhrelid: Oid,
    inhparent: Oid,
}

// Heap attribute numbers used as scan keys and to read variable-width columns.
const ANUM_DEPEND_CLASSID: i16 = 1;
const ANUM_DEPEND_OBJID: i16 = 2;
const ANUM_DEPEND_REFCLASSID: i16 = 4;
const ANUM_DEPEND_REFOBJID: i16 = 5;
const ANUM_POLICY_POLRELID: i16 = 3;
const ANUM_POLICY_POLROLES: usize = 6;
const ANUM_ATTRDEF_ADRELID: i16 = 2;
const ANUM_INHERITS_INHRELID: i16 = 1;
const ANUM_ATTRIBUTE_ATTRELID: i16 = 1;

const PG_EXTENSION: u32 = 3079;
const PG_EXTENSION_OID_INDEX: u32 = 3080;
const ANUM_EXTENSION_OID: i16 = 1;
const ANUM_EXTENSION_EXTVERSION: usize = 6;

/// The installed version of the extension (its SQL: the code of both checks), then the row
/// versions (raw xmin, ctid) of the `role_limits` rows of `limited` and the `isolated_tables` rows
/// of `isolated`, through their primary keys.
unsafe fn extension_rows(cats: &mut Catalogs, limited: &[Oid], isolated: &[Oid]) -> String {
    let mut out = String::new();
    unsafe {
        let mut k = [oid_key(ANUM_EXTENSION_OID, crate::migrate::extension_oid())];
        cats.scan(PG_EXTENSION, PG_EXTENSION_OID_INDEX, &mut k, |tup, desc| {
            if let Some(v) = column::<String>(tup, desc, ANUM_EXTENSION_EXTVERSION) {
                out.push_str(&v);
            }
        });
        out.push('\n');
        let tenant = pg_sys::get_namespace_oid(c"tenant".as_ptr(), false);
        for (table, index, rels) in [
            (c"role_limits", c"role_limits_pkey", limited),
            (c"isolated_tables", c"isolated_tables_pkey", isolated),
        ] {
            let table = pg_sys::get_relname_relid(table.as_ptr(), tenant);
            let index = pg_sys::get_relname_relid(index.as_ptr(), tenant);
            let mut rows: Vec<(u32, String)> = Vec::new();
            for rel in rels {
                let mut k = [oid_key(1, *rel)];
                cats.scan(table.to_u32(), index.to_u32(), &mut k, |tup, _| {
                    rows.push((rel.to_u32(), version(tup)));
                });
            }
            rows.sort();
            for (rel, v) in rows {
                let _ = write!(out, "({rel},{v}),");
            }
            out.push('\n');
        }
    }
    out
}

/// A row version: raw xmin and ctid (a changed row is a new version, even with equal content).
unsafe fn version(tup: pg_sys::HeapTuple) -> String {
    unsafe {
        let raw = (*(*tup).t_data).t_choice.t_heap.t_xmin;
        // copied out: ItemPointerData is packed
        let tid = (*tup).t_self;
        let (hi, lo, pos) = (tid.ip_blkid.bi_hi, tid.ip_blkid.bi_lo, tid.ip_posid);
        format!("{raw},{hi}:{lo}:{pos}")
    }
}

/// Column `attno` (1-based) of a catalog row, NULL as None.
unsafe fn column<T: FromDatum>(
    tup: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
    attno: usize,
) -> Option<T> {
    unsafe { T::from_datum(column_datum(tup, desc, attno)?, false) }
}

/// The datum of column `attno` (1-based) of a catalog row (pointing into the row), NULL as None.
unsafe fn column_datum(
    tup: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
    attno: usize,
) -> Option<pg_sys::Datum> {
    unsafe {
        let mut isnull = false;
        let d = pg_sys::heap_getattr(tup, attno as i32, desc, &mut isnull);
        (!isnull).then_some(d)
    }
}

unsafe fn getstruct<T>(tup: pg_sys::HeapTuple) -> &'static T {
    unsafe {
        let data = (*tup).t_data;
        &*((data as *const u8).add((*data).t_hoff as usize) as *const T)
    }
}

unsafe fn oid_key(attno: i16, value: Oid) -> pg_sys::ScanKeyData {
    unsafe {
        let mut key = std::mem::MaybeUninit::<pg_sys::ScanKeyData>::zeroed();
        pg_sys::ScanKeyInit(
            key.as_mut_ptr(),
            attno,
            pg_sys::BTEqualStrategyNumber as u16,
            Oid::from(pg_sys::F_OIDEQ),
            value.into_datum().expect("an oid datum"),
        );
        key.assume_init()
    }
}

/// The catalogs a fingerprint scans, each opened once and its index locked once for the call:
/// after the step's DDL a backend holds more locks than its fast-path slots, so every scan that
/// opened and closed its catalog and index would take and release two locks in the shared lock
/// table. The locks are kept to the end of the transaction, as a catalog query's are.
struct Catalogs {
    open: Vec<(u32, pg_sys::Relation)>,
    locked: Vec<u32>,
}

impl Catalogs {
    fn new() -> Self {
        Catalogs {
            open: Vec::new(),
            locked: Vec::new(),
        }
    }

    /// Every row of catalog `rel` matching `keys` (heap attribute numbers) through index `index`.
    unsafe fn scan(
        &mut self,
        rel: u32,
        index: u32,
        keys: &mut [pg_sys::ScanKeyData],
        mut each: impl FnMut(pg_sys::HeapTuple, pg_sys::TupleDesc),
    ) {
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        unsafe {
            let r = match self.open.iter().find(|(o, _)| *o == rel) {
                Some((_, r)) => *r,
                None => {
                    let r = pg_sys::table_open(Oid::from(rel), lock);
                    self.open.push((rel, r));
                    r
                }
            };
            if !self.locked.contains(&index) {
                // held for the transaction: the scans' own open and close are then local
                pg_sys::LockRelationOid(Oid::from(index), lock);
                self.locked.push(index);
            }
            let s = pg_sys::systable_beginscan(
                r,
                Oid::from(index),
                true,
                std::ptr::null_mut(),
                keys.len() as i32,
                keys.as_mut_ptr(),
            );
            loop {
                let tup = pg_sys::systable_getnext(s);
                if tup.is_null() {
                    break;
                }
                each(tup, (*r).rd_att);
            }
            pg_sys::systable_endscan(s);
        }
    }
}

impl Catalogs {
    /// Closes the catalogs (on an error the transaction's abort releases them instead).
    fn close(mut self) {
        for (_, r) in self.open.drain(..) {
            // the lock stays until the end of the transaction
            unsafe { pg_sys::table_close(r, pg_sys::NoLock as pg_sys::LOCKMODE) };
        }
    }
}

/// `f` on the syscache row of `id` with key `key`, if there is one.
unsafe fn cached<R>(
    id: pg_sys::SysCacheIdentifier::Type,
    key: Oid,
    f: impl FnOnce(pg_sys::HeapTuple) -> R,
) -> Option<R> {
    unsafe {
        let tup = pg_sys::SearchSysCache1(id as i32, key.into_datum().expect("an oid datum"));
        if tup.is_null() {
            return None;
        }
        let r = f(tup);
        pg_sys::ReleaseSysCache(tup);
        Some(r)
    }
}

/// A nullable column of a syscache row, as its text output (arrays: aclitem[], text[]) and the
/// roles an ACL names (grantees and grantors, PUBLIC left out) added to `roles` when `acl`.
unsafe fn cached_attr(
    id: pg_sys::SysCacheIdentifier::Type,
    tup: pg_sys::HeapTuple,
    attno: u32,
    acl: bool,
    roles: &mut Vec<Oid>,
) -> String {
    unsafe {
        let mut isnull = false;
        let d = pg_sys::SysCacheGetAttr(id as i32, tup, attno as i16, &mut isnull);
        if isnull {
            return String::new();
        }
        datum_text(d, acl, roles)
    }
}

unsafe fn datum_text(d: pg_sys::Datum, acl: bool, roles: &mut Vec<Oid>) -> String {
    unsafe {
        if acl {
            let a =
                pg_sys::pg_detoast_datum(d.cast_mut_ptr::<pg_sys::varlena>()) as *const pg_sys::Acl;
            let mut ids: *mut Oid = std::ptr::null_mut();
            let n = pg_sys::aclmembers(a, &mut ids);
            for i in 0..n.max(0) as usize {
                roles.push(*ids.add(i));
            }
        }
        cstr(pg_sys::OidOutputFunctionCall(
            Oid::from(pg_sys::F_ARRAY_OUT),
            d,
        ))
    }
}

unsafe fn cstr(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn name(n: &pg_sys::NameData) -> String {
    unsafe { cstr(n.data.as_ptr()) }
}

fn kind(c: std::ffi::c_char) -> char {
    c as u8 as char
}

#[pg_extern(schema = "tenant", name = "_tenant_schema_fingerprint_rs", stable)]
fn tenant_schema_fingerprint(schema: Option<&str>, tenant_id: Option<i64>) -> Option<String> {
    let schema = schema?;
    let schema_c = std::ffi::CString::new(schema).ok()?;
    let nsp = unsafe { pg_sys::get_namespace_oid(schema_c.as_ptr(), true) };
    if nsp == pg_sys::InvalidOid {
        return None;
    }
    Some(unsafe { fingerprint(nsp, schema, tenant_id) })
}

pub(crate) unsafe fn fingerprint(nsp: Oid, schema: &str, tenant_id: Option<i64>) -> String {
    use pg_sys::SysCacheIdentifier as C;
    let mut cats = Catalogs::new();
    // The schema's own objects: pg_depend's namespace entries (deptype 'n').
    let mut members: Vec<(u32, Oid)> = Vec::new();
    let mut keys = unsafe {
        [
            oid_key(ANUM_DEPEND_REFCLASSID, Oid::from(PG_NAMESPACE)),
            oid_key(ANUM_DEPEND_REFOBJID, nsp),
        ]
    };
    unsafe {
        cats.scan(PG_DEPEND, PG_DEPEND_REFERENCE_INDEX, &mut keys, |tup, _| {
            let d: &FormDepend = getstruct(tup);
            let class = d.classid.to_u32();
            if d.deptype == b'n' && [PG_CLASS, PG_PROC, PG_TYPE, PG_STATISTIC_EXT].contains(&class)
            {
                members.push((class, d.objid));
            }
        })
    };
    members.sort_by_key(|(c, o)| (*c, o.to_u32()));
    members.dedup();

    let mut roles: Vec<Oid> = Vec::new();
    let mut rels = String::new();
    let mut tables: Vec<Oid> = Vec::new();
    let mut rel_oids: Vec<Oid> = Vec::new();
    let mut fns = String::new();
    let mut typs = String::new();
    let mut stxs = String::new();
    for (class, oid) in &members {
        let oid = *oid;
        match *class {
            PG_CLASS => unsafe {
                cached(C::RELOID, oid, |tup| {
                    let c: &pg_sys::FormData_pg_class = getstruct(tup);
                    let k = kind(c.relkind);
                    if !"rpvmS".contains(k) {
                        return;
                    }
                    let acl = cached_attr(
                        C::RELOID,
                        tup,
                        pg_sys::Anum_pg_class_relacl,
                        true,
                        &mut roles,
                    );
                    let opts = cached_attr(
                        C::RELOID,
                        tup,
                        pg_sys::Anum_pg_class_reloptions,
                        false,
                        &mut roles,
                    );
                    roles.push(c.relowner);
                    let _ = write!(
                        rels,
                        "({},{:?},{},{},{:?},{:?},{},{}),",
                        oid.to_u32(),
                        name(&c.relname),
                        k,
                        c.relowner.to_u32(),
                        acl,
                        opts,
                        c.relrowsecurity,
                        c.relforcerowsecurity
                    );
                    rel_oids.push(oid);
                    if k == 'r' || k == 'p' {
                        tables.push(oid);
                    }
                });
            },
            PG_PROC => unsafe {
                cached(C::PROCOID, oid, |tup| {
                    let p: &pg_sys::FormData_pg_proc = getstruct(tup);
                    let acl = cached_attr(
                        C::PROCOID,
                        tup,
                        pg_sys::Anum_pg_proc_proacl,
                        true,
                        &mut roles,
                    );
                    roles.push(p.proowner);
                    let _ = write!(
                        fns,
                        "({},{:?},{},{},{},{},{:?}),",
                        oid.to_u32(),
                        cstr(pg_sys::format_procedure_qualified(oid)),
                        kind(p.prokind),
                        p.prosecdef,
                        p.prorettype.to_u32(),
                        p.proowner.to_u32(),
                        acl
                    );
                });
            },
            PG_TYPE => unsafe {
                cached(C::TYPEOID, oid, |tup| {
                    let t: &pg_sys::FormData_pg_type = getstruct(tup);
                    let k = kind(t.typtype);
                    if !"edrc".contains(k) {
                        return;
                    }
                    roles.push(t.typowner);
                    let relkind = if t.typrelid == pg_sys::InvalidOid {
                        String::new()
                    } else {
                        kind(pg_sys::get_rel_relkind(t.typrelid)).to_string()
                    };
                    let _ = write!(
                        typs,
                        "({},{:?},{},{},{:?}),",
                        oid.to_u32(),
                        cstr(pg_sys::format_type_be_qualified(oid)),
                        k,
                        t.typowner.to_u32(),
                        relkind
                    );
                });
            },
            _ => unsafe {
                cached(C::STATEXTOID, oid, |tup| {
                    let x: &FormStatisticExt = getstruct(tup);
                    roles.push(x.stxowner);
                    let _ = write!(
                        stxs,
                        "({},{:?},{}),",
                        oid.to_u32(),
                        name(&x.stxname),
                        x.stxowner.to_u32()
                    );
                });
            },
        }
    }

    // Per table: its qft_ policies by row version, column ACLs, defaults that use a sequence,
    // and its ancestors.
    let mut pols: Vec<(u32, String)> = Vec::new();
    let mut cols = String::new();
    let mut seqdefs: Vec<(u32, i16, String)> = Vec::new();
    let mut ancestors: Vec<(u32, u32)> = Vec::new();
    for &rel in &tables {
        let mut k = unsafe { [oid_key(ANUM_POLICY_POLRELID, rel)] };
        unsafe {
            cats.scan(
                PG_POLICY,
                PG_POLICY_POLRELID_POLNAME_INDEX,
                &mut k,
                |tup, desc| {
                    let p: &FormPolicy = getstruct(tup);
                    if p.polrelid != rel || !name(&p.polname).starts_with("qft_") {
                        return;
                    }
                    pols.push((
                        p.oid.to_u32(),
                        format!("({},{}),", p.oid.to_u32(), version(tup)),
                    ));
                    // polroles: the roles a policy names
                    if let Some(ids) = column::<Vec<Oid>>(tup, desc, ANUM_POLICY_POLROLES) {
                        roles.extend(ids);
                    }
                },
            )
        };
        // column ACLs: one scan of the table's pg_attribute rows (each column through the
        // syscache would be one catalog read per column of a schema this backend has not read yet)
        let mut k = unsafe { [oid_key(ANUM_ATTRIBUTE_ATTRELID, rel)] };
        unsafe {
            cats.scan(
                PG_ATTRIBUTE,
                PG_ATTRIBUTE_RELID_ATTNUM_INDEX,
                &mut k,
                |tup, desc| {
                    let a: &pg_sys::FormData_pg_attribute = getstruct(tup);
                    if a.attrelid != rel || a.attnum < 1 {
                        return;
                    }
                    if let Some(d) =
                        column_datum(tup, desc, pg_sys::Anum_pg_attribute_attacl as usize)
                    {
                        let text = datum_text(d, true, &mut roles);
                        let _ = write!(
                            cols,
                            "({},{},{:?},{:?}),",
                            rel.to_u32(),
                            a.attnum,
                            name(&a.attname),
                            text
                        );
                    }
                },
            )
        };
        // defaults that use a sequence
        let mut k = unsafe { [oid_key(ANUM_ATTRDEF_ADRELID, rel)] };
        let mut defaults: Vec<(Oid, i16)> = Vec::new();
        unsafe {
            cats.scan(
                PG_ATTRDEF,
                PG_ATTRDEF_ADRELID_ADNUM_INDEX,
                &mut k,
                |tup, _| {
                    let a: &FormAttrdef = getstruct(tup);
                    if a.adrelid == rel {
                        defaults.push((a.oid, a.adnum));
                    }
                },
            )
        };
        for (def, adnum) in defaults {
            let mut k = unsafe {
                [
                    oid_key(ANUM_DEPEND_CLASSID, Oid::from(PG_ATTRDEF)),
                    oid_key(ANUM_DEPEND_OBJID, def),
                ]
            };
            let mut seqs: Vec<Oid> = Vec::new();
            unsafe {
                cats.scan(PG_DEPEND, PG_DEPEND_DEPENDER_INDEX, &mut k, |tup, _| {
                    let d: &FormDepend = getstruct(tup);
                    if d.refclassid == Oid::from(PG_CLASS)
                        && pg_sys::get_rel_relkind(d.refobjid) as u8 == b'S'
                    {
                        seqs.push(d.refobjid);
                    }
                })
            };
            for seq in seqs {
                let (attname, generated) = unsafe {
                    let tup = pg_sys::SearchSysCache2(
                        C::ATTNUM as i32,
                        rel.into_datum().expect("an oid datum"),
                        pg_sys::Datum::from(adnum as usize),
                    );
                    if tup.is_null() {
                        (String::new(), ' ')
                    } else {
                        let a: &pg_sys::FormData_pg_attribute = getstruct(tup);
                        let r = (name(&a.attname), kind(a.attgenerated));
                        pg_sys::ReleaseSysCache(tup);
                        r
                    }
                };
                let seq_name = unsafe {
                    format!(
                        "{}.{}",
                        cstr(pg_sys::get_namespace_name(pg_sys::get_rel_namespace(seq))),
                        cstr(pg_sys::get_rel_name(seq))
                    )
                };
                seqdefs.push((
                    rel.to_u32(),
                    adnum,
                    format!(
                        "({},{},{:?},{:?},{},{:?}),",
                        rel.to_u32(),
                        adnum,
                        attname,
                        generated,
                        seq.to_u32(),
                        seq_name
                    ),
                ));
            }
        }
        // ancestors (inheritance and partitioning), to the top
        let mut todo = vec![rel];
        while let Some(child) = todo.pop() {
            let mut k = unsafe { [oid_key(ANUM_INHERITS_INHRELID, child)] };
            unsafe {
                cats.scan(
                    PG_INHERITS,
                    PG_INHERITS_RELID_SEQNO_INDEX,
                    &mut k,
                    |tup, _| {
                        let h: &FormInherits = getstruct(tup);
                        if h.inhrelid == child {
                            let pair = (rel.to_u32(), h.inhparent.to_u32());
                            if !ancestors.contains(&pair) {
                                ancestors.push(pair);
                                todo.push(h.inhparent);
                            }
                        }
                    },
                )
            };
        }
    }
    pols.sort_by_key(|(o, _)| *o);
    seqdefs.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
    ancestors.sort();

    // role_limits of the tables and their ancestors, isolated_tables of the schema's tables, and
    // the extension's version (the code of both checks).
    // Both checks read these rows for tables only (tenant._pin_unpinned; the policy template of a
    // table reads the role limits of its ancestors too).
    let mut limited = tables.clone();
    limited.extend(ancestors.iter().map(|(_, p)| Oid::from(*p)));
    let extension = unsafe { extension_rows(&mut cats, &limited, &tables) };
    cats.close();

    // Every role that owns, is granted or is named by a policy: name, superuser, whether it holds
    // tenant_user and whether tenant_user holds it.
    roles.retain(|r| *r != pg_sys::InvalidOid);
    roles.sort_by_key(|r| r.to_u32());
    roles.dedup();
    let tenant_user = unsafe { pg_sys::get_role_oid(c"tenant_user".as_ptr(), false) };
    let mut role_text = String::new();
    for role in roles {
        unsafe {
            cached(C::AUTHOID, role, |tup| {
                let a: &pg_sys::FormData_pg_authid = getstruct(tup);
                let _ = write!(
                    role_text,
                    "({},{:?},{},{},{}),",
                    role.to_u32(),
                    name(&a.rolname),
                    a.rolsuper,
                    pg_sys::is_member_of_role(role, tenant_user),
                    pg_sys::has_privs_of_role(tenant_user, role)
                );
            })
        };
    }

    let mut out = format!(
        "({},{:?},{})\n{}\n",
        nsp.to_u32(),
        schema,
        tenant_id.map_or_else(String::new, |t| t.to_string()),
        extension
    );
    for section in [
        rels,
        pols.into_iter().map(|(_, s)| s).collect::<String>(),
        cols,
        seqdefs.into_iter().map(|(_, _, s)| s).collect::<String>(),
        fns,
        typs,
        stxs,
        ancestors
            .iter()
            .map(|(r, p)| format!("({r},{p}),"))
            .collect::<String>(),
        role_text,
    ] {
        out.push_str(&section);
        out.push('\n');
    }
    out
}
