//! The README's main job, `tandem demo`, run as a user runs it (smaller): it must end by
//! saying that both clusters hold the same documents, and exit 0.

use std::process::Command;

#[test]
fn the_demo_fails_over_and_back_and_both_sides_agree() {
    let output = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args([
            "demo",
            "--initial-docs",
            "300",
            "--streamed-docs",
            "400",
            "--docs-per-second",
            "2000",
        ])
        .output()
        .expect("run tandem demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tandem demo failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    for expected in [
        "cluster-b PUT /server-metrics-follower/_ccr/follow",
        "cluster-b holds the leader's 700 documents",
        "cluster-b POST /server-metrics-follower/_ccr/promote",
        "cluster-a POST /server-metrics/_ccr/failback",
        "never reached cluster-b",
        "cluster-b POST /_bulk (the divergent operations)",
        "both clusters hold the same 1400 documents",
    ] {
        assert!(
            stdout.contains(expected),
            "missing [{expected}] in\n{stdout}"
        );
    }
}
