//! Server-Sent Events as live streams send them: each event framed into bytes that every
//! response sending it shares, and the response body that writes them, with a keep-alive
//! comment after [`KEEP_ALIVE`] of quiet.
//!
//! axum's `Sse` builds every event per response: a message the node's hub hands to 16,000
//! streams was copied into 16,000 buffers of its own, and each stream's keep-alive timer was
//! taken out of tokio's timer wheel and put back at every event. Here the hub's message is
//! framed once, for the cursor of the first stream that sends it, and shared by every stream
//! whose cursor stands at the same place (in a batch, every stream caught up with the log; see
//! `service::BatchMessage::framed`), and the timer moves only when it fires.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use http_body::Frame;
use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;

/// How long a stream stays quiet before it sends a comment, so that proxies and clients see
/// it alive and a departed client is noticed by the write.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The comment a quiet stream sends: ignored by every client.
const KEEP_ALIVE_COMMENT: &[u8] = b":\n\n";

/// Keep-alives fall due on a grid of this step (rounded up, so never early), so that a node's
/// quiet streams, opened at scattered moments, send theirs a few times a second together
/// rather than each at its own millisecond: 15,000 quiet streams woke their node, and their
/// clients, a thousand times a second.
const KEEP_ALIVE_STEP: Duration = Duration::from_millis(100);

/// `at`, rounded up to the grid of [`KEEP_ALIVE_STEP`] (counted from the first time this
/// process asked).
fn on_keep_alive_grid(at: Instant) -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    let since = at.saturating_duration_since(origin).as_nanos();
    let step = KEEP_ALIVE_STEP.as_nanos();
    let steps = since.div_ceil(step);
    let rounded = u64::try_from(steps.saturating_mul(step)).unwrap_or(u64::MAX);
    origin + Duration::from_nanos(rounded)
}

/// An event: `id: ID`, `event: NAME`, a `data: ` line for each line of `data`, and the blank
/// line that ends it. `data`'s line breaks (`\n`, `\r\n` or `\r`) start new `data:` lines,
/// which a client joins again with `\n`; JSON as serde_json writes it has none.
///
/// `id` and `event` are the server's own (a cursor, a fixed name) and hold no line break.
pub fn frame(id: impl std::fmt::Display, event: &str, data: &str) -> Bytes {
    use std::fmt::Write as _;
    let mut buffer = BytesMut::with_capacity(data.len() + event.len() + 48);
    // Writing to a `BytesMut` cannot fail.
    let _ = write!(buffer, "id: {id}\nevent: {event}\n");
    debug_assert_eq!(
        memchr::memchr2_iter(b'\n', b'\r', &buffer).count(),
        2,
        "an event's id and name are one line each"
    );
    let mut rest = data.as_bytes();
    loop {
        buffer.put_slice(b"data: ");
        match memchr::memchr2(b'\n', b'\r', rest) {
            None => {
                buffer.put_slice(rest);
                buffer.put_u8(b'\n');
                break;
            }
            Some(at) => {
                buffer.put_slice(&rest[..at]);
                buffer.put_u8(b'\n');
                let crlf = rest[at] == b'\r' && rest.get(at + 1) == Some(&b'\n');
                rest = &rest[at + if crlf { 2 } else { 1 }..];
            }
        }
    }
    buffer.put_u8(b'\n');
    buffer.freeze()
}

/// A live stream's response body: the framed events of `events` as they come, and a comment
/// once nothing was sent for [`KEEP_ALIVE`]. Ends when `events` ends.
pub struct LiveBody<S> {
    events: S,
    /// How long the stream stays quiet before a comment: [`KEEP_ALIVE`].
    interval: Duration,
    /// Fires at or before the next keep-alive is due; moved on only when it fires.
    keep_alive: Pin<Box<Sleep>>,
    last_sent: Instant,
}

impl<S> LiveBody<S> {
    pub fn new(events: S) -> LiveBody<S> {
        LiveBody::with_keep_alive(events, KEEP_ALIVE)
    }

    /// A body that sends a comment after `interval` of quiet.
    fn with_keep_alive(events: S, interval: Duration) -> LiveBody<S> {
        let now = Instant::now();
        LiveBody {
            events,
            interval,
            keep_alive: Box::pin(tokio::time::sleep_until(on_keep_alive_grid(now + interval))),
            last_sent: now,
        }
    }
}

