//! Weights files: safetensors round trip, load reports, checkpoint and resume,
//! and the design every saved file carries.

mod common;

use common::*;
use netloom::infer::analyze;
use netloom::train::trainer::RunEnd;
use netloom::train::{Plan, weights};

#[test]
fn saved_weights_load_back_bit_identical_with_metadata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tiny.safetensors");
    let mut c = config(3, 2);
    c.save = Some(path.clone());
    let (_, out) = run(c);
    assert_eq!(out.end, RunEnd::Finished);
    let graph = tiny_design(3);
    let mut plan = Plan::compile(&graph, &analyze(&graph), 4, 99).expect("compiles");
    let (report, meta) = weights::load_into(&path, &mut plan.params).expect("loads");
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.matched.len(), plan.params.len());
    for (a, b) in plan.params.iter().zip(&out.params) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.data, b.data, "{}", a.name);
    }
    assert!(report.unused.is_empty(), "{report}");
    let meta = meta.expect("metadata");
    assert_eq!(meta.classes, vec!["a", "b", "c"]);
    assert_eq!(meta.mean.len(), 3);
    assert!(meta.precise_bn);
    // The moving-average statistics precise BN replaced travel as `ema.*`.
    assert_eq!(out.ema_stats.len(), 4);
    let mut model = netloom::train::eval::load_model(&graph, &path, 4).expect("model");
    assert!(model.use_ema_stats());
    for (name, data) in &out.ema_stats {
        assert_eq!(&model.plan.param(name).expect("stat").data, data, "{name}");
    }
}

#[test]
fn loading_reports_matched_missing_and_shape_mismatches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("six.safetensors");
    // A 6-class model (its own dataset would have 6 classes; save its fresh init).
    let graph6 = tiny_design(6);
    let plan6 = Plan::compile(&graph6, &analyze(&graph6), 2, 1).expect("compiles");
    weights::save(&path, &plan6.params, &Default::default()).expect("saves");
    let mut c = config(6, 1); // resized to 3 classes
    c.init_weights = Some(path);
    let (events, out) = run(c);
    assert_eq!(out.end, RunEnd::Finished);
    let notes = notices(&events);
    let report = notes
        .iter()
        .find(|n| n.starts_with("initial weights"))
        .expect("a load report");
    assert!(report.contains("12 tensors matched"), "{report}");
    assert!(
        report.contains("fc.weight (file [6, 6], design [6, 3])"),
        "{report}"
    );
    assert!(report.contains("fc.bias"), "{report}");
}

#[test]
fn resuming_a_checkpoint_continues_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ckpt = dir.path().join("ckpt.safetensors");
    let mut straight = config(3, 3);
    straight.precise_bn = false;
    let (_, full) = run(straight);

    let mut first = config(3, 2);
    first.precise_bn = false;
    first.checkpoint = Some(ckpt.clone());
    let (_, _) = run(first);
    let mut rest = config(3, 3);
    rest.precise_bn = false;
    rest.resume = Some(ckpt);
    let (events, resumed) = run(rest);
    assert_eq!(resumed.end, RunEnd::Finished);
    assert_eq!(batch_losses(&events).len(), 6, "only epoch 3 runs");
    for (a, b) in full.params.iter().zip(&resumed.params) {
        assert_eq!(a.data, b.data, "{}", a.name);
    }
}

/// The units of the design's Dense layer `fc`.
fn fc_units(graph: &netloom::graph::Graph) -> Option<u32> {
    match graph.node(graph.find("fc")?).map(|n| &n.kind) {
        Some(netloom::graph::LayerKind::Dense { units, .. }) => Some(*units),
        _ => None,
    }
}

/// A checkpoint, and weights the trainer could not save and the app saves
/// later, store the design as trained (the 5-unit head resized to the 3
/// classes), as the final save does: the 5-unit design file takes them.
#[test]
fn checkpoints_and_unsaved_weights_keep_the_design_as_trained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ckpt = dir.path().join("ckpt.safetensors");
    let mut c = config(5, 1);
    c.checkpoint = Some(ckpt.clone());
    // A folder in the file's place: the final save fails, the weights are kept.
    let blocked = dir.path().join("w.safetensors");
    std::fs::create_dir_all(&blocked).expect("folder");
    c.save = Some(blocked);
    c.keep_unsaved = true;
    let (events, out) = run(c);
    assert_eq!(out.end, RunEnd::Finished);
    assert_eq!(fc_units(&out.graph), Some(3));
    let unsaved = events
        .iter()
        .find_map(|e| match e {
            netloom::train::trainer::Event::SaveFailed { weights, .. } => Some(weights.clone()),
            _ => None,
        })
        .expect("the final save fails");
    let later = dir.path().join("later.safetensors");
    unsaved.save(&later).expect("saved later");
    for path in [&ckpt, &later] {
        let stored = weights::trained_design(path)
            .expect("readable")
            .unwrap_or_else(|| panic!("{} stores no design", path.display()));
        assert_eq!(fc_units(&stored), Some(3), "{}", path.display());
        let fitted = weights::design_for(&tiny_design(5), path).expect("takes the design file");
        assert_eq!(fc_units(&fitted.graph), Some(3));
        let notice = fitted.notice.unwrap_or_default();
        assert!(notice.contains("using the design"), "{notice}");
    }
}

