//! Evaluation: multi-crop, ensembles, and `netloom train` / `netloom eval`
//! on a tiny image folder written to a temporary directory.

mod common;

use common::*;
use netloom::data::ChannelStats;
use netloom::train::eval::{self, EvalOptions};
use netloom::train::trainer::RunEnd;
use std::path::Path;

fn train_and_save(path: &Path, seed: u64) {
    let mut c = config(3, 4);
    c.seed = seed;
    c.save = Some(path.to_path_buf());
    let (_, out) = run(c);
    assert_eq!(out.end, RunEnd::Finished);
}

#[test]
fn multi_crop_and_ensembles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a.st"), dir.path().join("b.st"));
    train_and_save(&a, 5);
    train_and_save(&b, 6);
    let graph = tiny_design(3);
    let ma = eval::load_model(&graph, &a, 16).expect("a loads");
    let mb = eval::load_model(&graph, &b, 16).expect("b loads");
    let stats = ma.meta.stats().expect("stats saved");
    let test = synthetic(30, 3);
    let mut pa = ma.plan;
    let mut pb = mb.plan;
    let single = eval::evaluate(
        std::slice::from_mut(&mut pa),
        &test,
        &stats,
        &EvalOptions::default(),
    );
    assert_eq!(single.images, 30);
    assert!(single.accuracy >= 0.9, "{}", single.accuracy);
    assert_eq!(single.confusion.iter().flatten().sum::<usize>(), 30);

    // Ensemble = the average of the members' probabilities.
    let p_a = eval::predict(&mut pa, &test, &stats, &EvalOptions::default());
    let p_b = eval::predict(&mut pb, &test, &stats, &EvalOptions::default());
    let mut both = vec![pa, pb];
    let ens = eval::evaluate(&mut both, &test, &stats, &EvalOptions::default());
    let avg: Vec<f32> = p_a.iter().zip(&p_b).map(|(x, y)| (x + y) / 2.0).collect();
    let expected = eval::summarise(&avg, &test.labels, &test.class_names);
    assert_eq!(ens.models, 2);
    assert_eq!(ens.accuracy, expected.accuracy);
    assert!((ens.loss - expected.loss).abs() < 1e-6);

    // Multi-crop: ten views averaged; with a full-size crop the five
    // crops are the image itself, so the average is (image + mirror) / 2.
    let mc = eval::evaluate(
        &mut both[..1],
        &test,
        &stats,
        &EvalOptions {
            multi_crop: true,
            crop_fraction: 0.75,
        },
    );
    assert_eq!(mc.views, 10);
    assert_eq!(mc.confusion.iter().flatten().sum::<usize>(), 30);
    let full = eval::predict(
        &mut both[0],
        &test,
        &stats,
        &EvalOptions {
            multi_crop: true,
            crop_fraction: 1.0,
        },
    );
    let mut mirrored = test.clone();
    for i in 0..mirrored.len() {
        netloom::data::augment::mirror(mirrored.image_mut(i), test.shape());
    }
    let p_m = eval::predict(&mut both[0], &mirrored, &stats, &EvalOptions::default());
    for ((f, x), y) in full.iter().zip(&p_a).zip(&p_m) {
        assert!((f - (x + y) / 2.0).abs() < 1e-5, "{f} vs {x},{y}");
    }
    let _ = ChannelStats::identity(3);
}

#[test]
fn cli_train_json_then_eval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    write_png_folder(&data);
    let design = dir.path().join("tiny.json");
    std::fs::write(&design, netloom::graph::file::to_json(&tiny_design(6))).expect("design");
    let w = dir.path().join("w.safetensors");
    let (code, out, err) = netloom(&[
        "train",
        design.to_str().expect("utf8"),
        "--data",
        data.to_str().expect("utf8"),
        "--epochs",
        "3",
        "--batch",
        "8",
        "--lr",
        "0.01",
        "--save",
        w.to_str().expect("utf8"),
        "--json",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 4, "{out}");
    for (i, l) in lines[..3].iter().enumerate() {
        assert_eq!(l["epoch"], i as u64 + 1);
        for k in ["train_loss", "train_acc", "val_loss", "val_acc", "seconds"] {
            assert!(l.get(k).is_some(), "{k} missing in {l}");
        }
    }
    assert!(lines[3]["test_acc"].as_f64().is_some(), "{}", lines[3]);
    assert!(err.contains("1 file skipped"), "{err}");
    assert!(err.contains("changed to 3"), "{err}");

    let (code, out, err) = netloom(&[
        "eval",
        design.to_str().expect("utf8"),
        "--weights",
        w.to_str().expect("utf8"),
        "--data",
        data.to_str().expect("utf8"),
        "--multi-crop",
        "--ensemble",
        w.to_str().expect("utf8"),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("15 test images"), "{out}");
    assert!(out.contains("2 models, 10 views per image"), "{out}");
    assert!(out.contains("true\\pred"), "{out}");
}
