-- migrate_all: apply one migration to the template schema, then to every tenant schema in the
-- registry, one committed transaction per schema, with a ledger in the database.
--
-- Who runs what:
--   * The migration SQL runs as the caller (SECURITY INVOKER), never as the extension owner: a
--     tenant_admin gets no privilege from migrate_all that it did not have. The caller needs the
--     privileges the migration needs in the template and tenant schemas (usually: owns them).
--   * The ledger (tenant.migrations, tenant.schema_migrations, tenant.migration_runs) is written
--     only by the SECURITY DEFINER helpers below, each of which checks tenant_admin membership
--     and that it runs inside a run (this session holds the run lock, or for a worker, its leader).
--   * The procedures are SECURITY INVOKER and have no SET clause: both would forbid COMMIT. Their
--     bodies only call schema-qualified helpers, so the caller's search_path resolves nothing.
--
-- Data migrations: each schema's step runs with that schema's tenant as a transaction-local
-- context the migration cannot change (tenant._migration_run_step, src/migrate.rs), so a
-- NOSUPERUSER migrator sees and updates the schema's rows through its pins; the template's step
-- runs without a tenant. Every setting a migration changes (SET ROLE, search_path, ...) is rolled
-- back when its step ends, so none outlives the CALL.
--
-- What a migration may add: nothing that escapes tenant isolation (tenant._tenant_schema_problems
-- in sql/schemas.sql). A step that adds such an object fails with 0A000 — on the template, the
-- whole version is refused before any tenant is touched.
--
-- Locks (src/migrate.rs): object locks on the extension itself, which no SQL function can take —
-- an application role cannot block a run with advisory locks, and a migration that calls
-- pg_advisory_unlock_all() releases nothing. In pg_locks: locktype 'object', classid
-- 'pg_extension'::regclass, objid the extension's oid, and objsubid
--   1 the run lock, session level, exclusive: one run per database at a time; a second run waits
--     for it (lock_timeout makes it fail with 55P03 instead);
--   2 held shared by parallel workers while they live; taken exclusively before `running` rows of
--     an interrupted run are taken over;
--   3 the template lock, transaction level: exclusive while the template is migrated, shared by
--     create_tenant(with_schema => true) and _mark_schema_at_template_version.
-- and, per schema being migrated, a transaction-level object lock with classid
-- 'tenant.schema_migrations'::regclass and objid the schema's oid, held by the transaction that
-- migrates it: tenant.migration_activity (and the `running` count of migration_status()) reads
-- them, so a schema is shown as running exactly while a live transaction is migrating it.
--
-- One transaction per schema: the ledger row is claimed (FOR UPDATE SKIP LOCKED, so workers never
-- wait for each other), migrated, pinned, checked and recorded in the same transaction. `running`
-- is never committed: a killed run leaves its schema `pending`, as if never attempted, and the next
-- run applies it.


-- The template schema: the setting qualityfoundry_tenant.template_schema (default tenant_template).
CREATE OR REPLACE FUNCTION tenant._template_schema() RETURNS name
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s text := current_setting('qualityfoundry_tenant.template_schema', true);
BEGIN
    IF s IS NULL THEN
        RETURN 'tenant_template';
    END IF;
    IF s = '' THEN
        RAISE EXCEPTION 'qualityfoundry_tenant.template_schema is empty' USING ERRCODE = '22023',
            HINT = 'Set it to the name of the template schema, or reset it (default tenant_template).';
    END IF;
    RETURN s;
END
$$;

CREATE OR REPLACE FUNCTION tenant._migration_checksum(migration text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$ SELECT encode(sha256(convert_to(migration, 'UTF8')), 'hex') $$;

-- Argument checks shared by migrate_all and retry_failed: membership (42501) first, then the
-- transaction block (25001), then each argument. Nothing has been changed when this raises.
CREATE OR REPLACE FUNCTION tenant._migration_check_args(what text, version text, migration text, need_migration boolean,
                                             continue_on_error boolean, parallel integer)
RETURNS void LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    max_workers integer := current_setting('max_worker_processes')::integer;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'run migrations');
    PERFORM tenant._migration_require_top_level(what);
    IF need_migration AND version IS NULL THEN
        RAISE EXCEPTION 'version must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF version IS NOT NULL AND (btrim(version) = '' OR length(version) > 200) THEN
        RAISE EXCEPTION 'invalid migration version %', quote_literal(version) USING ERRCODE = '22023',
            DETAIL = 'A version is 1 to 200 characters and not blank.';
    END IF;
    IF need_migration AND migration IS NULL THEN
        RAISE EXCEPTION 'migration must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF need_migration AND btrim(migration, E' \t\r\n;') = '' THEN
        RAISE EXCEPTION 'migration % is empty', quote_literal(version) USING ERRCODE = '22023';
    END IF;
    IF continue_on_error IS NULL THEN
        RAISE EXCEPTION 'continue_on_error must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF parallel IS NULL THEN
        RAISE EXCEPTION 'parallel must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF parallel < 1 OR parallel > max_workers THEN
        RAISE EXCEPTION 'parallel must be between 1 and max_worker_processes (%), not %', max_workers, parallel
            USING ERRCODE = '22023',
            HINT = 'parallel => 1 applies the schemas in this session; more starts background workers.';
    END IF;
    IF NOT need_migration AND version IS NOT NULL
       AND NOT EXISTS (SELECT FROM tenant.migrations m WHERE m.version = _migration_check_args.version) THEN
        RAISE EXCEPTION 'migration version % is not registered', quote_literal(version) USING ERRCODE = '22023',
            HINT = 'tenant.migration_status() lists the registered versions.';
    END IF;
