//! Figures per round, the table, comparisons and targets.

use crate::clients::{Load, Setups, quantile_us};
use crate::stats::{check, median, ratio};

/// Smallest inspected request rate, as a share of the spliced one.
const RATE_TARGET: f64 = 0.5;
/// Largest p50 latency inspection adds to a request, in µs.
const ADDED_P50_TARGET_US: f64 = 1000.0;

/// One path's figures, one entry per round.
#[derive(Default)]
pub(crate) struct Figures {
    pub(crate) req_s: Vec<f64>,
    pub(crate) load_p50_us: Vec<f64>,
    pub(crate) load_p99_us: Vec<f64>,
    pub(crate) gateway_us_per_req: Vec<f64>,
    pub(crate) busy: Vec<f64>,
    pub(crate) lat_p50_us: Vec<f64>,
    pub(crate) lat_p99_us: Vec<f64>,
    pub(crate) connect_p50_us: Vec<f64>,
    pub(crate) handshake_p50_us: Vec<f64>,
    pub(crate) first_p50_us: Vec<f64>,
    pub(crate) setup_gateway_us: Vec<f64>,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
}

impl Figures {
    pub(crate) fn add_load(&mut self, l: Load) {
        self.req_s.push(l.requests as f64 / l.secs);
        self.load_p50_us.push(quantile_us(&l.latencies_ns, 0.5));
        self.load_p99_us.push(quantile_us(&l.latencies_ns, 0.99));
        self.gateway_us_per_req
            .push(l.gateway_cpu * 1e6 / l.requests.max(1) as f64);
        self.busy.push(l.busy * 100.0);
        self.error(l.errors, l.first_error);
    }

    pub(crate) fn add_latency(&mut self, ns: &[u64]) {
        self.lat_p50_us.push(quantile_us(ns, 0.5));
        self.lat_p99_us.push(quantile_us(ns, 0.99));
    }

    pub(crate) fn add_setups(&mut self, s: Setups) {
        self.connect_p50_us.push(quantile_us(&s.connect_ns, 0.5));
        self.handshake_p50_us
            .push(quantile_us(&s.handshake_ns, 0.5));
        self.first_p50_us.push(quantile_us(&s.first_ns, 0.5));
        self.setup_gateway_us
            .push(s.gateway_cpu * 1e6 / s.first_ns.len().max(1) as f64);
        self.error(s.errors, s.first_error);
    }

    fn error(&mut self, n: u64, first: Option<String>) {
        self.errors += n;
        if self.first_error.is_none() {
            self.first_error = first;
        }
    }
}

/// The leaf cache over many names: one pass of new names, then the same names again.
pub(crate) struct NamesRun {
    pub(crate) names: usize,
    /// (hits, misses) counted by the gateway during each pass.
    pub(crate) first: (u64, u64),
    pub(crate) again: (u64, u64),
    pub(crate) first_setups: Setups,
    pub(crate) again_setups: Setups,
}

pub(crate) struct Setting {
    pub(crate) cores: usize,
    pub(crate) rounds: usize,
    pub(crate) clients: usize,
    pub(crate) load_secs: f64,
    pub(crate) latency_secs: f64,
    pub(crate) setups: usize,
    pub(crate) propagated_ms: f64,
    /// Leaf cache (hits, misses) from the first inspected session to the end of the rounds.
    pub(crate) leaf_cache: (u64, u64),
}

/// Median over rounds of `a[r] - b[r]`.
fn added(a: &[f64], b: &[f64]) -> f64 {
    median(a.iter().zip(b).map(|(x, y)| x - y).collect())
}

fn hit_rate((hits, misses): (u64, u64)) -> String {
    let total = hits + misses;
    if total == 0 {
        return "no lookups".into();
    }
    format!(
        "{:.2}% (hits {hits}, misses {misses})",
        hits as f64 * 100.0 / total as f64
    )
}

