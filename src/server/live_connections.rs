//! Plain HTTP/1.1 connections that open with a live stream (`GET /v1/events`,
//! `GET /v1/rooms/{name}/events`), answered by the router as every request is, then written
//! to the socket here rather than through hyper.
//!
//! Why: a live stream holds its connection for hours, and hyper keeps an 8 KiB read buffer and
//! an 8 KiB write buffer for every HTTP/1 connection (fixed sizes in hyper 1.x): more than half
//! of what an idle stream cost the server. Here an idle stream holds its socket, the response
//! body and nothing else; an event is written straight from the bytes the body made of it.
//!
//! # Guarantees
//! - **Only the plainest request is taken**, judged on the bytes the connection's first read
//!   would get, looked at without taking them (`peek`): a complete head of fewer than
//!   [`PEEKED`] bytes and nothing after it, `GET`, HTTP/1.1, a live stream's path, no body
//!   (no `Content-Length` but 0, no `Transfer-Encoding`), no `Upgrade` or `Expect`, every
//!   header well formed. Anything else (another request, HTTP/1.0, a head split over two
//!   reads, one a proxy pipelined behind) goes to hyper untouched, which answers it exactly
//!   as it did. A connection that sends nothing within the header timeout is dropped, as
//!   hyper drops one. Responses here have bodies (the routes never answer 1xx, 204 or 304).
//! - **The same router answers**: every layer (request log, metrics, limits, the bearer token)
//!   sees the request as it would from hyper, with the peer's address.
//! - **One response, then the connection closes** (`Connection: close`): a stream ends only
//!   when the client leaves, its token goes, the server drains or a finite stream is done,
//!   and an EventSource reconnects on a connection of its own anyway. An error answer (a
//!   `401`, a `404`) is written whole, with its length, before the close.
//! - **A client that goes away ends its stream at once**: the socket is watched for end of
//!   file, an error or any byte the client sends after its request, and the body is dropped
//!   then, as hyper drops it (which records PART for a room's stream). Pipelining is not
//!   served here: a request sent behind a live stream's ends the stream (an EventSource never
//!   sends one). A whole response is followed by closing the write side and reading what the
//!   client still sends for a moment, so that the close does not reset the connection under
//!   an answer not yet read.
//! - **Shutdown waits for them**: [`Open`] counts these connections, and `serve` returns only
//!   once the last has written its end.

use std::io::{self, IoSlice};
use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::http::{self, HeaderName, HeaderValue, Method, Request, Response, header};
use tokio::net::TcpStream;
use tokio_stream::StreamExt as _;

/// The most bytes of a request head looked at: a live stream's request is a few hundred.
const PEEKED: usize = 4096;
/// The most headers a taken request may have.
const MAX_HEADERS: usize = 64;

/// Whether `head`, the bytes a connection's first read gets, is a live stream's request that
/// this module answers (see the module's guarantees), as the request the router takes.
pub(super) fn live_stream_request(head: &[u8]) -> Option<Request<()>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(length) = parsed.parse(head).ok()? else {
        return None;
    };
    if length != head.len() || parsed.method? != "GET" || parsed.version? != 1 {
        return None;
    }
    let target = parsed.path?;
    if !is_live_stream_path(target.split_once('?').map_or(target, |(path, _)| path)) {
        return None;
    }
    let mut request = Request::builder()
        .method(Method::GET)
        .version(http::Version::HTTP_11)
        .uri(target)
        .body(())
        .ok()?;
    for entry in parsed.headers.iter() {
        let name = HeaderName::from_bytes(entry.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(entry.value).ok()?;
        let refused = match name {
            header::CONTENT_LENGTH => value.as_bytes() != b"0",
            header::TRANSFER_ENCODING | header::UPGRADE | header::EXPECT => true,
            _ => false,
        };
        if refused {
            return None;
        }
        request.headers_mut().append(name, value);
    }
    Some(request)
}

/// `/v1/events` or `/v1/rooms/{name}/events`, as the router's routes spell them.
fn is_live_stream_path(path: &str) -> bool {
    path == "/v1/events"
        || path
            .strip_prefix("/v1/rooms/")
            .and_then(|rest| rest.strip_suffix("/events"))
            .is_some_and(|name| !name.is_empty() && !name.contains('/'))
}

/// What a connection opened with.
pub(super) enum Opening {
    /// A live stream's request, taken from the socket: this module answers it.
    LiveStream(Box<Request<()>>),
    /// Anything else: hyper serves the connection, which still holds every byte.
    Other,
    /// Nothing within [`super::HEADER_TIMEOUT`], or the socket failed: the connection is
    /// dropped, as hyper drops one whose head does not come in time.
    Gone,
}

