//! Configuration reload: dispatchers added and removed by editing the config
//! file, SIGHUP, an invalid config refused while the old one keeps running, and
//! `collector status` naming what serves.

use std::net::UdpSocket;
use std::time::Duration;

use collector::cli::send::datagrams;
use collector_e2e::{ConfigBuilder, Daemon, collector, free_port, read_lines};

const SECRET: &str = "config-secret";

fn config(udp_port: u16, admin_port: u16, watch_config: bool, second: bool) -> String {
    let mut b = ConfigBuilder::new(SECRET)
        .batch("max_delay_ms = 50")
        .section(
            "reload",
            &format!("watch_config = {watch_config}\ndebounce_ms = 100"),
        )
        .admin(&format!("127.0.0.1:{admin_port}"), "")
        .section(
            "sources.udp",
            &format!("address = \"127.0.0.1:{udp_port}\""),
        )
        .file_to("first", "a.jsonl");
    if second {
        b = b.file_to("second", "b.jsonl");
    }
    b.build()
}

/// Sends the next `n` of `grams` and waits until `a.jsonl` has `total_a` lines.
struct Feed {
    grams: Vec<Vec<u8>>,
    next: usize,
    sock: UdpSocket,
    port: u16,
}

impl Feed {
    fn new(port: u16) -> Feed {
        Feed {
            grams: datagrams(200, 51, SECRET.as_bytes()),
            next: 0,
            sock: UdpSocket::bind("127.0.0.1:0").expect("bind"),
            port,
        }
    }

    fn send(&mut self, d: &Daemon, n: usize) {
        for g in &self.grams[self.next..self.next + n] {
            self.sock
                .send_to(g, ("127.0.0.1", self.port))
                .expect("send");
        }
        self.next += n;
        let lines = d.wait_lines("out/a.jsonl", self.next, Duration::from_secs(30));
        assert_eq!(lines.len(), self.next, "{}", d.log());
    }
}

fn lines(d: &Daemon, file: &str) -> usize {
    read_lines(&d.path(&format!("out/{file}"))).len()
}

#[test]
fn editing_the_config_file_adds_then_removes_a_dispatcher() {
    let (udp, admin) = (free_port(), free_port());
    let mut d = Daemon::start(&config(udp, admin, true, false));
    let mut feed = Feed::new(udp);
    feed.send(&d, 10);
    d.write_config(&config(udp, admin, true, true));
    d.wait_config_reloads(1, 0, Duration::from_secs(60));
    feed.send(&d, 10);
    let _ = d.wait_lines("out/b.jsonl", 10, Duration::from_secs(30));
    assert_eq!(
        lines(&d, "b.jsonl"),
        10,
        "the added dispatcher gets the samples sent after the reload"
    );

    let (status, out, err) = collector(
        &[
            "status",
            "--admin",
            &format!("127.0.0.1:{admin}"),
            "--interval",
            "0.2",
        ],
        d.dir.path(),
    );
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("first (") && out.contains("second ("), "{out}");
    assert!(out.contains("version "), "{out}");

    // Removing `second` and changing the batch settings: the UDP source is replaced
    // on the same port without losing a datagram.
    d.write_config(
        &config(udp, admin, true, false).replace("max_delay_ms = 50", "max_delay_ms = 60"),
    );
    d.wait_config_reloads(2, 0, Duration::from_secs(60));
    let st = d.status();
    assert_eq!(st["daemon"]["source_restarts"], 1, "{st}");
    let names: Vec<&str> = st["dispatchers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(names, ["first"], "`second` was removed: {st}");
    feed.send(&d, 10);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        lines(&d, "b.jsonl"),
        10,
        "the removed dispatcher gets nothing more"
    );
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
}

#[test]
fn sighup_applies_the_file_and_an_invalid_config_is_refused() {
    let (udp, admin) = (free_port(), free_port());
    let mut d = Daemon::start(&config(udp, admin, false, false));
    let mut feed = Feed::new(udp);
    feed.send(&d, 5);
    // Not watched: nothing happens until SIGHUP.
    d.write_config(&config(udp, admin, false, true));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.status()["daemon"]["config_reloads_applied"], 0);
    d.signal(libc::SIGHUP);
    d.wait_config_reloads(1, 0, Duration::from_secs(60));
    feed.send(&d, 5);
    let _ = d.wait_lines("out/b.jsonl", 5, Duration::from_secs(30));
    assert_eq!(lines(&d, "b.jsonl"), 5);

    // Invalid as a whole: an unknown key, then a plugin that does not exist.
    d.write_config(&format!(
        "{}\n[batch2]\nmax = 1\n",
        config(udp, admin, false, false)
    ));
    d.signal(libc::SIGHUP);
    d.wait_config_reloads(1, 1, Duration::from_secs(60));
    assert!(
        d.log().contains("batch2"),
        "the refusal names the bad key:\n{}",
        d.log()
    );
    d.write_config(&config(udp, admin, false, true).replace(
        "name = \"second\"\nplugin = \"",
        "name = \"second\"\nplugin = \"/nonexistent",
    ));
    d.signal(libc::SIGHUP);
    d.wait_config_reloads(1, 2, Duration::from_secs(60));
    feed.send(&d, 5);
    let _ = d.wait_lines("out/b.jsonl", 10, Duration::from_secs(30));
    assert_eq!(
        lines(&d, "b.jsonl"),
        10,
        "the running configuration (with `second`) stays"
    );
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
}
