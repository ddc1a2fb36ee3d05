//! Online serving. This first part is the dynamic-batching state: a plain queue that decides when a batch is
//! due and what goes in it, kept apart from the task that drives it so it can be tested without clocks or
//! threads.

pub mod batching;
