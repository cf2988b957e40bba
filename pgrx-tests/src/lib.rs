//! Harness for out-of-process tests: throwaway PostgreSQL clusters (initdb as the `postgres` OS
//! user under `target/clusters/`, unix socket, free loopback port), the freshly built extension
//! installed, a fresh database per test, and login roles to connect as.
//!
//! Which PostgreSQL: `QFT_PG_CONFIG` (default: Debian's PostgreSQL 15; CI also runs every test on
//! PostgreSQL 18, `cargo pgrx info pg-config pg18`). `cluster()` is the one
//! shared cluster of a test binary; `Cluster::start` makes more (upgrade, pooler and Citus tiers).
//! Every cluster is stopped and removed at process exit, also when tests fail (`atexit`).

use postgres::{Client, NoTls};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

pub use postgres;

pub mod pooler;

pub const DEFAULT_PG_CONFIG: &str = "/usr/lib/postgresql/15/bin/pg_config";

/// The PostgreSQL majors the released versions (0.1.0) were built for: their frozen install
/// scripts are installed only there, and the upgrade test runs only there.
pub const RELEASED_ON: [u32; 1] = [15];

/// A PostgreSQL installation, found through its `pg_config`.
#[derive(Clone, Debug)]
pub struct PgInstall {
    pub pg_config: PathBuf,
    pub bindir: PathBuf,
    pub sharedir: PathBuf,
    pub pkglibdir: PathBuf,
    /// The server's major version, e.g. 15.
    pub major: u32,
}

impl PgInstall {
    pub fn at(pg_config: &Path) -> PgInstall {
        let ask = |flag: &str| -> String {
            let out = Command::new(pg_config)
                .arg(flag)
                .output()
                .unwrap_or_else(|e| panic!("{} {flag}: {e}", pg_config.display()));
            assert!(
                out.status.success(),
                "{} {flag} failed",
                pg_config.display()
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let version = ask("--version"); // "PostgreSQL 15.20 (Debian ...)"
        let major = version
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.split('.').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("cannot read a major version from {version:?}"));
        PgInstall {
            pg_config: pg_config.to_path_buf(),
            bindir: ask("--bindir").into(),
            sharedir: ask("--sharedir").into(),
            pkglibdir: ask("--pkglibdir").into(),
            major,
        }
    }

    /// The installation the tests run against: `QFT_PG_CONFIG`, else Debian's PostgreSQL 15.
    pub fn from_env() -> &'static PgInstall {
        static INSTALL: OnceLock<PgInstall> = OnceLock::new();
        INSTALL.get_or_init(|| {
            let path = std::env::var_os("QFT_PG_CONFIG")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_PG_CONFIG));
            PgInstall::at(&path)
        })
    }

    /// A copy of this installation under `dir` (bindir, sharedir and pkglibdir, keeping their
    /// layout relative to one another, which is how PostgreSQL finds them from its binaries).
    /// For tests that must change installed files (the upgrade test swaps the library). Not for
    /// the embedded PostgreSQL 18 tree: its programs find libpq outside that layout.
    pub fn copy_to(&self, dir: &Path) -> PgInstall {
        let parts = [&self.bindir, &self.sharedir, &self.pkglibdir];
        let mut prefix = self.bindir.clone();
        while !parts.iter().all(|p| p.starts_with(&prefix)) {
            prefix = prefix.parent().expect("a common prefix").to_path_buf();
        }
        let _ = std::fs::remove_dir_all(dir);
        for part in parts {
            let to = dir.join(part.strip_prefix(&prefix).expect("under the prefix"));
            std::fs::create_dir_all(to.parent().expect("a parent")).expect("copy dir");
            run(
                {
                    let mut c = Command::new("cp");
                    c.args(["-a", &part.to_string_lossy(), &to.to_string_lossy()]);
                    c
                },
                "copy the PostgreSQL installation",
            );
        }
        let pg_config = dir.join(
            self.pg_config
                .strip_prefix(&prefix)
                .expect("pg_config under the prefix"),
        );
        let copy = PgInstall::at(&pg_config);
        assert!(
            copy.sharedir.starts_with(dir),
            "{} is not relocatable",
            self.pg_config.display()
        );
        copy
    }

    /// The path of one of its programs (`psql`, `pg_dump`, ...).
    pub fn bin(&self, program: &str) -> String {
        self.bindir.join(program).to_string_lossy().into_owned()
    }
}