pub(crate) fn print(s: &Setting, spliced: &Figures, inspected: &Figures, names: &NamesRun) {
    let med = |v: &Vec<f64>| median(v.clone());
    let cell = |v: &Vec<f64>, prec: usize| {
        if v.is_empty() {
            format!("{:>12}", "-")
        } else {
            format!("{:>12.*}", prec, med(v))
        }
    };
    let row = |label: &str, a: String, b: String, r: String| {
        println!("{label:<40}{a}{b}  {r}");
    };
    println!();
    println!(
        "inspection bench: {} cores; perimeter serve + perimeter gateway (--worker-threads 1, \
         decision log at info into its file); HTTPS upstream in a network namespace (veth, \
         198.51.100.226:443); inspection reached the gateway {:.0} ms after the PUT; medians \
         of {} rounds",
        s.cores, s.propagated_ms, s.rounds
    );
    println!(
        "load: {} keep-alive clients per path, {:.1} s per run; latency: 1 client, {:.1} s per \
         run; setups: {} per path per round, one at a time",
        s.clients, s.load_secs, s.latency_secs, s.setups
    );
    println!();
    println!(
        "{:<40}{:>12}{:>12}  median of per-round inspected vs spliced",
        "", "spliced", "inspected"
    );
    let rate = ratio(&inspected.req_s, &spliced.req_s);
    row(
        &format!("requests/s, {} clients", s.clients),
        cell(&spliced.req_s, 0),
        cell(&inspected.req_s, 0),
        format!("{rate:.2}x spliced"),
    );
    row(
        "  request p50 under load, µs",
        cell(&spliced.load_p50_us, 1),
        cell(&inspected.load_p50_us, 1),
        format!(
            "{:+.1} µs",
            added(&inspected.load_p50_us, &spliced.load_p50_us)
        ),
    );
    row(
        "  request p99 under load, µs",
        cell(&spliced.load_p99_us, 1),
        cell(&inspected.load_p99_us, 1),
        String::new(),
    );
    row(
        "  gateway CPU µs per request",
        cell(&spliced.gateway_us_per_req, 1),
        cell(&inspected.gateway_us_per_req, 1),
        format!(
            "{:.2}x spliced",
            ratio(&inspected.gateway_us_per_req, &spliced.gateway_us_per_req)
        ),
    );
    row(
        "  machine busy, %",
        cell(&spliced.busy, 0),
        cell(&inspected.busy, 0),
        String::new(),
    );
    let added_p50 = added(&inspected.lat_p50_us, &spliced.lat_p50_us);
    row(
        "request p50, 1 client, µs",
        cell(&spliced.lat_p50_us, 1),
        cell(&inspected.lat_p50_us, 1),
        format!("{added_p50:+.1} µs added"),
    );
    row(
        "request p99, 1 client, µs",
        cell(&spliced.lat_p99_us, 1),
        cell(&inspected.lat_p99_us, 1),
        format!(
            "{:+.1} µs",
            added(&inspected.lat_p99_us, &spliced.lat_p99_us)
        ),
    );
    row(
        "setup p50: CONNECT answered, µs",
        cell(&spliced.connect_p50_us, 1),
        cell(&inspected.connect_p50_us, 1),
        "(spliced dials first)".into(),
    );
    row(
        "setup p50: CONNECT + handshake, µs",
        cell(&spliced.handshake_p50_us, 1),
        cell(&inspected.handshake_p50_us, 1),
        format!(
            "{:+.1} µs",
            added(&inspected.handshake_p50_us, &spliced.handshake_p50_us)
        ),
    );
    row(
        "setup p50: + first response, µs",
        cell(&spliced.first_p50_us, 1),
        cell(&inspected.first_p50_us, 1),
        format!(
            "{:+.1} µs (inspected dials upstream here)",
            added(&inspected.first_p50_us, &spliced.first_p50_us)
        ),
    );
    row(
        "  gateway CPU µs per setup",
        cell(&spliced.setup_gateway_us, 1),
        cell(&inspected.setup_gateway_us, 1),
        String::new(),
    );
    println!(
        "leaf cache hit rate, every inspected session up to the end of the rounds: {}",
        hit_rate(s.leaf_cache)
    );
    let n = names.names;
    let p50 = |v: &[u64]| quantile_us(v, 0.5);
    println!(
        "leaf cache over {n} names (*.{}), one session each: first pass {} -> setup p50 {:.1} \
         µs (first response {:.1} µs); again {} -> setup p50 {:.1} µs (first response {:.1} µs)",
        crate::NAMES_DOMAIN,
        hit_rate(names.first),
        p50(&names.first_setups.handshake_ns),
        p50(&names.first_setups.first_ns),
        hit_rate(names.again),
        p50(&names.again_setups.handshake_ns),
        p50(&names.again_setups.first_ns),
    );
    for (label, f) in [("spliced", spliced), ("inspected", inspected)] {
        if f.errors > 0 {
            println!(
                "{label}: {} errors (first: {})",
                f.errors,
                f.first_error.as_deref().unwrap_or("?")
            );
        }
    }
    for (label, s) in [
        ("names, first pass", &names.first_setups),
        ("names, again", &names.again_setups),
    ] {
        if s.errors > 0 {
            println!(
                "{label}: {} errors (first: {})",
                s.errors,
                s.first_error.as_deref().unwrap_or("?")
            );
        }
    }
    println!();
    println!("targets (medians of per-round comparisons):");
    check(
        "inspected requests/s >= 0.5x spliced",
        rate >= RATE_TARGET,
        format!("{rate:.2}x"),
    );
    check(
        "added request p50 (1 client) <= 1 ms",
        added_p50 <= ADDED_P50_TARGET_US,
        format!("{added_p50:+.1} µs"),
    );
    let per_round: Vec<String> = inspected
        .req_s
        .iter()
        .zip(&spliced.req_s)
        .map(|(a, b)| format!("{:.2}", a / b))
        .collect();
    let per_round_p50: Vec<String> = inspected
        .lat_p50_us
        .iter()
        .zip(&spliced.lat_p50_us)
        .map(|(a, b)| format!("{:+.0}", a - b))
        .collect();
    println!(
        "per round: requests/s ratio [{}], added p50 µs [{}]",
        per_round.join(" "),
        per_round_p50.join(" ")
    );
}
