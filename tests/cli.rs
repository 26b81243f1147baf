//! The `netloom` binary's headless commands, run as a user would.

mod common;

use common::netloom;

#[test]
fn compare_inception_prints_the_ratio() {
    let (code, out, _) = netloom(&[
        "compare",
        "presets/inception-naive.json",
        "presets/inception-bottleneck.json",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("120,422,400 → 12,443,648 MACs, 9.68× fewer"),
        "{out}"
    );
}

#[test]
fn summary_json_has_the_documented_keys() {
    let (code, out, _) = netloom(&["summary", "presets/resnet50.json", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for key in [
        "name",
        "total_params",
        "trainable_params",
        "non_trainable_params",
        "total_macs",
        "layers",
        "errors",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["total_params"], 25_636_712);
    assert_eq!(v["total_macs"], 3_857_973_248u64);
    let layer = &v["layers"][2];
    for key in ["name", "kind", "output_shape", "params", "macs"] {
        assert!(layer.get(key).is_some(), "layer missing {key}");
    }
    assert_eq!(v["errors"].as_array().unwrap().len(), 0);
}

#[test]
fn compare_json_prints_one_object_per_design() {
    let (code, out, _) = netloom(&[
        "compare",
        "presets/inception-naive.json",
        "presets/inception-bottleneck.json",
        "--json",
        "--flops",
    ]);
    assert_eq!(code, 0);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["total_flops"], 2 * 12_443_648u64);
}

#[test]
fn summary_flops_doubles_the_count() {
    let (_, out, _) = netloom(&["summary", "presets/inception-naive.json", "--flops"]);
    assert!(out.contains("Total FLOPs: 240,844,800"), "{out}");
}

#[test]
fn bad_files_fail_with_a_specific_message() {
    let dir = std::env::temp_dir().join(format!("netloom-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.json");
    std::fs::write(
        &path,
        "{\n  \"format\": \"netloom-design\",\n  \"version\": 1,\n  \"nodes\": [\n",
    )
    .unwrap();
    let (code, _, err) = netloom(&["summary", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("JSON syntax error at line 5"), "{err}");
    let (code, _, err) = netloom(&["summary", "presets/no-such-design.json"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn summary_of_a_design_with_errors_reports_them_and_exits_1() {
    let dir = std::env::temp_dir().join(format!("netloom-cli-err-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mismatch.json");
    std::fs::write(
        &path,
        r#"{"format":"netloom-design","version":1,"name":"m","nodes":[
{"name":"in","kind":"input","height":56,"width":56,"channels":64},
{"name":"main","kind":"conv2d","filters":128,"kernel":[3,3],"stride":[2,2],"padding":"same"},
{"name":"add","kind":"add"}],
"edges":[{"from":"in","to":"main"},{"from":"main","to":"add","input":0},{"from":"in","to":"add","input":1}]}"#,
    )
    .unwrap();
    let (code, out, _) = netloom(&["summary", path.to_str().unwrap(), "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["errors"][0]["node"], "add");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("insert a 1×1 conv, stride 2, 128 filters on the shortcut")
    );
    // The other layers still have shapes.
    assert_eq!(
        v["layers"][1]["output_shape"],
        serde_json::json!([28, 28, 128])
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A design saved after a wire broke one of its groups opens: the group
/// is taken apart, every layer is kept, and stderr says which group and why.
#[test]
fn a_design_with_a_broken_group_opens_with_a_warning() {
    let dir = std::env::temp_dir().join(format!("netloom-cli-group-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken-group.json");
    std::fs::write(&path, common::BROKEN_GROUP_DESIGN).unwrap();
    let (code, out, err) = netloom(&["summary", path.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning:") && err.contains("group `pair` was ungrouped"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["layers"].as_array().unwrap().len(), 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn export_then_import_onnx_keeps_the_costs() {
    let dir = std::env::temp_dir().join(format!("netloom-cli-onnx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let onnx = dir.join("m.onnx");
    let design = dir.join("m.json");
    let (code, _, err) = netloom(&[
        "export",
        "presets/inception-module-bottleneck.json",
        "--onnx",
        onnx.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = netloom(&[
        "import",
        onnx.to_str().unwrap(),
        "-o",
        design.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("163,696 params, 128,049,152 MACs"), "{out}");
    let (code, out, _) = netloom(&["export", "presets/lenet5.json", "--pytorch"]);
    assert_eq!(code, 0);
    assert!(out.contains("nn.Module"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn weights_survive_onnx_export_and_import() {
    use netloom::graph::file;
    use netloom::infer::analyze;
    use netloom::train::{Plan, weights};
    let dir = std::env::temp_dir().join(format!("netloom-cli-w-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let design = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/lenet5.json");
    let graph = file::load(&design).unwrap();
    let plan = Plan::compile(&graph, &analyze(&graph), 1, 9).unwrap();
    let original = dir.join("w.safetensors");
    weights::save(&original, &plan.params, &Default::default()).unwrap();
    let onnx = dir.join("m.onnx");
    let (code, _, err) = netloom(&[
        "export",
        design.to_str().unwrap(),
        "--onnx",
        onnx.to_str().unwrap(),
        "--weights",
        original.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let back = dir.join("back.safetensors");
    let (code, _, err) = netloom(&[
        "import",
        onnx.to_str().unwrap(),
        "-o",
        dir.join("m.json").to_str().unwrap(),
        "--weights",
        back.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let back = weights::read(&back).unwrap();
    let conv = plan.param("c1.weight").unwrap();
    let (shape, data) = back.get("c1.weight").expect("c1.weight imported");
    assert_eq!(shape, conv.shape.as_slice());
    assert_eq!(data, conv.data.as_slice());
    let fc = plan.param("c5.weight").unwrap();
    assert_eq!(back.get("c5.weight").unwrap().1, fc.data.as_slice());
    // The PyTorch state dict: conv weights in OIHW.
    let dict = dir.join("state.safetensors");
    let (code, source, err) = netloom(&[
        "export",
        design.to_str().unwrap(),
        "--pytorch",
        "--weights",
        original.to_str().unwrap(),
        "--state-dict",
        dict.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(source.contains("nn.Module"));
    let dict = weights::read(&dict).unwrap();
    let (shape, _) = dict
        .tensors
        .iter()
        .find(|(n, _, _)| n.ends_with("weight") && n.contains("c1"))
        .map(|(_, s, d)| (s.clone(), d.clone()))
        .expect("c1 weight in the state dict");
    assert_eq!(shape, vec![6, 1, 5, 5]);
    std::fs::remove_dir_all(&dir).unwrap();
}
