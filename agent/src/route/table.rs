//! The route table: the control side of the agent's routes and faults.
//!
//! Every mutation takes the table's lock, edits the plain data, publishes a fresh
//! [`RouteSnapshot`] on the route's `watch` channel and reconciles the route's listener with
//! what the snapshot says (open while serving, closed while disabled or fully down).
//!
//! Controller-issued faults live beside admin-issued ones and end with the controller's lease
//! (see [`super::lease`]): the whole desired set is applied in one critical section, and the
//! lease's end removes them all in one critical section too. A local guard's trip removes the
//! controller faults it names in one critical section as well, and the table remembers the trip
//! (see [`super::trips`]) so that a later desired state naming the guard leaves them off.
//!
//! Why a `std::sync::Mutex`: mutations come from the admin API, the controller stream and the
//! expiry task, a few per second at most; each holds the lock for a short, non-async critical
//! section (no `.await` inside, enforced by clippy's `await_holding_lock`). The data path never
//! touches this lock: connections read snapshots from their `watch` receiver.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::capture::{CaptureMatch, CapturedRoute, CapturedRoutes, Passthrough};
use super::lease::{self, Applied, DesiredError, DesiredState, Lease, LeaseStatus, RouteFacts};
use super::trips::Trips;
use super::{ActiveFault, HttpOptions, Protocol, RouteSnapshot, RouteState, Upstream};
use crate::fault::{Fault, FaultKind, Origin};
use crate::guard::{FaultRef, GuardKey};
use crate::metrics::{FaultCounters, RouteMetrics};
use crate::tcp::{Accepting, DataPlane};

/// What is needed to create a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    pub name: String,
    /// `HOST:PORT`; port 0 picks a free port (the route then reports the port it got).
    /// Unused by a captured route.
    pub listen: String,
    pub upstream: Upstream,
    pub enabled: bool,
    pub protocol: Protocol,
    pub http: HttpOptions,
    /// A captured route: no listener; it takes the connections redirected to a capture
    /// listener whose original destination it matches (see [`super::capture`]).
    pub capture: Option<CaptureMatch>,
}

impl RouteSpec {
    /// A TCP route, enabled.
    pub fn tcp(name: impl Into<String>, listen: impl Into<String>, upstream: Upstream) -> Self {
        RouteSpec {
            name: name.into(),
            listen: listen.into(),
            upstream,
            enabled: true,
            protocol: Protocol::Tcp,
            http: HttpOptions::default(),
            capture: None,
        }
    }
}

/// What a local guard's trip cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cleared {
    /// Controller-issued faults removed.
    pub faults: usize,
    /// The generation the agent runs (unchanged by the trip).
    pub generation: u64,
    /// When the last route's new snapshot was published.
    pub at: Instant,
}

/// A partial change to a route; `None` keeps the current value.
#[derive(Clone, Debug, Default)]
pub struct RouteUpdate {
    pub listen: Option<String>,
    pub upstream: Option<Upstream>,
    pub enabled: Option<bool>,
}

/// A route as the APIs show it.
#[derive(Clone, Debug)]
pub struct RouteView {
    pub name: String,
    /// The address actually bound (or last bound, while the listener is closed); unspecified
    /// (`0.0.0.0:0`) for a captured route.
    pub listen: SocketAddr,
    pub upstream: Upstream,
    pub enabled: bool,
    pub protocol: Protocol,
    pub http: HttpOptions,
    pub faults: Vec<FaultView>,
    pub capture: Option<CaptureMatch>,
}

/// A fault as the APIs show it.
#[derive(Clone, Debug)]
pub struct FaultView {
    pub route: String,
    pub fault: Fault,
    pub counters: Arc<FaultCounters>,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("proxy not found: no route named {0:?}")]
    RouteNotFound(String),
    #[error("proxy already exists: a route named {0:?} exists")]
    RouteExists(String),
    #[error("toxic not found: route {route:?} has no fault named {fault:?}")]
    FaultNotFound { route: String, fault: String },
    #[error("toxic already exists: route {route:?} already has a fault named {fault:?}")]
    FaultExists { route: String, fault: String },
    #[error("listen: cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

