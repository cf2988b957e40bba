//! The rows `tenant._catalog_read` returns (`sql/catalog.sql`), as serde reads them: catalog
//! values with oids and node trees, before deparsing.

use serde::{Deserialize, Deserializer};

/// An object id. jsonb writes an `oid` as a string, a cast one as a number: both are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Oid(pub u32);

impl PartialEq<u32> for Oid {
    fn eq(&self, other: &u32) -> bool {
        self.0 == *other
    }
}

impl<'de> Deserialize<'de> for Oid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Oid, D::Error> {
        // A visitor of both forms: an untagged enum would buffer every value and build (and
        // format) an error for each string it first failed to read as a number.
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Oid;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an oid, as a number or a string")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Oid, E> {
                u32::try_from(n).map(Oid).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Oid, E> {
                u32::try_from(n).map(Oid).map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, t: &str) -> Result<Oid, E> {
                t.parse().map(Oid).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Deserialize)]
pub struct Catalog {
    pub schema: SchemaRow,
    pub default_acls: Vec<DefaultAcl>,
    pub relations: Vec<Relation>,
    pub attributes: Vec<Attribute>,
    pub constraints: Vec<Constraint>,
    pub indexes: Vec<Index>,
    pub triggers: Vec<Trigger>,
    pub policies: Vec<Policy>,
    pub rules: Vec<Rule>,
    pub view_rules: Vec<ViewRule>,
    pub sequences: Vec<Sequence>,
    pub types: Vec<Type>,
    pub type_links: Vec<TypeLink>,
    pub functions: Vec<Function>,
    pub operators: Vec<Operator>,
    pub operator_families: Vec<OpFamily>,
    pub operator_classes: Vec<OpClass>,
    pub amops: Vec<AmOp>,
    pub amprocs: Vec<AmProc>,
    pub collations: Vec<Collation>,
    pub ts_dictionaries: Vec<TsDictionary>,
    pub ts_configs: Vec<TsConfig>,
    pub statistics: Vec<Statistics>,
    pub depends: Vec<Depend>,
    pub unsupported: Vec<Unsupported>,
}

#[derive(Deserialize)]
pub struct Grant {
    pub grantee: Option<String>,
    pub privilege: String,
    pub grantable: bool,
}

pub type Acl = Option<Vec<Grant>>;

#[derive(Deserialize, Clone)]
pub struct Ref {
    pub schema: Option<String>,
    pub name: String,
}

#[derive(Deserialize)]
pub struct SchemaRow {
    pub name: String,
    pub owner: String,
    pub acl: Acl,
    pub comment: Option<String>,
}

#[derive(Deserialize)]
pub struct DefaultAcl {
    pub role: String,
    pub objtype: String,
    pub acl: Acl,
}

#[derive(Deserialize)]
pub struct Relation {
    pub oid: Oid,
    pub name: String,
    pub kind: String,
    pub persistence: String,
    pub am: Option<String>,
    pub options: Vec<String>,
    pub toast_options: Vec<String>,
    pub tablespace: Option<String>,
    pub is_partition: bool,
    pub partbound: Option<String>,
    pub parents: Vec<Ref>,
    pub children_elsewhere: Vec<Ref>,
    pub row_security: bool,
    pub force_row_security: bool,
    pub replident: String,
    pub populated: bool,
    pub owner: String,
    pub acl: Acl,
    pub comment: Option<String>,
}

#[derive(Deserialize)]
pub struct Attribute {
    pub rel: Oid,
    pub num: i16,
    pub name: String,
    pub typid: Oid,
    pub typmod: i32,
    pub collation: Oid,
    pub type_collation: Oid,
    pub not_null: bool,
    /// PostgreSQL 18: the column's NOT NULL constraint (pg_constraint, contype n).
    #[serde(default)]
    pub nn: Option<NotNull>,
    pub default_oid: Option<Oid>,
    pub default: Option<String>,
    pub identity: String,
    pub generated: String,
    pub storage: String,
    pub type_storage: String,
    pub compression: String,
    pub statistics: i32,
    pub options: Vec<String>,
    pub local: bool,
    pub inherited: i32,
    pub acl: Acl,
    pub comment: Option<String>,
}

#[derive(Deserialize)]
pub struct NotNull {
    pub name: String,
    pub no_inherit: bool,
    pub validated: bool,
    pub local: bool,
}

