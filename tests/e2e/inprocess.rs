//! The daemon run in this process (`collector::run_notifying`), on 127.0.0.1:0:
//! where timing matters and the code runs on tokio, on tokio's paused clock, so
//! that a minute of timeouts passes in no time and exactly.

use std::time::Duration;

use collector::config::Config;
use collector_e2e::{ConfigBuilder, plugin, read_lines, udp_to_file_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Parses `toml` as the daemon would, with `{DIR}` and relative paths in `dir`.
fn config(toml: &str, dir: &std::path::Path) -> Config {
    let text = toml.replace("{DIR}", &dir.display().to_string());
    Config::parse(&text, "test config", dir).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Starts the daemon on `cfg` in this runtime; returns what it reported when
/// ready, the sender that stops it, and its task.
async fn start(
    cfg: Config,
) -> (
    collector::Started,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<collector::Summary, collector::RunError>>,
) {
    let (ready_tx, ready) = oneshot::channel();
    let (stop, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(collector::run_notifying(
        cfg,
        None,
        async {
            let _ = stop_rx.await;
        },
        move |s| {
            let _ = ready_tx.send(s);
        },
    ));
    let started = ready.await.expect("the daemon did not become ready");
    (started, stop, task)
}

/// A client that opens a connection and never finishes its request is cut off
/// at `request_timeout_ms`, counted, and costs the next client nothing: here a
/// 60 s timeout, on the paused clock.
#[tokio::test(start_paused = true)]
async fn a_client_that_never_finishes_its_request_is_cut_off_at_request_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = ConfigBuilder::new("s")
        .admin("127.0.0.1:0", "request_timeout_ms = 60000")
        .dispatcher("noop", &plugin("noop.wasm"), "", "")
        .build();
    let (started, stop, task) = start(config(&toml, dir.path())).await;
    let admin = started.admin.expect("admin address");
    let mut slow = tokio::net::TcpStream::connect(admin)
        .await
        .expect("connect");
    slow.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("half a request");
    let t0 = Instant::now();
    let mut buf = [0u8; 256];
    // Nothing more is sent: the read ends when the daemon closes the connection.
    let n = slow.read(&mut buf).await.unwrap_or(0);
    let waited = t0.elapsed();
    assert_eq!(n, 0, "the daemon answered a request it never got: {buf:?}");
    assert!(
        waited >= Duration::from_secs(60) && waited < Duration::from_secs(61),
        "cut off after {waited:?}, not at request_timeout_ms"
    );
    assert_eq!(started.telemetry.daemon.admin_timeouts.get(), 1);
    // A client that does finish is served at once.
    let mut fast = tokio::net::TcpStream::connect(admin)
        .await
        .expect("connect");
    fast.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let mut answer = String::new();
    fast.read_to_string(&mut answer).await.expect("answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(started.telemetry.daemon.admin_timeouts.get(), 1);
    // Dispatcher threads stop on real time: give the shutdown deadline real time too.
    tokio::time::resume();
    let _ = stop.send(());
    let summary = task.await.expect("join").expect("run");
    assert!(summary.drained);
}

/// In-process on real time: UDP on 127.0.0.1:0 into the file dispatcher; the
/// addresses and the figures come from the daemon itself, not from its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_daemon_reports_where_it_listens_and_what_it_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = "in-process";
    let cfg = config(&udp_to_file_config(secret, "max_delay_ms = 20"), dir.path());
    let (started, stop, task) = start(cfg).await;
    let udp = started.udp.expect("udp address");
    assert!(udp.ip().is_loopback() && udp.port() != 0, "{udp}");
    send_samples(udp, secret, 20, 5);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.send_to(b"\xc1 not msgpack", udp).expect("send");
    wait_written(dir.path(), 20, &started).await;
    let _ = stop.send(());
    let summary = task.await.expect("join").expect("run");
    assert!(summary.drained);
    let udp_stats = started.telemetry.sources.handles("udp");
    assert_eq!(udp_stats.samples_received.get(), 20);
    assert_eq!(udp_stats.decode_errors.get(), 1);
    assert_eq!(udp_stats.messages_received.get(), 21);
    let file = started.telemetry.dispatchers.handles("file");
    assert_eq!(file.samples_ok.get(), 20);
}

/// Waits (real time, at most 30 s) until the file dispatcher of the daemon in
/// `dir` wrote `n` lines.
async fn wait_written(dir: &std::path::Path, n: usize, daemon: &collector::Started) {
    let out = dir.join("out/samples.jsonl");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while read_lines(&out).len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{n} samples not written:\n{}",
            daemon.telemetry.encode()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `n` signed realistic samples (seed `seed`) to `udp`.
fn send_samples(udp: std::net::SocketAddr, secret: &str, n: u64, seed: u64) {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut rng = collector::cli::samples::Rng::new(seed);
    for i in 0..n {
        let s = collector::cli::samples::realistic(i, &mut rng, secret.as_bytes());
        let mut d = Vec::new();
        collector::wire::msgpack::encode_sample(&s, &mut d);
        sock.send_to(&d, udp).expect("send");
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// One daemon whose shutdown runs past its grace period gives up its own
/// queues, and nobody else's: a second daemon in the same process goes on
/// delivering everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_past_its_grace_period_abandons_only_its_own_queues() {
    let secret = "two-daemons";
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let (a, stop_a, task_a) = start(config(
        &udp_to_file_config(secret, "max_delay_ms = 20"),
        dir_a.path(),
    ))
    .await;
    let slow = ConfigBuilder::new(secret)
        .batch("max_samples = 1\nmax_delay_ms = 20")
        .udp("")
        .section("shutdown", "grace_period_ms = 300")
        .dispatcher(
            "slow",
            &plugin("misbehave.wasm"),
            "timeout_ms = 500\nqueue_batches = 100",
            "mode = \"loop\"\ntrigger_meter = \"cpu\"",
        )
        .build();
    let (b, stop_b, task_b) = start(config(&slow, dir_b.path())).await;
    let to_b = b.udp.expect("udp");
    tokio::task::spawn_blocking(move || send_samples(to_b, secret, 60, 7))
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_b.send(());
    let summary_b = task_b.await.expect("join").expect("run");
    assert!(
        !summary_b.drained,
        "the slow daemon had work left past its grace period"
    );
    // After that daemon gave up its queues, this one still serves every batch.
    let to_a = a.udp.expect("udp");
    tokio::task::spawn_blocking(move || send_samples(to_a, secret, 200, 8))
        .await
        .expect("send");
    wait_written(dir_a.path(), 200, &a).await;
    let file = a.telemetry.dispatchers.handles("file");
    assert_eq!(file.batches_failed.get(), 0);
    let _ = stop_a.send(());
    assert!(task_a.await.expect("join").expect("run").drained);
}