struct Entry {
    listen: SocketAddr,
    upstream: Upstream,
    protocol: Protocol,
    http: HttpOptions,
    /// The current snapshot, for readers that load it per request (the HTTP data plane).
    current: Arc<arc_swap::ArcSwap<RouteSnapshot>>,
    enabled: bool,
    faults: Vec<ActiveFault>,
    tx: watch::Sender<Arc<RouteSnapshot>>,
    /// Present while the listener is open.
    accept: Option<Accepting>,
    metrics: Arc<RouteMetrics>,
    name: Arc<str>,
    capture: Option<CaptureMatch>,
    /// Creation order: captured routes are tried in it.
    seq: u64,
}

struct Inner {
    routes: BTreeMap<String, Entry>,
    next_key: u64,
    /// Routes whose listener should be open but could not be re-bound; retried by the expiry task.
    relisten_pending: bool,
    /// The controller's lease. Controller-issued faults exist only while it is held.
    lease: Lease,
    /// The applied local guards and the faults tripped ones keep off; ends with the lease.
    trips: Trips,
}

pub struct RouteTable {
    inner: Mutex<Inner>,
    plane: DataPlane,
    /// Accept tasks told to stop whose sockets may still be open. Mutations that close a
    /// listener wait for these (outside every lock) before answering, so that once an API call
    /// returns, a disabled or deleted route refuses connections and its port can be bound again.
    /// Lock order: `inner`, then `closing`.
    closing: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Wakes the expiry task when the set of expiries changes.
    pub(crate) changed: Notify,
    /// The captured routes, republished whenever one is created or removed; capture listeners
    /// load it once per connection, lock-free.
    captured: Arc<arc_swap::ArcSwap<CapturedRoutes>>,
    /// Counters of captured connections no route took.
    pub passthrough: Passthrough,
}

impl RouteTable {
    pub fn new(plane: DataPlane) -> Arc<Self> {
        Arc::new(RouteTable {
            inner: Mutex::new(Inner {
                routes: BTreeMap::new(),
                next_key: 1,
                relisten_pending: false,
                lease: Lease::default(),
                trips: Trips::default(),
            }),
            closing: Mutex::new(Vec::new()),
            plane,
            changed: Notify::new(),
            captured: Arc::new(arc_swap::ArcSwap::from_pointee(CapturedRoutes::default())),
            passthrough: Passthrough::default(),
        })
    }

    fn closing(&self, tasks: Vec<tokio::task::JoinHandle<()>>) {
        self.closing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(tasks);
    }

