//! Helpers of the end-to-end tests, used only as a `[dev-dependency]`.
//!
//! The tests drive the real `perimeter` binary. Cargo tells an integration test where that
//! binary is (`env!("CARGO_BIN_EXE_perimeter")`) but not a library, so everything that starts
//! it takes the path as its first argument:
//!
//! ```ignore
//! const BIN: &str = env!("CARGO_BIN_EXE_perimeter");
//! let s = Server::start(BIN, dir.path(), &[], &[]);
//! ```
//!
//! - [`serve`] / [`gateway`]: `perimeter serve` and `perimeter gateway` as child processes,
//!   killed on drop;
//! - [`api`]: calls to the control plane's REST API with curl, and the calls tests make often;
//! - [`curl`]: curl itself and reading a response's headers;
//! - [`upstream`] and [`dns`]: a loopback HTTP upstream and a loopback DNS server;
//! - [`lock`] and [`netns`]: machine-wide locks, and the `ip` commands of network-namespace
//!   fixtures;
//! - [`creds`]: `perimeter creds serve` as a process;
//! - [`moto`]: moto's AWS-compatible server and the aws CLI and boto3 of the project's venv;
//! - [`wait`]: polling with a bound, never a bare sleep.
//!
//! Tests send traffic only to loopback or to network namespaces they create.

pub mod api;
pub mod certs;
pub mod clients;
pub mod creds;
pub mod curl;
pub mod dns;
pub mod gateway;
pub mod lock;
pub mod moto;
pub mod netns;
pub mod pg;
pub mod serve;
pub mod tunnel;
pub mod upstream;
pub mod wait;

pub use api::{api, json, ok};
pub use curl::{curl, header_value};
pub use gateway::Gateway;
pub use serve::{Server, serve_supports};
pub use tunnel::connect_tunnel;
pub use upstream::http_upstream;
pub use wait::{output_within, wait_until};