END
$$;

-- Is `version` registered? true: with this very SQL; false: not at all; 22023: with other SQL.
CREATE OR REPLACE FUNCTION tenant._migration_registered(version text, migration text) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m tenant.migrations;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'run migrations');
    SELECT * INTO m FROM tenant.migrations WHERE migrations.version = _migration_registered.version;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF m.checksum <> tenant._migration_checksum(migration) THEN
        RAISE EXCEPTION 'migration version % is already registered with different SQL', quote_literal(version)
            USING ERRCODE = '22023',
            DETAIL = format('Registered checksum %s, given %s (sha256 of the SQL text).',
                            m.checksum, tenant._migration_checksum(migration)),
            HINT = 'Released versions never change: give the change a new version.';
    END IF;
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION tenant._migration_register(version text, migration text, template name, started timestamptz)
RETURNS void LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'run migrations');
    PERFORM tenant._migration_require_lock();
    INSERT INTO tenant.migrations (version, checksum, sql, registered_by)
    VALUES (version, tenant._migration_checksum(migration), migration, tenant._acting_role());
    INSERT INTO tenant.schema_migrations (schema_name, version, status, started_at, finished_at, attempts, pid)
    VALUES (template, version, 'applied', started, clock_timestamp(), 1, pg_backend_pid())
    ON CONFLICT ON CONSTRAINT schema_migrations_pkey DO UPDATE
        SET status = 'applied', error = NULL, sqlstate = NULL, started_at = excluded.started_at,
            finished_at = excluded.finished_at, attempts = schema_migrations.attempts + 1, pid = excluded.pid;
END
$$;

-- NULL when the version is registered with this very SQL (a re-run: the template has it),
-- otherwise the template schema the new version is to be applied to.
CREATE OR REPLACE FUNCTION tenant._migration_template_target(version text, migration text) RETURNS name
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    template name;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'run migrations');
    PERFORM tenant._migration_require_lock();
    IF tenant._migration_registered(version, migration) THEN
        RETURN NULL;
    END IF;
    template := tenant._template_schema();
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = template) THEN
        RAISE EXCEPTION 'template schema % does not exist', quote_ident(template) USING ERRCODE = '3F000',
            HINT = 'Create it, or point qualityfoundry_tenant.template_schema at the template.';
    END IF;
    RETURN template;
END
$$;

