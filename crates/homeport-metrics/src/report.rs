//! Roll-ups and ring points as the API's columns ([`MetricPoints`]).

use homeport_types::MetricPoints;

use crate::ring::Point;
use crate::rollup::Bucket;

/// Adds one bucket as a point.
pub fn push_bucket(out: &mut MetricPoints, b: &Bucket) {
    let pct = |v: f64| (v / 100.0) as f32;
    let ms = |v: f64| (v / 1000.0) as f32;
    out.t.push(b.start);
    out.cpu.push(b.cpu.avg().map(pct));
    out.cpu_max.push(b.cpu.max().map(|m| pct(m as f64)));
    out.rss.push(b.rss.avg().map(|a| a.round() as u64));
    out.rss_max.push(b.rss.max().map(|m| m.max(0) as u64));
    out.latency.push(b.latency.avg().map(ms));
    out.latency_max.push(b.latency.max().map(|m| ms(m as f64)));
    out.up.push(b.up_ratio().map(|r| (r * 100.0) as f32));
}

/// Adds one sample of the ring as a point (its average and maximum are the same).
pub fn push_point(out: &mut MetricPoints, t: i64, p: &Point) {
    out.t.push(t);
    let cpu = p.cpu().map(|c| c as f32 / 100.0);
    out.cpu.push(cpu);
    out.cpu_max.push(cpu);
    out.rss.push(p.rss());
    out.rss_max.push(p.rss());
    out.latency
        .push(p.latency_avg_us().map(|l| l as f32 / 1000.0));
    out.latency_max
        .push(p.latency_max_us().map(|l| l as f32 / 1000.0));
    let counted = p.up_ms() + p.down_ms();
    out.up
        .push((counted > 0).then(|| p.up_ms() as f32 * 100.0 / counted as f32));
}

/// The buckets as columns.
pub fn points(buckets: &[Bucket]) -> MetricPoints {
    let mut out = MetricPoints::default();
    for b in buckets {
        push_bucket(&mut out, b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Ring;
    use crate::rollup::{Sample, Stat};

    #[test]
    fn columns_are_in_the_units_people_read() {
        let s = Sample {
            start: 120,
            cpu: Some(2_550),
            rss: Some(64 << 20),
            latency: Stat::one(2_500),
            up_ms: 3_000,
            down_ms: 1_000,
        };
        let mut b = Bucket::empty(120);
        b.add(&s);
        let p = points(&[b, Bucket::empty(180)]);
        assert_eq!(p.t, vec![120, 180]);
        assert_eq!(p.cpu, vec![Some(25.5), None]);
        assert_eq!(p.rss_max, vec![Some(64 << 20), None]);
        assert_eq!(p.latency, vec![Some(2.5), None]);
        assert_eq!(
            p.up,
            vec![Some(75.0), None],
            "an empty bucket is a gap, not 0 %"
        );

        let mut ring = Ring::new(4);
        ring.push(&s);
        let mut q = MetricPoints::default();
        for (t, point) in ring.since(0) {
            push_point(&mut q, t, point);
        }
        assert_eq!(
            (q.t[0], q.cpu[0], q.latency_max[0], q.up[0]),
            (120, Some(25.5), Some(2.5), Some(75.0))
        );
    }
}