#[derive(Deserialize)]
pub struct Constraint {
    pub oid: Oid,
    pub rel: Oid,
    pub typ: Oid,
    pub name: String,
    pub kind: String,
    pub validated: bool,
    pub local: bool,
    pub inherited: i32,
    pub parent: Option<String>,
    pub comment: Option<String>,
}

#[derive(Deserialize)]
pub struct IndexStatistics {
    pub column: i16,
    pub target: i32,
}

#[derive(Deserialize)]
pub struct Index {
    pub oid: Oid,
    pub rel: Oid,
    pub name: String,
    pub unique: bool,
    pub partitioned: bool,
    pub constraint: Option<String>,
    pub clustered: bool,
    pub replident: bool,
    pub valid: bool,
    pub parent: Option<Ref>,
    pub statistics: Vec<IndexStatistics>,
    pub comment: Option<String>,
}

#[derive(Deserialize)]
pub struct Trigger {
    pub oid: Oid,
    pub rel: Oid,
    pub name: String,
    pub enabled: String,
    pub from_parent: bool,
    pub comment: Option<String>,
}

#[derive(Deserialize)]
pub struct Policy {
    pub rel: Oid,
    pub name: String,
    pub permissive: bool,
    pub command: String,
    pub roles: Vec<Option<String>>,
    pub using: Option<String>,
    pub with_check: Option<String>,
    pub comment: Option<String>,
}

#[derive(Deserialize)]
pub struct Rule {
    pub oid: Oid,
    pub rel: Oid,
    pub name: String,
    pub comment: Option<String>,
}

/// The `_RETURN` rule of a view (what a view's dependencies are recorded on).
#[derive(Deserialize)]
pub struct ViewRule {
    pub oid: Oid,
    pub rel: Oid,
}

#[derive(Deserialize)]
pub struct OwnedBy {
    pub table: String,
    pub same_schema: bool,
    pub column: String,
    pub identity: bool,
}

#[derive(Deserialize)]
pub struct Sequence {
    pub rel: Oid,
    pub typid: Oid,
    pub start: i64,
    pub increment: i64,
    pub min: i64,
    pub max: i64,
    pub cache: i64,
    pub cycle: bool,
    pub owned_by: Option<OwnedBy>,
}

#[derive(Deserialize)]
pub struct Range {
    pub subtype: Oid,
    pub collation: Oid,
    pub opclass: Ref,
    pub canonical: Oid,
    pub subdiff: Oid,
    pub multirange: String,
}

#[derive(Deserialize)]
pub struct Type {
    pub oid: Oid,
    pub name: String,
    pub kind: String,
    pub relid: Oid,
    pub relkind: Option<String>,
    pub basetype: Oid,
    pub typmod: i32,
    pub not_null: bool,
    /// PostgreSQL 17 and later: the name of the domain's NOT NULL constraint.
    #[serde(default)]
    pub not_null_name: Option<String>,
    pub default: Option<String>,
    pub collation: Oid,
    pub base_collation: Option<Oid>,
    pub labels: Vec<String>,
    pub range: Option<Range>,
    pub owner: String,
    pub acl: Acl,
    pub comment: Option<String>,
}

/// A type that stands for another object when ordering: an array type for its element type, a
/// row type for its relation, a multirange for its range.
#[derive(Deserialize)]
pub struct TypeLink {
    pub oid: Oid,
    pub to_class: String,
    pub to: Oid,
}

#[derive(Deserialize)]
pub struct OperatorName {
    pub schema: String,
    pub name: String,
}

#[derive(Deserialize)]
pub struct Aggregate {
    pub kind: String,
    pub transfn: Oid,
    pub finalfn: Oid,
    pub combinefn: Oid,
    pub serialfn: Oid,
    pub deserialfn: Oid,
    pub mtransfn: Oid,
    pub minvtransfn: Oid,
    pub mfinalfn: Oid,
    pub finalextra: bool,
    pub mfinalextra: bool,
    pub finalmodify: String,
    pub mfinalmodify: String,
    pub sortop: Option<OperatorName>,
    pub transtype: Oid,
    pub transspace: i32,
    pub mtranstype: Oid,
    pub mtransspace: i32,
    pub initval: Option<String>,
    pub minitval: Option<String>,
}

