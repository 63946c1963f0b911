//! A private RabbitMQ node per test, from the Debian package (`make rabbitmq`
//! or `scripts/install-test-deps.sh` installs it).
//!
//! Each [`Broker`] is a node of its own: its own node name
//! (`collector-test-<pid>-<n>@localhost`), AMQP port and distribution port on
//! 127.0.0.1, and its own directory (Mnesia, logs, PID file, plugins file,
//! empty config files, `rabbitmq-env.conf`, Erlang cookie) under a temporary
//! directory. Nothing is read from or written to `/etc/rabbitmq`,
//! `/var/lib/rabbitmq` or `/var/log/rabbitmq`, so several brokers and the
//! machine's default `rabbit@<host>` node never meet. Only epmd (port 4369) is
//! shared, as Erlang intends; it outlives the brokers.
//!
//! How the node is run: the package's wrappers in `/usr/sbin` `cd` into
//! `/var/lib/rabbitmq`, `su` to the `rabbitmq` user (which resets `HOME`, and
//! with it the Erlang cookie, to the machine's) and send the server's output
//! to the shared `/var/log/rabbitmq/startup_log`. So this harness runs the
//! real scripts of `/usr/lib/rabbitmq/bin` itself, in the foreground as a child
//! process, as user `rabbitmq` when the tests run as root (as themselves
//! otherwise), with `HOME` set to the temporary directory that holds a
//! private `.erlang.cookie`. `rabbitmqctl` runs the same way, so it always has
//! the node's cookie.
//!
//! Drop stops the node, kills what is left of it and removes its directory.
//! A test process killed before its Drop ran leaves its nodes running: the
//! next `Broker::start()` of any test process ends them and removes their
//! directories (the PID in `owner.pid` tells that their owner is gone).
//!
//! [`Cluster`] joins several such nodes into one RabbitMQ cluster
//! (`rabbitmqctl join_cluster`), as production OpenStack runs it: they share
//! one Erlang cookie, and each can be SIGKILLed ([`Broker::kill`]) and started
//! again ([`Broker::restart`]), when it rejoins the others by itself.
//!
//! Set `COLLECTOR_RABBITMQ_BIN` to use another directory than
//! `/usr/lib/rabbitmq/bin`, and `COLLECTOR_RABBITMQ_START_TIMEOUT` (seconds,
//! default 60) on a very slow machine.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const DEFAULT_BIN_DIR: &str = "/usr/lib/rabbitmq/bin";
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);
const CTL_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const INSTALL_HINT: &str = "run `make rabbitmq` (or `scripts/install-test-deps.sh`) to install the Debian rabbitmq-server package";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Ports handed out by this process, so that two brokers started at the same
/// time never get the same one.
fn taken_ports() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// How to start a node; [`Broker::start`] takes the defaults.
#[derive(Default)]
pub struct NodeOptions<'a> {
    /// The Erlang cookie (the nodes of a cluster share one); random by default.
    pub cookie: Option<String>,
    /// A TLS listener from the first start, as [`Broker::enable_tls_cert`] adds
    /// one with `server.pem`.
    pub tls: Option<&'a crate::http::Tls>,
}

/// A private RabbitMQ node. Stopped, and its directory removed, on drop.
pub struct Broker {
    node: String,
    port: u16,
    dist_port: u16,
    /// The TLS listener's port (0: none).
    tls_port: std::sync::atomic::AtomicU16,
    bin: PathBuf,
    /// uid and gid to run the node and the CLI as (`rabbitmq` when root).
    user: Option<(u32, u32)>,
    /// The `rabbitmq-server` script (its process group holds the VM).
    server: Mutex<Option<Child>>,
    dir: tempfile::TempDir,
}

/// What one `rabbitmqctl` run gave.
struct CtlOutput {
    ok: bool,
    status: String,
    stdout: String,
    stderr: String,
}

impl Broker {
    /// Starts a private RabbitMQ node and waits until `rabbitmqctl await_startup`
    /// answers (60 s at most). Panics with the tail of the node's output and
    /// log if rabbitmq-server is not installed or does not start.
    pub fn start() -> Broker {
        Broker::start_with(NodeOptions::default())
    }

