//! Target selection and conflict rules (`faultline_controller::targets`), driven through real
//! validated specs.

use std::collections::{BTreeMap, BTreeSet};

use faultline_agent::route::Protocol;
use faultline_controller::spec::{Cap, Caps, ErrorKind, Experiment, Percent};
use faultline_controller::targets::{
    AgentInfo, Choice, Conflict, TargetError, choose, conflicts, joins, rank,
};

// === helpers ===

const LATENCY: &str = "[{route: redis, type: latency, attributes: {latency: 100}}]";

fn spec(name: &str, targets: &str, faults: &str, extra: &str) -> Experiment {
    Experiment::parse(&format!(
        "apiVersion: faultline.dev/v1alpha1\nkind: Experiment\nmetadata: {{name: {name}}}\n\
         spec:\n  targets: {targets}\n  faults: {faults}\n  duration: 1m\n{extra}"
    ))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn exp(targets: &str) -> Experiment {
    spec("exp", targets, LATENCY, "")
}

fn agent(id: &str, labels: &[(&str, &str)], routes: &[(&str, Protocol)]) -> AgentInfo {
    AgentInfo {
        id: id.to_string(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        routes: routes.iter().map(|(r, p)| (r.to_string(), *p)).collect(),
    }
}

/// `n` agents labelled `app: api`, each with a TCP route `redis`.
fn fleet(n: usize) -> Vec<AgentInfo> {
    (0..n).map(|i| api(&format!("agent-{i:02}"))).collect()
}

fn api(id: &str) -> AgentInfo {
    agent(id, &[("app", "api")], &[("redis", Protocol::Tcp)])
}

fn set(ids: &[String]) -> BTreeSet<String> {
    ids.iter().cloned().collect()
}

/// A seeded Fisher-Yates shuffle (xorshift64*), so the tests need no random crate.
fn shuffled<T: Clone>(items: &[T], mut state: u64) -> Vec<T> {
    let mut out = items.to_vec();
    state |= 1;
    for i in (1..out.len()).rev() {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let j = (state.wrapping_mul(0x2545_f491_4f6c_dd1d) % (i as u64 + 1)) as usize;
        out.swap(i, j);
    }
    out
}

fn caps(max_percent: u64) -> Caps {
    Caps {
        max_percent_of_agents: Percent::new(max_percent),
        ..Caps::default()
    }
}

const COUNT_3: &str = "{selector: {matchLabels: {app: api}}, mode: count, value: 3}";

// === determinism and spread ===

#[test]
fn same_seed_and_agents_give_the_same_choice_whatever_the_input_order() {
    let agents = fleet(10);
    for targets in [
        COUNT_3,
        "{selector: {matchLabels: {app: api}}, mode: percent, value: 40}",
    ] {
        let e = exp(targets);
        for seed in [0, 1, 42, u64::MAX] {
            let base = choose(&e, seed, &agents, &Caps::default()).unwrap();
            let mut reversed = agents.clone();
            reversed.reverse();
            assert_eq!(choose(&e, seed, &reversed, &Caps::default()).unwrap(), base);
            for shuffle in 1..20 {
                let input = shuffled(&agents, shuffle);
                assert_eq!(
                    choose(&e, seed, &input, &Caps::default()).unwrap(),
                    base,
                    "seed {seed}, shuffle {shuffle}"
                );
            }
        }
    }
}

#[test]
fn chosen_are_the_lowest_ranks_in_rank_order() {
    let agents = fleet(10);
    let c = choose(&exp(COUNT_3), 7, &agents, &Caps::default()).unwrap();
    let mut by_rank: Vec<(u64, String)> = agents
        .iter()
        .map(|a| (rank(7, &a.id), a.id.clone()))
        .collect();
    by_rank.sort();
    let want: Vec<String> = by_rank.into_iter().take(3).map(|(_, id)| id).collect();
    assert_eq!(c.chosen, want);
    assert_eq!(c.eligible, 10);
    assert!(c.skipped.is_empty());
}

#[test]
fn different_seeds_choose_different_subsets() {
    let agents = fleet(10);
    let e = exp(COUNT_3);
    let subsets: BTreeSet<BTreeSet<String>> = (0..20u64)
        .map(|seed| set(&choose(&e, seed, &agents, &Caps::default()).unwrap().chosen))
        .collect();
    // 120 possible subsets of 3 out of 10; 20 seeds should rarely repeat one.
    assert!(subsets.len() >= 17, "{} distinct subsets", subsets.len());
}

#[test]
fn over_many_seeds_each_agent_is_chosen_about_equally_often() {
    let agents = fleet(10);
    let e = exp(COUNT_3);
    let mut times: BTreeMap<String, u32> = BTreeMap::new();
    for seed in 0..1000u64 {
        for id in choose(&e, seed, &agents, &Caps::default()).unwrap().chosen {
            *times.entry(id).or_default() += 1;
        }
    }
    assert_eq!(times.len(), 10);
    // Expected 300 each; one standard deviation is about 14.5.
    for (id, n) in &times {
        assert!((250..=350).contains(n), "{id} chosen {n} times of 1000");
    }
    assert_eq!(times.values().sum::<u32>(), 3000);
}

// === stability as agents come and go ===

#[test]
fn an_arriving_agent_changes_at_most_the_slot_it_wins() {
    let agents = fleet(10);
    let mut with_new = agents.clone();
    with_new.push(api("agent-new"));
    let e = exp(COUNT_3);
    let mut wins = 0;
    for seed in 0..300u64 {
        let before = choose(&e, seed, &agents, &Caps::default()).unwrap();
        let after = choose(&e, seed, &with_new, &Caps::default()).unwrap();
        if after.chosen.contains(&"agent-new".to_string()) {
            wins += 1;
            // It displaced the last of the agents chosen before; the others keep their slots.
            let kept: Vec<&String> = after
                .chosen
                .iter()
                .filter(|id| *id != "agent-new")
                .collect();
            let want: Vec<&String> = before.chosen[..2].iter().collect();
            assert_eq!(kept, want, "seed {seed}");
        } else {
            assert_eq!(after.chosen, before.chosen, "seed {seed}");
        }
    }
    // About 3 in 11.
    assert!((50..=115).contains(&wins), "the newcomer won {wins} of 300");
}

#[test]
fn a_leaving_agent_frees_only_its_own_slot() {
    let agents = fleet(10);
    let e = exp(COUNT_3);
    for seed in 0..100u64 {
        let before = choose(&e, seed, &agents, &Caps::default()).unwrap();
        for gone in [&before.chosen[1], &before.chosen[2]] {
            let rest: Vec<AgentInfo> = agents.iter().filter(|a| &a.id != gone).cloned().collect();
            let after = choose(&e, seed, &rest, &Caps::default()).unwrap();
            let kept = set(&before.chosen)
                .intersection(&set(&after.chosen))
                .count();
            assert_eq!(kept, 2, "seed {seed}, without {gone}");
        }
        let unchosen = agents
            .iter()
            .find(|a| !before.chosen.contains(&a.id))
            .unwrap();
        let rest: Vec<AgentInfo> = agents
            .iter()
            .filter(|a| a.id != unchosen.id)
            .cloned()
            .collect();
        assert_eq!(
            choose(&e, seed, &rest, &Caps::default()).unwrap().chosen,
            before.chosen
        );
    }
}

#[test]
fn a_percentage_that_grows_by_one_agent_keeps_everyone_chosen() {
    let e = exp("{selector: {matchLabels: {app: api}}, mode: percent, value: 50}");
    let nine = fleet(9);
    let ten = fleet(10);
    for seed in 0..100u64 {
        let before = choose(&e, seed, &nine, &Caps::default()).unwrap();
        let after = choose(&e, seed, &ten, &Caps::default()).unwrap();
        assert_eq!((before.chosen.len(), after.chosen.len()), (4, 5));
        assert!(
            set(&before.chosen).is_subset(&set(&after.chosen)),
            "seed {seed}"
        );
    }
}

// === modes, selectors, routes ===

#[test]
fn percentages_round_through_count_of() {
    let sel = "selector: {matchLabels: {app: api}}, mode: percent";
    for (percent, agents, want) in [
        (25, 10, 2),
        (5, 10, 1),
        (33, 7, 2),
        (50, 3, 1),
        (99, 10, 9),
        (100, 7, 7),
    ] {
        let e = exp(&format!("{{{sel}, value: {percent}}}"));
        let c = choose(&e, 1, &fleet(agents), &Caps::default()).unwrap();
        assert_eq!(c.chosen.len(), want, "{percent}% of {agents}");
        assert_eq!(c.chosen.len(), e.targets.mode.count_of(agents));
        assert_eq!(c.eligible, agents);
    }
    let all = choose(
        &exp("{selector: {matchLabels: {app: api}}}"),
        1,
        &fleet(4),
        &Caps::default(),
    );
    assert_eq!(all.unwrap().chosen.len(), 4);
}

#[test]
fn selectors_with_match_expressions() {
    let redis = [("redis", Protocol::Tcp)];
    let agents = [
        agent(
            "a",
            &[("app", "api"), ("track", "canary"), ("zone", "us-1")],
            &redis,
        ),
        agent("b", &[("app", "api"), ("track", "beta")], &redis),
        agent("c", &[("app", "api"), ("track", "stable")], &redis),
        agent(
            "d",
            &[("app", "api"), ("track", "canary"), ("zone", "eu-1")],
            &redis,
        ),
        agent(
            "e",
            &[("app", "api"), ("track", "canary"), ("legacy", "yes")],
            &redis,
        ),
        agent("f", &[("app", "web"), ("track", "canary")], &redis),
        agent("g", &[("app", "api")], &redis),
    ];
    let e = exp(concat!(
        "{selector: {matchLabels: {app: api}, matchExpressions: [",
        "{key: track, operator: In, values: [canary, beta]}, ",
        "{key: zone, operator: NotIn, values: [eu-1]}, ",
        "{key: legacy, operator: DoesNotExist}]}}",
    ));
    let c = choose(&e, 3, &agents, &Caps::default()).unwrap();
    assert_eq!(set(&c.chosen), set(&["a".into(), "b".into()]));
    assert_eq!(c.eligible, 2);
    // Agents the selector does not match are not "skipped": they were never candidates.
    assert!(c.skipped.is_empty());

    let e = exp("{selector: {matchExpressions: [{key: zone, operator: Exists}]}}");
    let c = choose(&e, 3, &agents, &Caps::default()).unwrap();
    assert_eq!(set(&c.chosen), set(&["a".into(), "d".into()]));

    let c = choose(&exp("{all: true}"), 3, &agents, &Caps::default()).unwrap();
    assert_eq!(c.chosen.len(), 7);
}

#[test]
fn agents_without_every_faulted_route_are_skipped_with_the_reason() {
    let faults = "[{route: redis, type: latency, attributes: {latency: 100}}, \
                  {route: api, type: http_abort, attributes: {status: 503}}, \
                  {route: api, type: down}]";
    let e = spec("exp", "{selector: {matchLabels: {app: api}}}", faults, "");
    assert_eq!(
        e.targets.routes,
        vec!["redis".to_string(), "api".to_string()]
    );
    let labels = [("app", "api")];
    let agents = [
        agent(
            "ok",
            &labels,
            &[("redis", Protocol::Tcp), ("api", Protocol::Http)],
        ),
        agent(
            "grpc",
            &labels,
            &[
                ("redis", Protocol::Tcp),
                ("api", Protocol::Grpc),
                ("x", Protocol::Tcp),
            ],
        ),
        agent("no-api", &labels, &[("redis", Protocol::Tcp)]),
        agent("none", &labels, &[]),
        agent(
            "tcp-api",
            &labels,
            &[("redis", Protocol::Tcp), ("api", Protocol::Tcp)],
        ),
        agent(
            "http-redis",
            &labels,
            &[("redis", Protocol::Http), ("api", Protocol::Http)],
        ),
        agent("other", &[("app", "web")], &[]),
    ];
    let want_skipped = vec![
        (
            "http-redis".to_string(),
            "route redis is http, where a latency fault cannot act".to_string(),
        ),
        ("no-api".to_string(), "lacks route api".to_string()),
        ("none".to_string(), "lacks routes redis, api".to_string()),
        (
            "tcp-api".to_string(),
            "route api is tcp, where a http_abort fault cannot act".to_string(),
        ),
    ];
    for order in 0..5 {
        let input = shuffled(&agents, order);
        let c = choose(&e, 9, &input, &Caps::default()).unwrap();
        assert_eq!(set(&c.chosen), set(&["ok".into(), "grpc".into()]));
        assert_eq!(c.eligible, 2);
        assert_eq!(c.skipped, want_skipped);
    }
}

// === errors ===

#[test]
fn nothing_eligible_names_the_selector() {
    let e = exp("{selector: {matchLabels: {app: api}}}");
    let web = [agent("w", &[("app", "web")], &[("redis", Protocol::Tcp)])];
    let err = choose(&e, 1, &web, &Caps::default()).unwrap_err();
    assert!(matches!(
        err,
        TargetError::NothingEligible { matched: 0, .. }
    ));
    assert_eq!(err.to_string(), "no agent matches selector app=api");

    let err = choose(&exp("{all: true}"), 1, &[], &Caps::default()).unwrap_err();
    assert_eq!(err.to_string(), "no agent matches all: true");

    let lacking: Vec<AgentInfo> = (0..5)
        .map(|i| agent(&format!("a{i}"), &[("app", "api")], &[]))
        .collect();
    let err = choose(&e, 1, &lacking, &Caps::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "5 agents match selector app=api but none can take the experiment's faults: \
         a0 lacks route redis; a1 lacks route redis; a2 lacks route redis; and 2 more"
    );
    let err = choose(&e, 1, &lacking[..1], &Caps::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "1 agent matches selector app=api but cannot take the experiment's faults: \
         a0 lacks route redis"
    );
}

#[test]
fn a_count_beyond_the_eligible_agents_is_an_error() {
    let e = exp("{selector: {matchLabels: {app: api}}, mode: count, value: 5}");
    let err = choose(&e, 1, &fleet(3), &Caps::default()).unwrap_err();
    assert_eq!(
        err,
        TargetError::CountExceedsEligible {
            count: 5,
            eligible: 3,
            selector: e.targets.selector.clone(),
        }
    );
    assert_eq!(
        err.to_string(),
        "mode count asks for 5 agents, but only 3 eligible agents match selector app=api"
    );
    assert_eq!(
        choose(&e, 1, &fleet(5), &Caps::default())
            .unwrap()
            .chosen
            .len(),
        5
    );
}

#[test]
fn the_share_chosen_is_checked_against_the_caps() {
    let count = |n| {
        exp(&format!(
            "{{selector: {{matchLabels: {{app: api}}}}, mode: count, value: {n}}}"
        ))
    };
    assert_eq!(
        choose(&count(5), 1, &fleet(10), &caps(50))
            .unwrap()
            .chosen
            .len(),
        5
    );
    let err = choose(&count(6), 1, &fleet(10), &caps(50)).unwrap_err();
    let TargetError::Cap(spec_err) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(spec_err.kind, ErrorKind::Cap(Cap::MaxPercentOfAgents));
    assert_eq!(spec_err.path.to_string(), "spec.targets.value");
    assert!(err.to_string().contains("6 of 10 matching agents"), "{err}");

    // 50% of one agent rounds up to that agent: 100% of the eligible ones.
    let half = exp("{selector: {matchLabels: {app: api}}, mode: percent, value: 50}");
    assert!(matches!(
        choose(&half, 1, &fleet(1), &caps(50)),
        Err(TargetError::Cap(_))
    ));
    assert_eq!(
        choose(&half, 1, &fleet(4), &caps(50)).unwrap().chosen.len(),
        2
    );
}

#[test]
fn an_agent_listed_twice_is_an_error() {
    let mut agents = fleet(3);
    agents.push(api("agent-01"));
    assert_eq!(
        choose(&exp(COUNT_3), 1, &agents, &Caps::default()),
        Err(TargetError::DuplicateAgent("agent-01".into()))
    );
}

// === agents joining mid-run ===

#[test]
fn in_count_mode_a_newcomer_joins_when_it_would_have_been_chosen() {
    let agents = fleet(10);
    let e = exp(COUNT_3);
    let newcomer = api("agent-new");
    let mut with_new = agents.clone();
    with_new.push(newcomer.clone());
    let (mut joined, mut stayed_out) = (0, 0);
    for seed in 0..300u64 {
        let choice = choose(&e, seed, &agents, &Caps::default()).unwrap();
        let had_it_been_there = choose(&e, seed, &with_new, &Caps::default())
            .unwrap()
            .chosen
            .contains(&newcomer.id);
        let j = joins(&e, seed, &choice, &newcomer, &Caps::default());
        assert_eq!(j, had_it_been_there, "seed {seed}");
        // Asking again (a reconnect) gives the same answer.
        assert_eq!(joins(&e, seed, &choice, &newcomer, &Caps::default()), j);
        if j {
            joined += 1
        } else {
            stayed_out += 1
        }
        // A chosen agent that reconnects is targeted again.
        assert!(joins(
            &e,
            seed,
            &choice,
            &api(&choice.chosen[2]),
            &Caps::default()
        ));
    }
    assert!(
        joined > 30 && stayed_out > 150,
        "{joined} joined, {stayed_out} not"
    );
}

#[test]
fn a_newcomer_must_match_and_have_the_routes() {
    let e = exp("{selector: {matchLabels: {app: api}}}");
    let choice = choose(&e, 1, &fleet(3), &Caps::default()).unwrap();
    let caps = Caps::default();
    assert!(joins(&e, 1, &choice, &api("new"), &caps));
    let web = agent("web", &[("app", "web")], &[("redis", Protocol::Tcp)]);
    assert!(!joins(&e, 1, &choice, &web, &caps));
    let no_route = agent("bare", &[("app", "api")], &[]);
    assert!(!joins(&e, 1, &choice, &no_route, &caps));
    let http = agent("http", &[("app", "api")], &[("redis", Protocol::Http)]);
    assert!(!joins(&e, 1, &choice, &http, &caps));
    // A chosen agent that comes back without the route cannot take the faults any more.
    let gone = agent(&choice.chosen[0], &[("app", "api")], &[]);
    assert!(!joins(&e, 1, &choice, &gone, &caps));
}

#[test]
fn without_include_new_agents_only_chosen_agents_come_back() {
    let e = exp("{selector: {matchLabels: {app: api}}, includeNewAgents: false}");
    let choice = choose(&e, 1, &fleet(3), &Caps::default()).unwrap();
    assert!(!joins(&e, 1, &choice, &api("new"), &Caps::default()));
    assert!(joins(&e, 1, &choice, &api("agent-00"), &Caps::default()));
}

#[test]
fn in_percent_mode_newcomers_keep_the_percentage() {
    let e = exp("{selector: {matchLabels: {app: api}}, mode: percent, value: 50}");
    let mut choice = choose(&e, 5, &fleet(10), &Caps::default()).unwrap();
    assert_eq!((choice.chosen.len(), choice.eligible), (5, 10));
    // 50% of 11 is 5: the 11th agent is not needed.
    assert!(!joins(&e, 5, &choice, &api("n1"), &Caps::default()));
    choice.eligible += 1;
    // 50% of 12 is 6: the 12th joins.
    assert!(joins(&e, 5, &choice, &api("n2"), &Caps::default()));
    choice.eligible += 1;
    choice.chosen.push("n2".into());
    assert!(!joins(&e, 5, &choice, &api("n3"), &Caps::default()));
}

#[test]
fn a_newcomer_never_takes_the_experiment_beyond_the_caps() {
    let e = exp("{selector: {matchLabels: {app: api}}, mode: count, value: 5}");
    let agents = fleet(10);
    let newcomer = api("agent-new");
    let seed = (0..100u64)
        .find(|&s| {
            let c = choose(&e, s, &agents, &Caps::default()).unwrap();
            joins(&e, s, &c, &newcomer, &Caps::default())
        })
        .expect("some seed ranks the newcomer among the first five");
    let choice = choose(&e, seed, &agents, &caps(50)).unwrap();
    // 6 of 11 would be more than 50%.
    assert!(!joins(&e, seed, &choice, &newcomer, &caps(50)));
    assert!(joins(&e, seed, &choice, &newcomer, &caps(60)));
}

// === conflicts ===

fn choice(ids: &[&str]) -> Choice {
    Choice {
        chosen: ids.iter().map(|s| s.to_string()).collect(),
        eligible: ids.len(),
        skipped: vec![],
    }
}

#[test]
fn experiments_conflict_on_the_same_route_of_the_same_agent() {
    let two_routes =
        "[{route: redis, type: latency, attributes: {latency: 5}}, {route: pg, type: down}]";
    let new = spec("new", "{all: true}", two_routes, "");
    let running_a = spec("a", "{all: true}", LATENCY, "");
    let running_b = spec(
        "b",
        "{all: true}",
        "[{route: pg, type: down}, {route: redis, type: down}]",
        "",
    );
    let elsewhere = spec("c", "{all: true}", "[{route: kafka, type: down}]", "");
    let new_choice = choice(&["x", "y", "z"]);
    let (ca, cb, cc) = (
        choice(&["y", "w"]),
        choice(&["z", "x"]),
        choice(&["x", "y", "z"]),
    );
    let running = [
        (&running_a, &ca),
        (&running_b, &cb),
        (&elsewhere, &cc),
        // The new experiment itself, as a caller listing every running one would pass it.
        (&new, &new_choice),
    ];
    let found = conflicts((&new, &new_choice), &running);
    let c = |agent: &str, route: &str, other: &str| Conflict {
        agent: agent.into(),
        route: route.into(),
        other_experiment: other.into(),
    };
    assert_eq!(
        found,
        vec![
            c("y", "redis", "a"),
            c("x", "pg", "b"),
            c("x", "redis", "b"),
            c("z", "pg", "b"),
            c("z", "redis", "b"),
        ]
    );
    assert_eq!(
        found[0].to_string(),
        "route \"redis\" of agent \"y\" already has faults of running experiment \"a\""
    );

    // Disjoint agents, or disjoint routes: no conflict.
    assert!(conflicts((&new, &choice(&["q"])), &running[..2]).is_empty());
    assert!(conflicts((&new, &new_choice), &running[2..]).is_empty());
}

#[test]
fn the_second_experiment_may_allow_the_overlap() {
    let overlapping = spec("new", "{all: true}", LATENCY, "  allowOverlap: true\n");
    let plain = spec("new", "{all: true}", LATENCY, "");
    let running = spec("old", "{all: true}", LATENCY, "");
    let running_allowing = spec("old", "{all: true}", LATENCY, "  allowOverlap: true\n");
    let agents = choice(&["x"]);
    assert!(conflicts((&overlapping, &agents), &[(&running, &agents)]).is_empty());
    // The running experiment's own allowOverlap says nothing about newcomers.
    assert_eq!(
        conflicts((&plain, &agents), &[(&running_allowing, &agents)]).len(),
        1
    );
}
