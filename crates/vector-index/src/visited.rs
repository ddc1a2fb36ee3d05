//! Which nodes a graph walk has already seen: one mark per node, cleared in O(1) by moving to a new epoch, and
//! a pool of them so concurrent searches do not allocate a list the size of the index each time.

use std::sync::Mutex;

/// The marks of one walk.
pub(crate) struct Visited {
    marks: Vec<u16>,
    epoch: u16,
}

impl Visited {
    fn new(len: usize) -> Self {
        Visited {
            marks: vec![0; len],
            epoch: 0,
        }
    }

    /// Starts a new walk over `len` nodes.
    fn reset(&mut self, len: usize) {
        if self.marks.len() < len {
            self.marks.resize(len, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.iter_mut().for_each(|mark| *mark = 0);
            self.epoch = 1;
        }
    }

    /// Marks `node`, answering whether it was unmarked.
    #[inline]
    pub(crate) fn insert(&mut self, node: u32) -> bool {
        let mark = &mut self.marks[node as usize];
        if *mark == self.epoch {
            false
        } else {
            *mark = self.epoch;
            true
        }
    }
}

/// Marks lists kept between walks.
#[derive(Default)]
pub(crate) struct VisitedPool {
    free: Mutex<Vec<Visited>>,
}

impl VisitedPool {
    /// A cleared list for `len` nodes, from the pool when one is free.
    pub(crate) fn take(&self, len: usize) -> Visited {
        let taken = self.free.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        match taken {
            Some(mut visited) => {
                visited.reset(len);
                visited
            }
            None => {
                let mut visited = Visited::new(len);
                visited.reset(len);
                visited
            }
        }
    }

    /// Gives a list back (a few are kept).
    pub(crate) fn give(&self, visited: Visited) {
        let mut free = self.free.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if free.len() < 64 {
            free.push(visited);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_clear_between_walks_and_across_the_epoch_wrap() {
        let pool = VisitedPool::default();
        let mut visited = pool.take(4);
        assert!(visited.insert(3));
        assert!(!visited.insert(3));
        pool.give(visited);
        for _ in 0..70_000 {
            let mut visited = pool.take(8);
            assert!(visited.insert(3));
            assert!(visited.insert(7));
            assert!(!visited.insert(7));
            pool.give(visited);
        }
    }
}
