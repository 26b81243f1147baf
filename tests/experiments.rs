//! `netloom lr-find` and `netloom sweep` on a tiny image folder: the JSON
//! scripts rely on, the user's weights left untouched, MACs that follow the
//! swept width, and specific refusals.

mod common;

use common::*;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

/// A tiny design and image folder in `dir`.
fn setup(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = dir.join("data");
    write_png_folder(&data);
    let design = dir.join("tiny.json");
    std::fs::write(&design, netloom::graph::file::to_json(&tiny_design(3))).expect("design");
    (design, data)
}

#[test]
fn lr_find_prints_its_curve_and_leaves_the_weights_it_starts_from_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (design, data) = setup(dir.path());
    let w = dir.path().join("w.safetensors");
    let (code, out, err) = netloom(&[
        "train",
        s(&design),
        "--data",
        s(&data),
        "--epochs",
        "1",
        "--batch",
        "8",
        "--save",
        s(&w),
        "--json",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let before = std::fs::read(&w).expect("weights");
    let modified = std::fs::metadata(&w)
        .and_then(|m| m.modified())
        .expect("mtime");

    let (code, out, err) = netloom(&[
        "lr-find",
        s(&design),
        "--data",
        s(&data),
        "--batch",
        "8",
        "--batches",
        "20",
        "--start-lr",
        "1e-5",
        "--end-lr",
        "10",
        "--init-weights",
        s(&w),
        "--json",
    ]);
    assert!(code == 0 || code == 1, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    let curve = v["curve"].as_array().expect("curve");
    assert!(curve.len() >= 5 && curve.len() <= 20, "{v}");
    let lrs: Vec<f64> = curve.iter().map(|p| p[0].as_f64().expect("lr")).collect();
    assert!(
        (lrs[0] / 1e-5 - 1.0).abs() < 1e-3,
        "starts at the start rate: {lrs:?}"
    );
    assert!(
        lrs.windows(2).all(|w| w[1] > w[0] * 1.5),
        "rises exponentially: {lrs:?}"
    );
    assert!(
        curve
            .iter()
            .all(|p| p[1].as_f64().is_some_and(f64::is_finite))
    );
    if let Some(lr) = v["suggested_lr"].as_f64() {
        assert!(
            lr >= lrs[0] && lr <= lrs[lrs.len() - 1],
            "{lr} outside the curve"
        );
    } else {
        assert_eq!(code, 1, "no suggestion exits 1");
    }
    assert_eq!(
        std::fs::read(&w).expect("weights"),
        before,
        "weights bit-identical"
    );
    assert_eq!(
        std::fs::metadata(&w).and_then(|m| m.modified()).ok(),
        Some(modified)
    );
}

#[test]
fn a_width_sweep_prints_one_object_per_run_with_macs_growing_with_the_width() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (design, data) = setup(dir.path());
    let (code, out, err) = netloom(&[
        "sweep",
        s(&design),
        "--set",
        "c2.filters=2..8*2",
        "--epochs",
        "1",
        "--data",
        s(&data),
        "--batch",
        "8",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 4, "three runs and a summary: {out}");
    let runs = &lines[..3];
    for (run, width) in runs.iter().zip([2.0, 4.0, 8.0]) {
        assert_eq!(run["value"], width);
        for k in [
            "macs",
            "params",
            "ms_per_step",
            "val_acc",
            "test_acc",
            "pareto",
        ] {
            assert!(run.get(k).is_some(), "{k} missing in {run}");
        }
        assert!(
            run["ms_per_step"].as_f64().is_some_and(|t| t > 0.0),
            "{run}"
        );
    }
    // c2 on 8×8: 64 · 9 · 4 MACs per filter, and the Dense reads one input per filter.
    let macs: Vec<u64> = runs
        .iter()
        .map(|r| r["macs"].as_u64().expect("macs"))
        .collect();
    assert_eq!(macs[1] - macs[0], 2 * (64 * 9 * 4 + 3));
    assert_eq!(macs[2] - macs[1], 4 * (64 * 9 * 4 + 3));
    assert_eq!(lines[3]["summary"]["runs"], 3);
    assert!(
        !lines[3]["summary"]["pareto_front"]
            .as_array()
            .expect("front")
            .is_empty()
    );
}

#[test]
fn sweeps_of_unknown_layers_or_params_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (design, data) = setup(dir.path());
    let (code, _, err) = netloom(&[
        "sweep",
        s(&design),
        "--set",
        "c9.filters=2,4",
        "--data",
        s(&data),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("no layer `c9`"), "{err}");
    let (code, _, err) = netloom(&[
        "sweep",
        s(&design),
        "--set",
        "c2.units=2,4",
        "--data",
        s(&data),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("no numeric parameter `units`") && err.contains("filters"),
        "{err}"
    );
    let (code, _, err) = netloom(&[
        "sweep",
        s(&design),
        "--set",
        "c2.filters=0,4",
        "--data",
        s(&data),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("at least 1"), "{err}");
}

/// The target on the shipped design and data: Adam on resnet-mini
/// with the built-in hand-digits set. 40 batches instead of 100 keep the
/// test near 10 CPU-seconds; the rate still spans 1e-6 to 1.
#[test]
fn lr_find_on_resnet_mini_suggests_a_rate_between_1e_4_and_1e_2() {
    let design = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/resnet-mini.json");
    let (code, out, err) = netloom(&["lr-find", s(&design), "--batches", "40", "--json"]);
    assert!(code == 0 || code == 1, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    let lr = v["suggested_lr"].as_f64().expect("a suggested rate");
    assert!((1e-4..=1e-2).contains(&lr), "suggested {lr:e}: {v}");
}
