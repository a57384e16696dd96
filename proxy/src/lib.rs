//! remesh-proxy: the cluster. A proxy runs in front of each node's REAPI backend,
//! finds the other proxies by SWIM gossip, sends each Execute to a lightly loaded
//! node, and routes every later call about an operation to the node that owns it.
//!
//! # Layout
//! - `config`: the TOML file, flags and environment, validated; `config_security`:
//!   the TLS and gossip-key flags; `config_security_rules`: which security
//!   settings fit together (shared gRPC port or a separate peer port).
//! - `server`: binds everything together; `run(config, listeners, shutdown)`, or
//!   `prepare` (config checked, certificates and keyring loaded) then `serve`.
//! - `security`: a node's TLS configs, connectors and gossip socket, loaded at start.
//! - `grpc_server`: the HTTP/2 accept loop serving the service stack on a listener.
//! - `listener_security`: what a listener (client, shared or peer port) demands of a
//!   connection, and whether that connection is a peer.
//! - `edge`: the outermost layer, where errors become gRPC statuses.
//! - `route`: which node serves a call (pass-through, Execute, operation names).
//! - `channel`: pooled HTTP/2 connections to an upstream (one per peer, a few to the
//!   backend), on h2's client.
//! - `wire`: gRPC framing and protobuf walking, for reading and renaming without
//!   re-encoding.
//! - `operation_name`: `remesh/<node_id>/<backend name>`.
//! - `hop`: the single-hop rule for forwarded requests.
//! - `listener_tls`: the shared gRPC port's TLS, for clients and mesh peers at once.
//! - `tls`, `gossip_seal`: TLS configs with hot reload; sealed gossip packets.
//! - `membership`: SWIM gossip (foca) over UDP, load records as broadcasts, the
//!   published cluster view.
//! - `mesh`: the router's side of the cluster: view, peer channels, own forwards.
//! - `balance`: `PeerSelector` policies, pure functions of a load snapshot.
//! - `admin`: the status page, `/metrics`, `/healthz`, `/readyz`, `/cluster`.
//! - `trace_context`: W3C `traceparent` read into each request's span.
//! - `load`: a node's load, from the executor or counted by the proxy.
//! - `metrics`: Prometheus families.
//! - `body`: the body type every layer passes on.
//! - `batched_socket`: TCP under HTTP/2 with batched reads and writes.
//! - `fuzzing`: entry points of the fuzz targets in `fuzz/`.
//!
//! The binary (`main.rs`) adds `serve` (one proxy) and `up` (`up.rs`: a loopback
//! cluster of executors and proxies for trying remesh and for tests; `up_children.rs`:
//! the processes it started, stopped by pid; `up_pki.rs`: its throwaway mesh CA).
#![forbid(unsafe_code)]

pub mod admin;
pub mod balance;
pub mod batched_socket;
pub mod body;
pub mod channel;
pub mod config;
pub mod config_security;
pub mod config_security_rules;
pub mod edge;
pub mod fill;
pub mod flow_control;
pub mod fuzzing;
pub mod gossip_seal;
pub mod grpc_method;
pub mod grpc_server;
pub mod hop;
pub mod listener_security;
pub mod listener_tls;
pub mod load;
pub mod membership;
pub mod mesh;
pub mod metrics;
pub mod operation_name;
pub mod route;
pub mod security;
pub mod server;
pub mod stream_pool;
pub mod tls;
pub mod trace_context;
pub mod wire;

pub use config::{Config, ServeArgs};
pub use server::{Listeners, Prepared, ReadyLine, RunError, prepare, run};
