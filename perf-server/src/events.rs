//! Server-Sent Events: feeds that keep a short history and fan each event
//! out to their subscribers without ever waiting for one.
//!
//! An event is rendered once into an SSE frame (`event:`, `id:`, `data:`)
//! and shared by every subscriber (`Bytes` is reference-counted). Each
//! subscriber has a queue of [`QUEUE_FRAMES`] frames; publishing only
//! *tries* to queue, so a subscriber whose queue is full (a slow or stalled
//! client: the server cannot write to it) is dropped on the spot, its slot
//! freed and counted, and the publisher (a load test, the host sampler)
//! never waits. A subscriber that joins late gets the feed's history first.
//! Open streams are capped server-wide ([`StreamSlots`]); beyond the cap a
//! subscription is refused (the route answers 503).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::web::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Frames a subscriber may have waiting before it is dropped as too slow
/// (16 s of a load test's events; 1.6 s of host samples at 100 ms).
pub(crate) const QUEUE_FRAMES: usize = 16;

/// A comment line sent when nothing else was, so that proxies keep the
/// connection and a vanished client is noticed.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// The default cap on open event streams.
pub(crate) const DEFAULT_MAX_STREAMS: usize = 256;

/// The server-wide count of open event streams and its cap.
#[derive(Debug)]
pub struct StreamSlots {
    open: AtomicUsize,
    max: usize,
    dropped: AtomicU64,
    /// Cancelled when the server shuts down: every stream ends.
    shutdown: CancellationToken,
}

impl Default for StreamSlots {
    fn default() -> Self {
        Self {
            open: AtomicUsize::new(0),
            max: DEFAULT_MAX_STREAMS,
            dropped: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
        }
    }
}

impl StreamSlots {
    /// At most `max` streams open at once.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            ..Self::default()
        })
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Ends every stream, open or to come (the server is stopping: an open
    /// stream would hold the graceful shutdown until its timeout).
    pub fn shut_down(&self) {
        self.shutdown.cancel();
    }

    /// Subscribers dropped for falling behind, since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn take(self: &Arc<Self>) -> Option<Arc<Slot>> {
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        taken.then(|| {
            Arc::new(Slot {
                slots: Arc::clone(self),
                released: AtomicBool::new(false),
            })
        })
    }
}

/// One open stream's place under the cap; freed once, by whichever comes
/// first: the stream's end or its eviction.
#[derive(Debug)]
struct Slot {
    slots: Arc<StreamSlots>,
    released: AtomicBool,
}

