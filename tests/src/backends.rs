//! Real backends for the dispatcher tests, each a private instance on a free
//! port of 127.0.0.1 with its data in a temporary directory, stopped when
//! dropped: InfluxDB 1.6 and VictoriaMetrics 1.79 from Debian (installed by
//! `scripts/install-test-deps.sh`). A test can kill one (SIGKILL) and start it
//! again on the same port and data, for outages.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, http_get};

/// A backend process.
pub struct Backend {
    what: &'static str,
    program: PathBuf,
    args: Vec<String>,
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    ready_path: &'static str,
}

fn program(name: &str) -> PathBuf {
    let p = PathBuf::from("/usr/bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run `make test-deps` (scripts/install-test-deps.sh)",
        p.display()
    );
    p
}

impl Backend {
    fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("backend.log")).expect("log file");
        let child = Command::new(&self.program)
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.what));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((code, _)) =
                crate::try_http_get(&format!("127.0.0.1:{}", self.port), self.ready_path)
                && (200..300).contains(&code)
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "{} exited ({status}) before it was ready:\n{}",
                    self.what,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after 60 s:\n{}",
                self.what,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Its own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("backend.log")).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `host:port`, for [`http_get`].
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL: down at once, without closing its sockets cleanly.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again, on the same port and data.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// InfluxDB 1.6 with database `ceilometer`.
pub fn influxdb() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, rpc) = (free_port(), free_port());
    let d = dir.path().display();
    let conf = format!(
        "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
         [meta]\ndir = \"{d}/meta\"\n\
         [data]\ndir = \"{d}/data\"\nwal-dir = \"{d}/wal\"\nquery-log-enabled = false\n\
         [monitor]\nstore-enabled = false\n\
         [http]\nbind-address = \"127.0.0.1:{port}\"\nlog-enabled = false\n"
    );
    std::fs::write(dir.path().join("influxdb.conf"), conf).expect("config");
    let mut b = Backend {
        what: "influxd",
        program: program("influxd"),
        args: vec![
            "-config".into(),
            dir.path().join("influxdb.conf").display().to_string(),
        ],
        port,
        dir,
        child: None,
        ready_path: "/ping",
    };
    b.launch();
    let (code, body) = crate::http_post(&b.address(), "/query", "q=CREATE+DATABASE+ceilometer");
    assert_eq!(code, 200, "CREATE DATABASE: {body}");
    b
}

/// VictoriaMetrics 1.79, keeping samples of any age, and showing what it has
/// at once (no latency offset).
pub fn victoria_metrics() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut b = Backend {
        what: "victoria-metrics",
        program: program("victoria-metrics"),
        args: vec![
            format!("-httpListenAddr=127.0.0.1:{port}"),
            format!("-storageDataPath={}", dir.path().join("data").display()),
            "-retentionPeriod=100y".into(),
            "-search.latencyOffset=0s".into(),
            "-search.disableCache".into(),
        ],
        port,
        dir,
        child: None,
        ready_path: "/health",
    };
    b.launch();
    b
}

/// Prometheus 2.42 with its remote-write receiver on, scraping nothing.
pub fn prometheus() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        "global:\n  scrape_interval: 1h\n",
    )
    .expect("config");
    let mut b = Backend {
        what: "prometheus",
        program: program("prometheus"),
        args: vec![
            format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--web.enable-remote-write-receiver".into(),
        ],
        port,
        dir,
        child: None,
        ready_path: "/-/ready",
    };
    b.launch();
    b
}

