//! First bytes: what the client's first bytes in a tunnel (or on a redirected connection) are,
//! judged before anything of them goes upstream.
//!
//! - A TLS ClientHello: its SNI is checked ([`super::consistency`]); one that carries
//!   `encrypted_client_hello` hides the name the server routes on, and is refused under
//!   `DEFAULT_DENY`.
//! - Anything an HTTP server would parse as a request is HTTP, whatever leniency the server
//!   has (RFC 9112 section 2.2): leading empty lines, any method case, bare LF line ends. Such
//!   a connection is served request by request ([`super::forward`]), each request's Host and
//!   path checked. Forms a server may read but the gateway cannot serve faithfully are refused:
//!   whitespace other than empty lines before the request line, tabs or repeated spaces
//!   between its parts (`invalid_http_request`), and HTTP/0.9 (`GET /path` with no version
//!   and so no Host: `http09_request`).
//! - Anything else is another protocol, relayed as bytes.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

use super::ProxyContext;
use super::refusal::Why;
use super::relay::{Activity, Direction, shutdown_write, write_all};
use crate::tls::{ClientHello, parse_client_hello};

/// What the client's first bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FirstBytes {
    NeedMore,
    /// A TLS ClientHello: its SNI, if it has one, and whether it carries
    /// `encrypted_client_hello` (then the SNI is the outer name).
    Tls {
        sni: Option<String>,
        ech: bool,
    },
    /// A plaintext HTTP/1.x request head: served request by request.
    Http,
    /// Neither TLS nor HTTP: nothing to check.
    Other,
    /// Refused.
    Invalid(Why),
}

/// Judge `buf` (every byte the client has sent so far, at most `max` of them looked at).
pub(crate) fn classify(buf: &[u8], max: usize) -> FirstBytes {
    if buf.is_empty() {
        return FirstBytes::NeedMore;
    }
    match parse_client_hello(buf) {
        ClientHello::Parsed { sni, ech, .. } => return FirstBytes::Tls { sni, ech },
        ClientHello::NeedMore(_) if buf.len() >= max => {
            return FirstBytes::Invalid(Why::ClientHelloTooLarge);
        }
        ClientHello::NeedMore(_) => return FirstBytes::NeedMore,
        ClientHello::Invalid(why) => return FirstBytes::Invalid(Why::Tls(why)),
        ClientHello::NotTls => {}
    }
    classify_http(buf, max)
}

/// `tchar` of RFC 9110: the bytes of a method token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn classify_http(buf: &[u8], max: usize) -> FirstBytes {
    let full = buf.len() >= max;
    // Whitespace before the request line: empty lines are allowed, and lenient servers skip
    // more, so a request after any of it is still a request.
    let Some(start) = buf
        .iter()
        .position(|&b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
    else {
        return if full {
            FirstBytes::Invalid(Why::InvalidHttpRequest)
        } else {
            FirstBytes::NeedMore
        };
    };
    let rest = &buf[start..];
    let method_len = rest.iter().take_while(|&&b| is_tchar(b)).count();
    match rest.get(method_len) {
        _ if method_len == 0 => return FirstBytes::Other,
        None if full => return FirstBytes::Other,
        None => return FirstBytes::NeedMore,
        Some(&b) if is_space(b) => {}
        Some(_) => return FirstBytes::Other,
    }
    let Some(end) = rest.iter().position(|&b| b == b'\n') else {
        return if full {
            FirstBytes::Invalid(Why::RequestHeadTooLarge)
        } else {
            FirstBytes::NeedMore
        };
    };
    let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
    let names_version = line.windows(5).any(|w| w.eq_ignore_ascii_case(b"http/"));
    if !names_version {
        let words = line
            .split(|&b| is_space(b))
            .filter(|w| !w.is_empty())
            .count();
        // HTTP/0.9: `GET /path` and nothing else; servers that still speak it answer it
        // without a Host, from their default virtual host.
        if words == 2 && rest[..method_len].eq_ignore_ascii_case(b"GET") {
            return FirstBytes::Invalid(Why::Http09Request);
        }
        // Another protocol's command (SMTP `EHLO host`, Redis `SET k v`).
        return FirstBytes::Other;
    }
    // A request line: served only in the form every parser reads alike.
    let leading_blank = buf[..start].iter().any(|&b| is_space(b));
    let single_spaces = !line.contains(&b'\t') && line.iter().filter(|&&b| b == b' ').count() == 2;
    if leading_blank || !single_spaces {
        return FirstBytes::Invalid(Why::InvalidHttpRequest);
    }
    let mut headers = [httparse::EMPTY_HEADER; 100];
    match httparse::Request::new(&mut headers).parse(buf) {
        Ok(httparse::Status::Complete(_)) => FirstBytes::Http,
        Ok(httparse::Status::Partial) if full => FirstBytes::Invalid(Why::RequestHeadTooLarge),
        Ok(httparse::Status::Partial) => FirstBytes::NeedMore,
        Err(_) => FirstBytes::Invalid(Why::InvalidHttpRequest),
    }
}

