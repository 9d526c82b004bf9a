//! Restart decisions: exponential backoff with a floor and a cap, reset after a stable run, and
//! crash-loop detection. Pure logic over explicit instants, so tests need no clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use homeport_config::{RestartMode, RestartPolicy};
use homeport_types::ExitReason;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after this delay.
    Restart(Duration),
    /// Too many failures within the window: stop trying.
    GiveUp,
    /// The policy leaves it down.
    StayDown,
}

#[derive(Debug, Clone)]
pub struct RestartTracker {
    policy: RestartPolicy,
    /// When recent failures happened, oldest first, within `policy.window`.
    failures: VecDeque<Instant>,
    next_delay: Duration,
}

impl RestartTracker {
    pub fn new(policy: RestartPolicy) -> Self {
        let next_delay = policy.backoff_min;
        Self {
            policy,
            failures: VecDeque::new(),
            next_delay,
        }
    }

    /// Decides what follows an exit at `now` after `uptime` of running. `forced` marks a run
    /// that Homeport ended itself because it failed its health check.
    pub fn on_exit(
        &mut self,
        now: Instant,
        uptime: Duration,
        exit: ExitReason,
        forced: bool,
    ) -> Decision {
        let failed = forced || !exit.success();
        let wanted = match self.policy.mode {
            RestartMode::Never => false,
            RestartMode::OnFailure => failed,
            RestartMode::Always => true,
        };
        if !wanted {
            return Decision::StayDown;
        }
        if uptime >= self.policy.reset_after {
            self.reset();
        }
        if !failed {
            // `always` brings back a clean exit too; that is the service's rhythm, not a crash
            // loop, so it neither counts toward giving up nor grows the backoff.
            return Decision::Restart(self.policy.backoff_min);
        }
        self.failures.push_back(now);
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.policy.window)
        {
            self.failures.pop_front();
        }
        if self
            .policy
            .max_failures
            .is_some_and(|max| self.failures.len() >= max as usize)
        {
            return Decision::GiveUp;
        }
        let delay = self.next_delay;
        self.next_delay = (delay * 2).clamp(self.policy.backoff_min, self.policy.backoff_max);
        Decision::Restart(delay)
    }

    /// Forgets past failures: a user started the service by hand.
    pub fn reset(&mut self) {
        self.failures.clear();
        self.next_delay = self.policy.backoff_min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: RestartMode) -> RestartPolicy {
        RestartPolicy {
            mode,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(5),
            reset_after: Duration::from_secs(60),
            max_failures: Some(4),
            window: Duration::from_secs(100),
        }
    }

    const CRASH: ExitReason = ExitReason::Code(1);
    const CLEAN: ExitReason = ExitReason::Code(0);

    #[test]
    fn backoff_doubles_up_to_the_cap_then_gives_up() {
        let mut p = policy(RestartMode::Always);
        p.max_failures = Some(10);
        let mut t = RestartTracker::new(p);
        let t0 = Instant::now();
        let delays: Vec<Decision> = (0..5)
            .map(|i| t.on_exit(t0 + Duration::from_secs(i), Duration::ZERO, CRASH, false))
            .collect();
        let secs = |s| Decision::Restart(Duration::from_secs(s));
        assert_eq!(delays, [secs(1), secs(2), secs(4), secs(5), secs(5)]);
    }

    #[test]
    fn a_crash_loop_within_the_window_gives_up() {
        let mut t = RestartTracker::new(policy(RestartMode::OnFailure));
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(matches!(
                t.on_exit(t0 + Duration::from_secs(i), Duration::ZERO, CRASH, false),
                Decision::Restart(_)
            ));
        }
        assert_eq!(
            t.on_exit(t0 + Duration::from_secs(3), Duration::ZERO, CRASH, false),
            Decision::GiveUp
        );
        t.reset();
        assert_eq!(
            t.on_exit(t0 + Duration::from_secs(4), Duration::ZERO, CRASH, false),
            Decision::Restart(Duration::from_secs(1))
        );
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let mut t = RestartTracker::new(policy(RestartMode::OnFailure));
        let t0 = Instant::now();
        for i in 0..10u64 {
            let d = t.on_exit(
                t0 + Duration::from_secs(i * 50),
                Duration::ZERO,
                CRASH,
                false,
            );
            assert!(matches!(d, Decision::Restart(_)), "failure {i}: {d:?}");
        }
    }

    #[test]
    fn a_stable_run_resets_the_backoff() {
        let mut t = RestartTracker::new(policy(RestartMode::OnFailure));
        let t0 = Instant::now();
        t.on_exit(t0, Duration::ZERO, CRASH, false);
        assert_eq!(
            t.on_exit(t0, Duration::ZERO, CRASH, false),
            Decision::Restart(Duration::from_secs(2))
        );
        assert_eq!(
            t.on_exit(t0, Duration::from_secs(61), CRASH, false),
            Decision::Restart(Duration::from_secs(1))
        );
    }

    #[test]
    fn the_policy_decides_which_exits_restart() {
        let now = Instant::now();
        let mut never = RestartTracker::new(policy(RestartMode::Never));
        assert_eq!(
            never.on_exit(now, Duration::ZERO, CRASH, false),
            Decision::StayDown
        );
        let mut on_failure = RestartTracker::new(policy(RestartMode::OnFailure));
        assert_eq!(
            on_failure.on_exit(now, Duration::ZERO, CLEAN, false),
            Decision::StayDown
        );
        assert!(
            matches!(
                on_failure.on_exit(now, Duration::ZERO, CLEAN, true),
                Decision::Restart(_)
            ),
            "a failed health check counts"
        );
        assert!(matches!(
            on_failure.on_exit(now, Duration::ZERO, ExitReason::Signal(9), false),
            Decision::Restart(_)
        ));
        let mut always = RestartTracker::new(policy(RestartMode::Always));
        for _ in 0..10 {
            assert_eq!(
                always.on_exit(now, Duration::ZERO, CLEAN, false),
                Decision::Restart(Duration::from_secs(1)),
                "clean exits never count as a crash loop"
            );
        }
    }
}