#[derive(Deserialize)]
pub struct Function {
    pub oid: Oid,
    pub name: String,
    pub kind: String,
    pub language: String,
    pub volatility: String,
    pub strict: bool,
    pub security_definer: bool,
    pub leakproof: bool,
    pub parallel: String,
    pub cost: String,
    pub rows: String,
    pub support: Oid,
    pub config: Vec<String>,
    pub src: Option<String>,
    pub bin: Option<String>,
    pub sqlbody: bool,
    pub type_owner: Option<Oid>,
    pub aggregate: Option<Aggregate>,
    pub owner: String,
    pub acl: Acl,
    pub comment: Option<String>,
}

#[derive(Deserialize)]
pub struct Operator {
    pub oid: Oid,
    pub name: String,
    pub left: Oid,
    pub right: Oid,
    pub result: Oid,
    pub function: Oid,
    pub restrict: Oid,
    pub join: Oid,
    pub commutator: Option<OperatorName>,
    pub negator: Option<OperatorName>,
    pub hashes: bool,
    pub merges: bool,
    pub owner: String,
    pub comment: Option<String>,
}

#[derive(Deserialize)]
pub struct OpFamily {
    pub oid: Oid,
    pub name: String,
    pub method: String,
    pub owner: String,
    pub comment: Option<String>,
}

#[derive(Deserialize)]
pub struct OpClass {
    pub oid: Oid,
    pub name: String,
    pub method: String,
    #[serde(rename = "type")]
    pub data_type: Oid,
    pub default: bool,
    pub keytype: Oid,
    pub family: Ref,
    pub owner: String,
    pub comment: Option<String>,
}

#[derive(Deserialize)]
pub struct AmOp {
    pub oid: Oid,
    pub family: Oid,
    pub class: Option<Oid>,
    pub strategy: i16,
    pub left: Oid,
    pub right: Oid,
    pub operator: OperatorName,
    pub order_family: Option<Ref>,
}

#[derive(Deserialize)]
pub struct AmProc {
    pub oid: Oid,
    pub family: Oid,
    pub class: Option<Oid>,
    pub number: i16,
    pub left: Oid,
    pub right: Oid,
    pub function: Oid,
}

#[derive(Deserialize)]
pub struct Collation {
    pub oid: Oid,
    pub name: String,
    pub provider: String,
    pub deterministic: bool,
    pub collate: Option<String>,
    pub ctype: Option<String>,
    pub icu_locale: Option<String>,
    pub owner: String,
    pub comment: Option<String>,
}

#[derive(Deserialize)]
pub struct TsDictionary {
    pub oid: Oid,
    pub name: String,
    pub template: OperatorName,
    pub options: Option<String>,
    pub owner: String,
    pub comment: Option<String>,
}

#[derive(Deserialize)]
pub struct TsMapping {
    pub token: String,
    pub dictionaries: Vec<Ref>,
}

#[derive(Deserialize)]
pub struct TsConfig {
    pub oid: Oid,
    pub name: String,
    pub parser: OperatorName,
    pub mappings: Vec<TsMapping>,
    pub owner: String,
    pub comment: Option<String>,
}

#[derive(Deserialize)]
pub struct Statistics {
    pub oid: Oid,
    pub name: String,
    pub table: String,
    pub same_schema: bool,
    pub target: i32,
    pub owner: String,
    pub comment: Option<String>,
}

#[derive(Deserialize)]
pub struct Depend {
    /// The catalog of the depending object (`pg_depend.classid`).
    pub class: Oid,
    pub obj: Oid,
    pub ref_class: Oid,
    #[serde(rename = "ref")]
    pub referenced: Oid,
}

#[derive(Deserialize)]
pub struct Unsupported {
    pub object: String,
    pub reason: String,
}

/// The oids PostgreSQL gives the catalogs the reader reads objects from (their headers:
/// `CATALOG(pg_class,1259,...)`), the same in every version.
pub mod class {
    pub const PG_CLASS: u32 = 1259;
    pub const PG_TYPE: u32 = 1247;
    pub const PG_PROC: u32 = 1255;
    pub const PG_ATTRDEF: u32 = 2604;
    pub const PG_CONSTRAINT: u32 = 2606;
    pub const PG_REWRITE: u32 = 2618;
    pub const PG_TRIGGER: u32 = 2620;
    pub const PG_OPERATOR: u32 = 2617;
    pub const PG_OPFAMILY: u32 = 2753;
    pub const PG_OPCLASS: u32 = 2616;
    pub const PG_AMOP: u32 = 2602;
    pub const PG_AMPROC: u32 = 2603;
    pub const PG_COLLATION: u32 = 3456;
    pub const PG_TS_DICT: u32 = 3600;
    pub const PG_TS_CONFIG: u32 = 3602;
    pub const PG_STATISTIC_EXT: u32 = 3381;
}

