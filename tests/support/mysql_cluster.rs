//! Starts a real MariaDB 10.11 primary plus two GTID replicas on free loopback ports for tests.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::pg_cluster::{free_port, free_ports, is_root, spawn_detached, tail};

/// The server binary (not on a non-root user's `PATH` on Debian).
pub const MARIADBD: &str = "/usr/sbin/mariadbd";
pub const MARIADB_INSTALL_DB: &str = "/usr/bin/mariadb-install-db";
pub const MARIADB_CLIENT: &str = "/usr/bin/mariadb";
pub const MARIADB_ADMIN: &str = "/usr/bin/mariadb-admin";
/// Password of `root` (over TCP and over the Unix socket).
pub const MYSQL_ROOT_PASSWORD: &str = "root-secret";
/// Application login owning database `app` (mysql_native_password).
pub const MYSQL_APP_USER: &str = "app";
pub const MYSQL_APP_PASSWORD: &str = "app-secret";
pub const MYSQL_APP_DB: &str = "app";
/// Login the health monitor uses: may read binlog and replica status, nothing else.
pub const MYSQL_MONITOR_USER: &str = "monitor";
pub const MYSQL_MONITOR_PASSWORD: &str = "monitor-secret";
/// Login the replicas use to pull the primary's binlog.
pub const MYSQL_REPL_USER: &str = "repl";
pub const MYSQL_REPL_PASSWORD: &str = "repl-secret";

const NAMES: [&str; 3] = ["primary", "replica1", "replica2"];
const START_ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(30);
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// One running MariaDB primary (server_id 1) + two GTID replicas (server_id 2 and 3, read-only),
/// all under one temp dir. Every server has the same users, database `app`, binary logging and
/// `log_slave_updates`, so any replica can later be promoted. Dropping it kills the servers and
/// removes the dir.
pub struct MariaDbCluster {
    dir: PathBuf,
    /// Ports of primary, replica1, replica2.
    ports: [u16; 3],
    /// The running `mariadbd` child of each server (`None` while stopped).
    servers: Mutex<[Option<Child>; 3]>,
    /// Replicas whose SQL thread was stopped by [`stop_replica_sql_thread`](Self::stop_replica_sql_thread).
    sql_thread_stopped: Mutex<[bool; 2]>,
    /// Certificate and key (copies in `dir`) the servers offer TLS with, if started with TLS.
    tls: Option<(PathBuf, PathBuf)>,
}

/// The MariaDB cluster shared by all tests of one test binary that never stop or promote servers.
pub fn shared_mysql() -> &'static MariaDbCluster {
    static SHARED: OnceLock<MariaDbCluster> = OnceLock::new();
    SHARED.get_or_init(MariaDbCluster::start)
}

fn unique_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Kept short: the Unix socket path (dir + "/replica2.sock") must stay under 107 bytes.
    PathBuf::from(format!(
        "/tmp/switchyard-mysql-{}-{n}-{nanos:x}",
        std::process::id()
    ))
}