-- The template step (SECURITY INVOKER: the migration runs as the caller). A new version is
-- applied to the template and registered in the caller's transaction; if the template fails the
-- error propagates and the procedure's transaction rolls back: nothing applied, nothing registered.
CREATE OR REPLACE FUNCTION tenant._migration_template_step(version text, migration text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    template name := tenant._migration_template_target(version, migration);
    started timestamptz := clock_timestamp();
    before text[];
    msg text;
    state text;
    det text;
    hnt text;
BEGIN
    IF template IS NULL THEN
        RETURN;
    END IF;
    PERFORM tenant._migration_template_lock(true);
    BEGIN
        before := tenant._tenant_schema_problem_keys(template, true);
        PERFORM tenant._migration_run_template(template, migration);
        PERFORM tenant._tenant_schema_refuse(template, true, before, format('migration %L', version));
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE, det = PG_EXCEPTION_DETAIL,
                                hnt = PG_EXCEPTION_HINT;
        RAISE EXCEPTION 'migration % failed on the template schema %: %', quote_literal(version),
                        quote_ident(template), msg
            USING ERRCODE = state,
                  DETAIL = concat_ws(E'\n', nullif(det, ''),
                                     'Nothing was applied to any schema and the version was not registered.'),
                  HINT = coalesce(nullif(hnt, ''), 'Correct the migration and run it again with the same version.');
    END;
    PERFORM tenant._migration_register(version, migration, template, started);
END
$$;

-- Opens a run over one version: takes over rows an interrupted run left `running`, gives every
-- tenant schema that has none a ledger row for this version, and queues (run_id = the run) this
-- version's pending and failed rows whose earlier versions are all applied. Pending rows that wait
-- for an earlier version are annotated and left out. Returns the run id; NULL when `always` is
-- false and nothing is queued.
CREATE OR REPLACE FUNCTION tenant._migration_start_run(version text, continue_on_error boolean, parallel integer,
                                            always boolean)
RETURNS bigint LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m tenant.migrations;
    run bigint;
    n integer;
    taken text;
    prev text; -- the version registered just before this one (NULL: none)
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'run migrations');
    PERFORM tenant._migration_require_lock();
    SELECT * INTO STRICT m FROM tenant.migrations WHERE migrations.version = _migration_start_run.version;
    SELECT e.version INTO prev FROM tenant.migrations e WHERE e.seq < m.seq ORDER BY e.seq DESC LIMIT 1;
    -- Workers of an earlier run hold this shared until they exit: once we have it, a `running` row
    -- belongs to nobody.
    PERFORM tenant._migration_workers_gone();
    -- (schema_migrations_running_idx: only rows left `running` by a 0.1.0 run are read)
    WITH t AS (
        UPDATE tenant.schema_migrations s SET status = 'pending', pid = NULL
        WHERE s.status = 'running' RETURNING s.schema_name, s.version
    )
    SELECT count(*), string_agg(format('%I (%s)', t.schema_name, t.version), ', ' ORDER BY t.version, t.schema_name)
    INTO n, taken FROM t;
    IF n > 0 THEN
        RAISE NOTICE 'taking over % schema(s) left running by an interrupted run: %', n, taken;
    END IF;

    -- A ledger row of this version for each tenant schema that has none (one anti-join, no row
    -- per tenant and registered version: a schema with no row for a version is pending for it,
    -- and the run over that version gives it its row).
    INSERT INTO tenant.schema_migrations (schema_name, version, tenant_id)
    SELECT t.schema_name, m.version, t.id
    FROM tenant.tenants t
    WHERE t.schema_name IS NOT NULL
      AND NOT EXISTS (SELECT FROM tenant.schema_migrations x
                      WHERE x.schema_name = t.schema_name AND x.version = m.version)
    ON CONFLICT ON CONSTRAINT schema_migrations_pkey DO NOTHING;

    INSERT INTO tenant.migration_runs (version, continue_on_error, parallel, started_by, leader_pid)
    VALUES (m.version, continue_on_error, parallel, tenant._acting_role(), pg_backend_pid())
    RETURNING id INTO run;

    UPDATE tenant.schema_migrations s
       SET run_id = run, status = 'pending', error = NULL, sqlstate = NULL
     WHERE s.version = m.version
       AND s.status IN ('pending', 'failed')
       AND EXISTS (SELECT FROM tenant.tenants t WHERE t.id = s.tenant_id AND t.schema_name = s.schema_name)
       -- Every earlier version is applied here exactly when the one just before is: a version is
       -- queued for a schema only once that one is applied (by induction, every earlier one),
       -- the template has every registered version (so a clone is marked with all of them), and
       -- `applied` is final. One primary-key probe per queued schema, whatever the number of
       -- versions.
       AND (prev IS NULL OR EXISTS (SELECT FROM tenant.schema_migrations a
                                    WHERE a.schema_name = s.schema_name AND a.version = prev
                                      AND a.status = 'applied'));
    GET DIAGNOSTICS n = ROW_COUNT;

    UPDATE tenant.schema_migrations s
       SET error = format('blocked: version %s is not applied to this schema', (
               SELECT e.version FROM tenant.migrations e
               WHERE e.seq < m.seq
                 AND NOT EXISTS (SELECT FROM tenant.schema_migrations a
                                 WHERE a.schema_name = s.schema_name AND a.version = e.version
                                   AND a.status = 'applied')
               ORDER BY e.seq LIMIT 1)),
           sqlstate = NULL
     WHERE s.version = m.version AND s.status = 'pending' AND s.run_id IS DISTINCT FROM run
       AND s.tenant_id IS NOT NULL;

    IF n = 0 AND NOT always THEN
        DELETE FROM tenant.migration_runs r WHERE r.id = run;
        RETURN NULL;
    END IF;
    UPDATE tenant.migration_runs r SET queued = n WHERE r.id = run;
    RETURN run;
END
$$;

