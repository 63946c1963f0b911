//! The threads that decode AMQP message bodies (`[sources.amqp] decode_threads`),
//! off the async workers, one `oslo::Transcoder` each.
//!
//! Why not tokio's blocking pool, which did this before: it starts a thread
//! whenever a task finds none idle, and wakes its idle threads in turn. In an
//! AMQP drain it ran 25 of them at about 2 % of the CPU each, every one with
//! transcoder buffers of its own. With a fixed pool of one thread per core the
//! daemon's peak RSS in that drain fell from 144 to 68 MiB and its threads
//! from 30 to 10; samples per second did not change beyond the noise
//! (`cargo bench -p collector-e2e --bench amqp`).
//!
//! A body whose decoding panics is answered with [`DecoderLost`] (the consumer
//! counts it and rejects the message); the thread drops its transcoder, makes a
//! new one and goes on. The threads end once the pool is dropped and the jobs
//! queued before are done.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use super::decode::{Verified, decode_and_verify};
use crate::signature::Signer;
use crate::wire::oslo;

/// A decoded body, or why it has none.
pub type Outcome = Result<Verified, oslo::OsloError>;

/// The body was not decoded: the decoder panicked on it (or, which the
/// threads' own panic guard should prevent, its thread is gone).
#[derive(Debug)]
pub struct DecoderLost;

/// What a thread does with a body: [`decode_and_verify`].
type Decode = fn(&mut oslo::Transcoder, &[u8], &oslo::Limits) -> Outcome;

struct Job {
    body: Vec<u8>,
    signer: Signer,
    limits: oslo::Limits,
    reply: oneshot::Sender<Result<Outcome, DecoderLost>>,
}

/// A fixed set of decoder threads sharing one queue of bodies.
pub struct DecodePool {
    jobs: Sender<Job>,
}

impl DecodePool {
    /// Starts `threads` decoder threads (at least one).
    pub fn start(threads: usize) -> std::io::Result<DecodePool> {
        Self::start_with(threads, decode_and_verify)
    }

    /// The same with another decoder (the tests' panicking one).
    fn start_with(threads: usize, decode: Decode) -> std::io::Result<DecodePool> {
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("amqp-decode-{i}"))
                .spawn(move || serve(&queue, decode))?;
        }
        Ok(DecodePool { jobs })
    }

    /// Queues `body` for decoding; the returned future completes with its outcome.
    pub fn decode(&self, body: Vec<u8>, signer: Signer, limits: oslo::Limits) -> Pending {
        let (reply, outcome) = oneshot::channel();
        // Sending fails only when every thread is gone; `outcome` then
        // completes at once with `DecoderLost` (its sender was dropped).
        let _ = self.jobs.send(Job {
            body,
            signer,
            limits,
            reply,
        });
        Pending(outcome)
    }
}

/// One decoder thread: takes bodies from the shared queue until the pool is dropped.
fn serve(queue: &Mutex<Receiver<Job>>, decode: Decode) {
    let mut transcoder: Option<oslo::Transcoder> = None;
    loop {
        // One thread waits in `recv` while the others wait for the lock: the
        // first free thread takes the next body.
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else { return };
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let t = match transcoder.as_mut() {
                Some(t) => {
                    t.set_signer(job.signer.clone());
                    t
                }
                None => transcoder.insert(oslo::Transcoder::new(job.signer.clone())),
            };
            decode(t, &job.body, &job.limits)
        }));
        let outcome = outcome.map_err(|_| {
            // Whatever the panic left in it, the next body gets a new one.
            transcoder = None;
            DecoderLost
        });
        // The consumer may have gone (its channel closed): nothing to tell.
        let _ = job.reply.send(outcome);
    }
}

/// The outcome of a body queued with [`DecodePool::decode`].
pub struct Pending(oneshot::Receiver<Result<Outcome, DecoderLost>>);

impl Future for Pending {
    type Output = Result<Outcome, DecoderLost>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(DecoderLost)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> oslo::Limits {
        oslo::Limits {
            max_bytes: 1 << 20,
            max_samples: 1000,
        }
    }

    /// Every captured AMQP body, good and bad.
    fn bodies() -> Vec<Vec<u8>> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/ceilometer");
        let mut out = Vec::new();
        for sub in ["notification", "rpc", "bad"] {
            let mut names: Vec<_> = std::fs::read_dir(dir.join(sub))
                .expect("fixtures")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    (n.ends_with(".json") && !n.contains("properties")) || n.starts_with("amqp-")
                })
                .collect();
            names.sort();
            out.extend(names.iter().map(|p| std::fs::read(p).expect("fixture")));
        }
        out
    }

    fn summary(o: &Outcome) -> String {
        match o {
            Ok(v) => format!(
                "key={} ends={:?} bytes={:016x} bad={}",
                v.key,
                v.ends,
                super::super::decode::fnv1a(&v.encoded),
                v.bad_signatures
            ),
            Err(e) => format!("error: {e}"),
        }
    }

    #[tokio::test]
    async fn each_body_is_answered_with_its_own_outcome() {
        let bodies = bodies();
        assert!(bodies.len() >= 10, "fixtures: {}", bodies.len());
        let pool = DecodePool::start(2).expect("threads");
        // The captured samples' secret (tests/fixtures/ceilometer/README.md).
        let signer = Signer::new(b"fixture-secret");
        // Many at once, each body several times, so the two threads interleave.
        let pending: Vec<(usize, Pending)> = (0..5)
            .flat_map(|_| 0..bodies.len())
            .map(|i| (i, pool.decode(bodies[i].clone(), signer.clone(), limits())))
            .collect();
        let mut alone = oslo::Transcoder::new(signer.clone());
        let (mut oks, mut verified) = (0, 0);
        for (i, p) in pending {
            let got = p.await.expect("decoded");
            let want = decode_and_verify(&mut alone, &bodies[i], &limits());
            assert_eq!(summary(&got), summary(&want), "body {i}");
            oks += usize::from(got.is_ok());
            verified += got.as_ref().map_or(0, |v| v.ends.len());
        }
        assert!(
            oks > 0 && oks < 5 * bodies.len(),
            "good and bad bodies: {oks}"
        );
        assert!(verified > 0, "some samples pass their signature check");
    }

    #[tokio::test]
    async fn a_panic_loses_only_its_body_and_the_thread_goes_on() {
        fn boom(t: &mut oslo::Transcoder, body: &[u8], l: &oslo::Limits) -> Outcome {
            assert!(body != b"boom", "a decoder bug");
            decode_and_verify(t, body, l)
        }
        // One thread: what follows the panic is served by the same thread.
        let pool = DecodePool::start_with(1, boom).expect("thread");
        let signer = Signer::new(b"fixture-secret");
        let good = bodies().remove(0);
        let before = pool.decode(good.clone(), signer.clone(), limits());
        let lost = pool.decode(b"boom".to_vec(), signer.clone(), limits());
        let after = pool.decode(good, signer, limits());
        assert!(before.await.expect("decoded").is_ok());
        assert!(lost.await.is_err(), "the panicking body is lost");
        let after = after.await.expect("the thread survived its panic");
        assert!(!after.expect("a good body").ends.is_empty());
    }
}
