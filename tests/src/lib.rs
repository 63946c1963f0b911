//! Harness for end-to-end tests: runs the real `collector` binary (built by
//! `make build`) on a config of the test's own, with UDP and the admin endpoint
//! on ephemeral ports of 127.0.0.1, and reads back what its dispatchers wrote and
//! what it reports where operators look: systemd's notify socket (ready, and
//! where it listens), `/status`, `/metrics` and the shutdown summary.

pub mod amqp;
pub mod backends;
pub mod http;
pub mod rabbit;

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The daemon binary (`COLLECTOR_BIN`, or the debug build); fails clearly when missing.
pub fn binary() -> PathBuf {
    let p = std::env::var_os("COLLECTOR_BIN")
        .map_or_else(|| root().join("target/debug/collector"), PathBuf::from);
    assert!(
        p.exists(),
        "{} is missing: run `make build` (or `make test`) first",
        p.display()
    );
    p
}

/// `[[dispatchers.endpoints]]` lines: `name` at `url`, with `extra` settings.
pub fn endpoint(name: &str, url: &str, extra: &str) -> String {
    format!("[[dispatchers.endpoints]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n")
}

/// A plugin built by `make plugins`.
pub fn plugin(file: &str) -> String {
    let p = root().join("target/plugins").join(file);
    assert!(
        p.exists(),
        "{} is missing: run `make plugins` (or `make test`) first",
        p.display()
    );
    p.display().to_string()
}

/// A daemon config for a test, built section by section: the one way tests
/// write their TOML.
///
/// ```
/// let toml = collector_e2e::ConfigBuilder::new("secret")
///     .batch("max_samples = 10")
///     .udp("")
///     .file_dispatcher()
///     .build();
/// assert!(toml.contains("[sources.udp]"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ConfigBuilder {
    secret: String,
    /// `[section]` → its lines, in the order first named.
    sections: Vec<(String, Vec<String>)>,
    dispatchers: Vec<String>,
    raw: String,
}

impl ConfigBuilder {
    /// A config whose agents sign with `secret`.
    pub fn new(secret: &str) -> ConfigBuilder {
        ConfigBuilder {
            secret: secret.to_owned(),
            ..ConfigBuilder::default()
        }
    }

    /// UDP on an ephemeral port into the file dispatcher (`out/samples.jsonl`),
    /// batched by `batch`: the most common test daemon.
    pub fn udp_to_file(secret: &str, batch: &str) -> ConfigBuilder {
        ConfigBuilder::new(secret)
            .batch(batch)
            .udp("")
            .file_dispatcher()
    }

