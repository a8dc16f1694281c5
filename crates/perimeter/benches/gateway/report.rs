//! Figures and report.

use std::time::Duration;

use crate::bulk::Bulk;
use crate::cc::{BulkSetup, SAME_CC};
use crate::clients::{PathKind, Tunnels};
use crate::idle::Idle;
use crate::stats::{check, median, ratio};
use crate::{CLIENTS, RULE_CONCURRENCY};

#[derive(Default)]
pub(crate) struct BulkFigs {
    pub(crate) mibs: Vec<f64>,
    pub(crate) cpu_per_gib: Vec<f64>,
    pub(crate) bench_cpu_per_gib: Vec<f64>,
    pub(crate) busy: Vec<f64>,
}

impl BulkFigs {
    pub(crate) fn add(&mut self, b: &Bulk) {
        let gib = b.bytes as f64 / (1u64 << 30) as f64;
        self.mibs.push(b.bytes as f64 / (1 << 20) as f64 / b.secs);
        self.cpu_per_gib.push(b.proxy_cpu / gib);
        self.bench_cpu_per_gib.push(b.bench_cpu / gib);
        self.busy.push(b.busy * 100.0);
    }
}

#[derive(Default)]
pub(crate) struct TunnelFigs {
    pub(crate) per_s: Vec<f64>,
    pub(crate) cpu_us: Vec<f64>,
    pub(crate) bench_us: Vec<f64>,
    pub(crate) busy: Vec<f64>,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
}

impl TunnelFigs {
    pub(crate) fn add(&mut self, t: Tunnels) {
        let done = t.done.max(1) as f64;
        self.per_s.push(t.done as f64 / t.secs);
        self.cpu_us.push(t.proxy_cpu * 1e6 / done);
        self.bench_us.push(t.bench_cpu * 1e6 / done);
        self.busy.push(t.busy * 100.0);
        self.errors += t.errors;
        if self.first_error.is_none() {
            self.first_error = t.first_error;
        }
    }
}

#[derive(Default)]
pub(crate) struct Figures {
    /// Bulk with one congestion control for all.
    pub(crate) bulk_same: BulkFigs,
    /// Bulk under the host's own congestion control (the gateway's loopback tweak engaged).
    pub(crate) bulk_host: BulkFigs,
    pub(crate) ip: TunnelFigs,
    pub(crate) name: TunnelFigs,
    pub(crate) idle: Option<Idle>,
}

pub(crate) struct Setting {
    pub(crate) cores: usize,
    pub(crate) rules: u64,
    pub(crate) rules_load: Duration,
    pub(crate) ready: Duration,
    pub(crate) bulk_mib: u64,
    /// Interleaved uploads a contender's bulk run is made of.
    pub(crate) bulk_segments: u64,
    pub(crate) tunnel_secs: f64,
    pub(crate) rounds: usize,
    pub(crate) bulk: BulkSetup,
    pub(crate) nofile: u64,
}

pub(crate) struct Report<'a> {
    pub(crate) figs: &'a [(&'a str, &'a Figures)],
    /// Bulk through the gateway's private endpoint forwarder.
    pub(crate) forwarder: &'a Figures,
    pub(crate) set: Setting,
    pub(crate) changes: Vec<Duration>,
}

