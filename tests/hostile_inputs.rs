//! Hostile input to every CLI entry point: the real binary, run under an
//! address-space limit (`prlimit --as`), must refuse each case with a
//! non-zero exit and a specific message — never a panic (exit 101) or an
//! allocation abort (134, "memory allocation of … failed").

use netloom::graph::file;
use netloom::interop::onnx;
use netloom::interop::proto::{DimValue, ModelProto, TensorProto};
use netloom::train::weights::{WeightsMeta, to_safetensors};
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The address space the binary may use: enough for its threads and a
/// small design, far below what any refused case would allocate.
const ADDRESS_SPACE: u64 = 3 << 30;

struct Run {
    code: i32,
    out: String,
    err: String,
}

/// Runs `netloom args…` from the crate root under the address-space limit.
fn netloom(args: &[&str]) -> Run {
    let limit = format!("--as={ADDRESS_SPACE}");
    let out = Command::new("prlimit")
        .arg(limit)
        .arg(env!("CARGO_BIN_EXE_netloom"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run netloom under prlimit (util-linux)");
    Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Asserts a clean refusal whose stderr contains `message`.
fn refused(run: &Run, message: &str) {
    assert!(
        !run.err.contains("panicked") && !run.err.contains("memory allocation of"),
        "crashed: {}",
        run.err
    );
    assert!(
        ![0, 101, 134, -1].contains(&run.code),
        "exit {} (expected a refusal): {}{}",
        run.code,
        run.out,
        run.err
    );
    assert!(
        run.err.contains(message),
        "expected `{message}` in: {}",
        run.err
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netloom-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A design file of `nodes` and `edges` (JSON object lines).
fn design(dir: &Path, nodes: &[&str], edges: &[&str]) -> PathBuf {
    let text = format!(
        r#"{{"format":"netloom-design","version":1,"name":"hostile","nodes":[{}],"edges":[{}]}}"#,
        nodes.join(","),
        edges.join(",")
    );
    let path = dir.join("d.json");
    std::fs::write(&path, text).expect("write design");
    path
}

const INPUT_8: &str = r#"{"name":"in","kind":"input","height":8,"width":8,"channels":3}"#;
const GAP: &str = r#"{"name":"gap","kind":"global_avg_pool"}"#;
const FC: &str = r#"{"name":"fc","kind":"dense","units":10}"#;
const SOFTMAX: &str = r#"{"name":"sm","kind":"softmax"}"#;

// --- designs -------------------------------------------------------------------

#[test]
fn an_edge_into_input_500000000_is_refused_by_every_reader() {
    let dir = scratch("edge");
    let d = design(
        &dir,
        &[INPUT_8, r#"{"name":"add","kind":"add"}"#],
        &[r#"{"from":"in","to":"add","input":500000000}"#],
    );
    let other = dir.join("other.onnx");
    for args in [
        vec!["summary", s(&d)],
        vec!["compare", s(&d), "presets/lenet5.json"],
        vec!["export", s(&d), "--onnx", s(&other)],
    ] {
        refused(&netloom(&args), "input 500000000 of `add` cannot be fed");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn u32_max_dimensions_are_an_error_on_the_node_not_a_wrap() {
    let dir = scratch("u32max");
    let d = design(
        &dir,
        &[
            r#"{"name":"in","kind":"input","height":4294967295,"width":4294967295,"channels":3}"#,
            r#"{"name":"flat","kind":"flatten"}"#,
        ],
        &[r#"{"from":"in","to":"flat"}"#],
    );
    let run = netloom(&["summary", s(&d)]);
    assert_eq!(run.code, 1, "{}{}", run.out, run.err);
    assert!(
        run.out
            .contains("in: output 4294967295×4294967295×3 has more values per sample than 64-bit arithmetic can count"),
        "{}",
        run.out
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn designs_too_large_for_memory_are_refused_with_the_estimate() {
    let dir = scratch("big");
    // A conv with 2^31 filters.
    let d = design(
        &dir,
        &[
            INPUT_8,
            r#"{"name":"c","kind":"conv2d","filters":2147483648,"kernel":[3,3],"padding":"same"}"#,
            GAP,
            FC,
            SOFTMAX,
        ],
        &[
            r#"{"from":"in","to":"c"}"#,
            r#"{"from":"c","to":"gap"}"#,
            r#"{"from":"gap","to":"fc"}"#,
            r#"{"from":"fc","to":"sm"}"#,
        ],
    );
    refused(&netloom(&["bench", s(&d), "--steps", "1"]), "needs ~");
    refused(
        &netloom(&["train", s(&d), "--epochs", "1"]),
        "training `hostile` needs ~",
    );
    // A 10^6 × 10^6 input.
    let d = design(
        &dir,
        &[
            r#"{"name":"in","kind":"input","height":1000000,"width":1000000,"channels":1}"#,
            GAP,
            FC,
            SOFTMAX,
        ],
        &[
            r#"{"from":"in","to":"gap"}"#,
            r#"{"from":"gap","to":"fc"}"#,
            r#"{"from":"fc","to":"sm"}"#,
        ],
    );
    refused(&netloom(&["bench", s(&d), "--steps", "1"]), "at batch 32");
    // A Dense layer of 10^12 weights.
    let d = design(
        &dir,
        &[
            r#"{"name":"in","kind":"input","height":1,"width":1,"channels":1000000}"#,
            r#"{"name":"flat","kind":"flatten"}"#,
            r#"{"name":"fc","kind":"dense","units":1000000}"#,
        ],
        &[
            r#"{"from":"in","to":"flat"}"#,
            r#"{"from":"flat","to":"fc"}"#,
        ],
    );
    refused(
        &netloom(&["bench", s(&d), "--steps", "1"]),
        "the parameters alone do not fit",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A budget set far above what the process may have lets the estimate
/// through; the plan's own allocations then refuse the buffer the system
/// will not give, by name, instead of aborting.
#[test]
fn an_allocation_past_the_estimate_is_an_error_naming_the_buffer() {
    let dir = scratch("alloc");
    // 1024×1024×8 per image: at batch 128 one activation is 4.3 GB, more
    // than the 3 GiB address space the binary runs in.
    let d = design(
        &dir,
        &[
            r#"{"name":"in","kind":"input","height":1024,"width":1024,"channels":8}"#,
            r#"{"name":"r","kind":"relu"}"#,
            GAP,
            FC,
            SOFTMAX,
        ],
        &[
            r#"{"from":"in","to":"r"}"#,
            r#"{"from":"r","to":"gap"}"#,
            r#"{"from":"gap","to":"fc"}"#,
            r#"{"from":"fc","to":"sm"}"#,
        ],
    );
    let run = netloom(&[
        "bench",
        s(&d),
        "--batch",
        "128",
        "--steps",
        "1",
        "--memory-limit",
        "1T",
    ]);
    refused(
        &run,
        "out of memory: the system refused the activations of `in` (4.3 GB)",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_huge_batch_is_refused_with_a_batch_that_fits() {
    let run = netloom(&["bench", "--batch", "100000", "--steps", "1"]);
    refused(&run, "needs ~");
    assert!(run.err.contains("at batch 100000;"), "{}", run.err);
    assert!(run.err.contains(" fits"), "{}", run.err);
    let run = netloom(&[
        "bench",
        "--batch",
        "64",
        "--memory-limit",
        "10M",
        "--steps",
        "1",
    ]);
    refused(&run, "--memory-limit is 10 MB");
    refused(
        &netloom(&["bench", "--memory-limit", "lots"]),
        "--memory-limit `lots`",
    );
}

#[test]
fn cli_train_names_the_layer_at_fault() {
    let dir = scratch("fault");
    let d = design(
        &dir,
        &[
            INPUT_8,
            r#"{"name":"big_kernel","kind":"conv2d","filters":4,"kernel":[9,9]}"#,
            GAP,
            FC,
            SOFTMAX,
        ],
        &[
            r#"{"from":"in","to":"big_kernel"}"#,
            r#"{"from":"big_kernel","to":"gap"}"#,
            r#"{"from":"gap","to":"fc"}"#,
            r#"{"from":"fc","to":"sm"}"#,
        ],
    );
    refused(
        &netloom(&["train", s(&d), "--epochs", "1"]),
        "`big_kernel`: kernel height 9 is larger than the padded input height 8",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// --- outputs -------------------------------------------------------------------

#[test]
fn an_output_equal_to_an_input_is_refused_and_the_input_kept() {
    let dir = scratch("same");
    let d = dir.join("d.json");
    std::fs::copy("presets/lenet5.json", &d).unwrap();
    let before = std::fs::read(&d).unwrap();
    refused(
        &netloom(&["export", s(&d), "--onnx", s(&d)]),
        "is also an input (the design); refusing to overwrite it",
    );
    refused(
        &netloom(&["train", s(&d), "--save", s(&d), "--epochs", "1"]),
        "is also an input (the design)",
    );
    let m = dir.join("m.onnx");
    assert_eq!(netloom(&["export", s(&d), "--onnx", s(&m)]).code, 0);
    let onnx_before = std::fs::read(&m).unwrap();
    refused(
        &netloom(&["import", s(&m), "-o", s(&m)]),
        "is also an input (the model)",
    );
    // Through a symlink: the same file by another name.
    #[cfg(unix)]
    {
        let link = dir.join("link.json");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        refused(
            &netloom(&["export", s(&d), "--onnx", s(&link)]),
            "refusing to overwrite",
        );
    }
    assert_eq!(std::fs::read(&d).unwrap(), before);
    assert_eq!(std::fs::read(&m).unwrap(), onnx_before);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unwritable_outputs_are_refused_before_any_work() {
    let dir = scratch("unwritable");
    let nowhere = dir.join("missing-folder").join("w.safetensors");
    let start = std::time::Instant::now();
    refused(
        &netloom(&["train", "presets/lenet5.json", "--checkpoint", s(&nowhere)]),
        "--checkpoint ",
    );
    refused(
        &netloom(&["train", "presets/lenet5.json", "--save", s(&dir)]),
        "is a folder, not a file",
    );
    refused(
        &netloom(&["import", "presets/lenet5.json", "-o", s(&nowhere)]),
        "cannot write in",
    );
    // Refused up front: nothing was loaded or trained.
    assert!(start.elapsed().as_secs() < 20);
    std::fs::remove_dir_all(&dir).unwrap();
}

// --- numbers -------------------------------------------------------------------

#[test]
fn nothing_to_do_and_bad_fractions_are_refused() {
    refused(
        &netloom(&["train", "presets/lenet5.json", "--epochs", "0"]),
        "nothing to do: 0 epochs",
    );
    for bad in ["-1", "NaN", "1", "2"] {
        let flag = format!("--val-fraction={bad}");
        refused(
            &netloom(&["train", "presets/lenet5.json", "--epochs", "1", &flag]),
            "the validation fraction must be at least 0 and below 1",
        );
    }
}

fn weights_file(
    dir: &Path,
    name: &str,
    tensors: &[(&str, Vec<usize>, Vec<f32>)],
    meta: Option<&WeightsMeta>,
) -> PathBuf {
    let list: Vec<(String, Vec<usize>, &[f32])> = tensors
        .iter()
        .map(|(n, s, d)| (n.to_string(), s.clone(), d.as_slice()))
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, to_safetensors(&list, meta).unwrap()).unwrap();
    path
}

#[test]
fn nan_weights_and_zero_std_are_refused_naming_what() {
    let dir = scratch("nan");
    let w = weights_file(
        &dir,
        "nan.safetensors",
        &[("c1.weight", vec![5, 5, 1, 6], vec![f32::NAN; 150])],
        None,
    );
    let expected = "tensor `c1.weight` holds NaN at index 0";
    refused(
        &netloom(&["eval", "presets/lenet5.json", "--weights", s(&w)]),
        expected,
    );
    refused(
        &netloom(&[
            "train",
            "presets/lenet5.json",
            "--init-weights",
            s(&w),
            "--epochs",
            "1",
        ]),
        expected,
    );
    let meta = WeightsMeta {
        mean: vec![0.5],
        std: vec![0.0],
        ..Default::default()
    };
    let w = weights_file(
        &dir,
        "std.safetensors",
        &[("c1.weight", vec![5, 5, 1, 6], vec![0.1; 150])],
        Some(&meta),
    );
    refused(
        &netloom(&["eval", "presets/lenet5.json", "--weights", s(&w)]),
        "the standard deviation of channel 0 is 0",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// --- interop -------------------------------------------------------------------

/// lenet5 as ONNX (without weights), changed by `edit`, written to `dir/m.onnx`.
fn onnx_model(dir: &Path, edit: impl FnOnce(&mut ModelProto)) -> PathBuf {
    let graph = file::load(Path::new("presets/lenet5.json")).unwrap();
    let bytes = onnx::export_bytes(&graph, None).unwrap();
    let mut model = ModelProto::decode(bytes.as_slice()).unwrap();
    edit(&mut model);
    let path = dir.join("m.onnx");
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path
}

fn conv_attr(model: &mut ModelProto, name: &str, ints: Option<Vec<i64>>, int: Option<i64>) {
    let g = model.graph.as_mut().unwrap();
    let conv = g.node.iter_mut().find(|n| n.op_type == "Conv").unwrap();
    conv.attribute.retain(|a| a.name != name);
    conv.attribute
        .push(netloom::interop::proto::AttributeProto {
            name: name.into(),
            r#type: if ints.is_some() { 7 } else { 2 },
            ints: ints.unwrap_or_default(),
            i: int.unwrap_or_default(),
            ..Default::default()
        });
}

/// A change to an exported model.
type Edit = Box<dyn FnOnce(&mut ModelProto)>;

#[test]
fn onnx_import_refuses_absurd_operators_by_name() {
    let dir = scratch("onnx");
    let out = dir.join("d.json");
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|m| conv_attr(m, "strides", Some(vec![0, 0]), None)),
            "has stride 0; it must be between 1",
        ),
        (
            Box::new(|m| conv_attr(m, "group", None, Some(0))),
            "has group 0",
        ),
        (
            Box::new(|m| conv_attr(m, "group", None, Some(-1))),
            "has group -1",
        ),
        (
            Box::new(|m| conv_attr(m, "pads", Some(vec![1 << 40, 0, 0, 0]), None)),
            "has a padding of 1099511627776",
        ),
        (
            Box::new(|m| conv_attr(m, "pads", Some(vec![-1, 0, 0, 0]), None)),
            "expected 4 non-negative values",
        ),
        (
            // Gemm weights of [2^32, 2^32] (a parameter input).
            Box::new(|m| {
                let g = m.graph.as_mut().unwrap();
                let vi = g.input.iter_mut().find(|i| i.name == "c5.weight").unwrap();
                let shape = vi.r#type.as_mut().unwrap().tensor_type.as_mut().unwrap();
                for d in &mut shape.shape.as_mut().unwrap().dim {
                    d.value = Some(DimValue::DimValue(1 << 32));
                }
            }),
            "hold more values than Netloom can represent",
        ),
        (
            // The same as an initializer without data.
            Box::new(|m| {
                let g = m.graph.as_mut().unwrap();
                g.initializer.push(TensorProto {
                    name: "c5.weight".into(),
                    dims: vec![1 << 32, 1 << 32],
                    data_type: 1,
                    ..Default::default()
                });
            }),
            "hold more values than Netloom can represent",
        ),
    ];
    for (edit, message) in cases {
        let m = onnx_model(&dir, edit);
        refused(&netloom(&["import", s(&m), "-o", s(&out)]), message);
        assert!(!out.exists(), "nothing is written for {message}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn export_checks_every_weight_shape_and_the_state_dict_is_complete() {
    let dir = scratch("export");
    // c1's weight transposed (HWIO [5,5,1,6] given as [6,1,5,5]).
    let w = weights_file(
        &dir,
        "t.safetensors",
        &[("c1.weight", vec![6, 1, 5, 5], vec![0.1; 150])],
        None,
    );
    let onnx_out = dir.join("m.onnx");
    refused(
        &netloom(&[
            "export",
            "presets/lenet5.json",
            "--onnx",
            s(&onnx_out),
            "--weights",
            s(&w),
        ]),
        "`c1.weight` has shape [6, 1, 5, 5]",
    );
    let w = weights_file(
        &dir,
        "partial.safetensors",
        &[("c1.weight", vec![5, 5, 1, 6], vec![0.1; 150])],
        None,
    );
    let dict = dir.join("sd.safetensors");
    refused(
        &netloom(&[
            "export",
            "presets/lenet5.json",
            "--pytorch",
            "--weights",
            s(&w),
            "--state-dict",
            s(&dict),
        ]),
        "tensors of the design are not in the weights file",
    );
    assert!(!dict.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

// --- datasets ------------------------------------------------------------------

fn idx(dims: &[u32], data_len: usize) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.resize(b.len() + data_len, 0);
    b
}

#[test]
fn an_idx_file_of_a_million_tiny_images_is_refused_before_it_is_converted() {
    let dir = scratch("idx");
    let n = 1_000_000u32;
    std::fs::write(
        dir.join("train-images-idx3-ubyte"),
        idx(&[n, 1, 1], n as usize),
    )
    .unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), idx(&[n], n as usize)).unwrap();
    refused(
        &netloom(&[
            "train",
            "presets/resnet-mini.json",
            "--data",
            s(&dir),
            "--epochs",
            "1",
        ]),
        "1000000 images of 64×64×3 take 49.2 GB as f32",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_gzipped_idx_that_expands_past_its_header_is_refused() {
    use std::io::Write;
    let dir = scratch("gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // The header says 10 images of 2×2; the stream holds 10 MB.
    gz.write_all(&idx(&[10, 2, 2], 10 << 20)).unwrap();
    std::fs::write(dir.join("train-images-idx3-ubyte.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), idx(&[10], 10)).unwrap();
    refused(
        &netloom(&[
            "train",
            "presets/lenet5.json",
            "--data",
            s(&dir),
            "--epochs",
            "1",
        ]),
        "decompresses to more than the 56 bytes expected",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn png(path: &Path, side: u32, grey: bool) {
    if grey {
        image::GrayImage::from_pixel(side, side, image::Luma([128]))
            .save(path)
            .unwrap();
    } else {
        image::RgbImage::from_pixel(side, side, image::Rgb([10, 200, 30]))
            .save(path)
            .unwrap();
    }
}

#[test]
fn a_single_class_folder_is_refused() {
    let dir = scratch("oneclass");
    std::fs::create_dir_all(dir.join("only")).unwrap();
    png(&dir.join("only/a.png"), 8, false);
    refused(
        &netloom(&[
            "train",
            "presets/lenet5.json",
            "--data",
            s(&dir),
            "--epochs",
            "1",
        ]),
        "only one class folder (`only`); a classifier needs at least 2 classes",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A 6×6 RGB design small enough to train an epoch in a moment.
fn tiny(dir: &Path) -> PathBuf {
    design(
        dir,
        &[
            r#"{"name":"in","kind":"input","height":6,"width":6,"channels":3}"#,
            GAP,
            r#"{"name":"fc","kind":"dense","units":2}"#,
            SOFTMAX,
        ],
        &[
            r#"{"from":"in","to":"gap"}"#,
            r#"{"from":"gap","to":"fc"}"#,
            r#"{"from":"fc","to":"sm"}"#,
        ],
    )
}

#[cfg(unix)]
#[test]
fn folder_loops_are_walked_once_and_reported_and_conversions_announced() {
    use std::os::unix::fs::symlink;
    let dir = scratch("loops");
    let data = dir.join("data");
    for class in ["a", "b", "empty"] {
        std::fs::create_dir_all(data.join(class)).unwrap();
    }
    for i in 0..3 {
        png(&data.join(format!("a/{i}.png")), 4, true);
        png(&data.join(format!("b/{i}.png")), 4, true);
    }
    // One `..` link (back to the dataset) and three `.` links (exponential walks).
    symlink("..", data.join("a/up")).unwrap();
    for k in 0..3 {
        symlink(".", data.join(format!("b/self{k}"))).unwrap();
    }
    let d = tiny(&dir);
    let run = netloom(&[
        "train",
        s(&d),
        "--data",
        s(&data),
        "--epochs",
        "1",
        "--batch",
        "2",
        "--val-fraction",
        "0",
    ]);
    assert!(!run.err.contains("panicked"), "{}", run.err);
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    assert!(
        run.err.contains("(a folder loop); not followed"),
        "{}",
        run.err
    );
    assert!(
        run.err.contains("1 class folder without images: empty"),
        "{}",
        run.err
    );
    assert!(
        run.err.contains(
            "the images are 4×4×1; they are resized to 6×6 and grey is repeated to 3 channels for the design's 6×6×3 input"
        ),
        "{}",
        run.err
    );
    // Each of the 6 images once (a walk through the links would find thousands).
    let started = run
        .err
        .lines()
        .find(|l| l.starts_with("training "))
        .unwrap_or_else(|| panic!("no start line: {}", run.err));
    let counts: Vec<usize> = started
        .split(": ")
        .nth(1)
        .unwrap_or_default()
        .split(" / ")
        .filter_map(|part| part.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(counts.iter().sum::<usize>(), 6, "{started}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// --- saves ---------------------------------------------------------------------

#[test]
fn resuming_past_the_last_epoch_says_there_is_nothing_to_do() {
    let dir = scratch("resume");
    let data = dir.join("data");
    for class in ["a", "b"] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..3 {
            png(&data.join(format!("{class}/{i}.png")), 6, class == "a");
        }
    }
    let d = tiny(&dir);
    let ck = dir.join("ck.safetensors");
    let saved = dir.join("w.safetensors");
    let common = ["--data", s(&data), "--batch", "2", "--val-fraction", "0"];
    let mut args = vec![
        "train",
        s(&d),
        "--epochs",
        "1",
        "--checkpoint",
        s(&ck),
        "--save",
        s(&saved),
    ];
    args.extend(common);
    let run = netloom(&args);
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    assert!(ck.exists() && saved.exists());
    let mut args = vec!["train", s(&d), "--epochs", "1", "--resume", s(&ck)];
    args.extend(common);
    refused(&netloom(&args), "nothing to do: ");
    // No temporary file is left beside the outputs.
    let tmp: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn classes_missing_from_the_training_split_are_announced() {
    let dir = scratch("testonly");
    for (split, class) in [("train", "a"), ("train", "b"), ("test", "a"), ("test", "c")] {
        let folder = dir.join(split).join(class);
        std::fs::create_dir_all(&folder).unwrap();
        png(&folder.join("0.png"), 4, false);
    }
    let opts = netloom::data::LoadOptions::for_input(4, 4, 3);
    let splits = netloom::data::load(&dir, &opts, &mut |_, _| {}).unwrap();
    assert_eq!(splits.class_names(), ["a", "b", "c"]);
    assert!(
        splits.notices.iter().any(|n| n
            == "class `c` appears only outside the training split, so the model cannot learn it"),
        "{:?}",
        splits.notices
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
