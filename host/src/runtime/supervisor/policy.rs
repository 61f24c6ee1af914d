//! The restart policy of one instance: exponential backoff with jitter
//! between restarts (runtime/backoff.rs), forgotten after a healthy run, and
//! a circuit breaker: more than `max_restarts` failures within `window`
//! deactivate the instance until an operator enables it again.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::runtime::backoff::Backoff;
use crate::runtime::config::RestartConfig;

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start again after this delay.
    Restart(Duration),
    /// Too many failures within the window: stop trying.
    Deactivate,
}

#[derive(Debug, Clone)]
pub struct RestartPolicy {
    config: RestartConfig,
    backoff: Backoff,
    /// When recent failures happened, oldest first (at most `max_restarts + 1`).
    failures: VecDeque<Instant>,
}

impl RestartPolicy {
    pub fn new(config: RestartConfig) -> Self {
        Self { backoff: Backoff::new(config.clone()), config, failures: VecDeque::new() }
    }

    /// A run that lasted `ran_for` just failed, at `now`.
    pub fn on_failure(&mut self, ran_for: Duration, now: Instant) -> Decision {
        if ran_for >= self.config.reset_after {
            // A healthy period: what failed before it no longer counts.
            self.failures.clear();
        }
        while self.failures.front().is_some_and(|t| now.saturating_duration_since(*t) >= self.config.window) {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        if self.failures.len() > self.config.max_restarts as usize {
            return Decision::Deactivate;
        }
        Decision::Restart(self.backoff.next_delay(ran_for))
    }

    /// Failures counted within the window.
    pub fn recent_failures(&self) -> usize {
        self.failures.len()
    }

    pub fn config(&self) -> &RestartConfig {
        &self.config
    }

    /// An operator enabled the instance again: start from scratch.
    pub fn reset(&mut self) {
        self.failures.clear();
        self.backoff = Backoff::new(self.config.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_restarts: u32) -> RestartConfig {
        RestartConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            reset_after: Duration::from_secs(60),
            max_restarts,
            window: Duration::from_secs(10),
        }
    }

    #[test]
    fn deactivates_after_max_restarts_within_the_window() {
        let mut p = RestartPolicy::new(config(3));
        let t0 = Instant::now();
        for i in 0..3 {
            let d = p.on_failure(Duration::ZERO, t0 + Duration::from_secs(i));
            assert!(matches!(d, Decision::Restart(_)), "failure {i}: {d:?}");
        }
        assert_eq!(p.on_failure(Duration::ZERO, t0 + Duration::from_secs(3)), Decision::Deactivate);
        p.reset();
        assert!(matches!(p.on_failure(Duration::ZERO, t0 + Duration::from_secs(4)), Decision::Restart(_)));
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let mut p = RestartPolicy::new(config(2));
        let t0 = Instant::now();
        for i in 0..10u64 {
            // One failure every 6 s: never more than two within 10 s.
            let d = p.on_failure(Duration::ZERO, t0 + Duration::from_secs(6 * i));
            assert!(matches!(d, Decision::Restart(_)), "failure {i}: {d:?}");
        }
        assert_eq!(p.recent_failures(), 2);
    }

    #[test]
    fn a_healthy_run_forgets_earlier_failures_and_resets_the_backoff() {
        let mut p = RestartPolicy::new(config(2));
        let t0 = Instant::now();
        p.on_failure(Duration::ZERO, t0);
        p.on_failure(Duration::ZERO, t0);
        let d = p.on_failure(Duration::from_secs(61), t0);
        let Decision::Restart(delay) = d else { panic!("{d:?}") };
        assert!(delay <= Duration::from_millis(120), "{delay:?}");
        assert_eq!(p.recent_failures(), 1);
    }

    #[test]
    fn zero_restarts_deactivates_on_the_first_failure() {
        let mut p = RestartPolicy::new(config(0));
        assert_eq!(p.on_failure(Duration::ZERO, Instant::now()), Decision::Deactivate);
    }
}
