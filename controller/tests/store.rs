//! The store against real SQLite files in a temp dir: the state machine, the timeline, unique
//! names, agents, migrations on reopen, what survives an unclean stop (a dropped or leaked
//! connection, a copy of the files taken mid-run, a `kill -9` of a writing process), and the
//! async handle under concurrent use.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use faultline_controller::store::{
    CONTROLLER_RESTARTED, DB_FILE_NAME, EventKind, ExperimentId, ExperimentState, StateKind, Store,
    StoreError, StoreHandle,
};
use serde_json::json;

// === support ===

/// A unique directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "faultline-store-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fixed instant plus `ms` milliseconds: timestamps the tests can compare exactly.
fn t(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_800_000_000_000 + ms)
}

const SPEC: &str = r#"{"apiVersion":"faultline.dev/v1alpha1","kind":"Experiment"}"#;

fn kinds_and_times(store: &Store, id: ExperimentId) -> Vec<(String, SystemTime)> {
    store
        .timeline(id)
        .unwrap()
        .into_iter()
        .map(|e| (e.kind.to_string(), e.at))
        .collect()
}

// === experiments and the state machine ===

#[test]
fn create_then_get_by_name_and_by_id_round_trips_every_field() {
    let dir = TempDir::new("create");
    let mut store = Store::open(dir.path()).unwrap();
    let id = store
        .create_experiment("latency-checkout", SPEC, u64::MAX, t(5))
        .unwrap();

    let by_name = store.get("latency-checkout").unwrap();
    let by_id = store.get(id).unwrap();
    assert_eq!(by_name, by_id);
    assert_eq!(by_id.id, id);
    assert_eq!(by_id.name, "latency-checkout");
    assert_eq!(by_id.spec_json, SPEC);
    assert_eq!(by_id.seed, u64::MAX, "the u64 seed survives SQLite's i64");
    assert_eq!(by_id.state, ExperimentState::Pending);
    assert_eq!(by_id.created_at, t(5));
    assert_eq!(by_id.state_changed_at, t(5));

    let timeline = store.timeline(id).unwrap();
    assert_eq!(timeline.len(), 1);
    assert_eq!(timeline[0].kind, EventKind::CREATED);
    assert_eq!(
        timeline[0].detail,
        json!({"name": "latency-checkout", "seed": u64::MAX})
    );

    let err = store.get("nope").unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    assert_eq!(err.to_string(), r#"experiment "nope" not found"#);

    let err = store
        .create_experiment("bad", "{not json", 1, t(6))
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidSpecJson { name, .. } if name == "bad"),
        "{err}"
    );
}

#[test]
fn legal_transitions_write_the_state_and_one_event_each_in_commit_order() {
    let dir = TempDir::new("legal");
    let mut store = Store::open(dir.path()).unwrap();
    let id = store.create_experiment("e", SPEC, 7, t(0)).unwrap();

    let started = store
        .transition(id, ExperimentState::Running, t(1_000))
        .unwrap();
    assert_eq!(started.kind, EventKind::STATE_CHANGED);
    assert_eq!(started.detail, json!({"from": "pending", "to": "running"}));
    assert_eq!(store.get(id).unwrap().state, ExperimentState::Running);

    // A controller event stamped *earlier* than the last one (the wall clock stepped back):
    // the timeline keeps commit order and the timestamps as given.
    store
        .append_event(
            id,
            t(900),
            EventKind::from_static("agent_acknowledged"),
            json!({"agent": "a1", "generation": 3}),
        )
        .unwrap();
    store
        .transition(id, ExperimentState::Completed, t(61_000))
        .unwrap();

    let experiment = store.get(id).unwrap();
    assert_eq!(experiment.state, ExperimentState::Completed);
    assert_eq!(experiment.state_changed_at, t(61_000));
    assert_eq!(
        kinds_and_times(&store, id),
        vec![
            ("created".to_owned(), t(0)),
            ("state_changed".to_owned(), t(1_000)),
            ("agent_acknowledged".to_owned(), t(900)),
            ("state_changed".to_owned(), t(61_000)),
        ]
    );
    let timeline = store.timeline(id).unwrap();
    assert!(timeline.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        timeline[1], started,
        "transition returns the event as stored"
    );
    assert_eq!(timeline[2].detail, json!({"agent": "a1", "generation": 3}));
    assert_eq!(
        timeline[3].detail,
        json!({"from": "running", "to": "completed"})
    );
}