/// Every object of the schema the rows describe that something can depend on, as (catalog oid,
/// object oid): its relations, indexes, types (with row and array types), constraints, column
/// defaults, rules, triggers, functions, operators and their families, classes and members,
/// collations, text search dictionaries and configurations, extended statistics.
pub fn objects(c: &Catalog) -> std::collections::BTreeSet<(u32, u32)> {
    use class::*;
    let mut out = std::collections::BTreeSet::new();
    let mut add = |class: u32, oid: Oid| {
        out.insert((class, oid.0));
    };
    c.relations.iter().for_each(|x| add(PG_CLASS, x.oid));
    c.indexes.iter().for_each(|x| add(PG_CLASS, x.oid));
    c.types.iter().for_each(|x| add(PG_TYPE, x.oid));
    c.type_links.iter().for_each(|x| add(PG_TYPE, x.oid));
    c.constraints.iter().for_each(|x| add(PG_CONSTRAINT, x.oid));
    c.attributes
        .iter()
        .filter_map(|a| a.default_oid)
        .for_each(|o| add(PG_ATTRDEF, o));
    c.rules.iter().for_each(|x| add(PG_REWRITE, x.oid));
    c.view_rules.iter().for_each(|x| add(PG_REWRITE, x.oid));
    c.triggers.iter().for_each(|x| add(PG_TRIGGER, x.oid));
    c.functions.iter().for_each(|x| add(PG_PROC, x.oid));
    c.operators.iter().for_each(|x| add(PG_OPERATOR, x.oid));
    c.operator_families
        .iter()
        .for_each(|x| add(PG_OPFAMILY, x.oid));
    c.operator_classes
        .iter()
        .for_each(|x| add(PG_OPCLASS, x.oid));
    c.amops.iter().for_each(|x| add(PG_AMOP, x.oid));
    c.amprocs.iter().for_each(|x| add(PG_AMPROC, x.oid));
    c.collations.iter().for_each(|x| add(PG_COLLATION, x.oid));
    c.ts_dictionaries
        .iter()
        .for_each(|x| add(PG_TS_DICT, x.oid));
    c.ts_configs.iter().for_each(|x| add(PG_TS_CONFIG, x.oid));
    c.statistics
        .iter()
        .for_each(|x| add(PG_STATISTIC_EXT, x.oid));
    out
}

/// The dependencies among `depends` (a read's: its objects', triggers' and policies' on
/// anything but their schema) on one of `objects` (another read's, [`objects`]).
pub fn dependencies_on<'a>(
    depends: &'a [Depend],
    objects: &std::collections::BTreeSet<(u32, u32)>,
) -> Vec<&'a Depend> {
    depends
        .iter()
        .filter(|d| objects.contains(&(d.ref_class.0, d.referenced.0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{class, dependencies_on, Depend, Oid};

    #[test]
    fn dependencies_on_another_reads_objects_are_found() {
        let dep = |class: u32, obj: u32, ref_class: u32, referenced: u32| Depend {
            class: Oid(class),
            obj: Oid(obj),
            ref_class: Oid(ref_class),
            referenced: Oid(referenced),
        };
        let source: std::collections::BTreeSet<(u32, u32)> =
            [(class::PG_CLASS, 100), (class::PG_PROC, 200)].into();
        let copy = [
            dep(class::PG_REWRITE, 1, class::PG_CLASS, 10), // on the copy's own table
            dep(class::PG_REWRITE, 2, class::PG_CLASS, 100), // on the source's table
            dep(class::PG_TRIGGER, 3, class::PG_PROC, 200), // on the source's function
            dep(class::PG_ATTRDEF, 4, class::PG_PROC, 100), // same oid, another catalog
        ];
        let found: Vec<u32> = dependencies_on(&copy, &source)
            .iter()
            .map(|d| d.obj.0)
            .collect();
        assert_eq!(found, [2, 3]);
    }

    #[test]
    fn oids_are_read_as_numbers_and_as_strings() {
        let v: Vec<Option<Oid>> = serde_json::from_str(r#"[16384, "4294967295", null]"#).unwrap();
        assert_eq!(v, [Some(Oid(16384)), Some(Oid(u32::MAX)), None]);
        for bad in [r#""12a""#, "-1", "4294967296", "1.5", "true"] {
            assert!(serde_json::from_str::<Oid>(bad).is_err(), "{bad}");
        }
    }
}
