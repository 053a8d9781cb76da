//! HTTP/1.1 on a raw TCP stream, as much as Engine.IO long-polling and the
//! gateway's plain endpoints need: a one-shot request read to the end of
//! the connection, and a keep-alive connection with bounded reads for the
//! load generator. Nothing here trusts what the server sends: every line,
//! length and chunk is checked, and bad input is an [`Error`].

#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write as _;
use std::net::SocketAddr;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader,
};
use tokio::net::TcpStream;

/// The longest status or header line read.
pub const MAX_LINE: u64 = 8 * 1024;

/// The largest body a keep-alive [`Connection`] reads.
pub const MAX_BODY: usize = 16 << 20;

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("a header line over 8 KiB, or the connection closed")]
    Line,
    #[error("bad status line {0:?}")]
    Status(String),
    #[error("bad content-length")]
    ContentLength,
    #[error("a {0}-byte response")]
    TooLarge(usize),
    #[error("bad chunked body")]
    Chunked,
}

/// An HTTP response, read by [`fetch`] to the end of the connection.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Names lowercased, values trimmed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The bytes of a request: `Host`, then `headers`, then `Content-Length`,
/// then `body`.
pub fn request(
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + target.len() + body.len());
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
    out.extend_from_slice(body);
    out
}

/// One line into `line` (cleared first), at most [`MAX_LINE`] bytes.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut String,
) -> Result<(), Error> {
    line.clear();
    reader.take(MAX_LINE).read_line(line).await?;
    match line.ends_with('\n') {
        true => Ok(()),
        false => Err(Error::Line),
    }
}

/// Reads a response's status line and headers, using `line` as the
/// buffer, and gives each header's name and value to `header`. Returns the
/// status code.
pub async fn read_head<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut String,
    mut header: impl FnMut(&str, &str),
) -> Result<u16, Error> {
    read_line(reader, line).await?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Status(line.trim_end().to_owned()))?;
    loop {
        read_line(reader, line).await?;
        let text = line.trim_end();
        if text.is_empty() {
            return Ok(status);
        }
        if let Some((name, value)) = text.split_once(':') {
            header(name.trim(), value.trim());
        }
    }
}

/// Sends one request (`Connection: close`) and reads the whole response,
/// to the end of the connection.
pub async fn fetch(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, Error> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut all = vec![("Connection", "close")];
    all.extend_from_slice(headers);
    let host = addr.to_string();
    stream
        .write_all(&request(method, target, &host, &all, body))
        .await?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut headers = Vec::new();
    let status = read_head(&mut reader, &mut line, |name, value| {
        headers.push((name.to_ascii_lowercase(), value.to_owned()));
    })
    .await?;
    let mut body = Vec::new();
    reader.read_to_end(&mut body).await?;
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// The body of a `Transfer-Encoding: chunked` message.
fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or(Error::Chunked)?;
        let (size, rest) = data.split_at(line_end);
        let size = std::str::from_utf8(size)
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .ok_or(Error::Chunked)?;
        data = rest.get(2..).ok_or(Error::Chunked)?;
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or(Error::Chunked)?);
        data = data.get(size + 2..).ok_or(Error::Chunked)?;
    }
}

/// The value of the sample `name` (e.g. `sio_gateway_sessions`) in a
/// Prometheus text exposition.
pub fn metric_value(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A keep-alive connection: one request at a time, each response framed
/// by its `Content-Length` and at most [`MAX_BODY`] bytes.
#[derive(Debug)]
pub struct Connection {
    stream: BufReader<TcpStream>,
    host: String,
    line: String,
}

impl Connection {
    /// Uses `stream`, connected to `host`.
    pub fn new(stream: TcpStream, host: String) -> Self {
        Self {
            stream: BufReader::with_capacity(16 * 1024, stream),
            host,
            line: String::new(),
        }
    }

    /// Sends a request and reads its response: the status and the body.
    pub async fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), Error> {
        let bytes = request(method, target, &self.host, headers, body);
        self.stream.get_mut().write_all(&bytes).await?;
        let mut length = Ok(0usize);
        let status = read_head(&mut self.stream, &mut self.line, |name, value| {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().map_err(|_| Error::ContentLength);
            }
        })
        .await?;
        let length = length?;
        // A response larger than any payload asked for is a broken
        // server, not something to allocate for.
        if length > MAX_BODY {
            return Err(Error::TooLarge(length));
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok((status, body))
    }
}
