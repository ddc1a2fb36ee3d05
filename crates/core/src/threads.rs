//! Scheduling of background threads.

use thread_priority::{
    NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy, set_thread_priority_and_policy, thread_native_id,
};

/// Moves the calling thread to the system's idle scheduling class (Linux's `SCHED_IDLE`): it runs only
/// when no ordinary thread of the machine wants the processor, and one that wakes takes the processor at
/// once instead of waiting for this thread's time slice to end. For work nobody waits for. A thread cannot
/// leave the class again without privileges, so it is for threads that do nothing else. Elsewhere than
/// Linux it does nothing; an error says why the system refused (the thread then keeps its priority).
pub fn lower_to_idle_priority() -> Result<(), String> {
    if cfg!(not(target_os = "linux")) {
        return Ok(());
    }
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle)
        .map_err(|error| format!("the system refused the idle scheduling class: {error:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_lowered_thread_is_in_the_idle_class() {
        std::thread::spawn(|| {
            lower_to_idle_priority().expect("any thread may lower itself");
            let (policy, _) = thread_priority::thread_schedule_policy_param(thread_native_id())
                .expect("the thread's policy can be read");
            assert_eq!(policy, ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle));
        })
        .join()
        .expect("the thread ran");
    }
}
