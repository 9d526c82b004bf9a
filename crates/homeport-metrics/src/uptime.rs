//! Up, down, or neither: how time counts towards uptime.
//!
//! A service is **up** while it serves (running with no health check, or healthy) and **down**
//! while it should serve and does not (starting, unhealthy, backing off after an exit, crashed,
//! given up). Time it was stopped on purpose, is stopping, or exited cleanly counts as neither, so
//! stopping beta for a week does not make its uptime 0 %, and a service that crash-loops is down
//! even between its short runs. Uptime is up / (up + down).
//!
//! An environment is down while any of its services is down, up while none is down and one is
//! up, and neither while all are stopped.
//!
//! State changes arrive as events at any time; an [`UpClock`] turns them into milliseconds up
//! and down per sampling interval, so a crash and restart between two samples is not missed.

use homeport_types::ServiceState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Up,
    Down,
    Off,
}

impl Category {
    pub fn of(state: ServiceState) -> Category {
        use ServiceState as S;
        match state {
            S::Running | S::Healthy => Category::Up,
            S::Starting | S::Unhealthy | S::BackingOff | S::Crashed | S::Failed => Category::Down,
            S::Stopped | S::Stopping | S::Exited => Category::Off,
        }
    }

    /// An environment's category from its services'.
    pub fn of_env(services: impl IntoIterator<Item = Category>) -> Category {
        let mut any_up = false;
        for c in services {
            match c {
                Category::Down => return Category::Down,
                Category::Up => any_up = true,
                Category::Off => {}
            }
        }
        if any_up { Category::Up } else { Category::Off }
    }
}

/// Milliseconds up and down since the last [`UpClock::take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpClock {
    category: Category,
    /// Milliseconds (any epoch, as long as it is the same for every call).
    since: i64,
    up: u64,
    down: u64,
}

impl UpClock {
    pub fn new(category: Category, at: i64) -> UpClock {
        UpClock {
            category,
            since: at,
            up: 0,
            down: 0,
        }
    }

    pub fn category(&self) -> Category {
        self.category
    }

    fn run_to(&mut self, at: i64) {
        // A clock that went back counts nothing rather than a negative span.
        let span = u64::try_from(at - self.since).unwrap_or(0);
        match self.category {
            Category::Up => self.up += span,
            Category::Down => self.down += span,
            Category::Off => {}
        }
        self.since = self.since.max(at);
    }

    /// The category changes at `at`.
    pub fn set(&mut self, category: Category, at: i64) {
        self.run_to(at);
        self.category = category;
    }

    /// Milliseconds (up, down) until `at`, and starts counting again from there.
    pub fn take(&mut self, at: i64) -> (u64, u64) {
        self.run_to(at);
        let out = (self.up, self.down);
        self.up = 0;
        self.down = 0;
        out
    }
}

/// Up as a percentage of counted time, `None` when no time counted.
pub fn percent(up_ms: u64, down_ms: u64) -> Option<f64> {
    let total = up_ms + down_ms;
    (total > 0).then(|| up_ms as f64 * 100.0 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_crash_between_two_samples_is_counted() {
        let mut c = UpClock::new(Category::Up, 0);
        c.set(Category::of(ServiceState::BackingOff), 1_000);
        c.set(Category::of(ServiceState::Starting), 1_200);
        c.set(Category::of(ServiceState::Healthy), 1_500);
        assert_eq!(c.take(5_000), (4_500, 500));
        assert_eq!(c.take(10_000), (5_000, 0));
    }

    #[test]
    fn stopped_on_purpose_is_neither_up_nor_down() {
        let mut c = UpClock::new(Category::Up, 0);
        c.set(Category::of(ServiceState::Stopping), 1_000);
        c.set(Category::of(ServiceState::Stopped), 1_100);
        assert_eq!(c.take(60_000), (1_000, 0));
        assert_eq!(percent(1_000, 0), Some(100.0));
        assert_eq!(percent(0, 0), None);
    }

    #[test]
    fn an_environment_is_down_while_any_service_is() {
        use Category::*;
        assert_eq!(Category::of_env([Up, Down, Off]), Down);
        assert_eq!(Category::of_env([Up, Off]), Up);
        assert_eq!(Category::of_env([Off, Off]), Off);
        assert_eq!(Category::of_env([]), Off);
    }

    proptest! {
        /// However the changes fall, up + down never exceeds the time that passed, and equals
        /// it when the category is never Off.
        #[test]
        fn counted_time_is_the_time_that_passed(changes in prop::collection::vec((0i64..10_000, 0u8..3), 0..50)) {
            let mut c = UpClock::new(Category::Down, 0);
            let mut t = 0;
            let mut any_off = false;
            for (dt, cat) in changes {
                t += dt;
                let cat = [Category::Up, Category::Down, Category::Off][cat as usize];
                any_off |= cat == Category::Off;
                c.set(cat, t);
            }
            let (up, down) = c.take(t + 1);
            prop_assert!(up + down <= (t + 1) as u64);
            if !any_off {
                prop_assert_eq!(up + down, (t + 1) as u64);
            }
        }
    }
}