#[test]
fn illegal_transitions_are_refused_naming_from_and_to_and_change_nothing() {
    let dir = TempDir::new("illegal");
    let mut store = Store::open(dir.path()).unwrap();
    let id = store.create_experiment("e", SPEC, 1, t(0)).unwrap();

    let err = store
        .transition(id, ExperimentState::Completed, t(1))
        .unwrap_err();
    assert!(
        matches!(
            &err,
            StoreError::IllegalTransition {
                from: StateKind::Pending,
                to: StateKind::Completed,
                name,
                ..
            } if name == "e"
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        r#"experiment "e" (id 1) cannot go from pending to completed"#
    );

    store
        .transition(id, ExperimentState::Running, t(2))
        .unwrap();
    for (to, kind) in [
        (ExperimentState::Running, StateKind::Running),
        (ExperimentState::Pending, StateKind::Pending),
    ] {
        let err = store.transition(id, to, t(3)).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::IllegalTransition { from: StateKind::Running, to, .. } if to == kind
            ),
            "{err}"
        );
    }

    store
        .transition(id, ExperimentState::aborted("operator"), t(4))
        .unwrap();
    let before = store.timeline(id).unwrap();
    // A second abort, a restart, a late completion: all refused from `aborted`.
    for to in [
        ExperimentState::aborted("again"),
        ExperimentState::Running,
        ExperimentState::Completed,
        ExperimentState::failed("late"),
    ] {
        let err = store.transition(id, to.clone(), t(5)).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::IllegalTransition { from: StateKind::Aborted, to: k, .. }
                    if k == to.kind()
            ),
            "{err}"
        );
    }
    // Nothing was written by the refused transitions: not the state, not an event.
    let after = store.get(id).unwrap();
    assert_eq!(after.state, ExperimentState::aborted("operator"));
    assert_eq!(after.state_changed_at, t(4));
    assert_eq!(store.timeline(id).unwrap(), before);

    let err = store
        .transition(ExperimentId::from_raw(999), ExperimentState::Running, t(6))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
}

#[test]
fn aborted_and_failed_keep_their_reason_from_pending_and_from_running() {
    let dir = TempDir::new("reasons");
    let mut store = Store::open(dir.path()).unwrap();
    let cases = [
        (
            "abort-pending",
            false,
            ExperimentState::aborted("changed my mind"),
        ),
        (
            "fail-pending",
            false,
            ExperimentState::failed("no agent matched"),
        ),
        (
            "abort-running",
            true,
            ExperimentState::aborted("error rate 12%"),
        ),
        (
            "fail-running",
            true,
            ExperimentState::failed("agent a2 rejected"),
        ),
    ];
    for (name, start, end) in cases.clone() {
        let id = store.create_experiment(name, SPEC, 0, t(0)).unwrap();
        if start {
            store
                .transition(id, ExperimentState::Running, t(1))
                .unwrap();
        }
        let event = store.transition(id, end.clone(), t(2)).unwrap();
        assert_eq!(event.detail["reason"], json!(end.reason().unwrap()));
    }
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    for (name, _, end) in cases {
        assert_eq!(store.get(name).unwrap().state, end, "{name}");
    }
}