    /// Adds `lines` (`key = value`, newline-separated) to `[name]`.
    pub fn section(mut self, name: &str, lines: &str) -> ConfigBuilder {
        let lines = lines
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned);
        match self.sections.iter_mut().find(|(n, _)| n == name) {
            Some((_, have)) => have.extend(lines),
            None => self.sections.push((name.to_owned(), lines.collect())),
        }
        self
    }

    /// `[batch]` settings.
    pub fn batch(self, lines: &str) -> ConfigBuilder {
        self.section("batch", lines)
    }

    /// The UDP source on an ephemeral port of 127.0.0.1, with `extra` settings.
    pub fn udp(self, extra: &str) -> ConfigBuilder {
        self.section(
            "sources.udp",
            &format!("address = \"127.0.0.1:0\"\n{extra}"),
        )
    }

    /// The TCP source on an ephemeral port of 127.0.0.1, with `extra` settings.
    pub fn tcp(self, extra: &str) -> ConfigBuilder {
        self.section(
            "sources.tcp",
            &format!("address = \"127.0.0.1:0\"\n{extra}"),
        )
    }

    /// The HTTP source on an ephemeral port of 127.0.0.1, with `extra` settings.
    pub fn http(self, extra: &str) -> ConfigBuilder {
        self.section(
            "sources.http",
            &format!("address = \"127.0.0.1:0\"\n{extra}"),
        )
    }

    /// The AMQP source on `url`, with `extra` settings.
    pub fn amqp(self, url: &str, extra: &str) -> ConfigBuilder {
        self.section("sources.amqp", &format!("url = \"{url}\"\n{extra}"))
    }

    /// The admin endpoint on `address`, with `extra` settings.
    pub fn admin(self, address: &str, extra: &str) -> ConfigBuilder {
        self.section("admin", &format!("address = \"{address}\"\n{extra}"))
    }

    /// A dispatcher: its `settings` lines, and its plugin's `config` table lines.
    pub fn dispatcher(
        mut self,
        name: &str,
        plugin: &str,
        settings: &str,
        config: &str,
    ) -> ConfigBuilder {
        self.dispatchers.push(format!(
            "[[dispatchers]]\nname = \"{name}\"\nplugin = \"{plugin}\"\n{settings}\n[dispatchers.config]\n{config}\n"
        ));
        self
    }

    /// The file dispatcher `name`, writing `out/FILE` in the test's directory.
    pub fn file_to(self, name: &str, file: &str) -> ConfigBuilder {
        self.dispatcher(
            name,
            &plugin("file.wasm"),
            "dirs = [{ host = \"out\", guest = \"/data\", writable = true }]",
            &format!("path = \"/data/{file}\""),
        )
    }

    /// The file dispatcher `file`, writing `out/samples.jsonl`.
    pub fn file_dispatcher(self) -> ConfigBuilder {
        self.file_to("file", "samples.jsonl")
    }

    /// TOML text appended as it is, after everything else.
    pub fn raw(mut self, text: &str) -> ConfigBuilder {
        self.raw.push_str(text);
        self.raw.push('\n');
        self
    }

    /// The TOML text. Without an `[admin]` section, the admin endpoint listens
    /// on an ephemeral port of 127.0.0.1 (the test reads it from `/status`).
    pub fn build(&self) -> String {
        let mut out = format!("telemetry_secret = \"{}\"\n", self.secret);
        let mut sections = self.sections.clone();
        if !sections.iter().any(|(n, _)| n == "admin") {
            sections.push(("admin".into(), vec!["address = \"127.0.0.1:0\"".into()]));
        }
        for (name, lines) in &sections {
            out.push_str(&format!("[{name}]\n"));
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
        }
        for d in &self.dispatchers {
            out.push_str(d);
        }
        out.push_str(&self.raw);
        out
    }
}

/// A config with the UDP source on an ephemeral port and the file dispatcher
/// writing `out/samples.jsonl` in the test's directory; append more dispatchers.
pub fn udp_to_file_config(secret: &str, batch: &str) -> String {
    ConfigBuilder::udp_to_file(secret, batch).build()
}

/// Ceilometer's captured fixtures, kept in the repository (`tests/fixtures/ceilometer`).
pub fn fixtures() -> PathBuf {
    let p = root().join("tests/fixtures/ceilometer");
    assert!(p.exists(), "fixtures not found at {}", p.display());
    p
}

/// Runs `collector` with arguments and returns (status, stdout, stderr).
pub fn collector(args: &[&str], cwd: &Path) -> (ExitStatus, String, String) {
    let out = Command::new(binary())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run collector");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What else a test daemon runs with.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// `RLIMIT_NOFILE` (soft and hard) for the daemon.
    pub nofile: Option<u64>,
}

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    log_path: PathBuf,
    pub udp: Option<SocketAddr>,
    /// Its TCP and HTTP inputs, as its systemd status says.
    pub tcp: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    /// Its admin endpoint, as its systemd status says.
    pub admin: Option<SocketAddr>,
    notify: Notifications,
}

