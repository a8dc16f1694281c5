//! `decide` on 100,000 mixed rules: compile time, snapshot memory (RSS delta) and per-call
//! latency of `decide_target` + `decide_address` (the gateway's path: the target, then the
//! dialled address) over a mixed query set: exact and wildcard hits, misses, IPv4 and IPv6 CIDR
//! hits, special literals, and allowed names resolving to special addresses. Names have 4 to
//! 11 labels, 37 bytes on average and 41% of them over 32 bytes, as cloud service names do.
//!
//! Targets: median <= 0.5 µs per decision, snapshot <= 64 MiB; each is printed with PASS or
//! FAIL.
//!
//! `cargo bench -p perimeter-policy --bench decide`
//!
//! Hand-rolled (std only): the data is generated from a fixed seed, timed in batches of 1,000
//! decisions, and the per-call time is batch time / batch size; the median over 3,000 batches
//! is the figure (a batch the scheduler interrupts lands in the tail, not the median). The
//! load average and the CPU time the rest of the host took while timing are printed, so a busy
//! neighbour shows.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use perimeter_policy::{
    BackendDoc, Destination, EndpointDoc, Hostname, PolicyDocument, RuleDoc, RuleType, Snapshot,
    TrafficPolicy, compile,
};

const RULES: usize = 100_000;
const DOMAINS: usize = 5_000;
const QUERIES: usize = 20_000;
const BATCH: usize = 1_000;
const BATCHES: usize = 3_000;
/// Targets: median decision time, and snapshot size.
const TARGET_NS: f64 = 500.0;
const TARGET_MIB: f64 = 64.0;

/// splitmix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const PORT_SETS: [&[u16]; 5] = [&[443], &[80, 443], &[], &[8443, 9092], &[5432]];

/// Resident set size in bytes, from /proc/self/status (VmRSS).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// CPU time (user + system, in clock ticks) of the whole host and of this process, from
/// /proc/stat and /proc/self/stat.
fn cpu_ticks() -> (u64, u64) {
    let host = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            let cpu = stat.lines().next()?.strip_prefix("cpu ")?.to_owned();
            let fields: Vec<u64> = cpu
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
            Some(fields.iter().take(8).sum::<u64>() - fields.get(3)? - fields.get(4)?)
        })
        .unwrap_or(0);
    let own = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the command name (which may hold spaces): utime and stime are the
            // 14th and 15th fields of the line.
            let rest = stat.rsplit_once(')')?.1.to_owned();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    (host, own)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn public_v4(rng: &mut Rng) -> Ipv4Addr {
    loop {
        let a = Ipv4Addr::from(rng.next() as u32);
        let first = a.octets()[0];
        // Keep generated rules out of special space: those are queried separately.
        if !matches!(
            first,
            0 | 10 | 100 | 127 | 169 | 172 | 192 | 198 | 203 | 224..=255
        ) {
            return a;
        }
    }
}

fn public_v6(rng: &mut Rng) -> Ipv6Addr {
    let hi = 0x2400_u128 + (rng.next() % 0x300) as u128;
    Ipv6Addr::from((hi << 112) | (u128::from(rng.next()) << 48) | u128::from(rng.next() >> 16))
}

