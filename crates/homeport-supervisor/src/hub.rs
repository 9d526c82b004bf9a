//! Where service tasks publish what happens: the latest snapshot of every service and one
//! broadcast of events, updated under one lock so that a subscriber who takes a snapshot and then
//! subscribes never misses a transition in between.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use homeport_metrics::Stat;
use homeport_types::{Event, ExitReason, Health, ServiceKey, ServiceState};
use tokio::sync::{broadcast, mpsc};

/// What a service task tells the world about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSnapshot {
    pub state: ServiceState,
    pub health: Health,
    pub pid: Option<u32>,
    pub started_at: Option<SystemTime>,
    /// When it entered its current state.
    pub state_since: Option<SystemTime>,
    pub restarts: u64,
    pub last_exit: Option<ExitReason>,
    pub message: Option<String>,
    /// Failed health checks since the agent started (not counting those while it boots): a
    /// deploy's gate fails when this moves during its stability window.
    pub probe_failures: u64,
    /// What the last failed health check said, until one passes.
    pub last_probe_failure: Option<String>,
    /// When a service waiting to restart starts again.
    pub retry_at: Option<SystemTime>,
}

impl Default for ServiceSnapshot {
    fn default() -> Self {
        Self {
            state: ServiceState::Stopped,
            health: Health::Unknown,
            pid: None,
            started_at: None,
            state_since: None,
            restarts: 0,
            last_exit: None,
            message: None,
            probe_failures: 0,
            last_probe_failure: None,
            retry_at: None,
        }
    }
}

pub struct Hub {
    /// The lock makes "update snapshot + send event" one step; it is held only for those
    /// in-memory operations, never across an await.
    inner: Mutex<BTreeMap<ServiceKey, ServiceSnapshot>>,
    events: broadcast::Sender<Event>,
    /// Every event, in order, for the state store; unbounded because losing a record is worse
    /// than a brief queue (events are rare: a few per state change).
    record: Option<mpsc::UnboundedSender<Event>>,
    sent: std::sync::atomic::AtomicU64,
    /// Latency of the health probes that passed since the metrics sampler last took them, in
    /// microseconds, per service. A lock of its own: probes never wait on the snapshot's.
    probes: Mutex<BTreeMap<ServiceKey, Stat>>,
}

impl Hub {
    pub fn new(record: Option<mpsc::UnboundedSender<Event>>) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            inner: Mutex::new(BTreeMap::new()),
            events,
            record,
            sent: std::sync::atomic::AtomicU64::new(0),
            probes: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn publish(&self, key: &ServiceKey, snap: ServiceSnapshot, event: Option<Event>) {
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        map.insert(key.clone(), snap);
        if let Some(ev) = event {
            self.send(ev);
        }
    }

    /// Records and broadcasts an event that changes no service's snapshot: a deploy, a backup,
    /// a restore, a config edit, the agent starting or stopping. Every producer in the agent
    /// goes through here or [`Hub::publish`], so the stream and state.db see the same events.
    pub fn emit(&self, event: Event) {
        let _order = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        self.send(event);
    }

    /// Called with the lock held, so events are recorded and broadcast in one order.
    fn send(&self, ev: Event) {
        if let Some(r) = &self.record
            && r.send(ev.clone()).is_ok()
        {
            self.sent.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        let _ = self.events.send(ev);
    }

    /// A health probe of `key` passed and took `latency`: recorded where the probe ran, so the
    /// figure is the probe's own time and not the sampler's.
    pub fn record_probe(&self, key: &ServiceKey, latency: std::time::Duration) {
        let us = i64::try_from(latency.as_micros()).unwrap_or(i64::MAX);
        self.probes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .add(us);
    }

    /// The probe latencies recorded since the last call, per service.
    pub fn take_probes(&self) -> BTreeMap<ServiceKey, Stat> {
        std::mem::take(&mut *self.probes.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Forgets a service that the config no longer names.
    pub fn remove(&self, key: &ServiceKey) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// How many events were sent to the recorder so far.
    pub fn records_sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn snapshot(&self) -> BTreeMap<ServiceKey, ServiceSnapshot> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current snapshot and a receiver of every event after it.
    pub fn subscribe(
        &self,
    ) -> (
        BTreeMap<ServiceKey, ServiceSnapshot>,
        broadcast::Receiver<Event>,
    ) {
        let map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        (map.clone(), self.events.subscribe())
    }
}