/// What the daemon sent to its notify socket (`NOTIFY_SOCKET`, as systemd's
/// `Type=notify` gives it): `READY=1`, `STATUS=receiving: udp …, admin …`.
#[derive(Clone)]
struct Notifications {
    messages: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Notifications {
    /// Listens on `path` until dropped by its daemon.
    fn listen(path: &Path) -> Notifications {
        let sock = UnixDatagram::bind(path).expect("bind the notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("notify socket timeout");
        let n = Notifications {
            messages: Arc::default(),
            stop: Arc::default(),
        };
        let m = n.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !m.stop.load(Ordering::Relaxed) {
                if let Ok(len) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..len]).into_owned();
                    m.messages.lock().expect("notify lock").push(text);
                }
            }
        });
        n
    }

    fn all(&self) -> Vec<String> {
        self.messages.lock().expect("notify lock").clone()
    }

    /// Times the daemon said `READY=1`.
    fn readies(&self) -> usize {
        self.all()
            .iter()
            .filter(|m| m.lines().any(|l| l == "READY=1"))
            .count()
    }

    /// The last `STATUS=` line.
    fn status(&self) -> Option<String> {
        self.all().iter().rev().find_map(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("STATUS="))
                .map(str::to_owned)
        })
    }
}

/// The address after `what ` in a status line `receiving: udp A, admin B`.
fn listening(status: &str, what: &str) -> Option<SocketAddr> {
    let list = status.strip_prefix("receiving: ")?;
    list.split(", ")
        .find_map(|p| p.strip_prefix(what)?.strip_prefix(' ')?.parse().ok())
}

/// What a stopped daemon left.
pub struct Stopped {
    pub status: ExitStatus,
    pub log: String,
    pub dir: tempfile::TempDir,
}

impl Stopped {
    /// A figure of the shutdown summary, under its `/status` and `/metrics` name:
    /// `scope` is `source=udp`, `dispatcher=file` or `daemon`.
    pub fn summary(&self, scope: &str, key: &str) -> u64 {
        let marker = format!("Shutdown summary {scope} ");
        self.log
            .lines()
            .rfind(|l| l.contains(&marker))
            .and_then(|l| field(l, key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no {key} for {scope} in the shutdown summary of:\n{}",
                    self.log
                )
            })
    }

    /// A source's figure in the shutdown summary.
    pub fn source(&self, name: &str, key: &str) -> u64 {
        self.summary(&format!("source={name}"), key)
    }

    /// A dispatcher's figure in the shutdown summary.
    pub fn dispatcher(&self, name: &str, key: &str) -> u64 {
        self.summary(&format!("dispatcher={name}"), key)
    }

    /// One of the daemon's own figures in the shutdown summary.
    pub fn daemon(&self, key: &str) -> u64 {
        self.summary("daemon", key)
    }
}

impl Daemon {
    /// Starts `collector run --config` with `toml` (write `{DIR}` for the test's
    /// directory) and waits until it says it is ready.
    pub fn start(toml: &str) -> Daemon {
        Self::start_with(toml, &Options::default())
    }