/// Looks at what the connection sent first and, if it is a live stream's request, takes it
/// from the socket.
pub(super) async fn opening(stream: &TcpStream) -> Opening {
    // No buffer while waiting: a storm of connections that have not yet written costs
    // their sockets only.
    match tokio::time::timeout(super::HEADER_TIMEOUT, stream.readable()).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) | Err(_) => return Opening::Gone,
    }
    let mut head = vec![0; PEEKED];
    let peeked = match stream.peek(&mut head).await {
        Ok(0) | Err(_) => return Opening::Gone,
        Ok(peeked) => peeked,
    };
    head.truncate(peeked);
    // A full look may have left bytes unseen behind the head: hyper reads those.
    let Some(request) = live_stream_request(&head).filter(|_| peeked < PEEKED) else {
        return Opening::Other;
    };
    // Those bytes are in the socket's buffer: the read takes exactly them at once.
    let mut taken = 0;
    while taken < peeked {
        if stream.readable().await.is_err() {
            return Opening::Gone;
        }
        match stream.try_read(&mut head[taken..]) {
            Ok(0) => return Opening::Gone,
            Ok(read) => taken += read,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Opening::Gone,
        }
    }
    Opening::LiveStream(Box::new(request))
}

/// Answers `request` through `app` and writes the response to `stream`, then closes it.
pub(super) async fn serve_live_stream(
    stream: TcpStream,
    remote: SocketAddr,
    app: Router,
    request: Request<()>,
) {
    let mut request = request.map(|()| Body::empty());
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo::<SocketAddr>(remote));
    let Ok(response) = tower::ServiceExt::oneshot(app, request).await;
    match write_response(&stream, response).await {
        Ok(()) => close_after_response(stream).await,
        Err(error) => tracing::debug!(%error, %remote, "live stream connection ended"),
    }
}

/// How long a closed response waits for the client to close its side.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Ends the connection after a whole response: the write side first, then whatever the
/// client still sends is read and dropped for a moment, so that closing with unread bytes
/// does not reset the connection under a response the client has not read yet.
async fn close_after_response(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0; 256];
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(stream.read(&mut sink).await, Ok(read) if read > 0) {}
    })
    .await;
}

/// Why writing a response stopped early.
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error("the client went away")]
    ClientLeft,
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("the response body failed: {0}")]
    Body(axum::Error),
}

