//! The last hour of one series' samples, in memory: a fixed-size ring of 24-byte points (about
//! 17 KiB per service at one sample every 5 s), so the agent's memory does not grow with time.

use std::collections::VecDeque;

use crate::rollup::Sample;

const NONE: u32 = u32::MAX;

/// One sample as the ring keeps it: what a chart of the last hour draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// Seconds after the ring's base time.
    offset: u32,
    cpu: u32,
    rss_kib: u32,
    latency_avg_us: u32,
    latency_max_us: u32,
    up_ms: u16,
    down_ms: u16,
}

impl Point {
    pub fn cpu(&self) -> Option<u32> {
        (self.cpu != NONE).then_some(self.cpu)
    }

    /// Bytes, to the KiB.
    pub fn rss(&self) -> Option<u64> {
        (self.rss_kib != NONE).then(|| u64::from(self.rss_kib) * 1024)
    }

    pub fn latency_avg_us(&self) -> Option<u32> {
        (self.latency_avg_us != NONE).then_some(self.latency_avg_us)
    }

    pub fn latency_max_us(&self) -> Option<u32> {
        (self.latency_max_us != NONE).then_some(self.latency_max_us)
    }

    pub fn up_ms(&self) -> u32 {
        u32::from(self.up_ms)
    }

    pub fn down_ms(&self) -> u32 {
        u32::from(self.down_ms)
    }
}

/// Samples of the last `capacity` intervals, oldest first.
#[derive(Debug, Clone)]
pub struct Ring {
    base: i64,
    points: VecDeque<Point>,
    capacity: usize,
}

impl Ring {
    pub fn new(capacity: usize) -> Ring {
        Ring {
            base: 0,
            points: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
        }
    }

    /// Room for an hour of samples taken every `interval_secs`.
    pub fn for_an_hour(interval_secs: u64) -> Ring {
        Ring::new((3600 / interval_secs.max(1)) as usize + 1)
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Appends a sample, dropping the oldest when full. Samples come in time order; one older
    /// than the newest kept (the clock went back) empties the ring first.
    pub fn push(&mut self, s: &Sample) {
        if self.points.is_empty()
            || s.start < self.newest_start().unwrap_or(i64::MIN)
            || s.start - self.base > i64::from(u32::MAX)
        {
            self.points.clear();
            self.base = s.start;
        }
        if self.points.len() == self.capacity {
            self.points.pop_front();
        }
        let clamp = |v: u64| u32::try_from(v).unwrap_or(NONE - 1);
        let latency = s.latency;
        self.points.push_back(Point {
            offset: (s.start - self.base) as u32,
            cpu: s.cpu.map_or(NONE, |c| c.min(NONE - 1)),
            rss_kib: s.rss.map_or(NONE, |r| clamp(r / 1024)),
            latency_avg_us: latency
                .avg()
                .map_or(NONE, |a| clamp(a.max(0.0).round() as u64)),
            latency_max_us: latency.max().map_or(NONE, |m| clamp(m.max(0) as u64)),
            up_ms: u16::try_from(s.up_ms).unwrap_or(u16::MAX),
            down_ms: u16::try_from(s.down_ms).unwrap_or(u16::MAX),
        });
    }

    fn newest_start(&self) -> Option<i64> {
        self.points.back().map(|p| self.base + i64::from(p.offset))
    }

    /// Points that started at or after `from`, oldest first, with their start times.
    pub fn since(&self, from: i64) -> impl Iterator<Item = (i64, &Point)> + '_ {
        self.points
            .iter()
            .map(|p| (self.base + i64::from(p.offset), p))
            .filter(move |(t, _)| *t >= from)
    }

    /// The start of the oldest point kept.
    pub fn oldest_start(&self) -> Option<i64> {
        self.points.front().map(|p| self.base + i64::from(p.offset))
    }

    /// The newest point, with its start.
    pub fn latest(&self) -> Option<(i64, &Point)> {
        self.points
            .back()
            .map(|p| (self.base + i64::from(p.offset), p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::Stat;

    fn sample(start: i64, cpu: Option<u32>) -> Sample {
        Sample {
            start,
            cpu,
            rss: Some(10 * 1024 * 1024),
            latency: {
                let mut l = Stat::one(900);
                l.add(1100);
                l
            },
            up_ms: 5000,
            down_ms: 0,
        }
    }

    #[test]
    fn the_ring_keeps_the_last_hour_and_drops_the_oldest() {
        let mut r = Ring::for_an_hour(5);
        assert_eq!(r.capacity, 721);
        for i in 0..1000 {
            r.push(&sample(1_000_000 + i * 5, Some(i as u32)));
        }
        assert_eq!(r.len(), 721);
        assert_eq!(r.oldest_start(), Some(1_000_000 + 279 * 5));
        let (t, p) = r.latest().expect("a point");
        assert_eq!((t, p.cpu()), (1_000_000 + 999 * 5, Some(999)));
        assert_eq!(p.rss(), Some(10 * 1024 * 1024));
        assert_eq!(
            (p.latency_avg_us(), p.latency_max_us()),
            (Some(1000), Some(1100))
        );
        assert_eq!(r.since(1_000_000 + 990 * 5).count(), 10);
        assert!(std::mem::size_of::<Point>() <= 24);
    }

    #[test]
    fn what_was_not_measured_stays_unknown() {
        let mut r = Ring::new(4);
        r.push(&Sample {
            start: 10,
            ..Sample::default()
        });
        let (_, p) = r.latest().expect("a point");
        assert_eq!((p.cpu(), p.rss(), p.latency_avg_us()), (None, None, None));
    }

    #[test]
    fn a_clock_set_back_starts_the_ring_again() {
        let mut r = Ring::new(10);
        r.push(&sample(100, Some(1)));
        r.push(&sample(105, Some(2)));
        r.push(&sample(50, Some(3)));
        assert_eq!(r.len(), 1);
        assert_eq!(r.oldest_start(), Some(50));
    }
}