pub struct Cluster {
    pub dir: PathBuf,
    pub sock: PathBuf,
    pub port: u16,
    pub install: PgInstall,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static DB_COUNTER: AtomicUsize = AtomicUsize::new(0);
/// Data directories of every cluster this process started, for the exit handler.
static STARTED: Mutex<Vec<(PathBuf, PathBuf)>> = Mutex::new(Vec::new());

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

/// A command run as the `postgres` OS user (initdb and the server refuse root).
pub fn as_postgres(program: &str) -> Command {
    if running_as_postgres() {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.args(["-u", "postgres", "--", program]);
        c
    }
}

/// Runs `cmd` and panics with its output unless it succeeds.
pub fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

extern "C" fn stop_clusters_at_exit() {
    let started = STARTED.lock().map(|s| s.clone()).unwrap_or_default();
    for (bindir, dir) in started {
        let _ = as_postgres(&bindir.join("pg_ctl").to_string_lossy())
            .args([
                "-D",
                &dir.join("data").to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
        if std::env::var_os("QFT_KEEP_CLUSTER").is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Copies the frozen install scripts of released versions (`sql/qualityfoundry_tenant--X.sql`,
/// which `cargo pgrx install` does not copy) into an installation, so `CREATE EXTENSION ...
/// VERSION 'X'` works there; not into a major they were never built for (`RELEASED_ON`).
pub fn install_released_scripts(install: &PgInstall) {
    if !RELEASED_ON.contains(&install.major) {
        return;
    }
    let ext = install.sharedir.join("extension");
    for entry in std::fs::read_dir(workspace_root().join("sql")).expect("sql/") {
        let path = entry.expect("sql/ entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("qualityfoundry_tenant--") && name.matches("--").count() == 1 {
            std::fs::copy(&path, ext.join(&name))
                .unwrap_or_else(|e| panic!("copy {name} into {}: {e}", ext.display()));
        }
    }
}

/// Installs the extension as built from this checkout into the tests' PostgreSQL (once per
/// process), unless the caller (the test command) already did so and says `QFT_SKIP_INSTALL=1`.
pub fn install_extension() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(install_extension_now);
}

fn install_extension_now() {
    let install = PgInstall::from_env();
    if std::env::var_os("QFT_SKIP_INSTALL").is_none() {
        // The feature set of the installation's major (cargo pgrx would pick it too; said
        // explicitly so the build is the one .ci/test and the README use).
        let mut cmd = Command::new("cargo");
        cmd.current_dir(workspace_root()).args([
            "pgrx",
            "install",
            "--pg-config",
            &install.pg_config.to_string_lossy(),
            "--no-default-features",
            "--features",
            &format!("pg{}", install.major),
        ]);
        run(cmd, "cargo pgrx install");
    }
    install_released_scripts(install);
}

/// A second shared cluster of this test binary with `shared_preload_libraries =
/// 'qualityfoundry_tenant'`, for tests that must hold with and without preloading.
pub fn preloaded_cluster() -> &'static Cluster {
    static PRELOADED: OnceLock<Cluster> = OnceLock::new();
    PRELOADED.get_or_init(|| {
        install_extension();
        Cluster::start(
            &format!("itest-preload-{}", std::process::id()),
            PgInstall::from_env(),
            "max_connections = 100\nshared_preload_libraries = 'qualityfoundry_tenant'\n",
        )
    })
}

/// The shared cluster of this test binary, with the extension installed.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        install_extension();
        Cluster::start(
            &format!("itest-{}", std::process::id()),
            PgInstall::from_env(),
            "max_connections = 200\nmax_worker_processes = 16\n",
        )
    })
}

impl Cluster {
    /// initdb and start a cluster named `name` (under target/clusters/) of `install`, with
    /// `extra_conf` appended to postgresql.conf.
    pub fn start(name: &str, install: &PgInstall, extra_conf: &str) -> Cluster {
        let dir = workspace_root().join("target/clusters").join(name);
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
                let mut c = as_postgres(&install.bin("initdb"));
                c.args([
                    "-D",
                    &data.to_string_lossy(),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                ]);
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
             log_min_messages = log\n{extra_conf}\n",
            sock.display()
        );
        let cluster = Cluster {
            dir: dir.clone(),
            sock,
            port,
            install: install.clone(),
        };
        cluster.append_conf(&conf);
        // Registered before start so a failed start is cleaned up too.
        {
            let mut started = STARTED.lock().expect("cluster registry");
            if started.is_empty() {
                unsafe { libc::atexit(stop_clusters_at_exit) };
            }
            started.push((install.bindir.clone(), dir.clone()));
        }
        cluster.pg_ctl("start");
        cluster
    }

