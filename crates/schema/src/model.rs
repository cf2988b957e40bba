//! The catalog model of one schema: every object kind the schema engine copies, compares or
//! refuses, with the properties that make two schemas structurally equal.
//!
//! Text is schema-relative ([`SqlText`]): a schema and a faithful copy of it have *equal* models,
//! field by field, and the derived `PartialEq` is structural equality (only [`Schema::name`],
//! [`Schema::dependencies`] and data state such as [`View::populated`] are not structure). The
//! diff (`crate::diff`) reports which property differs; the planner (`crate::plan`) renders the
//! DDL that recreates the model in another schema.
//!
//! Vectors are in catalog order where order is structure (columns, enum labels, attributes) and
//! sorted by name elsewhere ([`Schema::normalize`]).

use crate::sqltext::SqlText;
use serde::{Deserialize, Serialize};

pub type Name = String;

macro_rules! model {
    ($($item:item)*) => {
        $(
            #[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
            $item
        )*
    };
}

macro_rules! model_enum {
    ($($item:item)*) => {
        $(
            #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
            $item
        )*
    };
}

model! {
    /// One schema.
    pub struct Schema {
        /// The schema's own name: what its text is relative to. Not structure.
        pub name: Name,
        pub owner: Name,
        pub acl: Option<Acl>,
        pub comment: Option<String>,
        pub default_privileges: Vec<DefaultPrivileges>,
        pub collations: Vec<Collation>,
        pub types: Vec<Type>,
        pub sequences: Vec<Sequence>,
        pub tables: Vec<Table>,
        pub views: Vec<View>,
        pub functions: Vec<Function>,
        pub aggregates: Vec<Aggregate>,
        pub operators: Vec<Operator>,
        pub operator_families: Vec<OperatorFamily>,
        pub operator_classes: Vec<OperatorClass>,
        pub text_search_dictionaries: Vec<TextSearchDictionary>,
        pub text_search_configurations: Vec<TextSearchConfiguration>,
        pub statistics: Vec<Statistics>,
        /// Objects the reader found and the model cannot represent: the planner refuses a schema
        /// that has any (0A000), naming each with the reason.
        pub unsupported: Vec<Unsupported>,
        /// "`from` needs `to` to exist first", between objects of this schema (from pg_depend).
        /// Derived data, not structure.
        pub dependencies: Vec<Dependency>,
    }

    /// An access control list, as `aclexplode` lists it (grantors are not kept). `None` where the
    /// model holds an `Option<Acl>` means the default privileges for the object's owner.
    pub struct Acl(pub Vec<Grant>);

    pub struct Grant {
        pub grantee: Grantee,
        pub privilege: Privilege,
        pub grantable: bool,
    }

    /// `ALTER DEFAULT PRIVILEGES FOR ROLE role IN SCHEMA this GRANT ...`.
    pub struct DefaultPrivileges {
        pub role: Name,
        pub objects: DefaultObjects,
        pub acl: Acl,
    }

    pub struct Collation {
        pub name: Name,
        pub provider: CollationProvider,
        pub deterministic: bool,
        pub collate: Option<String>,
        pub ctype: Option<String>,
        /// The locale of an ICU or builtin collation (`colliculocale`, `colllocale` from 17 on).
        pub icu_locale: Option<String>,
        pub owner: Name,
        pub comment: Option<String>,
    }

    pub struct Type {
        pub name: Name,
        pub definition: TypeDefinition,
        pub owner: Name,
        pub acl: Option<Acl>,
        pub comment: Option<String>,
    }

    pub struct DomainConstraint {
        pub name: Name,
        /// `pg_get_constraintdef` without its ` NOT VALID` (that is `validated`), e.g.
        /// `CHECK ((VALUE > 0))`.
        pub definition: SqlText,
        pub validated: bool,
        pub comment: Option<String>,
    }

    pub struct Attribute {
        pub name: Name,
        pub data_type: SqlText,
        /// Only when it differs from the type's default collation.
        pub collation: Option<SqlText>,
        pub comment: Option<String>,
    }

    pub struct Sequence {
        pub name: Name,
        pub data_type: SqlText,
        pub start: i64,
        pub increment: i64,
        pub min: i64,
        pub max: i64,
        pub cache: i64,
        pub cycle: bool,
        pub unlogged: bool,
        /// Serial and `OWNED BY` sequences (kind auto) and identity sequences (kind internal).
        pub owned_by: Option<OwnedBy>,
        pub owner: Name,
        pub acl: Option<Acl>,
        pub comment: Option<String>,
    }

    pub struct OwnedBy {
        /// A table of this schema.
        pub table: Name,
        pub column: Name,
        pub identity: bool,
    }

    /// An ordinary or partitioned table.
    pub struct Table {
        pub name: Name,
        pub partitioned: bool,
        pub unlogged: bool,
        pub access_method: Option<Name>,
        /// `reloptions`, `name=value`.
        pub options: Vec<String>,
        pub toast_options: Vec<String>,
        pub tablespace: Option<Name>,
        /// `pg_get_partkeydef`, e.g. `RANGE (happened)`.
        pub partition_key: Option<SqlText>,
        pub partition_of: Option<PartitionOf>,
        /// Partitions of this table that live in another schema (refused: a copy without them
        /// would be silently incomplete).
        pub outside_partitions: Vec<RelationRef>,
        /// Inheritance parents, in order.
        pub inherits: Vec<RelationRef>,
        pub columns: Vec<Column>,
        pub constraints: Vec<Constraint>,
        pub indexes: Vec<Index>,
        pub triggers: Vec<Trigger>,
        pub policies: Vec<Policy>,
        pub rules: Vec<Rule>,
        pub row_security: bool,
        pub force_row_security: bool,
        pub replica_identity: ReplicaIdentity,
        pub owner: Name,
        pub acl: Option<Acl>,
        pub comment: Option<String>,
    }

    pub struct PartitionOf {
        pub parent: RelationRef,
        /// `pg_get_expr(relpartbound)`, e.g. `FOR VALUES IN ('eu')` or `DEFAULT`.
        pub bound: SqlText,
    }

    /// A relation named from this schema: `schema` is `None` for one of its own.
    pub struct RelationRef {
        pub schema: Option<Name>,
        pub name: Name,
    }

    pub struct Column {
        pub name: Name,
        /// `format_type(atttypid, atttypmod)`.
        pub data_type: SqlText,
        /// Only when it differs from the type's default collation.
        pub collation: Option<SqlText>,
        pub not_null: bool,
        /// The default expression (not for generated columns).
        pub default: Option<SqlText>,
        pub identity: Option<Identity>,
        /// The expression of a `GENERATED ALWAYS AS (...) STORED` column (or `VIRTUAL`, below).
        pub generated: Option<SqlText>,
        /// PostgreSQL 18's virtual generated column: computed when read, not stored.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub generated_virtual: bool,
        /// PostgreSQL 18 catalogs NOT NULL as a constraint with a name, `NO INHERIT` and
        /// `NOT VALID` (`not_null` is true for it either way). None before 18.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub not_null_constraint: Option<NotNullConstraint>,
        pub storage: Storage,
        /// The column type's default storage (to know when `storage` was set).
        pub type_storage: Storage,
        pub compression: Option<Compression>,
        /// `attstattarget` when set (not -1).
        pub statistics: Option<i32>,
        /// `attoptions`, `name=value`.
        pub options: Vec<String>,
        pub local: bool,
        pub inherited: i32,
        pub acl: Option<Acl>,
        pub comment: Option<String>,
    }

    pub struct Constraint {
        pub name: Name,
        pub kind: ConstraintKind,
        /// `pg_get_constraintdef` without its ` NOT VALID` (that is `validated`).
        pub definition: SqlText,
        pub validated: bool,
        pub local: bool,
        pub inherited: i32,
        /// The constraint of the partitioned parent this one was cloned from.
        pub parent: Option<Name>,
        pub comment: Option<String>,
    }

    pub struct Index {
        pub name: Name,
        pub unique: bool,
        /// An index of a partitioned table (`ON ONLY`).
        pub partitioned: bool,
        /// `pg_get_indexdef` after `ON [ONLY] schema.table `: `USING am (...) ...`.
        pub definition: SqlText,
        /// The primary-key, unique or exclusion constraint it implements.
        pub constraint: Option<Name>,
        pub clustered: bool,
        pub replica_identity: bool,
        pub valid: bool,
        /// The partitioned index it is attached to.
        pub parent: Option<RelationRef>,
        /// Per-column statistics targets (`ALTER INDEX ... ALTER COLUMN n SET STATISTICS t`).
        pub column_statistics: Vec<ColumnStatistics>,
        pub comment: Option<String>,
    }

    pub struct NotNullConstraint {
        pub name: Name,
        pub no_inherit: bool,
        pub validated: bool,
        /// Defined on this table (not only inherited).
        pub local: bool,
    }

    pub struct ColumnStatistics {
        /// 1-based column number within the index.
        pub column: i16,
        pub target: i32,
    }

    pub struct Trigger {
        pub name: Name,
        /// `pg_get_triggerdef`, its table marked.
        pub definition: SqlText,
        pub enabled: TriggerEnabled,
        /// Cloned onto a partition by its parent's trigger (created with it).
        pub from_parent: bool,
        pub comment: Option<String>,
    }

    pub struct Policy {
        pub name: Name,
        pub permissive: bool,
        pub command: PolicyCommand,
        /// Sorted.
        pub roles: Vec<Grantee>,
        pub using: Option<SqlText>,
        pub with_check: Option<SqlText>,
        pub comment: Option<String>,
    }

    pub struct Rule {
        pub name: Name,
        pub definition: SqlText,
        pub comment: Option<String>,
    }

    /// A view or materialized view.
    pub struct View {
        pub name: Name,
        pub materialized: bool,
        /// `pg_get_viewdef`, without the final `;`.
        pub definition: SqlText,
        pub options: Vec<String>,
        pub access_method: Option<Name>,
        pub tablespace: Option<Name>,
        pub columns: Vec<Column>,
        pub indexes: Vec<Index>,
        /// Data state of a materialized view: not structure.
        pub populated: bool,
        pub owner: Name,
        pub acl: Option<Acl>,
        pub comment: Option<String>,
    }

    /// A function or procedure (aggregates are [`Aggregate`]s).
    pub struct Function {
        pub name: Name,
        pub kind: FunctionKind,
        /// `pg_get_function_identity_arguments`: names the function among its overloads (and in
        /// ALTER, COMMENT and GRANT).
        pub identity_arguments: SqlText,
        /// `pg_get_function_arguments`, with modes, names and defaults.
        pub arguments: SqlText,
        /// `pg_get_function_result`; `None` for a procedure.
        pub result: Option<SqlText>,
        pub language: Name,
        pub volatility: Volatility,
        pub strict: bool,
        pub security_definer: bool,
        pub leakproof: bool,
        pub parallel: Parallel,
        /// `procost` and `prorows` as PostgreSQL prints them.
        pub cost: String,
        pub rows: String,
        pub support: Option<SqlText>,
        pub config: Vec<Setting>,
        pub body: FunctionBody,
        pub owner: Name,
        pub acl: Option<Acl>,
        pub comment: Option<String>,
    }

    /// A `SET name = value` of a function.
    pub struct Setting {
        pub name: Name,
        pub value: SettingValue,
    }

    pub struct Aggregate {
        pub name: Name,
        pub identity_arguments: SqlText,
        /// `pg_get_function_arguments` (with `ORDER BY` for ordered-set aggregates).
        pub arguments: SqlText,
        pub kind: AggregateKind,
        pub transition: SqlText,
        pub state_type: SqlText,
        pub state_space: i32,
        pub final_function: Option<SqlText>,
        pub final_extra: bool,
        pub final_modify: FinalModify,
        pub combine: Option<SqlText>,
        pub serial: Option<SqlText>,
        pub deserial: Option<SqlText>,
        pub initial_value: Option<String>,
        pub moving: Option<MovingAggregate>,
        pub sort_operator: Option<SqlText>,
        pub parallel: Parallel,
        pub owner: Name,
        pub acl: Option<Acl>,
        pub comment: Option<String>,
    }

    /// The moving-aggregate mode of an aggregate (`MSFUNC`, `MINVFUNC`, ...).
    pub struct MovingAggregate {
        pub transition: SqlText,
        pub inverse: SqlText,
        pub state_type: SqlText,
        pub state_space: i32,
        pub final_function: Option<SqlText>,
        pub final_extra: bool,
        pub final_modify: FinalModify,
        pub initial_value: Option<String>,
    }

    pub struct Operator {
        /// The operator's symbol, e.g. `===`.
        pub name: Name,
        /// `None` for a prefix operator.
        pub left: Option<SqlText>,
        pub right: SqlText,
        pub result: SqlText,
        pub function: SqlText,
        /// `OPERATOR(schema.op)`.
        pub commutator: Option<SqlText>,
        pub negator: Option<SqlText>,
        pub restrict: Option<SqlText>,
        pub join: Option<SqlText>,
        pub hashes: bool,
        pub merges: bool,
        pub owner: Name,
        pub comment: Option<String>,
    }

    pub struct OperatorFamily {
        pub name: Name,
        pub method: Name,
        /// Members that belong to the family, not to one of its classes.
        pub members: Vec<OperatorMember>,
        pub owner: Name,
        pub comment: Option<String>,
    }

    pub struct OperatorClass {
        pub name: Name,
        pub method: Name,
        pub data_type: SqlText,
        pub default: bool,
        /// `schema.family`.
        pub family: SqlText,
        pub storage: Option<SqlText>,
        pub members: Vec<OperatorMember>,
        pub owner: Name,
        pub comment: Option<String>,
    }

    pub struct TextSearchDictionary {
        pub name: Name,
        pub template: SqlText,
        /// `dictinitoption`, e.g. `stopwords = 'english'`.
        pub options: Option<String>,
        pub owner: Name,
        pub comment: Option<String>,
    }

    pub struct TextSearchConfiguration {
        pub name: Name,
        pub parser: SqlText,
        pub mappings: Vec<TextSearchMapping>,
        pub owner: Name,
        pub comment: Option<String>,
    }

    pub struct TextSearchMapping {
        /// The token type's alias, e.g. `asciiword`.
        pub token: Name,
        pub dictionaries: Vec<SqlText>,
    }

    pub struct Statistics {
        pub name: Name,
        pub table: Name,
        /// `pg_get_statisticsobjdef` after `CREATE STATISTICS schema.name`.
        pub definition: SqlText,
        pub target: Option<i32>,
        pub owner: Name,
        pub comment: Option<String>,
    }

    pub struct Unsupported {
        /// `pg_describe_object`.
        pub object: String,
        pub reason: String,
    }

    pub struct Dependency {
        pub from: ObjectKey,
        pub to: ObjectKey,
    }

    /// An object that DDL creates on its own, for ordering: its kind and its name (for
    /// functions, aggregates and operators with their arguments).
    pub struct ObjectKey {
        pub kind: NodeKind,
        pub name: String,
    }
}