#[test]
fn names_are_unique_among_live_experiments_and_delete_frees_them() {
    let dir = TempDir::new("names");
    let mut store = Store::open(dir.path()).unwrap();
    let first = store.create_experiment("ci-smoke", SPEC, 1, t(0)).unwrap();

    let err = store
        .create_experiment("ci-smoke", SPEC, 2, t(1))
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::NameTaken { name } if name == "ci-smoke"),
        "{err}"
    );
    assert_eq!(
        store.list(None).unwrap().len(),
        1,
        "the refused one left no row"
    );

    // Only a finished experiment can be deleted.
    store
        .transition(first, ExperimentState::Running, t(2))
        .unwrap();
    let err = store.delete("ci-smoke", t(3)).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotFinished {
                state: StateKind::Running,
                ..
            }
        ),
        "{err}"
    );
    store
        .transition(first, ExperimentState::Completed, t(4))
        .unwrap();
    assert_eq!(store.delete("ci-smoke", t(5)).unwrap(), first);

    // Gone from every read, and the name is free again.
    assert!(matches!(store.get(first), Err(StoreError::NotFound { .. })));
    assert!(matches!(
        store.timeline(first),
        Err(StoreError::NotFound { .. })
    ));
    assert!(store.list(None).unwrap().is_empty());
    assert!(matches!(
        store.delete("ci-smoke", t(6)),
        Err(StoreError::NotFound { .. })
    ));
    let second = store.create_experiment("ci-smoke", SPEC, 3, t(7)).unwrap();
    assert_ne!(second, first, "ids are never reused");
    assert_eq!(store.get("ci-smoke").unwrap().id, second);
    assert_eq!(store.get("ci-smoke").unwrap().seed, 3);
}

#[test]
fn list_filters_by_state_oldest_first() {
    let dir = TempDir::new("list");
    let mut store = Store::open(dir.path()).unwrap();
    let ids: Vec<_> = (0..5)
        .map(|i| {
            store
                .create_experiment(&format!("e{i}"), SPEC, i, t(i))
                .unwrap()
        })
        .collect();
    for &id in &ids[1..] {
        store
            .transition(id, ExperimentState::Running, t(10))
            .unwrap();
    }
    store
        .transition(ids[2], ExperimentState::Completed, t(11))
        .unwrap();
    store
        .transition(ids[3], ExperimentState::aborted("x"), t(11))
        .unwrap();

    let names = |state| -> Vec<String> {
        store
            .list(state)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect()
    };
    assert_eq!(names(None), ["e0", "e1", "e2", "e3", "e4"]);
    assert_eq!(names(Some(StateKind::Pending)), ["e0"]);
    assert_eq!(names(Some(StateKind::Running)), ["e1", "e4"]);
    assert_eq!(names(Some(StateKind::Completed)), ["e2"]);
    assert_eq!(names(Some(StateKind::Aborted)), ["e3"]);
    assert!(names(Some(StateKind::Failed)).is_empty());
}

#[test]
fn append_event_refuses_store_written_kinds_and_unknown_experiments() {
    let dir = TempDir::new("append");
    let mut store = Store::open(dir.path()).unwrap();
    let id = store.create_experiment("e", SPEC, 0, t(0)).unwrap();

    let err = store
        .append_event(
            id,
            t(1),
            EventKind::STATE_CHANGED,
            json!({"to": "completed"}),
        )
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::ReservedEventKind { kind } if kind == "state_changed"),
        "{err}"
    );
    let err = store
        .append_event(
            ExperimentId::from_raw(42),
            t(1),
            "guard_tripped".into(),
            json!({}),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    assert_eq!(store.timeline(id).unwrap().len(), 1);

    let err = store
        .append_event(
            id,
            UNIX_EPOCH - Duration::from_secs(1),
            "x".into(),
            json!({}),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::TimeOutOfRange { .. }), "{err}");
}

#[test]
fn targets_are_recorded_in_order_replaced_and_frozen_once_finished() {
    let dir = TempDir::new("targets");
    let mut store = Store::open(dir.path()).unwrap();
    let id = store.create_experiment("e", SPEC, 0, t(0)).unwrap();
    assert!(store.targets(id).unwrap().is_empty());

    let chosen = vec!["agent-c".to_owned(), "agent-a".to_owned()];
    let event = store.set_targets(id, &chosen, t(1)).unwrap();
    assert_eq!(event.kind, EventKind::TARGETS_CHOSEN);
    assert_eq!(event.detail, json!({"agents": ["agent-c", "agent-a"]}));
    assert_eq!(store.targets(id).unwrap(), chosen);

    store
        .transition(id, ExperimentState::Running, t(2))
        .unwrap();
    // An agent joins mid-run and matches: the longer list replaces the first.
    let grown = vec![
        "agent-c".to_owned(),
        "agent-a".to_owned(),
        "agent-d".to_owned(),
    ];
    store.set_targets(id, &grown, t(3)).unwrap();
    assert_eq!(store.targets(id).unwrap(), grown);

    let err = store
        .set_targets(id, &["x".to_owned(), "x".to_owned()], t(4))
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::DuplicateTarget { agent, .. } if agent == "x"),
        "{err}"
    );
    assert_eq!(
        store.targets(id).unwrap(),
        grown,
        "a refused list changes nothing"
    );

    store
        .transition(id, ExperimentState::Completed, t(5))
        .unwrap();
    let err = store.set_targets(id, &[], t(6)).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::TargetsWhenFinished {
                state: StateKind::Completed,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.targets(id).unwrap(), grown);
}

