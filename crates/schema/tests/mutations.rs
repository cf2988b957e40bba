//! One mutation per compared property: alter one thing in a copy of a real schema's model and
//! expect exactly one difference, naming that object and that property. A property the diff
//! does not look at fails here.

mod common;
use common::*;
use qft_schema::diff::{diff, Options};
use qft_schema::model::*;
use qft_schema::Schema;

type Mutation = fn(&mut Schema);

fn role(r: &str) -> Grantee {
    Grantee::Role(r.into())
}

fn grant(r: &str, p: Privilege) -> Grant {
    Grant {
        grantee: role(r),
        privilege: p,
        grantable: false,
    }
}

macro_rules! cases {
    ($($fixture:literal, $object:literal, $property:literal, $m:expr;)*) => {
        vec![$(($fixture, $object, $property, $m as Mutation)),*]
    };
}

#[allow(clippy::type_complexity)]
fn domain_parts<'a>(
    s: &'a mut Schema,
    name: &str,
) -> (
    &'a mut SqlText,
    &'a mut bool,
    &'a mut Option<SqlText>,
    &'a mut Option<SqlText>,
    &'a mut Vec<DomainConstraint>,
) {
    match &mut ty(s, name).definition {
        TypeDefinition::Domain {
            base,
            not_null,
            default,
            collation,
            constraints,
            ..
        } => (base, not_null, default, collation, constraints),
        _ => panic!("{name} is not a domain"),
    }
}

#[allow(clippy::type_complexity)]
fn range_parts<'a>(
    s: &'a mut Schema,
    name: &str,
) -> (
    &'a mut SqlText,
    &'a mut SqlText,
    &'a mut Option<SqlText>,
    &'a mut Option<SqlText>,
    &'a mut Option<SqlText>,
    &'a mut String,
) {
    match &mut ty(s, name).definition {
        TypeDefinition::Range {
            subtype,
            subtype_opclass,
            collation,
            canonical,
            subtype_diff,
            multirange,
        } => (
            subtype,
            subtype_opclass,
            collation,
            canonical,
            subtype_diff,
            multirange,
        ),
        _ => panic!("{name} is not a range"),
    }
}

fn attributes<'a>(s: &'a mut Schema, name: &str) -> &'a mut Vec<Attribute> {
    match &mut ty(s, name).definition {
        TypeDefinition::Composite { attributes } => attributes,
        _ => panic!("{name} is not composite"),
    }
}

use qft_schema::SqlText;

