//! The quick suite runs end to end against sio-nats (real nats-server,
//! gateway and worker processes) and its results hold together. No speed
//! thresholds: those live in the full suite's report, not in tests.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::Value;

#[test]
fn quick_suite_measures_every_scenario() {
    let artifacts = std::env::temp_dir().join(format!("sio-bench-quick-{}", std::process::id()));
    let out = artifacts.join("benchmarks.md");
    std::fs::create_dir_all(&artifacts).unwrap();
    let status = std::process::Command::new("timeout")
        .arg("300")
        .arg(env!("CARGO_BIN_EXE_sio-bench"))
        .args(["suite", "--quick", "--artifacts"])
        .arg(&artifacts)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let rows: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(artifacts.join("results.json")).unwrap())
            .unwrap();
    let metric = |row: &Value, name: &str| -> f64 {
        row["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m[0] == name)
            .and_then(|m| m[1].as_f64())
            .unwrap_or_else(|| panic!("{name} in {row}"))
    };
    for scenario in [
        "idle",
        "burst",
        "sparse",
        "ack",
        "rooms",
        "polling",
        "forwarded",
        "handed_over",
        "balanced",
    ] {
        let of: Vec<&Value> = rows.iter().filter(|r| r["scenario"] == scenario).collect();
        assert!(!of.is_empty(), "no {scenario} results");
        for row in of {
            assert!(row["notes"].as_array().unwrap().is_empty(), "{row}");
            match scenario {
                "idle" => assert_eq!(metric(row, "connected"), 300.0, "{row}"),
                "ack" | "forwarded" => assert!(metric(row, "acks_per_s") > 0.0, "{row}"),
                _ => assert_eq!(metric(row, "dropped"), 0.0, "{row}"),
            }
            if scenario == "balanced" {
                assert_eq!(metric(row, "failed_clients"), 0.0, "{row}");
            }
            if scenario == "rooms" {
                assert_eq!(metric(row, "emits_to_non_members"), 0.0, "{row}");
            }
        }
    }
    // Sessions served from the other gateway: local and elsewhere each.
    for scenario in ["forwarded", "handed_over", "balanced"] {
        assert_eq!(rows.iter().filter(|r| r["scenario"] == scenario).count(), 2);
    }
    // Three gateway counts in the many-gateways scenario.
    assert_eq!(rows.iter().filter(|r| r["scenario"] == "rooms").count(), 3);
    let doc = std::fs::read_to_string(&out).unwrap();
    assert!(doc.contains("### 5. Many gateways"), "{doc}");
    assert!(artifacts.join("burst.svg").exists());
    let _ = std::fs::remove_dir_all(&artifacts);
}
