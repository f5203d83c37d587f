//! The bounded in-memory buffer between the streaming threads and a publisher's delivery thread.
//!
//! Messages queue in order. The delivery side *takes* messages from the front (they stay in the
//! buffer, marked in flight: a prefix of the queue) and removes the oldest one when it was delivered
//! ([`Buffer::delivered`]) or definitely could not be ([`Buffer::failed`]); when delivery must be
//! retried (a lost connection) every message in flight is *released* and taken again from the front,
//! so the order never changes. When the buffer is full a message is dropped according to the
//! [`DropPolicy`] and counted: nothing leaves the buffer uncounted.

use std::collections::VecDeque;

/// Which message a full buffer gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DropPolicy {
    /// Drop the oldest waiting message (never the one in flight) to make room: after a long outage
    /// the consumer gets the most recent messages, and one gap of `seq` where the outage overflowed.
    #[default]
    Oldest,
    /// Refuse the new message: the buffer keeps the start of the outage.
    Newest,
}

impl DropPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "oldest" => Some(DropPolicy::Oldest),
            "newest" => Some(DropPolicy::Newest),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DropPolicy::Oldest => "oldest",
            DropPolicy::Newest => "newest",
        }
    }
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: String,
}

impl Message {
    pub fn new(topic: impl Into<String>, payload: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            payload: payload.into(),
        }
    }
}

/// What [`Buffer::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Queued after dropping the oldest waiting message.
    DroppedOldest,
    /// The new message was dropped.
    DroppedNewest,
}

/// A bounded FIFO of messages with delivery bookkeeping and counters.
#[derive(Debug)]
pub struct Buffer {
    queue: VecDeque<Message>,
    capacity: usize,
    policy: DropPolicy,
    /// The first `in_flight` messages of `queue` were taken and are not settled yet.
    in_flight: usize,
    published: u64,
    dropped: u64,
}

