//! A real HTTP server on 127.0.0.1 for the dispatchers that post to one (axum on
//! hyper, in a runtime of its own): it records every request, and answers as
//! the test says (204 by default; a status and body; or down).

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
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
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
