//! AMQP drain benchmark: a queue pre-filled with signed samples in notifications
//! of 100, drained by `collector run` (noop dispatcher, signatures verified)
//! over plain AMQP and over TLS (with a client certificate, as oslo's `ssl`
//! settings give it) and, in the same run, by a raw lapin consumer that only
//! acks (plain). Besides samples/s, it prints the daemon's CPU time (user +
//! system, all threads) per sample acked, which moves less with the machine.
//!
//! `make bench` runs it with the release daemon:
//! `COLLECTOR_BIN=target/release/collector cargo bench -p collector-e2e --bench amqp`
//! Arguments: `-- [MESSAGES] [RUNS]` (default 2000 messages = 200,000 samples, 3 runs).

use std::time::{Duration, Instant};

use collector_e2e::amqp::{Publisher, notifications};
use collector_e2e::rabbit::{Broker, NodeOptions};
use collector_e2e::{Daemon, stat};
use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;

const SECRET: &str = "bench-secret";
const PER_MESSAGE: usize = 100;
const PREFETCH: u16 = 100;

fn fill(broker: &Broker, bodies: &[Vec<u8>]) {
    let p = Publisher::connect(&broker.url());
    p.declare_notification_queue(false);
    let bar = collector_e2e::progress(bodies.len() as u64, "filling the queue");
    for b in bodies {
        p.publish("ceilometer", "metering.sample", b);
        bar.inc(1);
    }
    bar.finish_and_clear();
}

/// Consumes `messages` and acks them (multiple, every half prefetch); returns the seconds taken.
fn raw_drain(url: &str, messages: usize) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
            .await
            .expect("connect");
        let ch = conn.create_channel().await.expect("channel");
        ch.basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .expect("qos");
        let mut c = ch
            .basic_consume(
                "metering.sample".into(),
                "raw".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let mut start = None;
        let mut n = 0;
        while let Some(Ok(d)) = c.next().await {
            start.get_or_insert_with(Instant::now);
            n += 1;
            if n % (PREFETCH as usize / 2) == 0 || n == messages {
                d.ack(BasicAckOptions { multiple: true })
                    .await
                    .expect("ack");
            }
            if n == messages {
                break;
            }
        }
        start.map_or(0.0, |s| s.elapsed().as_secs_f64())
    })
}

/// Messages the daemon acked so far, from its `/metrics`. Polled instead of
/// `rabbitmqctl list_queues`: each `rabbitmqctl` boots an Erlang VM, about a
/// CPU-second on these 2 cores, which the daemon then drained beside and the
/// raw consumer (which counts for itself) did not.
fn acked(d: &Daemon) -> u64 {
    d.metrics()
        .lines()
        .filter(|l| l.starts_with("collector_amqp_acked_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// CPU seconds (user + system, all threads) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf takes an integer and reads no memory of ours.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let messages = args.first().copied().unwrap_or(2000);
    let runs = args.get(1).copied().unwrap_or(3);
    let samples = (messages * PER_MESSAGE) as f64;
    let tls = collector_e2e::http::Tls::make();
    let broker = Broker::start_with(NodeOptions {
        tls: Some(&tls),
        ..NodeOptions::default()
    });
    let (bodies, _) = notifications(messages, PER_MESSAGE, SECRET.as_bytes(), 5);
    let cfg = |url: &str, tls_settings: &str| {
        format!(
            r#"
telemetry_secret = "{SECRET}"
[log]
level = "info"
[admin]
address = "127.0.0.1:0"
[batch]
max_samples = 1000
max_delay_ms = 100
[sources.amqp]
url = "{url}"
rpc = false
prefetch_count = {PREFETCH}
{tls_settings}
[[dispatchers]]
name = "noop"
plugin = "builtin:noop"
queue_batches = 64
"#
        )
    };
    let plain = cfg(&broker.url(), "");
    let over_tls = cfg(
        &format!(
            "rabbit://guest:guest@127.0.0.1:{}/",
            broker.tls_port().expect("a TLS listener")
        ),
        &format!(
            "ssl = true\nssl_ca_file = \"{}\"\nssl_cert_file = \"{}\"\nssl_key_file = \"{}\"",
            tls.path("ca.pem"),
            tls.path("client.pem"),
            tls.path("client.key")
        ),
    );
    // Drains the pre-filled queue with the daemon on `cfg`: samples/s while active.
    let drain = |cfg: &str| {
        fill(&broker, &bodies);
        let d = Daemon::start(cfg);
        let (cpu0, acked0) = (cpu_seconds(d.pid()), acked(&d));
        let deadline = Instant::now() + Duration::from_secs(300);
        while acked(&d) < messages as u64 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        // The daemon's CPU per sample over what it acked meanwhile (a message
        // is acked once its samples were dispatched).
        let cpu_us = (cpu_seconds(d.pid()) - cpu0) * 1e6
            / ((messages as u64).saturating_sub(acked0).max(1) * PER_MESSAGE as u64) as f64;
        let stopped = d.stop();
        let acked = stopped.source("amqp", "amqp_acked");
        let ms = stat(&stopped.log, "AMQP source stopped", "active_ms").max(1);
        assert_eq!(
            acked as usize, messages,
            "not every message was acked:\n{}",
            stopped.log
        );
        assert_eq!(stopped.source("amqp", "bad_signatures"), 0);
        (samples * 1000.0 / ms as f64, cpu_us)
    };
    println!(
        "AMQP drain: {messages} notifications x {PER_MESSAGE} signed samples, prefetch {PREFETCH}, {runs} runs"
    );
    println!(
        "{:>4} {:>14} {:>16} {:>16} {:>7} {:>9} {:>10} {:>10}",
        "run",
        "raw smp/s",
        "collector smp/s",
        "over TLS smp/s",
        "ratio",
        "TLS/plain",
        "cpu us/smp",
        "TLS cpu"
    );
    let (mut raws, mut ours, mut tlss, mut ratios, mut tls_ratios, mut cpus, mut tls_cpus) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for run in 1..=runs {
        fill(&broker, &bodies);
        let raw = samples / raw_drain(&broker.url(), messages);
        let (collector, cpu) = drain(&plain);
        let (secure, tls_cpu) = drain(&over_tls);
        println!(
            "{run:>4} {raw:>14.0} {collector:>16.0} {secure:>16.0} {:>7.2} {:>9.2} {cpu:>10.2} {tls_cpu:>10.2}",
            collector / raw,
            secure / collector
        );
        raws.push(raw);
        ours.push(collector);
        tlss.push(secure);
        ratios.push(collector / raw);
        tls_ratios.push(secure / collector);
        cpus.push(cpu);
        tls_cpus.push(tls_cpu);
    }
    println!(
        "median: raw {:.0} samples/s, collector {:.0} samples/s (ratio {:.2}), over TLS {:.0} samples/s (TLS/plain {:.2}); \
         daemon CPU {:.2} us/sample ({:.2} over TLS)",
        median(raws),
        median(ours),
        median(ratios),
        median(tlss),
        median(tls_ratios),
        median(cpus),
        median(tls_cpus)
    );
}
