//! Plaintext HTTP requests in a tunnel, checked as they stream through the relay.
//!
//! A tunnel whose first request is strictly well-formed is relayed as bytes, and every request
//! head in the client's stream is found by the framing of the body before it, held until it
//! is complete, parsed strictly ([`parse_request_head`]) and checked before any of it goes
//! upstream: it must name the tunnel's target (the Host, or an absolute-form authority), carry
//! no body framing the gateway cannot follow, and not leave HTTP (`Upgrade`, `CONNECT`). A
//! request that fails closes the tunnel; the bytes before it (earlier requests and their
//! bodies) have gone through. This is the cheap path of the common case; the first request of
//! a tunnel in a lenient spelling (bare LF, leading empty lines, a lower-case method) or
//! without a Host is served by hyper request by request instead ([`super::forward`]).

use std::net::IpAddr;
use std::sync::Arc;

use perimeter_policy::Snapshot;

use super::ProxyContext;
use super::consistency::name_allowed_at;
use super::refusal::Why;
use super::target::{Target, TargetHost};
use crate::http_head::{
    BodyFraming, HeadError, HeadLimits, RequestHead, RequestTarget, parse_request_head,
};

/// A request head found in the stream, for the caller to check where it needs more than the
/// head itself (a name at an IP literal target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    /// Where the head starts in the bytes [`Requests::push`] produced.
    pub(crate) at: usize,
    /// A name the head gives for an IP literal target: allowed only if the policy allows it
    /// at the dialled address.
    pub(crate) name_at_literal: Option<perimeter_policy::Hostname>,
    /// The Host (or authority) as sent, for the decision event.
    pub(crate) host: String,
}

/// Where the client's stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a request head (or inside one: `held` has its start).
    Head,
    /// In a body of this many more bytes.
    Body(u64),
    /// In a chunked body.
    Chunk(Chunk),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// A chunk-size line (in `held`).
    Size,
    /// Chunk data: this many more bytes, then CRLF.
    Data(u64),
    /// The CRLF after chunk data: this many bytes of it still to come.
    DataEnd(u8),
    /// Trailer lines after the last chunk (in `held`), up to an empty line.
    Trailers,
}

/// The client's side of a plaintext tunnel, request by request.
pub(crate) struct Requests {
    target: Target,
    state: State,
    /// Bytes of an incomplete head, chunk-size line or trailer section.
    held: Vec<u8>,
    limits: HeadLimits,
    /// Whether each head must name the target ([`Requests::check`]); off where the requests'
    /// own handler checks the Host and answers a mismatch itself (inspected sessions).
    check_hosts: bool,
}

/// Longest chunk-size line or trailer section.
const MAX_LINE: usize = 8 * 1024;

impl Requests {
    pub(crate) fn new(target: Target, max_head_bytes: usize) -> Self {
        Self {
            target,
            state: State::Head,
            held: Vec::new(),
            limits: HeadLimits {
                max_head_bytes,
                max_headers: 100,
            },
            check_hosts: true,
        }
    }

    /// Framing only: heads are found and parsed strictly, bodies followed, but the Host is left
    /// to whoever serves the requests.
    pub(crate) fn framing_only(target: Target, max_head_bytes: usize) -> Self {
        Self {
            check_hosts: false,
            ..Self::new(target, max_head_bytes)
        }
    }

