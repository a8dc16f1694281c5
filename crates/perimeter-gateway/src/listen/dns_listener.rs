//! The DNS listener (`dns_address`, UDP and TCP on one address): the name service of workloads
//! in transparent mode. Served by `hickory-server`; this module is its request handler.
//!
//! What a query gets ([`Snapshot::answer_name`](perimeter_policy::Snapshot::answer_name)):
//!
//! - a private endpoint's name (its `endpoint_address`, or one of the cluster's endpoint domain
//!   names): the gateway's transparent listener address (A or AAAA, whichever family it is);
//!   REFUSED when the gateway has no transparent listener (logged);
//! - a name the policy allows (an FQDN rule on some port, `ALLOW_ALL`, `REPORT_ONLY`): the
//!   addresses the gateway itself resolved ([`Resolver`](crate::dns::Resolver)), less those the
//!   address guard would not dial for it, so DNS never hands out a rebinding or special address;
//! - every other name: REFUSED, and nothing is asked of any upstream server: a query for
//!   `<secret>.attacker.example` carries nothing out.
//!
//! Other query types of an answerable name get NOERROR with no answers (nothing is resolved).
//! A malformed query gets FORMERR, an opcode other than QUERY NOTIMP, a class other than IN
//! REFUSED. Answers too large for the client's UDP payload size are truncated with TC set (the
//! client retries over TCP). Every answer and refusal of a query is a decision event
//! (destination: the name, port 0) and is counted in `perimeter_dns_responses_total{rcode}`.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::NetError;
use hickory_server::net::runtime::{Time, TokioTime};
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::rdata::{A, AAAA};
use hickory_server::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use perimeter_policy::{Hostname, NameAnswer};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;

use super::ProxyContext;
use super::event::Draft;
use crate::decision::EventVerdict;

/// TTL of the answers: short, so that a workload asks again (and the gateway's own view of
/// the name, which the transparent listener checks, stays the one the workload dials).
pub const ANSWER_TTL: u32 = 30;

/// Largest UDP answer the listener sends to an EDNS client, whatever it advertises (the
/// DNS flag day 2020 figure, which avoids IP fragmentation).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// Most queries resolved at once; past it a query that needs resolution gets SERVFAIL.
pub const MAX_CONCURRENT_RESOLUTIONS: usize = 1024;

/// How long an idle TCP client may keep its connection.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The sockets of a DNS listener, bound by the caller on one address.
pub struct DnsListener {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
    /// What endpoint names answer: the transparent listener's address. `None`: they are
    /// refused.
    pub answer: Option<IpAddr>,
}