impl Report<'_> {
    pub(crate) fn get(&self, name: &str) -> Option<&Figures> {
        self.figs.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    pub(crate) fn row(
        &self,
        label: &str,
        prec: usize,
        pick: &dyn Fn(&Figures) -> &Vec<f64>,
        direct: bool,
    ) {
        let cell = |name: &str| match self.get(name).map(pick) {
            Some(v) if !v.is_empty() && (direct || name != "direct") => {
                format!("{:>12.*}", prec, median(v.clone()))
            }
            _ => format!("{:>12}", "-"),
        };
        println!(
            "{label:<38}{}{}{}",
            cell("direct"),
            cell("perimeter"),
            cell("squid")
        );
    }

    pub(crate) fn print(&self) {
        let s = &self.set;
        let none = Figures::default();
        let (direct, per, sq) = (
            self.get("direct").unwrap_or(&none),
            self.get("perimeter").unwrap_or(&none),
            self.get("squid"),
        );
        println!();
        println!(
            "gateway bench: {} cores; {} FQDN rules (one names the sinks) + 1 CIDR rule \
             (127.0.0.0/8), DEFAULT_DENY; gateway --worker-threads 1 and Squid workers 1, \
             decision log and access log on; {CLIENTS} clients x {} s per tunnel run; bulk {} \
             MiB per run, in {} interleaved uploads; medians of {} rounds",
            s.cores, s.rules, s.tunnel_secs, s.bulk_mib, s.bulk_segments, s.rounds
        );
        println!(
            "rules loaded through the API in {:.1} s ({:.0} rules/s, {RULE_CONCURRENCY} \
             requests at a time; the API has no bulk call); gateway serving them {:.1} s later",
            s.rules_load.as_secs_f64(),
            s.rules as f64 / s.rules_load.as_secs_f64().max(1e-9),
            s.ready.as_secs_f64()
        );
        let b = &s.bulk;
        println!(
            "host TCP congestion control: {} (available: {}); same-cc bulk runs on: {}",
            b.host_cc,
            b.available.join(" "),
            match (b.same(), &b.unset_why) {
                (Some(cc), _) if b.set_cc.is_some() =>
                    format!("{cc} (set for those runs, then restored)"),
                (Some(cc), _) => format!("{cc} (the host's; the gateway's tweak does not engage)"),
                (None, Some(why)) => format!("not possible ({why})"),
                (None, None) => "not possible".into(),
            }
        );
        println!("RLIMIT_NOFILE of the bench and the proxies: {}", s.nofile);
        println!(
            "{:<38}{:>12}{:>12}{:>12}",
            "", "direct", "perimeter", "squid"
        );
        let have_bulk = !direct.bulk_same.mibs.is_empty() || !direct.bulk_host.mibs.is_empty();
        if have_bulk {
            if let Some(cc) = b.same() {
                println!("bulk, one tunnel, all on {cc}:");
                self.row("  MiB/s", 0, &|f| &f.bulk_same.mibs, true);
                self.row(
                    "  proxy CPU s per GiB",
                    3,
                    &|f| &f.bulk_same.cpu_per_gib,
                    false,
                );
                self.row(
                    "  client+sink CPU s per GiB",
                    3,
                    &|f| &f.bulk_same.bench_cpu_per_gib,
                    true,
                );
                self.row("  machine busy %", 0, &|f| &f.bulk_same.busy, true);
                let fw = &self.forwarder.bulk_same;
                if !fw.mibs.is_empty() {
                    println!(
                        "{:<38}{:>12.0}  (CONNECT <endpoint_address>:PORT through the gateway)",
                        "  private endpoint forwarder MiB/s",
                        median(fw.mibs.clone())
                    );
                    println!(
                        "{:<38}{:>12.3}",
                        "  forwarder CPU s per GiB",
                        median(fw.cpu_per_gib.clone())
                    );
                }
            }
            if !direct.bulk_host.mibs.is_empty() {
                println!(
                    "bulk on the host's {} (gateway sends to loopback on {SAME_CC}):",
                    b.host_cc
                );
                self.row("  MiB/s", 0, &|f| &f.bulk_host.mibs, true);
                self.row(
                    "  proxy CPU s per GiB",
                    3,
                    &|f| &f.bulk_host.cpu_per_gib,
                    false,
                );
            }
        }
        for (path, pick, what) in [
            (
                PathKind::Ip,
                (|f: &Figures| &f.ip) as fn(&Figures) -> &TunnelFigs,
                "CONNECT 127.0.0.N:PORT, HTTP request",
            ),
            (
                PathKind::Name,
                |f: &Figures| &f.name,
                "CONNECT sink-N.bench.test:PORT, ClientHello",
            ),
        ] {
            if pick(direct).per_s.is_empty() {
                continue;
            }
            println!("{} ({what}):", path.label());
            self.row("  tunnels/s", 0, &|f| &pick(f).per_s, true);
            self.row("  proxy CPU us per tunnel", 1, &|f| &pick(f).cpu_us, false);
            self.row(
                "  client+sinks CPU us per tunnel",
                1,
                &|f| &pick(f).bench_us,
                true,
            );
            self.row("  machine busy %", 0, &|f| &pick(f).busy, true);
            println!(
                "{:<38}{:>12}{:>12}{:>12}",
                "  tunnel errors",
                pick(direct).errors,
                pick(per).errors,
                sq.map_or("-".into(), |f| pick(f).errors.to_string())
            );
        }
        let idle_row = |label: &str, f: &dyn Fn(&Idle) -> String| {
            let cell =
                |x: Option<&Figures>| x.and_then(|x| x.idle.as_ref()).map_or("-".to_string(), f);
            println!(
                "{label:<38}{:>12}{:>12}{:>12}",
                "-",
                cell(Some(per)),
                cell(sq)
            );
        };
        if let Some(i) = &per.idle {
            println!(
                "idle tunnels (name path, ClientHello answered, then idle; {} asked{}):",
                i.requested,
                if i.wanted < i.requested {
                    format!(
                        ", RLIMIT_NOFILE {} leaves the gateway room for {}",
                        s.nofile, i.wanted
                    )
                } else {
                    String::new()
                }
            );
            idle_row("  held / room for", &|i| format!("{}/{}", i.held, i.wanted));
            idle_row("  proxy descriptors before / held", &|i| {
                format!("{}/{}", i.fds_before, i.fds_held)
            });
            idle_row("  seconds to open", &|i| format!("{:.1}", i.open_secs));
            idle_row("  proxy RSS before, MiB", &|i| {
                format!("{:.1}", i.rss_before_kib as f64 / 1024.0)
            });
            idle_row("  proxy RSS held, MiB", &|i| {
                format!("{:.1}", i.rss_after_kib as f64 / 1024.0)
            });
            idle_row("  KiB per idle tunnel", &|i| {
                format!("{:.2}", i.kib_per_tunnel())
            });
        }
        println!(
            "{:<38}{:>12.0} ms median (runs: {})",
            "rule change to ACTIVE",
            self.change_ms(),
            self.changes
                .iter()
                .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (name, f) in self.figs {
            for (path, t) in [("IP", &f.ip), ("name", &f.name)] {
                if let Some(e) = &t.first_error {
                    println!("  first {name} {path}-path error: {e}");
                }
            }
            if let Some(e) = f.idle.as_ref().and_then(|i| i.first_error.as_ref()) {
                println!("  first {name} idle-tunnel error: {e}");
            }
        }
        let list = |v: &Vec<f64>, prec: usize| {
            v.iter()
                .map(|x| format!("{x:.prec$}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!("per round:");
        for (name, f) in self.figs {
            println!(
                "  {name:<10} bulk MiB/s same cc [{}] host cc [{}]  CPU s/GiB same cc [{}]",
                list(&f.bulk_same.mibs, 0),
                list(&f.bulk_host.mibs, 0),
                list(&f.bulk_same.cpu_per_gib, 3),
            );
            println!(
                "  {:<10} tunnels/s IP [{}] name [{}]  CPU us/tunnel IP [{}] name [{}]",
                "",
                list(&f.ip.per_s, 0),
                list(&f.name.per_s, 0),
                list(&f.ip.cpu_us, 1),
                list(&f.name.cpu_us, 1)
            );
        }
        let fw = &self.forwarder.bulk_same;
        if !fw.mibs.is_empty() {
            // Per round, as the ratio's median is taken: each against that round's direct run.
            let vs_direct: Vec<f64> = fw
                .mibs
                .iter()
                .zip(&direct.bulk_same.mibs)
                .map(|(f, d)| f / d)
                .collect();
            println!(
                "  {:<10} bulk MiB/s same cc [{}]  CPU s/GiB same cc [{}]  / direct [{}]",
                "forwarder",
                list(&fw.mibs, 0),
                list(&fw.cpu_per_gib, 3),
                list(&vs_direct, 2),
            );
        }
        self.ratios_and_targets(direct, per, sq);
    }

    pub(crate) fn change_ms(&self) -> f64 {
        median(self.changes.iter().map(|d| d.as_secs_f64() * 1e3).collect())
    }

    pub(crate) fn ratios_and_targets(&self, direct: &Figures, per: &Figures, sq: Option<&Figures>) {
        let s = &self.set;
        println!();
        println!("ratios (median of per-round ratios):");
        let same = s.bulk.same().map(str::to_string);
        let have_same = !direct.bulk_same.mibs.is_empty() && same.is_some();
        let bulk_same = ratio(&per.bulk_same.mibs, &direct.bulk_same.mibs);
        let mut gib = None;
        if have_same {
            let cc = same.as_deref().unwrap_or("");
            println!("  bulk, all on {cc}: perimeter / direct            {bulk_same:.2}x");
            if let Some(sq) = sq {
                println!(
                    "  bulk, all on {cc}: squid / direct                {:.2}x",
                    ratio(&sq.bulk_same.mibs, &direct.bulk_same.mibs)
                );
                let g = ratio(&per.bulk_same.cpu_per_gib, &sq.bulk_same.cpu_per_gib);
                println!("  bulk, all on {cc}: perimeter / squid CPU per GiB {g:.2}x");
                gib = Some(g);
            }
        }
        let fw = &self.forwarder.bulk_same;
        let forwarder = (have_same && !fw.mibs.is_empty()).then(|| {
            let cc = same.as_deref().unwrap_or("");
            let mibs = ratio(&fw.mibs, &direct.bulk_same.mibs);
            let cpu = ratio(&fw.cpu_per_gib, &per.bulk_same.cpu_per_gib);
            println!("  bulk, all on {cc}: forwarder / direct            {mibs:.2}x");
            println!("  bulk, all on {cc}: forwarder / egress CPU per GiB {cpu:.2}x");
            (cc.to_string(), mibs, cpu)
        });
        if !direct.bulk_host.mibs.is_empty() {
            // The tweak on its own line: under the host's bbr only the gateway's sends to a
            // loopback peer run cubic.
            let host = ratio(&per.bulk_host.mibs, &direct.bulk_host.mibs);
            let squid_host = sq.map_or(String::new(), |sq| {
                format!(
                    ", squid / direct {:.2}x",
                    ratio(&sq.bulk_host.mibs, &direct.bulk_host.mibs)
                )
            });
            println!(
                "  loopback tweak (in no ratio above): on the host's {}, where only the gateway \
                 sends on {SAME_CC}, perimeter / direct {host:.2}x{squid_host}",
                s.bulk.host_cc
            );
        }
        let mut path_ratios = Vec::new();
        for (label, pick) in [
            (
                "IP path  ",
                (|f: &Figures| &f.ip) as fn(&Figures) -> &TunnelFigs,
            ),
            ("name path", |f: &Figures| &f.name),
        ] {
            let label = label.trim();
            if pick(direct).per_s.is_empty() {
                continue;
            }
            if let Some(sq) = sq {
                let tps = ratio(&pick(per).per_s, &pick(sq).per_s);
                let cpu = ratio(&pick(per).cpu_us, &pick(sq).cpu_us);
                println!("  {label:<9}: perimeter / squid tunnels/s          {tps:.2}x");
                println!("  {label:<9}: perimeter / squid CPU per tunnel     {cpu:.2}x");
                path_ratios.push((label, tps, cpu));
            }
            println!(
                "  {label:<9}: perimeter / direct tunnels/s         {:.2}x",
                ratio(&pick(per).per_s, &pick(direct).per_s)
            );
        }
        if let (Some(p), Some(q)) = (per.idle.as_ref(), sq.and_then(|f| f.idle.as_ref())) {
            println!(
                "  idle tunnels: perimeter / squid memory per tunnel {:.2}x",
                p.kib_per_tunnel() / q.kib_per_tunnel()
            );
        }

        println!();
        println!("targets:");
        if !direct.bulk_same.mibs.is_empty() || !direct.bulk_host.mibs.is_empty() {
            match same.as_deref().filter(|_| have_same) {
                Some(cc) => {
                    check(
                        &format!("bulk >= 0.7x direct (all on {cc})"),
                        bulk_same >= 0.7,
                        format!("{bulk_same:.2}x"),
                    );
                    match gib {
                        Some(g) => check(
                            &format!("CPU per GiB <= 0.5x squid (all on {cc})"),
                            g <= 0.5,
                            format!("{g:.2}x"),
                        ),
                        None => println!("  CPU per GiB vs squid: SKIPPED (no squid)"),
                    }
                }
                None => println!(
                    "  bulk targets: SKIPPED (no common congestion control: {})",
                    s.bulk.unset_why.as_deref().unwrap_or("?")
                ),
            }
        }
        if let Some((cc, mibs, cpu)) = forwarder {
            check(
                &format!("forwarder bulk >= 0.9x direct (all on {cc})"),
                mibs >= 0.9,
                format!("{mibs:.2}x"),
            );
            check(
                &format!("forwarder CPU per GiB <= the egress path's (all on {cc})"),
                cpu <= 1.0,
                format!("{cpu:.2}x"),
            );
        }
        if sq.is_none() && !direct.ip.per_s.is_empty() {
            println!("  tunnel targets: SKIPPED (no squid)");
        }
        for (label, tps, cpu) in path_ratios {
            check(
                &format!("{label}: tunnels/s >= 2x squid"),
                tps >= 2.0,
                format!("{tps:.2}x"),
            );
            check(
                &format!("{label}: CPU per tunnel <= 0.5x squid"),
                cpu <= 0.5,
                format!("{cpu:.2}x"),
            );
        }
        if let Some(i) = &per.idle {
            let k = i.kib_per_tunnel();
            check(
                &format!("memory per idle tunnel <= 8 KiB ({} held)", i.held),
                k <= 8.0 && i.held == i.wanted,
                format!(
                    "{k:.2} KiB{}",
                    if i.held < i.requested {
                        format!("; {} of the {} asked", i.held, i.requested)
                    } else {
                        String::new()
                    }
                ),
            );
        }
        let change_ms = self.change_ms();
        check(
            "rule change to ACTIVE <= 1 s",
            change_ms <= 1000.0,
            format!("{change_ms:.0} ms"),
        );
    }
}
