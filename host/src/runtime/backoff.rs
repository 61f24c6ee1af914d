//! Restart delays: exponential backoff with jitter, reset after a healthy run.

use std::time::Duration;

use rand::Rng;

use super::config::RestartConfig;

/// Tracks consecutive failures of one plugin instance.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RestartConfig,
    failures: u32,
}

impl Backoff {
    pub fn new(policy: RestartConfig) -> Self {
        Self { policy, failures: 0 }
    }

    /// The delay before the next restart, given how long the last run lasted.
    pub fn next_delay(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.policy.reset_after {
            self.failures = 0;
        }
        let base = self.base_delay(self.failures);
        self.failures = self.failures.saturating_add(1);
        // ±20% jitter so plugins that failed together do not restart together.
        let jitter = rand::rng().random_range(0.8..=1.2);
        base.mul_f64(jitter).min(self.policy.max_backoff)
    }

    /// Delay without jitter for the n-th consecutive failure (0-based).
    pub fn base_delay(&self, n: u32) -> Duration {
        let factor = self.policy.multiplier.powi(n.min(64) as i32);
        let secs = (self.policy.initial_backoff.as_secs_f64() * factor).min(self.policy.max_backoff.as_secs_f64());
        Duration::from_secs_f64(secs)
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_up_to_the_cap_and_resets_after_a_healthy_run() {
        let policy = RestartConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            reset_after: Duration::from_secs(10),
            ..RestartConfig::default()
        };
        let mut b = Backoff::new(policy);
        assert_eq!(b.base_delay(0), Duration::from_millis(100));
        assert_eq!(b.base_delay(3), Duration::from_millis(800));
        assert_eq!(b.base_delay(10), Duration::from_secs(1));
        for _ in 0..5 {
            let d = b.next_delay(Duration::ZERO);
            assert!(d <= Duration::from_secs(1));
        }
        assert_eq!(b.failures(), 5);
        let d = b.next_delay(Duration::from_secs(11));
        assert!(d >= Duration::from_millis(80) && d <= Duration::from_millis(120), "{d:?}");
        assert_eq!(b.failures(), 1);
    }
}
