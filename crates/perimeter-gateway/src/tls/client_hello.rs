//! Incremental parser for the first flight of a TLS client: the ClientHello, for its SNI and
//! ALPN.
//!
//! The transparent listener and the CONNECT tunnel peek at the bytes a client sends and call
//! [`parse_client_hello`] on everything received so far until it stops answering
//! [`ClientHello::NeedMore`]. The parser is strict where ambiguity could be abused (two SNI
//! entries, a repeated extension, lengths that do not add up) and bounded: it never asks for
//! more than [`MAX_CLIENT_HELLO_WIRE_LEN`] bytes in total.

use std::fmt;

/// Largest ClientHello handshake body accepted (the 4-byte handshake header excluded). Real
/// hellos, post-quantum key shares included, are far below this.
pub const MAX_CLIENT_HELLO_LEN: usize = 16 * 1024;

/// Most TLS records a ClientHello may be spread over.
pub const MAX_CLIENT_HELLO_RECORDS: usize = 32;

/// Largest TLS plaintext record fragment (RFC 8446 §5.1).
const MAX_RECORD_LEN: usize = 1 << 14;

const RECORD_HEADER_LEN: usize = 5;
const HANDSHAKE_HEADER_LEN: usize = 4;

/// Most bytes the parser ever needs to see before it can answer: the largest handshake message
/// spread over the largest number of records. A caller may stop reading at this size.
pub const MAX_CLIENT_HELLO_WIRE_LEN: usize =
    HANDSHAKE_HEADER_LEN + MAX_CLIENT_HELLO_LEN + RECORD_HEADER_LEN * MAX_CLIENT_HELLO_RECORDS;

const CONTENT_TYPE_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
/// `encrypted_client_hello` (RFC 9849 draft code point 0xfe0d).
const EXT_ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
const NAME_TYPE_HOST_NAME: u8 = 0;

/// What the bytes received so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHello {
    /// The hello is not complete yet; at least this many more bytes are needed (a lower bound,
    /// never zero).
    NeedMore(usize),
    /// A complete, well-formed ClientHello. `sni` is the host_name exactly as sent (visible
    /// ASCII, not yet normalised: compare it as a `Hostname`); `alpn` lists the offered
    /// protocols in order, bytes outside printable ASCII escaped as by `<[u8]>::escape_ascii`.
    Parsed {
        sni: Option<String>,
        alpn: Vec<String>,
        /// The hello carries `encrypted_client_hello`: `sni` is then the outer (public) name,
        /// and the name the server routes on is encrypted (or the extension is GREASE, which
        /// cannot be told apart from the outside).
        ech: bool,
    },
    /// The stream does not start with a TLS handshake record (plain HTTP, for example).
    NotTls,
    /// The stream starts like TLS but is not a well-formed ClientHello.
    Invalid(InvalidHello),
}

/// Why bytes that start like TLS are not an acceptable ClientHello. `as_str()` names are stable
/// (decision reasons and metrics use them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvalidHello {
    /// An SSL 2.0 (or SSLv2-compatible) hello, which carries no SNI and is obsolete.
    Sslv2Hello,
    /// A record version whose major byte is not 3.
    RecordVersion,
    /// A record of length zero, or longer than 2^14.
    RecordLength,
    /// A non-handshake record before the ClientHello was complete.
    InterleavedRecord,
    /// The first handshake message is not a ClientHello.
    NotClientHello,
    /// The hello is longer than [`MAX_CLIENT_HELLO_LEN`] or spread over more than
    /// [`MAX_CLIENT_HELLO_RECORDS`] records.
    TooLarge,
    /// More handshake bytes after the ClientHello in its last record.
    TrailingHandshakeData,
    /// The legacy client version's major byte is not 3.
    ClientVersion,
    /// A length field points past the end of its enclosing structure, or leaves bytes over.
    Length,
    /// An empty or odd-length cipher suite list, or an empty compression method list.
    EmptyList,
    /// The same extension type appears twice.
    DuplicateExtension,
    /// The server_name extension lists more than one name.
    MultipleServerNames,
    /// The server_name extension lists a name type other than host_name.
    ServerNameType,
    /// An empty server name, or one with bytes outside visible ASCII.
    ServerNameBytes,
    /// An empty ALPN list or an empty protocol name.
    AlpnEmpty,
}

impl InvalidHello {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sslv2Hello => "tls_sslv2_hello",
            Self::RecordVersion => "tls_record_version",
            Self::RecordLength => "tls_record_length",
            Self::InterleavedRecord => "tls_interleaved_record",
            Self::NotClientHello => "tls_not_client_hello",
            Self::TooLarge => "tls_client_hello_too_large",
            Self::TrailingHandshakeData => "tls_trailing_handshake_data",
            Self::ClientVersion => "tls_client_version",
            Self::Length => "tls_length_mismatch",
            Self::EmptyList => "tls_empty_list",
            Self::DuplicateExtension => "tls_duplicate_extension",
            Self::MultipleServerNames => "tls_multiple_server_names",
            Self::ServerNameType => "tls_server_name_type",
            Self::ServerNameBytes => "tls_server_name_bytes",
            Self::AlpnEmpty => "tls_alpn_empty",
        }
    }
}

