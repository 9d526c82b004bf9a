//! Per-service history as pure functions: no clock, no files, no processes.
//!
//! # Layout
//! - [`rollup`]: a [`Sample`] is what the agent measured of one service (or environment) over one
//!   sampling interval; a [`Bucket`] sums the samples of one aligned window (a minute, ten
//!   minutes, an hour) as integer totals, minima, maxima and counts, so that buckets of buckets
//!   ([`cascade`]) are exactly the buckets of the samples ([`rollup`]) and nothing is lost to
//!   rounding on the way.
//! - [`retention`]: which roll-ups are kept, by age and by count, per resolution.
//! - [`ring`]: the last hour of samples in memory, compact.
//! - [`uptime`]: which states count as up, down or neither, and clocks that turn state changes
//!   into milliseconds up and down per interval (for a service and for an environment).
//! - [`report`]: roll-ups and ring points as the API's columns.
//! - [`annotate`]: the events worth a mark on a chart (restarts with their exit, deploys,
//!   rollbacks, backups, restores, health flips, the agent starting).
//!
//! The agent (homeport-core) samples, keeps rings, writes roll-ups to state.db and answers
//! `/api/v1/metrics` with these functions; their properties (no gaps at boundaries, totals
//! preserved, retention keeps coarse data for what it drops) are tested here.

pub mod annotate;
pub mod report;
pub mod retention;
pub mod ring;
pub mod rollup;
pub mod uptime;

pub use retention::{Keep, Policy};
pub use ring::Ring;
pub use rollup::{Bucket, Resolution, Sample, Stat, cascade, rollup};
pub use uptime::{Category, UpClock};