-- Takes the next queued schema of the run (SKIP LOCKED: workers never wait for each other) for
-- the caller's transaction, which then migrates it (_migration_apply) and commits: the claim is
-- the row lock plus a record of this transaction (tenant._migration_claimed, src/migrate.rs),
-- nothing is written, so a killed run leaves the row `pending`. NULL when the queue is empty,
-- when the run stops at a failure (continue_on_error => false), or when `leader` is given and no
-- longer runs (tenant._migration_leader_alive). The pending rows are read in schema order from
-- schema_migrations_run_idx (run_id, status, schema_name): no sort of the queue per claim.
CREATE OR REPLACE FUNCTION tenant._migration_claim(run bigint, leader integer DEFAULT NULL) RETURNS name
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan -- planned once per session, not once per schema
AS $$
DECLARE
    r tenant.migration_runs;
    target name;
    row_tid tid;
    after name;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'run migrations');
    IF leader IS NULL THEN
        PERFORM tenant._migration_require_lock();
    ELSIF NOT tenant._migration_leader_alive(leader) THEN
        RETURN NULL;
    END IF;
    SELECT * INTO r FROM tenant.migration_runs WHERE id = run;
    IF NOT FOUND OR r.finished_at IS NOT NULL THEN
        RETURN NULL;
    END IF;
    IF NOT r.continue_on_error THEN
        IF EXISTS (SELECT FROM tenant.schema_migrations s WHERE s.run_id = run AND s.status = 'failed') THEN
            RETURN NULL;
        END IF;
    END IF;
    -- By (run_id, status) alone, ordered as schema_migrations_run_idx is, so that index is the
    -- plan: with the version in the condition too, schema_migrations_version_idx (version, status)
    -- matches as well, and the planner (stale statistics mid-run) chose it and sorted every
    -- pending row of the version for each claim. A run queues rows of its own version only.
    -- From the schema this backend claimed last (tenant._migration_claimed_after, src/migrate.rs):
    -- every pending row before it is taken, and its dead index entries are not stepped over again.
    after := tenant._migration_claimed_after(run);
    SELECT s.schema_name, s.ctid INTO target, row_tid
    FROM tenant.schema_migrations s
    WHERE s.run_id = run AND s.status = 'pending' AND s.schema_name > after
    ORDER BY s.run_id, s.status, s.schema_name
    LIMIT 1
    FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- The row lock and the claim recorded for this transaction are the claim: no write to the
    -- ledger until _migration_finish records the outcome (one update per schema).
    PERFORM tenant._migration_claimed(run, target, row_tid::text);
    RETURN target;
END
$$;

-- Records the outcome of a claimed schema, in the same transaction as the migration itself.
CREATE OR REPLACE FUNCTION tenant._migration_finish(run bigint, target name, err text, state text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v text;
    n integer := 0;
    row_tid tid;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'run migrations');
    SELECT r.version INTO STRICT v FROM tenant.migration_runs r WHERE r.id = run;
    -- Found by the ctid of the claim (a TID scan: no index over the run's pending rows), the one
    -- write of the schema's ledger row in this run: started when this transaction began (it began
    -- with the claim), attempted once more, by this backend.
    row_tid := tenant._migration_claimed_row(run, target)::tid;
    IF row_tid IS NOT NULL THEN
        UPDATE tenant.schema_migrations s
           SET status = CASE WHEN err IS NULL THEN 'applied' ELSE 'failed' END,
               error = err, sqlstate = state, started_at = now(), finished_at = clock_timestamp(),
               attempts = s.attempts + 1, pid = pg_backend_pid()
         WHERE s.ctid = row_tid
           AND s.schema_name = target AND s.version = v AND s.run_id = run AND s.status = 'pending';
        GET DIAGNOSTICS n = ROW_COUNT;
    END IF;
    IF n <> 1 THEN
        RAISE EXCEPTION 'schema % is not being migrated to % by run % in this session', quote_ident(target),
                        quote_literal(v), run
            USING ERRCODE = '55000';
    END IF;
    IF err IS NULL THEN
        UPDATE tenant.tenants t SET schema_version = v WHERE t.schema_name = target;
    END IF;
END
$$;

-- One schema, one transaction (the caller commits): the migration runs as the caller in the
-- schema with its tenant as the context (tenant._migration_run_step), the tables it created or
-- whose pins it changed are pinned again, anything it added that escapes the pins fails the step
-- (0A000), and the ledger row is set to applied. Any error rolls the subtransaction back — the
-- schema is exactly as before — and is recorded with its SQLSTATE instead. Pinning and the
-- problem inventory run only when the step leaves the schema in another state than the one last
-- verified pinned and clean (tenant._schema_check_before/_after, sql/schemas.sql); a step that
-- leaves problems in a schema recorded clean is rolled back and run again once its problems
-- before the step are known, so only problems it added fail it.
CREATE OR REPLACE FUNCTION tenant._migration_apply(run bigint, target name) RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v text;
    problems text[]; -- the schema's problems before the step; NULL: recorded as none
    step text;
    redo boolean := false;
    msg text;
    state text;
