//! Per-cohort SLIs end to end: a real agent with an `http` route in front of a real upstream,
//! a test controller that puts a sticky-cohort abort on the route, and requests from many
//! distinct users. The heartbeats must report the treatment (only injected 503s) and the
//! control (only real 2xx) apart, each about the fault's share of the requests.

mod support;

use std::time::Duration;

use faultline_agent::app::Agent;
use faultline_agent::fault::Probability;
use faultline_agent::fault::http::{Arm, Cohort};
use faultline_agent::metrics::SliSnapshot;

use faultline_proto::v1;
use http::HeaderName;
use tokio::time::Instant;

use support::{controller, duration, http_get_with, http_upstream, next_peer};

const USERS: usize = 500;
const SEED: u64 = 7;

async fn agent(controller: std::net::SocketAddr, upstream: std::net::SocketAddr) -> Agent {
    support::http_agent(controller, upstream, &["api"]).await
}

/// An `http_abort` of 503 on `api` for 20 % of users, by `x-user`.
fn cohort_abort() -> v1::FaultSpec {
    v1::FaultSpec {
        name: "abort-some-users".into(),
        route: "api".into(),
        experiment: "exp-1".into(),
        direction: 0,
        probability: Some(0.2),
        r#match: None,
        cohort: Some(v1::Cohort {
            header: "x-user".into(),
            seed: SEED,
        }),
        kind: Some(v1::fault_spec::Kind::HttpAbort(v1::HttpAbort {
            status: 503,
            body: "injected".into(),
            headers: Default::default(),
        })),
    }
}

fn sum(into: &mut SliSnapshot, s: Option<v1::SliSnapshot>) -> bool {
    match s {
        Some(s) => {
            into.merge(&SliSnapshot::try_from(s).expect("a valid SLI snapshot"));
            true
        }
        None => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_report_the_treatment_and_the_control_of_a_cohort_fault_apart() {
    let (addr, mut peers) = controller().await;
    let agent = agent(addr, http_upstream().await).await;
    let mut peer = next_peer(&mut peers).await;
    peer.hello().await;
    drop(peers);
    let api = agent.table.get("api").unwrap().listen;

    peer.send(v1::controller_message::Body::DesiredState(
        v1::DesiredState {
            generation: 1,
            lease: Some(duration(Duration::from_secs(60))),
            faults: vec![cohort_abort()],
            heartbeat_interval: Some(duration(Duration::from_millis(100))),
            local_guards: vec![],
        },
    ))
    .await;
    let ack = peer.ack_answering_heartbeats().await;
    assert_eq!((ack.applied_faults, ack.error), (1, None));

    // Each user's arm, as the agent computes it; every treatment user is aborted, nobody else.
    let cohort = Cohort {
        header: HeaderName::from_static("x-user"),
        seed: SEED,
    };
    let p = Probability::new(0.2).unwrap();
    let (mut treatment, mut control) = (0u64, 0u64);
    for i in 0..USERS {
        let user = format!("user-{i}");
        let arm = cohort.arm(user.as_bytes(), p);
        let status = http_get_with(api, "x-user", &user).await;
        match arm {
            Arm::Treatment => treatment += 1,
            Arm::Control => control += 1,
            Arm::Neither => {}
        }
        let expected = if arm == Arm::Treatment { 503 } else { 200 };
        assert_eq!(status, expected, "{user} is in {arm:?}");
    }
    // Both arms are about 20 % of the users.
    for (arm, n) in [("treatment", treatment), ("control", control)] {
        assert!((70..130).contains(&n), "{arm}: {n} of {USERS}");
    }

    // Sum the heartbeats until they cover every request.
    let (mut route, mut t, mut c) = (
        SliSnapshot::default(),
        SliSnapshot::default(),
        SliSnapshot::default(),
    );
    let mut carried_both = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while route.responses() < USERS as u64 {
        assert!(Instant::now() < deadline, "heartbeats covered {route:?}");
        let hb = peer.heartbeat().await;
        peer.send(support::controller_heartbeat()).await;
        for sli in hb.route_slis.into_iter().filter(|s| s.route == "api") {
            sum(&mut route, sli.sli);
            let (has_t, has_c) = (sum(&mut t, sli.treatment), sum(&mut c, sli.control));
            carried_both |= has_t && has_c;
        }
    }
    assert!(carried_both, "a RouteSli carries both arms");
    assert_eq!(route.responses(), USERS as u64);

    // The treatment: only injected 503s, one per treatment user.
    assert_eq!(t.requests.injected, [0, 0, 0, 0, treatment]);
    assert_eq!(t.requests.real, [0; 5]);
    assert_eq!(t.latency.count, treatment);
    // The control: only real 2xx, one per control user.
    assert_eq!(c.requests.real, [0, control, 0, 0, 0]);
    assert_eq!(c.requests.injected, [0; 5]);
    assert_eq!(c.latency.count, control);
    // The route: both arms and everyone else.
    assert_eq!(route.requests.injected[4], treatment);
    assert_eq!(route.requests.real[1], USERS as u64 - treatment);
}