impl Slot {
    fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.slots.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The cap on open streams is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamsFull(pub usize);

#[derive(Debug)]
struct Subscriber {
    queue: mpsc::Sender<Bytes>,
    slot: Arc<Slot>,
}

#[derive(Debug, Default)]
struct FeedState {
    history: VecDeque<Bytes>,
    subscribers: Vec<Subscriber>,
    next_id: u64,
    closed: bool,
}

/// A source of events: its recent history and its subscribers.
#[derive(Debug)]
pub struct EventFeed {
    name: String,
    keep: usize,
    state: Mutex<FeedState>,
}

/// One SSE frame: `event:`, `id:` and the JSON on one `data:` line (JSON
/// never holds a raw newline, so one line is always enough).
fn frame(event: &str, id: u64, data: &impl Serialize) -> Bytes {
    let json = serde_json::to_string(data).unwrap_or_else(|_| "null".to_owned());
    Bytes::from(format!("event: {event}\nid: {id}\ndata: {json}\n\n"))
}

impl EventFeed {
    /// A feed named `name` (for the log) keeping its last `keep` events for
    /// late subscribers.
    pub fn new(name: impl Into<String>, keep: usize) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            keep,
            state: Mutex::new(FeedState::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, FeedState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends `data` as event `event` to every subscriber and keeps it in
    /// the history; a subscriber that cannot take it is dropped.
    pub fn publish(&self, event: &str, data: &impl Serialize) {
        let mut state = self.state();
        if state.closed {
            return;
        }
        self.push(&mut state, event, data);
    }

    fn push(&self, state: &mut FeedState, event: &str, data: &impl Serialize) {
        state.next_id += 1;
        let frame = frame(event, state.next_id, data);
        if self.keep > 0 {
            if state.history.len() == self.keep {
                state.history.pop_front();
            }
            state.history.push_back(frame.clone());
        }
        state.subscribers.retain(|s| match s.queue.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                s.slot.release();
                s.slot.slots.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::info!(feed = %self.name, "dropped an event stream that fell {QUEUE_FRAMES} events behind");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    /// Sends the last event and ends every stream after it; later
    /// subscribers get the history, this event included, and the end.
    pub fn close(&self, event: &str, data: &impl Serialize) {
        let mut state = self.state();
        if state.closed {
            return;
        }
        self.push(&mut state, event, data);
        state.closed = true;
        // Dropping the senders ends each stream once its queue is sent. Their
        // slots are free now: what is left is at most a queue of shared
        // frames, and a client that stopped reading must not keep a slot.
        for s in state.subscribers.drain(..) {
            s.slot.release();
        }
    }

    /// Subscribers now.
    pub fn subscribers(&self) -> usize {
        self.state().subscribers.len()
    }

    /// A stream of this feed's history, then its events as they come, until
    /// it closes; `StreamsFull` when `slots` has none left.
    pub fn subscribe(&self, slots: &Arc<StreamSlots>) -> Result<EventStream, StreamsFull> {
        let slot = slots.take().ok_or(StreamsFull(slots.max))?;
        let mut state = self.state();
        let backlog = state.history.clone();
        let queue = if state.closed {
            None
        } else {
            let (tx, rx) = mpsc::channel(QUEUE_FRAMES);
            state.subscribers.push(Subscriber {
                queue: tx,
                slot: Arc::clone(&slot),
            });
            Some(rx)
        };
        Ok(EventStream::new(backlog, queue, slot))
    }

    /// A stream of just these events, then the end (a test that ended
    /// before the subscription: its last event, rebuilt from the store).
    pub fn replay(
        slots: &Arc<StreamSlots>,
        events: &[(&str, serde_json::Value)],
    ) -> Result<EventStream, StreamsFull> {
        let slot = slots.take().ok_or(StreamsFull(slots.max))?;
        let backlog = events
            .iter()
            .zip(1..)
            .map(|((event, data), id)| frame(event, id, data))
            .collect();
        Ok(EventStream::new(backlog, None, slot))
    }
}

/// The body of an SSE response.
#[derive(Debug)]
pub struct EventStream {
    backlog: VecDeque<Bytes>,
    queue: Option<mpsc::Receiver<Bytes>>,
    slot: Arc<Slot>,
    heartbeat: tokio::time::Interval,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl EventStream {
    fn new(
        backlog: VecDeque<Bytes>,
        queue: Option<mpsc::Receiver<Bytes>>,
        slot: Arc<Slot>,
    ) -> Self {
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = Box::pin(slot.slots.shutdown.clone().cancelled_owned());
        Self {
            backlog,
            queue,
            slot,
            heartbeat,
            shutdown,
        }
    }
}

impl futures_core::Stream for EventStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        if let Some(frame) = self.backlog.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let Some(queue) = self.queue.as_mut() else {
            return Poll::Ready(None);
        };
        match queue.poll_recv(cx) {
            Poll::Ready(Some(frame)) => {
                self.heartbeat.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            // The feed closed, or dropped this subscriber as too slow.
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.heartbeat.poll_tick(cx) {
                Poll::Ready(_) => Poll::Ready(Some(Ok(Bytes::from_static(b": keep-alive\n\n")))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.slot.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next_now(stream: &mut EventStream) -> Option<String> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        match futures_core::Stream::poll_next(Pin::new(stream), &mut cx) {
            Poll::Ready(Some(Ok(b))) => Some(String::from_utf8_lossy(&b).into_owned()),
            Poll::Ready(None) => Some("<end>".to_owned()),
            Poll::Pending => None,
        }
    }

    /// Everything ready now, up to and including the end.
    fn drain(stream: &mut EventStream) -> Vec<String> {
        let mut frames = Vec::new();
        while let Some(f) = next_now(stream) {
            let end = f == "<end>";
            frames.push(f);
            if end {
                break;
            }
        }
        frames
    }

    #[tokio::test]
    async fn late_subscribers_get_the_history_then_live_events_then_the_end() {
        let slots = StreamSlots::new(4);
        let feed = EventFeed::new("t", 3);
        for i in 0..5 {
            feed.publish("snapshot", &i);
        }
        let mut s = feed.subscribe(&slots).unwrap();
        // The last three of five, in order, with their ids.
        for (i, id) in [(2, 3), (3, 4), (4, 5)] {
            assert_eq!(
                next_now(&mut s).unwrap(),
                format!("event: snapshot\nid: {id}\ndata: {i}\n\n")
            );
        }
        assert_eq!(next_now(&mut s), None);
        feed.publish("snapshot", &5);
        assert!(next_now(&mut s).unwrap().contains("data: 5"));
        feed.close("completed", &serde_json::json!({"status": "completed"}));
        // The close frees the slot at once (a stalled client keeps none).
        assert_eq!(slots.open(), 0);
        assert!(next_now(&mut s).unwrap().starts_with("event: completed"));
        assert_eq!(next_now(&mut s).unwrap(), "<end>");
        drop(s);
        assert_eq!(slots.open(), 0);
        // After the close: the history and the end at once.
        let mut late = feed.subscribe(&slots).unwrap();
        let frames = drain(&mut late);
        assert_eq!(frames.len(), 4, "{frames:?}");
        assert_eq!(frames[3], "<end>");
    }

    #[tokio::test]
    async fn shutting_down_ends_every_stream() {
        let slots = StreamSlots::new(4);
        let feed = EventFeed::new("t", 4);
        feed.publish("snapshot", &1);
        let mut s = feed.subscribe(&slots).unwrap();
        slots.shut_down();
        assert_eq!(next_now(&mut s).unwrap(), "<end>");
        let mut later = feed.subscribe(&slots).unwrap();
        assert_eq!(next_now(&mut later).unwrap(), "<end>");
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_dropped_and_its_slot_freed() {
        let slots = StreamSlots::new(2);
        let feed = EventFeed::new("t", 0);
        let mut slow = feed.subscribe(&slots).unwrap();
        let mut quick = feed.subscribe(&slots).unwrap();
        assert_eq!(feed.subscribe(&slots).unwrap_err(), StreamsFull(2));
        for i in 0..=QUEUE_FRAMES {
            feed.publish("snapshot", &i);
            assert!(next_now(&mut quick).is_some());
        }
        // The slow one never read: dropped at the frame that found its queue full.
        assert_eq!(slots.dropped(), 1);
        assert_eq!(slots.open(), 1);
        assert_eq!(feed.subscribers(), 1);
        // It still ends cleanly: what was queued, then the end.
        let frames = drain(&mut slow);
        assert_eq!(frames.len(), QUEUE_FRAMES + 1);
        assert_eq!(frames.last().unwrap(), "<end>");
        drop(slow);
        assert_eq!(slots.open(), 1, "a slot is freed once");
        assert!(feed.subscribe(&slots).is_ok());
    }
}
