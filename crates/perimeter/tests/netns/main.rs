//! End to end through real network namespaces: `perimeter serve` + `perimeter gateway` as real
//! processes, driven with curl and `openssl s_client`, against upstreams that stand on ordinary
//! ("public") addresses inside a network namespace these tests create.
//!
//! Loopback is a special address, so FQDN rules can only be shown to work against upstreams on
//! addresses the guard does not refuse. DESIGN "Address guard" leaves the documentation ranges
//! off its list for exactly this: the upstreams stand on 198.51.100.0/24 and 203.0.113.0/24
//! (never 192.0.2.0/24 or fd00::/64, which are this machine's own network).
//!
//! # Fixture ([`fixture::Net`])
//!
//! The gateway, the control plane and the clients (curl, openssl) run in the root namespace; the
//! gateway listens on loopback. Each [`fixture::Net`] holds one *slot* `n` in 0..8 (an abstract Unix
//! socket is the lock, so concurrent test processes never share one, and a dead process frees
//! its slot) and owns, for that slot:
//!
//! ```text
//!  root namespace                            namespace pnt-<n>-u-<pid> ("upstreams")
//!  gateway, serve, curl, openssl             python upstream (HTTP :80, TLS :443)
//!  pnt<n>a<pid> 198.51.100.(16n+1)/28 ══════ pnt<n>b<pid> 198.51.100.(16n+2)/28
//!   routes (/32, via 198.51.100.(16n+2)):      allowed  198.51.100.(16n+10)/32
//!     203.0.113.(16n+10)  10.213.<n>.10          denied   203.0.113.(16n+10)/32
//!     [169.254.169.254, with the metadata lock]  private  10.213.<n>.10/32
//!                                                [metadata 169.254.169.254/32]
//!                                              no default route: nothing else is reachable
//!
//!  pnt<n>w<pid> 203.0.113.(16n+1)/30 ═══════ namespace pnt-<n>-w-<pid> ("workload", optional)
//!                                            pnt<n>x<pid> 203.0.113.(16n+2)/30
//!                                            default via 203.0.113.(16n+1): its only way out
//!                                            is the root namespace (for transparent mode)
//! ```
//!
//! Every address a test sends to is on loopback or routed into these namespaces by a /32 (or
//! the /28 of the link), so even a gateway that wrongly allowed something could not reach
//! beyond them. 169.254.169.254 is routed into the namespace only by a fixture that asked for
//! it, under a machine-wide lock; tests without it never name that address. The gateway
//! resolves with a hosts file and a DNS server on loopback made here (never the machine's).
//! Drop (also while unwinding from a panic) kills the upstream, deletes the routes, the veth
//! pairs and the namespaces; a slot's leftovers from a killed process are removed when the slot
//! is next taken.
//!
//! # Layout
//!
//! - [`fixture`]: the namespaces, the upstreams in them, the hosts file and DNS server;
//! - [`clients`]: curl and `openssl s_client` through the proxy, raw bytes, the workload's curl;
//! - [`case`]: named cases (a request; its verdict, reason and what reached the upstreams) and
//!   the runner of their tables;
//! - one file per scenario, each a policy and a gateway running tables of cases:
//!   [`default_deny`] (with the tables of [`addresses`], [`names`], [`consistency`] and
//!   [`paths`]), [`allow_all`], [`rule_states`], [`transparent`] and [`endpoints`] (private
//!   endpoints in transparent mode: the DNS listener and the redirect);
//! - [`inspection`]: path rules over HTTPS with TLS inspection on (the plain HTTP path tricks
//!   inside inspected tunnels, Host against SNI, never-inspect, an upstream certificate that
//!   does not name it; upstream certificates expired or from an untrusted CA, TLS 1.2
//!   renegotiation and TLS 1.3 early data inside an inspected session);
//! - [`inspection_clients`]: curl, the aws CLI and boto3 through inspection to an HTTPS object
//!   store with its own CA (moto), trusting only the cluster CA: the allowed bucket is written,
//!   another bucket on the same host is refused and never reached;
//! - [`creds`]: the aws CLI with `perimeter creds serve`'s credentials, writing to moto's S3
//!   through the gateway while a rule allows it, refused once it is gone;
//! - [`bypasses`]: the bypasses and wrong answers found under attack (issue 8), against real
//!   servers (Python's `http.server` and Node's `http`) besides the fixture's own upstreams.

mod addresses;
mod allow_all;
mod bypasses;
mod case;
mod clients;
mod consistency;
mod creds;
mod default_deny;
mod endpoints;
mod fixture;
mod inspection;
mod inspection_clients;
mod inspection_h2;
mod names;
mod paths;
mod rule_states;
mod transparent;

use std::path::Path;

use perimeter_testkit::api::{create_cluster, gateway_token, wait_gateways_applied};
use perimeter_testkit::{Gateway, Server, serve_supports};

use crate::fixture::Net;

pub const BIN: &str = env!("CARGO_BIN_EXE_perimeter");

/// `perimeter serve` for one scenario, its embedded gateways off (when the binary has them):
/// only the gateways a test starts acknowledge snapshots.
pub fn start_serve(dir: &Path, extra: &[&str]) -> Server {
    let mut args: Vec<&str> = extra.to_vec();
    if serve_supports(BIN, "--no-embedded-gateways") {
        args.push("--no-embedded-gateways");
    }
    Server::start(BIN, dir, &args, &[])
}

/// A control plane, one cluster in us-east-1 and one gateway of it (named `gateway`, started
/// with `args`), resolving with the slot's hosts file and DNS server: the start of every
/// scenario.
pub struct Perimeter {
    pub s: Server,
    pub key: String,
    pub cid: String,
    pub gw: Gateway,
}

/// Start a [`Perimeter`] for `net`, and wait until its gateway applied a snapshot.
pub fn start_perimeter(net: &Net, cluster: &str, gateway: &str, args: &[&str]) -> Perimeter {
    start_perimeter_on(net, cluster, gateway, args, &[])
}

/// [`start_perimeter`] with further `serve` flags (e.g. `--database-url`).
pub fn start_perimeter_on(
    net: &Net,
    cluster: &str,
    gateway: &str,
    args: &[&str],
    serve_args: &[&str],
) -> Perimeter {
    let s = start_serve(&net.dir.path().join("cp"), serve_args);
    let key = s.admin_key_file();
    let cid = create_cluster(&s, &key, cluster, &["us-east-1"]);
    let token = gateway_token(&s, &key, &cid, "us-east-1", gateway);
    let gw = Gateway::start_with(
        BIN,
        net.dir.path(),
        &s.url,
        &token,
        "us-east-1",
        &net.dir.path().join("gw-state"),
        &net.hosts,
        &net.dns,
        args,
    );
    wait_gateways_applied(&s, &key, &cid, 1);
    Perimeter { s, key, cid, gw }
}