    /// [`Broker::start`] with a shared cookie or a TLS listener.
    pub fn start_with(options: NodeOptions<'_>) -> Broker {
        let bin = std::env::var_os("COLLECTOR_RABBITMQ_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_BIN_DIR));
        for script in ["rabbitmq-server", "rabbitmqctl"] {
            let p = bin.join(script);
            assert!(
                p.exists(),
                "rabbitmq-server is not installed ({} is missing): {INSTALL_HINT}",
                p.display()
            );
        }
        assert!(
            find_in_path("erl").is_some(),
            "`erl` (Erlang) is not in PATH, so rabbitmq-server cannot run: {INSTALL_HINT}"
        );

        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let user = if root {
            Some(lookup_user("rabbitmq").unwrap_or_else(|| {
                panic!("running as root but there is no `rabbitmq` user: {INSTALL_HINT}")
            }))
        } else {
            None
        };

        // The node runs as `rabbitmq`, which must reach its directory: under
        // root's own TMPDIR (say /root/tmp) it could not, so use /tmp there.
        let parent = if root {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        sweep_stale_brokers(&parent);
        let dir = tempfile::Builder::new()
            .prefix("collector-rabbit-")
            .tempdir_in(&parent)
            .expect("cannot create a temporary directory for the broker");

        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let node = format!("collector-test-{}-{n}@localhost", std::process::id());
        let cookie = options.cookie.unwrap_or_else(random_cookie);
        write_node_files(dir.path(), user, &cookie);

        let mut broker = Broker {
            node,
            port: 0,
            dist_port: 0,
            tls_port: 0.into(),
            bin,
            user,
            server: Mutex::new(None),
            dir,
        };

        let started = Instant::now();
        // A port found free can be taken by someone else before the node binds
        // it; then the node dies at once, and we try again with new ports.
        let mut attempt = 0;
        loop {
            attempt += 1;
            broker.port = free_port();
            broker.dist_port = free_port();
            if let Some(tls) = options.tls {
                broker.tls_port.store(0, Ordering::SeqCst);
                broker.write_tls_config(tls, "server.pem");
            }
            match broker.launch_and_wait() {
                Ok(()) => break,
                Err(e) if attempt < 3 && e.port_in_use => {
                    eprintln!(
                        "rabbit: {}: port {} or {} was taken, retrying with others",
                        broker.node, broker.port, broker.dist_port
                    );
                    broker.kill_leftovers();
                }
                Err(e) => {
                    let tail = broker.log_tail(60);
                    broker.kill_leftovers();
                    panic!(
                        "RabbitMQ node {} did not start: {}\n\
                         (rabbitmq-server from {}; if it is missing or broken, {INSTALL_HINT})\n\
                         --- tail of the node's output and log ---\n{tail}",
                        broker.node,
                        e.message,
                        broker.bin.display()
                    );
                }
            }
        }
        eprintln!(
            "rabbit: node {} ready on 127.0.0.1:{} after {:.1} s",
            broker.node,
            broker.port,
            started.elapsed().as_secs_f64()
        );
        broker
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f` (vhost `/`).
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The same broker as oslo.messaging wants it (`transport_url`):
    /// `rabbit://guest:guest@127.0.0.1:PORT/`.
    pub fn oslo_url(&self) -> String {
        format!("rabbit://guest:guest@127.0.0.1:{}/", self.port)
    }

    /// The AMQP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Erlang node name, `collector-test-<pid>-<n>@localhost`.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The broker's own directory (Mnesia, logs, config files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `rabbitmqctl stop`, then waits until the node's process has exited.
    /// Does nothing if it is not running.
    pub fn stop(&self) {
        if let Err(e) = self.stop_inner() {
            panic!(
                "{e}\n--- tail of the node's output and log ---\n{}",
                self.log_tail(40)
            );
        }
    }

    /// Gives the node a TLS listener (on the port it had, or a free one) with
    /// `cert` of `tls` for the server's key (`server.pem`, `server-expired.pem`)
    /// and its CA, a client certificate required, and restarts the node to
    /// open it; returns the port. The plain listener stays.
    pub fn enable_tls_cert(&self, tls: &crate::http::Tls, cert: &str) -> u16 {
        let port = self.write_tls_config(tls, cert);
        self.restart();
        port
    }

    /// The TLS listener's port, if it has one.
    pub fn tls_port(&self) -> Option<u16> {
        match self.tls_port.load(Ordering::SeqCst) {
            0 => None,
            p => Some(p),
        }
    }

    /// Writes `rabbitmq.conf` with a TLS listener (the port it had, or a free
    /// one) whose certificate is `cert` of `tls`; read at the next start.
    fn write_tls_config(&self, tls: &crate::http::Tls, cert: &str) -> u16 {
        let d = self.dir.path();
        for (from, to) in [
            ("ca.pem", "ca.pem"),
            (cert, "server.pem"),
            ("server.key", "server.key"),
        ] {
            let to = d.join(format!("tls-{to}"));
            fs::copy(tls.path(from), &to).unwrap_or_else(|e| panic!("copy {from}: {e}"));
            if let Some((uid, gid)) = self.user {
                chown(&to, uid, gid);
            }
        }
        let port = self.tls_port().unwrap_or_else(free_port);
        self.tls_port.store(port, Ordering::SeqCst);
        let conf = format!(
            "listeners.ssl.default = 127.0.0.1:{port}\n\
             ssl_options.cacertfile = {ca}\n\
             ssl_options.certfile = {cert}\n\
             ssl_options.keyfile = {key}\n\
             ssl_options.verify = verify_peer\n\
             ssl_options.fail_if_no_peer_cert = true\n",
            ca = d.join("tls-ca.pem").display(),
            cert = d.join("tls-server.pem").display(),
            key = d.join("tls-server.key").display(),
        );
        fs::write(d.join("rabbitmq.conf"), conf).expect("write rabbitmq.conf");
        port
    }

    /// SIGKILLs the node's VM and everything it started, as a host that dies
    /// would: no goodbye on its sockets' AMQP sessions, no clean cluster leave.
    /// [`Broker::restart`] starts it again.
    pub fn kill(&self) {
        self.kill_leftovers();
        eprintln!("rabbit: node {} killed", self.node);
    }

    /// SIGSTOPs (`true`) or SIGCONTs (`false`) the node's Erlang VM: frozen, it
    /// keeps its sockets open but sends nothing, like a host that hangs.
    pub fn freeze(&self, frozen: bool) {
        let pid_file = self.dir.path().join("rabbitmq.pid");
        let pid: i32 = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("no PID in {}", pid_file.display()));
        let sig = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: kill(2) with a PID the node wrote and a valid signal.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
    }

    /// Stops the node and starts it again: same name, same ports, same data.
    pub fn restart(&self) {
        self.stop();
        let started = Instant::now();
        if let Err(e) = self.launch_and_wait() {
            let tail = self.log_tail(60);
            self.kill_leftovers();
            panic!(
                "RabbitMQ node {} did not start again: {}\n--- tail of the node's output and log ---\n{tail}",
                self.node, e.message
            );
        }
        eprintln!(
            "rabbit: node {} restarted on 127.0.0.1:{} in {:.1} s",
            self.node,
            self.port,
            started.elapsed().as_secs_f64()
        );
    }

    /// Runs `rabbitmqctl -q -n NODE ARGS...` and returns its standard output.
    /// `-q` drops the "Listing queues ..." banners; table headers stay
    /// (add `--no-table-headers` to drop them). Panics if it fails.
    pub fn rabbitmqctl(&self, args: &[&str]) -> String {
        let mut full = vec!["-q", "-n", self.node.as_str()];
        full.extend_from_slice(args);
        let out = self.ctl(&full, CTL_TIMEOUT);
        assert!(
            out.ok,
            "rabbitmqctl {} failed ({}):\n{}{}",
            full.join(" "),
            out.status,
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// Every queue of vhost `/`: (name, messages_ready, messages_unacknowledged).
    pub fn queues(&self) -> Vec<(String, u64, u64)> {
        self.rabbitmqctl(&[
            "list_queues",
            "--no-table-headers",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ])
        .lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            let name = f.next()?.to_string();
            let ready = f.next()?.trim().parse().ok()?;
            let unacked = f.next()?.trim().parse().ok()?;
            Some((name, ready, unacked))
        })
        .collect()
    }

    /// The last `lines` lines of the node's console output and of its log file.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        let log = self
            .dir
            .path()
            .join("log")
            .join(format!("{}.log", self.node));
        for path in [self.dir.path().join("server.out"), log] {
            let text = fs::read(&path)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|e| format!("({e})\n"));
            let all: Vec<&str> = text.lines().collect();
            let from = all.len().saturating_sub(lines);
            out.push_str(&format!("==> {} <==\n", path.display()));
            for l in &all[from..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    // ---- internals ----

    fn server_lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.server.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Environment shared by the server and the CLI. Every inherited
    /// RABBITMQ_* variable is removed first, so that nothing of the caller's
    /// (or of /etc/rabbitmq/rabbitmq-env.conf) leaks in.
    fn command(&self, script: &str) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new(self.bin.join(script));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("RABBITMQ_") {
                cmd.env_remove(&k);
            }
        }
        let p = |rel: &str| d.join(rel).into_os_string();
        cmd.env("HOME", d)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", p("mnesia"))
            .env("RABBITMQ_LOG_BASE", p("log"))
            .env("RABBITMQ_PID_FILE", p("rabbitmq.pid"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", p("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", p("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", p("advanced.config"))
            .env("RABBITMQ_CONF_ENV_FILE", p("rabbitmq-env.conf"))
            // The CLI's own Erlang node listens on any free port instead of
            // the machine-wide 35672-35682, which parallel calls could exhaust.
            .env("RABBITMQ_CTL_DIST_PORT_MIN", "0")
            .env("RABBITMQ_CTL_DIST_PORT_MAX", "0")
            // Distribution (inter-node) port on loopback only, like AMQP.
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .env("ERL_CRASH_DUMP", p("erl_crash.dump"))
            .current_dir(d)
            .stdin(Stdio::null())
            .process_group(0);
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid)
                .gid(gid)
                .env("USER", "rabbitmq")
                .env("LOGNAME", "rabbitmq");
        }
        cmd
    }

    /// Starts the server script and waits for `await_startup`.
    fn launch_and_wait(&self) -> Result<(), StartError> {
        let out_path = self.dir.path().join("server.out");
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)
            .expect("cannot open server.out");
        let err = out.try_clone().expect("cannot dup server.out");
        let child = self
            .command("rabbitmq-server")
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| StartError::new(format!("cannot run rabbitmq-server: {e}")))?;
        *self.server_lock() = Some(child);

