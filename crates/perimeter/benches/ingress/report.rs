//! Figures per round, the table, ratios and targets.

use crate::bulk::Bulk;
use crate::cc::BulkSetup;
use crate::connects::Setups;
use crate::stats::{check, median, ratio};

/// Bulk runs, one figure per round.
#[derive(Default)]
pub(crate) struct BulkFigs {
    pub(crate) mibs: Vec<f64>,
    /// The relay's CPU seconds per GiB: `perimeter serve`'s or HAProxy's (on the direct path,
    /// serve's: what it spends meanwhile without relaying anything).
    pub(crate) gateway_cpu_per_gib: Vec<f64>,
    pub(crate) bench_cpu_per_gib: Vec<f64>,
    pub(crate) busy: Vec<f64>,
}

impl BulkFigs {
    pub(crate) fn add(&mut self, b: &Bulk) {
        let gib = b.bytes as f64 / (1u64 << 30) as f64;
        self.mibs.push(b.bytes as f64 / (1 << 20) as f64 / b.secs);
        self.gateway_cpu_per_gib.push(b.gateway_cpu / gib);
        self.bench_cpu_per_gib.push(b.bench_cpu / gib);
        self.busy.push(b.busy * 100.0);
    }
}

/// Setup runs, one figure per round.
#[derive(Default)]
pub(crate) struct SetupFigs {
    pub(crate) p50_us: Vec<f64>,
    pub(crate) p99_us: Vec<f64>,
    pub(crate) done: Vec<f64>,
    pub(crate) gateway_us: Vec<f64>,
    pub(crate) bench_us: Vec<f64>,
    pub(crate) busy: Vec<f64>,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
}

impl SetupFigs {
    pub(crate) fn add(&mut self, s: Setups) {
        let done = s.ns.len().max(1) as f64;
        self.p50_us.push(s.quantile_us(0.5));
        self.p99_us.push(s.quantile_us(0.99));
        self.done.push(s.ns.len() as f64);
        self.gateway_us.push(s.gateway_cpu * 1e6 / done);
        self.bench_us.push(s.bench_cpu * 1e6 / done);
        self.busy.push(s.busy * 100.0);
        self.errors += s.errors;
        if self.first_error.is_none() {
            self.first_error = s.first_error;
        }
    }
}

/// A path's figures: direct to the workload, through the ingress listener, or through HAProxy.
#[derive(Default)]
pub(crate) struct Figures {
    pub(crate) bulk: BulkFigs,
    pub(crate) setups: SetupFigs,
}

pub(crate) struct Setting {
    pub(crate) command: String,
    pub(crate) cores: usize,
    pub(crate) entries: u64,
    pub(crate) allowlist_load_secs: f64,
    pub(crate) propagated_secs: f64,
    pub(crate) bulk_mib: u64,
    pub(crate) setups: u64,
    pub(crate) clients: usize,
    pub(crate) rounds: usize,
    pub(crate) bulk: BulkSetup,
    /// HAProxy's version line, when it ran.
    pub(crate) haproxy: Option<String>,
}

/// Largest p50 added by the ingress listener to a connection's setup, in µs.
const SETUP_TARGET_US: f64 = 50.0;
/// Smallest bulk rate through the ingress listener, as a share of direct.
const BULK_TARGET: f64 = 0.9;