    /// Like [`Daemon::start`], with extra environment or limits.
    pub fn start_with(toml: &str, opts: &Options) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("collector.toml");
        std::fs::write(
            &cfg,
            toml.replace("{DIR}", &dir.path().display().to_string()),
        )
        .expect("write config");
        let args = [
            "run".to_string(),
            "--config".into(),
            cfg.display().to_string(),
        ];
        Self::spawn(dir, &args, opts)
    }

    /// Starts `collector run` with no config, in a fresh directory.
    pub fn start_default() -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::spawn(dir, &["run".to_string()], &Options::default())
    }

    fn spawn(dir: tempfile::TempDir, args: &[String], opts: &Options) -> Daemon {
        use std::os::unix::process::CommandExt;
        let log_path = dir.path().join("collector.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let notify_path = dir.path().join("notify.sock");
        let notify = Notifications::listen(&notify_path);
        let mut cmd = Command::new(binary());
        cmd.args(args)
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .env("NOTIFY_SOCKET", &notify_path)
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(n) = opts.nofile {
            // SAFETY: setrlimit is async-signal-safe; it runs in the child before exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("spawn collector");
        let mut d = Daemon {
            child: Some(child),
            dir,
            log_path,
            udp: None,
            tcp: None,
            http: None,
            admin: None,
            notify,
        };
        d.wait_ready(1);
        d
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until the daemon said `READY=1` for the `n`th time (1: started; then
    /// once per config reload), and takes where it listens from its status.
    fn wait_ready(&mut self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if self.notify.readies() >= n {
                let status = self.notify.status().unwrap_or_default();
                self.udp = listening(&status, "udp");
                self.tcp = listening(&status, "tcp");
                self.http = listening(&status, "http");
                self.admin = listening(&status, "admin");
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "collector exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "collector not ready after 120 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The admin endpoint's address, as `host:port`.
    pub fn admin_addr(&self) -> String {
        self.admin
            .expect("the daemon has no admin endpoint (its config sets none)")
            .to_string()
    }

    /// `GET /status`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let (code, body) = http_get(&self.admin_addr(), "/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("status JSON")
    }

    /// `GET /metrics`.
    pub fn metrics(&self) -> String {
        http_get(&self.admin_addr(), "/metrics").1
    }

    /// Polls `/status` until `done` holds of it (panics after `timeout`, showing
    /// the last status and the log); returns that status.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.status();
            if done(&st) {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}; /status: {st}\nlog:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the daemon's own figure `key` (`/status` `daemon`) reaches `n`.
    pub fn wait_daemon_count(&self, key: &str, n: u64, timeout: Duration) {
        self.wait_status(&format!("{key} >= {n}"), timeout, |st| {
            st["daemon"][key].as_u64().unwrap_or(0) >= n
        });
    }

    /// Waits until every configured source is connected and the daemon is ready
    /// (`/readyz` answers 200: for AMQP, every consumer runs).
    pub fn wait_readyz(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let (code, body) = http_get(&self.admin_addr(), "/readyz");
            if code == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not ready within {timeout:?}: {body}\nlog:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the daemon applied `applied` config reloads and refused
    /// `refused` (`/status` `daemon`), and takes the UDP address from that status
    /// (a reload that restarts the sources may bind a new one).
    pub fn wait_config_reloads(&mut self, applied: u64, refused: u64, timeout: Duration) {
        let st = self.wait_status(
            &format!("{applied} config reloads applied, {refused} refused"),
            timeout,
            |st| {
                st["daemon"]["config_reloads_applied"].as_u64() >= Some(applied)
                    && st["daemon"]["config_reloads_refused"].as_u64() >= Some(refused)
            },
        );
        self.udp = st["sources"]["udp"]["address"]
            .as_str()
            .and_then(|a| a.parse().ok());
    }

    /// The TCP address the daemon listens on.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp.expect("the daemon has a TCP source")
    }

    /// The HTTP input's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.expect("the daemon has an HTTP source")
    }

    /// The daemon's resident memory now, in bytes (VmRSS).
    pub fn rss_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// The UDP address the daemon listens on.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp.expect("the daemon has a UDP source")
    }

    /// Sends each datagram, pausing a little every 50 so the socket buffer never overflows.
    pub fn send_udp(&self, datagrams: &[Vec<u8>]) {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
        for (i, d) in datagrams.iter().enumerate() {
            sock.send_to(d, self.udp_addr()).expect("send datagram");
            if i % 50 == 49 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }

    /// Sends `datagrams` in groups of 20, 120 ms apart, so batches are cut by count
    /// and by time alike, then waits until the file dispatcher's `out/samples.jsonl`
    /// has one line per datagram and asserts it has them all.
    pub fn send_udp_in_groups_to_file(&self, datagrams: &[Vec<u8>]) -> Vec<String> {
        for chunk in datagrams.chunks(20) {
            self.send_udp(chunk);
            std::thread::sleep(Duration::from_millis(120));
        }
        let n = datagrams.len();
        let lines = self.wait_lines("out/samples.jsonl", n, Duration::from_secs(60));
        assert_eq!(
            lines.len(),
            n,
            "the file dispatcher lost samples:\n{}",
            self.log()
        );
        lines
    }

    /// Path inside the test's directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Waits until `rel` has at least `n` lines; returns them.
    pub fn wait_lines(&self, rel: &str, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = read_lines(&self.path(rel));
            if lines.len() >= n || Instant::now() >= deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The config file the daemon was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("collector.toml")
    }

    /// Rewrites the config file (`{DIR}` is the test's directory).
    pub fn write_config(&self, toml: &str) {
        let tmp = self.dir.path().join("collector.toml.new");
        std::fs::write(
            &tmp,
            toml.replace("{DIR}", &self.dir.path().display().to_string()),
        )
        .expect("write config");
        std::fs::rename(&tmp, self.config_path()).expect("replace config");
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, sig: libc::c_int) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as libc::pid_t, sig) };
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL: the daemon dies at once, with whatever it had in flight.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// File descriptors the daemon holds now (from /proc).
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, Iterator::count)
    }

    /// SIGTERM, then waits for the exit (at most 60 s).
    pub fn stop(mut self) -> Stopped {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Ok(Some(s)) = child.try_wait() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "collector did not exit within 60 s of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut log = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut log);
        }
        let dir = tempfile::tempdir().expect("placeholder");
        let dir = std::mem::replace(&mut self.dir, dir);
        Stopped { status, log, dir }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.notify.stop.store(true, Ordering::Relaxed);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `GET path`, or why it could not be had (for polling a server that starts).
