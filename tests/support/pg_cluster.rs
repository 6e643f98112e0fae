//! Starts a real PostgreSQL 15 primary plus two streaming replicas on free loopback ports for tests.

use std::fmt::Write as _;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Directory holding `initdb`, `pg_ctl`, `pg_basebackup`, `postgres`.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// Password of the `postgres` superuser (also used for replication connections).
pub const SUPERUSER_PASSWORD: &str = "postgres-secret";
/// Login role owning database `app`, authenticated with SCRAM.
pub const APP_USER: &str = "app";
pub const APP_PASSWORD: &str = "app-secret";
/// Role whose password is stored as an md5 hash; pg_hba asks it for `md5`.
pub const MD5_USER: &str = "md5user";
pub const MD5_PASSWORD: &str = "md5-secret";
/// Role allowed in without a password (`trust`).
pub const TRUST_USER: &str = "trustuser";
/// Role authenticated with the cleartext `password` method.
pub const CLEAR_USER: &str = "clearuser";
pub const CLEAR_PASSWORD: &str = "clear-secret";

const START_ATTEMPTS: usize = 5;
const STREAMING_TIMEOUT: Duration = Duration::from_secs(60);
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// One running primary + two streaming replicas, all under one temp dir.
/// Dropping it stops the servers (`-m immediate`) and removes the dir.
pub struct PgCluster {
    dir: PathBuf,
    primary_port: u16,
    replica_ports: [u16; 2],
    /// Whether each replica is running (changed by `stop_replica`/`start_replica`).
    replica_running: Mutex<[bool; 2]>,
}

/// The cluster shared by all tests of one test binary that never stop or promote servers.
pub fn shared() -> &'static PgCluster {
    static SHARED: OnceLock<PgCluster> = OnceLock::new();
    SHARED.get_or_init(PgCluster::start)
}

/// True when the test process runs as root (then every server command runs as `postgres`).
pub fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
    })
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct loopback ports that were free a moment ago (all held open together while picking),
/// never one this test process handed out before: tests running side by side in one binary each
/// close their pick before their server binds it, and the kernel may offer that port again.
pub fn free_ports<const N: usize>() -> [u16; N] {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut held = Vec::new();
    let mut ports = [0u16; N];
    for slot in ports.iter_mut() {
        loop {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
            let port = l.local_addr().expect("local_addr").port();
            held.push(l);
            if !given.contains(&port) {
                given.push(port);
                *slot = port;
                break;
            }
        }
    }
    ports
}

/// A command for a server-side binary, run as `postgres` when we are root. Its cwd is `cwd`.
fn server_cmd(program: &str, cwd: &Path) -> Command {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    };
    cmd.current_dir(cwd).stdin(Stdio::null());
    cmd
}

fn pg_bin(name: &str) -> String {
    format!("{PG_BIN}/{name}")
}