model! {
    pub enum TypeDefinition {
        #[default]
        Invalid,
        Enum { labels: Vec<String> },
        Domain {
            base: SqlText,
            not_null: bool,
            /// The name of its NOT NULL constraint (PostgreSQL 17 and later catalog one).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            not_null_name: Option<Name>,
            default: Option<SqlText>,
            collation: Option<SqlText>,
            constraints: Vec<DomainConstraint>,
        },
        Composite { attributes: Vec<Attribute> },
        Range {
            subtype: SqlText,
            /// `schema.opclass`.
            subtype_opclass: SqlText,
            collation: Option<SqlText>,
            canonical: Option<SqlText>,
            subtype_diff: Option<SqlText>,
            multirange: Name,
        },
    }

    pub enum Grantee {
        #[default]
        Public,
        Role(Name),
    }

    pub enum FunctionBody {
        /// A SQL-standard body (`RETURN ...` or `BEGIN ATOMIC ... END`), deparsed.
        Sql(SqlText),
        /// Source text (PL/pgSQL, SQL, ...), as written.
        Text(SqlText),
        /// A C function: `AS 'file', 'symbol'`.
        Object { file: String, symbol: String },
        #[default]
        Missing,
    }

    pub enum SettingValue {
        /// A list setting (`search_path`), element by element.
        List(Vec<PathEntry>),
        Value(String),
        #[default]
        Empty,
    }

    pub enum PathEntry {
        /// This schema.
        #[default]
        Own,
        Name(String),
    }

    pub enum OperatorMember {
        Operator {
            strategy: i16,
            /// `schema.op`.
            operator: SqlText,
            left: SqlText,
            right: SqlText,
            /// `FOR ORDER BY schema.family`; `None` for search.
            order_family: Option<SqlText>,
        },
        Function {
            number: i16,
            left: SqlText,
            right: SqlText,
            /// `schema.function(argument types)`.
            function: SqlText,
        },
        #[default]
        Invalid,
    }
}

