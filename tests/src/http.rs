//! A real HTTP server on 127.0.0.1 for the dispatchers that post to one (axum on
//! hyper, in a runtime of its own): HTTP/1.1 and h2c, or HTTPS (rustls) with a
//! CA and certificates made by openssl ([`Tls`]), optionally asking for a
//! client certificate. It records every request and connection, and answers as
//! the test says (204 by default; a status and body; slowly; or down).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// A header's value, by name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the server answers: `status` with `body`, to every request; requests
/// answered with a 2xx are the ones recorded as taken.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

#[derive(Default)]
struct State {
    taken: Vec<Recorded>,
    refused: usize,
    answer: Option<Answer>,
    /// How long each answer takes.
    delay: Duration,
    /// Requests that came over HTTP/2.
    http2: usize,
    /// Connections accepted.
    connections: usize,
}

/// The server; stopped when dropped.
pub struct HttpServer {
    pub address: SocketAddr,
    state: Arc<Mutex<State>>,
    rt: Option<tokio::runtime::Runtime>,
}

impl HttpServer {
    /// Listens on a free port of 127.0.0.1.
    pub fn start() -> HttpServer {
        Self::start_on("127.0.0.1:0".parse().expect("address"))
    }

    /// Listens on `address` (to come back on the same port after [`HttpServer::stop`]).
    pub fn start_on(address: SocketAddr) -> HttpServer {
        Self::start_with(address, None)
    }

    /// HTTPS on a free port of 127.0.0.1 with `tls` (see [`Tls`]).
    pub fn start_tls(tls: &Tls, require_client_cert: bool) -> HttpServer {
        Self::start_with(
            "127.0.0.1:0".parse().expect("address"),
            Some(tls.server_config(require_client_cert)),
        )
    }

