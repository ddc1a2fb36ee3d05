//! Dynamic batching as a plain data structure. Requests (each of one or more rows) queue in arrival order; a
//! batch is due when the queued rows reach the maximum batch size or the oldest request has waited the maximum
//! wait; a batch takes requests in order while they fit (a request larger than the batch size goes alone);
//! requests whose caller has gone away are dropped when met; and an admission limit on queued rows refuses new
//! requests at once (the server answers 429) instead of letting the queue grow without bound.
//!
//! Time is passed in by the caller (`now`), so the driving task decides what a clock is and tests need none.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Batching limits for one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchingConfig {
    /// Most rows in one batch.
    pub max_batch_rows: usize,
    /// Longest a request waits for others to join its batch.
    pub max_wait: Duration,
    /// Most rows queued at once; beyond it requests are refused.
    pub max_queued_rows: usize,
}

impl BatchingConfig {
    /// Checks the limits make sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_batch_rows == 0 {
            return Err("the maximum batch size must be at least one row".to_string());
        }
        if self.max_queued_rows < self.max_batch_rows {
            return Err(format!(
                "the queue limit ({} rows) must hold at least one full batch ({} rows)",
                self.max_queued_rows, self.max_batch_rows
            ));
        }
        Ok(())
    }
}

/// A refused request: the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull {
    /// Rows queued when the request came.
    pub queued_rows: usize,
    /// The limit.
    pub limit: usize,
}

#[derive(Debug)]
struct Waiting<T> {
    item: T,
    rows: usize,
    arrived: Instant,
}

/// The queue of one model's pending requests.
#[derive(Debug)]
pub struct BatchQueue<T> {
    config: BatchingConfig,
    waiting: VecDeque<Waiting<T>>,
    queued_rows: usize,
}

impl<T> BatchQueue<T> {
    /// An empty queue with these limits (see [`BatchingConfig::validate`]).
    pub fn new(config: BatchingConfig) -> BatchQueue<T> {
        BatchQueue {
            config,
            waiting: VecDeque::new(),
            queued_rows: 0,
        }
    }

    /// Queues a request of `rows` rows that arrived at `now`, or refuses it when the queue is full. A request
    /// is never refused on an empty queue, so one larger than the limit still runs (alone).
    pub fn offer(&mut self, item: T, rows: usize, now: Instant) -> Result<(), (T, QueueFull)> {
        if !self.waiting.is_empty() && self.queued_rows + rows > self.config.max_queued_rows {
            return Err((
                item,
                QueueFull {
                    queued_rows: self.queued_rows,
                    limit: self.config.max_queued_rows,
                },
            ));
        }
        self.queued_rows += rows;
        self.waiting.push_back(Waiting {
            item,
            rows,
            arrived: now,
        });
        Ok(())
    }

    /// Requests queued.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Rows queued (the queue-depth signal to autoscale on).
    pub fn queued_rows(&self) -> usize {
        self.queued_rows
    }

    /// When the oldest request's wait runs out, if anything waits.
    pub fn deadline(&self) -> Option<Instant> {
        self.waiting.front().map(|w| w.arrived + self.config.max_wait)
    }

    /// Whether a batch should run at `now`: a full batch is queued, or the oldest request has waited long enough.
    pub fn is_due(&self, now: Instant) -> bool {
        self.queued_rows >= self.config.max_batch_rows || self.deadline().is_some_and(|deadline| now >= deadline)
    }