struct Built {
    doc: PolicyDocument,
    exact: Vec<(String, &'static [u16], bool)>,
    wildcard: Vec<(String, &'static [u16])>,
    cidrs: Vec<(IpAddr, u8, &'static [u16])>,
}

/// Middle labels of cloud service names (2-3 labels each).
const SERVICES: [&str; 5] = [
    "s3.dualstack",
    "blob.core",
    "compute.internal",
    "kafka.prod",
    "api.gw",
];
const REGIONS: [&str; 4] = ["us-east-1", "eu-west-1", "ap-southeast-2", "eu-central-1"];

/// Middle labels between a rule's first label and its domain: none beyond one label (half the
/// rules, 4-label names), a cloud service and region (6-7 labels, 40-50 bytes), or a deep
/// cluster name (9-10 labels, 60-80 bytes), as real service names are.
fn middle(rng: &mut Rng) -> String {
    let service = rng.pick(&SERVICES);
    let region = rng.pick(&REGIONS);
    match rng.below(10) {
        0..=4 => format!("t{}", rng.below(50)),
        5..=7 => format!("{service}.{region}"),
        _ => format!(
            "p{}.{service}.{region}.cluster-{}",
            rng.below(50),
            rng.below(50)
        ),
    }
}

fn build(rng: &mut Rng) -> Built {
    let mut rules = Vec::with_capacity(RULES);
    let mut exact = Vec::new();
    let mut wildcard = Vec::new();
    let mut cidrs = Vec::new();
    for i in 0..RULES {
        let ports: &'static [u16] = PORT_SETS[rng.below(PORT_SETS.len())];
        let domain = format!("d{}-corp.com", rng.below(DOMAINS));
        let roll = rng.below(100);
        let mut paths = Vec::new();
        let (rule_type, destination) = if roll < 45 {
            let name = format!("svc{i}.{}.{domain}", middle(rng));
            let with_paths = rng.below(10) == 0;
            if with_paths {
                paths = vec!["/v1/*".to_owned(), "/health".to_owned()];
            }
            exact.push((name.clone(), ports, with_paths));
            (RuleType::Fqdn, name)
        } else if roll < 80 {
            let suffix = match rng.below(4) {
                0 => format!("x.w{i}.{domain}"),
                1 => format!("w{i}.{}.{domain}", middle(rng)),
                _ => format!("w{i}.{domain}"),
            };
            wildcard.push((suffix.clone(), ports));
            (RuleType::Fqdn, format!("*.{suffix}"))
        } else if roll < 90 {
            let len = 16 + rng.below(17) as u8;
            let net = ipnet::Ipv4Net::new(public_v4(rng), len).unwrap().trunc();
            cidrs.push((IpAddr::V4(net.network()), len, ports));
            (RuleType::Cidr, net.to_string())
        } else {
            let len = 32 + rng.below(97) as u8;
            let net = ipnet::Ipv6Net::new(public_v6(rng), len).unwrap().trunc();
            cidrs.push((IpAddr::V6(net.network()), len, ports));
            (RuleType::Cidr, net.to_string())
        };
        rules.push(RuleDoc {
            id: format!("00000000-0000-4000-8000-{i:012x}"),
            name: format!("rule-{i}"),
            rule_type,
            destination,
            ports: ports.to_vec(),
            paths,
            crl_managed: rng.below(100) == 0,
        });
    }
    let private_endpoints = (0..10)
        .map(|i| EndpointDoc {
            id: format!("pe-{i}"),
            endpoint_address: format!("pe-{i}.endpoints.perimeter.example.net"),
            domain_names: vec![format!("*.kafka{i}.confluent.example.net")],
            backends: vec![BackendDoc::plain(format!("10.100.0.{i}:9092"))],
            region: "us-east-1".to_owned(),
            connection_id: format!("pe-{i}-connection"),
            ports: vec![],
            proxy_protocol: false,
            special_addresses: false,
        })
        .collect();
    Built {
        doc: PolicyDocument {
            format: 1,
            version: 1,
            cluster_id: "bench-cluster".to_owned(),
            traffic_policy: TrafficPolicy::DefaultDeny,
            rules,
            ingress: Default::default(),
            private_endpoints,
            tls_inspection: None,
        },
        exact,
        wildcard,
        cidrs,
    }
}

enum Dest {
    Name(Hostname),
    Ip,
}

struct Query {
    dest: Dest,
    addr: IpAddr,
    port: u16,
    path: Option<&'static str>,
}

fn port_in(rng: &mut Rng, ports: &[u16]) -> u16 {
    if ports.is_empty() {
        rng.pick(&[443, 8080, 5432][..]).to_owned()
    } else {
        *rng.pick(ports)
    }
}

const SPECIAL: [&str; 8] = [
    "127.0.0.1",
    "10.1.2.3",
    "169.254.169.254",
    "fd00:ec2::254",
    "::ffff:127.0.0.1",
    "64:ff9b::7f00:1",
    "100.64.0.1",
    "192.168.0.10",
];

fn queries(rng: &mut Rng, built: &Built) -> Vec<Query> {
    let public = |rng: &mut Rng| IpAddr::V4(Ipv4Addr::new(203, 0, 113, rng.below(256) as u8));
    let mut out = Vec::with_capacity(QUERIES);
    let mut kinds = [0usize; 6];
    for _ in 0..QUERIES {
        let roll = rng.below(100);
        let q = if roll < 30 {
            kinds[0] += 1;
            let (name, ports, with_paths) = rng.pick(&built.exact);
            Query {
                dest: Dest::Name(name.parse().unwrap()),
                addr: public(rng),
                port: port_in(rng, ports),
                path: if *with_paths {
                    Some("/v1/objects/a")
                } else {
                    None
                },
            }
        } else if roll < 55 {
            kinds[1] += 1;
            let (suffix, ports) = rng.pick(&built.wildcard);
            // Names below the suffix, one to three labels deeper.
            let name = match rng.below(4) {
                0 => format!(
                    "a{}.b{}.h{}.{suffix}",
                    rng.below(10),
                    rng.below(10),
                    rng.below(1000)
                ),
                1 => format!("b{}.h{}.{suffix}", rng.below(10), rng.below(1000)),
                _ => format!("h{}.{suffix}", rng.below(1000)),
            };
            Query {
                dest: Dest::Name(name.parse().unwrap()),
                addr: public(rng),
                port: port_in(rng, ports),
                path: None,
            }
        } else if roll < 75 {
            kinds[2] += 1;
            // Under the rules' domains, as deep as their names, but named by no rule.
            let name = format!(
                "a{}.b{}.{}.d{}-corp.com",
                rng.next() % 1000,
                rng.below(100),
                middle(rng),
                rng.below(DOMAINS)
            );
            Query {
                dest: Dest::Name(name.parse().unwrap()),
                addr: public(rng),
                port: 443,
                path: None,
            }
        } else if roll < 88 {
            kinds[3] += 1;
            let (net, len, ports) = *rng.pick(&built.cidrs);
            let addr = match net {
                IpAddr::V4(a) => {
                    let host = if len == 32 {
                        0
                    } else {
                        (rng.next() as u32) >> len
                    };
                    IpAddr::V4(Ipv4Addr::from(u32::from(a) | host))
                }
                IpAddr::V6(a) => {
                    let host = if len == 128 {
                        0
                    } else {
                        u128::from(rng.next()) >> (len.max(64) - 64)
                    };
                    IpAddr::V6(Ipv6Addr::from(u128::from(a) | host))
                }
            };
            Query {
                dest: Dest::Ip,
                addr,
                port: port_in(rng, ports),
                path: None,
            }
        } else if roll < 95 {
            kinds[4] += 1;
            Query {
                dest: Dest::Ip,
                addr: rng.pick(&SPECIAL).parse().unwrap(),
                port: 443,
                path: None,
            }
        } else {
            kinds[5] += 1;
            // A name allowed by a rule that resolves to a special address (DNS rebinding).
            let (name, ports, _) = rng.pick(&built.exact);
            Query {
                dest: Dest::Name(name.parse().unwrap()),
                addr: rng.pick(&SPECIAL).parse().unwrap(),
                port: port_in(rng, ports),
                path: Some("/v1/x"),
            }
        };
        out.push(q);
    }
    println!(
        "queries: {QUERIES} (exact hits {}, wildcard hits {}, misses {}, CIDR hits {}, special literals {}, names to special {})",
        kinds[0], kinds[1], kinds[2], kinds[3], kinds[4], kinds[5]
    );
    let names: Vec<&str> = out
        .iter()
        .filter_map(|q| match &q.dest {
            Dest::Name(name) => Some(name.as_str()),
            Dest::Ip => None,
        })
        .collect();
    let labels: Vec<usize> = names.iter().map(|n| n.split('.').count()).collect();
    let v6 = out
        .iter()
        .filter(|q| matches!(q.dest, Dest::Ip) && q.addr.is_ipv6())
        .count();
    println!(
        "query names: {:.1} labels on average (max {}), {:.0} bytes on average, {:.0}% longer than 32 bytes; IPv6 literals: {v6}",
        labels.iter().sum::<usize>() as f64 / labels.len() as f64,
        labels.iter().max().unwrap_or(&0),
        names.iter().map(|n| n.len()).sum::<usize>() as f64 / names.len() as f64,
        100.0 * names.iter().filter(|n| n.len() > 32).count() as f64 / names.len() as f64,
    );
    out
}

fn own(addr: IpAddr) -> bool {
    addr == IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99))
}

#[inline(never)]
fn decide_one(snapshot: &Snapshot, q: &Query) -> bool {
    let dest = match &q.dest {
        Dest::Name(name) => Destination::Name(name),
        Dest::Ip => Destination::Ip(q.addr),
    };
    let target = snapshot.decide_target(dest, q.port, q.path);
    if let Some(decision) = target.final_decision() {
        return decision.is_allowed();
    }
    snapshot
        .decide_address(&target, q.addr, q.port, &own)
        .is_allowed()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() {
    let mut rng = Rng(0x005e_ed0f_9e41_3e7e);
    let rss_start = rss();
    let built = build(&mut rng);
    let rss_doc = rss();
    println!(
        "document: {} rules ({} exact FQDN, {} wildcard FQDN, {} CIDR), {} private endpoints; RSS +{:.1} MiB",
        built.doc.rules.len(),
        built.exact.len(),
        built.wildcard.len(),
        built.cidrs.len(),
        built.doc.private_endpoints.len(),
        mib(rss_doc as i64 - rss_start as i64)
    );

    let started = Instant::now();
    let snapshot = compile(&built.doc).expect("bench document compiles");
    let compile_time = started.elapsed();
    let rss_compiled = rss();
    println!("compile: {:.0} ms", compile_time.as_secs_f64() * 1000.0);
    println!("{snapshot:?}");

    let queries = queries(&mut rng, &built);
    let Built {
        doc,
        exact,
        wildcard,
        cidrs,
    } = built;
    let rss_before_drop = rss();
    drop((doc, exact, wildcard, cidrs));
    let rss_after_drop = rss();
    let snapshot_delta = rss_compiled as i64 - rss_doc as i64;
    println!(
        "RSS: start {:.1} MiB, with document {:.1} MiB, after compile (document alive) {:.1} MiB, after dropping document {:.1} MiB (queries held)",
        mib(rss_start as i64),
        mib(rss_doc as i64),
        mib(rss_compiled as i64),
        mib(rss_after_drop as i64),
    );
    println!(
        "RSS delta of compile with the document alive: {:.1} MiB (snapshot plus compile garbage the allocator kept); after dropping the document the process is {:.1} MiB above start, {:.1} MiB freed by the drop",
        mib(snapshot_delta),
        mib(rss_after_drop as i64 - rss_start as i64),
        mib(rss_before_drop as i64 - rss_after_drop as i64),
    );

    let snapshot = std::sync::Arc::new(snapshot);
    // Warm up, and count verdicts once.
    let allowed = queries.iter().filter(|q| decide_one(&snapshot, q)).count();
    println!("allowed {allowed} of {} queries", queries.len());

    let load_before = loadavg();
    let (host_before, own_before) = cpu_ticks();
    let timing = Instant::now();
    let mut per_call_ns = Vec::with_capacity(BATCHES);
    let mut offset = 0;
    let mut total = Duration::ZERO;
    for _ in 0..BATCHES {
        let batch = &queries[offset..offset + BATCH];
        offset = (offset + BATCH) % (QUERIES - BATCH);
        let started = Instant::now();
        let mut n = 0usize;
        for q in batch {
            n += usize::from(decide_one(black_box(&snapshot), black_box(q)));
        }
        black_box(n);
        let elapsed = started.elapsed();
        total += elapsed;
        per_call_ns.push(elapsed.as_nanos() as f64 / BATCH as f64);
    }
    let wall = timing.elapsed().as_secs_f64();
    let (host_after, own_after) = cpu_ticks();
    per_call_ns.sort_by(f64::total_cmp);
    let median = percentile(&per_call_ns, 0.5);
    let p99 = percentile(&per_call_ns, 0.99);
    println!(
        "{} calls in {BATCHES} batches of {BATCH}: per call median {median:.0} ns, p99 of batches {p99:.0} ns, min {:.0} ns, max {:.0} ns",
        BATCHES * BATCH,
        per_call_ns[0],
        per_call_ns[per_call_ns.len() - 1],
    );
    // Clock ticks are 1/100 s on Linux.
    let others = host_after.saturating_sub(host_before) as f64 / 100.0
        - own_after.saturating_sub(own_before) as f64 / 100.0;
    println!(
        "while timing ({wall:.1} s): load average {load_before} -> {}, other processes used {:.1} CPU",
        loadavg(),
        (others / wall).max(0.0),
    );
    let snapshot_mib = mib(snapshot_delta);
    println!("targets:");
    println!(
        "  decide median <= {TARGET_NS:.0} ns   {}  ({median:.0} ns, {:.2}x the target)",
        verdict(median <= TARGET_NS),
        median / TARGET_NS
    );
    println!(
        "  snapshot <= {TARGET_MIB:.0} MiB       {}  ({snapshot_mib:.1} MiB)",
        verdict(snapshot_mib <= TARGET_MIB),
    );
    black_box(total);
}