impl Buffer {
    /// A buffer of `capacity` messages (at least 1), the one in flight included.
    pub fn new(capacity: usize, policy: DropPolicy) -> Self {
        Self {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            policy,
            in_flight: 0,
            published: 0,
            dropped: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Messages in the buffer, the one in flight included.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Messages delivered.
    pub fn published(&self) -> u64 {
        self.published
    }

    /// Messages dropped (buffer full, undeliverable, or still buffered when the publisher closed).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn push(&mut self, m: Message) -> Pushed {
        if self.queue.len() < self.capacity {
            self.queue.push_back(m);
            return Pushed::Queued;
        }
        self.dropped += 1;
        match self.policy {
            DropPolicy::Newest => Pushed::DroppedNewest,
            DropPolicy::Oldest => {
                // Messages in flight stay: the oldest waiting one gives way.
                let victim = self.in_flight;
                if victim >= self.queue.len() {
                    // Everything is in flight: nothing else to drop.
                    return Pushed::DroppedNewest;
                }
                self.queue.remove(victim);
                self.queue.push_back(m);
                Pushed::DroppedOldest
            }
        }
    }

    /// Counts a message refused before it reached the buffer (e.g. larger than the target accepts).
    pub fn refuse(&mut self) {
        self.dropped += 1;
    }

    /// The oldest message not yet in flight, now marked in flight (a copy; it stays in the buffer).
    pub fn take(&mut self) -> Option<Message> {
        let m = self.queue.get(self.in_flight)?.clone();
        self.in_flight += 1;
        Some(m)
    }

    /// Messages taken and not settled yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The oldest message in flight was delivered: removes it and counts it as published.
    pub fn delivered(&mut self) {
        if self.in_flight > 0 {
            self.in_flight -= 1;
            self.queue.pop_front();
            self.published += 1;
        }
    }

    /// The oldest message in flight cannot be delivered: removes it and counts it as dropped.
    pub fn failed(&mut self) {
        if self.in_flight > 0 {
            self.in_flight -= 1;
            self.queue.pop_front();
            self.dropped += 1;
        }
    }

    /// Every message in flight goes back to waiting (they are taken again, first, in order).
    pub fn release(&mut self) {
        self.in_flight = 0;
    }

    /// Drops everything still buffered (counted), e.g. when closing without a connection.
    pub fn drop_all(&mut self) -> usize {
        let n = self.queue.len();
        self.queue.clear();
        self.in_flight = 0;
        self.dropped += n as u64;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(i: u32) -> Message {
        Message::new("t", i.to_string())
    }

    /// Settles what is in flight, oldest first.
    fn drain_in_flight(b: &mut Buffer) -> Vec<String> {
        let n = b.in_flight();
        let out = b.queue.iter().take(n).map(|m| m.payload.clone()).collect();
        for _ in 0..n {
            b.delivered();
        }
        out
    }

    fn drain(b: &mut Buffer) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(x) = b.take() {
            out.push(x.payload);
            b.delivered();
        }
        out
    }

    #[test]
    fn delivers_in_order_and_counts() {
        let mut b = Buffer::new(10, DropPolicy::Oldest);
        for i in 0..5 {
            assert_eq!(b.push(m(i)), Pushed::Queued);
        }
        assert_eq!(drain(&mut b), ["0", "1", "2", "3", "4"]);
        assert_eq!((b.published(), b.dropped(), b.len()), (5, 0, 0));
    }

    #[test]
    fn released_messages_are_taken_again_first_in_order() {
        let mut b = Buffer::new(8, DropPolicy::Oldest);
        for i in 0..3 {
            b.push(m(i));
        }
        assert_eq!(b.take().unwrap().payload, "0");
        assert_eq!(b.take().unwrap().payload, "1");
        assert_eq!(b.in_flight(), 2);
        b.delivered(); // 0 acknowledged
        b.release(); // connection lost before 1 was acknowledged
        b.push(m(3));
        assert_eq!(b.take().unwrap().payload, "1");
        assert_eq!(b.take().unwrap().payload, "2");
        assert_eq!(b.take().unwrap().payload, "3");
        assert_eq!(b.take(), None);
        for _ in 0..3 {
            b.delivered();
        }
        assert_eq!((b.published(), b.len(), b.in_flight()), (4, 0, 0));
    }

    #[test]
    fn full_buffer_drops_oldest_waiting_but_never_the_one_in_flight() {
        let mut b = Buffer::new(3, DropPolicy::Oldest);
        for i in 0..3 {
            b.push(m(i));
        }
        assert_eq!(b.take().unwrap().payload, "0");
        assert_eq!(b.push(m(3)), Pushed::DroppedOldest); // drops 1
        assert_eq!(b.push(m(4)), Pushed::DroppedOldest); // drops 2
        assert_eq!(b.dropped(), 2);
        b.delivered();
        assert_eq!(drain(&mut b), ["3", "4"]);
        // With two in flight, the third gives way.
        for i in 5..8 {
            b.push(m(i));
        }
        b.take();
        b.take();
        assert_eq!(b.push(m(8)), Pushed::DroppedOldest); // drops 7
        b.take();
        assert_eq!(b.push(m(9)), Pushed::DroppedNewest); // all three in flight
        assert_eq!(drain_in_flight(&mut b), ["5", "6", "8"]);
        assert_eq!((b.published(), b.dropped()), (6, 4));
        // Without anything in flight the front goes.
        for i in 10..14 {
            b.push(m(i));
        }
        assert_eq!(drain(&mut b), ["11", "12", "13"]);
        assert_eq!((b.published(), b.dropped()), (9, 5));
    }

    #[test]
    fn full_buffer_drops_newest_exactly() {
        let mut b = Buffer::new(4, DropPolicy::Newest);
        let results: Vec<_> = (0..10).map(|i| b.push(m(i))).collect();
        assert_eq!(
            results
                .iter()
                .filter(|r| **r == Pushed::DroppedNewest)
                .count(),
            6
        );
        assert_eq!(b.dropped(), 6);
        assert_eq!(drain(&mut b), ["0", "1", "2", "3"]);
    }

    #[test]
    fn capacity_one_in_flight_refuses_new_messages() {
        let mut b = Buffer::new(0, DropPolicy::Oldest);
        assert_eq!(b.capacity(), 1);
        b.push(m(0));
        b.take();
        assert_eq!(b.push(m(1)), Pushed::DroppedNewest);
        b.delivered();
        assert_eq!(b.push(m(2)), Pushed::Queued);
        assert_eq!((b.published(), b.dropped()), (1, 1));
    }

    #[test]
    fn failures_and_closing_are_counted_as_dropped() {
        let mut b = Buffer::new(8, DropPolicy::Oldest);
        for i in 0..4 {
            b.push(m(i));
        }
        b.take();
        b.failed();
        assert_eq!(b.drop_all(), 3);
        assert_eq!((b.published(), b.dropped(), b.len()), (0, 4, 0));
        assert_eq!(b.in_flight(), 0);
    }

    #[test]
    fn policy_names() {
        for p in [DropPolicy::Oldest, DropPolicy::Newest] {
            assert_eq!(DropPolicy::parse(p.as_str()), Some(p));
        }
        assert_eq!(DropPolicy::parse("random"), None);
    }
}