impl fmt::Display for InvalidHello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parse the ClientHello at the start of `buf`, which holds every byte the client has sent so
/// far. Bytes after the record that completes the hello (0-RTT data, for instance) are ignored.
/// Never panics; looks at no more than [`MAX_CLIENT_HELLO_WIRE_LEN`] bytes.
pub fn parse_client_hello(buf: &[u8]) -> ClientHello {
    match reassemble(buf) {
        Ok(Reassembled::Complete(body)) => match parse_body(&body) {
            Ok((sni, alpn, ech)) => ClientHello::Parsed { sni, alpn, ech },
            Err(reason) => ClientHello::Invalid(reason),
        },
        Ok(Reassembled::NeedMore(n)) => ClientHello::NeedMore(n.max(1)),
        Ok(Reassembled::NotTls) => ClientHello::NotTls,
        Err(reason) => ClientHello::Invalid(reason),
    }
}

/// An SSLv2 (or SSLv2-compatible) ClientHello is recognised by its whole header, never by its
/// first byte alone, which half of all binary protocols share: a two-byte record header with
/// the high bit set, message type 1 (CLIENT-HELLO), and version 0x0002 (SSL 2.0) or 0x03xx
/// (an SSLv3/TLS client speaking the SSLv2-compatible format).
fn sslv2_hello(buf: &[u8]) -> Result<Reassembled, InvalidHello> {
    const HEADER: usize = 5;
    if buf[0] & 0x80 == 0 {
        return Ok(Reassembled::NotTls);
    }
    let seen = &buf[..buf.len().min(HEADER)];
    let fits = |i: usize, ok: &dyn Fn(u8) -> bool| seen.get(i).is_none_or(|&b| ok(b));
    let plausible = fits(2, &|b| b == SSLV2_CLIENT_HELLO)
        && fits(3, &|b| b == 0 || b == 3)
        && match (seen.get(3), seen.get(4)) {
            (Some(0), Some(minor)) => *minor == 2,
            (Some(3), Some(minor)) => *minor <= 4,
            _ => true,
        };
    if !plausible {
        Ok(Reassembled::NotTls)
    } else if seen.len() < HEADER {
        Ok(Reassembled::NeedMore(HEADER - seen.len()))
    } else {
        Err(InvalidHello::Sslv2Hello)
    }
}

/// Message type of an SSLv2 CLIENT-HELLO.
const SSLV2_CLIENT_HELLO: u8 = 1;

enum Reassembled {
    NeedMore(usize),
    NotTls,
    /// The ClientHello body (after the handshake header).
    Complete(Vec<u8>),
}

/// Collect handshake bytes from consecutive handshake records until the first handshake
/// message is complete.
fn reassemble(buf: &[u8]) -> Result<Reassembled, InvalidHello> {
    let Some(&first) = buf.first() else {
        return Ok(Reassembled::NeedMore(RECORD_HEADER_LEN));
    };
    if first != CONTENT_TYPE_HANDSHAKE {
        return sslv2_hello(buf);
    }
    let mut handshake: Vec<u8> = Vec::new();
    let mut pos = 0usize;
    let mut records = 0usize;
    loop {
        // Record header.
        let header = &buf[pos..buf.len().min(pos + RECORD_HEADER_LEN)];
        if let Some(&content_type) = header.first()
            && content_type != CONTENT_TYPE_HANDSHAKE
        {
            return Err(InvalidHello::InterleavedRecord);
        }
        if let Some(&major) = header.get(1)
            && major != 3
        {
            return Err(InvalidHello::RecordVersion);
        }
        if header.len() < RECORD_HEADER_LEN {
            return Ok(Reassembled::NeedMore(RECORD_HEADER_LEN - header.len()));
        }
        let record_len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if record_len == 0 || record_len > MAX_RECORD_LEN {
            return Err(InvalidHello::RecordLength);
        }
        records += 1;
        if records > MAX_CLIENT_HELLO_RECORDS {
            return Err(InvalidHello::TooLarge);
        }
        let start = pos + RECORD_HEADER_LEN;
        let available = buf.len() - start;
        let fragment = &buf[start..start + available.min(record_len)];
        handshake.extend_from_slice(fragment);

        // Handshake header, as soon as it is known.
        if let Some(&msg_type) = handshake.first()
            && msg_type != HANDSHAKE_CLIENT_HELLO
        {
            return Err(InvalidHello::NotClientHello);
        }
        let msg_len = if handshake.len() >= HANDSHAKE_HEADER_LEN {
            let len = usize::from(handshake[1]) << 16
                | usize::from(handshake[2]) << 8
                | usize::from(handshake[3]);
            if len > MAX_CLIENT_HELLO_LEN {
                return Err(InvalidHello::TooLarge);
            }
            Some(HANDSHAKE_HEADER_LEN + len)
        } else {
            None
        };

        if fragment.len() < record_len {
            // The current record is not complete yet.
            let missing_in_record = record_len - fragment.len();
            let missing = match msg_len {
                Some(total) => missing_in_record.min(total.saturating_sub(handshake.len())),
                None => missing_in_record.min(HANDSHAKE_HEADER_LEN - handshake.len()),
            };
            // If the message already ended inside this record, the rest of the record is
            // trailing data: say so only once it is there, so prefixes stay NeedMore.
            if let Some(total) = msg_len
                && handshake.len() > total
            {
                return Err(InvalidHello::TrailingHandshakeData);
            }
            return Ok(Reassembled::NeedMore(missing.max(1)));
        }
        if let Some(total) = msg_len
            && handshake.len() >= total
        {
            if handshake.len() > total {
                return Err(InvalidHello::TrailingHandshakeData);
            }
            handshake.drain(..HANDSHAKE_HEADER_LEN);
            return Ok(Reassembled::Complete(handshake));
        }
        pos = start + record_len;
    }
}