BEGIN
    SELECT r.version INTO STRICT v FROM tenant.migration_runs r WHERE r.id = run;
    -- One subtransaction per schema: the step, its check and the ledger row. Only a step to run
    -- again (below) takes a second one.
    BEGIN
        -- The common case whole, natively (src/migrate.rs): a schema recorded pinned and clean
        -- whose step leaves its fingerprint as recorded is applied there and then.
        step := tenant._migration_fast_step(run, target);
        IF step = 'applied' THEN
            RETURN true;
        END IF;
        IF step = 'unchecked' THEN -- no clean record: its problems before the step, then the step
            SELECT b.problems INTO problems FROM tenant._schema_check_before(target) b;
            PERFORM tenant._migration_run_step(run, target);
        END IF;
        -- The step has run and the schema is not in the state last verified: pin and check it.
        redo := NOT tenant._schema_check_after(target, NULL, problems, format('migration %L', v));
        IF redo THEN
            RAISE EXCEPTION 'the step is run again' USING ERRCODE = 'P0001'; -- rolls the step back
        END IF;
        PERFORM tenant._migration_finish(run, target, NULL, NULL);
        RETURN true;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
    END;
    IF redo THEN
        -- The step left problems in a schema recorded as having none: rolled back, the schema is
        -- as before it; read its problems, run the step again, and fail it only for new ones.
        BEGIN
            problems := tenant._tenant_schema_problem_keys(target, false);
            PERFORM tenant._migration_run_step(run, target);
            PERFORM tenant._schema_check_after(target, NULL, problems, format('migration %L', v));
            PERFORM tenant._migration_finish(run, target, NULL, NULL);
            RETURN true;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
        END;
    END IF;
    PERFORM tenant._migration_finish(run, target, msg, state);
    RAISE WARNING 'migration % failed on schema %: % (SQLSTATE %)', quote_literal(v), quote_ident(target),
                  msg, state;
    RETURN false;
END
$$;

-- Rows a dead worker left `running` in this run go back to the queue (all workers have exited).
CREATE OR REPLACE FUNCTION tenant._migration_requeue(run bigint) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'run migrations');
    PERFORM tenant._migration_require_lock();
    UPDATE tenant.schema_migrations s SET status = 'pending', pid = NULL
    WHERE s.run_id = run AND s.status = 'running';
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        RAISE NOTICE '% schema(s) left by a stopped worker are applied by this session', n;
    END IF;
    RETURN n;
END
$$;

-- The run's size and what is done so far, read from the ledger (once per run in the serial loop,
-- once a second while workers run: never once per schema).
CREATE OR REPLACE FUNCTION tenant._migration_counts(run bigint, OUT total integer, OUT done integer, OUT failed integer)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'run migrations');
    SELECT r.queued INTO total FROM tenant.migration_runs r WHERE r.id = run;
    SELECT count(*) FILTER (WHERE s.status IN ('applied', 'failed')), count(*) FILTER (WHERE s.status = 'failed')
    INTO done, failed
    FROM tenant.schema_migrations s WHERE s.run_id = run;
END
$$;

-- Progress NOTICE ("12/300 tenants, 1 failed"): after every schema up to 100, then every 1%.
-- No query: returns `done`, to be passed back as `previous`.
CREATE OR REPLACE FUNCTION tenant._migration_report(done integer, failed integer, total integer, previous integer)
RETURNS integer
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    step integer := greatest(1, total / 100);
BEGIN
    IF done > previous AND (done / step > previous / step OR done = total) THEN
        RAISE NOTICE '%/% tenants, % failed', done, total, failed;
    END IF;
    RETURN done;
END
$$;

