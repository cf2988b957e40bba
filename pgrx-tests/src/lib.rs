//! Harness for out-of-process tests: one throwaway PostgreSQL 15 cluster per test binary (initdb as
//! the `postgres` OS user under `target/clusters/`, unix socket, free port), the freshly built
//! extension installed into it, a fresh database per test, and login roles to connect as.
//!
//! The cluster is stopped and removed at process exit, also when tests fail (`atexit`).

use postgres::{Client, NoTls};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub use postgres;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Cluster {
    pub dir: PathBuf,
    pub sock: PathBuf,
    pub port: u16,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static DB_COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("pgrx-tests lives in the workspace")
        .to_path_buf()
}

fn running_as_postgres() -> bool {
    std::env::var("USER")
        .map(|u| u == "postgres")
        .unwrap_or(false)
}

fn as_postgres(program: &str) -> Command {
    if running_as_postgres() {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.args(["-u", "postgres", "--", program]);
        c
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

extern "C" fn stop_cluster_at_exit() {
    if let Some(c) = CLUSTER.get() {
        let _ = as_postgres(&format!("{PG_BIN}/pg_ctl"))
            .args([
                "-D",
                &c.dir.join("data").to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
        if std::env::var_os("QFT_KEEP_CLUSTER").is_none() {
            let _ = std::fs::remove_dir_all(&c.dir);
        }
    }
}

/// Installs the extension as built from this checkout into the system PostgreSQL 15, unless the
/// caller (the test command) already did so and says `QFT_SKIP_INSTALL=1`.
fn install_extension() {
    if std::env::var_os("QFT_SKIP_INSTALL").is_some() {
        return;
    }
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root()).args([
        "pgrx",
        "install",
        "--pg-config",
        &format!("{PG_BIN}/pg_config"),
    ]);
    run(cmd, "cargo pgrx install");
}

pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        install_extension();
        let dir = workspace_root().join("target/clusters").join(format!("itest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cluster dir");
        run(
            {
                let mut c = Command::new("chown");
                c.args(["postgres", &dir.to_string_lossy()]);
                c
            },
            "chown cluster dir",
        );
        let data = dir.join("data");
        let sock = dir.join("sock");
        run(
            {
                let mut c = as_postgres(&format!("{PG_BIN}/initdb"));
                c.args(["-D", &data.to_string_lossy(), "-A", "trust", "-U", "postgres", "--no-sync"]);
                c
            },
            "initdb",
        );
        run(
            {
                let mut c = as_postgres("mkdir");
                c.args(["-p", &sock.to_string_lossy()]);
                c
            },
            "mkdir sock",
        );
        let port = free_port();
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nfsync = off\n\
             max_connections = 200\nmax_worker_processes = 16\nlog_min_messages = log\n",
            sock.display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut c = as_postgres("tee");
        c.args(["-a", &conf_path.to_string_lossy()]).stdout(std::process::Stdio::null()).stdin(std::process::Stdio::piped());
        let mut child = c.spawn().expect("tee");
        {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(conf.as_bytes()).expect("write conf");
        }
        assert!(child.wait().expect("tee").success());
        let cluster = Cluster { dir: dir.clone(), sock, port };
        // Registered before start so a failed start is cleaned up too.
        unsafe { libc::atexit(stop_cluster_at_exit) };
        run(
            {
                let mut c = as_postgres(&format!("{PG_BIN}/pg_ctl"));
                c.args([
                    "-D",
                    &data.to_string_lossy(),
                    "-l",
                    &dir.join("server.log").to_string_lossy(),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]);
                c
            },
            "pg_ctl start",
        );
        cluster
    })
}

impl Cluster {
    pub fn conninfo(&self, user: &str, db: &str) -> String {
        format!(
            "host={} port={} user={user} dbname={db}",
            self.sock.display(),
            self.port
        )
    }

    pub fn server_log(&self) -> String {
        let out = as_postgres("cat")
            .arg(self.dir.join("server.log"))
            .output()
            .expect("read server log");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A fresh database with the extension and a set of login roles:
/// `app` (tenant_user), `app2` (tenant_user), `nobody` (no extension role), `admin` (tenant_admin),
/// `support` (tenant_superuser), `bi` (login only). All NOSUPERUSER NOBYPASSRLS, owning nothing.
pub struct TestDb {
    pub name: String,
}

pub const ROLES: [(&str, &str); 6] = [
    ("app", "tenant_user"),
    ("app2", "tenant_user"),
    ("nobody", ""),
    ("admin", "tenant_admin"),
    ("support", "tenant_superuser"),
    ("bi", ""),
];

impl TestDb {
    pub fn new(label: &str) -> TestDb {
        let c = cluster();
        let n = DB_COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}_{}_{label}", std::process::id() % 10000, n);
        let mut su = Client::connect(&c.conninfo("postgres", "postgres"), NoTls)
            .expect("connect as postgres");
        su.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        let db = TestDb { name };
        let mut su = db.superuser();
        su.batch_execute("CREATE EXTENSION qualityfoundry_tenant")
            .expect("create extension");
        for (short, grant) in ROLES {
            let role = db.role(short);
            su.batch_execute(&format!(
                "CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE; \
                 GRANT CONNECT ON DATABASE {} TO {role};",
                db.name
            ))
            .expect("create role");
            if !grant.is_empty() {
                su.batch_execute(&format!("GRANT {grant} TO {role}"))
                    .expect("grant");
            }
        }
        db
    }

    /// The cluster-wide name of this database's role `short`.
    pub fn role(&self, short: &str) -> String {
        format!("{}_{short}", self.name)
    }

    pub fn superuser(&self) -> Client {
        Client::connect(&cluster().conninfo("postgres", &self.name), NoTls)
            .expect("connect as postgres")
    }

    pub fn connect(&self, short: &str) -> Client {
        self.try_connect(short, "").expect("connect")
    }

    /// Connects as role `short` and enters tenant `tenant` (slug or id) for the session.
    pub fn connect_in(&self, short: &str, tenant: &str) -> Client {
        let mut c = self.connect(short);
        c.query_one("SELECT tenant.set_tenant($1::text)", &[&tenant])
            .expect("set_tenant");
        c
    }

    /// Connects as role `short` with startup `options` (what PGOPTIONS would send).
    pub fn try_connect(&self, short: &str, options: &str) -> Result<Client, postgres::Error> {
        let mut cfg: postgres::Config = cluster()
            .conninfo(&self.role(short), &self.name)
            .parse()
            .expect("conninfo");
        if !options.is_empty() {
            cfg.options(options);
        }
        cfg.connect(NoTls)
    }

    /// Two tenants, `acme` (id 1) and `globex` (id 2), and an isolated table `public.projects`
    /// owned by the superuser with three rows each, DML granted to every test role.
    pub fn with_projects(self) -> Self {
        let mut su = self.superuser();
        su.batch_execute(
            "SELECT tenant.create_tenant('acme', 'Acme');
             SELECT tenant.create_tenant('globex', 'Globex');
             CREATE TABLE public.projects (tenant_id bigint NOT NULL, id integer NOT NULL, name text,
                                           PRIMARY KEY (tenant_id, id));
             INSERT INTO public.projects VALUES (1, 100, 'acme-100'), (1, 101, 'acme-101'), (1, 102, 'acme-102'),
                                                (2, 200, 'globex-200'), (2, 201, 'globex-201'), (2, 202, 'globex-202');
             SELECT tenant.enable_isolation('public.projects');",
        )
        .expect("projects fixture");
        for (short, _) in ROLES {
            su.batch_execute(&format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON public.projects TO {0}; GRANT USAGE ON SCHEMA tenant TO {0}",
                self.role(short)
            ))
            .expect("grant");
        }
        self
    }

    /// All rows of `public.projects` as the superuser (bypassing RLS), for "nothing changed" checks.
    pub fn all_projects(&self) -> Vec<(i64, i32, String)> {
        self.superuser()
            .query(
                "SELECT tenant_id, id, name FROM public.projects ORDER BY tenant_id, id",
                &[],
            )
            .expect("read projects")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }
}

/// The SQLSTATE of a database error ("" when the error did not come from the server).
pub fn sqlstate(e: &postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_default()
}

/// Asserts that `result` failed with `code`, and returns the server's message.
#[track_caller]
pub fn expect_sqlstate<T: std::fmt::Debug>(
    result: Result<T, postgres::Error>,
    code: &str,
) -> String {
    match result {
        Ok(v) => panic!("expected SQLSTATE {code}, got success: {v:?}"),
        Err(e) => {
            let msg = e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_else(|| e.to_string());
            assert_eq!(sqlstate(&e), code, "unexpected error: {msg}");
            msg
        }
    }
}

/// Single-value query helper for tests: the first column of the first row.
#[track_caller]
pub fn one<T: for<'a> postgres::types::FromSql<'a>>(client: &mut Client, sql: &str) -> T {
    client
        .query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// The projects role `client` can see, as (tenant_id, id).
pub fn visible(client: &mut Client) -> Vec<(i64, i32)> {
    client
        .query(
            "SELECT tenant_id, id FROM public.projects ORDER BY tenant_id, id",
            &[],
        )
        .expect("select projects")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

pub const ACME: [(i64, i32); 3] = [(1, 100), (1, 101), (1, 102)];
pub const GLOBEX: [(i64, i32); 3] = [(2, 200), (2, 201), (2, 202)];