impl Backend {
    /// Prometheus: every sample of the series matching `selector` in the last
    /// `hours`, as (labels, [(ms, value)]) per series.
    pub fn prom_samples(
        &self,
        selector: &str,
        hours: u32,
    ) -> Vec<(serde_json::Value, Vec<(i64, f64)>)> {
        let q = format!("{selector}[{hours}h]");
        let path = format!("/api/v1/query?query={}", crate::urlencode(&q));
        let (code, body) = http_get(&self.address(), &path);
        assert_eq!(code, 200, "query: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("query JSON");
        v["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                let points = s["values"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|p| {
                        let t = p[0].as_f64().expect("time");
                        let v: f64 = p[1].as_str().expect("value").parse().expect("a number");
                        ((t * 1000.0).round() as i64, v)
                    })
                    .collect();
                (s["metric"].clone(), points)
            })
            .collect()
    }

    /// VictoriaMetrics: every series matching `selector`, as `/api/v1/export`
    /// gives them (one JSON object per series: `metric`, `values`, `timestamps`).
    pub fn vm_export(&self, selector: &str) -> Vec<serde_json::Value> {
        let _ = http_get(&self.address(), "/internal/force_flush");
        let path = format!("/api/v1/export?match[]={}", crate::urlencode(selector));
        let (code, body) = http_get(&self.address(), &path);
        assert_eq!(code, 200, "export: {body}");
        body.lines()
            .map(|l| serde_json::from_str(l).expect("a JSON series"))
            .collect()
    }

    /// InfluxDB: the rows of `q` in database `ceilometer`, nanosecond times, as
    /// (columns, rows) per series.
    pub fn influx_query(&self, q: &str) -> Vec<serde_json::Value> {
        let path = format!("/query?db=ceilometer&epoch=ns&q={}", crate::urlencode(q));
        let (code, body) = http_get(&self.address(), &path);
        assert_eq!(code, 200, "query: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("query JSON");
        v["results"][0]["series"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Runs `program` with `args` as user `postgres` when this process is root
/// (PostgreSQL refuses to run as root), as this user otherwise.
fn as_postgres(program: &Path, args: &[&str]) -> Command {
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

/// A private PostgreSQL 15 (Debian's), for Gnocchi's indexer.
pub struct Postgres {
    pub port: u16,
    dir: tempfile::TempDir,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

impl Postgres {
    pub fn start() -> Postgres {
        let bin = Path::new(PG_BIN);
        assert!(
            bin.join("postgres").exists(),
            "PostgreSQL 15 is missing: run `make test-deps` (scripts/install-test-deps.sh)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        // Owned by the user the server runs as.
        let _ = Command::new("chown")
            .args(["postgres", &dir.path().display().to_string()])
            .status();
        let run = |tool: &str, args: &[&str], log: Option<&Path>| {
            let out = as_postgres(&bin.join(tool), args)
                .output()
                .unwrap_or_else(|e| panic!("{tool}: {e}"));
            assert!(
                out.status.success(),
                "{tool}: {}{}",
                String::from_utf8_lossy(&out.stderr),
                log.and_then(|l| std::fs::read_to_string(l).ok())
                    .unwrap_or_default()
            );
        };
        let data_dir = data.display().to_string();
        run(
            "initdb",
            &[
                "-D",
                &data_dir,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
            None,
        );
        let port = free_port();
        let opts = format!("-p {port} -h 127.0.0.1 -k {} -F", dir.path().display());
        let log = dir.path().join("postgres.log");
        let log_file = log.display().to_string();
        run(
            "pg_ctl",
            &[
                "-D", &data_dir, "-o", &opts, "-l", &log_file, "-w", "-t", "60", "start",
            ],
            Some(&log),
        );
        let port_text = port.to_string();
        run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port_text,
                "-U",
                "postgres",
                "gnocchi",
            ],
            None,
        );
        Postgres { port, dir }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(
            &Path::new(PG_BIN).join("pg_ctl"),
            &[
                "-D",
                &self.dir.path().join("data").display().to_string(),
                "-m",
                "immediate",
                "stop",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    }
}

/// Gnocchi 4.7 (`.venv-gnocchi`) with PostgreSQL as its indexer, file storage
/// and `auth_mode = basic`, its API on a plain WSGI server. Holds its
/// PostgreSQL: drop the Gnocchi to stop both.
pub struct Gnocchi {
    pub api: Backend,
    _postgres: Postgres,
}

pub fn gnocchi() -> Gnocchi {
    let venv = crate::root().join(".venv-gnocchi/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run `make test-deps` (scripts/gnocchi-venv.sh)",
        venv.display()
    );
    let postgres = Postgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("gnocchi.conf");
    std::fs::write(
        &conf,
        format!(
            "[DEFAULT]\ndebug = false\n[api]\nauth_mode = basic\n\
             [indexer]\nurl = postgresql+psycopg2://postgres@127.0.0.1:{}/gnocchi\n\
             [storage]\ndriver = file\nfile_basepath = {}/storage\n",
            postgres.port,
            dir.path().display()
        ),
    )
    .expect("gnocchi.conf");
    let upgrade = Command::new(crate::root().join(".venv-gnocchi/bin/gnocchi-upgrade"))
        .arg("--config-file")
        .arg(&conf)
        .output()
        .expect("gnocchi-upgrade");
    assert!(
        upgrade.status.success(),
        "gnocchi-upgrade: {}",
        String::from_utf8_lossy(&upgrade.stderr)
    );
    let port = free_port();
    let mut api = Backend {
        what: "gnocchi-api",
        program: venv,
        args: vec![
            crate::root()
                .join("scripts/gnocchi-api.py")
                .display()
                .to_string(),
            conf.display().to_string(),
            port.to_string(),
        ],
        port,
        dir,
        child: None,
        ready_path: "/",
    };
    api.launch();
    Gnocchi {
        api,
        _postgres: postgres,
    }
}

impl Gnocchi {
    /// `GET path` as user `admin` (basic auth): (status, JSON).
    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let mut answer = crate::agent()
            .get(format!("{}{path}", self.api.url()))
            .header("Authorization", "Basic YWRtaW46")
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let code = answer.status().as_u16();
        let body = answer.body_mut().read_to_string().unwrap_or_default();
        (
            code,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
        )
    }

    /// `POST path` with a JSON body as user `admin`: (status, body).
    pub fn post(&self, path: &str, body: &serde_json::Value) -> (u16, String) {
        let mut answer = crate::agent()
            .post(format!("{}{path}", self.api.url()))
            .header("Authorization", "Basic YWRtaW46")
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let code = answer.status().as_u16();
        (code, answer.body_mut().read_to_string().unwrap_or_default())
    }
}