/// Read the client's first bytes into `buf` (which may hold some already) until they can be
/// judged. `NeedMore` means the client closed first. Cancel-safe: what was read stays in `buf`.
pub(crate) async fn read_first_bytes<C: AsyncRead + Unpin>(
    client: &mut C,
    buf: &mut BytesMut,
    max: usize,
) -> std::io::Result<FirstBytes> {
    loop {
        let first = classify(buf, max);
        if first != FirstBytes::NeedMore {
            return Ok(first);
        }
        buf.reserve(4096);
        if client.read_buf(buf).await? == 0 {
            return Ok(FirstBytes::NeedMore);
        }
    }
}

/// How the opening of a relayed connection ended.
pub(crate) enum Opening {
    /// The client's first bytes, judged (`NeedMore`: the client closed before they could be).
    First(FirstBytes),
    /// The client sent nothing that could be judged in time.
    TimedOut,
    Failed(Direction, std::io::Error),
}

/// Read the client's first bytes into `buf` until they can be judged, passing on to the client
/// meanwhile whatever the upstream sends: protocols where the server speaks first (SMTP,
/// MySQL, FTP) greet before the client says anything. Nothing goes upstream here. The client
/// has the first-bytes timeout to start; once the upstream has spoken, the idle timeout since
/// its last bytes.
pub(crate) async fn opening(
    ctx: &ProxyContext,
    client: &mut TcpStream,
    upstream: &TcpStream,
    buf: &mut BytesMut,
    activity: &Activity,
) -> Opening {
    let max = ctx.limits.max_header_bytes.max(8192);
    let mut down: Vec<u8> = Vec::new();
    let mut upstream_open = true;
    let deadline = tokio::time::sleep(ctx.limits.first_bytes_timeout);
    tokio::pin!(deadline);
    loop {
        let first = classify(buf, max);
        if first != FirstBytes::NeedMore {
            return Opening::First(first);
        }
        buf.reserve(4096);
        tokio::select! {
            biased;
            // `read_buf` (cancel-safe) rather than `try_read_buf`: a short read clears the
            // socket's readiness, so the relay's first read waits instead of trying in vain.
            r = client.read_buf(buf) => match r {
                Ok(0) => return Opening::First(FirstBytes::NeedMore),
                Ok(_) => {}
                Err(e) => return Opening::Failed(Direction::Up, e),
            },
            r = upstream.readable(), if upstream_open => {
                if down.is_empty() {
                    down = vec![0; 16 * 1024];
                }
                match r.and_then(|()| upstream.try_read(&mut down)) {
                    Ok(0) => {
                        // The upstream said all it will: pass its end of stream on.
                        upstream_open = false;
                        if let Err(e) = shutdown_write(client) {
                            return Opening::Failed(Direction::Down, e);
                        }
                    }
                    Ok(n) => {
                        if let Err(e) = write_all(client, &down[..n], Direction::Down, activity).await {
                            return Opening::Failed(Direction::Down, e);
                        }
                        let idle = tokio::time::Instant::now() + ctx.limits.idle_timeout;
                        deadline.as_mut().reset(idle);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Opening::Failed(Direction::Down, e),
                }
            }
            _ = &mut deadline => return Opening::TimedOut,
        }
    }
}

#[cfg(test)]
mod tests;