// === agents ===

#[test]
fn agents_upsert_keeps_first_seen_and_ignores_older_reports() {
    let dir = TempDir::new("agents");
    let mut store = Store::open(dir.path()).unwrap();
    let labels = |zone: &str| {
        BTreeMap::from([
            ("app".to_owned(), "checkout".to_owned()),
            ("zone".to_owned(), zone.to_owned()),
        ])
    };
    let routes = json!([{"name": "checkout-http", "protocol": "http"}]);

    store
        .record_agent_seen("b-agent", &labels("eu-1"), &routes, "0.1.0", t(100))
        .unwrap();
    store
        .record_agent_seen("a-agent", &labels("us-1"), &json!([]), "0.1.0", t(150))
        .unwrap();
    // b-agent reconnects with new labels, routes and version.
    let new_routes = json!([{"name": "checkout-grpc", "protocol": "grpc"}]);
    store
        .record_agent_seen("b-agent", &labels("eu-2"), &new_routes, "0.2.0", t(200))
        .unwrap();
    // A stale report from before that arrives late changes nothing.
    store
        .record_agent_seen("b-agent", &labels("stale"), &json!([]), "0.0.1", t(120))
        .unwrap();

    let agents = store.agents().unwrap();
    assert_eq!(agents.len(), 2);
    assert_eq!(agents[0].id, "a-agent", "ordered by id");
    let b = &agents[1];
    assert_eq!(b.id, "b-agent");
    assert_eq!(b.labels, labels("eu-2"));
    assert_eq!(b.routes, new_routes);
    assert_eq!(b.version, "0.2.0");
    assert_eq!(b.first_seen, t(100));
    assert_eq!(b.last_seen, t(200));

    // The hub's periodic refresh moves last seen forward only, and skips unknown agents.
    store
        .touch_agents(
            &["a-agent".into(), "b-agent".into(), "ghost".into()],
            t(180),
        )
        .unwrap();
    let agents = store.agents().unwrap();
    assert_eq!(agents.len(), 2);
    assert_eq!(agents[0].last_seen, t(180));
    assert_eq!(agents[1].last_seen, t(200), "never backwards");
    assert_eq!(agents[1].labels, labels("eu-2"), "only last seen changes");
}

// === reopening and unclean stops ===

#[test]
fn reopening_applies_no_migration_twice_and_keeps_the_data() {
    let dir = TempDir::new("reopen");
    let version = {
        let mut store = Store::open(dir.path()).unwrap();
        store.create_experiment("kept", SPEC, 9, t(0)).unwrap();
        store.schema_version().unwrap()
    };
    assert!(version >= 1);
    for _ in 0..3 {
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.schema_version().unwrap(), version);
        assert_eq!(store.list(None).unwrap().len(), 1);
        assert_eq!(store.get("kept").unwrap().seed, 9);
    }
    // One row per migration in schema_version, read with a connection of our own.
    let conn = rusqlite::Connection::open(dir.path().join(DB_FILE_NAME)).unwrap();
    let (rows, max): (u32, u32) = conn
        .query_row(
            "SELECT COUNT(*), MAX(version) FROM schema_version",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((rows, max), (version, version));
}