/// Run `cmd`; Err carries its status, stdout and stderr.
fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot spawn {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{what} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// SQL run once by `mariadb-install-db` (bootstrap mode, not binlogged): the datadir it builds is
/// copied to all three servers, so they start identical with an empty GTID history.
fn bootstrap_sql() -> String {
    format!(
        "FLUSH PRIVILEGES;\n\
         EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS ''root''@''', @@hostname, '''');\n\
         ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('{root}');\n\
         ALTER USER IF EXISTS 'root'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD('{root}');\n\
         ALTER USER IF EXISTS 'root'@'::1' IDENTIFIED VIA mysql_native_password USING PASSWORD('{root}');\n\
         CREATE DATABASE {db};\n\
         CREATE USER '{app}'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('{app_pw}');\n\
         GRANT ALL ON {db}.* TO '{app}'@'%';\n\
         CREATE USER '{repl}'@'%' IDENTIFIED BY '{repl_pw}';\n\
         GRANT REPLICATION SLAVE ON *.* TO '{repl}'@'%';\n\
         CREATE USER '{mon}'@'%' IDENTIFIED BY '{mon_pw}';\n\
         GRANT SLAVE MONITOR, BINLOG MONITOR, REPLICATION CLIENT ON *.* TO '{mon}'@'%';\n",
        root = MYSQL_ROOT_PASSWORD,
        db = MYSQL_APP_DB,
        app = MYSQL_APP_USER,
        app_pw = MYSQL_APP_PASSWORD,
        repl = MYSQL_REPL_USER,
        repl_pw = MYSQL_REPL_PASSWORD,
        mon = MYSQL_MONITOR_USER,
        mon_pw = MYSQL_MONITOR_PASSWORD,
    )
}

impl MariaDbCluster {
    /// Initialise and start a primary and two replicas; returns once both replicas run their IO
    /// and SQL threads. Panics (with the relevant log tail) when anything fails.
    pub fn start() -> MariaDbCluster {
        Self::start_with_tls(None)
    }

    /// Like [`start`](Self::start), with TLS offered by every server when `tls` gives a PEM
    /// certificate and key (`--ssl-cert`/`--ssl-key`; plain connections stay possible unless a
    /// user is created or altered with `REQUIRE SSL`).
    pub fn start_with_tls(tls: Option<(&Path, &Path)>) -> MariaDbCluster {
        for bin in [MARIADBD, MARIADB_INSTALL_DB, MARIADB_CLIENT, MARIADB_ADMIN] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: run scripts/install-deps.sh"
            );
        }
        let dir = unique_dir();
        fs::create_dir_all(&dir).expect("create cluster temp dir");
        if is_root() {
            run(
                Command::new("chown").args(["mysql:mysql"]).arg(&dir),
                "chown cluster dir",
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
        let mut cluster = MariaDbCluster {
            dir,
            ports: free_ports::<3>(),
            servers: Mutex::new([None, None, None]),
            sql_thread_stopped: Mutex::new([false; 2]),
            tls: None,
        };
        if let Some((cert, key)) = tls {
            let copy = |src: &Path, name: &str| {
                let dst = cluster.dir.join(name);
                fs::copy(src, &dst)
                    .unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), dst.display()));
                if is_root() {
                    run(
                        Command::new("chown").args(["mysql:mysql"]).arg(&dst),
                        "chown TLS file",
                    )
                    .unwrap_or_else(|e| panic!("{e}"));
                }
                dst
            };
            cluster.tls = Some((copy(cert, "server-cert.pem"), copy(key, "server-key.pem")));
        }
        // From here on a panic drops `cluster`, which kills whatever was started.
        cluster.spawn_reaper();
        cluster.install();
        cluster.start_all();
        for i in 0..2 {
            cluster.configure_replica(i);
        }
        for i in 0..2 {
            cluster.wait_replication_running(i);
        }
        cluster
    }

    pub fn primary_port(&self) -> u16 {
        self.ports[0]
    }

    pub fn replica_ports(&self) -> [u16; 2] {
        [self.ports[1], self.ports[2]]
    }

    /// The temp dir holding the data dirs (`primary`, `replica1`, `replica2`), their sockets
    /// (`<name>.sock`) and error logs (`<name>.err`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Data dir of `primary`, `replica1` or `replica2`.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Error log (`--log-error`) of `primary`, `replica1` or `replica2`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.err"))
    }

    /// Unix socket of `primary`, `replica1` or `replica2`.
    pub fn socket_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.sock"))
    }

    /// Run `sql` as root over TCP; returns `mariadb -N -B` output (tab-separated, no header),
    /// without the trailing newline. Panics with the client's stderr on failure.
    pub fn sql(&self, port: u16, sql: &str) -> String {
        self.try_sql(port, sql)
            .unwrap_or_else(|e| panic!("mariadb on port {port} failed: {e}\nsql: {sql}"))
    }

    /// Like [`sql`](Self::sql) but returns the client's stderr as the error instead of panicking.
    pub fn try_sql(&self, port: u16, sql: &str) -> Result<String, String> {
        self.try_sql_as(port, "root", MYSQL_ROOT_PASSWORD, "", sql)
    }

    /// Run `sql` as `user`/`password` over TCP in database `db` (none when empty); panics on error.
    pub fn sql_as(&self, port: u16, user: &str, password: &str, db: &str, sql: &str) -> String {
        self.try_sql_as(port, user, password, db, sql)
            .unwrap_or_else(|e| panic!("mariadb on port {port} as {user} failed: {e}\nsql: {sql}"))
    }

    /// Run `sql` as `user`/`password` over TCP in database `db` (none when empty).
    /// Err holds the client's stderr.
    pub fn try_sql_as(
        &self,
        port: u16,
        user: &str,
        password: &str,
        db: &str,
        sql: &str,
    ) -> Result<String, String> {
        client_output(&mut client_cmd(
            port,
            user,
            password,
            db,
            &["-N", "-B"],
            sql,
        ))
    }

    /// The row of `SHOW SLAVE STATUS` on replica `i` (0 or 1) keyed by column name; empty when
    /// the server is not a replica. Panics when the query fails.
    pub fn replica_status(&self, i: usize) -> HashMap<String, String> {
        let port = self.replica_ports()[check_replica(i)];
        let out = client_output(&mut client_cmd(
            port,
            "root",
            MYSQL_ROOT_PASSWORD,
            "",
            &["-B"],
            "SHOW SLAVE STATUS",
        ))
        .unwrap_or_else(|e| panic!("SHOW SLAVE STATUS on replica{} failed: {e}", i + 1));
        parse_first_row(&out)
    }

    /// Clean shutdown (`mariadb-admin shutdown`) of replica `i` (0 or 1); waits until it is down.
    pub fn stop_replica(&self, i: usize) {
        self.stop_server(check_replica(i) + 1);
    }

    /// Start replica `i` again on its port and wait until its IO and SQL threads run.
    pub fn start_replica(&self, i: usize) {
        self.start_server(check_replica(i) + 1);
        self.sql_thread_stopped.lock().expect("lock")[i] = false;
        self.wait_replication_running(i);
    }

    /// Clean shutdown of the primary; waits until it is down.
    pub fn stop_primary(&self) {
        self.stop_server(0);
    }

    /// Crash the primary: SIGKILL its `mariadbd` and reap it.
    pub fn kill_primary(&self) {
        let mut child = self.servers.lock().expect("lock")[0]
            .take()
            .expect("primary is not running");
        child.kill().expect("kill -9 mariadbd");
        let _ = child.wait();
    }

    /// Start the primary again on its port (the replicas reconnect within about a second).
    pub fn start_primary(&self) {
        self.start_server(0);
    }

    /// `STOP SLAVE SQL_THREAD` on replica `i`: it keeps receiving the binlog but stops applying it.
    pub fn stop_replica_sql_thread(&self, i: usize) {
        self.sql(
            self.replica_ports()[check_replica(i)],
            "STOP SLAVE SQL_THREAD",
        );
        self.sql_thread_stopped.lock().expect("lock")[i] = true;
    }

    /// `START SLAVE SQL_THREAD` on replica `i`; waits until both replication threads run.
    pub fn start_replica_sql_thread(&self, i: usize) {
        self.sql(
            self.replica_ports()[check_replica(i)],
            "START SLAVE SQL_THREAD",
        );
        self.sql_thread_stopped.lock().expect("lock")[i] = false;
        self.wait_replication_running(i);
    }

    /// Wait (up to 30 s in all) until every running replica whose SQL thread was not stopped
    /// has applied the primary's current `@@gtid_binlog_pos` (its `@@gtid_slave_pos` reaches it).
    pub fn wait_replicas_caught_up(&self) {
        let pos = self.sql(self.primary_port(), "SELECT @@gtid_binlog_pos");
        let deadline = Instant::now() + CATCH_UP_TIMEOUT;
        for i in 0..2 {
            if !self.is_running(i + 1) || self.sql_thread_stopped.lock().expect("lock")[i] {
                continue;
            }
            let port = self.replica_ports()[i];
            loop {
                // Waits server-side for at most one second per round, then checks for errors.
                let got = self.try_sql(port, &format!("SELECT MASTER_GTID_WAIT('{pos}', 1)"));
                if got.as_deref() == Ok("0") {
                    break;
                }
                let status = self.replica_status(i);
                let failed = ["Last_IO_Errno", "Last_SQL_Errno"]
                    .iter()
                    .any(|k| status.get(*k).is_some_and(|v| v != "0"));
                if failed || Instant::now() > deadline {
                    panic!(
                        "replica{} did not reach {pos} within {CATCH_UP_TIMEOUT:?} (last answer {got:?}, \
                         gtid_slave_pos {:?})\n--- SHOW SLAVE STATUS ---\n{}\n--- log ---\n{}",
                        i + 1,
                        self.try_sql(port, "SELECT @@gtid_slave_pos"),
                        show_status(&status),
                        tail(&self.log_path(NAMES[i + 1]), 30)
                    );
                }
            }
        }
    }

    /// `mariadb-install-db` into `primary` (with [`bootstrap_sql`]), then copy it to the replicas.
    fn install(&self) {
        let sql_path = self.dir.join("bootstrap.sql");
        fs::write(&sql_path, bootstrap_sql()).expect("write bootstrap.sql");
        let primary = self.data_dir("primary");
        let mut cmd = Command::new(MARIADB_INSTALL_DB);
        cmd.arg("--no-defaults")
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .arg("--skip-name-resolve")
            // Own temp dir: concurrent bootstraps sharing /tmp have failed deleting temp tables.
            .arg(format!("--tmpdir={}", self.dir.display()))
            .arg(format!("--datadir={}", primary.display()))
            .arg(format!("--extra-file={}", sql_path.display()))
            .args([
                "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=48M",
            ])
            .current_dir(&self.dir);
        if is_root() {
            cmd.arg("--user=mysql");
        }
        run(&mut cmd, "mariadb-install-db").unwrap_or_else(|e| panic!("{e}"));
        for name in &NAMES[1..] {
            run(
                Command::new("cp")
                    .arg("-a")
                    .arg(&primary)
                    .arg(self.data_dir(name)),
                &format!("copy datadir to {name}"),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// Start all three servers in parallel, moving a server to another free port when its port
    /// turns out to be taken.
    fn start_all(&mut self) {
        let mut pending: Vec<usize> = (0..3).collect();
        for attempt in 1..=START_ATTEMPTS {
            for &idx in &pending {
                let child = self.spawn_server(idx);
                self.servers.lock().expect("lock")[idx] = Some(child);
            }
            let mut clashed = Vec::new();
            for &idx in &pending {
                match self.wait_ready(idx) {
                    Ok(()) => {}
                    Err(e) if e.contains("Address already in use") && attempt < START_ATTEMPTS => {
                        clashed.push(idx);
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            if clashed.is_empty() {
                return;
            }
            for &idx in &clashed {
                self.ports[idx] = free_port();
            }
            pending = clashed;
        }
    }

    /// Start stopped server `idx` on its old port and wait until it answers.
    fn start_server(&self, idx: usize) {
        assert!(!self.is_running(idx), "{} is already running", NAMES[idx]);
        let child = self.spawn_server(idx);
        self.servers.lock().expect("lock")[idx] = Some(child);
        self.wait_ready(idx).unwrap_or_else(|e| panic!("{e}"));
    }

    fn is_running(&self, idx: usize) -> bool {
        self.servers.lock().expect("lock")[idx].is_some()
    }

    /// Command-line options of server `idx` (everything but `--user`).
    fn server_args(&self, idx: usize) -> Vec<String> {
        let name = NAMES[idx];
        let file = |ext: &str| self.dir.join(format!("{name}.{ext}")).display().to_string();
        let mut args = vec![
            "--no-defaults".to_string(),
            format!("--datadir={}", self.data_dir(name).display()),
            format!("--port={}", self.ports[idx]),
            "--bind-address=127.0.0.1".into(),
            format!("--socket={}", file("sock")),
            format!("--pid-file={}", file("pid")),
            format!("--tmpdir={}", self.dir.display()),
            format!("--log-error={}", file("err")),
            format!("--server-id={}", idx + 1),
            "--log-bin=mysql-bin".into(),
            "--relay-log=relay-bin".into(),
            "--log-slave-updates".into(),
            "--binlog-format=ROW".into(),
            "--gtid-strict-mode=1".into(),
            "--skip-name-resolve".into(),
            "--character-set-server=utf8mb4".into(),
            "--innodb-buffer-pool-size=64M".into(),
            "--innodb-log-file-size=48M".into(),
            "--innodb-flush-log-at-trx-commit=2".into(),
            "--sync-binlog=0".into(),
            "--max-connections=500".into(),
            // Replicas notice a dead primary within seconds (heartbeat = half of this).
            "--slave-net-timeout=5".into(),
        ];
        if idx > 0 {
            args.push("--read-only=1".into());
        }
        if let Some((cert, key)) = &self.tls {
            args.push(format!("--ssl-cert={}", cert.display()));
            args.push(format!("--ssl-key={}", key.display()));
        }
        args
    }

    /// Spawn `mariadbd` for server `idx` in its own process group (a Ctrl-C of the test run
    /// leaves it to the reaper); its stdout/stderr go to `<name>.out`.
    fn spawn_server(&self, idx: usize) -> Child {
        let name = NAMES[idx];
        let out_path = self.dir.join(format!("{name}.out"));
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)
            .expect("open mariadbd stdout file");
        let err = out.try_clone().expect("clone mariadbd stdout handle");
        let mut cmd = Command::new(MARIADBD);
        cmd.args(self.server_args(idx))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        if is_root() {
            // mariadbd refuses to run as root; it switches to `mysql` itself.
            cmd.arg("--user=mysql");
        }
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.spawn()
            .unwrap_or_else(|e| panic!("spawn {MARIADBD} for {name}: {e}"))
    }

    /// Wait until server `idx` answers `SELECT @@socket` with its own socket over TCP (so a
    /// stranger on the same port does not count). Err (with the logs) when it exits or times out.
    fn wait_ready(&self, idx: usize) -> Result<(), String> {
        let name = NAMES[idx];
        let port = self.ports[idx];
        let socket = self.socket_path(name).display().to_string();
        let deadline = Instant::now() + READY_TIMEOUT;
        let logs = || {
            format!(
                "--- {name}.err ---\n{}\n--- {name}.out ---\n{}",
                tail(&self.log_path(name), 40),
                tail(&self.dir.join(format!("{name}.out")), 20)
            )
        };
        loop {
            let exited = {
                let mut servers = self.servers.lock().expect("lock");
                let child = servers[idx].as_mut().expect("server was spawned");
                match child.try_wait() {
                    Ok(Some(status)) => {
                        servers[idx] = None;
                        Some(status.to_string())
                    }
                    Ok(None) => None,
                    Err(e) => Some(format!("wait failed: {e}")),
                }
            };
            if let Some(status) = exited {
                return Err(format!(
                    "{name} (port {port}) exited during startup ({status})\n{}",
                    logs()
                ));
            }
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && self.try_sql(port, "SELECT @@socket").as_deref() == Ok(socket.as_str())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{name} not ready on port {port} after {READY_TIMEOUT:?}\n{}",
                    logs()
                ));
            }
            sleep(Duration::from_millis(30));
        }
    }

    /// `mariadb-admin shutdown` server `idx`, then wait for the process to exit.
    fn stop_server(&self, idx: usize) {
        let name = NAMES[idx];
        let mut child = self.servers.lock().expect("lock")[idx]
            .take()
            .unwrap_or_else(|| panic!("{name} is not running"));
        let shutdown = run(
            Command::new(MARIADB_ADMIN)
                .args(["--no-defaults", "-h127.0.0.1"])
                .arg(format!("-P{}", self.ports[idx]))
                .args(["-uroot", &format!("-p{MYSQL_ROOT_PASSWORD}"), "shutdown"]),
            &format!("mariadb-admin shutdown {name}"),
        );
        if let Err(e) = shutdown {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{e}");
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(20)),
                other => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "{name} did not stop within {STOP_TIMEOUT:?} ({other:?})\n--- log ---\n{}",
                        tail(&self.log_path(name), 30)
                    );
                }
            }
        }
    }

    /// Point replica `i` at the primary (GTID, `slave_pos`) and start replicating.
    fn configure_replica(&self, i: usize) {
        let sql = format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='{MYSQL_REPL_USER}', \
             MASTER_PASSWORD='{MYSQL_REPL_PASSWORD}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; \
             START SLAVE",
            self.primary_port()
        );
        self.sql(self.replica_ports()[i], &sql);
    }

    /// Wait until `SHOW SLAVE STATUS` on replica `i` says both threads run.
    fn wait_replication_running(&self, i: usize) {
        let deadline = Instant::now() + REPLICATION_TIMEOUT;
        loop {
            let status = self.replica_status(i);
            let yes = |k: &str| status.get(k).map(String::as_str) == Some("Yes");
            if yes("Slave_IO_Running") && yes("Slave_SQL_Running") {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "replica{} not replicating after {REPLICATION_TIMEOUT:?}\n--- SHOW SLAVE STATUS ---\n{}\n\
                     --- replica{}.err ---\n{}\n--- primary.err ---\n{}",
                    i + 1,
                    show_status(&status),
                    i + 1,
                    tail(&self.log_path(NAMES[i + 1]), 30),
                    tail(&self.log_path("primary"), 20)
                );
            }
            sleep(Duration::from_millis(30));
        }
    }

    /// A detached shell that waits for this test process to exit, then kills the servers (only
    /// pids whose command line still names this dir) and removes the dir: covers `static`
    /// clusters and test binaries killed before `Drop`.
    fn spawn_reaper(&self) {
        let dir = self.dir.display();
        let mut script = format!(
            "cd /; while kill -0 {} 2>/dev/null; do sleep 1; done; ",
            std::process::id()
        );
        for name in NAMES {
            let _ = write!(
                script,
                "p=$(cat '{dir}/{name}.pid' 2>/dev/null) && \
                 tr '\\000' ' ' < /proc/$p/cmdline 2>/dev/null | grep -qF -- '--datadir={dir}/' && \
                 kill -9 $p; "
            );
        }
        let _ = write!(script, "sleep 1; rm -rf '{dir}'");
        spawn_detached(&script);
    }
}