    /// Takes the next batch: requests in arrival order while their rows fit in one batch (the first one always
    /// goes, however large), skipping those `gone` says nobody waits for any more. Returns the requests with
    /// their row counts.
    pub fn take_batch(&mut self, mut gone: impl FnMut(&T) -> bool) -> Vec<(T, usize)> {
        let mut batch = Vec::new();
        let mut rows = 0;
        while let Some(next) = self.waiting.front() {
            if gone(&next.item) {
                let dropped = self.waiting.pop_front().expect("front exists");
                self.queued_rows -= dropped.rows;
                continue;
            }
            if !batch.is_empty() && rows + next.rows > self.config.max_batch_rows {
                break;
            }
            let taken = self.waiting.pop_front().expect("front exists");
            self.queued_rows -= taken.rows;
            rows += taken.rows;
            batch.push((taken.item, taken.rows));
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config(max_batch_rows: usize, wait_ms: u64, max_queued_rows: usize) -> BatchingConfig {
        BatchingConfig {
            max_batch_rows,
            max_wait: Duration::from_millis(wait_ms),
            max_queued_rows,
        }
    }

    #[test]
    fn a_batch_is_due_when_full_or_when_the_oldest_waited_enough() {
        let start = Instant::now();
        let mut queue = BatchQueue::new(config(4, 5, 100));
        assert!(!queue.is_due(start) && queue.deadline().is_none());
        queue.offer("a", 1, start).unwrap();
        queue.offer("b", 2, start + Duration::from_millis(3)).unwrap();
        assert!(!queue.is_due(start + Duration::from_millis(4)));
        assert_eq!(queue.deadline(), Some(start + Duration::from_millis(5)));
        assert!(
            queue.is_due(start + Duration::from_millis(5)),
            "the oldest waited its 5 ms"
        );
        queue.offer("c", 1, start + Duration::from_millis(4)).unwrap();
        assert!(
            queue.is_due(start + Duration::from_millis(4)),
            "4 rows make a full batch"
        );
        let batch = queue.take_batch(|_| false);
        assert_eq!(batch, vec![("a", 1), ("b", 2), ("c", 1)]);
        assert!(queue.is_empty() && queue.queued_rows() == 0);
    }

    #[test]
    fn batches_keep_arrival_order_and_never_exceed_the_size_unless_one_request_does() {
        let now = Instant::now();
        let mut queue = BatchQueue::new(config(4, 1, 100));
        for (name, rows) in [("a", 3), ("b", 2), ("big", 9), ("c", 1)] {
            queue.offer(name, rows, now).unwrap();
        }
        assert_eq!(queue.take_batch(|_| false), vec![("a", 3)]);
        assert_eq!(queue.take_batch(|_| false), vec![("b", 2)]);
        assert_eq!(
            queue.take_batch(|_| false),
            vec![("big", 9)],
            "too big for any batch: it runs alone"
        );
        assert_eq!(queue.take_batch(|_| false), vec![("c", 1)]);
        assert!(queue.take_batch(|_| false).is_empty());
    }

    #[test]
    fn requests_whose_caller_left_are_skipped() {
        let now = Instant::now();
        let mut queue = BatchQueue::new(config(10, 1, 100));
        for (name, rows) in [("a", 1), ("gone", 5), ("b", 2)] {
            queue.offer(name, rows, now).unwrap();
        }
        assert_eq!(queue.take_batch(|item| *item == "gone"), vec![("a", 1), ("b", 2)]);
        assert_eq!(queue.queued_rows(), 0);
    }

    #[test]
    fn a_full_queue_refuses_at_once_and_hands_the_request_back() {
        let now = Instant::now();
        let mut queue = BatchQueue::new(config(4, 1, 6));
        queue.offer(1, 4, now).unwrap();
        queue.offer(2, 2, now).unwrap();
        let (item, full) = queue.offer(3, 1, now).unwrap_err();
        assert_eq!(
            (item, full),
            (
                3,
                QueueFull {
                    queued_rows: 6,
                    limit: 6
                }
            )
        );
        queue.take_batch(|_| false);
        queue.offer(3, 1, now).unwrap();
        let mut empty = BatchQueue::new(config(4, 1, 6));
        empty
            .offer(9, 50, now)
            .expect("an empty queue takes even an oversized request");
    }

    #[test]
    fn limits_are_checked() {
        assert!(config(0, 1, 10).validate().is_err());
        assert!(
            config(8, 1, 4)
                .validate()
                .unwrap_err()
                .contains("at least one full batch")
        );
        assert!(config(8, 1, 64).validate().is_ok());
    }

    proptest! {
        #[test]
        fn every_request_leaves_exactly_once_in_order(
            sizes in prop::collection::vec(1usize..20, 0..60),
            max_rows in 1usize..16,
            gone_every in 2usize..7,
        ) {
            let now = Instant::now();
            let mut queue = BatchQueue::new(config(max_rows, 1, usize::MAX));
            for (index, rows) in sizes.iter().enumerate() {
                queue.offer(index, *rows, now).unwrap();
            }
            let mut served = Vec::new();
            loop {
                let batch = queue.take_batch(|index| index % gone_every == 0);
                if batch.is_empty() {
                    break;
                }
                let rows: usize = batch.iter().map(|(_, r)| r).sum();
                prop_assert!(rows <= max_rows || batch.len() == 1);
                served.extend(batch.into_iter().map(|(index, _)| index));
            }
            let expected: Vec<usize> = (0..sizes.len()).filter(|i| i % gone_every != 0).collect();
            prop_assert_eq!(served, expected);
            prop_assert_eq!(queue.queued_rows(), 0);
        }
    }
}