/// A design file with one layer's filters changed (a design other than the
/// one a run trained).
fn with_stem_filters(design: &str, filters: u32) -> String {
    design.replacen(
        r#""name":"stem","kind":"conv2d","filters":32"#,
        &format!(r#""name":"stem","kind":"conv2d","filters":{filters}"#),
        1,
    )
}

/// `netloom train --save` on a dataset of 3 classes resizes resnet-mini's
/// 6-unit head; every consumer that takes the design file and the run's
/// weights (ONNX, PyTorch code and state dict, PyTorch project, eval) works
/// from them, saying it uses the design as trained, and a design that
/// differs otherwise is refused by name.
#[test]
fn a_runs_output_exports_and_evaluates_with_the_design_file_it_started_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    write_png_folder(&data);
    let data = data.to_str().expect("utf-8 path");
    let weights = dir.path().join("w.safetensors");
    let w = weights.to_str().expect("utf-8 path");
    let design = "presets/resnet-mini.json";
    let (code, out, err) = netloom(&[
        "train", design, "--data", data, "--epochs", "1", "--batch", "16", "--save", w, "--json",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let stored = weights::trained_design(&weights)
        .expect("readable")
        .expect("the run stores its design");
    let fc = stored.find("fc").expect("fc");
    assert!(
        matches!(
            stored.node(fc).map(|n| &n.kind),
            Some(netloom::graph::LayerKind::Dense { units: 3, .. })
        ),
        "the stored design has the resized head"
    );

    let onnx = dir.path().join("m.onnx");
    let (code, _, err) = netloom(&[
        "export",
        design,
        "--onnx",
        onnx.to_str().unwrap(),
        "--weights",
        w,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("using the design") && err.contains("changed to 3"),
        "{err}"
    );
    let imported = netloom::interop::onnx::import(&onnx).expect("the export imports");
    let (shape, _) = &imported.weights["fc.bias"];
    assert_eq!(shape, &vec![3]);
    // The run's class names and normalisation travel in the model's metadata.
    use prost::Message;
    let model = netloom::interop::proto::ModelProto::decode(
        &std::fs::read(&onnx).expect("read the model")[..],
    )
    .expect("decodes");
    let prop = |key: &str| {
        model
            .metadata_props
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.clone())
    };
    assert_eq!(prop("netloom.classes").as_deref(), Some(r#"["a","b","c"]"#));
    let mean: Vec<f32> = serde_json::from_str(&prop("netloom.mean").expect("mean")).expect("json");
    assert_eq!(mean.len(), 3);

    let sd = dir.path().join("sd.safetensors");
    let (code, module, err) = netloom(&[
        "export",
        design,
        "--pytorch",
        "--weights",
        w,
        "--state-dict",
        sd.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(module.contains("self.fc = nn.Linear(64, 3)"), "{module}");
    assert!(module.contains(r#"CLASSES = ["a", "b", "c"]"#), "{module}");
    assert!(module.contains("def predict_proba"), "{module}");
    assert!(
        module.contains("--state-dict state_dict.safetensors"),
        "{module}"
    );
    let dict = weights::read(&sd).expect("state dict");
    assert_eq!(dict.get("fc.bias").map(|(s, _)| s.to_vec()), Some(vec![3]));
    assert_eq!(
        dict.meta.map(|m| m.classes),
        Some(vec!["a".to_string(), "b".into(), "c".into()])
    );

    let project = dir.path().join("project");
    let (code, _, err) = netloom(&[
        "export",
        design,
        "--pytorch-project",
        project.to_str().unwrap(),
        "--weights",
        w,
    ]);
    assert_eq!(code, 0, "{err}");
    let model = std::fs::read_to_string(project.join("model.py")).expect("model.py");
    assert!(model.contains("nn.Linear(64, 3)"), "{model}");

    let (code, out, err) = netloom(&["eval", design, "--weights", w, "--data", data, "--json"]);
    assert_eq!(code, 0, "{err}");
    let e: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(e["images"], 15, "{out}");
    assert!((0.0..=1.0).contains(&e["accuracy"].as_f64().expect("accuracy")));

    // Another design (the stem's filters changed) is refused, not guessed.
    let other = dir.path().join("other.json");
    let text =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(design))
            .expect("preset");
    std::fs::write(&other, with_stem_filters(&text, 16)).expect("write");
    let other = other.to_str().unwrap();
    let onnx2 = dir.path().join("m2.onnx");
    let (code, _, err) = netloom(&[
        "export",
        other,
        "--onnx",
        onnx2.to_str().unwrap(),
        "--weights",
        w,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("was trained as a different design") && err.contains("`stem`"),
        "{err}"
    );
    assert!(!onnx2.exists());
    let (code, _, err) = netloom(&["eval", other, "--weights", w, "--data", data]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("was trained as a different design"), "{err}");
}
