//! `faultline demo`, the README's main command, run to its end as the built binary: an
//! embedded controller, the sample API service, an agent and traffic, all in the one process
//! on loopback. The game day must run as designed: the ramp's error-rate guard trips, the
//! faults are withdrawn, the service recovers with a measured recovery time, and the HTML
//! report shows it.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

#[test]
fn the_demo_game_day_trips_a_guard_and_measures_the_recovery() {
    let dir = std::env::temp_dir().join(format!(
        "faultline-cli-demo-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let report = dir.join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["demo", "--report", report.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .output()
        .expect("run faultline demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // The verdict names the guard that stopped the outage and the measured recovery.
    let verdict = stdout
        .lines()
        .find(|l| l.starts_with("experiment/api-outage-gameday "))
        .unwrap_or_else(|| panic!("no verdict line:\n{stdout}"));
    assert!(
        verdict.contains("aborted by guard api-errors")
            && verdict.contains("recovered ")
            && verdict.contains("; breaking point: "),
        "{verdict}"
    );
    // The timeline printed as it happened: phases, the trip, the withdrawal.
    assert!(stderr.contains("tripped"), "{stderr}");
    assert!(stderr.contains("faults withdrawn"), "{stderr}");
    let html = std::fs::read_to_string(&report).expect("the report is written");
    assert!(html.contains("<svg"), "a chart per guard");
    assert!(html.contains("api-errors"));
    assert!(!html.contains("<script src") && !html.contains("href=\"http"));
    let _ = std::fs::remove_dir_all(&dir);
}
