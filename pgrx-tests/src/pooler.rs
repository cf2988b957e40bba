//! PgBouncer in front of a test cluster: one process per (cluster, pool mode) and test binary,
//! started on first use on a free loopback port, stopped at exit (also when tests fail).
//!
//! - `PoolMode::Transaction`: `pool_mode = transaction`, `default_pool_size = 2`, so many clients
//!   share two server connections per (database, user) — what a SaaS deployment runs.
//! - `PoolMode::Session`: `pool_mode = session`, `server_reset_query = DISCARD ALL`.
//!
//! Authentication is `trust` (the cluster trusts loopback too); PgBouncer still wants every user
//! in its auth_file, so `Pooler::allow` adds a test database's roles and reloads it through the
//! admin console. PgBouncer 1.18 has no protocol-level prepared statements: through it, use the
//! simple query protocol (`simple_query`/`batch_execute`), as the README tells clients.

use crate::{as_postgres, free_port, run, Cluster, TestDb, ROLES};
use postgres::{Client, NoTls, SimpleQueryMessage};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMode {
    Transaction,
    Session,
}

pub struct Pooler {
    pub port: u16,
    pub mode: PoolMode,
    dir: PathBuf,
    /// Serialises auth_file edits and reloads.
    users: Mutex<()>,
}

static POOLERS: Mutex<Vec<(u16, PoolMode, &'static Pooler)>> = Mutex::new(Vec::new());
static PIDFILES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn stop_poolers_at_exit() {
    for pidfile in PIDFILES.lock().map(|p| p.clone()).unwrap_or_default() {
        if let Ok(pid) = std::fs::read_to_string(&pidfile) {
            let _ = std::process::Command::new("kill")
                .args(["-INT", pid.trim()])
                .output();
        }
    }
}

/// The pooler of `mode` in front of `cluster`, started on first use.
pub fn pooler(cluster: &'static Cluster, mode: PoolMode) -> &'static Pooler {
    let mut all = POOLERS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, p)) = all
        .iter()
        .find(|(c, m, _)| *c == cluster.port && *m == mode)
    {
        return p;
    }
    let p: &'static Pooler = Box::leak(Box::new(Pooler::start(cluster, mode)));
    all.push((cluster.port, mode, p));
    p
}

impl Pooler {
    fn start(cluster: &'static Cluster, mode: PoolMode) -> Pooler {
        let dir = cluster
            .dir
            .join(format!("pgbouncer-{mode:?}").to_lowercase());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("pooler dir");
        let port = free_port();
        let (pool_mode, reset) = match mode {
            PoolMode::Transaction => ("transaction", ""),
            PoolMode::Session => ("session", "server_reset_query = DISCARD ALL\n"),
        };
        let ini = format!(
            "[databases]\n* = host=127.0.0.1 port={}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
             listen_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {users}\n\
             admin_users = postgres\npool_mode = {pool_mode}\ndefault_pool_size = 2\n\
             max_client_conn = 500\n{reset}ignore_startup_parameters = extra_float_digits,options\n\
             logfile = {log}\npidfile = {pid}\n",
            cluster.port,
            users = dir.join("users.txt").display(),
            log = dir.join("pgbouncer.log").display(),
            pid = dir.join("pgbouncer.pid").display(),
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).expect("pgbouncer.ini");
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").expect("users.txt");
        run(
            {
                let mut c = std::process::Command::new("chown");
                c.args(["-R", "postgres", &dir.to_string_lossy()]);
                c
            },
            "chown pooler dir",
        );
        {
            let mut pidfiles = PIDFILES.lock().unwrap_or_else(|e| e.into_inner());
            if pidfiles.is_empty() {
                unsafe { libc::atexit(stop_poolers_at_exit) };
            }
            pidfiles.push(dir.join("pgbouncer.pid"));
        }
        // PgBouncer refuses to run as root.
        run(
            {
                let mut c = as_postgres(PGBOUNCER);
                c.args(["-d", &dir.join("pgbouncer.ini").to_string_lossy()]);
                c
            },
            "start pgbouncer",
        );
        let pooler = Pooler {
            port,
            mode,
            dir,
            users: Mutex::new(()),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not listen on {port}: {}",
                pooler.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        pooler
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    /// Lets the roles of `db` log in through this pooler (auth_file, then RELOAD, which the
    /// admin console runs before it answers).
    pub fn allow(&self, db: &TestDb) {
        let _guard = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.dir.join("users.txt");
        let mut users = std::fs::read_to_string(&path).unwrap_or_default();
        for (short, _) in ROLES {
            users.push_str(&format!("\"{}\" \"\"\n", db.role(short)));
        }
        std::fs::write(&path, users).expect("users.txt");
        let mut admin = Client::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=pgbouncer",
                self.port
            ),
            NoTls,
        )
        .expect("pgbouncer admin console");
        admin.simple_query("RELOAD").expect("RELOAD");
    }

    /// A client connection through the pooler as role `short` of `db`.
    pub fn connect(&self, db: &TestDb, short: &str) -> Client {
        Client::connect(
            &format!(
                "host=127.0.0.1 port={} user={} dbname={}",
                self.port,
                db.role(short),
                db.name
            ),
            NoTls,
        )
        .unwrap_or_else(|e| panic!("connect through pgbouncer: {e}\n{}", self.log()))
    }
}

/// The rows of the last result of a simple-protocol query, as text.
pub fn simple_rows(
    client: &mut Client,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, postgres::Error> {
    let mut rows = Vec::new();
    for m in client.simple_query(sql)? {
        match m {
            SimpleQueryMessage::RowDescription(_) => rows.clear(),
            SimpleQueryMessage::Row(r) => {
                rows.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => {}
        }
    }
    Ok(rows)
}

/// One cell of a simple-protocol query.
#[track_caller]
pub fn simple_one(client: &mut Client, sql: &str) -> Option<String> {
    simple_rows(client, sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .first()
        .and_then(|r| r.first().cloned())
        .flatten()
}