    /// Appends lines to postgresql.conf (they apply at the next start).
    pub fn append_conf(&self, lines: &str) {
        let conf_path = self.dir.join("data").join("postgresql.conf");
        let mut c = as_postgres("tee");
        c.args(["-a", &conf_path.to_string_lossy()])
            .stdout(std::process::Stdio::null())
            .stdin(std::process::Stdio::piped());
        let mut child = c.spawn().expect("tee");
        {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(lines.as_bytes())
                .expect("write conf");
        }
        assert!(child.wait().expect("tee").success());
    }

    /// `pg_ctl start|stop|restart` for this cluster, waiting for it.
    pub fn pg_ctl(&self, action: &str) {
        let data = self.dir.join("data");
        let log = self.dir.join("server.log");
        let mut c = as_postgres(&self.install.bin("pg_ctl"));
        c.args([
            "-D",
            &data.to_string_lossy(),
            "-l",
            &log.to_string_lossy(),
            "-w",
            "-t",
            "60",
        ]);
        if action != "start" {
            c.args(["-m", "fast"]);
        }
        c.arg(action);
        run(c, &format!("pg_ctl {action}"));
    }

    /// A client program of this cluster's installation with the connection arguments for
    /// `user`@`db` (e.g. `pg_dump`, `psql`).
    pub fn command(&self, program: &str, user: &str, db: &str) -> Command {
        let mut c = Command::new(self.install.bin(program));
        c.args([
            "-h",
            &self.sock.to_string_lossy(),
            "-p",
            &self.port.to_string(),
            "-U",
            user,
            "-d",
            db,
        ]);
        c
    }

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
    pub cluster: &'static Cluster,
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
        TestDb::new_on(cluster(), label)
    }

    /// A test database on `cluster` (e.g. `preloaded_cluster()`). Only the database's own roles
    /// may connect to it (CONNECT is revoked from PUBLIC), so what check_isolation() reports
    /// about login roles is about this test's roles only. The tenant_user and tenant_superuser
    /// login roles get an explicit `context_scope => 'session'` rule: they connect directly, not
    /// through a pooler, which is what the rule records (tests of the rules change it).
    pub fn new_on(c: &'static Cluster, label: &str) -> TestDb {
        let n = DB_COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}_{}_{label}", std::process::id() % 10000, n);
        let mut su = Client::connect(&c.conninfo("postgres", "postgres"), NoTls)
            .expect("connect as postgres");
        su.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        let db = TestDb { name, cluster: c };
        let mut su = db.superuser();
        su.batch_execute(&format!(
            "CREATE EXTENSION qualityfoundry_tenant; REVOKE CONNECT ON DATABASE {} FROM PUBLIC",
            db.name
        ))
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
            if grant == "tenant_user" || grant == "tenant_superuser" {
                su.batch_execute(&format!(
                    "SELECT tenant.set_role_rules('{role}', context_scope => 'session')"
                ))
                .expect("role rules");
            }
        }
        db
    }

    /// The cluster-wide name of this database's role `short`.
    pub fn role(&self, short: &str) -> String {
        format!("{}_{short}", self.name)
    }

    pub fn superuser(&self) -> Client {
        Client::connect(&self.cluster.conninfo("postgres", &self.name), NoTls)
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
        let mut cfg: postgres::Config = self
            .cluster
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

    /// `pg_dump` of this database (as the superuser) restored by `psql` into a new database of the
    /// same cluster, `<name>_restored`; returns a superuser connection to the copy.
    pub fn dump_and_restore(&self) -> Client {
        let target = format!("{}_restored", self.name);
        let dump = self
            .cluster
            .command("pg_dump", "postgres", &self.name)
            .output()
            .expect("pg_dump");
        assert!(
            dump.status.success(),
            "{}",
            String::from_utf8_lossy(&dump.stderr)
        );
        self.superuser()
            .batch_execute(&format!("CREATE DATABASE {target}"))
            .expect("create the restore target");
        let mut restore = self
            .cluster
            .command("psql", "postgres", &target)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("psql");
        {
            use std::io::Write;
            restore
                .stdin
                .take()
                .expect("stdin")
                .write_all(&dump.stdout)
                .expect("feed the dump");
        }
        let out = restore.wait_with_output().expect("psql");
        assert!(
            out.status.success(),
            "restore failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Client::connect(&self.cluster.conninfo("postgres", &target), NoTls)
            .expect("connect to the restored database")
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

/// The server's NOTICEs and WARNINGs on a connection, as their message texts.
pub type Notices = std::sync::Arc<Mutex<Vec<String>>>;

/// Connects with `conninfo`, collecting every notice and warning the server sends.
pub fn connect_noticed(conninfo: &str) -> (Client, Notices) {
    let notices: Notices = Default::default();
    let sink = notices.clone();
    let mut cfg: postgres::Config = conninfo.parse().expect("conninfo");
    cfg.notice_callback(move |n| sink.lock().unwrap().push(n.message().to_string()));
    (cfg.connect(NoTls).expect("connect"), notices)
}

impl TestDb {
    /// The superuser, with the notices and warnings it receives collected.
    pub fn superuser_noticed(&self) -> (Client, Notices) {
        connect_noticed(&cluster().conninfo("postgres", &self.name))
    }

    /// Role `short`, with the notices and warnings it receives collected.
    pub fn connect_noticed(&self, short: &str) -> (Client, Notices) {
        connect_noticed(&cluster().conninfo(&self.role(short), &self.name))
    }
}

/// The first column of every row of `sql`, as text (`NULL` for a NULL).
#[track_caller]
pub fn strings(client: &mut Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| {
            r.get::<_, Option<String>>(0)
                .unwrap_or_else(|| "NULL".to_string())
        })
        .collect()
}

/// The code block after the marker `<!-- KIND: NAME ...` in README.md, without its fences: the
/// README's snippets that tests run (`test`) or compare with the examples' code (`example`).
pub fn readme_block(kind: &str, name: &str) -> String {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let marker = format!("<!-- {kind}: {name}");
    let after = readme
        .split(&marker)
        .nth(1)
        .unwrap_or_else(|| panic!("README.md has no {marker}"));
    let body = after
        .split("```")
        .nth(1)
        .expect("a code block after the marker");
    body.split_once('\n')
        .expect("a language line")
        .1
        .to_string()
}

impl Cluster {
    /// psql running the script `file` as `user`@`db`, stopping at the first error.
    pub fn psql_script(&self, user: &str, db: &str, file: &Path) -> Command {
        let mut c = self.command("psql", user, db);
        c.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(file);
        c
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

/// A planted attack, as a NOSUPERUSER role that may create functions would write it: schema
/// `attacker` (owned by `owner`) with `attacker.escalate(path)`, which tries `ALTER ROLE <the test
/// database's admin role> SUPERUSER` and records in `attacker.attempts` which path ran it, as
/// whom, and with what outcome (`escalated`, or the SQLSTATE it failed with) — then returns true, so
/// whatever evaluated it goes on. `attacker.escalate_immutable(path)` is the same declared
/// IMMUTABLE, so PostgreSQL folds calls with constant arguments at DDL time. Everyone may call
/// both and write the log; only `owner` can change them.
pub fn plant_escalation(db: &TestDb, owner: &str) {
    let admin = db.role("admin");
    let mut su = db.superuser();
    su.batch_execute(&format!(
        "CREATE SCHEMA attacker AUTHORIZATION {owner};
         SET ROLE {owner};
         CREATE TABLE attacker.attempts (path text, who name, outcome text);
         GRANT USAGE ON SCHEMA attacker TO PUBLIC;
         GRANT INSERT, SELECT ON attacker.attempts TO PUBLIC;
         CREATE FUNCTION attacker.escalate(path text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $f$
         BEGIN
             BEGIN
                 EXECUTE 'ALTER ROLE {admin} SUPERUSER';
                 INSERT INTO attacker.attempts VALUES (path, current_user, 'escalated');
             EXCEPTION WHEN OTHERS THEN
                 INSERT INTO attacker.attempts VALUES (path, current_user, SQLSTATE);
             END;
             RETURN true;
         END $f$;
         CREATE FUNCTION attacker.escalate_immutable(path text) RETURNS boolean LANGUAGE sql IMMUTABLE
             AS $f$ SELECT attacker.escalate(path) $f$;
         GRANT EXECUTE ON FUNCTION attacker.escalate(text), attacker.escalate_immutable(text) TO PUBLIC;
         RESET ROLE;"
    ))
    .expect("plant the escalation");
}

/// What the planted function recorded: (path, role it ran as, outcome), and whether the test
/// database's admin role became a superuser.
pub fn escalation_attempts(db: &TestDb) -> (Vec<(String, String, String)>, bool) {
    let mut su = db.superuser();
    let attempts = su
        .query(
            "SELECT path, who::text, outcome FROM attacker.attempts ORDER BY 1, 2, 3",
            &[],
        )
        .expect("read attacker.attempts")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let superuser: bool = su
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = $1",
            &[&db.role("admin")],
        )
        .expect("admin role")
        .get(0);
    (attempts, superuser)
}

/// Asserts that the planted function ran on `path` (so the test reached it), never as a
/// superuser, never escalated, and that the admin role is still NOSUPERUSER.
#[track_caller]
pub fn assert_escalation_failed(db: &TestDb, path: &str) {
    let (attempts, superuser) = escalation_attempts(db);
    assert!(
        !superuser,
        "the admin role became a superuser: {attempts:?}"
    );
    let ran: Vec<&(String, String, String)> = attempts.iter().filter(|a| a.0 == path).collect();
    assert!(
        !ran.is_empty(),
        "the planted function never ran on path {path:?}: {attempts:?}"
    );
    for a in &ran {
        assert_ne!(a.2, "escalated", "{a:?}");
        assert_ne!(
            a.1, "postgres",
            "ran with the extension owner's rights: {a:?}"
        );
    }
}

/// Polls `sql` (a boolean query, `$1` = `pid`) until the server says true; fails after a minute.
/// Tests synchronise on server state this way (`pg_locks`, `pg_stat_activity`), never on time.
#[track_caller]
pub fn wait_for(client: &mut Client, sql: &str, pid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let ok: bool = client
            .query_one(sql, &[&pid])
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0);
        if ok {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {sql} (pid {pid})"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whether a `check_isolation()` row is about this test database's own objects. The checker
/// reports roles and parameter privileges, which are cluster-wide: rows about another test
/// database's roles (which parallel tests seed and fix) are not this test's business, and a test
/// must neither assert on them nor apply their fixes.
pub fn about_this_database(db: &TestDb, object: &str, problem: &str) -> bool {
    let own = format!("{}_", db.name);
    if let Some(role) = object.strip_prefix("role ") {
        role.trim_matches('"').starts_with(&own)
    } else if object.starts_with("parameter ") {
        problem.contains(&own)
    } else {
        true
    }
}

/// The template `tenant_template` owned by tenant_admin, as the README recommends, with `objects`
/// made in it by the database's admin role (a NOSUPERUSER tenant_admin member) as tenant_admin.
pub fn tenant_admin_template(db: &TestDb, objects: &str) {
    db.superuser()
        .batch_execute("CREATE SCHEMA tenant_template AUTHORIZATION tenant_admin")
        .expect("template schema");
    db.connect("admin")
        .batch_execute(&format!("SET ROLE tenant_admin; {objects}; RESET ROLE;"))
        .unwrap_or_else(|e| panic!("template objects: {e}"));
}

/// The names of every schema of the database, for "nothing was created" checks.
pub fn schema_names(client: &mut Client) -> String {
    client
        .query_one(
            "SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace",
            &[],
        )
        .expect("schemas")
        .get(0)
}

/// `tenant.check_isolation()` as the database's admin role: (severity, object, problem, fix) of
/// the rows about this database's own objects and roles (see `about_this_database`).
pub fn isolation_findings(db: &TestDb) -> Vec<(String, String, String, String)> {
    db.connect("admin")
        .query(
            "SELECT severity, object, problem, fix FROM tenant.check_isolation()",
            &[],
        )
        .expect("check_isolation as admin")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .filter(|f: &(String, String, String, String)| about_this_database(db, &f.1, &f.2))
        .collect()
}

/// The first column (an integer) of every row of `sql`.
#[track_caller]
pub fn ids(client: &mut Client, sql: &str) -> Vec<i32> {
    client
        .query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Runs `f` inside a transaction that is rolled back, so each case starts from the fixture.
pub fn in_rollback<T>(app: &mut Client, f: impl FnOnce(&mut Client) -> T) -> T {
    app.batch_execute("BEGIN").unwrap();
    let r = f(app);
    app.batch_execute("ROLLBACK").unwrap();
    r
}
