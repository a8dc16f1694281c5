//! The query path without sockets ([`answer_bytes`]): what each kind of name gets, that a
//! refused name is never asked of the upstream server, truncation, malformed input; and a
//! property test that no input makes the handler panic or answer outside the specification.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::proto::op::{Message, Query};
use perimeter_policy::{
    EndpointDoc, POLICY_FORMAT, PolicyDocument, RuleDoc, RuleType, TrafficPolicy, compile,
};
use proptest::prelude::*;
use tokio::sync::watch;

use super::*;
use crate::decision::DecisionSink;
use crate::dns::{Resolver, ResolverConfig};
use crate::listen::{GatewayLimits, OwnAddresses};

const TRANSPARENT: &str = "127.0.0.77";
const CLIENT: &str = "127.0.0.1:40000";

fn rule(id: &str, destination: &str, rule_type: RuleType) -> RuleDoc {
    RuleDoc {
        id: id.into(),
        name: format!("rule {id}"),
        rule_type,
        destination: destination.into(),
        ports: vec![443],
        paths: vec![],
        crl_managed: false,
    }
}

fn policy(traffic_policy: TrafficPolicy) -> PolicyDocument {
    PolicyDocument {
        format: POLICY_FORMAT,
        version: 3,
        cluster_id: "c-1".into(),
        traffic_policy,
        rules: vec![
            rule("r-api", "api.example.com", RuleType::Fqdn),
            rule("r-many", "many.example.com", RuleType::Fqdn),
            rule("r-private", "rebind.example.com", RuleType::Fqdn),
            rule("r-mixed", "mixed.example.com", RuleType::Fqdn),
            rule("r-missing", "missing.example.com", RuleType::Fqdn),
        ],
        ingress: Default::default(),
        private_endpoints: vec![EndpointDoc {
            id: "pe-1".into(),
            endpoint_address: "pe-1.endpoints.example.net".into(),
            domain_names: vec!["*.kafka.example.org".into()],
            backends: vec![perimeter_policy::BackendDoc::plain("127.0.0.1:9092")],
            region: "us-east-1".into(),
            connection_id: "pe-1-connection".into(),
            ports: vec![],
            proxy_protocol: false,
            special_addresses: true,
        }],
        tls_inspection: None,
    }
}

/// A UDP socket standing as the gateway's upstream DNS server: it answers nothing and keeps
/// every datagram it receives.
struct Upstream {
    addr: SocketAddr,
    sock: StdUdpSocket,
}

impl Upstream {
    fn new() -> Self {
        let sock = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_nonblocking(true).unwrap();
        Self {
            addr: sock.local_addr().unwrap(),
            sock,
        }
    }

    /// Every datagram received so far.
    fn received(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = self.sock.recv_from(&mut buf) {
            out.push(buf[..n].to_vec());
        }
        out
    }
}

struct Fixture {
    handler: DnsHandler,
    sink: Arc<DecisionSink>,
    upstream: Upstream,
    hosts: PathBuf,
    _snapshots: watch::Sender<Arc<perimeter_policy::Snapshot>>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.hosts);
    }
}

