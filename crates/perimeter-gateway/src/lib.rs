//! Data plane of Perimeter: the egress gateway.
//!
//! The gateway is where the egress policy is enforced:
//!
//! - **listeners** ([`listen`]): an explicit HTTP proxy (`CONNECT host:port` tunnels and absolute-form
//!   `http://` requests, for clients configured with `HTTPS_PROXY`/`HTTP_PROXY`) and a
//!   transparent listener for redirected connections, which takes the destination from the TLS
//!   SNI or the HTTP Host and checks it against the original destination address; and a DNS
//!   listener ([`listen::dns_listener`]) that answers only names the policy lets through;
//! - **policy sync** ([`sync`]): the current compiled snapshot held as a `watch` of `Arc<Snapshot>`,
//!   pulled from the control plane and kept on disk as last-known-good, so a gateway without a
//!   policy denies everything and one that loses the control plane never falls open;
//! - **decision events** ([`decision`]): one structured event and one metric per decision,
//!   and aggregates pushed to the control plane, labelled with the region of the gateway's
//!   [`registration`];
//! - [`control_plane`]: the one client of the control plane the sync and the push share, with
//!   the messages of `perimeter-wire` (the crate the control plane reads and answers them with);
//! - [`runtime`]: one gateway's tasks started and stopped together, as `perimeter gateway` runs
//!   one and `perimeter serve` runs one per cluster region.
//!
//! The pieces they stand on, each tested on its own:
//!
//! - [`tls::client_hello`]: an incremental, bounded ClientHello parser for SNI and ALPN;
//! - [`http_head`]: HTTP/1.x request heads for the proxy, with limits, unambiguous framing,
//!   destinations parsed into normalised hosts, and Host-header consistency: the first head of
//!   every proxy connection, and every host the listeners parse;
//! - [`proxy_protocol`]: a strict, incremental, bounded PROXY protocol v1/v2 header parser, for
//!   the public ingress listeners behind trusted load balancers;
//! - [`dns`]: the only name resolution the gateway does (configured servers, hosts file);
//! - [`original_dst`]: the pre-NAT destination of a redirected connection.
//!
//! Refusals say who caused them: the listeners' `Refusal` carries the status (400 client, 403
//! policy, 502/504 upstream), the decision verdict and the stable `x-perimeter-error` reason.
//!
//! The gateway depends on `perimeter-policy` and `perimeter-wire` only, never on the store or
//! the API.

pub mod control_plane;
pub mod decision;
pub mod dns;
pub mod fuzzing;
pub mod http_head;
pub mod listen;
pub mod original_dst;
pub mod proxy_protocol;
pub mod registration;
pub mod runtime;
pub mod sync;
pub mod tls;

pub use dns::{DnsError, Resolver, ResolverConfig};
pub use http_head::{HeadError, HeadLimits, RequestHead, parse_request_head};
pub use original_dst::original_dst;
pub use tls::{ClientHello, InvalidHello, parse_client_hello};
