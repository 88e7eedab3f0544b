//! `profiler calibrate` held-out errors, `profiler devices [--stale DAYS]` and the price
//! kinds of the catalog, through the real binary (no inference).

mod common;

use serde_json::Value;

fn calibrate_json(args: &[&str]) -> Value {
    let mut all = vec!["calibrate", "--format", "json"];
    all.extend_from_slice(args);
    let out = common::run_ok(&all);
    serde_json::from_str::<Value>(&out).unwrap()["calibration"].clone()
}

/// inf2's points come from two published tables (latency- and throughput-optimised): the
/// leave-one-source-out error is computed, beside the fit and leave-one-model-out errors,
/// and the twelve runs published in both tables are projected once per table.
#[test]
fn calibrate_reports_fit_and_both_held_out_errors() {
    let c = calibrate_json(&["--device", "inf2-profile"]);
    let fit_points = c["after"]["points"].as_u64().unwrap();
    assert_eq!(fit_points, 42);
    let loso = &c["leave_one_source_out"];
    assert_eq!(loso["groups"], 2, "{loso}");
    assert!(loso["reason"].is_null(), "{loso}");
    assert_eq!(loso["error"]["points"].as_u64().unwrap(), fit_points + 12);
    let lomo = &c["leave_one_model_out"];
    assert_eq!(lomo["groups"], 7, "{lomo}");
    assert_eq!(lomo["error"]["points"].as_u64().unwrap(), fit_points);
    for h in [loso, lomo] {
        for k in ["ttft", "tpot"] {
            let v = h["error"][k].as_f64().unwrap();
            assert!(v.is_finite() && v > 0.0, "{h}");
        }
    }
    let table = common::run_ok(&["calibrate", "--device", "inf2-profile"]);
    for want in [
        "Fit error (MAPE on the 42 points fitted)",
        "Leave-one-source-out",
        "(54 projections, 2 sources)",
        "Leave-one-model-out",
        "(42 projections, 7 models)",
    ] {
        assert!(table.contains(want), "{want} missing from:\n{table}");
    }
}

/// Points from a single source leave nothing to hold out: the error is `null` with the
/// reason, in JSON and in the table, never a number.
#[test]
fn a_single_source_has_no_leave_one_source_out_error() {
    let shipped = std::fs::read_to_string(
        common::home().join("profiles/calibration/neuron_published_points.csv"),
    )
    .unwrap();
    let mut lines = shipped.lines().filter(|l| !l.starts_with('#'));
    let header = lines.next().unwrap();
    let one: Vec<&str> = lines
        .filter(|l| l.contains("trn1/latency_data_decoder.csv"))
        .collect();
    assert!(one.len() >= 6, "{}", one.len());
    let dir = common::tempdir();
    let path = dir.path().join("one-source.csv");
    std::fs::write(&path, format!("{header}\n{}\n", one.join("\n"))).unwrap();
    let p = path.to_str().unwrap();
    let c = calibrate_json(&["--device", "trn1-profile", "--points", p]);
    let loso = &c["leave_one_source_out"];
    assert!(loso["error"].is_null(), "{loso}");
    assert_eq!(loso["groups"], 1);
    let why = loso["reason"].as_str().unwrap();
    assert!(
        why.starts_with(&format!(
            "all {} point(s) come from one source (",
            one.len()
        )),
        "{why}"
    );
    let table = common::run_ok(&["calibrate", "--device", "trn1-profile", "--points", p]);
    assert!(
        table.contains("Leave-one-source-out (each source's points projected by a fit on the other sources): not computed: all"),
        "{table}"
    );
}

#[test]
fn devices_show_fit_and_held_out_errors_and_the_new_profiles() {
    let d = common::run_ok(&["devices"]);
    for p in ["trn3-profile", "b200-profile"] {
        assert_eq!(d.lines().filter(|l| l.contains(p)).count(), 1, "{p}:\n{d}");
    }
    for p in ["inf2-profile", "trn1-profile"] {
        let line = d.lines().find(|l| l.starts_with(p)).unwrap();
        for want in [
            "fitted; MAPE fit TTFT",
            "leave-one-source-out TTFT",
            "leave-one-model-out TTFT",
        ] {
            assert!(line.contains(want), "{want} missing from {line}");
        }
    }
    let trn2 = d.lines().find(|l| l.starts_with("trn2-profile")).unwrap();
    for i in ["trn2.3xlarge", "trn2.48xlarge", "trn2u.48xlarge"] {
        assert!(trn2.contains(i), "{trn2}");
    }
}