-- Progress of a run read from the ledger (the leader's wait while workers run).
CREATE OR REPLACE FUNCTION tenant._migration_progress(run bigint, previous integer) RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT tenant._migration_report(c.done, c.failed, c.total, previous) FROM tenant._migration_counts(run) c
$$;

-- Closes a run: counts, the summary NOTICE, the audit entry.
CREATE OR REPLACE FUNCTION tenant._migration_end_run(run bigint) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r tenant.migration_runs;
    n_applied integer;
    n_failed integer;
    n_left integer;
    n_blocked integer;
    failures text;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'run migrations');
    PERFORM tenant._migration_require_lock();
    SELECT * INTO STRICT r FROM tenant.migration_runs WHERE id = run;
    SELECT count(*) FILTER (WHERE s.status = 'applied'), count(*) FILTER (WHERE s.status = 'failed'),
           count(*) FILTER (WHERE s.status IN ('pending', 'running')),
           string_agg(format('%I (%s)', s.schema_name, s.sqlstate), ', ' ORDER BY s.schema_name)
               FILTER (WHERE s.status = 'failed')
    INTO n_applied, n_failed, n_left, failures
    FROM tenant.schema_migrations s WHERE s.run_id = run;
    SELECT count(*) INTO n_blocked FROM tenant.schema_migrations s
    WHERE s.version = r.version AND s.status = 'pending' AND s.run_id IS DISTINCT FROM run AND s.tenant_id IS NOT NULL;
    UPDATE tenant.migration_runs x
       SET finished_at = clock_timestamp(), applied = n_applied, failed = n_failed, not_attempted = n_left
     WHERE x.id = run;
    RAISE NOTICE 'migration %: % of % tenant schemas applied, % failed, % not attempted; % blocked by an earlier version%',
        quote_literal(r.version), n_applied, r.queued, n_failed, n_left, n_blocked,
        CASE WHEN failures IS NULL THEN '' ELSE '; failed: ' || failures END;
    PERFORM tenant._audit('migration_run', r.version, NULL,
        jsonb_build_object('run', run, 'queued', r.queued, 'applied', n_applied, 'failed', n_failed,
                           'not_attempted', n_left, 'blocked', n_blocked, 'parallel', r.parallel,
                           'continue_on_error', r.continue_on_error));
END
$$;

