//! Catalogue changes between the PostgreSQL versions CI runs (15 and 18) that the extension's
//! catalogue-driven code must follow. Each test runs on every version; what only PostgreSQL 18
//! can express (named, NO INHERIT and NOT VALID not-null constraints, virtual generated columns)
//! is added to the fixture where the server has it.

use qft_integration_tests::postgres::Client;
use qft_integration_tests::*;

fn server_major(client: &mut Client) -> i32 {
    one::<String>(client, "SHOW server_version_num")
        .parse::<i32>()
        .expect("server_version_num")
        / 10000
}

/// `pg_dump -s -n schema` with the schema's name written as `@schema@`, and without pg_dump's
/// per-run `\restrict` key lines: two schemas built alike dump alike.
fn dump_schema(db: &TestDb, schema: &str) -> String {
    let mut cmd = cluster().command("pg_dump", "postgres", &db.name);
    cmd.args(["--schema-only", "--schema", schema]);
    run(cmd, "pg_dump")
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .map(|l| l.replace(schema, "@schema@"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Not-null constraints in every form the server has, on tables, inheritance children, partitions
/// and domains, next to generated columns.
const NOT_NULL_FIXTURE: &str = "
    CREATE SCHEMA nn_src;
    CREATE DOMAIN nn_src.positive integer CONSTRAINT positive_required NOT NULL CHECK (VALUE > 0);
    CREATE TABLE nn_src.items (id integer CONSTRAINT id_required NOT NULL, qty integer NOT NULL,
                               total integer GENERATED ALWAYS AS (qty * 2) STORED, p nn_src.positive);
    CREATE TABLE nn_src.parent (id integer NOT NULL, x integer);
    -- A local column merged with an inherited one: its NOT NULL comes only from the parent.
    CREATE TABLE nn_src.merged (id integer, z integer) INHERITS (nn_src.parent);
    CREATE TABLE nn_src.own (y integer NOT NULL) INHERITS (nn_src.parent);
    CREATE TABLE nn_src.events (id integer NOT NULL, v integer) PARTITION BY RANGE (id);
    CREATE TABLE nn_src.events_1 PARTITION OF nn_src.events FOR VALUES FROM (0) TO (10);
    INSERT INTO nn_src.items (id, qty, p) VALUES (1, 2, 3);
    INSERT INTO nn_src.merged VALUES (1, 2, 3);
";

const NOT_NULL_FIXTURE_15: &str = "
    ALTER TABLE nn_src.events_1 ALTER COLUMN v SET NOT NULL;
";

const NOT_NULL_FIXTURE_18: &str = "
    ALTER TABLE nn_src.events_1 ADD CONSTRAINT v_required NOT NULL v;
    CREATE TABLE nn_src.v18 (a integer, doubled integer GENERATED ALWAYS AS (a * 2) VIRTUAL, b integer,
                             c integer CONSTRAINT c_here_only NOT NULL NO INHERIT);
    INSERT INTO nn_src.v18 (a, b, c) VALUES (1, NULL, 1);
    -- NOT VALID: the row above does not satisfy it, so it must come after the copied data.
    ALTER TABLE nn_src.v18 ADD CONSTRAINT b_from_now_on NOT NULL b NOT VALID;
";

#[test]
fn clone_schema_copies_not_null_constraints_and_generated_columns_as_pg_dump_sees_them() {
    let db = TestDb::new("ver_notnull");
    let mut su = db.superuser();
    let major = server_major(&mut su);
    su.batch_execute(NOT_NULL_FIXTURE).expect("fixture");
    su.batch_execute(if major >= 18 {
        NOT_NULL_FIXTURE_18
    } else {
        NOT_NULL_FIXTURE_15
    })
    .expect("version-specific fixture");

    // As the superuser: copy_data reads the source with the caller's rights.
    su.batch_execute("SELECT tenant.clone_schema('nn_src', 'nn_copy', copy_data => true)")
        .expect("clone");

    // The oracle is pg_dump of the same server version, not the extension's own comparison.
    let (source, copy) = (dump_schema(&db, "nn_src"), dump_schema(&db, "nn_copy"));
    assert!(
        source.contains("CONSTRAINT id_required NOT NULL") || major < 18,
        "{source}"
    );
    assert_eq!(copy, source);
    assert_eq!(one::<i64>(&mut su, "SELECT count(*) FROM nn_copy.items"), 1);
    assert_eq!(
        one::<i64>(&mut su, "SELECT count(*) FROM nn_copy.merged"),
        1
    );
    if major >= 18 {
        // The copied data kept its NULL under the NOT VALID constraint, which still guards new rows;
        // the virtual column computes in the copy.
        assert_eq!(one::<i32>(&mut su, "SELECT doubled FROM nn_copy.v18"), 2);
        expect_sqlstate(
            su.execute("INSERT INTO nn_copy.v18 (a, b, c) VALUES (2, NULL, 2)", &[]),
            "23502",
        );
        let constraints: Vec<String> = su
            .query(
                "SELECT format('%s.%s noinherit=%s valid=%s local=%s', c.relname, k.conname, k.connoinherit,
                               k.convalidated, k.conislocal)
                   FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
                  WHERE k.contype = 'n' AND c.relnamespace = 'nn_copy'::regnamespace
                    AND k.conname IN ('id_required', 'v_required', 'c_here_only', 'b_from_now_on', 'parent_id_not_null')
                  ORDER BY 1",
                &[],
            )
            .expect("constraints")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            constraints,
            [
                "events_1.v_required noinherit=f valid=t local=t",
                "items.id_required noinherit=f valid=t local=t",
                "merged.parent_id_not_null noinherit=f valid=t local=f",
                "own.parent_id_not_null noinherit=f valid=t local=f",
                "parent.parent_id_not_null noinherit=f valid=t local=t",
                "v18.b_from_now_on noinherit=f valid=f local=t",
                "v18.c_here_only noinherit=t valid=t local=t",
            ]
        );
    }
}

#[test]
fn schema_drift_tells_a_generated_column_from_a_default() {
    // PostgreSQL 18's GENERATED ALWAYS AS without STORED is virtual: its expression sits where a
    // default would, and must not read as one.
    let db = TestDb::new("ver_drift");
    let mut su = db.superuser();
    let kind = if server_major(&mut su) >= 18 {
        "VIRTUAL"
    } else {
        "STORED"
    };
    su.batch_execute(&format!(
        "CREATE SCHEMA tenant_template;
         CREATE TABLE tenant_template.calc (id integer PRIMARY KEY, seven integer GENERATED ALWAYS AS (7) {kind});
         SELECT tenant.create_tenant('a', with_schema => true);
         SELECT tenant.create_tenant('b', with_schema => true);
         ALTER TABLE tenant_b.calc DROP COLUMN seven, ADD COLUMN seven integer DEFAULT 7;"
    ))
    .expect("fixture");
    let mut admin = db.connect("admin");
    let rows: Vec<(String, String, String)> = admin
        .query(
            "SELECT schema::text, object, difference FROM tenant.schema_drift() ORDER BY 1, 2",
            &[],
        )
        .expect("schema_drift")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    // One object, two properties: what the template generates, the tenant's default.
    assert!(
        rows.iter()
            .all(|r| (r.0.as_str(), r.1.as_str()) == ("tenant_b", "column calc.seven")),
        "{rows:?}"
    );
    let text: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(
        text,
        [
            "default: tenant_template has (nothing) | tenant_b has 7".to_string(),
            format!(
                "generated: tenant_template has 7{} | tenant_b has (nothing)",
                if kind == "VIRTUAL" { " VIRTUAL" } else { "" }
            ),
        ],
        "{kind}"
    );
}