    /// Waits until every listener closed by a mutation has released its socket.
    async fn settle(&self) {
        let tasks = std::mem::take(&mut *self.closing.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock would be a bug; the data is plain and stays usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The captured routes, in creation order, as the capture listeners read them.
    pub fn captured(&self) -> Arc<arc_swap::ArcSwap<CapturedRoutes>> {
        self.captured.clone()
    }

    /// The data plane the table's routes run on.
    pub fn plane(&self) -> &DataPlane {
        &self.plane
    }

    pub fn create(&self, spec: RouteSpec) -> Result<RouteView, RouteError> {
        validate_name("name", &spec.name)?;
        validate_capture(&spec)?;
        let mut inner = self.lock();
        if inner.routes.contains_key(&spec.name) {
            return Err(RouteError::RouteExists(spec.name));
        }
        let listener = match spec.capture {
            Some(_) => None,
            None => Some(
                self.plane
                    .bind(&spec.listen)
                    .map_err(|source| RouteError::Bind {
                        addr: spec.listen.clone(),
                        source,
                    })?,
            ),
        };
        let listen = listener.as_ref().map_or(
            SocketAddr::from(([0, 0, 0, 0], 0)),
            crate::tcp::Listeners::local_addr,
        );
        let seq = inner.next_key;
        inner.next_key += 1;
        let name: Arc<str> = spec.name.as_str().into();
        let metrics = Arc::new(RouteMetrics::default());
        let placeholder = Arc::new(RouteSnapshot {
            name: name.clone(),
            upstream: spec.upstream.clone(),
            protocol: spec.protocol,
            http: spec.http,
            state: RouteState::Disabled,
            faults: Box::new([]),
            metrics: metrics.clone(),
        });
        let (tx, _) = watch::channel(placeholder.clone());
        let mut entry = Entry {
            listen,
            upstream: spec.upstream,
            protocol: spec.protocol,
            http: spec.http,
            current: Arc::new(arc_swap::ArcSwap::new(placeholder)),
            enabled: spec.enabled,
            faults: Vec::new(),
            tx,
            accept: None,
            metrics,
            name,
            capture: spec.capture,
            seq,
        };
        entry.emit();
        if let Some(listener) = listener
            && entry.wants_listener()
        {
            entry.accept = Some(self.plane.serve(listener, entry.feed()));
        }
        match &entry.capture {
            Some(c) => {
                tracing::info!(route = %spec.name, capture = %c, upstream = %entry.upstream, "captured route created")
            }
            None => {
                tracing::info!(route = %spec.name, %listen, upstream = %entry.upstream, "route created")
            }
        }
        let view = entry.view();
        let captured = entry.capture.is_some();
        inner.routes.insert(spec.name, entry);
        if captured {
            self.publish_captured(&inner);
        }
        Ok(view)
    }

    pub async fn update(&self, name: &str, update: RouteUpdate) -> Result<RouteView, RouteError> {
        let r = self.update_locked(name, update);
        self.settle().await;
        r
    }

    fn update_locked(&self, name: &str, update: RouteUpdate) -> Result<RouteView, RouteError> {
        let mut inner = self.lock();
        let entry = inner
            .routes
            .get_mut(name)
            .ok_or_else(|| RouteError::RouteNotFound(name.into()))?;
        let moves = update
            .listen
            .as_ref()
            .is_some_and(|l| l.parse::<SocketAddr>().ok() != Some(entry.listen));
        if entry.capture.is_some() && moves {
            return Err(RouteError::Invalid {
                field: "listen",
                message: "a captured route has no listener".into(),
            });
        }
        if entry.capture.is_none() && update.upstream == Some(Upstream::Original) {
            return Err(RouteError::Invalid {
                field: "upstream",
                message: "\"original\" is only for captured routes".into(),
            });
        }
        // Bind a new address first, so a failure changes nothing.
        let mut new_listener = None;
        if let Some(listen) = &update.listen {
            let same = listen
                .parse::<SocketAddr>()
                .is_ok_and(|a| a == entry.listen);
            if !same {
                let l = self.plane.bind(listen).map_err(|source| RouteError::Bind {
                    addr: listen.clone(),
                    source,
                })?;
                let addr = l.local_addr();
                new_listener = Some((l, addr));
            }
        }
        if let Some((listener, addr)) = new_listener {
            if let Some(old) = entry.accept.take() {
                self.closing(old.close());
            }
            entry.listen = addr;
            if entry.wants_listener_with(update.enabled.unwrap_or(entry.enabled)) {
                entry.accept = Some(self.plane.serve(listener, entry.feed()));
            }
        }
        if let Some(up) = update.upstream {
            entry.upstream = up;
        }
        if let Some(enabled) = update.enabled {
            if enabled
                && !entry.enabled
                && entry.accept.is_none()
                && entry.wants_listener_with(true)
            {
                let listener = self
                    .plane
                    .bind(&entry.listen.to_string())
                    .map_err(|source| RouteError::Bind {
                        addr: entry.listen.to_string(),
                        source,
                    })?;
                entry.accept = Some(self.plane.serve(listener, entry.feed()));
            }
            entry.enabled = enabled;
        }
        let pending = self.publish(entry);
        let view = entry.view();
        inner.relisten_pending |= pending;
        Ok(view)
    }

    pub async fn remove(&self, name: &str) -> Result<(), RouteError> {
        let r = self.remove_locked(name);
        self.settle().await;
        r
    }

    fn remove_locked(&self, name: &str) -> Result<(), RouteError> {
        let mut inner = self.lock();
        let mut entry = inner
            .routes
            .remove(name)
            .ok_or_else(|| RouteError::RouteNotFound(name.into()))?;
        if let Some(accept) = entry.accept.take() {
            self.closing(accept.close());
        }
        entry.faults.clear();
        entry.emit_state(RouteState::Removed);
        if entry.capture.is_some() {
            self.publish_captured(&inner);
        }
        tracing::info!(route = name, "route removed");
        Ok(())
    }

    pub fn get(&self, name: &str) -> Result<RouteView, RouteError> {
        let inner = self.lock();
        inner
            .routes
            .get(name)
            .map(Entry::view)
            .ok_or_else(|| RouteError::RouteNotFound(name.into()))
    }

    pub fn list(&self) -> Vec<RouteView> {
        self.lock().routes.values().map(Entry::view).collect()
    }

    /// The live snapshot channel of a route (for tests and in-process embedding).
    pub fn subscribe(&self, name: &str) -> Result<watch::Receiver<Arc<RouteSnapshot>>, RouteError> {
        let inner = self.lock();
        inner
            .routes
            .get(name)
            .map(|e| e.tx.subscribe())
            .ok_or_else(|| RouteError::RouteNotFound(name.into()))
    }

    /// Each listening route's open connections per worker thread and hand-overs between them.
    pub fn worker_loads(&self) -> Vec<(String, crate::tcp::balance::WorkerLoad)> {
        let inner = self.lock();
        inner
            .routes
            .iter()
            .filter_map(|(n, e)| Some((n.clone(), e.accept.as_ref()?.workers())))
            .collect()
    }

    pub fn metrics(&self) -> Vec<(String, Arc<RouteMetrics>)> {
        let inner = self.lock();
        inner
            .routes
            .iter()
            .map(|(n, e)| (n.clone(), e.metrics.clone()))
            .collect()
    }

    pub async fn add_fault(&self, route: &str, fault: Fault) -> Result<FaultView, RouteError> {
        let r = self.add_fault_locked(route, fault);
        self.settle().await;
        r
    }

    fn add_fault_locked(&self, route: &str, fault: Fault) -> Result<FaultView, RouteError> {
        validate_name("name", &fault.name)?;
        if lease::issued_by_controller(&fault) {
            // Only `apply_desired` adds these, under the lease it grants in the same breath.
            return Err(RouteError::Invalid {
                field: "origin",
                message: "controller-issued faults come only with the controller's desired state"
                    .into(),
            });
        }
        let mut inner = self.lock();
        let key = inner.next_key;
        let entry = inner
            .routes
            .get_mut(route)
            .ok_or_else(|| RouteError::RouteNotFound(route.into()))?;
        if entry.faults.iter().any(|f| f.fault.name == fault.name) {
            return Err(RouteError::FaultExists {
                route: route.into(),
                fault: fault.name,
            });
        }
        check_protocol(entry.protocol, &fault)?;
        tracing::info!(route, fault = %fault.name, kind = fault.kind.tag().name(), "fault added");
        let counters = Arc::new(FaultCounters::default());
        entry.faults.push(ActiveFault {
            key,
            since: Instant::now(),
            fault: fault.clone(),
            counters: counters.clone(),
        });
        let pending = self.publish(entry);
        inner.next_key += 1;
        inner.relisten_pending |= pending;
        drop(inner);
        self.changed.notify_one();
        Ok(FaultView {
            route: route.into(),
            fault,
            counters,
        })
    }

    /// Replace a fault's definition, keeping its identity (and so each connection's decision).
    /// `edit` gets the current fault and returns the new one, or an error that changes nothing.
    pub async fn update_fault(
        &self,
        route: &str,
        name: &str,
        edit: impl FnOnce(&Fault) -> Result<Fault, RouteError>,
    ) -> Result<FaultView, RouteError> {
        let r = self.update_fault_locked(route, name, edit);
        self.settle().await;
        r
    }

    fn update_fault_locked(
        &self,
        route: &str,
        name: &str,
        edit: impl FnOnce(&Fault) -> Result<Fault, RouteError>,
    ) -> Result<FaultView, RouteError> {
        let mut inner = self.lock();
        let entry = inner
            .routes
            .get_mut(route)
            .ok_or_else(|| RouteError::RouteNotFound(route.into()))?;
        let slot = entry
            .faults
            .iter_mut()
            .find(|f| f.fault.name == name)
            .ok_or_else(|| RouteError::FaultNotFound {
                route: route.into(),
                fault: name.into(),
            })?;
        let mut updated = edit(&slot.fault)?;
        updated.name = slot.fault.name.clone();
        // Who issued a fault is not an attribute: an edit cannot move it in or out of the lease.
        updated.origin = slot.fault.origin.clone();
        slot.fault = updated.clone();
        let counters = slot.counters.clone();
        let pending = self.publish(entry);
        inner.relisten_pending |= pending;
        drop(inner);
        self.changed.notify_one();
        Ok(FaultView {
            route: route.into(),
            fault: updated,
            counters,
        })
    }

    pub async fn remove_fault(&self, route: &str, name: &str) -> Result<(), RouteError> {
        let r = self.remove_fault_locked(route, name);
        self.settle().await;
        r
    }

    fn remove_fault_locked(&self, route: &str, name: &str) -> Result<(), RouteError> {
        let mut inner = self.lock();
        let entry = inner
            .routes
            .get_mut(route)
            .ok_or_else(|| RouteError::RouteNotFound(route.into()))?;
        let before = entry.faults.len();
        entry.faults.retain(|f| f.fault.name != name);
        if entry.faults.len() == before {
            return Err(RouteError::FaultNotFound {
                route: route.into(),
                fault: name.into(),
            });
        }
        tracing::info!(route, fault = name, "fault removed");
        let pending = self.publish(entry);
        inner.relisten_pending |= pending;
        Ok(())
    }

    pub fn get_fault(&self, route: &str, name: &str) -> Result<FaultView, RouteError> {
        let inner = self.lock();
        let entry = inner
            .routes
            .get(route)
            .ok_or_else(|| RouteError::RouteNotFound(route.into()))?;
        entry
            .faults
            .iter()
            .find(|f| f.fault.name == name)
            .map(|f| FaultView {
                route: route.into(),
                fault: f.fault.clone(),
                counters: f.counters.clone(),
            })
            .ok_or_else(|| RouteError::FaultNotFound {
                route: route.into(),
                fault: name.into(),
            })
    }

    /// Toxiproxy's `POST /reset`: enable every route and remove every admin-issued fault.
    pub async fn reset(&self) -> Result<(), RouteError> {
        let r = self.reset_locked();
        self.settle().await;
        r
    }

    fn reset_locked(&self) -> Result<(), RouteError> {
        let mut inner = self.lock();
        let mut pending = false;
        let mut first_err = None;
        for entry in inner.routes.values_mut() {
            entry.faults.retain(|f| f.fault.origin != Origin::Admin);
            if !entry.enabled {
                entry.enabled = true;
            }
            pending |= self.publish(entry);
            if entry.wants_listener() && entry.accept.is_none() && first_err.is_none() {
                first_err = Some(RouteError::Bind {
                    addr: entry.listen.to_string(),
                    source: std::io::Error::other("could not listen again"),
                });
            }
        }
        inner.relisten_pending |= pending;
        first_err.map_or(Ok(()), Err)
    }

    /// Ends the controller's lease if it has run out, removes faults whose expiry has passed and
    /// retries listeners that could not re-bind. Returns the next instant something expires (a
    /// fault or the lease), if any, and whether a listener still waits to be re-bound.
    pub(crate) async fn expire(&self, now: Instant) -> (Option<Instant>, bool) {
        let r = self.expire_locked(now);
        self.settle().await;
        r
    }

    fn expire_locked(&self, now: Instant) -> (Option<Instant>, bool) {
        let mut inner = self.lock();
        let retry = std::mem::take(&mut inner.relisten_pending);
        let mut pending = false;
        if inner.lease.is_over(now) {
            pending |= self.end_lease(&mut inner, "lease expired").1;
        }
        let mut next: Option<Instant> = inner.lease.deadline();
        for entry in inner.routes.values_mut() {
            let before = entry.faults.len();
            entry.faults.retain(|f| {
                let expired = f.fault.is_expired(now);
                if expired {
                    tracing::info!(route = %entry.name, fault = %f.fault.name, "fault expired");
                }
                !expired
            });
            if entry.faults.len() != before
                || (retry && entry.wants_listener() && entry.accept.is_none())
            {
                pending |= self.publish(entry);
            }
            for f in &entry.faults {
                if let Some(at) = f.fault.expires_at {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
        }
        inner.relisten_pending = pending;
        (next, pending)
    }

    // === the controller's desired state and lease ===

    /// Replaces every controller-issued fault, on every route, with `desired.faults`, and holds
    /// the lease for `desired.lease` from now.
    ///
    /// All or nothing: every entry is checked first (origin, name, route, protocol, no clash
    /// with an admin fault or an earlier entry), and a bad one changes nothing and is named in
    /// the error. A fault whose route, name and definition are unchanged keeps its key, `since`
    /// and counters (a re-sent state re-rolls no connection); a route whose faults do not change
    /// gets no new snapshot, the others exactly one. A generation older than the applied one is
    /// a stale message and is refused; the same generation again is a re-send and is applied.
    pub async fn apply_desired(&self, desired: DesiredState) -> Result<Applied, DesiredError> {
        let r = self.apply_desired_locked(desired);
        self.settle().await;
        r
    }

    fn apply_desired_locked(&self, desired: DesiredState) -> Result<Applied, DesiredError> {
        let DesiredState {
            generation,
            lease: term,
            faults,
            guards,
        } = desired;
        let now = Instant::now();
        let mut inner = self.lock();
        if inner.lease.is_over(now) {
            // Ran out before the expiry task saw it: end it here, so its generation is gone
            // (and its faults with it, even if this desired state is refused).
            let (_, pending) = self.end_lease(&mut inner, "lease expired");
            inner.relisten_pending |= pending;
        }
        inner.lease.admits(generation, term)?;
        let mut by_route = {
            let routes = &inner.routes;
            lease::validate_guards(&guards, |name| routes.get(name).map(|e| e.protocol))?;
            lease::validate(faults, |name| {
                routes.get(name).map(|e| RouteFacts {
                    protocol: e.protocol,
                    faults: &e.faults,
                })
            })?
        };
        // Nothing can fail from here on.
        let Inner {
            routes,
            next_key,
            relisten_pending,
            lease: held,
            trips,
        } = &mut *inner;
        // A guard that tripped keeps its faults off while the controller still names it.
        trips.applied(guards.iter().map(|g| g.key()));
        let mut count = 0;
        for (route, faults) in &mut by_route {
            faults.retain(|f| !trips.keeps_off(route, &f.name));
            count += faults.len();
        }
        let (mut changed, mut pending) = (0, false);
        for (name, entry) in routes.iter_mut() {
            let wanted = by_route.remove(name).unwrap_or_default();
            if let Some(faults) = lease::merge(&entry.faults, wanted, now, next_key) {
                entry.faults = faults;
                pending |= self.publish(entry);
                changed += 1;
            }
        }
        *relisten_pending |= pending;
        held.grant(generation, term, now);
        if changed > 0 {
            tracing::info!(generation, faults = count, routes_changed = changed, lease = ?term, "controller desired state applied");
        } else {
            tracing::debug!(generation, faults = count, lease = ?term, "controller desired state unchanged");
        }
        drop(inner);
        self.changed.notify_one();
        Ok(Applied {
            generation,
            faults: count,
        })
    }

    /// Extends the lease to `lease` from now; called on every controller heartbeat.
    ///
    /// Returns `None` when no lease is held (never granted, ended, or run out, in which case
    /// its faults are cleared here and now): a heartbeat never brings faults back, only a new
    /// desired state does.
    pub fn renew_lease(&self, lease: Duration) -> Option<LeaseStatus> {
        let now = Instant::now();
        let mut inner = self.lock();
        if inner.lease.is_over(now) {
            let (_, pending) = self.end_lease(&mut inner, "lease expired");
            inner.relisten_pending |= pending;
            drop(inner);
            self.changed.notify_one();
            return None;
        }
        let (status, earlier) = inner.lease.renew(lease, now)?;
        drop(inner);
        if earlier {
            self.changed.notify_one();
        }
        Some(status)
    }

    /// Ends the lease at once and removes every controller-issued fault, keeping admin faults;
    /// `reason` is logged (e.g. "controller stream broke"). Returns how many faults it removed.
    pub async fn clear_controller_faults(&self, reason: &str) -> usize {
        let cleared = {
            let mut inner = self.lock();
            let (cleared, pending) = self.end_lease(&mut inner, reason);
            inner.relisten_pending |= pending;
            cleared
        };
        self.changed.notify_one();
        self.settle().await;
        cleared
    }

    /// A local guard tripped: removes the controller-issued faults it names (and only those:
    /// other experiments' faults and admin faults stay), publishing each route that had one,
    /// and keeps them off in later desired states that still name the guard.
    ///
    /// `None`, changing nothing, when no lease is held or the guard is not among the applied
    /// desired state's guards (withdrawn meanwhile) or already tripped.
    pub async fn trip_local_guard(&self, guard: &GuardKey, faults: &[FaultRef]) -> Option<Cleared> {
        let r = self.trip_local_guard_locked(guard, faults);
        self.settle().await;
        r
    }

    fn trip_local_guard_locked(&self, guard: &GuardKey, faults: &[FaultRef]) -> Option<Cleared> {
        let now = Instant::now();
        let mut inner = self.lock();
        let generation = inner.lease.status(now)?.generation;
        if !inner.trips.trip(guard, faults) {
            return None;
        }
        let (mut cleared, mut pending) = (0, false);
        for entry in inner.routes.values_mut() {
            let before = entry.faults.len();
            entry.faults.retain(|f| {
                !(lease::issued_by_controller(&f.fault)
                    && faults
                        .iter()
                        .any(|r| r.route == *entry.name && r.name == f.fault.name))
            });
            if entry.faults.len() != before {
                cleared += before - entry.faults.len();
                pending |= self.publish(entry);
            }
        }
        let at = Instant::now();
        inner.relisten_pending |= pending;
        drop(inner);
        self.changed.notify_one();
        Some(Cleared {
            faults: cleared,
            generation,
            at,
        })
    }

    /// Whether a local guard of the applied desired state has tripped.
    pub fn is_tripped(&self, guard: &GuardKey) -> bool {
        self.lock().trips.is_tripped(guard)
    }

    /// The controller's lease, while held and not run out.
    pub fn lease(&self) -> Option<LeaseStatus> {
        self.lock().lease.status(Instant::now())
    }

    /// The generation of the desired state applied under the current lease, if any.
    pub fn controller_generation(&self) -> Option<u64> {
        self.lease().map(|l| l.generation)
    }

    /// Ends the lease and removes every controller-issued fault, publishing each route that had
    /// one. Logs once. Returns how many faults went and whether a listener could not re-bind.
    fn end_lease(&self, inner: &mut Inner, reason: &str) -> (usize, bool) {
        let ended = inner.lease.end();
        inner.trips.clear();
        let (mut cleared, mut routes, mut pending) = (0, 0, false);
        for entry in inner.routes.values_mut() {
            let before = entry.faults.len();
            entry
                .faults
                .retain(|f| !lease::issued_by_controller(&f.fault));
            if entry.faults.len() != before {
                cleared += before - entry.faults.len();
                routes += 1;
                pending |= self.publish(entry);
            }
        }
        if ended.is_some() || cleared > 0 {
            tracing::warn!(
                reason,
                generation = ended.map(|l| l.generation),
                faults = cleared,
                routes,
                "controller lease ended: every controller-issued fault cleared"
            );
        }
        (cleared, pending)
    }

    /// Publishes the captured routes, in creation order, to the capture listeners.
    fn publish_captured(&self, inner: &Inner) {
        let mut routes: Vec<(u64, CapturedRoute)> = inner
            .routes
            .values()
            .filter_map(|e| {
                let capture = e.capture.clone()?;
                Some((
                    e.seq,
                    CapturedRoute {
                        name: e.name.clone(),
                        capture,
                        feed: e.feed(),
                    },
                ))
            })
            .collect();
        routes.sort_by_key(|(seq, _)| *seq);
        self.captured.store(Arc::new(CapturedRoutes {
            routes: routes.into_iter().map(|(_, r)| r).collect(),
        }));
    }

    /// Publishes the entry's current state and opens or closes its listener to match.
    /// Returns true if the listener should be open but could not be bound.
    fn publish(&self, entry: &mut Entry) -> bool {
        entry.emit();
        match (entry.wants_listener(), entry.accept.is_some()) {
            (true, false) => match self.plane.bind(&entry.listen.to_string()) {
                Ok(l) => {
                    entry.accept = Some(self.plane.serve(l, entry.feed()));
                    false
                }
                Err(e) => {
                    tracing::warn!(route = %entry.name, listen = %entry.listen, error = %e, "cannot listen again; will retry");
                    true
                }
            },
            (false, true) => {
                if let Some(a) = entry.accept.take() {
                    self.closing(a.close());
                }
                false
            }
            _ => false,
        }
    }
}

impl Entry {
    /// Publishes the entry's current state to its readers.
    fn emit(&self) {
        self.emit_state(if self.enabled {
            RouteState::Serving
        } else {
            RouteState::Disabled
        });
    }

    fn emit_state(&self, state: RouteState) {
        let snap = Arc::new(RouteSnapshot {
            name: self.name.clone(),
            upstream: self.upstream.clone(),
            protocol: self.protocol,
            http: self.http,
            state,
            faults: self.faults.clone().into_boxed_slice(),
            metrics: self.metrics.clone(),
        });
        self.current.store(snap.clone());
        self.tx.send_replace(snap);
    }

    fn feed(&self) -> RouteFeed {
        RouteFeed {
            rx: self.tx.subscribe(),
            current: self.current.clone(),
        }
    }

    fn wants_listener(&self) -> bool {
        self.wants_listener_with(self.enabled)
    }

    /// The listener is open while the route is enabled and no `down` fault with toxicity 1 is on.
    /// A captured route has none (its connections come through the capture listeners).
    fn wants_listener_with(&self, enabled: bool) -> bool {
        self.capture.is_none()
            && enabled
            && !self.faults.iter().any(|f| {
                matches!(f.fault.kind, FaultKind::Down(_)) && f.fault.toxicity.get() >= 1.0
            })
    }

    fn view(&self) -> RouteView {
        RouteView {
            name: self.name.to_string(),
            listen: self.listen,
            upstream: self.upstream.clone(),
            enabled: self.enabled,
            protocol: self.protocol,
            http: self.http,
            faults: self
                .faults
                .iter()
                .map(|f| FaultView {
                    route: self.name.to_string(),
                    fault: f.fault.clone(),
                    counters: f.counters.clone(),
                })
                .collect(),
            capture: self.capture.clone(),
        }
    }
}

/// What a route's readers hold: the change channel (TCP connections wait on it) and the current
/// snapshot (HTTP requests load it, lock-free, once per request).
#[derive(Clone, Debug)]
pub struct RouteFeed {
    pub rx: watch::Receiver<Arc<RouteSnapshot>>,
    pub current: Arc<arc_swap::ArcSwap<RouteSnapshot>>,
}

/// Byte-level faults need the TCP data plane; request-level faults need an HTTP route.
pub(super) fn check_protocol(protocol: Protocol, fault: &Fault) -> Result<(), RouteError> {
    let tag = fault.kind.tag();
    let fits = if protocol == Protocol::Auto {
        true
    } else if protocol.is_http() {
        tag.is_request_level()
            || matches!(
                tag,
                crate::fault::KindTag::Down | crate::fault::KindTag::Partition
            )
    } else {
        !tag.is_request_level()
    };
    if fits {
        Ok(())
    } else {
        Err(RouteError::Invalid {
            field: "type",
            message: format!("a {} fault cannot act on a {protocol} route", tag.name()),
        })
    }
}

/// `upstream: original` and `protocol: auto` need a captured route.
fn validate_capture(spec: &RouteSpec) -> Result<(), RouteError> {
    if spec.capture.is_some() {
        return Ok(());
    }
    if spec.upstream == Upstream::Original {
        return Err(RouteError::Invalid {
            field: "upstream",
            message: "\"original\" is only for captured routes".into(),
        });
    }
    if spec.protocol == Protocol::Auto {
        return Err(RouteError::Invalid {
            field: "protocol",
            message: "\"auto\" is only for captured routes".into(),
        });
    }
    Ok(())
}

pub(super) fn validate_name(field: &'static str, name: &str) -> Result<(), RouteError> {
    if name.is_empty() {
        return Err(RouteError::Invalid {
            field,
            message: "missing required field".into(),
        });
    }
    if name.len() > 253 || name.chars().any(|c| c.is_control() || c == '/') {
        return Err(RouteError::Invalid {
            field,
            message: format!(
                "{name:?} is not a valid name (no '/', no control characters, at most 253 bytes)"
            ),
        });
    }
    Ok(())
}