#[test]
fn the_emergency_stop_survives_reopening_until_lifted() {
    let dir = TempDir::new("emergency-stop");
    {
        let mut store = Store::open(dir.path()).unwrap();
        assert_eq!(store.emergency_stop().unwrap(), None);
        let stop = store.set_emergency_stop("incident 42", t(10)).unwrap();
        assert_eq!((stop.reason.as_str(), stop.since), ("incident 42", t(10)));
        // A second stop keeps the first's reason and time.
        let again = store.set_emergency_stop("another", t(20)).unwrap();
        assert_eq!(again, stop);
    }
    let mut store = Store::open(dir.path()).unwrap();
    let kept = store.emergency_stop().unwrap().expect("still in force");
    assert_eq!(kept.reason, "incident 42");
    assert!(store.clear_emergency_stop().unwrap());
    assert!(!store.clear_emergency_stop().unwrap());
    drop(store);
    assert_eq!(
        Store::open(dir.path()).unwrap().emergency_stop().unwrap(),
        None
    );
}

/// Fills a store with one experiment in each interesting state and returns their ids:
/// (pending, running, completed, aborted).
fn one_in_each_state(store: &mut Store) -> [ExperimentId; 4] {
    let pending = store.create_experiment("pending", SPEC, 1, t(0)).unwrap();
    let running = store.create_experiment("running", SPEC, 2, t(1)).unwrap();
    store
        .set_targets(running, &["a1".to_owned(), "a2".to_owned()], t(2))
        .unwrap();
    store
        .transition(running, ExperimentState::Running, t(3))
        .unwrap();
    let completed = store.create_experiment("completed", SPEC, 3, t(4)).unwrap();
    store
        .transition(completed, ExperimentState::Running, t(5))
        .unwrap();
    store
        .transition(completed, ExperimentState::Completed, t(6))
        .unwrap();
    let aborted = store.create_experiment("aborted", SPEC, 4, t(7)).unwrap();
    store
        .transition(aborted, ExperimentState::aborted("operator"), t(8))
        .unwrap();
    [pending, running, completed, aborted]
}

/// After a restart: only the running experiment is aborted, with its whole timeline.
fn assert_recovers(dir: &Path, ids: [ExperimentId; 4]) {
    let [pending, running, completed, aborted] = ids;
    let mut store = Store::open(dir).unwrap();
    assert_eq!(
        store.recover_after_restart(t(1_000)).unwrap(),
        vec![running]
    );

    let r = store.get(running).unwrap();
    assert_eq!(r.state, ExperimentState::aborted(CONTROLLER_RESTARTED));
    assert_eq!(r.state.to_string(), "aborted: controller restarted");
    assert_eq!(
        kinds_and_times(&store, running),
        vec![
            ("created".to_owned(), t(1)),
            ("targets_chosen".to_owned(), t(2)),
            ("state_changed".to_owned(), t(3)),
            ("state_changed".to_owned(), t(1_000)),
        ]
    );
    assert_eq!(
        store.timeline(running).unwrap()[3].detail,
        json!({"from": "running", "to": "aborted", "reason": "controller restarted"})
    );
    assert_eq!(store.targets(running).unwrap(), ["a1", "a2"]);
    assert_eq!(store.get(pending).unwrap().state, ExperimentState::Pending);
    assert_eq!(
        store.get(completed).unwrap().state,
        ExperimentState::Completed
    );
    assert_eq!(
        store.get(aborted).unwrap().state,
        ExperimentState::aborted("operator")
    );
    // Idempotent: a second start-up finds nothing running.
    assert!(store.recover_after_restart(t(2_000)).unwrap().is_empty());
    assert_eq!(store.timeline(running).unwrap().len(), 4);
}

#[test]
fn recovery_after_the_store_is_dropped_without_shutdown() {
    let dir = TempDir::new("drop");
    let mut store = Store::open(dir.path()).unwrap();
    let ids = one_in_each_state(&mut store);
    drop(store);
    assert_recovers(dir.path(), ids);
}

#[test]
fn recovery_after_the_connection_is_leaked_unclosed() {
    let dir = TempDir::new("leak");
    let mut store = Store::open(dir.path()).unwrap();
    let ids = one_in_each_state(&mut store);
    // No close, no checkpoint: the writes are only in the WAL, as after a crash. (The leak
    // is a few KiB for the life of the test process.)
    std::mem::forget(store);
    let wal = dir.path().join(format!("{DB_FILE_NAME}-wal"));
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    assert_recovers(dir.path(), ids);
}