fn fixture(traffic_policy: TrafficPolicy, answer: Option<IpAddr>) -> Fixture {
    let upstream = Upstream::new();
    let hosts = std::env::temp_dir().join(format!(
        "perimeter-dns-listener-{}-{}.hosts",
        std::process::id(),
        rand_suffix()
    ));
    let mut lines = String::from(
        "203.0.113.10 api.example.com\n2001:db8::10 api.example.com\n\
         10.1.2.3 rebind.example.com\n\
         203.0.113.11 mixed.example.com\n169.254.169.254 mixed.example.com\n\
         203.0.113.12 unnamed.example.com\n",
    );
    for i in 1..=60 {
        lines.push_str(&format!("203.0.113.{i} many.example.com\n"));
    }
    std::fs::write(&hosts, lines).unwrap();
    let resolver = Resolver::new(ResolverConfig {
        servers: vec![upstream.addr],
        hosts_file: Some(hosts.clone()),
        timeout: Duration::from_millis(300),
    })
    .unwrap();
    let snap = compile(&policy(traffic_policy)).unwrap();
    let (tx, rx) = watch::channel(Arc::new(snap));
    let sink = DecisionSink::new("us-east-1");
    let ctx = ProxyContext {
        inspection: Default::default(),
        endpoint_answer: None,
        snapshots: rx,
        resolver: Arc::new(resolver),
        limits: GatewayLimits::default(),
        sink: sink.clone(),
        own: OwnAddresses::fixed([]),
    };
    Fixture {
        handler: DnsHandler::new(ctx, answer),
        sink,
        upstream,
        hosts,
        _snapshots: tx,
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 0x4242;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

async fn ask(f: &Fixture, raw: &[u8], protocol: Protocol) -> Message {
    let bytes = tokio::time::timeout(
        Duration::from_secs(10),
        answer_bytes(&f.handler, raw, CLIENT.parse().unwrap(), protocol),
    )
    .await
    .expect("answers in time")
    .expect("an answer");
    Message::from_vec(&bytes).expect("the answer decodes")
}

fn addrs(m: &Message) -> HashSet<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// (destination, verdict, rule, reason) of the recorded events.
fn events(f: &Fixture) -> Vec<(String, &'static str, String, String)> {
    let mut v: Vec<_> = f
        .sink
        .aggregator
        .drain()
        .into_iter()
        .map(|c| (c.destination, c.verdict.as_str(), c.rule_name, c.reason))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn allowed_name_answers_the_addresses_the_gateway_resolved() {
    let f = fixture(TrafficPolicy::DefaultDeny, Some(ip(TRANSPARENT)));
    let a = ask(&f, &query("API.example.com.", RecordType::A), Protocol::Udp).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a.metadata.id, 0x4242);
    assert!(a.metadata.recursion_available);
    assert_eq!(addrs(&a), HashSet::from([ip("203.0.113.10")]));
    assert!(a.answers.iter().all(|r| r.ttl == ANSWER_TTL));
    let aaaa = ask(
        &f,
        &query("api.example.com.", RecordType::AAAA),
        Protocol::Udp,
    )
    .await;
    assert_eq!(addrs(&aaaa), HashSet::from([ip("2001:db8::10")]));
    // Another type of an allowed name: NOERROR, nothing.
    let mx = ask(
        &f,
        &query("api.example.com.", RecordType::MX),
        Protocol::Udp,
    )
    .await;
    assert_eq!(mx.metadata.response_code, ResponseCode::NoError);
    assert!(mx.answers.is_empty());
    assert_eq!(
        events(&f),
        vec![(
            "api.example.com".to_string(),
            "ALLOWED",
            "rule r-api".to_string(),
            "allowed_by_rule".to_string()
        )]
    );
}

#[tokio::test]
async fn unnamed_names_are_refused_and_never_forwarded() {
    let f = fixture(TrafficPolicy::DefaultDeny, Some(ip(TRANSPARENT)));
    for (name, qtype) in [
        ("c2VjcmV0.attacker.example.", RecordType::A),
        ("c2VjcmV0.attacker.example.", RecordType::AAAA),
        ("c2VjcmV0.attacker.example.", RecordType::TXT),
        ("unnamed.example.com.", RecordType::A),
        ("_sip._tcp.attacker.example.", RecordType::SRV),
        ("localhost.", RecordType::A),
    ] {
        let m = ask(&f, &query(name, qtype), Protocol::Udp).await;
        assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{name}");
        assert!(m.answers.is_empty());
    }
    // A query for a name the policy allows but that is not in the hosts file does reach the
    // upstream: the socket works, and it is the only thing that ever reached it.
    let m = ask(
        &f,
        &query("missing.example.com.", RecordType::A),
        Protocol::Udp,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let seen = f.upstream.received();
    assert!(!seen.is_empty(), "the allowed name was resolved upstream");
    for datagram in &seen {
        let q = Message::from_vec(datagram).unwrap();
        for query in &q.queries {
            assert_eq!(query.name().to_ascii(), "missing.example.com.", "{q:?}");
        }
    }
    let ev = events(&f);
    assert!(ev.contains(&(
        "c2VjcmV0.attacker.example".to_lowercase(),
        "DENIED",
        String::new(),
        "no_rule_for_destination".to_string()
    )));
    assert!(ev.contains(&(
        "_sip._tcp.attacker.example".to_string(),
        "DENIED",
        String::new(),
        "dns_invalid_name".to_string()
    )));
    assert!(ev.contains(&(
        "missing.example.com".to_string(),
        "DENIED",
        "rule r-missing".to_string(),
        "dns_timeout".to_string()
    )));
}

#[tokio::test]
async fn endpoint_names_answer_the_transparent_address() {
    let f = fixture(TrafficPolicy::DefaultDeny, Some(ip(TRANSPARENT)));
    for name in ["pe-1.endpoints.example.net.", "b-1.kafka.example.org."] {
        let m = ask(&f, &query(name, RecordType::A), Protocol::Udp).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(addrs(&m), HashSet::from([ip(TRANSPARENT)]), "{name}");
        // The transparent address is IPv4: AAAA has no answer.
        let m = ask(&f, &query(name, RecordType::AAAA), Protocol::Udp).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
    }
    assert!(f.upstream.received().is_empty());
    let ev = events(&f);
    assert!(ev.contains(&(
        "pe-1.endpoints.example.net".to_string(),
        "ALLOWED",
        String::new(),
        "private_endpoint".to_string()
    )));
}

#[tokio::test]
async fn endpoint_names_are_refused_without_a_transparent_listener() {
    let f = fixture(TrafficPolicy::DefaultDeny, None);
    let m = ask(
        &f,
        &query("pe-1.endpoints.example.net.", RecordType::A),
        Protocol::Udp,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(f.upstream.received().is_empty());
    assert_eq!(
        events(&f),
        vec![(
            "pe-1.endpoints.example.net".to_string(),
            "DENIED",
            String::new(),
            "dns_no_transparent_listener".to_string()
        )]
    );
}

#[tokio::test]
async fn addresses_the_guard_refuses_are_never_answered() {
    let f = fixture(TrafficPolicy::DefaultDeny, Some(ip(TRANSPARENT)));
    let m = ask(
        &f,
        &query("rebind.example.com.", RecordType::A),
        Protocol::Udp,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty(), "{m:?}");
    let m = ask(
        &f,
        &query("mixed.example.com.", RecordType::A),
        Protocol::Udp,
    )
    .await;
    assert_eq!(addrs(&m), HashSet::from([ip("203.0.113.11")]));
    let ev = events(&f);
    assert!(ev.contains(&(
        "rebind.example.com".to_string(),
        "DENIED",
        "rule r-private".to_string(),
        "special_address".to_string()
    )));
}

#[tokio::test]
async fn traffic_policies() {
    let f = fixture(TrafficPolicy::AllowAll, Some(ip(TRANSPARENT)));
    let m = ask(
        &f,
        &query("unnamed.example.com.", RecordType::A),
        Protocol::Udp,
    )
    .await;
    assert_eq!(addrs(&m), HashSet::from([ip("203.0.113.12")]));
    assert_eq!(events(&f)[0].3, "allow_all");

    let f = fixture(TrafficPolicy::ReportOnly, Some(ip(TRANSPARENT)));
    let m = ask(
        &f,
        &query("unnamed.example.com.", RecordType::A),
        Protocol::Udp,
    )
    .await;
    assert_eq!(addrs(&m), HashSet::from([ip("203.0.113.12")]));
    assert_eq!(
        events(&f),
        vec![(
            "unnamed.example.com".to_string(),
            "WOULD_DENY",
            String::new(),
            "no_rule_for_destination".to_string()
        )]
    );
    // The guard holds under every policy.
    let m = ask(
        &f,
        &query("rebind.example.com.", RecordType::A),
        Protocol::Udp,
    )
    .await;
    assert!(m.answers.is_empty());
}

#[tokio::test]
async fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
    let f = fixture(TrafficPolicy::DefaultDeny, Some(ip(TRANSPARENT)));
    let raw = query("many.example.com.", RecordType::A);
    let udp = ask(&f, &raw, Protocol::Udp).await;
    assert!(udp.metadata.truncation, "60 A records do not fit 512 bytes");
    assert!(udp.answers.len() < 60);
    let tcp = ask(&f, &raw, Protocol::Tcp).await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 60);
    // An EDNS client with room for them gets them all over UDP.
    let mut m = Message::from_vec(&raw).unwrap();
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    m.set_edns(edns);
    let big = ask(&f, &m.to_vec().unwrap(), Protocol::Udp).await;
    assert!(!big.metadata.truncation);
    assert_eq!(big.answers.len(), 60);
    assert!(big.edns.is_some(), "an EDNS query gets an EDNS answer");
}

#[tokio::test]
async fn malformed_and_unusual_queries() {
    let f = fixture(TrafficPolicy::DefaultDeny, Some(ip(TRANSPARENT)));
    let client: SocketAddr = CLIENT.parse().unwrap();
    // Shorter than a header: no answer at all.
    assert!(
        answer_bytes(&f.handler, b"\x12\x34\x01", client, Protocol::Udp)
            .await
            .is_none()
    );
    // A header that announces a question that is not there.
    let m = ask(
        &f,
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",
        Protocol::Udp,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(m.metadata.id, 0x1234);
    // Two questions.
    let mut two = Message::query();
    two.add_query(Query::query(
        Name::from_ascii("api.example.com.").unwrap(),
        RecordType::A,
    ));
    two.add_query(Query::query(
        Name::from_ascii("b.example.com.").unwrap(),
        RecordType::A,
    ));
    let m = ask(&f, &two.to_vec().unwrap(), Protocol::Udp).await;
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // No question.
    let m = ask(&f, &Message::query().to_vec().unwrap(), Protocol::Udp).await;
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // Another opcode.
    let mut notify = Message::query();
    notify.metadata.op_code = OpCode::Notify;
    notify.add_query(Query::query(
        Name::from_ascii("api.example.com.").unwrap(),
        RecordType::SOA,
    ));
    let m = ask(&f, &notify.to_vec().unwrap(), Protocol::Udp).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
    // Another class.
    let mut chaos = Query::query(Name::from_ascii("version.bind.").unwrap(), RecordType::TXT);
    chaos.set_query_class(DNSClass::CH);
    let mut m = Message::query();
    m.add_query(chaos);
    let m = ask(&f, &m.to_vec().unwrap(), Protocol::Udp).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    // A response is not answered.
    let mut response = Message::from_vec(&query("api.example.com.", RecordType::A)).unwrap();
    response.metadata.message_type = MessageType::Response;
    assert!(
        answer_bytes(
            &f.handler,
            &response.to_vec().unwrap(),
            client,
            Protocol::Udp
        )
        .await
        .is_none()
    );
    assert!(f.upstream.received().is_empty());
}

/// The response codes the listener may give, and when.
fn check_answer(
    raw: &[u8],
    protocol: Protocol,
    answer: Option<Vec<u8>>,
) -> Result<(), TestCaseError> {
    let Some(answer) = answer else {
        // Only a message shorter than a header, or a response, goes unanswered.
        let short = raw.len() < 12;
        let response = raw.len() >= 3 && raw[2] & 0x80 != 0;
        prop_assert!(short || response, "no answer to {raw:?}");
        return Ok(());
    };
    let m = Message::from_vec(&answer).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    prop_assert_eq!(m.metadata.message_type, MessageType::Response);
    prop_assert_eq!(m.metadata.id, u16::from_be_bytes([raw[0], raw[1]]));
    prop_assert!(matches!(
        m.metadata.response_code,
        ResponseCode::NoError
            | ResponseCode::FormErr
            | ResponseCode::Refused
            | ResponseCode::NotImp
            | ResponseCode::NXDomain
            | ResponseCode::ServFail
    ));
    if protocol == Protocol::Udp {
        // 512 bytes, or what an EDNS client advertised up to MAX_UDP_PAYLOAD.
        let limit = Message::from_vec(raw)
            .ok()
            .and_then(|q| q.edns)
            .map_or(512, |e| e.max_payload().clamp(512, MAX_UDP_PAYLOAD));
        prop_assert!(
            answer.len() <= usize::from(limit),
            "UDP answer of {} bytes",
            answer.len()
        );
    }
    Ok(())
}

/// A name: a few labels of letters, digits, hyphens and odd bytes.
fn arb_name() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z0-9_*-]{1,12}", 1..5).prop_map(|labels| labels.join(".") + ".")
}

fn arb_qtype() -> impl Strategy<Value = RecordType> {
    prop_oneof![
        Just(RecordType::A),
        Just(RecordType::AAAA),
        Just(RecordType::TXT),
        Just(RecordType::ANY),
        Just(RecordType::MX),
        any::<u16>().prop_map(RecordType::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..600), tcp in any::<bool>()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let f = fixture(TrafficPolicy::DefaultDeny, Some(ip(TRANSPARENT)));
        let protocol = if tcp { Protocol::Tcp } else { Protocol::Udp };
        let answer = rt.block_on(answer_bytes(&f.handler, &raw, CLIENT.parse().unwrap(), protocol));
        check_answer(&raw, protocol, answer)?;
    }

    #[test]
    fn well_formed_queries_get_what_the_policy_says(
        name in arb_name(),
        qtype in arb_qtype(),
        id in any::<u16>(),
        edns in prop::option::of(0u16..9000),
        policy_name in prop_oneof![
            Just("api.example.com."), Just("pe-1.endpoints.example.net."),
            Just("x.kafka.example.org."), Just("many.example.com."), Just(""),
        ],
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let f = fixture(TrafficPolicy::DefaultDeny, Some(ip(TRANSPARENT)));
        let name = if policy_name.is_empty() { name } else { policy_name.to_string() };
        let Ok(qname) = Name::from_ascii(&name) else { return Ok(()) };
        let mut m = Message::query();
        m.metadata.id = id;
        m.add_query(Query::query(qname, qtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        let raw = m.to_vec().unwrap();
        let answer = rt.block_on(answer_bytes(&f.handler, &raw, CLIENT.parse().unwrap(), Protocol::Udp));
        check_answer(&raw, Protocol::Udp, answer.clone())?;
        let got = Message::from_vec(&answer.unwrap()).unwrap();
        let snap = compile(&policy(TrafficPolicy::DefaultDeny)).unwrap();
        let answerable = name
            .parse::<Hostname>()
            .is_ok_and(|h| snap.answer_name(&h).is_answered());
        if answerable {
            prop_assert_eq!(got.metadata.response_code, ResponseCode::NoError);
        } else {
            prop_assert_eq!(got.metadata.response_code, ResponseCode::Refused);
            prop_assert!(got.answers.is_empty());
        }
        // Nothing the policy does not name ever reaches the upstream.
        prop_assert!(f.upstream.received().is_empty());
    }
}

#[tokio::test]
async fn endpoint_names_of_another_region_are_refused() {
    let f = fixture(TrafficPolicy::DefaultDeny, Some(ip(TRANSPARENT)));
    f.sink.set_region("eu-west-1");
    let m = ask(
        &f,
        &query("pe-1.endpoints.example.net.", RecordType::A),
        Protocol::Udp,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty());
    assert_eq!(
        events(&f),
        vec![(
            "pe-1.endpoints.example.net".to_string(),
            "DENIED",
            String::new(),
            "private_endpoint_other_region".to_string()
        )]
    );
}
