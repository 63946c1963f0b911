//! Publishing to RabbitMQ from tests, the way oslo.messaging publishes:
//! JSON bodies in the 2.0 envelope, persistent, with confirms.

use std::time::Duration;

use collector::cli::samples::{Rng, realistic, uuid};
use collector::wire::json::sample_to_json;
use collector_sdk::Sample;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

/// A publisher on its own small runtime (tests are synchronous).
pub struct Publisher {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    _conn: Connection,
}

impl Publisher {
    pub fn connect(url: &str) -> Publisher {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (conn, channel) = rt.block_on(async {
            let conn = Connection::connect(url, ConnectionProperties::default())
                .await
                .expect("connect to the broker");
            let ch = conn.create_channel().await.expect("channel");
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .expect("confirms");
            (conn, ch)
        });
        Publisher {
            rt,
            channel,
            _conn: conn,
        }
    }

    /// Publishes with the properties kombu gives oslo.messaging's messages.
    pub fn publish(&self, exchange: &str, routing_key: &str, body: &[u8]) {
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("utf-8".into())
            .with_delivery_mode(2)
            .with_priority(0)
            .with_headers(FieldTable::default());
        self.rt.block_on(async {
            let confirm = self
                .channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions::default(),
                    body,
                    props,
                )
                .await
                .expect("publish");
            tokio::time::timeout(Duration::from_secs(30), confirm)
                .await
                .expect("confirm in time")
                .expect("confirmed");
        });
    }

    /// Declares exchange `ceilometer` and queue `metering.sample` as oslo.messaging
    /// does (durable or not), so that messages wait for a consumer that starts later.
    pub fn declare_notification_queue(&self, durable: bool) {
        use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
        self.with_channel(|ch| async move {
            let ex = ExchangeDeclareOptions {
                durable,
                ..Default::default()
            };
            ch.exchange_declare(
                "ceilometer".into(),
                lapin::ExchangeKind::Topic,
                ex,
                FieldTable::default(),
            )
            .await
            .expect("exchange");
            let q = QueueDeclareOptions {
                durable,
                ..Default::default()
            };
            ch.queue_declare("metering.sample".into(), q, FieldTable::default())
                .await
                .expect("queue");
            let bind = QueueBindOptions::default();
            ch.queue_bind(
                "metering.sample".into(),
                "ceilometer".into(),
                "metering.sample".into(),
                bind,
                FieldTable::default(),
            )
            .await
            .expect("bind");
        });
    }

    /// Runs any channel operation (declarations in tests).
    pub fn with_channel<F, T>(&self, f: impl FnOnce(Channel) -> F) -> T
    where
        F: std::future::Future<Output = T>,
    {
        self.rt.block_on(f(self.channel.clone()))
    }
}

/// The oslo.messaging 2.0 envelope around a notification of `samples`
/// (as `SampleNotifierPublisher` sends it).
pub fn notification_body(samples: &[Sample], rng: &mut Rng) -> Vec<u8> {
    let payload: Vec<serde_json::Value> = samples.iter().map(sample_to_json).collect();
    let inner = serde_json::json!({
        "message_id": uuid(rng),
        "publisher_id": "telemetry.publisher.test",
        "event_type": "metering",
        "priority": "SAMPLE",
        "payload": payload,
        "timestamp": "2026-11-26 00:00:00.000000",
        "_unique_id": uuid(rng).replace('-', ""),
    });
    let envelope = serde_json::json!({"oslo.version": "2.0", "oslo.message": inner.to_string()});
    envelope.to_string().into_bytes()
}

/// `messages` notifications of `per_message` realistic samples signed with `secret`;
/// returns the bodies and every sample's message_id.
pub fn notifications(
    messages: usize,
    per_message: usize,
    secret: &[u8],
    seed: u64,
) -> (Vec<Vec<u8>>, Vec<String>) {
    let mut rng = Rng::new(seed);
    let mut ids = Vec::new();
    let mut bodies = Vec::new();
    let mut i = 0;
    for _ in 0..messages {
        let samples: Vec<Sample> = (0..per_message)
            .map(|_| {
                i += 1;
                realistic(i, &mut rng, secret)
            })
            .collect();
        ids.extend(samples.iter().map(|s| s.message_id.clone()));
        bodies.push(notification_body(&samples, &mut rng));
    }
    (bodies, ids)
}

/// Publishes `bodies` to `url` on a thread as notifications on
/// `metering.sample`, one every 50 ms (1,000 samples/s at 50 a message), until
/// all are sent or `stop` is set; the thread returns how many it sent.
pub fn amqp_load(
    url: String,
    bodies: Vec<Vec<u8>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let p = Publisher::connect(&url);
        let mut sent = 0;
        for b in &bodies {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            p.publish("ceilometer", "metering.sample", b);
            sent += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        sent
    })
}