    fn start_with(address: SocketAddr, tls: Option<rustls::ServerConfig>) -> HttpServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        // The port may still be in TIME_WAIT from the server before: retry a while.
        let deadline = Instant::now() + Duration::from_secs(30);
        let listener = loop {
            match rt.block_on(tokio::net::TcpListener::bind(address)) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot bind the test HTTP server on {address}: {e}"),
            }
        };
        let address = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let app = axum::Router::new().fallback(
            move |method: Method,
                  version: axum::http::Version,
                  uri: Uri,
                  headers: HeaderMap,
                  body: Bytes| {
                let st = st.clone();
                async move {
                    let delay = st.lock().expect("server state").delay;
                    tokio::time::sleep(delay).await;
                    let rec = Recorded {
                        method: method.to_string(),
                        target: uri
                            .path_and_query()
                            .map_or_else(|| uri.path().to_owned(), |p| p.to_string()),
                        headers: headers
                            .iter()
                            .map(|(n, v)| {
                                (
                                    n.to_string(),
                                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                )
                            })
                            .collect(),
                        body: body.to_vec(),
                    };
                    let mut s = st.lock().expect("server state");
                    if version == axum::http::Version::HTTP_2 {
                        s.http2 += 1;
                    }
                    let answer = s.answer.clone().unwrap_or(Answer {
                        status: 204,
                        body: String::new(),
                    });
                    if (200..300).contains(&answer.status) {
                        s.taken.push(rec);
                    } else {
                        s.refused += 1;
                    }
                    (
                        StatusCode::from_u16(answer.status).expect("status"),
                        answer.body,
                    )
                        .into_response()
                }
            },
        );
        // One accept loop for both, counting connections (HTTP/1.1 and h2c by
        // hyper's auto builder; TLS through rustls when given).
        let acceptor = tls.map(|config| tokio_rustls::TlsAcceptor::from(Arc::new(config)));
        let counted = state.clone();
        rt.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counted.lock().expect("server state").connections += 1;
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let builder = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    match acceptor {
                        None => {
                            let _ = builder
                                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                                .await;
                        }
                        // A client that fails the handshake is simply dropped.
                        Some(a) => {
                            if let Ok(tls) = a.accept(tcp).await {
                                let _ = builder
                                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                                    .await;
                            }
                        }
                    }
                });
            }
        });
        HttpServer {
            address,
            state,
            rt: Some(rt),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// `https://127.0.0.1:PORT`.
    pub fn https_url(&self) -> String {
        format!("https://{}", self.address)
    }

    /// Answers `status` with `body` from now on.
    pub fn answer(&self, status: u16, body: &str) {
        self.state.lock().expect("server state").answer = Some(Answer {
            status,
            body: body.to_owned(),
        });
    }

    /// Takes `delay` before each answer from now on (a slow backend).
    pub fn delay(&self, delay: Duration) {
        self.state.lock().expect("server state").delay = delay;
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.lock().expect("server state").connections
    }

    /// Requests that came over HTTP/2 (h2c).
    pub fn http2_requests(&self) -> usize {
        self.state.lock().expect("server state").http2
    }

    /// The requests answered 2xx so far.
    pub fn taken(&self) -> Vec<Recorded> {
        self.state.lock().expect("server state").taken.clone()
    }

    /// Requests answered with anything but a 2xx.
    pub fn refused(&self) -> usize {
        self.state.lock().expect("server state").refused
    }

    /// Waits until `n` requests were taken (panics after `timeout`).
    pub fn wait_taken(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.taken();
            if t.len() >= n || Instant::now() > deadline {
                return t;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops listening and drops every connection: the backend is down.
    pub fn stop(mut self) -> (SocketAddr, Vec<Recorded>) {
        let taken = self.taken();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
        (self.address, taken)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A private CA, a server certificate for 127.0.0.1 and a client certificate it
/// signed, made with the openssl command line in a temporary directory; and
/// for the server's key, `server-expired.pem` (certified for a day in 2020) and
/// `server-other-name.pem` (for `collector.invalid`, not 127.0.0.1).
pub struct Tls {
    pub dir: tempfile::TempDir,
}

impl Tls {
    pub fn make() -> Tls {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("openssl (Debian's openssl package)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        // A new P-256 key, unencrypted, for each certificate.
        let new_key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let req = |extra: &[&str]| {
            let mut args = vec!["req"];
            args.extend(new_key);
            args.extend(extra);
            openssl(&args);
        };
        req(&[
            "-x509",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=collector test CA",
        ]);
        // The CA signs a request for 2 days, with the extensions of `ext`.
        let sign = |csr: &str, ext: &str, out: &str| {
            openssl(&[
                "x509",
                "-req",
                "-in",
                csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                out,
                "-days",
                "2",
                "-extfile",
                ext,
            ]);
        };
        for (name, usage, san) in [
            ("server", "serverAuth", "subjectAltName=IP:127.0.0.1\n"),
            ("client", "clientAuth", ""),
        ] {
            std::fs::write(
                d.join(format!("{name}.ext")),
                format!("{san}basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n"),
            )
            .expect("ext file");
            req(&[
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN=collector test {name}"),
            ]);
            sign(
                &format!("{name}.csr"),
                &format!("{name}.ext"),
                &format!("{name}.pem"),
            );
        }
        // The server's key certified for another name than 127.0.0.1.
        std::fs::write(
            d.join("other-name.ext"),
            "subjectAltName=DNS:collector.invalid\nbasicConstraints=CA:FALSE\n\
             extendedKeyUsage=serverAuth\n",
        )
        .expect("ext file");
        sign("server.csr", "other-name.ext", "server-other-name.pem");
        // The server's key certified for one day in 2020: expired. `x509 -req`
        // cannot backdate (openssl 3.0), `openssl ca` can.
        std::fs::write(
            d.join("ca.cnf"),
            "[ca]\ndefault_ca = test\n[test]\ndatabase = index.txt\nnew_certs_dir = .\n\
             serial = serial\ndefault_md = sha256\npolicy = any\n[any]\ncommonName = supplied\n",
        )
        .expect("ca.cnf");
        std::fs::write(d.join("index.txt"), "").expect("index.txt");
        std::fs::write(d.join("serial"), "1000\n").expect("serial");
        openssl(&[
            "ca",
            "-batch",
            "-notext",
            "-config",
            "ca.cnf",
            "-cert",
            "ca.pem",
            "-keyfile",
            "ca.key",
            "-in",
            "server.csr",
            "-out",
            "server-expired.pem",
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200102000000Z",
            "-extfile",
            "server.ext",
        ]);
        Tls { dir }
    }

    /// Path of `ca.pem`, `server.pem`, `client.key`, ...
    pub fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    fn server_config(&self, require_client_cert: bool) -> rustls::ServerConfig {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(self.path("server.pem"))
                .expect("server.pem")
                .collect::<Result<_, _>>()
                .expect("server certificate");
        let key = PrivateKeyDer::from_pem_file(self.path("server.key")).expect("server.key");
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(self.path("ca.pem")).expect("ca.pem") {
                roots.add(c.expect("CA certificate")).expect("CA");
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_single_cert(certs, key).expect("server config");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}