    /// Take the client's next bytes: append to `out` what may go upstream (held bytes of an
    /// incomplete head stay here until it completes) and to `found` every complete head in it,
    /// checked for what the head alone tells. `Err`: the stream is refused from `out.len()` on
    /// (what is in `out` may still go).
    pub(crate) fn push(
        &mut self,
        mut data: &[u8],
        out: &mut Vec<u8>,
        found: &mut Vec<Found>,
    ) -> Result<(), Why> {
        while !data.is_empty() {
            match self.state {
                State::Body(left) => {
                    let n = (left.min(data.len() as u64)) as usize;
                    out.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    self.state = if left == n as u64 {
                        State::Head
                    } else {
                        State::Body(left - n as u64)
                    };
                }
                State::Head => {
                    let before = self.held.len();
                    self.held.extend_from_slice(data);
                    let parsed = parse_request_head(&self.held, &self.limits);
                    let head = match parsed {
                        Ok(None) => return Ok(()),
                        Ok(Some(head)) => head,
                        Err(HeadError::HeadTooLarge { .. }) => {
                            return Err(Why::RequestHeadTooLarge);
                        }
                        Err(e) => return Err(Why::from(e)),
                    };
                    let host = if self.check_hosts {
                        self.check(&head)?
                    } else {
                        (String::new(), None)
                    };
                    found.push(Found {
                        at: out.len(),
                        name_at_literal: host.1,
                        host: host.0,
                    });
                    out.extend_from_slice(&self.held[..head.head_len]);
                    // What followed the head in this push is handled by the next state.
                    let used = head.head_len - before;
                    data = &data[used..];
                    // Not kept: an idle tunnel holds no head buffer.
                    self.held = Vec::new();
                    self.state = Requests::after(&head);
                }
                State::Chunk(Chunk::Data(left)) => {
                    let n = (left.min(data.len() as u64)) as usize;
                    out.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    self.state = State::Chunk(if left == n as u64 {
                        Chunk::DataEnd(2)
                    } else {
                        Chunk::Data(left - n as u64)
                    });
                }
                State::Chunk(Chunk::DataEnd(left)) => {
                    let want: &[u8] = if left == 2 { b"\r\n" } else { b"\n" };
                    if data[0] != want[0] {
                        return Err(Why::InvalidHttpRequest);
                    }
                    out.push(data[0]);
                    data = &data[1..];
                    self.state = if left == 1 {
                        State::Chunk(Chunk::Size)
                    } else {
                        State::Chunk(Chunk::DataEnd(left - 1))
                    };
                }
                State::Chunk(Chunk::Size) => {
                    let Some(end) = self.line(&mut data)? else {
                        return Ok(());
                    };
                    let size = chunk_size(&self.held[..end]).ok_or(Why::InvalidHttpRequest)?;
                    out.extend_from_slice(&self.held);
                    self.held.clear();
                    self.state = State::Chunk(if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    });
                }
                State::Chunk(Chunk::Trailers) => {
                    let Some(end) = self.line(&mut data)? else {
                        return Ok(());
                    };
                    let line = &self.held[self.held[..end]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |i| i + 1)..end];
                    if line.is_empty() {
                        out.extend_from_slice(&self.held);
                        self.held.clear();
                        self.state = State::Head;
                    }
                }
            }
        }
        Ok(())
    }

    /// Move bytes of `data` into `held` up to and including the next LF, which must follow a
    /// CR. `Some(end)`: the line (without CRLF) ends at `end` of `held`.
    fn line(&mut self, data: &mut &[u8]) -> Result<Option<usize>, Why> {
        match data.iter().position(|&b| b == b'\n') {
            None => {
                self.held.extend_from_slice(data);
                *data = &[];
                if self.held.len() > MAX_LINE {
                    return Err(Why::InvalidHttpRequest);
                }
                Ok(None)
            }
            Some(i) => {
                self.held.extend_from_slice(&data[..=i]);
                *data = &data[i + 1..];
                let len = self.held.len();
                if len < 2 || self.held[len - 2] != b'\r' || len > MAX_LINE {
                    return Err(Why::InvalidHttpRequest);
                }
                Ok(Some(len - 2))
            }
        }
    }

    /// What the head alone says: it stays in HTTP and names the target. Returns the host as
    /// sent and, for an IP literal target, a name it gives instead (checked by the caller).
    fn check(
        &self,
        head: &RequestHead,
    ) -> Result<(String, Option<perimeter_policy::Hostname>), Why> {
        if matches!(head.target, RequestTarget::Authority(_))
            || head.header_values("upgrade").next().is_some()
        {
            return Err(Why::InvalidHttpRequest);
        }
        let Some(named) = head.destination(self.target.port) else {
            return Err(Why::HostMissing);
        };
        let sent = match &head.host {
            Some(h) => match h.port {
                Some(p) => format!("{}:{p}", h.host),
                None => h.host.to_string(),
            },
            None => named.host.to_string(),
        };
        if named.port != self.target.port {
            return Err(Why::HostMismatch);
        }
        let named_host: TargetHost = named.host.into();
        match (&self.target.host, named_host) {
            (a, b) if *a == b => Ok((sent, None)),
            (TargetHost::Ip(_), TargetHost::Name(name)) => Ok((sent, Some(name))),
            _ => Err(Why::HostMismatch),
        }
    }

    /// Whether `first` (a tunnel's first bytes) starts with a request this path serves: a
    /// strictly well-formed head with a Host that names the target by itself. `Some`: the
    /// Host as sent, and the stream past that head (its body next), its bytes to be pushed
    /// from `head_len` on.
    pub(crate) fn takes(
        target: &Target,
        first: &[u8],
        max_head_bytes: usize,
    ) -> Option<(String, Requests, usize)> {
        let mut r = Requests::new(target.clone(), max_head_bytes);
        match parse_request_head(first, &r.limits) {
            Ok(Some(head)) if head.host.is_some() => match r.check(&head) {
                Ok((sent, None)) => {
                    r.state = Requests::after(&head);
                    Some((sent, r, head.head_len))
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Where the stream is after `head`: its body, if it has one.
    fn after(head: &RequestHead) -> State {
        match head.body {
            BodyFraming::None | BodyFraming::ContentLength(0) => State::Head,
            BodyFraming::ContentLength(n) => State::Body(n),
            BodyFraming::Chunked => State::Chunk(Chunk::Size),
        }
    }
}

/// [`Requests`] with what the checks need beyond the heads: the relay's upstream direction of
/// a plaintext tunnel.
pub(crate) struct Checked {
    requests: Requests,
    /// Bytes still to come that were checked already (the first head).
    skip: usize,
    ctx: ProxyContext,
    snap: Arc<Snapshot>,
    dialled: IpAddr,
    /// The Host of the last request head checked (for the decision event).
    pub(crate) last_host: Option<String>,
}

impl Checked {
    /// Check the stream that [`Requests::takes`] took, whose first `checked` bytes (its first
    /// head) were checked there.
    pub(crate) fn new(
        ctx: &ProxyContext,
        snap: Arc<Snapshot>,
        requests: Requests,
        checked: usize,
        dialled: IpAddr,
    ) -> Self {
        Self {
            requests,
            skip: checked,
            ctx: ctx.clone(),
            snap,
            dialled,
            last_host: None,
        }
    }

    /// Check the client's next bytes: `out` gets what may go upstream. `Err`: the stream is
    /// refused, and only what is in `out` may still go.
    pub(crate) async fn pass(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Why> {
        let checked = self.skip.min(data.len());
        out.extend_from_slice(&data[..checked]);
        self.skip -= checked;
        let mut found = Vec::new();
        let pushed = self.requests.push(&data[checked..], out, &mut found);
        for f in found {
            self.last_host = Some(f.host);
            if let Some(name) = f.name_at_literal {
                let port = self.requests.target.port;
                if !name_allowed_at(&self.ctx, &self.snap, &name, port, self.dialled).await {
                    out.truncate(f.at);
                    return Err(Why::HostMismatch);
                }
            }
        }
        pushed
    }
}

/// The size of a chunk-size line (`hex[;ext]`).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let hex = line.split(|&b| b == b';').next()?;
    let hex = hex.strip_suffix(b" ").unwrap_or(hex);
    if hex.is_empty() || hex.len() > 15 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

#[cfg(test)]
mod tests;