pub fn try_http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let admin = addr
        .parse()
        .map_err(|e| format!("{addr} is not an address: {e}"))?;
    collector::cli::status::http_get(admin, path)
}

/// An HTTP client for the tests' servers: any status is an answer, 30 s at most.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// `POST path` with a form body: (status code, body).
pub fn http_post(addr: &str, path: &str, form: &str) -> (u16, String) {
    let mut answer = agent()
        .post(format!("http://{addr}{path}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(form)
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let code = answer.status().as_u16();
    let body = answer.body_mut().read_to_string().unwrap_or_default();
    (code, body)
}

/// Sends `grams` to `to` on a thread at about 1,000 per second (10 every
/// 10 ms), until all are sent or `stop` is set; the thread returns how many it sent.
pub fn udp_load(
    to: SocketAddr,
    grams: Vec<Vec<u8>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut sent = 0;
        for chunk in grams.chunks(10) {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            for g in chunk {
                sock.send_to(g, to).expect("send");
            }
            sent += chunk.len();
            std::thread::sleep(Duration::from_millis(10));
        }
        sent
    })
}

/// `n` signed realistic datagrams (seed `seed`); those at the indexes in
/// `poison` carry the meter `poison`, which the misbehaving fixtures act on.
pub fn poisoned_datagrams(n: u64, seed: u64, secret: &[u8], poison: &[u64]) -> Vec<Vec<u8>> {
    use collector::cli::samples::{Rng, realistic};
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let mut s = realistic(i, &mut rng, secret);
            if poison.contains(&i) {
                s.counter_name = "poison".into();
                s.message_signature = Some(collector::signature::compute(&s, secret));
            }
            let mut out = Vec::new();
            collector::wire::msgpack::encode_sample(&s, &mut out);
            out
        })
        .collect()
}

/// Percent-encodes a query value.
pub use collector_sdk::http::query_value as urlencode;

/// Real Ceilometer (27.0.0, `.venv-ceilometer`) publishes `count` samples with
/// its own `udp://` publisher to `udp`, first timestamp `start` (`now`: ending
/// now); returns the sample dicts it sent, as it built them.
pub fn ceilometer_udp(
    udp: SocketAddr,
    secret: &str,
    count: usize,
    start: &str,
    seed: u64,
) -> Vec<serde_json::Value> {
    ceilometer_publish(
        &["--publisher", "udp", "--udp-address", &udp.to_string()],
        secret,
        count,
        start,
        seed,
    )
}

