//! The load generators' HTTP/1.1, on a bare socket: a keep-alive connection that posts JSON
//! and reads the reply, and a live stream whose chunked body is decoded as it arrives.
//!
//! Why not reqwest: the clients share the machine's two cores with the server they measure.
//! Through reqwest a post cost the chat bench's 50 clients about 46 µs of CPU (0.65 of a core
//! at 14,000 posts a second), a third of what the server spent on it; here it is one write,
//! one read and a scan of the reply's head. What is measured is the server's, so the clients
//! should take as little of the machine as they can.

use std::io;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The host and port of a base URL such as `http://127.0.0.1:8080`.
fn authority(base: &str) -> &str {
    base.trim_start_matches("http://").trim_end_matches('/')
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// A reply: its status and body.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One keep-alive connection to a server.
pub struct Connection {
    stream: TcpStream,
    authority: String,
    /// Bytes read and not yet taken by a reply.
    read: Vec<u8>,
}

impl Connection {
    pub async fn connect(base: &str) -> io::Result<Connection> {
        let authority = authority(base).to_owned();
        let stream = TcpStream::connect(&authority).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            authority,
            read: Vec::with_capacity(1024),
        })
    }

    /// Posts `body` (JSON) to `path` as the bearer of `token`, and reads the reply, which must
    /// carry a `Content-Length` (Perch's replies to a post do).
    pub async fn post_json(&mut self, path: &str, token: &str, body: &str) -> io::Result<Reply> {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.authority,
            body.len()
        );
        self.stream.write_all(request.as_bytes()).await?;
        let (status, head_length, content_length) = self.read_head().await?;
        let content_length = content_length.ok_or_else(|| {
            invalid("a reply without Content-Length (chunked replies are not read here)")
        })?;
        while self.read.len() < head_length + content_length {
            self.fill().await?;
        }
        let body = self.read[head_length..head_length + content_length].to_vec();
        self.read.drain(..head_length + content_length);
        Ok(Reply { status, body })
    }

    /// Opens `path` as a live stream (`Last-Event-ID: last_event_id` when given). A status other
    /// than 200 is returned as `Err` with the connection's error text.
    pub async fn open_events(
        mut self,
        path: &str,
        token: &str,
        last_event_id: Option<i64>,
    ) -> io::Result<Events> {
        let resume =
            last_event_id.map_or_else(String::new, |id| format!("Last-Event-ID: {id}\r\n"));
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n{resume}\r\n",
            self.authority
        );
        self.stream.write_all(request.as_bytes()).await?;
        let (status, head_length, _) = self.read_head().await?;
        if status != 200 {
            return Err(io::Error::other(format!(
                "the live stream answered {status}"
            )));
        }
        self.read.drain(..head_length);
        let mut events = Events {
            stream: self.stream,
            raw: std::mem::take(&mut self.read),
            chunk: Chunk::Size,
            body: Vec::new(),
        };
        events.decode()?;
        Ok(events)
    }

    async fn fill(&mut self) -> io::Result<()> {
        self.read.reserve(4096);
        if self.stream.read_buf(&mut self.read).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// Reads until a whole head is buffered: its status, its length, and its Content-Length.
    async fn read_head(&mut self) -> io::Result<(u16, usize, Option<usize>)> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.read) {
                Ok(httparse::Status::Complete(length)) => {
                    let status = response.code.unwrap_or(0);
                    let content_length = response
                        .headers
                        .iter()
                        .find(|header| header.name.eq_ignore_ascii_case("content-length"))
                        .and_then(|header| std::str::from_utf8(header.value).ok()?.parse().ok());
                    return Ok((status, length, content_length));
                }
                Ok(httparse::Status::Partial) => self.fill().await?,
                Err(error) => return Err(invalid(format!("a reply's head: {error}"))),
            }
        }
    }
}

/// Opens `/v1/events` as the bearer of `token`, trying up to `attempts` times 200 ms apart: a
/// server taking thousands of connections at once refuses some for a moment.
pub async fn open_events_retrying(base: &str, token: &str, attempts: usize) -> io::Result<Events> {
    let mut last = io::Error::other("no attempt made");
    for _attempt in 0..attempts {
        let opening = async {
            Connection::connect(base)
                .await?
                .open_events("/v1/events", token, None)
                .await
        };
        match opening.await {
            Ok(events) => return Ok(events),
            Err(error) => {
                last = error;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
    Err(last)
}

/// Where the chunked decoder stands.
enum Chunk {
    /// Reading a chunk's size line.
    Size,
    /// This many bytes of the chunk's data are still to come.
    Data(usize),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// The last (empty) chunk came: the body is over.
    Done,
}

/// A live stream's body, decoded from its chunks as it arrives.
pub struct Events {
    stream: TcpStream,
    /// Bytes read and not yet decoded.
    raw: Vec<u8>,
    chunk: Chunk,
    /// Decoded bytes the caller has not consumed.
    body: Vec<u8>,
}

impl Events {
    /// Reads what the socket has; `false` once the body has ended or the server closed.
    pub async fn fill(&mut self) -> io::Result<bool> {
        if matches!(self.chunk, Chunk::Done) {
            return Ok(false);
        }
        self.raw.reserve(4096);
        if self.stream.read_buf(&mut self.raw).await? == 0 {
            return Ok(false);
        }
        self.decode()?;
        Ok(true)
    }

    /// Calls `each` with the text between every whole occurrence of `marker` in the body and
    /// the next `"` (as in `"body":"MARKER 12 1700000000000000"`), and consumes the body up
    /// to the last one.
    pub fn take_marked(&mut self, marker: &[u8], mut each: impl FnMut(&str)) {
        let mut consumed = 0;
        loop {
            let Some(at) = find(&self.body[consumed..], marker) else {
                // No whole marker after `consumed`: keep only what may begin one.
                let keep = marker.len().saturating_sub(1);
                consumed = consumed.max(self.body.len().saturating_sub(keep));
                break;
            };
            let start = consumed + at + marker.len();
            let Some(length) = self.body[start..].iter().position(|&byte| byte == b'"') else {
                // The marker's text is still to come.
                consumed += at;
                break;
            };
            if let Ok(text) = std::str::from_utf8(&self.body[start..start + length]) {
                each(text);
            }
            consumed = start + length;
        }
        self.body.drain(..consumed);
    }

    fn decode(&mut self) -> io::Result<()> {
        let mut at = 0;
        loop {
            match self.chunk {
                Chunk::Size => {
                    let Some(end) = find(&self.raw[at..], b"\r\n") else {
                        break;
                    };
                    let line = std::str::from_utf8(&self.raw[at..at + end])
                        .map_err(|_| invalid("a chunk size that is not text"))?;
                    let hex = line.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(hex, 16)
                        .map_err(|_| invalid(format!("a chunk size {line:?}")))?;
                    at += end + 2;
                    self.chunk = if size == 0 {
                        Chunk::Done
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(remaining) => {
                    let available = (self.raw.len() - at).min(remaining);
                    if available == 0 {
                        break;
                    }
                    self.body.extend_from_slice(&self.raw[at..at + available]);
                    at += available;
                    self.chunk = if available == remaining {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(remaining - available)
                    };
                }
                Chunk::DataEnd => {
                    if self.raw.len() - at < 2 {
                        break;
                    }
                    if &self.raw[at..at + 2] != b"\r\n" {
                        return Err(invalid("a chunk not ended by CRLF"));
                    }
                    at += 2;
                    self.chunk = Chunk::Size;
                }
                Chunk::Done => break,
            }
        }
        self.raw.drain(..at);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