fn run(cmd: &mut Command, what: &str) -> Result<Output, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot spawn {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{what} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Last `lines` lines of a file (or a note that it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

fn unique_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Kept short: the Unix socket path (dir + "/.s.PGSQL.NNNNN") must stay under 107 bytes.
    PathBuf::from(format!(
        "/tmp/switchyard-test-{}-{n}-{nanos:x}",
        std::process::id()
    ))
}

impl PgCluster {
    /// Initialise and start a primary and two replicas; returns once both replicas stream.
    /// Panics (with the relevant log tail) when anything fails.
    pub fn start() -> PgCluster {
        let dir = unique_dir();
        fs::create_dir_all(&dir).expect("create cluster temp dir");
        let pwfile = dir.join("pwfile");
        fs::write(&pwfile, format!("{SUPERUSER_PASSWORD}\n")).expect("write pwfile");
        if is_root() {
            run(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&dir),
                "chown cluster dir",
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
        let [p0, p1, p2] = free_ports::<3>();
        let mut cluster = PgCluster {
            dir,
            primary_port: p0,
            replica_ports: [p1, p2],
            replica_running: Mutex::new([false; 2]),
        };
        // From here on a panic drops `cluster`, which stops whatever was started.
        cluster.spawn_reaper();
        cluster.init_primary();
        cluster.primary_port = cluster.start_server("primary", cluster.primary_port);
        cluster.create_roles();
        for i in 0..2 {
            cluster.base_backup(i);
            let port = cluster.start_server(&replica_name(i), cluster.replica_ports[i]);
            cluster.replica_ports[i] = port;
            cluster.replica_running.lock().expect("lock")[i] = true;
        }
        for i in 0..2 {
            cluster.wait_streaming(i);
        }
        cluster
    }

    pub fn primary_port(&self) -> u16 {
        self.primary_port
    }

    pub fn replica_ports(&self) -> [u16; 2] {
        self.replica_ports
    }

    /// The temp dir holding the data dirs (`primary`, `replica1`, `replica2`) and their `*.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn superuser_password(&self) -> &'static str {
        SUPERUSER_PASSWORD
    }

    /// Data dir of `primary`, `replica1` or `replica2`.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Server log of `primary`, `replica1` or `replica2`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// Run `sql` as superuser `postgres` over TCP; returns unaligned, tuples-only output, trimmed.
    /// Panics with psql's stderr on failure.
    pub fn psql(&self, port: u16, db: &str, sql: &str) -> String {
        self.try_psql(port, db, sql)
            .unwrap_or_else(|e| panic!("psql on port {port} db {db} failed: {e}\nsql: {sql}"))
    }

    /// Like [`psql`](Self::psql) but returns psql's stderr as the error instead of panicking.
    pub fn try_psql(&self, port: u16, db: &str, sql: &str) -> Result<String, String> {
        self.try_psql_as(port, "postgres", SUPERUSER_PASSWORD, db, sql)
    }

    /// Run `sql` as `user`/`password` over TCP (ON_ERROR_STOP); Err holds psql's stderr.
    pub fn try_psql_as(
        &self,
        port: u16,
        user: &str,
        password: &str,
        db: &str,
        sql: &str,
    ) -> Result<String, String> {
        let mut cmd = server_cmd("/usr/bin/psql", &self.dir);
        cmd.args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .args(["-p", &port.to_string(), "-U", user, "-d", db, "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10");
        let out = cmd
            .output()
            .map_err(|e| format!("cannot spawn psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim_end().to_string())
        }
    }

    /// Turn TLS on in all three servers without a restart: `cert`/`key` (PEM) are copied into
    /// each data dir, `ssl = on` is appended to `postgresql.conf` and the config reloaded. With
    /// `reject_plain`, `pg_hba.conf` first refuses every non-replication TCP login made without
    /// TLS (`hostnossl all all 127.0.0.1/32 reject`), so a client that gets in used TLS.
    /// Waits until every server reports `ssl = on`.
    pub fn enable_tls(&self, cert: &Path, key: &Path, reject_plain: bool) {
        let ports = [
            self.primary_port,
            self.replica_ports[0],
            self.replica_ports[1],
        ];
        for (name, port) in ["primary", "replica1", "replica2"].into_iter().zip(ports) {
            let data = self.data_dir(name);
            for (src, dst) in [(cert, "server.crt"), (key, "server.key")] {
                let path = data.join(dst);
                fs::copy(src, &path).unwrap_or_else(|e| {
                    panic!("copy {} to {}: {e}", src.display(), path.display())
                });
                let mode = <fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600);
                fs::set_permissions(&path, mode).expect("chmod 600");
                if is_root() {
                    run(
                        Command::new("chown").args(["postgres:postgres"]).arg(&path),
                        "chown TLS file",
                    )
                    .unwrap_or_else(|e| panic!("{e}"));
                }
            }
            append(
                &data.join("postgresql.conf"),
                "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
            );
            if reject_plain {
                let hba_path = data.join("pg_hba.conf");
                let hba = fs::read_to_string(&hba_path).expect("read pg_hba.conf");
                let at = hba.find("\nhost ").map_or(hba.len(), |i| i + 1);
                let hba = format!(
                    "{}hostnossl all all 127.0.0.1/32 reject\n{}",
                    &hba[..at],
                    &hba[at..]
                );
                fs::write(&hba_path, hba).expect("write pg_hba.conf");
            }
            self.psql(port, "postgres", "SELECT pg_reload_conf()");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let got = self.try_psql(port, "postgres", "SHOW ssl");
                if got.as_deref() == Ok("on") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{name}: ssl not on after reload ({got:?})\n--- {name}.log ---\n{}",
                    tail(&self.log_path(name), 30)
                );
                sleep(Duration::from_millis(50));
            }
        }
    }

    /// Fast shutdown of replica `i` (0 or 1); waits until it is down.
    pub fn stop_replica(&self, i: usize) {
        self.pg_ctl_stop(&replica_name(i), "fast")
            .unwrap_or_else(|e| panic!("{e}"));
        self.replica_running.lock().expect("lock")[i] = false;
    }

    /// Start replica `i` again on its port and wait until it streams from the primary.
    pub fn start_replica(&self, i: usize) {
        let name = replica_name(i);
        self.pg_ctl_start(&name).unwrap_or_else(|e| {
            panic!(
                "{e}\n--- {name}.log ---\n{}",
                tail(&self.log_path(&name), 40)
            )
        });
        self.replica_running.lock().expect("lock")[i] = true;
        self.wait_streaming(i);
    }

    /// Fast shutdown of the primary.
    pub fn stop_primary(&self) {
        self.pg_ctl_stop("primary", "fast")
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Crash the primary (`pg_ctl stop -m immediate`: no shutdown checkpoint, connections cut).
    pub fn kill_primary(&self) {
        self.pg_ctl_stop("primary", "immediate")
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Synchronous replication on the primary: a commit returns once one of the two replicas has
    /// flushed it (`ANY 1 (replica1, replica2)`, `synchronous_commit = on`). Set with ALTER SYSTEM
    /// on the primary only, so a promoted replica starts asynchronous.
    pub fn set_synchronous(&self) {
        self.psql(
            self.primary_port,
            "postgres",
            "ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (replica1, replica2)'",
        );
        self.psql(self.primary_port, "postgres", "SELECT pg_reload_conf()");
    }

    /// Start the primary again on its port.
    pub fn start_primary(&self) {
        self.pg_ctl_start("primary").unwrap_or_else(|e| {
            panic!(
                "{e}\n--- primary.log ---\n{}",
                tail(&self.log_path("primary"), 40)
            )
        });
    }

    /// `pg_ctl promote -w` replica `i`: it becomes a (second) primary.
    pub fn promote_replica(&self, i: usize) {
        let name = replica_name(i);
        run(
            server_cmd(&pg_bin("pg_ctl"), &self.dir)
                .args(["promote", "-w", "-t", "60", "-D"])
                .arg(self.data_dir(&name)),
            &format!("pg_ctl promote {name}"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Wait (up to 30 s) until every running replica has replayed the primary's current WAL LSN.
    pub fn wait_replicas_caught_up(&self) {
        let lsn = self.psql(self.primary_port, "postgres", "SELECT pg_current_wal_lsn()");
        let running = *self.replica_running.lock().expect("lock");
        let deadline = Instant::now() + CATCH_UP_TIMEOUT;
        for i in (0..2).filter(|&i| running[i]) {
            let sql = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
            loop {
                let got = self.try_psql(self.replica_ports[i], "postgres", &sql);
                if got.as_deref() == Ok("t") {
                    break;
                }
                if Instant::now() > deadline {
                    panic!(
                        "replica{} did not replay {lsn} within {CATCH_UP_TIMEOUT:?} (last answer {got:?})\n--- log ---\n{}",
                        i + 1,
                        tail(&self.log_path(&replica_name(i)), 30)
                    );
                }
                sleep(Duration::from_millis(50));
            }
        }
    }

    fn init_primary(&self) {
        let data = self.data_dir("primary");
        run(
            server_cmd(&pg_bin("initdb"), &self.dir)
                .arg("-D")
                .arg(&data)
                .args([
                    "-A",
                    "scram-sha-256",
                    "--auth-local=trust",
                    "-U",
                    "postgres",
                ])
                .arg(format!("--pwfile={}", self.dir.join("pwfile").display()))
                .args(["-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]),
            "initdb",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut conf = String::from("\n# --- switchyard test harness ---\n");
        let settings = [
            ("listen_addresses", "'127.0.0.1'".to_string()),
            (
                "unix_socket_directories",
                format!("'{}'", self.dir.display()),
            ),
            ("wal_level", "replica".into()),
            ("max_wal_senders", "10".into()),
            ("max_replication_slots", "10".into()),
            ("hot_standby", "on".into()),
            ("hot_standby_feedback", "on".into()),
            ("fsync", "off".into()),
            ("shared_buffers", "32MB".into()),
            ("max_connections", "300".into()),
            ("wal_receiver_status_interval", "1s".into()),
            ("logging_collector", "off".into()),
            ("log_line_prefix", "'%m [%p] %q%u@%d '".into()),
        ];
        for (k, v) in settings {
            let _ = writeln!(conf, "{k} = {v}");
        }
        append(&data.join("postgresql.conf"), &conf);
        let hba = format!(
            "# switchyard test harness\n\
             local all all trust\n\
             local replication all trust\n\
             host all {MD5_USER} 127.0.0.1/32 md5\n\
             host all {TRUST_USER} 127.0.0.1/32 trust\n\
             host all {CLEAR_USER} 127.0.0.1/32 password\n\
             host all all 127.0.0.1/32 scram-sha-256\n\
             host replication all 127.0.0.1/32 scram-sha-256\n"
        );
        // The test process may not own the file (root + postgres), but root can write it.
        fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
    }

    fn create_roles(&self) {
        let p = self.primary_port;
        let statements = [
            format!("CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'"),
            format!("CREATE DATABASE app OWNER {APP_USER}"),
            format!(
                "SET password_encryption = 'md5'; CREATE ROLE {MD5_USER} LOGIN PASSWORD '{MD5_PASSWORD}'"
            ),
            format!("CREATE ROLE {TRUST_USER} LOGIN"),
            format!("CREATE ROLE {CLEAR_USER} LOGIN PASSWORD '{CLEAR_PASSWORD}'"),
            "SELECT pg_reload_conf()".to_string(),
        ];
        for sql in statements {
            self.psql(p, "postgres", &sql);
        }
    }

    fn base_backup(&self, i: usize) {
        let name = replica_name(i);
        run(
            server_cmd(&pg_bin("pg_basebackup"), &self.dir)
                .arg("-D")
                .arg(self.data_dir(&name))
                .args(["-R", "-X", "stream", "-C", "-S", &name])
                .args(["-c", "fast", "--no-sync", "-h", "127.0.0.1"])
                .args(["-p", &self.primary_port.to_string(), "-U", "postgres"])
                .env("PGPASSWORD", SUPERUSER_PASSWORD)
                .env("PGAPPNAME", &name),
            &format!("pg_basebackup {name}"),
        )
        .unwrap_or_else(|e| {
            panic!(
                "{e}\n--- primary.log ---\n{}",
                tail(&self.log_path("primary"), 30)
            )
        });
        append(
            &self.data_dir(&name).join("postgresql.conf"),
            &format!("cluster_name = '{name}'\n"),
        );
    }

    /// Start server `name` on `port`, moving to another free port when that one is taken.
    /// Returns the port it listens on.
    fn start_server(&self, name: &str, mut port: u16) -> u16 {
        let conf = self.data_dir(name).join("postgresql.conf");
        for attempt in 1..=START_ATTEMPTS {
            // Later lines override earlier ones, so appending is enough to change the port.
            append(&conf, &format!("port = {port}\n"));
            match self.pg_ctl_start(name) {
                Ok(()) => return port,
                Err(e) => {
                    let log = tail(&self.log_path(name), 40);
                    let clash = log.contains("already in use")
                        || log.contains("could not create any TCP/IP sockets");
                    if !clash || attempt == START_ATTEMPTS {
                        panic!("{e}\n--- {name}.log ---\n{log}");
                    }
                    port = free_port();
                }
            }
        }
        unreachable!("start_server loop always returns or panics")
    }

    fn pg_ctl_start(&self, name: &str) -> Result<(), String> {
        run(
            server_cmd(&pg_bin("pg_ctl"), &self.dir)
                .args(["start", "-w", "-t", "60", "-D"])
                .arg(self.data_dir(name))
                .arg("-l")
                .arg(self.log_path(name))
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
            &format!("pg_ctl start {name}"),
        )
        .map(|_| ())
    }

    fn pg_ctl_stop(&self, name: &str, mode: &str) -> Result<(), String> {
        run(
            server_cmd(&pg_bin("pg_ctl"), &self.dir)
                .args(["stop", "-w", "-t", "60", "-m", mode, "-D"])
                .arg(self.data_dir(name)),
            &format!("pg_ctl stop {name}"),
        )
        .map(|_| ())
    }

    fn wait_streaming(&self, i: usize) {
        let name = replica_name(i);
        let sql = format!(
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = '{name}' AND state = 'streaming'"
        );
        let deadline = Instant::now() + STREAMING_TIMEOUT;
        loop {
            let got = self.try_psql(self.primary_port, "postgres", &sql);
            if got.as_deref() == Ok("1") {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{name} not streaming after {STREAMING_TIMEOUT:?} (last answer {got:?})\n--- {name}.log ---\n{}\n--- primary.log ---\n{}",
                    tail(&self.log_path(&name), 30),
                    tail(&self.log_path("primary"), 30)
                );
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// A detached shell that waits for this test process to exit, then stops the servers and
    /// removes the dir: covers `static` clusters and test binaries killed before `Drop`.
    fn spawn_reaper(&self) {
        let pg_ctl = pg_bin("pg_ctl");
        let prefix = if is_root() {
            "runuser -u postgres -- "
        } else {
            ""
        };
        let mut script = format!(
            "cd /; while kill -0 {} 2>/dev/null; do sleep 1; done; ",
            std::process::id()
        );
        for name in ["primary", "replica1", "replica2"] {
            let data = self.data_dir(name);
            let _ = write!(
                script,
                "[ -f '{d}/postmaster.pid' ] && {prefix}{pg_ctl} stop -m immediate -D '{d}'; ",
                d = data.display()
            );
        }
        let _ = write!(script, "rm -rf '{}'", self.dir.display());
        spawn_detached(&script);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        for name in ["primary", "replica1", "replica2"] {
            if self.data_dir(name).join("postmaster.pid").exists() {
                let _ = self.pg_ctl_stop(name, "immediate");
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Run the shell `script` in the background, detached from this process: double-forked (so it is
/// re-parented to init and never becomes our zombie), in its own process group (so a Ctrl-C
/// of the test run does not kill it), with all stdio on /dev/null.
pub fn spawn_detached(script: &str) {
    let quoted = script.replace('\'', "'\\''");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("sh -c '{quoted}' </dev/null >/dev/null 2>&1 &"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let status = cmd.status().expect("spawn detached reaper");
    assert!(
        status.success(),
        "detached reaper launcher failed: {status}"
    );
}

fn replica_name(i: usize) -> String {
    assert!(i < 2, "replica index {i} out of range (0 or 1)");
    format!("replica{}", i + 1)
}

fn append(path: &Path, text: &str) {
    use std::io::Write as _;
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {} for append: {e}", path.display()));
    f.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
}