/// The same with its `notifier://` publisher (oslo.messaging notifications
/// on `metering.sample`, 10 samples each) to the broker at `oslo_url`.
pub fn ceilometer_notifier(
    oslo_url: &str,
    secret: &str,
    count: usize,
    start: &str,
    seed: u64,
) -> Vec<serde_json::Value> {
    ceilometer_publish(
        &["--publisher", "notifier", "--transport-url", oslo_url],
        secret,
        count,
        start,
        seed,
    )
}

/// What real Ceilometer's publisher for a URL sent.
pub struct Published {
    /// The meter messages it built (`tcp://`), as built.
    pub messages: Vec<serde_json::Value>,
    /// The bodies it posted (`http://`, `opentelemetryhttp://`), as posted.
    pub posted: Vec<serde_json::Value>,
    /// The samples handed to it (`Sample.as_dict()`).
    pub samples: Vec<serde_json::Value>,
    /// Its exit status: 0 when it logged no failure.
    pub ok: bool,
}

/// Real Ceilometer (27.0.0) publishes `count` samples, `batch` per
/// `publish_samples` call, with the publisher of `url` as pipeline.yaml names
/// it, with `env` set for it (`TZ`, ...).
pub fn ceilometer_url(
    url: &str,
    secret: &str,
    count: usize,
    batch: usize,
    seed: u64,
    env: &[(&str, &str)],
) -> Published {
    let python = venv_python();
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let posted = tempfile::NamedTempFile::new().expect("temp file");
    let samples = tempfile::NamedTempFile::new().expect("temp file");
    let status = Command::new(&python)
        .arg(root().join("scripts/ceilometer-publish.py"))
        .args([
            "--publisher",
            "url",
            "--url",
            url,
            "--secret",
            secret,
            "--count",
        ])
        .arg(count.to_string())
        .arg("--batch")
        .arg(batch.to_string())
        .arg("--seed")
        .arg(seed.to_string())
        .arg("--out")
        .arg(out.path())
        .arg("--posted")
        .arg(posted.path())
        .arg("--samples")
        .arg(samples.path())
        .envs(env.iter().copied())
        .status()
        .expect("run ceilometer-publish.py");
    let json = |p: &Path| -> Vec<serde_json::Value> {
        read_lines(p)
            .iter()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect()
    };
    Published {
        messages: json(out.path()),
        posted: json(posted.path()),
        samples: json(samples.path()),
        ok: status.success(),
    }
}

/// How many of the sample dicts in `lines` Ceilometer's own
/// `ceilometer.publisher.utils.verify_signature` accepts with `secret`.
pub fn ceilometer_verified(lines: &[String], secret: &str) -> usize {
    let input = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(input.path(), lines.join("\n")).expect("write samples");
    let out = Command::new(venv_python())
        .args([
            "-c",
            "import json, sys\n\
             from ceilometer.publisher import utils\n\
             ok = sum(utils.verify_signature(json.loads(l), sys.argv[2]) \
                      for l in open(sys.argv[1], encoding='utf-8') if l.strip())\n\
             print(ok)",
        ])
        .arg(input.path())
        .arg(secret)
        .output()
        .expect("run verify_signature");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a count")
}

fn venv_python() -> PathBuf {
    let python = root().join(".venv-ceilometer/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make test-deps` (scripts/ceilometer-venv.sh)",
        python.display()
    );
    python
}

fn ceilometer_publish(
    publisher: &[&str],
    secret: &str,
    count: usize,
    start: &str,
    seed: u64,
) -> Vec<serde_json::Value> {
    let python = venv_python();
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let status = Command::new(&python)
        .arg(root().join("scripts/ceilometer-publish.py"))
        .args(publisher)
        .args(["--secret", secret, "--count"])
        .arg(count.to_string())
        .args(["--batch", "10", "--start", start, "--seed"])
        .arg(seed.to_string())
        .arg("--out")
        .arg(out.path())
        .status()
        .expect("run ceilometer-publish.py");
    assert!(status.success(), "ceilometer-publish.py failed");
    read_lines(out.path())
        .iter()
        .map(|l| serde_json::from_str(l).expect("a published sample"))
        .collect()
}