impl Drop for MariaDbCluster {
    fn drop(&mut self) {
        let servers = self.servers.get_mut().unwrap_or_else(|e| e.into_inner());
        for child in servers.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A `mariadb` client command for 127.0.0.1:`port`; `sql` goes in with `-e`.
fn client_cmd(
    port: u16,
    user: &str,
    password: &str,
    db: &str,
    format: &[&str],
    sql: &str,
) -> Command {
    let mut cmd = Command::new(MARIADB_CLIENT);
    cmd.arg("--no-defaults")
        .args(format)
        .args(["-h127.0.0.1", "--connect-timeout=10"])
        .arg(format!("-P{port}"))
        .arg(format!("-u{user}"))
        .arg(format!("--password={password}"));
    if !db.is_empty() {
        cmd.arg(format!("-D{db}"));
    }
    cmd.arg("-e").arg(sql).stdin(Stdio::null());
    cmd
}

/// Stdout (without the trailing newline) of a client run, or its stderr as the error.
fn client_output(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot spawn {MARIADB_CLIENT}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout)
            .trim_end_matches('\n')
            .to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim_end().to_string())
    }
}

/// First row of `mariadb -B` output (header line + tab-separated rows) keyed by column name.
pub fn parse_first_row(out: &str) -> HashMap<String, String> {
    let mut lines = out.lines();
    match (lines.next(), lines.next()) {
        (Some(header), Some(row)) => header
            .split('\t')
            .zip(row.split('\t'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        _ => HashMap::new(),
    }
}

fn show_status(status: &HashMap<String, String>) -> String {
    let mut keys: Vec<&String> = status.keys().collect();
    keys.sort();
    keys.iter()
        .map(|k| format!("{k}: {}", status[*k]))
        .collect::<Vec<_>>()
        .join("\n")
}

fn check_replica(i: usize) -> usize {
    assert!(i < 2, "replica index {i} out of range (0 or 1)");
    i
}