#[test]
fn every_compared_property_is_noticed() {
    let cases: Vec<(&str, &str, &str, Mutation)> = cases![
        // schema
        "template", "schema", "owner", |s| s.owner = "someone".into();
        "template", "schema", "acl", |s| s.acl = Some(Acl(vec![grant("postgres", Privilege::Usage)]));
        "template", "schema", "comment", |s| s.comment = Some("changed".into());
        // types
        "template", "type mood", "labels", |s| if let TypeDefinition::Enum { labels } = &mut ty(s, "mood").definition { labels.push("ecstatic".into()) };
        "template", "type mood", "owner", |s| ty(s, "mood").owner = "x".into();
        "template", "type mood", "acl", |s| ty(s, "mood").acl = Some(Acl(vec![]));
        "template", "type mood", "comment", |s| ty(s, "mood").comment = None;
        "template", "type posint", "base", |s| *domain_parts(s, "posint").0 = text("bigint");
        "template", "type posint", "not null", |s| *domain_parts(s, "posint").1 = false;
        "template", "type posint", "default", |s| *domain_parts(s, "posint").2 = None;
        "template", "type posint", "collation", |s| *domain_parts(s, "posint").3 = Some(text("\"C\""));
        "template", "domain constraint posint.posint_positive", "definition", |s| domain_parts(s, "posint").4[0].definition = text("CHECK ((VALUE > 1))");
        "template", "domain constraint posint.posint_positive", "validated", |s| domain_parts(s, "posint").4[0].validated = false;
        "awkward", "domain constraint even.even_check", "comment", |s| domain_parts(s, "even").4[0].comment = None;
        "template", "attribute address.zip", "type", |s| attributes(s, "address")[1].data_type = text("integer");
        "template", "attribute address.street", "collation", |s| attributes(s, "address")[0].collation = Some(text("\"C\""));
        "template", "attribute address.street", "comment", |s| attributes(s, "address")[0].comment = Some("c".into());
        "awkward", "type span", "subtype", |s| *range_parts(s, "span").0 = text("real");
        "awkward", "type span", "subtype opclass", |s| *range_parts(s, "span").1 = text("pg_catalog.float4_ops");
        "awkward", "type span", "collation", |s| *range_parts(s, "span").2 = Some(text("\"C\""));
        "awkward", "type span", "canonical", |s| *range_parts(s, "span").3 = Some(text("f"));
        "awkward", "type span", "subtype diff", |s| *range_parts(s, "span").4 = Some(text("float8mi"));
        "awkward", "type span", "multirange", |s| *range_parts(s, "span").5 = "spans".into();
        // sequences
        "template", "sequence ticket_seq", "type", |s| sequence(s, "ticket_seq").data_type = text("bigint");
        "template", "sequence ticket_seq", "start", |s| sequence(s, "ticket_seq").start = 21;
        "template", "sequence ticket_seq", "increment", |s| sequence(s, "ticket_seq").increment = 6;
        "template", "sequence ticket_seq", "min", |s| sequence(s, "ticket_seq").min = 11;
        "template", "sequence ticket_seq", "max", |s| sequence(s, "ticket_seq").max = 99;
        "template", "sequence ticket_seq", "cache", |s| sequence(s, "ticket_seq").cache = 1;
        "template", "sequence ticket_seq", "cycle", |s| sequence(s, "ticket_seq").cycle = false;
        "template", "sequence ticket_seq", "unlogged", |s| sequence(s, "ticket_seq").unlogged = true;
        "template", "sequence ticket_seq", "owned by", |s| sequence(s, "ticket_seq").owned_by = Some(OwnedBy { table: "customers".into(), column: "ticket".into(), identity: false });
        "template", "sequence ticket_seq", "owner", |s| sequence(s, "ticket_seq").owner = "x".into();
        "template", "sequence ticket_seq", "acl", |s| sequence(s, "ticket_seq").acl = None;
        "awkward", "sequence free_seq", "comment", |s| sequence(s, "free_seq").comment = None;
        // tables
        "template", "table customers", "partitioned", |s| table(s, "customers").partitioned = true;
        "template", "table customers", "unlogged", |s| table(s, "customers").unlogged = true;
        "template", "table customers", "access method", |s| table(s, "customers").access_method = Some("heap2".into());
        "template", "table customers", "options", |s| table(s, "customers").options = vec!["fillfactor=50".into()];
        "template", "table customers", "toast options", |s| table(s, "customers").toast_options = vec!["autovacuum_enabled=false".into()];
        "template", "table customers", "tablespace", |s| table(s, "customers").tablespace = Some("fast".into());
        "template", "table events", "partition by", |s| table(s, "events").partition_key = Some(text("LIST (id)"));
        "template", "table events_2024", "partition of", |s| table(s, "events_2024").partition_of.as_mut().unwrap().bound = text("DEFAULT");
        "template", "table events", "partitions elsewhere", |s| table(s, "events").outside_partitions.push(RelationRef { schema: Some("x".into()), name: "y".into() });
        "awkward", "table child", "inherits", |s| table(s, "child").inherits.clear();
        "template", "table locked", "row security", |s| table(s, "locked").row_security = false;
        "template", "table locked", "force row security", |s| table(s, "locked").force_row_security = false;
        "template", "table customers", "replica identity", |s| table(s, "customers").replica_identity = ReplicaIdentity::Full;
        "template", "table scratch", "owner", |s| table(s, "scratch").owner = "postgres".into();
        "template", "table customers", "acl", |s| table(s, "customers").acl = None;
        "template", "table customers", "comment", |s| table(s, "customers").comment = None;
        // columns
        "template", "column customers.name", "type", |s| column(s, "customers", "name").data_type = text("varchar");
        "template", "column customers.name", "collation", |s| column(s, "customers", "name").collation = None;
        "template", "column customers.name", "not null", |s| column(s, "customers", "name").not_null = false;
        "template", "column customers.mood", "default", |s| column(s, "customers", "mood").default = None;
        "template", "column customers.id", "identity", |s| column(s, "customers", "id").identity = Some(Identity::ByDefault);
        "template", "column customers.name_upper", "generated", |s| column(s, "customers", "name_upper").generated = Some(text("lower(name)"));
        "template", "column customers.name_upper", "generated", |s| column(s, "customers", "name_upper").generated_virtual = true;
        "template", "column customers.name", "not null", |s| column(s, "customers", "name").not_null_constraint = Some(NotNullConstraint { name: "name_required".into(), no_inherit: false, validated: true, local: true });
        "template", "column customers.notes", "storage", |s| column(s, "customers", "notes").storage = Storage::Main;
        "awkward", "column \"Edge Case\".tail", "compression", |s| column(s, "Edge Case", "tail").compression = None;
        "awkward", "column \"Edge Case\".v", "statistics", |s| column(s, "Edge Case", "v").statistics = Some(1);
        "awkward", "column \"Edge Case\".v", "options", |s| column(s, "Edge Case", "v").options.clear();
        "awkward", "column child.kind", "local", |s| column(s, "child", "kind").local = true;
        "awkward", "column child.kind", "inherited", |s| column(s, "child", "kind").inherited = 2;
        "template", "column \"with space\".\"a column\"", "acl", |s| column(s, "with space", "a column").acl = None;
        "template", "column customers.name", "comment", |s| column(s, "customers", "name").comment = None;
        // constraints
        "template", "constraint customers.name_not_blank", "kind", |s| table(s, "customers").constraints.iter_mut().find(|k| k.name == "name_not_blank").unwrap().kind = ConstraintKind::Unique;
        "template", "constraint customers.name_not_blank", "definition", |s| table(s, "customers").constraints.iter_mut().find(|k| k.name == "name_not_blank").unwrap().definition = text("CHECK (true)");
        "template", "constraint customers.name_not_blank", "validated", |s| table(s, "customers").constraints.iter_mut().find(|k| k.name == "name_not_blank").unwrap().validated = false;
        "template", "constraint customers.name_not_blank", "local", |s| table(s, "customers").constraints.iter_mut().find(|k| k.name == "name_not_blank").unwrap().local = false;
        "template", "constraint customers.name_not_blank", "inherited", |s| table(s, "customers").constraints.iter_mut().find(|k| k.name == "name_not_blank").unwrap().inherited = 1;
        "template", "constraint customers.name_not_blank", "parent", |s| table(s, "customers").constraints.iter_mut().find(|k| k.name == "name_not_blank").unwrap().parent = Some("p".into());
        "template", "constraint customers.name_not_blank", "comment", |s| table(s, "customers").constraints.iter_mut().find(|k| k.name == "name_not_blank").unwrap().comment = None;
        // indexes
        "template", "index customers_lower_name_idx", "unique", |s| index(s, "customers", "customers_lower_name_idx").unique = true;
        "template", "index customers_lower_name_idx", "partitioned", |s| index(s, "customers", "customers_lower_name_idx").partitioned = true;
        "template", "index customers_lower_name_idx", "definition", |s| index(s, "customers", "customers_lower_name_idx").definition = text("USING hash (name)");
        "template", "index customers_lower_name_idx", "constraint", |s| index(s, "customers", "customers_lower_name_idx").constraint = Some("c".into());
        "template", "index customers_lower_name_idx", "clustered", |s| index(s, "customers", "customers_lower_name_idx").clustered = true;
        "template", "index customers_lower_name_idx", "replica identity", |s| index(s, "customers", "customers_lower_name_idx").replica_identity = true;
        "template", "index customers_lower_name_idx", "valid", |s| index(s, "customers", "customers_lower_name_idx").valid = false;
        "template", "index events_2024_payload_idx", "attached to", |s| index(s, "events_2024", "events_2024_payload_idx").parent = None;
        "kinds", "index people_lower_idx", "column statistics", |s| index(s, "people", "people_lower_idx").column_statistics[0].target = 100;
        "template", "index order_big_idx", "comment", |s| index(s, "order", "order_big_idx").comment = None;
        // triggers, policies, rules
        "template", "trigger \"order\".order_log", "definition", |s| table(s, "order").triggers[0].definition = text("CREATE TRIGGER x");
        "template", "trigger \"order\".order_log", "enabled", |s| table(s, "order").triggers[0].enabled = TriggerEnabled::Disabled;
        "template", "trigger \"order\".order_log", "from parent", |s| table(s, "order").triggers[0].from_parent = true;
        "template", "trigger \"order\".order_log", "comment", |s| table(s, "order").triggers[0].comment = None;
        "template", "policy docs.docs_all", "permissive", |s| table(s, "docs").policies[0].permissive = false;
        "template", "policy docs.docs_all", "command", |s| table(s, "docs").policies[0].command = PolicyCommand::Delete;
        "template", "policy docs.docs_all", "roles", |s| table(s, "docs").policies[0].roles = vec![role("bi")];
        "template", "policy docs.docs_all", "using", |s| table(s, "docs").policies[0].using = Some(text("false"));
        "template", "policy docs.docs_all", "with check", |s| table(s, "docs").policies[0].with_check = None;
        "template", "policy docs.docs_all", "comment", |s| table(s, "docs").policies[0].comment = None;
        // views
        "template", "view customer_names", "definition", |s| view(s, "customer_names").definition = text(" SELECT 1");
        "template", "view customer_names", "options", |s| view(s, "customer_names").options.clear();
        "template", "materialized view order_totals", "access method", |s| view(s, "order_totals").access_method = None;
        "template", "materialized view order_totals", "tablespace", |s| view(s, "order_totals").tablespace = Some("t".into());
        "template", "view customer_names_c", "owner", |s| view(s, "customer_names_c").owner = "postgres".into();
        "template", "view customer_names", "acl", |s| view(s, "customer_names").acl = Some(Acl(vec![]));
        "template", "view customer_names", "comment", |s| view(s, "customer_names").comment = None;
        "awkward", "column v_shadow.a", "default", |s| view(s, "v_shadow").columns[0].default = None;
        // functions
        "template", "function customer_count()", "kind", |s| function(s, "customer_count").kind = FunctionKind::Window;
        "template", "function double_it(x posint)", "arguments", |s| function(s, "double_it").arguments = text("x posint DEFAULT 1");
        "template", "function customer_count()", "result", |s| function(s, "customer_count").result = Some(text("integer"));
        "template", "function customer_count()", "language", |s| function(s, "customer_count").language = "plpgsql".into();
        "template", "function customer_count()", "volatility", |s| function(s, "customer_count").volatility = Volatility::Volatile;
        "template", "function customer_count()", "strict", |s| function(s, "customer_count").strict = true;
        "template", "function customer_count()", "security definer", |s| function(s, "customer_count").security_definer = true;
        "template", "function customer_count()", "leakproof", |s| function(s, "customer_count").leakproof = true;
        "template", "function customer_count()", "parallel", |s| function(s, "customer_count").parallel = Parallel::Safe;
        "template", "function customer_count()", "cost", |s| function(s, "customer_count").cost = "5".into();
        "template", "function customer_count()", "rows", |s| function(s, "customer_count").rows = "5".into();
        "template", "function customer_count()", "support", |s| function(s, "customer_count").support = Some(text("f"));
        "template", "function touch()", "config", |s| function(s, "touch").config.clear();
        "template", "function customer_count()", "body", |s| function(s, "customer_count").body = FunctionBody::Text(text(" SELECT 1 "));
        "template", "function customer_count()", "owner", |s| function(s, "customer_count").owner = "x".into();
        "template", "function customer_count()", "acl", |s| function(s, "customer_count").acl = None;
        "template", "function customer_count()", "comment", |s| function(s, "customer_count").comment = None;
        // aggregates
        "kinds", "aggregate group_concat(text)", "arguments", |s| s.aggregates[0].arguments = text("varchar");
        "kinds", "aggregate group_concat(text)", "kind", |s| s.aggregates[0].kind = AggregateKind::OrderedSet;
        "kinds", "aggregate group_concat(text)", "transition", |s| s.aggregates[0].transition = text("textcat");
        "kinds", "aggregate group_concat(text)", "state type", |s| s.aggregates[0].state_type = text("varchar");
        "kinds", "aggregate group_concat(text)", "state space", |s| s.aggregates[0].state_space = 8;
        "kinds", "aggregate group_concat(text)", "final function", |s| s.aggregates[0].final_function = Some(text("upper"));
        "kinds", "aggregate group_concat(text)", "final extra", |s| s.aggregates[0].final_extra = true;
        "kinds", "aggregate group_concat(text)", "final modify", |s| s.aggregates[0].final_modify = FinalModify::ReadWrite;
        "kinds", "aggregate group_concat(text)", "combine", |s| s.aggregates[0].combine = Some(text("textcat"));
        "kinds", "aggregate group_concat(text)", "serial", |s| s.aggregates[0].serial = Some(text("f"));
        "kinds", "aggregate group_concat(text)", "deserial", |s| s.aggregates[0].deserial = Some(text("f"));
        "kinds", "aggregate group_concat(text)", "initial value", |s| s.aggregates[0].initial_value = None;
        "kinds", "aggregate msum(integer)", "moving", |s| s.aggregates[1].moving = None;
        "kinds", "aggregate group_concat(text)", "sort operator", |s| s.aggregates[0].sort_operator = Some(text("OPERATOR(pg_catalog.>)"));
        "kinds", "aggregate group_concat(text)", "parallel", |s| s.aggregates[0].parallel = Parallel::Safe;
        "kinds", "aggregate group_concat(text)", "owner", |s| s.aggregates[0].owner = "x".into();
        "kinds", "aggregate group_concat(text)", "acl", |s| s.aggregates[0].acl = Some(Acl(vec![]));
        "kinds", "aggregate group_concat(text)", "comment", |s| s.aggregates[0].comment = None;
        // operators, families, classes
        "kinds", "operator ===(text, text)", "result", |s| s.operators[0].result = text("integer");
        "kinds", "operator ===(text, text)", "function", |s| s.operators[0].function = text("texteq");
        "kinds", "operator ===(text, text)", "commutator", |s| s.operators[0].commutator = None;
        "kinds", "operator ===(text, text)", "negator", |s| s.operators[0].negator = Some(text("OPERATOR(pg_catalog.<>)"));
        "kinds", "operator ===(text, text)", "restrict", |s| s.operators[0].restrict = None;
        "kinds", "operator ===(text, text)", "join", |s| s.operators[0].join = None;
        "kinds", "operator ===(text, text)", "hashes", |s| s.operators[0].hashes = false;
        "kinds", "operator ===(text, text)", "merges", |s| s.operators[0].merges = true;
        "kinds", "operator ===(text, text)", "owner", |s| s.operators[0].owner = "x".into();
        "kinds", "operator ===(text, text)", "comment", |s| s.operators[0].comment = None;
        "kinds", "operator family ci_family for access method hash", "members", |s| s.operator_families[0].members.push(OperatorMember::Function { number: 2, left: text("text"), right: text("text"), function: text("f(text)") });
        "kinds", "operator family ci_family for access method hash", "owner", |s| s.operator_families[0].owner = "x".into();
        "kinds", "operator family ci_family for access method hash", "comment", |s| s.operator_families[0].comment = Some("c".into());
        "kinds", "operator class ci_ops for access method hash", "type", |s| s.operator_classes[0].data_type = text("varchar");
        "kinds", "operator class ci_ops for access method hash", "default", |s| s.operator_classes[0].default = true;
        "kinds", "operator class ci_ops for access method hash", "family", |s| s.operator_classes[0].family = text("pg_catalog.text_ops");
        "kinds", "operator class ci_ops for access method hash", "storage", |s| s.operator_classes[0].storage = Some(text("integer"));
        "kinds", "operator class ci_ops for access method hash", "members", |s| { s.operator_classes[0].members.pop(); };
        "kinds", "operator class ci_ops for access method hash", "owner", |s| s.operator_classes[0].owner = "x".into();
        "kinds", "operator class ci_ops for access method hash", "comment", |s| s.operator_classes[0].comment = Some("c".into());
        // collations, text search, statistics
        "kinds", "collation ci", "provider", |s| s.collations[0].provider = CollationProvider::Libc;
        "kinds", "collation ci", "deterministic", |s| s.collations[0].deterministic = true;
        "kinds", "collation posix", "collate", |s| s.collations[1].collate = Some("POSIX".into());
        "kinds", "collation posix", "ctype", |s| s.collations[1].ctype = Some("POSIX".into());
        "kinds", "collation ci", "icu locale", |s| s.collations[0].icu_locale = Some("de".into());
        "kinds", "collation ci", "owner", |s| s.collations[0].owner = "x".into();
        "kinds", "collation ci", "comment", |s| s.collations[0].comment = None;
        "kinds", "text search dictionary simple_en", "template", |s| s.text_search_dictionaries[0].template = text("pg_catalog.ispell");
        "kinds", "text search dictionary simple_en", "options", |s| s.text_search_dictionaries[0].options = None;
        "kinds", "text search dictionary simple_en", "owner", |s| s.text_search_dictionaries[0].owner = "x".into();
        "kinds", "text search dictionary simple_en", "comment", |s| s.text_search_dictionaries[0].comment = Some("c".into());
        "kinds", "text search configuration docs", "parser", |s| s.text_search_configurations[0].parser = text("pg_catalog.other");
        "kinds", "text search configuration docs", "mappings", |s| { s.text_search_configurations[0].mappings.pop(); };
        "kinds", "text search configuration docs", "owner", |s| s.text_search_configurations[0].owner = "x".into();
        "kinds", "text search configuration docs", "comment", |s| s.text_search_configurations[0].comment = Some("c".into());
        "awkward", "statistics \"St\"", "table", |s| s.statistics[0].table = "child".into();
        "awkward", "statistics \"St\"", "definition", |s| s.statistics[0].definition = text(" ON id FROM x");
        "awkward", "statistics \"St\"", "target", |s| s.statistics[0].target = None;
        "awkward", "statistics \"St\"", "owner", |s| s.statistics[0].owner = "x".into();
        "awkward", "statistics \"St\"", "comment", |s| s.statistics[0].comment = None;
    ];
    let mut fixtures = std::collections::BTreeMap::new();
    for (fixture_name, object, property, mutate) in &cases {
        let base = fixtures
            .entry(*fixture_name)
            .or_insert_with(|| fixture(fixture_name))
            .clone();
        let mut changed = base.clone();
        mutate(&mut changed);
        assert_ne!(
            base, changed,
            "{object} {property}: the mutation changed nothing"
        );
        let d = diff(&base, &changed, &Options::exact());
        let named: Vec<(String, Option<&str>)> =
            d.iter().map(|x| (x.object.clone(), x.property)).collect();
        assert_eq!(
            named,
            vec![(object.to_string(), Some(*property))],
            "{fixture_name}: {object} {property}"
        );
    }
    assert!(cases.len() > 150, "{} cases", cases.len());
}