async fn write_response(stream: &TcpStream, response: Response<Body>) -> Result<(), Ended> {
    let (parts, body) = response.into_parts();
    let length = body.size_hint().exact();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_str(),
        parts.status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (name, value) in &parts.headers {
        if name == header::CONNECTION
            || name == header::TRANSFER_ENCODING
            || name == header::CONTENT_LENGTH
        {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(header::DATE) {
        head.extend_from_slice(b"date: ");
        head.extend_from_slice(http_date().as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    match length {
        Some(length) => head.extend_from_slice(format!("content-length: {length}\r\n").as_bytes()),
        None => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    head.extend_from_slice(b"connection: close\r\n\r\n");
    write_all(stream, &mut [IoSlice::new(&head)]).await?;
    drop(head);

    let chunked = length.is_none();
    let mut data = body.into_data_stream();
    // One watch on the socket for the whole response, not one registered anew per event.
    let left = client_left(stream);
    tokio::pin!(left);
    loop {
        let next = tokio::select! {
            next = data.next() => next,
            left = &mut left => return Err(left),
        };
        match next {
            Some(Ok(bytes)) if bytes.is_empty() => {}
            Some(Ok(bytes)) if chunked => {
                let mut size = [0; 20];
                let size = chunk_size_line(bytes.len(), &mut size);
                write_all(
                    stream,
                    &mut [
                        IoSlice::new(size),
                        IoSlice::new(&bytes),
                        IoSlice::new(b"\r\n"),
                    ],
                )
                .await?;
            }
            Some(Ok(bytes)) => write_all(stream, &mut [IoSlice::new(&bytes)]).await?,
            // Cut short without the last chunk: the client sees the response did not end.
            Some(Err(error)) => return Err(Ended::Body(error)),
            None => break,
        }
    }
    if chunked {
        write_all(stream, &mut [IoSlice::new(b"0\r\n\r\n")]).await?;
    }
    Ok(())
}

/// `SIZE\r\n` of a chunk of `length` bytes, in hexadecimal, written into `buffer`.
fn chunk_size_line(length: usize, buffer: &mut [u8; 20]) -> &[u8] {
    let digits = (usize::BITS - length.leading_zeros()).div_ceil(4).max(1) as usize;
    for (place, byte) in buffer[..digits].iter_mut().rev().enumerate() {
        *byte = b"0123456789abcdef"[(length >> (4 * place)) & 0xf];
    }
    buffer[digits..digits + 2].copy_from_slice(b"\r\n");
    &buffer[..digits + 2]
}

/// Completes when the client closes its side, resets, or sends anything after its request
/// (nothing may follow a live stream's request on its connection).
async fn client_left(stream: &TcpStream) -> Ended {
    let mut byte = [0; 1];
    loop {
        if let Err(error) = stream.readable().await {
            return Ended::Io(error);
        }
        match stream.try_read(&mut byte) {
            Ok(_) => return Ended::ClientLeft,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Ended::Io(error),
        }
    }
}

async fn write_all(stream: &TcpStream, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        stream.writable().await?;
        match stream.try_write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut slices, written),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The `Date` header's form (RFC 9110 IMF-fixdate), as hyper writes it.
fn http_date() -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_default()
}

/// The connections this module serves, so that `serve` can wait for the last to end.
#[derive(Debug)]
pub(super) struct Open {
    sender: tokio::sync::mpsc::Sender<()>,
    receiver: tokio::sync::mpsc::Receiver<()>,
}

/// Held by a connection while it is served.
pub(super) struct Serving(
    #[allow(dead_code, reason = "held, never read")] tokio::sync::mpsc::Sender<()>,
);

impl Open {
    pub(super) fn new() -> Open {
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        Open { sender, receiver }
    }

    pub(super) fn serving(&self) -> Serving {
        Serving(self.sender.clone())
    }

    /// Waits until every connection counted has ended.
    pub(super) async fn all_ended(self) {
        let Open {
            sender,
            mut receiver,
        } = self;
        drop(sender);
        // Nothing is ever sent: `recv` returns once the last sender is gone.
        let _ = receiver.recv().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which first reads are taken here, and which go to hyper as they came.
    #[test]
    fn only_a_plain_live_stream_request_is_taken() {
        let cases: &[(&str, bool)] = &[
            (
                "GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n",
                true,
            ),
            (
                "GET /v1/events?maxEvents=3 HTTP/1.1\r\nHost: x\r\n\r\n",
                true,
            ),
            (
                "GET /v1/rooms/eng%20talk/events HTTP/1.1\r\nLast-Event-ID: 4:2\r\n\r\n",
                true,
            ),
            ("GET /v1/events HTTP/1.1\r\nContent-Length: 0\r\n\r\n", true),
            // Not a live stream, or not only one.
            ("GET /v1/rooms HTTP/1.1\r\n\r\n", false),
            ("GET /v1/rooms/a/b/events HTTP/1.1\r\n\r\n", false),
            ("GET /v1/rooms//events HTTP/1.1\r\n\r\n", false),
            ("GET /v1/eventsX HTTP/1.1\r\n\r\n", false),
            (
                "POST /v1/events HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                false,
            ),
            ("HEAD /v1/events HTTP/1.1\r\n\r\n", false),
            ("GET /v1/events HTTP/1.0\r\n\r\n", false),
            (
                "GET /v1/events HTTP/1.1\r\n\r\nGET /v1/rooms HTTP/1.1\r\n\r\n",
                false,
            ),
            // Incomplete, or with a body, an upgrade or an expectation.
            ("GET /v1/events HTTP/1.1\r\nHost: x\r\n", false),
            (
                "GET /v1/events HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
                false,
            ),
            (
                "GET /v1/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
            ),
            (
                "GET /v1/events HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
                false,
            ),
            (
                "GET /v1/events HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
                false,
            ),
            ("GET http://x/v1/events HTTP/1.1\r\n\r\n", false),
            ("GET /v1/events HTTP/1.1\r\nBad Header: x\r\n\r\n", false),
        ];
        for (head, taken) in cases {
            assert_eq!(
                live_stream_request(head.as_bytes()).is_some(),
                *taken,
                "{head:?}"
            );
        }
        let request = live_stream_request(
            b"GET /v1/events?maxEvents=3 HTTP/1.1\r\nAuthorization: Bearer t\r\nX-A: 1\r\nX-A: 2\r\n\r\n",
        )
        .expect("taken");
        assert_eq!(request.uri().query(), Some("maxEvents=3"));
        assert_eq!(request.headers()["authorization"], "Bearer t");
        assert_eq!(request.headers().get_all("x-a").iter().count(), 2);
    }

    #[test]
    fn a_chunk_size_is_its_length_in_hexadecimal() {
        for length in [0, 1, 9, 10, 15, 16, 255, 4096, 65_535, usize::MAX] {
            let mut buffer = [0; 20];
            assert_eq!(
                chunk_size_line(length, &mut buffer),
                format!("{length:x}\r\n").as_bytes(),
                "{length}"
            );
        }
    }

    #[test]
    fn the_date_is_written_as_http_writes_it() {
        let date = http_date();
        assert_eq!(date.len(), "Sun, 06 Nov 1994 08:49:37 GMT".len(), "{date}");
        assert!(date.ends_with(" GMT"), "{date}");
    }
}