#[test]
fn a_copy_of_the_db_and_wal_taken_mid_run_holds_every_acknowledged_write() {
    let dir = TempDir::new("copy-src");
    let copy = TempDir::new("copy-dst");
    let mut store = Store::open(dir.path()).unwrap();
    let ids = one_in_each_state(&mut store);

    // The store is still open and nothing was checkpointed: the acknowledged writes live in
    // the WAL. Copy the two files (not the -shm index, which SQLite rebuilds) as a crash
    // would leave them.
    let wal_name = format!("{DB_FILE_NAME}-wal");
    let wal_len = std::fs::metadata(dir.path().join(&wal_name)).unwrap().len();
    assert!(
        wal_len > 0,
        "the writes are in the WAL, not yet in the db file"
    );
    std::fs::create_dir_all(copy.path()).unwrap();
    for name in [DB_FILE_NAME, wal_name.as_str()] {
        std::fs::copy(dir.path().join(name), copy.path().join(name)).unwrap();
    }

    // A write after the copy must not appear in it.
    store
        .create_experiment("after-copy", SPEC, 5, t(9))
        .unwrap();

    assert_recovers(copy.path(), ids);
    let copied = Store::open(copy.path()).unwrap();
    assert!(matches!(
        copied.get("after-copy"),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(copied.list(None).unwrap().len(), 4);
    // The original is untouched by all this.
    assert_eq!(store.get(ids[1]).unwrap().state, ExperimentState::Running);
}

// --- kill -9 of a writing process ---

const CHILD_DIR_ENV: &str = "FAULTLINE_STORE_TEST_CHILD_DIR";

/// Not a test on its own: the body of the child process that
/// `kill_9_mid_write_loses_nothing_acknowledged` starts and kills. Without the variable set it
/// returns at once.
#[test]
fn child_process_for_the_kill_test() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let mut store = Store::open(dir).unwrap();
    // Writes until killed, printing one line per acknowledged (committed) write.
    for i in 0u64.. {
        let name = format!("e{i}");
        let id = store.create_experiment(&name, SPEC, i, t(i)).unwrap();
        println!("ACK {name} pending");
        store
            .transition(id, ExperimentState::Running, t(i))
            .unwrap();
        println!("ACK {name} running");
        if i % 3 == 0 {
            store
                .transition(id, ExperimentState::Completed, t(i))
                .unwrap();
            println!("ACK {name} completed");
        }
    }
}

#[test]
fn kill_9_mid_write_loses_nothing_acknowledged() {
    let dir = TempDir::new("kill9");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_process_for_the_kill_test",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Read acknowledgements on a thread so a stuck child fails the test instead of hanging it.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest may print "test name ... " before the first line on the same line.
            if let Some(at) = line.find("ACK ")
                && tx.send(line[at + 4..].to_owned()).is_err()
            {
                break;
            }
        }
    });
    let mut acked: BTreeMap<String, StateKind> = BTreeMap::new();
    while acked.len() < 40 {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the child acknowledges writes");
        let (name, state) = line.split_once(' ').unwrap();
        acked.insert(name.to_owned(), StateKind::from_str(state).unwrap());
    }
    // SIGKILL while the child is still writing: no destructor, no close, no checkpoint.
    child.kill().unwrap();
    child.wait().unwrap();
    // Acknowledgements already in the pipe were acknowledged too.
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        let (name, state) = line.split_once(' ').unwrap();
        acked.insert(name.to_owned(), StateKind::from_str(state).unwrap());
    }

    let mut store = Store::open(dir.path()).unwrap();
    let order = |k: StateKind| match k {
        StateKind::Pending => 0,
        StateKind::Running => 1,
        _ => 2,
    };
    for (name, state) in &acked {
        let stored = store.get(name.as_str()).unwrap().state.kind();
        // The stored state is the acknowledged one, or a later one whose ACK the kill cut off.
        assert!(
            order(stored) >= order(*state),
            "{name}: acknowledged {state}, stored {stored}"
        );
    }
    let running: Vec<_> = store
        .list(Some(StateKind::Running))
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert!(!running.is_empty());
    assert_eq!(store.recover_after_restart(t(1_000_000)).unwrap(), running);
    for id in running {
        let timeline = store.timeline(id).unwrap();
        assert_eq!(timeline.len(), 3, "created, running, aborted");
        assert_eq!(timeline[2].detail["reason"], json!(CONTROLLER_RESTARTED));
    }
    assert!(store.list(Some(StateKind::Running)).unwrap().is_empty());
}