/// The entry of dispatcher `name` in a `/status` document.
pub fn dispatcher_of(status: &serde_json::Value, name: &str) -> serde_json::Value {
    status["dispatchers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no dispatcher `{name}` in {status}"))
}

/// `GET path` from an HTTP endpoint: (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let admin = addr
        .parse()
        .unwrap_or_else(|e| panic!("{addr} is not an address: {e}"));
    collector::cli::status::http_get(admin, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// The value of a Prometheus sample line `name{labels} value` (labels as written).
pub fn metric(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no {series} in:\n{body}"))
}

/// A progress bar on stderr for long benchmark steps (drawn only on a terminal).
pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg:>24} {bar:40} {pos}/{len} {elapsed}")
    {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The `message_id` of each JSON line.
pub fn message_ids(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            v["message_id"].as_str().expect("message_id").to_owned()
        })
        .collect()
}

/// The complete lines of a file (none if it does not exist yet). Tests poll
/// files a daemon is appending to: a last line without its newline is still
/// being written, and is left out.
pub fn read_lines(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let complete = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(&[][..], |end| &bytes[..=end]);
    String::from_utf8_lossy(complete)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The value of `key=value` in a log line (values end at a space).
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("{key}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(pat.as_str()))
        .map(|v| v.trim_matches('"'))
}

/// A number from the last log line containing `marker`, for benchmarks' figures
/// (e.g. `active_ms` of "UDP source stopped"); tests read counters from the
/// shutdown summary ([`Stopped::summary`]) or `/status`.
pub fn stat(log: &str, marker: &str, key: &str) -> u64 {
    log.lines()
        .rfind(|l| l.contains(marker))
        .and_then(|l| field(l, key))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in a `{marker}` line of:\n{log}"))
}

/// Asserts what a plugin replaced under load must show, from its output lines as
/// `(message_id, running count, version)`: each of `ids` exactly once and nothing
/// else, the count carried across versions (line i says i), versions never going
/// back, and `last_version` serving last.
pub fn assert_handed_off(lines: &[(&str, u64, u32)], ids: &[String], last_version: u32) {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (id, _, _) in lines {
        *seen.entry(id).or_default() += 1;
    }
    for id in ids {
        assert_eq!(
            seen.get(id.as_str()),
            Some(&1),
            "sample {id} not dispatched exactly once"
        );
    }
    assert_eq!(lines.len(), ids.len(), "no samples beyond those sent");
    for (i, (_, n, _)) in lines.iter().enumerate() {
        assert_eq!(
            *n,
            i as u64 + 1,
            "the count was carried across versions at line {}",
            i + 1
        );
    }
    assert!(
        lines.windows(2).all(|w| w[0].2 <= w[1].2),
        "a version served after its successor"
    );
    assert_eq!(
        lines.last().map(|l| l.2),
        Some(last_version),
        "the last version served last"
    );
}

/// Runs `collector check` on `path` and asserts it fails with a FAIL line that names
/// `fault`; returns its output.
pub fn assert_check_fails(path: &Path, fault: &str) -> String {
    let (status, out, _) = collector(&["check", &path.display().to_string()], &root());
    assert!(!status.success(), "{out}");
    assert!(out.contains("FAIL") && out.contains(fault), "{out}");
    out
}

/// The Python example (`py-file.wasm`) with its version tag, the constant
/// `py-version:000000000` in the built component, set to `v`: a new version of
/// the same plugin, told apart in its output lines.
pub fn py_file_version(v: u32) -> Vec<u8> {
    const MARKER: &[u8] = b"py-version:000000000";
    let mut wasm = std::fs::read(plugin("py-file.wasm")).expect("py-file.wasm");
    let at = wasm
        .windows(MARKER.len())
        .position(|w| w == MARKER)
        .expect("version marker in py-file.wasm");
    wasm[at..at + MARKER.len()].copy_from_slice(format!("py-version:{v:09}").as_bytes());
    wasm
}
