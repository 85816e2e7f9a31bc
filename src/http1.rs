/*!
A minimal blocking HTTP/1.1 client for the CLI's own needs (`demo`, `verify-token` fetching a
JWKS, over `https` too) and for tests. It sends exactly the bytes it is given, so tests can send what real
clients would normalise away (`..` in paths, odd headers, chunked bodies).
*/
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The most a response may hold (head and body): a server that sends more is an error, not an
/// exhausted memory.
pub const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
/// The longest one response may take to arrive, however it trickles (checked before each
/// read; a read itself waits at most the socket's 30 s, so 90 s at worst).
pub const RESPONSE_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Lowercase names, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Sends `METHOD target` with the given headers and body (`content-length` added when a body is
/// given, `host` and `connection: close` always).
pub fn send(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<Response> {
    let mut raw =
        format!("{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n").into_bytes();
    for (name, value) in headers {
        raw.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if let Some(body) = body {
        raw.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    if let Some(body) = body {
        raw.extend_from_slice(body);
    }
    send_raw(addr, &raw)
}

/// Writes `raw` to `addr` and reads one response (the server is expected to close or to frame it).
pub fn send_raw(addr: &str, raw: &[u8]) -> io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(raw)?;
    read_response(stream, raw.starts_with(b"HEAD "))
}

/// GETs an `https://host[:port][/path]` URL (port 443 by default) over TLS with `config`, the
/// host's name verified against its certificate.
pub fn get_https(
    url: &str,
    config: std::sync::Arc<rustls::ClientConfig>,
    headers: &[(&str, &str)],
) -> io::Result<Response> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidInput, format!("invalid URL {url:?}"));
    let (addr, path) =
        split_with(url.strip_prefix("https://").ok_or_else(invalid)?, 443).ok_or_else(invalid)?;
    let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
    let name = host.trim_start_matches('[').trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).map_err(|_| invalid())?;
    let conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
    let tcp = TcpStream::connect(&addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    let mut raw = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("\r\n");
    stream.write_all(raw.as_bytes())?;
    stream.flush()?;
    read_response(stream, false)
}

/// An `http://host[:port][/path]` URL as the address to connect to (port 80 by default) and
/// the path (`/` when none); `None` for anything else.
pub fn split_url(url: &str) -> Option<(String, String)> {
    split_with(url.strip_prefix("http://")?, 80)
}

/// `host[:port][/path]` as the address (with `default_port` when none) and the path.
fn split_with(rest: &str, default_port: u16) -> Option<(String, String)> {
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return None;
    }
    let addr = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
    };
    Some((addr, path.to_string()))
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Reads one status line and its header lines.
fn read_head<R: BufRead>(reader: &mut R) -> io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed
            .split_once(':')
            .ok_or_else(|| bad("bad header line"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok((status, headers))
}

/// Reads one response from any byte stream (a TCP or TLS connection, possibly kept alive); an
/// answer to `HEAD` has no body whatever its framing headers say. Interim `1xx` answers (a
/// `100 Continue`) are skipped: the response is the final one.
pub fn read_response<R: Read>(stream: R, head: bool) -> io::Result<Response> {
    let bounded = Deadline {
        inner: stream,
        until: Instant::now() + RESPONSE_DEADLINE,
    }
    .take(MAX_RESPONSE_BYTES);
    let mut reader = BufReader::new(bounded);
    let (status, headers) = loop {
        let (status, headers) = read_head(&mut reader)?;
        if !(100..200).contains(&status) || status == 101 {
            break (status, headers);
        }
    };
    let mut line = String::new();
    let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if head {
        // no body
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                break;
            }
            if size as u64 > MAX_RESPONSE_BYTES.saturating_sub(body.len() as u64) {
                return Err(bad("response larger than the client reads"));
            }
            let mut chunk = vec![0; size];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
            line.clear();
            reader.read_line(&mut line)?;
        }
    } else if let Some(length) = find("content-length") {
        let length: usize = length.parse().map_err(|_| bad("bad content-length"))?;
        if length as u64 > MAX_RESPONSE_BYTES {
            return Err(bad("response larger than the client reads"));
        }
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else if status != 204 && status != 304 {
        reader.read_to_end(&mut body)?;
        if reader.get_ref().limit() == 0 {
            return Err(bad("response larger than the client reads"));
        }
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// A reader that fails once its deadline has passed (each read is also bounded by the socket's
/// read timeout).
struct Deadline<R> {
    inner: R,
    until: Instant,
}

impl<R: Read> Read for Deadline<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if Instant::now() > self.until {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the response took too long",
            ));
        }
        self.inner.read(buf)
    }
}