/// Print the run: `direct` and `ingress` always, and HAProxy's column (`reference`) when it
/// ran. Targets compare the ingress listener with direct; HAProxy's figures are reported beside
/// them, never folded into a target.
pub(crate) fn print(s: &Setting, direct: &Figures, ingress: &Figures, reference: Option<&Figures>) {
    let med = |v: &Vec<f64>| median(v.clone());
    let cell = |v: &Vec<f64>, prec: usize| {
        if v.is_empty() {
            format!("{:>12}", "-")
        } else {
            format!("{:>12.*}", prec, med(v))
        }
    };
    // The reference's cell of a figure (`pick` chooses it), or nothing without HAProxy.
    let third = |pick: &dyn Fn(&Figures) -> &Vec<f64>, prec: usize| {
        reference.map(|r| cell(pick(r), prec)).unwrap_or_default()
    };
    let row = |label: &str, d: String, i: String, h: String, r: String| {
        println!("{label:<36}{d}{i}{h}  {r}");
    };
    let b = &s.bulk;
    let bulk_cc = b.same().map(str::to_string);
    println!();
    println!("command: {}", s.command);
    println!(
        "ingress bench: {} cores; perimeter serve (SQLite, embedded gateway) in front of a \
         loopback workload; IP allowlist of {} entries ({} x 10.x.y.0/24 + 127.0.0.0/8, the \
         clients'), loaded through the API in {:.1} s, applied by the gateway {:.1} s later; \
         bulk {} MiB per run; {} setups per run, {} client thread(s); medians of {} rounds{}",
        s.cores,
        s.entries,
        s.entries.saturating_sub(1),
        s.allowlist_load_secs,
        s.propagated_secs,
        s.bulk_mib,
        s.setups,
        s.clients,
        s.rounds,
        s.haproxy
            .as_deref()
            .map(|v| format!("; reference: {v}"))
            .unwrap_or_default()
    );
    println!(
        "host TCP congestion control: {} (available: {}); bulk runs on: {}",
        b.host_cc,
        b.available.join(" "),
        match (&bulk_cc, &b.unset_why) {
            (Some(cc), _) if b.set_cc.is_some() =>
                format!("{cc} for all paths (set for those runs, then restored)"),
            (Some(cc), _) => format!("{cc} for all paths (the host's)"),
            (None, why) => format!(
                "the host's {} ({}): the gateway alone sends to loopback on cubic, so no \
                 target is judged on it",
                b.host_cc,
                why.as_deref().unwrap_or("no common one")
            ),
        }
    );
    println!();
    println!(
        "{:<36}{:>12}{:>12}{}  median of per-round ingress vs direct",
        "",
        "direct",
        "ingress",
        if reference.is_some() {
            format!("{:>12}", "haproxy")
        } else {
            String::new()
        }
    );
    let have_bulk = !direct.bulk.mibs.is_empty();
    let bulk_ratio = ratio(&ingress.bulk.mibs, &direct.bulk.mibs);
    if have_bulk {
        let on = bulk_cc.as_deref().unwrap_or(&b.host_cc);
        println!("bulk, one connection, on {on}:");
        row(
            "  MiB/s",
            cell(&direct.bulk.mibs, 0),
            cell(&ingress.bulk.mibs, 0),
            third(&|f| &f.bulk.mibs, 0),
            format!("{bulk_ratio:.2}x direct"),
        );
        row(
            "  relay process CPU s per GiB",
            cell(&direct.bulk.gateway_cpu_per_gib, 3),
            cell(&ingress.bulk.gateway_cpu_per_gib, 3),
            third(&|f| &f.bulk.gateway_cpu_per_gib, 3),
            "(direct: serve idle beside the run)".into(),
        );
        row(
            "  client+workload CPU s per GiB",
            cell(&direct.bulk.bench_cpu_per_gib, 3),
            cell(&ingress.bulk.bench_cpu_per_gib, 3),
            third(&|f| &f.bulk.bench_cpu_per_gib, 3),
            String::new(),
        );
        row(
            "  machine busy %",
            cell(&direct.bulk.busy, 0),
            cell(&ingress.bulk.busy, 0),
            third(&|f| &f.bulk.busy, 0),
            String::new(),
        );
    }
    let have_setups = !direct.setups.p50_us.is_empty();
    let p50_added: Vec<f64> = ingress
        .setups
        .p50_us
        .iter()
        .zip(&direct.setups.p50_us)
        .map(|(i, d)| i - d)
        .collect();
    let p99_added: Vec<f64> = ingress
        .setups
        .p99_us
        .iter()
        .zip(&direct.setups.p99_us)
        .map(|(i, d)| i - d)
        .collect();
    if have_setups {
        println!("connection setup (connect, 1 byte out, 1 byte echoed, close):");
        row(
            "  p50 µs",
            cell(&direct.setups.p50_us, 1),
            cell(&ingress.setups.p50_us, 1),
            third(&|f| &f.setups.p50_us, 1),
            format!("{:+.1} µs", med(&p50_added)),
        );
        row(
            "  p99 µs",
            cell(&direct.setups.p99_us, 1),
            cell(&ingress.setups.p99_us, 1),
            third(&|f| &f.setups.p99_us, 1),
            format!("{:+.1} µs", med(&p99_added)),
        );
        row(
            "  relay process CPU µs per setup",
            cell(&direct.setups.gateway_us, 1),
            cell(&ingress.setups.gateway_us, 1),
            third(&|f| &f.setups.gateway_us, 1),
            "(direct: serve idle beside the run)".into(),
        );
        row(
            "  client+workload CPU µs per setup",
            cell(&direct.setups.bench_us, 1),
            cell(&ingress.setups.bench_us, 1),
            third(&|f| &f.setups.bench_us, 1),
            String::new(),
        );
        row(
            "  machine busy %",
            cell(&direct.setups.busy, 0),
            cell(&ingress.setups.busy, 0),
            third(&|f| &f.setups.busy, 0),
            String::new(),
        );
        row(
            "  setups measured per run",
            cell(&direct.setups.done, 0),
            cell(&ingress.setups.done, 0),
            third(&|f| &f.setups.done, 0),
            String::new(),
        );
        println!(
            "{:<36}{:>12}{:>12}{}",
            "  setup errors",
            direct.setups.errors,
            ingress.setups.errors,
            reference
                .map(|r| format!("{:>12}", r.setups.errors))
                .unwrap_or_default()
        );
        for (name, f) in named(direct, ingress, reference) {
            if let Some(e) = &f.setups.first_error {
                println!("  first {name} setup error: {e}");
            }
        }
    }

    let list = |v: &Vec<f64>, prec: usize| {
        v.iter()
            .map(|x| format!("{x:.prec$}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("per round:");
    for (name, f) in named(direct, ingress, reference) {
        println!(
            "  {name:<8} bulk MiB/s [{}]  relay CPU s/GiB [{}]  setup p50 µs [{}]  p99 µs [{}]",
            list(&f.bulk.mibs, 0),
            list(&f.bulk.gateway_cpu_per_gib, 3),
            list(&f.setups.p50_us, 1),
            list(&f.setups.p99_us, 1),
        );
    }
    println!(
        "  ingress/direct bulk [{}]  setup p50 added µs [{}]",
        list(
            &ingress
                .bulk
                .mibs
                .iter()
                .zip(&direct.bulk.mibs)
                .map(|(i, d)| i / d)
                .collect(),
            2
        ),
        list(&p50_added, 1)
    );
    if let Some(h) = reference {
        println!(
            "  haproxy/direct bulk [{}]  setup p50 added µs [{}]",
            list(&per_round(&h.bulk.mibs, &direct.bulk.mibs, |h, d| h / d), 2),
            list(
                &per_round(&h.setups.p50_us, &direct.setups.p50_us, |h, d| h - d),
                1
            )
        );
    }

    if let Some(h) = reference {
        println!();
        println!(
            "reference, not a target: HAProxy (same allowlist as an ACL, one thread per core, \
             1 MiB pipes, a log line per connection; splicing always for bulk, splice-auto for \
             setups)"
        );
        if have_bulk && bulk_cc.is_none() {
            println!(
                "  bulk: not compared (the gateway sends to loopback on cubic, HAProxy on the \
                 host's {})",
                b.host_cc
            );
        } else if have_bulk {
            println!(
                "  bulk: haproxy {:.2}x direct; ingress {:.2}x haproxy; relay CPU per GiB, \
                 ingress vs haproxy: {:.2}x",
                ratio(&h.bulk.mibs, &direct.bulk.mibs),
                ratio(&ingress.bulk.mibs, &h.bulk.mibs),
                ratio(
                    &ingress.bulk.gateway_cpu_per_gib,
                    &h.bulk.gateway_cpu_per_gib
                ),
            );
        }
        if have_setups {
            let h_added = per_round(&h.setups.p50_us, &direct.setups.p50_us, |h, d| h - d);
            let vs = per_round(&ingress.setups.p50_us, &h.setups.p50_us, |i, h| i - h);
            println!(
                "  setup: haproxy adds {:+.1} µs at p50; ingress {:+.1} µs vs haproxy; relay CPU \
                 per setup, ingress vs haproxy: {:.2}x",
                med(&h_added),
                med(&vs),
                ratio(&ingress.setups.gateway_us, &h.setups.gateway_us),
            );
        }
    }

    println!();
    println!("targets:");
    if have_bulk {
        match &bulk_cc {
            Some(cc) => check(
                &format!("bulk >= {BULK_TARGET}x direct (both on {cc})"),
                bulk_ratio >= BULK_TARGET,
                format!("{bulk_ratio:.2}x"),
            ),
            None => println!(
                "  bulk target: SKIPPED (no common congestion control: {}); {bulk_ratio:.2}x on \
                 the host's",
                b.unset_why.as_deref().unwrap_or("?")
            ),
        }
    }
    if have_setups {
        let added = med(&p50_added);
        let errors = direct.setups.errors + ingress.setups.errors;
        check(
            &format!("setup p50 added <= {SETUP_TARGET_US} µs"),
            added <= SETUP_TARGET_US && errors == 0,
            format!(
                "{added:+.1} µs{}",
                if errors > 0 {
                    format!("; {errors} setups failed")
                } else {
                    String::new()
                }
            ),
        );
    }
}

/// The paths that ran, by name.
fn named<'a>(
    direct: &'a Figures,
    ingress: &'a Figures,
    reference: Option<&'a Figures>,
) -> Vec<(&'static str, &'a Figures)> {
    let mut v = vec![("direct", direct), ("ingress", ingress)];
    v.extend(reference.map(|r| ("haproxy", r)));
    v
}

/// `f` of each round's pair of figures.
fn per_round(a: &[f64], b: &[f64], f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| f(*x, *y)).collect()
}