/// A cursor over a byte slice whose reads fail with [`InvalidHello::Length`] instead of
/// panicking.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], InvalidHello> {
        if n > self.buf.len() {
            return Err(InvalidHello::Length);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, InvalidHello> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, InvalidHello> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one-byte length prefix.
    fn vec8(&mut self) -> Result<&'a [u8], InvalidHello> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    /// A vector with a two-byte length prefix.
    fn vec16(&mut self) -> Result<&'a [u8], InvalidHello> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

type HelloFields = (Option<String>, Vec<String>, bool);

fn parse_body(body: &[u8]) -> Result<HelloFields, InvalidHello> {
    let mut r = Reader::new(body);
    let version = r.take(2)?;
    if version[0] != 3 {
        return Err(InvalidHello::ClientVersion);
    }
    r.take(32)?; // random
    let session_id = r.vec8()?;
    if session_id.len() > 32 {
        return Err(InvalidHello::Length);
    }
    let suites = r.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(InvalidHello::EmptyList);
    }
    if r.vec8()?.is_empty() {
        return Err(InvalidHello::EmptyList);
    }
    if r.is_empty() {
        // A hello without extensions (TLS 1.0-1.2 allow it): no SNI, no ALPN.
        return Ok((None, Vec::new(), false));
    }
    let extensions = r.vec16()?;
    if !r.is_empty() {
        return Err(InvalidHello::Length);
    }
    let mut r = Reader::new(extensions);
    let mut seen: Vec<u16> = Vec::new();
    let mut sni = None;
    let mut alpn = Vec::new();
    while !r.is_empty() {
        let ext_type = r.u16()?;
        let data = r.vec16()?;
        if seen.contains(&ext_type) {
            return Err(InvalidHello::DuplicateExtension);
        }
        seen.push(ext_type);
        match ext_type {
            EXT_SERVER_NAME => sni = Some(parse_server_name(data)?),
            EXT_ALPN => alpn = parse_alpn(data)?,
            _ => {}
        }
    }
    Ok((sni, alpn, seen.contains(&EXT_ENCRYPTED_CLIENT_HELLO)))
}

fn parse_server_name(data: &[u8]) -> Result<String, InvalidHello> {
    let mut outer = Reader::new(data);
    let list = outer.vec16()?;
    if !outer.is_empty() {
        return Err(InvalidHello::Length);
    }
    let mut r = Reader::new(list);
    let mut name = None;
    while !r.is_empty() {
        let name_type = r.u8()?;
        let value = r.vec16()?;
        if name_type != NAME_TYPE_HOST_NAME {
            return Err(InvalidHello::ServerNameType);
        }
        if name.is_some() {
            return Err(InvalidHello::MultipleServerNames);
        }
        if value.is_empty() || !value.iter().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidHello::ServerNameBytes);
        }
        name = Some(value.iter().map(|&b| char::from(b)).collect::<String>());
    }
    // An empty server_name extension is what a server sends back, never a client.
    name.ok_or(InvalidHello::Length)
}

fn parse_alpn(data: &[u8]) -> Result<Vec<String>, InvalidHello> {
    let mut outer = Reader::new(data);
    let list = outer.vec16()?;
    if !outer.is_empty() {
        return Err(InvalidHello::Length);
    }
    if list.is_empty() {
        return Err(InvalidHello::AlpnEmpty);
    }
    let mut r = Reader::new(list);
    let mut protocols = Vec::new();
    while !r.is_empty() {
        let proto = r.vec8()?;
        if proto.is_empty() {
            return Err(InvalidHello::AlpnEmpty);
        }
        protocols.push(proto.escape_ascii().to_string());
    }
    Ok(protocols)
}

#[cfg(test)]
mod tests;
