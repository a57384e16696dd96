//! Simulated time and the event queue that orders everything that happens.
//!
//! Time is an integer count of microseconds since the start of a run: no wall clock is
//! ever read, so a run is a pure function of its seed. Events due at the same instant
//! run in the order they were scheduled, which keeps ties deterministic too.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

/// Microseconds since the start of the run.
pub type Micros = u64;

pub const MILLIS: Micros = 1_000;
pub const SECONDS: Micros = 1_000_000;

pub fn micros(duration: Duration) -> Micros {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

pub fn seconds(at: Micros) -> f64 {
    at as f64 / SECONDS as f64
}

struct Scheduled<E> {
    at: Micros,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Scheduled<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Scheduled<E> {}

impl<E> PartialOrd for Scheduled<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Scheduled<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: the heap is a max-heap and the earliest event must come out first.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Pending events in time order, and the current simulated time.
pub struct EventQueue<E> {
    heap: BinaryHeap<Scheduled<E>>,
    seq: u64,
    now: Micros,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
            now: 0,
        }
    }
}

impl<E> EventQueue<E> {
    pub fn now(&self) -> Micros {
        self.now
    }

    /// Schedules `event` at `at`; an instant in the past means "now".
    pub fn at(&mut self, at: Micros, event: E) {
        self.seq += 1;
        self.heap.push(Scheduled {
            at: at.max(self.now),
            seq: self.seq,
            event,
        });
    }

    pub fn after(&mut self, delay: Micros, event: E) {
        self.at(self.now.saturating_add(delay), event);
    }

    /// The next event due no later than `until`, advancing the clock to it; `None`
    /// (with the clock moved to `until`) when nothing more is due by then.
    pub fn pop_until(&mut self, until: Micros) -> Option<E> {
        if self.heap.peek().is_some_and(|next| next.at <= until) {
            let next = self.heap.pop()?;
            self.now = next.at;
            Some(next.event)
        } else {
            self.now = self.now.max(until);
            None
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_in_time_then_schedule_order() {
        let mut queue = EventQueue::default();
        queue.at(30, "c");
        queue.at(10, "a");
        queue.at(10, "b");
        queue.at(50, "late");
        assert_eq!(queue.pop_until(40), Some("a"));
        assert_eq!(queue.now(), 10);
        assert_eq!(queue.pop_until(40), Some("b"));
        assert_eq!(queue.pop_until(40), Some("c"));
        assert_eq!(queue.pop_until(40), None);
        assert_eq!(queue.now(), 40);
        // Scheduling in the past means now: time never runs backwards.
        queue.at(5, "past");
        assert_eq!(queue.pop_until(100), Some("past"));
        assert_eq!(queue.now(), 40);
        assert_eq!(queue.pop_until(100), Some("late"));
        assert!(queue.is_empty());
    }
}
