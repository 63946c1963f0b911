//! End-to-end tests: the real `collector` binary, real UDP sockets on 127.0.0.1,
//! real wasm plugins from `plugins/`. Run by `make test` after `make build`.

mod amqp;
mod amqp_cluster;
mod backends;
mod cli;
mod components;
mod config_reload;
mod egress;
mod handoff;
mod hostile;
mod inprocess;
mod inputs;
mod languages;
mod reload;
mod sandbox;
mod service;
mod udp;