// === the async handle ===

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_handle_serves_many_tasks_at_once_through_a_small_queue() {
    let dir = TempDir::new("handle");
    // A queue of 2 for 16 tasks: senders wait for room, nothing is dropped.
    let (handle, task) = StoreHandle::spawn(Store::open(dir.path()).unwrap(), 2).unwrap();

    let mut workers = tokio::task::JoinSet::new();
    for w in 0..8u64 {
        let h = handle.clone();
        workers.spawn(async move {
            for i in 0..10u64 {
                let id = h
                    .create_experiment(format!("w{w}-e{i}"), SPEC, w * 100 + i, t(i))
                    .await
                    .unwrap();
                h.set_targets(id, vec![format!("agent-{w}")], t(i + 1))
                    .await
                    .unwrap();
                h.transition(id, ExperimentState::Running, t(i + 2))
                    .await
                    .unwrap();
                h.append_event(
                    id,
                    t(i + 3),
                    "agent_acknowledged".into(),
                    json!({"agent": format!("agent-{w}")}),
                )
                .await
                .unwrap();
                h.transition(id, ExperimentState::Completed, t(i + 4))
                    .await
                    .unwrap();
                h.record_agent_seen(
                    format!("agent-{w}"),
                    BTreeMap::from([("worker".to_owned(), w.to_string())]),
                    json!([]),
                    "0.1.0",
                    t(i),
                )
                .await
                .unwrap();
            }
        });
    }
    // Eight tasks race to create the same name: exactly one wins.
    let mut racers = tokio::task::JoinSet::new();
    for r in 0..8u64 {
        let h = handle.clone();
        racers.spawn(async move { h.create_experiment("contested", SPEC, r, t(0)).await });
    }
    while let Some(done) = workers.join_next().await {
        done.unwrap();
    }
    let (mut won, mut taken) = (0, 0);
    while let Some(done) = racers.join_next().await {
        match done.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::NameTaken { name }) if name == "contested" => taken += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!((won, taken), (1, 7));

    let completed = handle.list(Some(StateKind::Completed)).await.unwrap();
    assert_eq!(completed.len(), 80);
    for e in &completed {
        let timeline = handle.timeline(e.id).await.unwrap();
        let kinds: Vec<_> = timeline.iter().map(|e| e.kind.to_string()).collect();
        assert_eq!(
            kinds,
            [
                "created",
                "targets_chosen",
                "state_changed",
                "agent_acknowledged",
                "state_changed"
            ],
            "{}",
            e.name
        );
    }
    assert_eq!(handle.agents().await.unwrap().len(), 8);
    assert_eq!(handle.list(None).await.unwrap().len(), 81);

    // Shutdown: drop every handle, wait for the thread to close the database.
    drop(handle);
    task.finished().await.unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.list(None).unwrap().len(), 81);
}

#[tokio::test]
async fn store_handle_works_on_a_current_thread_runtime_and_reports_typed_errors() {
    let dir = TempDir::new("handle-ct");
    let (handle, task) = StoreHandle::spawn(Store::open(dir.path()).unwrap(), 8).unwrap();
    let id = handle.create_experiment("e", SPEC, 1, t(0)).await.unwrap();
    let err = handle
        .transition(id, ExperimentState::Completed, t(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::IllegalTransition {
                from: StateKind::Pending,
                to: StateKind::Completed,
                ..
            }
        ),
        "{err}"
    );
    handle
        .transition(id, ExperimentState::Running, t(2))
        .await
        .unwrap();
    assert_eq!(handle.recover_after_restart(t(3)).await.unwrap(), vec![id]);
    assert_eq!(
        handle.get("e").await.unwrap().state,
        ExperimentState::aborted(CONTROLLER_RESTARTED)
    );
    assert!(handle.schema_version().await.unwrap() >= 1);
    drop(handle);
    task.finished().await.unwrap();
}