model_enum! {
    pub enum Privilege {
        #[default]
        Select,
        Insert,
        Update,
        Delete,
        Truncate,
        References,
        Trigger,
        Execute,
        Usage,
        Create,
        Connect,
        Temporary,
    }

    pub enum DefaultObjects {
        #[default]
        Tables,
        Sequences,
        Functions,
        Types,
        Schemas,
    }

    pub enum CollationProvider {
        #[default]
        Default,
        Libc,
        Icu,
        /// PostgreSQL 17's builtin provider.
        Builtin,
    }

    pub enum Storage {
        #[default]
        Plain,
        Main,
        External,
        Extended,
    }

    pub enum Compression {
        #[default]
        Pglz,
        Lz4,
    }

    pub enum Identity {
        #[default]
        Always,
        ByDefault,
    }

    pub enum ConstraintKind {
        #[default]
        Check,
        PrimaryKey,
        Unique,
        Exclusion,
        ForeignKey,
        /// A constraint trigger's constraint (created by its trigger).
        Trigger,
        /// A NOT NULL constraint (PostgreSQL 18 records them; created with the column's NOT NULL).
        NotNull,
    }

    pub enum ReplicaIdentity {
        #[default]
        Default,
        Nothing,
        Full,
        Index,
    }

    pub enum TriggerEnabled {
        #[default]
        Origin,
        Disabled,
        Replica,
        Always,
    }

    pub enum PolicyCommand {
        #[default]
        All,
        Select,
        Insert,
        Update,
        Delete,
    }

    pub enum FunctionKind {
        #[default]
        Function,
        Procedure,
        Window,
    }

    pub enum Volatility {
        Immutable,
        Stable,
        #[default]
        Volatile,
    }

    pub enum Parallel {
        Safe,
        Restricted,
        #[default]
        Unsafe,
    }

    pub enum AggregateKind {
        #[default]
        Normal,
        OrderedSet,
        Hypothetical,
    }

    pub enum FinalModify {
        #[default]
        ReadOnly,
        Shareable,
        ReadWrite,
    }

    /// Kinds of objects that are created on their own, in the order preferred among objects whose
    /// dependencies are all met (the tie-break before the name).
    pub enum NodeKind {
        Collation,
        #[default]
        Type,
        Sequence,
        Table,
        Function,
        Aggregate,
        Operator,
        OperatorFamily,
        OperatorClass,
        TextSearchDictionary,
        TextSearchConfiguration,
        View,
        MaterializedView,
    }
}

