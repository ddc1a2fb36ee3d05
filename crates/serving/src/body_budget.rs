//! How many request-body bytes the inference routes hold at once. A body is decoded into tensors and then
//! into a model's inputs, several times its own size; without a shared budget, a thousand connections each
//! sending the largest body allowed would need a thousand times that. Each request reserves its declared
//! length (the largest body, when it declares none) before reading, and keeps the reservation until it is
//! answered; past the budget, requests wait their turn instead of growing the server.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reservations are counted in KiB.
const UNIT: usize = 1024;

/// The shared budget.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    total_units: u32,
}

impl BodyBudget {
    /// A budget of `bytes` held at once.
    pub fn new(bytes: usize) -> BodyBudget {
        let total_units = u32::try_from(bytes.div_ceil(UNIT).max(1))
            .unwrap_or(u32::MAX)
            .min(Semaphore::MAX_PERMITS as u32);
        BodyBudget {
            permits: Arc::new(Semaphore::new(total_units as usize)),
            total_units,
        }
    }

    /// The budget for a server whose largest body is `max_body_bytes`: two of the largest at once.
    pub fn for_max_body(max_body_bytes: usize) -> BodyBudget {
        BodyBudget::new(max_body_bytes.saturating_mul(2).max(16 << 20))
    }

    /// Waits until `bytes` (at most the whole budget) can be held.
    pub async fn reserve(&self, bytes: usize) -> OwnedSemaphorePermit {
        let wanted = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total_units);
        self.permits
            .clone()
            .acquire_many_owned(wanted)
            .await
            .expect("the body budget's semaphore is never closed")
    }

    /// Bytes free now.
    pub fn available_bytes(&self) -> usize {
        self.permits.available_permits() * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_share_the_budget_and_return_it() {
        let budget = BodyBudget::new(10 * UNIT);
        let first = budget.reserve(6 * UNIT).await;
        assert_eq!(budget.available_bytes(), 4 * UNIT);
        assert!(
            budget.permits.clone().try_acquire_many_owned(5).is_err(),
            "a second large body waits"
        );
        let whole = budget.reserve(usize::MAX);
        drop(first);
        let whole = whole.await;
        assert_eq!(
            budget.available_bytes(),
            0,
            "an oversized reservation takes the whole budget, not more"
        );
        drop(whole);
        assert_eq!(budget.available_bytes(), 10 * UNIT);
    }
}