#[test]
fn column_order_is_compared() {
    let base = fixture("template");
    let mut changed = base.clone();
    let cols = &mut table(&mut changed, "orders_log").columns;
    cols.swap(0, 1);
    let d = diff(&base, &changed, &Options::exact());
    assert!(!d.is_empty());
    assert!(d.iter().all(|x| x.property == Some("position")), "{d:?}");
}

#[test]
fn objects_on_one_side_only() {
    let base = fixture("template");
    let mut changed = base.clone();
    changed.tables.retain(|t| t.name != "locked");
    changed.views.push(View {
        name: "extra".into(),
        ..Default::default()
    });
    changed.unsupported.push(Unsupported {
        object: "x".into(),
        reason: "y".into(),
    });
    changed.default_privileges.push(DefaultPrivileges {
        role: "r".into(),
        objects: DefaultObjects::Tables,
        acl: Acl(vec![]),
    });
    let d = diff(&base, &changed, &Options::exact());
    let named: Vec<(&str, bool, bool)> = d
        .iter()
        .map(|x| (x.object.as_str(), x.left.is_some(), x.right.is_some()))
        .collect();
    assert_eq!(
        named,
        [
            ("column locked.id", true, false),
            ("default privileges for r on Tables", false, true),
            ("table locked", true, false),
            ("unsupported x", false, true),
            ("view extra", false, true),
        ]
    );
}

#[test]
fn what_is_not_structure_is_not_compared() {
    let base = fixture("template");
    let cases: Vec<(&str, Mutation)> = vec![
        ("the schema's name", |s| s.name = "other".into()),
        ("dependencies", |s| s.dependencies.clear()),
        ("a materialized view's data state", |s| {
            view(s, "order_totals").populated = false
        }),
        ("the default storage of a column's type", |s| {
            column(s, "customers", "notes").type_storage = Storage::Plain
        }),
    ];
    for (what, mutate) in cases {
        let mut changed = base.clone();
        mutate(&mut changed);
        assert_eq!(diff(&base, &changed, &Options::exact()), vec![], "{what}");
    }
    // An ACL spelled out equal to the owner's default is the default.
    let mut explicit = base.clone();
    let owner = table(&mut explicit, "locked").owner.clone();
    table(&mut explicit, "locked").acl = Some(qft_schema::acl::default_acl(
        qft_schema::acl::AclKind::Relation,
        &owner,
    ));
    assert_eq!(diff(&base, &explicit, &Options::exact()), vec![]);
}