-- continue_on_error => false: after the run is committed and the lock released, fail the CALL
-- with the first failed schema's SQLSTATE so scripts stop too.
CREATE OR REPLACE FUNCTION tenant._migration_raise_if_stopped(run bigint) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r tenant.migration_runs;
    f tenant.schema_migrations;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'run migrations');
    SELECT * INTO STRICT r FROM tenant.migration_runs WHERE id = run;
    IF r.continue_on_error THEN
        RETURN;
    END IF;
    SELECT * INTO f FROM tenant.schema_migrations s
    WHERE s.run_id = run AND s.status = 'failed' ORDER BY s.finished_at, s.schema_name LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'migration % stopped: schema % failed: %', quote_literal(r.version),
                        quote_ident(f.schema_name), f.error
            USING ERRCODE = coalesce(f.sqlstate, 'XX000'),
                  DETAIL = format('%s schema(s) applied, %s not attempted; everything done so far is committed and recorded in tenant.schema_migrations.',
                                  r.applied, r.not_attempted),
                  HINT = 'Fix the cause, then CALL tenant.retry_failed() or run migrate_all again with the same version and SQL.';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION tenant._migration_next_version(after text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.version FROM tenant.migrations m
    WHERE m.seq > coalesce((SELECT p.seq FROM tenant.migrations p WHERE p.version = after), 0)
    ORDER BY m.seq LIMIT 1
$$;

-- The tenant loop of one run: workers first when parallel > 1, then this session applies whatever
-- is still queued (all of it when serial).
CREATE OR REPLACE PROCEDURE tenant._migration_execute(run bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    target name;
    done integer := 0;
    failed integer;
    total integer;
    shown integer;
    step integer;
BEGIN
    -- Parallel: wait a second at a time and COMMIT in between, so this session's snapshot (its
    -- xmin horizon) never lives longer than a second while the workers run.
    IF tenant._migration_start_workers(run) THEN
        COMMIT;
        LOOP
            done := tenant._migration_wait_workers(run, done);
            COMMIT;
            EXIT WHEN done IS NULL;
        END LOOP;
    END IF;
    -- What is left (all of it when serial), one transaction per schema: claim, migrate, record,
    -- COMMIT. Progress is counted here, not in the ledger, so no schema costs more than the last.
    SELECT c.total, c.done, c.failed INTO total, done, failed FROM tenant._migration_counts(run) c;
    shown := done;
    step := greatest(1, total / 100);
    COMMIT;
    LOOP
        target := tenant._migration_claim(run, NULL);
        IF target IS NULL THEN
            COMMIT;
            EXIT;
        END IF;
        IF NOT tenant._migration_apply(run, target) THEN
            failed := failed + 1;
        END IF;
        COMMIT;
        done := done + 1;
        IF done / step > shown / step OR done = total THEN -- tenant._migration_report's own test
            shown := tenant._migration_report(done, failed, total, shown);
        END IF;
    END LOOP;
END
$$;

CREATE OR REPLACE PROCEDURE tenant.migrate_all(version text, migration text, continue_on_error boolean DEFAULT true,
                                    parallel integer DEFAULT 1)
LANGUAGE plpgsql
AS $$
DECLARE
    run bigint;
BEGIN
    PERFORM tenant._migration_check_args('tenant.migrate_all', version, migration, true, continue_on_error, parallel);
    COMMIT; -- fails here, before anything changed, when called where COMMIT is not allowed
    PERFORM tenant._migration_lock();
    PERFORM tenant._migration_template_step(version, migration);
    run := tenant._migration_start_run(version, continue_on_error, parallel, true);
    COMMIT;
    CALL tenant._migration_execute(run);
    PERFORM tenant._migration_end_run(run);
    COMMIT;
    PERFORM tenant._migration_unlock();
    PERFORM tenant._migration_raise_if_stopped(run);
END
$$;

-- Retries what is not applied yet — failed schemas, schemas a stopped run did not reach, schemas
-- that waited for an earlier version — for one version, or for every registered version in order.
CREATE OR REPLACE PROCEDURE tenant.retry_failed(version text DEFAULT NULL, parallel integer DEFAULT 1)
LANGUAGE plpgsql
AS $$
DECLARE
    v text;
    run bigint;
BEGIN
    PERFORM tenant._migration_check_args('tenant.retry_failed', version, NULL, false, true, parallel);
    COMMIT;
    PERFORM tenant._migration_lock();
    v := coalesce(version, tenant._migration_next_version(NULL));
    LOOP
        EXIT WHEN v IS NULL;
        run := tenant._migration_start_run(v, true, parallel, false);
        COMMIT;
        IF run IS NOT NULL THEN
            CALL tenant._migration_execute(run);
            PERFORM tenant._migration_end_run(run);
            COMMIT;
        END IF;
        EXIT WHEN version IS NOT NULL;
        v := tenant._migration_next_version(v);
    END LOOP;
    PERFORM tenant._migration_unlock();
END
$$;

-- For create_tenant(with_schema => true): a schema cloned from the template has every version the
-- template has, so record them as applied and never run them there. Call it in the cloning
-- transaction BEFORE reading the template (after inserting the tenant row with its schema_name):
-- it takes the template lock shared, so a migrate_all cannot change the template between the
-- mark and the clone. Returns the number of versions recorded.
CREATE OR REPLACE FUNCTION tenant._mark_schema_at_template_version(schema name) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tid bigint;
    template name := tenant._template_schema();
    latest text;
    n integer;
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'mark a schema at the template version');
    IF schema IS NULL THEN
        RAISE EXCEPTION 'schema must not be NULL' USING ERRCODE = '22004';
    END IF;
    SELECT t.id INTO tid FROM tenant.tenants t WHERE t.schema_name = _mark_schema_at_template_version.schema;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'schema % is not a tenant schema', quote_ident(schema) USING ERRCODE = '22023',
            HINT = 'Set tenant.tenants.schema_name first.';
    END IF;
    PERFORM tenant._migration_template_lock(false);
    INSERT INTO tenant.schema_migrations AS s (schema_name, version, status, started_at, finished_at, tenant_id)
    SELECT _mark_schema_at_template_version.schema, x.version, 'applied', clock_timestamp(), clock_timestamp(), tid
    FROM tenant.schema_migrations x
    WHERE x.schema_name = template AND x.status = 'applied'
    ON CONFLICT ON CONSTRAINT schema_migrations_pkey DO UPDATE
        SET status = 'applied', error = NULL, sqlstate = NULL,
            started_at = excluded.started_at, finished_at = excluded.finished_at, tenant_id = excluded.tenant_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    SELECT m.version INTO latest
    FROM tenant.schema_migrations x JOIN tenant.migrations m ON m.version = x.version
    WHERE x.schema_name = template AND x.status = 'applied' ORDER BY m.seq DESC LIMIT 1;
    IF latest IS NOT NULL THEN
        UPDATE tenant.tenants t SET schema_version = latest WHERE t.id = tid;
    END IF;
    RETURN n;
END
$$;

-- Schemas being migrated right now, from the locks their migrating transactions hold (see the
-- header): a live transaction, so a killed run shows nothing here and its schema `pending`.
CREATE OR REPLACE VIEW tenant.migration_activity AS
SELECT n.nspname AS schema_name, r.version, r.id AS run_id, l.pid
  FROM pg_catalog.pg_locks l
  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) l.objid
  LEFT JOIN LATERAL (SELECT x.id, x.version FROM tenant.migration_runs x
                      WHERE x.finished_at IS NULL ORDER BY x.id DESC LIMIT 1) r ON true
 WHERE l.locktype OPERATOR(pg_catalog.=) 'object' AND l.granted AND l.objsubid OPERATOR(pg_catalog.=) 0
   AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d
                                           WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
   AND l.classid OPERATOR(pg_catalog.=) 'tenant.schema_migrations'::pg_catalog.regclass::pg_catalog.oid;
COMMENT ON VIEW tenant.migration_activity IS 'Tenant schemas a live migrate_all / retry_failed transaction is migrating now (from pg_locks).';
REVOKE ALL ON tenant.migration_activity FROM PUBLIC;
GRANT SELECT ON tenant.migration_activity TO tenant_admin;