impl DnsListener {
    /// Bind UDP and TCP on `addr` (port 0: one free port for both).
    pub async fn bind(addr: SocketAddr, answer: Option<IpAddr>) -> std::io::Result<Self> {
        if addr.port() != 0 {
            let udp = UdpSocket::bind(addr).await?;
            let tcp = TcpListener::bind(addr).await?;
            return Ok(Self { udp, tcp, answer });
        }
        // A port free for UDP may be taken for TCP: try a few.
        let mut last = None;
        for _ in 0..16 {
            let udp = UdpSocket::bind(addr).await?;
            match TcpListener::bind(udp.local_addr()?).await {
                Ok(tcp) => return Ok(Self { udp, tcp, answer }),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no port free for UDP and TCP")))
    }

    /// Where it listens (UDP and TCP).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }
}

/// Serve DNS on `listener` until `shutdown`.
pub async fn serve_dns(
    listener: DnsListener,
    ctx: ProxyContext,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let mut server = Server::new(DnsHandler::new(ctx, listener.answer));
    server.register_socket(listener.udp);
    server.register_listener(listener.tcp, TCP_IDLE_TIMEOUT, 16);
    tracing::info!(%addr, "DNS listener on {addr} (UDP and TCP)");
    let stop = server.shutdown_token().clone();
    let done = tokio::select! {
        r = server.block_until_done() => r,
        _ = shutdown => {
            stop.cancel();
            server.block_until_done().await
        }
    };
    done.map_err(|e| std::io::Error::other(e.to_string()))
}

/// The request handler: the policy's answer for each query.
pub struct DnsHandler {
    ctx: ProxyContext,
    answer: Option<IpAddr>,
    resolutions: Arc<Semaphore>,
}

/// What the handler decided for one query.
struct Outcome {
    code: ResponseCode,
    answers: Vec<Record>,
    /// The decision event's verdict and reason, when the query names a destination.
    event: Option<(EventVerdict, String)>,
    rule: Option<String>,
}

impl Outcome {
    fn code(code: ResponseCode) -> Self {
        Self {
            code,
            answers: Vec::new(),
            event: None,
            rule: None,
        }
    }

    fn with_event(mut self, verdict: EventVerdict, reason: &str) -> Self {
        self.event = Some((verdict, reason.to_string()));
        self
    }
}

impl DnsHandler {
    pub fn new(ctx: ProxyContext, answer: Option<IpAddr>) -> Self {
        Self {
            ctx,
            answer,
            resolutions: Arc::new(Semaphore::new(MAX_CONCURRENT_RESOLUTIONS)),
        }
    }

    async fn decide(&self, request: &Request) -> (Outcome, Option<String>) {
        if request.metadata.op_code != OpCode::Query {
            return (Outcome::code(ResponseCode::NotImp), None);
        }
        let [query] = request.queries.queries() else {
            return (Outcome::code(ResponseCode::FormErr), None);
        };
        let qname = Name::from(query.name());
        let shown = bounded(&qname.to_ascii());
        if query.query_class() != DNSClass::IN {
            let outcome =
                Outcome::code(ResponseCode::Refused).with_event(EventVerdict::Denied, "dns_class");
            return (outcome, Some(shown));
        }
        let Ok(host) = qname.to_ascii().parse::<Hostname>() else {
            let outcome = Outcome::code(ResponseCode::Refused)
                .with_event(EventVerdict::Denied, "dns_invalid_name");
            return (outcome, Some(shown));
        };
        let outcome = self.answer_name(&qname, &host, query.query_type()).await;
        (outcome, Some(host.into_string()))
    }

    async fn answer_name(&self, qname: &Name, host: &Hostname, qtype: RecordType) -> Outcome {
        let snap = self.ctx.snapshots.borrow().clone();
        let answer = snap.answer_name(host);
        let rule = answer.rule().map(|r| r.name.to_string());
        let (verdict, reason) = match &answer {
            NameAnswer::Denied(reason) => {
                return Outcome::code(ResponseCode::Refused)
                    .with_event(EventVerdict::Denied, reason.as_str());
            }
            NameAnswer::Endpoint { endpoint_id } => {
                // An endpoint of another region is served by that region's gateways only.
                let region = self.ctx.sink.region();
                let elsewhere = snap.endpoint(endpoint_id).is_some_and(|e| {
                    !region.is_empty() && !e.region().is_empty() && e.region() != region
                });
                if elsewhere {
                    return Outcome::code(ResponseCode::Refused)
                        .with_event(EventVerdict::Denied, "private_endpoint_other_region");
                }
                let Some(addr) = self.answer else {
                    tracing::warn!(
                        name = %host, endpoint = %endpoint_id,
                        "DNS query for a private endpoint refused: this gateway has no transparent listener to answer with"
                    );
                    return Outcome::code(ResponseCode::Refused)
                        .with_event(EventVerdict::Denied, "dns_no_transparent_listener");
                };
                let mut outcome = Outcome::code(ResponseCode::NoError)
                    .with_event(EventVerdict::Allowed, answer.reason().as_str());
                outcome.answers = records(qname, qtype, [addr]);
                return outcome;
            }
            NameAnswer::WouldDeny(reason) => (EventVerdict::WouldDeny, reason.as_str()),
            NameAnswer::Allowed { .. } | NameAnswer::AllowAll => {
                (EventVerdict::Allowed, answer.reason().as_str())
            }
        };
        let mut outcome = Outcome::code(ResponseCode::NoError).with_event(verdict, reason);
        outcome.rule = rule;
        if !matches!(qtype, RecordType::A | RecordType::AAAA) {
            return outcome;
        }
        let Ok(_permit) = self.resolutions.try_acquire() else {
            metrics::counter!("perimeter_gateway_overloaded_total").increment(1);
            outcome.code = ResponseCode::ServFail;
            return outcome.with_event(EventVerdict::Failed, "gateway_overloaded");
        };
        let resolved = match self.ctx.resolver.resolve(host).await {
            Ok(addrs) => addrs,
            Err(e) => {
                let code = match e.failure() {
                    crate::dns::DnsFailure::NxDomain => ResponseCode::NXDomain,
                    crate::dns::DnsFailure::NoRecords => ResponseCode::NoError,
                    _ => ResponseCode::ServFail,
                };
                outcome.code = code;
                return outcome.with_event(EventVerdict::Failed, e.reason());
            }
        };
        let own = |a: IpAddr| self.ctx.own.contains(a);
        let mut refused = None;
        let kept: Vec<IpAddr> = resolved
            .into_iter()
            .filter(|a| match snap.answer_address(*a, &own) {
                Ok(()) => true,
                Err(class) => {
                    refused = Some(class);
                    false
                }
            })
            .collect();
        if kept.is_empty()
            && let Some(class) = refused
        {
            tracing::info!(name = %host, class = %class, "DNS answer withheld: the name resolves only to addresses the gateway would not dial");
            return outcome.with_event(EventVerdict::Denied, "special_address");
        }
        outcome.answers = records(qname, qtype, kept);
        outcome
    }

    /// Decide, record and send the answer to `request`.
    async fn respond<R: ResponseHandler>(&self, request: &Request, mut handle: R) -> ResponseInfo {
        let (outcome, destination) = self.decide(request).await;
        let snap = self.ctx.snapshots.borrow().clone();
        if let (Some(destination), Some((verdict, reason))) = (destination, &outcome.event) {
            let mut draft = Draft::on(&self.ctx, &snap, request.src(), destination, 0);
            draft.rule = outcome.rule.clone();
            draft.finish(*verdict, reason, 0, 0);
        }
        count(outcome.code);

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        metadata.response_code = outcome.code;
        let edns = request.edns.as_ref().map(|theirs| {
            let mut ours = Edns::new();
            ours.set_max_payload(theirs.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            ours
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let response = builder.build(metadata, &outcome.answers, [], [], []);
        match handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "sending a DNS answer failed");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        self.respond(request, response_handle).await
    }
}

/// The A or AAAA records of `addrs` that answer a query of `qtype`.
fn records(
    qname: &Name,
    qtype: RecordType,
    addrs: impl IntoIterator<Item = IpAddr>,
) -> Vec<Record> {
    addrs
        .into_iter()
        .filter_map(|addr| {
            let rdata = match (qtype, addr) {
                (RecordType::A, IpAddr::V4(v4)) => RData::A(A(v4)),
                (RecordType::AAAA, IpAddr::V6(v6)) => RData::AAAA(AAAA(v6)),
                _ => return None,
            };
            Some(Record::from_rdata(qname.clone(), ANSWER_TTL, rdata))
        })
        .collect()
}

fn count(code: ResponseCode) {
    metrics::counter!("perimeter_dns_responses_total", "rcode" => rcode_label(code)).increment(1);
}

/// The response code as DNS tools print it (`NOERROR`, `REFUSED` ...): a stable metric label.
fn rcode_label(code: ResponseCode) -> &'static str {
    match code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        _ => "OTHER",
    }
}

/// A query name as shown in events: at most 300 characters.
fn bounded(name: &str) -> String {
    name.trim_end_matches('.').chars().take(300).collect()
}

/// One datagram or TCP message in, the answer's bytes out (`None`: no answer, as the server
/// sends none to a message shorter than a header or to a response). The same decoding, handler
/// and encoding as the listener, without sockets: for tests and fuzzing.
pub async fn answer_bytes(
    handler: &DnsHandler,
    raw: &[u8],
    src: SocketAddr,
    protocol: Protocol,
) -> Option<Vec<u8>> {
    let capture = Capture {
        protocol,
        out: Arc::new(Mutex::new(None)),
    };
    let mut decoder = BinDecoder::new(raw);
    let header = Header::read(&mut decoder).ok()?;
    match Request::from_bytes(raw.to_vec(), src, protocol) {
        Ok(request) => {
            if request.metadata.message_type == MessageType::Response {
                return None;
            }
            let _ = handler
                .handle_request::<_, TokioTime>(&request, capture.clone())
                .await;
        }
        Err(_) => {
            count(ResponseCode::FormErr);
            let Ok(queries) = Queries::read(&mut BinDecoder::new(&[]), 0) else {
                return None;
            };
            let response = MessageResponseBuilder::new(&queries, None)
                .error_msg(&header.metadata, ResponseCode::FormErr);
            let _ = capture.clone().send_response(response).await;
        }
    }
    capture.out.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// A response handler that keeps the encoded answer, sized as the server sizes it.
#[derive(Clone)]
struct Capture {
    protocol: Protocol,
    out: Arc<Mutex<Option<Vec<u8>>>>,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let max = match self.protocol {
            Protocol::Udp => response.edns().map_or(512, Edns::max_payload),
            _ => u16::MAX,
        };
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max);
        let info = response
            .destructive_emit(&mut encoder)
            .map_err(|e| NetError::from(e.to_string()))?;
        *self.out.lock().unwrap_or_else(|e| e.into_inner()) = Some(bytes);
        Ok(info)
    }
}

#[cfg(test)]
mod tests;