/// Every listed figure is older than asked, its age is today minus its date, assumptions
/// are never listed, and a figure from 2024 is always among those older than 180 days.
#[test]
fn devices_stale_lists_old_figures_only() {
    let out = common::run_ok(&["devices", "--stale", "180"]);
    let mut lines = out.lines();
    let head = lines.next().unwrap();
    assert!(head.contains("dated more than 180 days before"), "{head}");
    let today = head
        .split("before ")
        .nth(1)
        .and_then(|r| r.get(..10))
        .unwrap()
        .to_string();
    let day = |s: &str| -> i64 {
        let p: Vec<i64> = s.split('-').map(|x| x.parse().unwrap()).collect();
        let (y, m, d) = (p[0], p[1], *p.get(2).unwrap_or(&1));
        // Days from civil (H. Hinnant), independent of the binary's own code.
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
        era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy
    };
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert!(!rows.is_empty());
    for r in &rows {
        let (date, age): (&str, i64) = (r[2], r[3].parse().unwrap());
        assert!(age > 180, "{r:?}");
        assert_eq!(age, day(&today) - day(date), "{r:?}");
    }
    // inf2's fitted parameters rest on the 2024-04-30 Neuron tables.
    assert!(
        rows.iter().any(|r| r[0] == "inf2-profile"
            && r[1] == "latency.step_overhead_ms"
            && r[2] == "2024-04-30"),
        "{out}"
    );
    // An assumption has no date and is never listed.
    assert!(!rows
        .iter()
        .any(|r| r[0] == "inf2-profile" && r[1] == "runtime.usable_memory_fraction"));
    // Prices are named by instance.
    assert!(
        rows.iter().all(|r| !r[1].starts_with("instances[0")),
        "{out}"
    );
    let none = common::run_ok(&["devices", "--stale", "1000000"]);
    assert!(
        none.starts_with("No figure is dated more than 1000000 days"),
        "{none}"
    );
}

fn project_trn2(price: &str) -> Value {
    let out = common::run_ok(&[
        "project",
        "--model",
        "llama-3.1-8b",
        "--device",
        "trn2-profile",
        "--input-len",
        "128",
        "--output-len",
        "128",
        "--price",
        price,
        "--format",
        "json",
    ]);
    serde_json::from_str(&out).unwrap()
}

/// Trainium2 has Capacity Block rates only: asking for On-Demand gives no cost (never a
/// Capacity Block rate under another name), asking for capacity-block gives the rate.
#[test]
fn trainium2_is_priced_only_as_a_capacity_block() {
    let row = |v: &Value, inst: &str| -> Value {
        v["projections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["instance"] == inst)
            .unwrap_or_else(|| panic!("{inst} missing from {v}"))
            .clone()
    };
    let od = project_trn2("on-demand");
    let cb = project_trn2("capacity-block");
    for inst in ["trn2.3xlarge", "trn2.48xlarge", "trn2u.48xlarge"] {
        let r = row(&od, inst);
        assert!(r["cost_usd_per_million_tokens"].is_null(), "{r}");
        assert!(r["price_usd_per_hour"].is_null(), "{r}");
    }
    let small = row(&cb, "trn2.3xlarge");
    assert_eq!(small["tp"], 4);
    assert_eq!(small["price_kind"], "capacity-block");
    assert_eq!(small["price_usd_per_hour"], 2.235);
    assert_eq!(row(&cb, "trn2.48xlarge")["price_usd_per_hour"], 35.7608);
    assert!(row(&cb, "trn2u.48xlarge")["price_usd_per_hour"].is_null());
    assert!(small["cost_usd_per_million_tokens"].as_f64().unwrap() > 0.0);
}
