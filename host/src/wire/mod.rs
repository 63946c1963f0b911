//! Wire formats of Ceilometer's publishers, decoded into the lossless sample model.

pub mod json;
pub mod msgpack;
pub mod oslo;