-- Per registered version: the template's state and how many tenant schemas (those in the registry
-- now) have it applied, failed, running (a live transaction is migrating it:
-- tenant.migration_activity), or not yet (pending, including schemas with no row).
CREATE OR REPLACE FUNCTION tenant.migration_status()
RETURNS TABLE(version text, registered_at timestamptz, template_status text, applied bigint, failed bigint,
              running bigint, pending bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'read the migration status');
    RETURN QUERY
    SELECT m.version, m.registered_at,
           (SELECT x.status FROM tenant.schema_migrations x
            WHERE x.version = m.version AND x.schema_name = tenant._template_schema()),
           count(*) FILTER (WHERE s.status = 'applied'),
           count(*) FILTER (WHERE s.status = 'failed'),
           count(*) FILTER (WHERE s.status = 'running' OR (s.status = 'pending' AND a.schema_name IS NOT NULL)),
           count(t.id) FILTER (WHERE s.status IS NULL OR (s.status = 'pending' AND a.schema_name IS NULL))
    FROM tenant.migrations m
    LEFT JOIN tenant.tenants t ON t.schema_name IS NOT NULL
    LEFT JOIN tenant.schema_migrations s ON s.version = m.version AND s.schema_name = t.schema_name
    LEFT JOIN tenant.migration_activity a ON a.schema_name = t.schema_name AND a.version = m.version
    GROUP BY m.version, m.registered_at, m.seq
    ORDER BY m.seq;
END
$$;

-- Tenant schemas that lack a version the template has.
CREATE OR REPLACE FUNCTION tenant.outdated_schemas()
RETURNS TABLE(slug text, schema_name name, schema_version text, template_version text, missing text[])
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    template name := tenant._template_schema();
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'read the migration status');
    RETURN QUERY
    WITH tv AS (
        SELECT m.version, m.seq FROM tenant.migrations m
        JOIN tenant.schema_migrations x ON x.version = m.version AND x.schema_name = template AND x.status = 'applied'
    )
    SELECT t.slug, t.schema_name, t.schema_version,
           (SELECT tv.version FROM tv ORDER BY tv.seq DESC LIMIT 1),
           array_agg(tv.version ORDER BY tv.seq)
    FROM tenant.tenants t CROSS JOIN tv
    WHERE t.schema_name IS NOT NULL
      AND NOT EXISTS (SELECT FROM tenant.schema_migrations s
                      WHERE s.schema_name = t.schema_name AND s.version = tv.version AND s.status = 'applied')
    GROUP BY t.id, t.slug, t.schema_name, t.schema_version
    ORDER BY t.schema_name;
END
$$;

-- Each tenant schema (or target) against the template, on the schema engine's model
-- (tenant._schema_drift_rs, src/catalog/mod.rs): bodies and definitions compared with each
-- schema's own name normalised, row security and the extension's policies compared with what the
-- policy template (tenant._policy_template) makes for the schema's tenant, owners and privileges
-- not compared. A registered schema that does not exist is one row.
CREATE OR REPLACE FUNCTION tenant._schema_drift(target name)
RETURNS TABLE(schema_name name, object text, difference text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    template name := tenant._template_schema();
BEGIN
    PERFORM tenant._require_member('tenant_admin', 'compare tenant schemas');
    IF NOT EXISTS (SELECT FROM pg_namespace n WHERE n.nspname = template) THEN
        RAISE EXCEPTION 'template schema % does not exist', quote_ident(template) USING ERRCODE = '3F000';
    END IF;
    IF target IS NOT NULL AND NOT EXISTS (SELECT FROM pg_namespace n WHERE n.nspname = target) THEN
        RAISE EXCEPTION 'schema % does not exist', quote_ident(target) USING ERRCODE = '3F000';
    END IF;
    RETURN QUERY SELECT d.schema::name, d.object, d.difference FROM tenant._schema_drift_rs(target) d;
END
$$;

-- A SQL wrapper: the contract names both the argument and the first result column "schema",
-- which PL/pgSQL cannot compile.
CREATE OR REPLACE FUNCTION tenant.schema_drift(schema name DEFAULT NULL)
RETURNS TABLE(schema name, object text, difference text)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT d.schema_name, d.object, d.difference FROM tenant._schema_drift($1) d $$;

REVOKE ALL ON PROCEDURE tenant.migrate_all(text, text, boolean, integer), tenant.retry_failed(text, integer),
    tenant._migration_execute(bigint) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION tenant._migration_template_lock(boolean),
    tenant._migration_run_step(bigint, text), tenant._migration_fast_step(bigint, text),
    tenant._migration_run_template(text, text) TO tenant_admin;
