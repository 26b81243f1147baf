//! `netloom export DESIGN --pytorch-project DIR`: the files, the layout
//! table (checked against the state-dict export it was derived from), the
//! refusals; and, where torch is installed, a 2-process `torchrun` training
//! whose weights `netloom eval` reads back with the accuracy PyTorch printed.

use netloom::graph::file;
use netloom::interop::pytorch_project::{TensorLayout, layout_table};
use netloom::interop::{Tensors, pytorch};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "common/python.rs"]
mod python;

const DESIGN: &str = r#"{"format":"netloom-design","version":1,"name":"tiny shapes","nodes":[
 {"name":"image","kind":"input","height":16,"width":16,"channels":3},
 {"name":"conv1","kind":"conv2d","filters":6,"kernel":[3,3],"stride":[1,1],"padding":"same"},
 {"name":"bn1","kind":"batch_norm"},
 {"name":"relu1","kind":"relu"},
 {"name":"pool1","kind":"max_pool2d","kernel":[4,4],"stride":[4,4],"padding":"valid"},
 {"name":"flat","kind":"flatten"},
 {"name":"fc","kind":"dense","units":3},
 {"name":"probs","kind":"softmax"}],
 "edges":[{"from":"image","to":"conv1"},{"from":"conv1","to":"bn1"},{"from":"bn1","to":"relu1"},
 {"from":"relu1","to":"pool1"},{"from":"pool1","to":"flat"},{"from":"flat","to":"fc"},{"from":"fc","to":"probs"}]}"#;

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netloom-pyproj-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn netloom(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netloom"))
        .args(args)
        .output()
        .expect("run netloom")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write_design(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.json");
    std::fs::write(&path, DESIGN).unwrap();
    path
}

/// Deterministic pseudo-random values.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// The table covers every tensor (the state dict refuses missing ones) and
/// inverts the exporter's layouts exactly.
fn check_table(graph: &netloom::graph::Graph, table: &[TensorLayout]) {
    let mut tensors = Tensors::new();
    for (k, l) in table.iter().enumerate() {
        let n = l.netloom_shape.iter().product();
        tensors.insert(
            l.netloom.clone(),
            (l.netloom_shape.clone(), values(n, k as u64 + 1)),
        );
    }
    let dict = pytorch::state_dict(graph, &tensors)
        .unwrap_or_else(|e| panic!("{}: table incomplete: {e}", graph.name));
    for l in table {
        let (dims, torch) = &dict[&l.torch];
        assert_eq!(dims, &l.torch_shape, "{}", l.torch);
        assert_eq!(
            l.to_netloom(torch),
            tensors[&l.netloom].1,
            "{} → {} does not invert the export",
            l.torch,
            l.netloom
        );
    }
    let torch_params = dict
        .keys()
        .filter(|k| !k.ends_with("num_batches_tracked"))
        .count();
    assert_eq!(torch_params, table.len(), "{}", graph.name);
}

#[test]
fn the_project_files_are_written_and_the_table_covers_every_tensor() {
    let dir = scratch("files");
    let design = write_design(&dir);
    let out = dir.join("project");
    let run = netloom(&[
        "export",
        design.to_str().unwrap(),
        "--pytorch-project",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    for f in [
        "model.py",
        "train.py",
        "netloom_io.py",
        "netloom.json",
        "README.md",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let model = std::fs::read_to_string(out.join("model.py")).unwrap();
    for layer in [
        "image", "conv1", "bn1", "relu1", "pool1", "flat", "fc", "probs",
    ] {
        assert!(model.contains(layer), "model.py lacks {layer}:\n{model}");
    }
    assert!(model.contains("self.conv1 = nn.Conv2d(3, 6"));
    assert!(
        model.contains("def predict_proba"),
        "logits forward, softmax outside"
    );
    assert!(model.contains("probs = fc\n"), "{model}");
    assert!(model.contains("def preprocess"));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("netloom.json")).unwrap()).unwrap();
    let mut names: Vec<&str> = manifest["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["netloom"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "bn1.beta",
            "bn1.gamma",
            "bn1.running_mean",
            "bn1.running_var",
            "conv1.bias",
            "conv1.weight",
            "fc.bias",
            "fc.weight"
        ]
    );
    // The dense after the flatten reorders its rows (H·W·C vs C·H·W).
    let fc = manifest["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["netloom"] == "fc.weight")
        .unwrap();
    assert_eq!(fc["permute"], serde_json::json!([1, 0]));
    assert_eq!(fc["rows"].as_array().map(Vec::len), Some(96));
    let graph = file::from_json(DESIGN).unwrap();
    check_table(&graph, &layout_table(&graph).unwrap());
    // The design `train.py` stores with the weights it writes, and its key.
    assert_eq!(manifest["design_key"], "netloom.design");
    let stored = file::from_json(manifest["design_file"].as_str().unwrap()).unwrap();
    assert_eq!(file::to_json(&stored), file::to_json(&graph));

    // A second export into the same, now non-empty, folder is refused.
    let again = netloom(&[
        "export",
        design.to_str().unwrap(),
        "--pytorch-project",
        out.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("not empty"),
        "{}",
        text(&again.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_preset_gets_a_complete_exact_table() {
    let presets = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets");
    let mut checked = 0;
    for entry in std::fs::read_dir(presets).unwrap() {
        let path = entry.unwrap().path();
        let graph = file::load(&path).unwrap();
        let Ok(table) = layout_table(&graph) else {
            continue; // designs that do not export (none today) are covered elsewhere
        };
        // Keep the debug-build test short: the big presets (VGG-16, AlexNet…) are the same layouts.
        let elements: usize = table
            .iter()
            .map(|l| l.netloom_shape.iter().product::<usize>())
            .sum();
        if elements > 3_000_000 {
            continue;
        }
        check_table(&graph, &table);
        checked += 1;
    }
    assert!(checked >= 8, "{checked} presets checked");
}

#[test]
fn unknown_and_broken_designs_are_refused_clearly() {
    let dir = scratch("refuse");
    let out = dir.join("p");
    let run = netloom(&[
        "export",
        dir.join("nope.json").to_str().unwrap(),
        "--pytorch-project",
        out.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    let err = text(&run.stderr);
    assert!(err.contains("nope.json"), "{err}");
    assert!(!out.exists(), "nothing written for a missing design");

    let broken = dir.join("broken.json");
    std::fs::write(&broken, DESIGN.replace("\"units\":3", "\"units\":0")).unwrap();
    let run = netloom(&[
        "export",
        broken.to_str().unwrap(),
        "--pytorch-project",
        out.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    assert!(!out.join("model.py").exists());
    assert!(!text(&run.stderr).trim().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// 3 classes of 16×16 images: a red square, a green bar, a blue cross, at
/// random places on a noisy grey background; 40 of each.
fn shapes_folder(root: &Path) {
    let mut s = 12345u64;
    let mut rnd = move |n: u32| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % n as u64) as u32
    };
    for (k, class) in ["bar", "cross", "square"].iter().enumerate() {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..40 {
            let mut img = image::RgbImage::new(16, 16);
            for p in img.pixels_mut() {
                let g = 90 + rnd(60) as u8;
                *p = image::Rgb([g, g, g]);
            }
            let (x0, y0) = (rnd(9), rnd(9));
            let colour = match k {
                0 => [30, 220, 40],
                1 => [40, 40, 230],
                _ => [230, 30, 30],
            };
            for dy in 0..7 {
                for dx in 0..7 {
                    let on = match k {
                        0 => dy == 3 || dy == 4,
                        1 => dx == 3 || dy == 3,
                        _ => (1..6).contains(&dx) && (1..6).contains(&dy),
                    };
                    if on {
                        img.put_pixel(x0 + dx, y0 + dy, image::Rgb(colour));
                    }
                }
            }
            img.save(dir.join(format!("{i:03}.png"))).unwrap();
        }
    }
}

fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
}

#[test]
fn torchrun_trains_and_netloom_evaluates_the_same_accuracy() {
    let Some(py) = python::or_skip(&["torch", "PIL"]) else {
        return;
    };
    let dir = scratch("torchrun");
    let design = write_design(&dir);
    let data = dir.join("shapes");
    shapes_folder(&data);
    let project = dir.join("project");
    let run = netloom(&[
        "export",
        design.to_str().unwrap(),
        "--pytorch-project",
        project.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let weights = dir.join("trained.safetensors");
    let started = std::time::Instant::now();
    let train = Command::new(&py)
        .args([
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--standalone",
        ])
        .arg(project.join("train.py"))
        .args(["--data", data.to_str().unwrap()])
        .args(["--epochs", "4", "--batch", "16", "--lr", "0.01"])
        .args(["--out", weights.to_str().unwrap()])
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("run torchrun");
    let stdout = text(&train.stdout);
    assert!(
        train.status.success(),
        "train.py failed:\n{stdout}\n{}",
        text(&train.stderr)
    );
    println!("{stdout}(torchrun took {:.1?})", started.elapsed());
    let losses: Vec<f64> = stdout
        .lines()
        .filter(|l| l.starts_with("netloom-project epoch="))
        .filter_map(|l| field(l, "loss"))
        .collect();
    assert_eq!(losses.len(), 4, "{stdout}");
    assert!(
        losses[3] < losses[0],
        "loss did not fall: {losses:?}\n{stdout}"
    );
    let test_line = stdout
        .lines()
        .find(|l| l.starts_with("netloom-project test "))
        .unwrap_or_else(|| panic!("no test line:\n{stdout}"));
    let torch_acc = field(test_line, "accuracy").unwrap();
    let torch_images = field(test_line, "images").unwrap();

    let eval = netloom(&[
        "eval",
        design.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--json",
    ]);
    assert!(eval.status.success(), "{}", text(&eval.stderr));
    // The weights carry the design they were trained as (as a Netloom run's
    // do), so eval takes them without fitting a head to their class count.
    let stored = netloom::train::weights::trained_design(&weights)
        .unwrap()
        .expect("a stored design");
    assert_eq!(
        file::to_json(&stored),
        file::to_json(&file::from_json(DESIGN).unwrap())
    );
    assert!(
        !text(&eval.stderr).contains("stores no design"),
        "{}",
        text(&eval.stderr)
    );
    let e: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    println!(
        "PyTorch test accuracy {torch_acc:.4} on {torch_images} images; netloom eval {} on {}",
        e["accuracy"], e["images"]
    );
    assert_eq!(e["images"].as_f64(), Some(torch_images), "same test split");
    let netloom_acc = e["accuracy"].as_f64().unwrap();
    assert!(
        (netloom_acc - torch_acc).abs() < 1e-4,
        "netloom eval {netloom_acc} vs PyTorch {torch_acc}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
