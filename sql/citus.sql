-- Citus support (the node context itself is src/citus.rs): what the SQL side needs on a Citus
-- coordinator.

-- Whether tbl is a Citus table ('distributed', 'reference', 'local' as citus_tables says; NULL
-- when it is not one or Citus is not installed).
CREATE OR REPLACE FUNCTION tenant._citus_kind(tbl regclass) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
        RETURN NULL;
    END IF;
    EXECUTE 'SELECT CASE WHEN p.partmethod = ''n'' AND p.repmodel = ''t'' THEN ''reference''
                         WHEN p.partmethod = ''n'' THEN ''local'' ELSE ''distributed'' END
               FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1'
        INTO kind USING tbl;
    RETURN kind;
END
$$;

-- Whether the extension must put no trigger on a table of this database: Citus is installed and
-- citus.enable_unsafe_triggers is off (Citus then refuses triggers on its tables, and to
-- distribute a table that has one). The fill trigger and the quota triggers stand aside.
CREATE OR REPLACE FUNCTION tenant._citus_no_triggers() RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')
       AND coalesce(current_setting('citus.enable_unsafe_triggers', true), 'off') <> 'on'
$$;
