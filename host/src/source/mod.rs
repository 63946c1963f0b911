//! Where samples come from. Each source owns its batcher and hands sealed batches
//! to the [`Fanout`](crate::dispatch::Fanout).

pub mod amqp;
pub mod udp;