        let timeout = std::env::var("COLLECTOR_RABBITMQ_START_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_START_TIMEOUT);
        let deadline = Instant::now() + timeout;
        // Right after the spawn the node is not registered with epmd yet and
        // await_startup fails at once: retry until it answers.
        let mut last = String::new();
        loop {
            if let Some(status) = self.server_exited() {
                let text = fs::read_to_string(&out_path).unwrap_or_default();
                // AMQP port: `{listen_error, ..., eaddrinuse}`; distribution
                // port: "could not bind to distribution port N".
                let port_in_use = text.contains("eaddrinuse")
                    || text.contains("could not bind to distribution port");
                return Err(StartError {
                    message: format!("rabbitmq-server exited during start-up ({status})"),
                    port_in_use,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.kill_leftovers();
                return Err(StartError::new(format!(
                    "no answer to `rabbitmqctl await_startup` within {} s; last answer:\n{last}",
                    timeout.as_secs()
                )));
            }
            let secs = left.as_secs().max(1).to_string();
            let r = self.ctl(
                &["-n", &self.node, "await_startup", "--timeout", &secs],
                left + Duration::from_secs(5),
            );
            if r.ok {
                return Ok(());
            }
            last = format!("{}{}", r.stdout, r.stderr);
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The exit status if the server script has exited (None while running
    /// or when there is none).
    fn server_exited(&self) -> Option<String> {
        let mut guard = self.server_lock();
        let child = guard.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                *guard = None;
                Some(status.to_string())
            }
            Ok(None) => None,
            Err(e) => Some(format!("wait failed: {e}")),
        }
    }

    fn stop_inner(&self) -> Result<(), String> {
        let mut guard = self.server_lock();
        let Some(mut child) = guard.take() else {
            return Ok(());
        };
        let pgid = child.id() as i32;
        if child.try_wait().ok().flatten().is_none() {
            let r = self.ctl(&["-n", &self.node, "stop"], CTL_TIMEOUT);
            // `stop` returns once the node has agreed to halt; the VM exits
            // a moment later.
            let deadline = Instant::now() + STOP_TIMEOUT;
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if child.try_wait().ok().flatten().is_none() {
                signal_group(pgid, libc::SIGKILL);
                let _ = child.wait();
                return Err(format!(
                    "RabbitMQ node {} did not exit within {} s of `rabbitmqctl stop` \
                     ({}: {}{}); killed it",
                    self.node,
                    STOP_TIMEOUT.as_secs(),
                    r.status,
                    r.stdout,
                    r.stderr
                ));
            }
        }
        // Anything the script left in its group (there should be nothing).
        signal_group(pgid, libc::SIGKILL);
        Ok(())
    }

    /// Kills every process that still runs with this broker's HOME (the VM,
    /// erl_child_setup and inet_gethost, which run in sessions of their own,
    /// a hung CLI), except epmd, which other nodes share.
    fn kill_leftovers(&self) {
        if let Some(mut child) = self.server_lock().take() {
            signal_group(child.id() as i32, libc::SIGKILL);
            let _ = child.wait();
        }
        kill_processes_with_home(self.dir.path());
    }

    /// Runs `rabbitmqctl ARGS` as the node's user, killing it after `timeout`.
    fn ctl(&self, args: &[&str], timeout: Duration) -> CtlOutput {
        let child = self
            .command("rabbitmqctl")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                return CtlOutput {
                    ok: false,
                    status: "not run".into(),
                    stdout: String::new(),
                    stderr: format!("cannot run rabbitmqctl: {e}"),
                };
            }
        };
        let pgid = child.id() as i32;
        let mut so = child.stdout.take().unwrap();
        let mut se = child.stderr.take().unwrap();
        let t_out = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = so.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        });
        let t_err = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = se.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        });
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() >= deadline => {
                    signal_group(pgid, libc::SIGKILL);
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => break None,
            }
        };
        let stdout = t_out.join().unwrap_or_default();
        let stderr = t_err.join().unwrap_or_default();
        match status {
            Some(s) => CtlOutput {
                ok: s.success(),
                status: s.to_string(),
                stdout,
                stderr,
            },
            None => CtlOutput {
                ok: false,
                status: format!("killed after {} s", timeout.as_secs()),
                stdout,
                stderr,
            },
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Err(e) = self.stop_inner() {
            eprintln!("rabbit: {e}");
        }
        self.kill_leftovers();
        let ports = [
            self.port,
            self.dist_port,
            self.tls_port.load(Ordering::SeqCst),
        ];
        let mut taken = taken_ports().lock().unwrap_or_else(|e| e.into_inner());
        for p in ports {
            taken.remove(&p);
        }
        // The TempDir removes the directory after this.
    }
}

