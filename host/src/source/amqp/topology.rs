//! The topology oslo.messaging lays out for Ceilometer (docs: REFERENCE.md §2):
//! the exchange, the queues this source consumes (`<topic>.sample`, `<topic>`,
//! `<topic>.<host>`, a fanout queue of its own), and their declaration with
//! oslo's flags. The URL is redacted for logs by [`crate::config::redact_url`].

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ExchangeKind};

use crate::config::AmqpConfig;

/// The queues of one source.
#[derive(Debug, Clone)]
pub struct Topology {
    cfg: AmqpConfig,
    /// `<topic>_fanout_<uuid hex>`: one per collector, like oslo's.
    fanout_queue: String,
}

impl Topology {
    pub fn new(cfg: &AmqpConfig) -> Topology {
        Topology {
            fanout_queue: format!("{}_fanout_{}", cfg.topic, random_hex32()),
            cfg: cfg.clone(),
        }
    }

    /// The queues this source consumes from.
    pub fn queues(&self) -> Vec<String> {
        let mut q = Vec::new();
        if self.cfg.notifications {
            q.push(format!("{}.sample", self.cfg.topic));
        }
        if self.cfg.rpc {
            q.push(self.cfg.topic.clone());
            q.push(format!("{}.{}", self.cfg.topic, self.cfg.host_name()));
            q.push(self.fanout_queue.clone());
        }
        q
    }

    /// Declares what oslo.messaging declares (or checks it exists, when passive).
    pub async fn declare(&self, conn: &Connection) -> Result<(), lapin::Error> {
        let ch = conn.create_channel().await?;
        let c = &self.cfg;
        let passive = c.passive;
        // oslo: quorum queues are durable, and so is the exchange then.
        let durable = c.topic_queues_durable();
        let ex = ExchangeDeclareOptions {
            passive,
            durable,
            auto_delete: c.auto_delete,
            ..Default::default()
        };
        let q = QueueDeclareOptions {
            passive,
            durable,
            auto_delete: c.auto_delete,
            ..Default::default()
        };
        ch.exchange_declare(
            c.exchange.as_str().into(),
            ExchangeKind::Topic,
            ex,
            FieldTable::default(),
        )
        .await?;
        let mut topic_queues = Vec::new();
        if c.notifications {
            topic_queues.push(format!("{}.sample", c.topic));
        }
        if c.rpc {
            topic_queues.push(c.topic.clone());
            topic_queues.push(format!("{}.{}", c.topic, c.host_name()));
        }
        for name in &topic_queues {
            ch.queue_declare(
                name.as_str().into(),
                q,
                queue_arguments(c, c.rabbit_quorum_queue),
            )
            .await?;
            if !passive {
                let (exch, key) = (c.exchange.as_str().into(), name.as_str().into());
                ch.queue_bind(
                    name.as_str().into(),
                    exch,
                    key,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            }
        }
        if c.rpc {
            // oslo: fanout exchange auto-deleted, queue with an expiry (both
            // non-durable unless rabbit_transient_quorum_queue).
            let fanout_ex = format!("{}_fanout", c.topic);
            // oslo: durable only with rabbit_transient_quorum_queue (its
            // fanout Consumer passes that `durable` to the exchange too).
            let exo = ExchangeDeclareOptions {
                passive,
                durable: c.rabbit_transient_quorum_queue,
                auto_delete: true,
                ..Default::default()
            };
            ch.exchange_declare(
                fanout_ex.as_str().into(),
                ExchangeKind::Fanout,
                exo,
                FieldTable::default(),
            )
            .await?;
            let mut args = queue_arguments(c, c.rabbit_transient_quorum_queue);
            args.insert(
                "x-expires".into(),
                AMQPValue::LongInt(
                    i32::try_from(c.fanout_queue_expires.as_millis()).unwrap_or(i32::MAX),
                ),
            );
            let qo = QueueDeclareOptions {
                durable: c.rabbit_transient_quorum_queue,
                auto_delete: false,
                ..Default::default()
            };
            ch.queue_declare(self.fanout_queue.as_str().into(), qo, args)
                .await?;
            ch.queue_bind(
                self.fanout_queue.as_str().into(),
                fanout_ex.as_str().into(),
                c.topic.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        let _ = ch.close(200, "declared".into()).await;
        Ok(())
    }
}

/// oslo's `_get_queue_arguments` for a queue that is a quorum queue or not
/// (`rabbit_ha_queues` and stream fanout queues are not supported): the same
/// arguments, so that a queue an OpenStack service declared first is joined
/// without `PRECONDITION_FAILED`, and the other way round.
pub fn queue_arguments(c: &AmqpConfig, quorum: bool) -> FieldTable {
    let mut args = FieldTable::default();
    if quorum {
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        // Python ints go out as signed 32-bit when they fit (py-amqp's table encoder).
        let int = |v: u64| match i32::try_from(v) {
            Ok(n) => AMQPValue::LongInt(n),
            Err(_) => AMQPValue::LongLongInt(i64::try_from(v).unwrap_or(i64::MAX)),
        };
        for (name, value) in [
            (
                "x-delivery-limit",
                u64::from(c.rabbit_quorum_delivery_limit),
            ),
            (
                "x-max-in-memory-length",
                u64::from(c.rabbit_quorum_max_memory_length),
            ),
            ("x-max-in-memory-bytes", c.rabbit_quorum_max_memory_bytes),
        ] {
            if value > 0 {
                args.insert(name.into(), int(value));
            }
        }
    }
    args
}

/// A 32-digit random hex string: oslo's `uuid.uuid4().hex`.
fn random_hex32() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
