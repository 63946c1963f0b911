//! The `http` dispatcher, as Ceilometer's `dispatcher_http` did it: every sample
//! POSTed as the JSON dict Ceilometer sent (`json.dumps(meter)`), or, with
//! `batch_mode`, the whole batch as one JSON list, to one of the endpoints the
//! operator declared for the dispatcher.
//!
//! Answers `retry` when the target cannot be reached, times out, or answers 429
//! or 5xx (the batch comes again, so a sample may be posted twice: at least
//! once, as Ceilometer's AMQP path); `reject` with the target's own message on
//! any other 4xx.

use std::time::Duration;

use collector_sdk::http::{self, Pending, Request};
use collector_sdk::{Batch, Config, Dispatcher, Outcome};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The endpoint (`[[dispatchers.endpoints]] name`) to post to.
    #[serde(default = "default_endpoint")]
    endpoint: String,
    /// Path (and query) under the endpoint's URL; empty posts to the URL itself.
    #[serde(default)]
    path: String,
    /// One POST of the batch as a JSON list instead of one per sample.
    #[serde(default)]
    batch_mode: bool,
    /// Per-sample mode: requests running at once.
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    /// How long to wait for each response (the call's own deadline bounds it too).
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
}

fn default_endpoint() -> String {
    "target".into()
}
fn default_concurrency() -> usize {
    8
}
fn default_timeout_ms() -> u64 {
    5000
}

struct HttpDispatcher {
    s: Settings,
}

impl HttpDispatcher {
    fn request(&self, body: Vec<u8>) -> Request {
        Request::post(&self.s.endpoint, &self.s.path)
            .header("Content-Type", "application/json")
            .body(body)
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.s.timeout_ms)
    }

    /// The batch as one JSON list, in one request.
    fn post_batch(&self, batch: &Batch<'_>) -> Outcome {
        let mut body = Vec::with_capacity(batch.bytes().len() * 2);
        body.push(b'[');
        for (i, sample) in batch.samples().enumerate() {
            let sample = match sample {
                Ok(s) => s,
                Err(e) => return Outcome::Reject(e.to_string()),
            };
            if i > 0 {
                body.extend_from_slice(b", ");
            }
            collector_sdk::json::write_sample(&mut body, &sample);
        }
        body.push(b']');
        let result = self.request(body).fetch(self.timeout());
        http::outcome(&result).unwrap_or(Outcome::Ok)
    }

    /// Every sample in a request of its own, `concurrency` at a time.
    fn post_each(&self, batch: &Batch<'_>) -> Outcome {
        let mut running: Vec<Pending> = Vec::new();
        let mut worst: Option<Outcome> = None;
        let mut finish_one = |running: &mut Vec<Pending>| -> Result<(), Outcome> {
            let refs: Vec<&Pending> = running.iter().collect();
            let Some(i) = http::wait_any(&refs, self.timeout()) else {
                return Err(Outcome::Retry(
                    "no response from the target in the time left".into(),
                ));
            };
            let done = running.swap_remove(i);
            match http::outcome(&done.finish()) {
                None => Ok(()),
                Some(o @ Outcome::Reject(_)) => Err(o),
                Some(o) => {
                    worst.get_or_insert(o);
                    Ok(())
                }
            }
        };
        for sample in batch.samples() {
            let sample = match sample {
                Ok(s) => s,
                Err(e) => return Outcome::Reject(e.to_string()),
            };
            let mut body = Vec::with_capacity(1024);
            collector_sdk::json::write_sample(&mut body, &sample);
            if running.len() >= self.s.concurrency.max(1)
                && let Err(o) = finish_one(&mut running)
            {
                return o;
            }
            match self.request(body).send() {
                Ok(p) => running.push(p),
                Err(e) => {
                    return http::outcome(&Err(e)).unwrap_or(Outcome::Retry("refused".into()));
                }
            }
        }
        while !running.is_empty() {
            if let Err(o) = finish_one(&mut running) {
                return o;
            }
        }
        worst.unwrap_or(Outcome::Ok)
    }
}

impl Dispatcher for HttpDispatcher {
    fn init(config: Config<'_>) -> Result<Self, String> {
        let s: Settings = config.parse()?;
        collector_sdk::info!(
            "posting samples to endpoint `{}` path `{}`{}",
            s.endpoint,
            s.path,
            if s.batch_mode { " (batch mode)" } else { "" }
        );
        Ok(HttpDispatcher { s })
    }

    fn dispatch(&mut self, batch: Batch<'_>) -> Outcome {
        if batch.is_empty() {
            return Outcome::Ok;
        }
        if self.s.batch_mode {
            self.post_batch(&batch)
        } else {
            self.post_each(&batch)
        }
    }
}

collector_sdk::export_dispatcher!(HttpDispatcher);