impl<S: Stream<Item = Bytes> + Unpin> http_body::Body for LiveBody<S> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.events).poll_next(context) {
            Poll::Ready(Some(event)) => {
                // A clock read rather than re-arming the timer: the timer catches up when it
                // fires (below).
                this.last_sent = Instant::now();
                return Poll::Ready(Some(Ok(Frame::data(event))));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        loop {
            if this.keep_alive.as_mut().poll(context).is_pending() {
                return Poll::Pending;
            }
            let due = this.last_sent + this.interval;
            let now = Instant::now();
            if due > now {
                // Something was sent since the timer was set: wait out the rest of the quiet.
                this.keep_alive.as_mut().reset(on_keep_alive_grid(due));
                continue;
            }
            this.last_sent = now;
            this.keep_alive
                .as_mut()
                .reset(on_keep_alive_grid(now + this.interval));
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                KEEP_ALIVE_COMMENT,
            )))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;
    use http_body::Body as _;

    fn shown(bytes: &Bytes) -> String {
        String::from_utf8(bytes.to_vec()).expect("UTF-8")
    }

    #[test]
    fn events_are_framed_a_data_line_for_each_line() {
        let framed = [
            frame("12:3", "message", r#"{"id":12,"body":"a\nb"}"#),
            frame("12:3", "room", ""),
            frame(7, "message", "one\ntwo\r\nthree\rfour\n"),
        ]
        .iter()
        .map(shown)
        .collect::<Vec<_>>()
        .join("|");
        expect![[r#"
            id: 12:3
            event: message
            data: {"id":12,"body":"a\nb"}

            |id: 12:3
            event: room
            data: 

            |id: 7
            event: message
            data: one
            data: two
            data: three
            data: four
            data: 

        "#]]
        .assert_eq(&framed);
    }

    /// Keep-alives fall due together: instants within one step of the grid share their
    /// deadline, which is never before them and less than a step after.
    #[test]
    fn keep_alives_fall_due_on_a_grid() {
        let start = on_keep_alive_grid(Instant::now());
        let step = KEEP_ALIVE_STEP;
        assert_eq!(
            on_keep_alive_grid(start),
            start,
            "a point of the grid is its own"
        );
        for offset_ms in [1, 17, 50, 99, 100, 101, 250, 15_000, 15_001] {
            let at = start + Duration::from_millis(offset_ms);
            let due = on_keep_alive_grid(at);
            assert!(due >= at, "{offset_ms} ms: due early");
            assert!(due - at < step, "{offset_ms} ms: due a step late");
            assert_eq!(on_keep_alive_grid(due), due, "{offset_ms} ms: off the grid");
        }
        let together: std::collections::BTreeSet<Instant> = (1..100)
            .map(|ms| on_keep_alive_grid(start + Duration::from_millis(ms)))
            .collect();
        assert_eq!(together.len(), 1, "one step's instants share a deadline");
    }

    /// Reads what the body sends, as a client would see it: events and comments in order.
    async fn next_frame<S: Stream<Item = Bytes> + Unpin>(body: &mut LiveBody<S>) -> Option<String> {
        std::future::poll_fn(|context| Pin::new(&mut *body).poll_frame(context))
            .await
            .map(|frame| shown(&frame.expect("infallible").into_data().expect("data")))
    }

    /// Real time, with a short interval: the bounds asserted are ones no scheduling delay can
    /// break (a comment never comes early; it does come), and a body that sent its comment
    /// when the timer fired, whatever it sent since, breaks the first of them.
    #[tokio::test]
    async fn a_comment_follows_only_a_quiet_keep_alive_interval() {
        const INTERVAL: Duration = Duration::from_millis(300);
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let opened = Instant::now();
        let mut body = LiveBody::with_keep_alive(
            tokio_stream::wrappers::UnboundedReceiverStream::new(receiver),
            INTERVAL,
        );
        // Quiet from the start: a comment once the interval has passed, not before.
        assert_eq!(next_frame(&mut body).await.as_deref(), Some(":\n\n"));
        assert!(opened.elapsed() >= INTERVAL, "a comment came early");

        // Events a third of an interval apart, for three intervals: the timer set at the
        // comment fires meanwhile, unpolled.
        let mut last_polled = Instant::now();
        for id in 1..=9 {
            tokio::time::sleep(INTERVAL / 3).await;
            sender.send(frame(id, "message", "{}")).expect("sent");
            last_polled = Instant::now();
            let event = next_frame(&mut body).await.expect("an event");
            assert!(event.starts_with(&format!("id: {id}\n")), "{event:?}");
        }

        // Then quiet: the comment comes an interval after the last event (which the body sent
        // after `last_polled`), not at once because its timer has fired.
        assert_eq!(next_frame(&mut body).await.as_deref(), Some(":\n\n"));
        assert!(last_polled.elapsed() >= INTERVAL, "a comment came early");

        // The stream's end ends the body.
        drop(sender);
        assert_eq!(next_frame(&mut body).await, None);
    }
}
