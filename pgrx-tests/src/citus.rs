//! A Citus cluster for the Citus tier (`tests/citus/`): a coordinator and two workers of the
//! tests' PostgreSQL (which must have Citus installed: `.ci/install-deps` runs the Citus installer),
//! each a throwaway cluster on a free loopback port with `shared_preload_libraries = 'citus'`
//! (Citus must come first), started once per test binary. Each test gets its own database on all
//! three nodes (`CitusDb::new`), with both extensions, the workers added, the node key synced,
//! and the login roles of `ROLES` created on the coordinator (Citus propagates them).

use crate::{install_extension, Cluster, PgInstall, ROLES};
use postgres::{Client, NoTls};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub struct CitusCluster {
    pub coordinator: Cluster,
    pub workers: Vec<Cluster>,
}

/// Whether the tests' PostgreSQL has Citus (the tier says so and fails when it has not).
pub fn citus_available(install: &PgInstall) -> bool {
    install.pkglibdir.join("citus.so").exists()
        && install.sharedir.join("extension/citus.control").exists()
}

const CONF: &str = "shared_preload_libraries = 'citus'\nmax_connections = 300\n\
     citus.node_conninfo = 'sslmode=disable'\ncitus.max_cached_conns_per_worker = 1\n\
     max_worker_processes = 16\nlog_min_messages = warning\n";

pub fn citus_cluster() -> &'static CitusCluster {
    static CITUS: OnceLock<CitusCluster> = OnceLock::new();
    CITUS.get_or_init(|| {
        install_extension();
        let install = PgInstall::from_env();
        assert!(
            citus_available(install),
            "Citus is not installed in {} (run .ci/install-deps, which runs the Citus installer)",
            install.pkglibdir.display()
        );
        let pid = std::process::id();
        let coordinator = Cluster::start(&format!("citus-{pid}-coordinator"), install, CONF);
        let workers = (1..=2)
            .map(|i| Cluster::start(&format!("citus-{pid}-worker{i}"), install, CONF))
            .collect();
        CitusCluster {
            coordinator,
            workers,
        }
    })
}

static DB_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A database on every node of the Citus cluster, set up as `TestDb` is on one node.
pub struct CitusDb {
    pub name: String,
    pub cluster: &'static CitusCluster,
}

impl CitusDb {
    pub fn new(label: &str) -> CitusDb {
        let cluster = citus_cluster();
        // One setup at a time: Citus adds nodes and propagates roles over connections of its
        // own, and concurrent setups of several databases fail on them ("failure on connection
        // marked as essential"). The tests themselves run in parallel.
        static SETUP: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = SETUP.lock().unwrap_or_else(|e| e.into_inner());
        let n = DB_COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("c{}_{}_{label}", std::process::id() % 10000, n);
        for node in std::iter::once(&cluster.coordinator).chain(&cluster.workers) {
            let mut su = Client::connect(&node.conninfo("postgres", "postgres"), NoTls)
                .expect("connect as postgres");
            su.batch_execute(&format!("CREATE DATABASE {name}"))
                .expect("create database");
            let mut db = Client::connect(&node.conninfo("postgres", &name), NoTls)
                .expect("connect to the new database");
            db.batch_execute("CREATE EXTENSION citus").expect("citus");
        }
        let db = CitusDb { name, cluster };
        let mut su = db.superuser();
        su.batch_execute(&format!(
            "SELECT citus_set_coordinator_host('127.0.0.1', {})",
            cluster.coordinator.port
        ))
        .expect("coordinator host");
        for w in &cluster.workers {
            su.batch_execute(&format!("SELECT citus_add_node('127.0.0.1', {})", w.port))
                .expect("add worker");
        }
        su.batch_execute("CREATE EXTENSION qualityfoundry_tenant")
            .expect("create extension (propagated to the workers)");
        let synced: i32 = su
            .query_one("SELECT tenant.citus_sync_keys()", &[])
            .expect("sync the node key")
            .get(0);
        assert_eq!(synced, 2, "the node key reached both workers");
        for (short, grant) in ROLES {
            let role = db.role(short);
            su.batch_execute(&format!(
                "CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
            ))
            .expect("create role");
            if !grant.is_empty() {
                su.batch_execute(&format!("GRANT {grant} TO {role}"))
                    .expect("grant");
            }
        }
        db
    }

    pub fn role(&self, short: &str) -> String {
        format!("{}_{short}", self.name)
    }

    pub fn superuser(&self) -> Client {
        Client::connect(
            &self.cluster.coordinator.conninfo("postgres", &self.name),
            NoTls,
        )
        .expect("connect as postgres")
    }

    /// The superuser on worker `i` (0 or 1), bypassing the coordinator: the oracle of what the
    /// shards hold.
    pub fn worker_superuser(&self, i: usize) -> Client {
        Client::connect(
            &self.cluster.workers[i].conninfo("postgres", &self.name),
            NoTls,
        )
        .expect("connect to a worker as postgres")
    }

    /// Role `short` on the coordinator.
    pub fn connect(&self, short: &str) -> Client {
        Client::connect(
            &self
                .cluster
                .coordinator
                .conninfo(&self.role(short), &self.name),
            NoTls,
        )
        .expect("connect")
    }

    /// Role `short` directly on worker `i`, as an attacker who can reach a worker's port.
    pub fn connect_worker(&self, short: &str, i: usize) -> Client {
        Client::connect(
            &self.cluster.workers[i].conninfo(&self.role(short), &self.name),
            NoTls,
        )
        .expect("connect to a worker")
    }
}