/// A RabbitMQ cluster of private nodes on loopback ports, joined with
/// `rabbitmqctl join_cluster` to the first. Each node is a [`Broker`] (kill,
/// restart, rabbitmqctl); dropping the cluster stops them all.
pub struct Cluster {
    nodes: Vec<Broker>,
}

impl Cluster {
    /// Starts `n` nodes at once (sharing one cookie, each with a TLS listener
    /// when `tls` is given), joins the others to the first, and waits until
    /// the cluster lists all `n` as running.
    pub fn start(n: usize, tls: Option<&crate::http::Tls>) -> Cluster {
        assert!(n >= 1);
        let started = Instant::now();
        let cookie = random_cookie();
        let nodes: Vec<Broker> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    let cookie = cookie.clone();
                    s.spawn(move || {
                        Broker::start_with(NodeOptions {
                            cookie: Some(cookie),
                            tls,
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        let first = nodes[0].node().to_owned();
        for node in &nodes[1..] {
            node.rabbitmqctl(&["stop_app"]);
            node.rabbitmqctl(&["join_cluster", &first]);
            node.rabbitmqctl(&["start_app"]);
        }
        let cluster = Cluster { nodes };
        cluster.wait_running(n, Duration::from_secs(60));
        eprintln!(
            "rabbit: cluster of {n} nodes ready after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        cluster
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &Broker {
        &self.nodes[i]
    }

    /// Every node, in the order they were started.
    pub fn nodes(&self) -> &[Broker] {
        &self.nodes
    }

    /// oslo's `transport_url` listing every node's AMQP port, in the order of
    /// `order` (indexes of nodes): `rabbit://guest:guest@127.0.0.1:P0,guest:guest@127.0.0.1:P1,.../`.
    pub fn oslo_url(&self, order: &[usize]) -> String {
        self.url_of(order, |b| b.port())
    }

    /// [`Cluster::oslo_url`] over the nodes' TLS listeners.
    pub fn oslo_tls_url(&self, order: &[usize]) -> String {
        self.url_of(order, |b| {
            b.tls_port().expect("the cluster has no TLS listener")
        })
    }

    fn url_of(&self, order: &[usize], port: impl Fn(&Broker) -> u16) -> String {
        let hosts: Vec<String> = order
            .iter()
            .map(|&i| format!("guest:guest@127.0.0.1:{}", port(&self.nodes[i])))
            .collect();
        format!("rabbit://{}/", hosts.join(","))
    }

    /// Which node listens on AMQP (or TLS) port `port`.
    pub fn index_of_port(&self, port: u16) -> Option<usize> {
        self.nodes
            .iter()
            .position(|b| b.port() == port || b.tls_port() == Some(port))
    }

    /// Waits until some running node lists `n` running nodes (as
    /// `rabbitmqctl cluster_status` tells); panics after `timeout`.
    pub fn wait_running(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            for b in &self.nodes {
                if b.server_lock().is_none() {
                    continue; // killed or stopped
                }
                let out = b.ctl(
                    &["-n", &b.node, "cluster_status", "--formatter", "json"],
                    Duration::from_secs(30),
                );
                if !out.ok {
                    last = format!("{}{}", out.stdout, out.stderr);
                    continue;
                }
                let running = serde_json::from_str::<serde_json::Value>(&out.stdout)
                    .ok()
                    .and_then(|v| v["running_nodes"].as_array().map(Vec::len));
                if running == Some(n) {
                    return;
                }
                last = out.stdout;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not have {n} running nodes within {} s; last answer:\n{last}",
                timeout.as_secs()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

struct StartError {
    message: String,
    port_in_use: bool,
}

impl StartError {
    fn new(message: String) -> Self {
        StartError {
            message,
            port_in_use: false,
        }
    }
}

/// The files the node reads, all private to it.
fn write_node_files(d: &Path, user: Option<(u32, u32)>, cookie_text: &str) {
    let write = |name: &str, text: &str| {
        fs::write(d.join(name), text).unwrap_or_else(|e| panic!("cannot write {name}: {e}"));
    };
    // An empty rabbitmq.conf is valid; advanced.config must be an Erlang term.
    write("rabbitmq.conf", "");
    write("advanced.config", "[].\n");
    write("enabled_plugins", "[].\n");
    write("rabbitmq-env.conf", "");
    write("owner.pid", &std::process::id().to_string());
    fs::create_dir(d.join("mnesia")).expect("mkdir mnesia");
    fs::create_dir(d.join("log")).expect("mkdir log");

    // A private cookie: HOME is this directory for the node and for the CLI.
    let cookie = d.join(".erlang.cookie");
    let mut f = fs::File::create(&cookie).expect("cannot create .erlang.cookie");
    f.write_all(cookie_text.as_bytes()).expect("write cookie");
    drop(f);
    fs::set_permissions(&cookie, fs::Permissions::from_mode(0o400)).expect("chmod cookie");

    if let Some((uid, gid)) = user {
        for p in [
            d.to_path_buf(),
            d.join("rabbitmq.conf"),
            d.join("advanced.config"),
            d.join("enabled_plugins"),
            d.join("rabbitmq-env.conf"),
            d.join("mnesia"),
            d.join("log"),
            cookie,
        ] {
            chown(&p, uid, gid);
        }
    }
}

fn chown(p: &Path, uid: u32, gid: u32) {
    let c = CString::new(p.as_os_str().as_encoded_bytes()).expect("path with NUL");
    // SAFETY: c is a valid NUL-terminated path.
    let r = unsafe { libc::chown(c.as_ptr(), uid, gid) };
    assert!(
        r == 0,
        "chown {} to the rabbitmq user: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

/// uid and gid of a user, from the passwd database.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let c = CString::new(name).ok()?;
    // SAFETY: getpwnam returns NULL or a pointer to a static passwd record,
    // read at once; tests do not call getpwnam concurrently elsewhere.
    unsafe {
        let pw = libc::getpwnam(c.as_ptr());
        if pw.is_null() {
            None
        } else {
            Some(((*pw).pw_uid, (*pw).pw_gid))
        }
    }
}

fn random_cookie() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut s = String::new();
    while s.len() < 32 {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        h.write_u32(std::process::id());
        let mut v = h.finish();
        for _ in 0..12 {
            s.push((b'A' + (v % 26) as u8) as char);
            v /= 26;
        }
    }
    s.truncate(32);
    s
}

/// A port that is free on 127.0.0.1 now and was not handed out before by
/// this process.
fn free_port() -> u16 {
    let mut taken = taken_ports().lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..100 {
        let l = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .expect("cannot bind 127.0.0.1:0");
        let port = l.local_addr().expect("local_addr").port();
        if taken.insert(port) {
            return port;
        }
    }
    panic!("no free port found");
}

/// SIGKILLs every process whose environment has HOME=`dir` (all that a
/// broker and its CLI runs started), except epmd, which other nodes share.
fn kill_processes_with_home(dir: &Path) {
    let mut needle = b"HOME=".to_vec();
    needle.extend_from_slice(dir.as_os_str().as_encoded_bytes());
    needle.push(0);
    let Ok(entries) = fs::read_dir("/proc") else {
        return;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim() == "epmd" {
            continue;
        }
        let Ok(env) = fs::read(e.path().join("environ")) else {
            continue;
        };
        if env.windows(needle.len()).any(|w| w == needle.as_slice()) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Brokers of test processes that were killed (Ctrl-C, SIGKILL) never ran
/// their Drop: end their nodes and remove their directories, once per process.
/// A directory belongs to a dead process when the PID in its `owner.pid` is
/// gone.
fn sweep_stale_brokers(parent: &Path) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = fs::read_dir(parent) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if !name.to_string_lossy().starts_with("collector-rabbit-") {
                continue;
            }
            let Some(owner) = fs::read_to_string(e.path().join("owner.pid"))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            else {
                continue; // being created, or not ours
            };
            // SAFETY: signal 0 only checks that the process exists.
            let alive = unsafe { libc::kill(owner, 0) } == 0
                || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
            if !alive {
                eprintln!(
                    "rabbit: removing {} left by killed test process {owner}",
                    e.path().display()
                );
                kill_processes_with_home(&e.path());
                let _ = fs::remove_dir_all(e.path());
            }
        }
    });
}

fn signal_group(pgid: i32, sig: i32) {
    if pgid > 1 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(-pgid, sig) };
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// True if something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into(),
        Duration::from_secs(2),
    )
    .is_ok()
}