impl Privilege {
    /// As GRANT and `aclexplode` spell it.
    pub fn sql(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
            Privilege::Truncate => "TRUNCATE",
            Privilege::References => "REFERENCES",
            Privilege::Trigger => "TRIGGER",
            Privilege::Execute => "EXECUTE",
            Privilege::Usage => "USAGE",
            Privilege::Create => "CREATE",
            Privilege::Connect => "CONNECT",
            Privilege::Temporary => "TEMPORARY",
        }
    }

    pub fn from_sql(s: &str) -> Option<Privilege> {
        [
            Privilege::Select,
            Privilege::Insert,
            Privilege::Update,
            Privilege::Delete,
            Privilege::Truncate,
            Privilege::References,
            Privilege::Trigger,
            Privilege::Execute,
            Privilege::Usage,
            Privilege::Create,
            Privilege::Connect,
            Privilege::Temporary,
        ]
        .into_iter()
        .find(|p| p.sql() == s)
    }
}

impl Grantee {
    pub fn sql(&self) -> String {
        match self {
            Grantee::Public => "PUBLIC".to_string(),
            Grantee::Role(r) => crate::ident::quote_ident(r),
        }
    }
}

impl RelationRef {
    pub fn own(name: &str) -> RelationRef {
        RelationRef {
            schema: None,
            name: name.to_string(),
        }
    }

