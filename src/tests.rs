//! In-process tests (`cargo pgrx test`): each runs in a transaction that is rolled back. They check
//! the SQL-facing surface from inside a backend, switching to a NOSUPERUSER role with SET ROLE,
//! because the superuser that runs them bypasses row security.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// Returns the ids of acme and globex (identity values are not rolled back between tests).
    fn two_tenants_and_a_table() -> (i64, i64) {
        let acme = Spi::get_one::<i64>("SELECT tenant.create_tenant('acme')")
            .expect("acme")
            .expect("id");
        let globex = Spi::get_one::<i64>("SELECT tenant.create_tenant('globex')")
            .expect("globex")
            .expect("id");
        Spi::run_with_args(
            "CREATE TABLE public.t (tenant_id bigint, v text);
             INSERT INTO public.t VALUES ($1, 'a1'), ($1, 'a2'), ($2, 'g1')",
            &[acme.into(), globex.into()],
        )
        .expect("table");
        Spi::run(
            "SELECT tenant.enable_isolation('public.t');
             CREATE ROLE pgt_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
             GRANT tenant_user TO pgt_app;
             GRANT SELECT, INSERT ON public.t TO pgt_app;
             SET ROLE pgt_app;",
        )
        .expect("fixture");
        (acme, globex)
    }

    fn count() -> i64 {
        Spi::get_one::<i64>("SELECT count(*) FROM public.t")
            .expect("count")
            .expect("a count")
    }

    #[pg_test]
    fn no_context_means_null_and_zero_rows() {
        two_tenants_and_a_table();
        assert_eq!(
            Spi::get_one::<i64>("SELECT tenant.current_tenant_id()"),
            Ok(None)
        );
        assert_eq!(count(), 0);
    }

    #[pg_test]
    fn set_tenant_filters_to_its_rows_and_clear_tenant_ends_it() {
        let (acme, globex) = two_tenants_and_a_table();
        assert_eq!(
            Spi::get_one::<i64>("SELECT tenant.set_tenant('acme')"),
            Ok(Some(acme))
        );
        assert_eq!(count(), 2);
        assert_eq!(
            Spi::get_one::<String>("SELECT tenant.current_tenant()"),
            Ok(Some("acme".into()))
        );
        assert_eq!(
            Spi::get_one_with_args::<i64>("SELECT tenant.set_tenant($1)", &[globex.into()]),
            Ok(Some(globex))
        );
        assert_eq!(count(), 1);
        Spi::run("SELECT tenant.clear_tenant()").expect("clear");
        assert_eq!(count(), 0);
    }

    #[pg_test]
    fn inserts_take_the_current_tenant_by_default() {
        let (_, globex) = two_tenants_and_a_table();
        Spi::run("SELECT tenant.set_tenant('globex'); INSERT INTO public.t (v) VALUES ('g2')")
            .expect("insert");
        assert_eq!(count(), 2);
        Spi::run("RESET ROLE").expect("reset role");
        assert_eq!(
            Spi::get_one::<i64>("SELECT tenant_id FROM public.t WHERE v = 'g2'"),
            Ok(Some(globex))
        );
    }

    #[pg_test(error = "permission denied to set parameter \"qualityfoundry_tenant.tenant_id\"")]
    fn setting_the_context_directly_is_refused() {
        two_tenants_and_a_table();
        Spi::run("SELECT pg_catalog.set_config('qualityfoundry_tenant.tenant_id', '2', false)")
            .expect("refused");
    }

    #[pg_test(error = "tenant \"nope\" does not exist")]
    fn unknown_tenants_are_refused() {
        two_tenants_and_a_table();
        Spi::run("SELECT tenant.set_tenant('nope')").expect("refused");
    }

    #[pg_test(error = "permission denied for function create_tenant")]
    fn application_roles_cannot_manage_tenants() {
        two_tenants_and_a_table();
        Spi::run("SELECT tenant.create_tenant('sneaky')").expect("refused");
    }
}