    /// The reference for DDL run in schema `target`.
    pub fn render(&self, target: &str) -> String {
        crate::ident::quote_qualified(self.schema.as_deref().unwrap_or(target), &self.name)
    }
}

impl std::fmt::Display for RelationRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            None => write!(f, "{}", crate::ident::quote_ident(&self.name)),
            Some(s) => write!(f, "{}", crate::ident::quote_qualified(s, &self.name)),
        }
    }
}

impl Schema {
    /// Sorts every unordered list by name (the reader's order need not be), so that equal
    /// schemas have equal models and the planner's output is deterministic.
    pub fn normalize(&mut self) {
        self.default_privileges.sort();
        self.collations.sort_by(|a, b| a.name.cmp(&b.name));
        self.types.sort_by(|a, b| a.name.cmp(&b.name));
        self.sequences.sort_by(|a, b| a.name.cmp(&b.name));
        self.tables.sort_by(|a, b| a.name.cmp(&b.name));
        self.views.sort_by(|a, b| a.name.cmp(&b.name));
        self.functions.sort_by(|a, b| {
            (&a.name, &a.identity_arguments).cmp(&(&b.name, &b.identity_arguments))
        });
        self.aggregates.sort_by(|a, b| {
            (&a.name, &a.identity_arguments).cmp(&(&b.name, &b.identity_arguments))
        });
        self.operators
            .sort_by(|a, b| (&a.name, &a.left, &a.right).cmp(&(&b.name, &b.left, &b.right)));
        self.operator_families
            .sort_by(|a, b| (&a.name, &a.method).cmp(&(&b.name, &b.method)));
        self.operator_classes
            .sort_by(|a, b| (&a.name, &a.method).cmp(&(&b.name, &b.method)));
        self.text_search_dictionaries
            .sort_by(|a, b| a.name.cmp(&b.name));
        self.text_search_configurations
            .sort_by(|a, b| a.name.cmp(&b.name));
        self.statistics.sort_by(|a, b| a.name.cmp(&b.name));
        self.unsupported.sort();
        self.dependencies.sort();
        self.dependencies.dedup();
        if let Some(acl) = &mut self.acl {
            acl.0.sort();
        }
        for t in &mut self.types {
            if let TypeDefinition::Domain { constraints, .. } = &mut t.definition {
                constraints.sort_by(|a, b| a.name.cmp(&b.name));
            }
            sort_acl(&mut t.acl);
        }
        for s in &mut self.sequences {
            sort_acl(&mut s.acl);
        }
        for t in &mut self.tables {
            t.constraints.sort_by(|a, b| a.name.cmp(&b.name));
            t.indexes.sort_by(|a, b| a.name.cmp(&b.name));
            t.triggers.sort_by(|a, b| a.name.cmp(&b.name));
            t.policies.sort_by(|a, b| a.name.cmp(&b.name));
            t.rules.sort_by(|a, b| a.name.cmp(&b.name));
            t.outside_partitions.sort();
            for p in &mut t.policies {
                p.roles.sort();
            }
            for c in &mut t.columns {
                sort_acl(&mut c.acl);
            }
            sort_acl(&mut t.acl);
        }
        for v in &mut self.views {
            v.indexes.sort_by(|a, b| a.name.cmp(&b.name));
            for c in &mut v.columns {
                sort_acl(&mut c.acl);
            }
            sort_acl(&mut v.acl);
        }
        for f in &mut self.functions {
            sort_acl(&mut f.acl);
        }
        for a in &mut self.aggregates {
            sort_acl(&mut a.acl);
        }
        for f in &mut self.operator_families {
            f.members.sort();
        }
        for c in &mut self.operator_classes {
            c.members.sort();
        }
    }

    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    pub fn sequence(&self, name: &str) -> Option<&Sequence> {
        self.sequences.iter().find(|s| s.name == name)
    }
}

fn sort_acl(acl: &mut Option<Acl>) {
    if let Some(a) = acl {
        a.0.sort();
    }
}
