//! ONNX interop: every preset survives export → import with the same design
//! and costs; small hand-built models import; bad files give clear errors.

use netloom::graph::{Graph, LayerKind, Padding, blocks};
use netloom::infer::{Conventions, analyze};
use netloom::interop::onnx;
use std::collections::BTreeSet;

#[path = "common/python.rs"]
mod python;

fn totals(g: &Graph) -> (u64, u64) {
    let a = analyze(g);
    assert!(a.is_valid(), "{}: {:?}", g.name, a.errors());
    let t = a.totals(&Conventions::default());
    (t.total_params, t.macs)
}

/// Kinds with padding normalised away (compared separately by resolved window).
fn normalised(kind: &LayerKind) -> LayerKind {
    let mut k = kind.clone();
    match &mut k {
        LayerKind::Conv2d { padding, .. } => *padding = Padding::Valid,
        LayerKind::MaxPool2d {
            padding, ceil_mode, ..
        }
        | LayerKind::AvgPool2d {
            padding, ceil_mode, ..
        } => {
            *padding = Padding::Valid;
            *ceil_mode = false;
        }
        _ => {}
    }
    k
}

fn edges_by_name(g: &Graph) -> BTreeSet<(String, String, usize)> {
    g.edges()
        .iter()
        .map(|e| (g.name_of(e.from).into(), g.name_of(e.to).into(), e.input))
        .collect()
}

/// Same layers (names, kinds, windows, f32-rounded float params) and wires.
fn assert_same_design(original: &Graph, back: &Graph) {
    let (a, b) = (analyze(original), analyze(back));
    assert_eq!(original.len(), back.len(), "{}: node count", original.name);
    for (id, node) in original.nodes() {
        let other = back
            .find(&node.name)
            .unwrap_or_else(|| panic!("{}: `{}` missing after import", original.name, node.name));
        let on = &back.node(other).unwrap().kind;
        let round = |k: &LayerKind| -> LayerKind {
            let mut k = normalised(k);
            match &mut k {
                LayerKind::BatchNorm { epsilon, momentum } => {
                    *epsilon = *epsilon as f32 as f64;
                    *momentum = *momentum as f32 as f64;
                }
                LayerKind::LeakyRelu { alpha } => *alpha = *alpha as f32 as f64,
                LayerKind::Dropout { rate } => *rate = *rate as f32 as f64,
                _ => {}
            }
            k
        };
        assert_eq!(
            round(&node.kind),
            round(on),
            "{}: `{}`",
            original.name,
            node.name
        );
        assert_eq!(
            a.node(id).unwrap().window,
            b.node(other).unwrap().window,
            "{}: window of `{}`",
            original.name,
            node.name
        );
        // `same` padding survives (through the doc-string hint).
        if let (
            LayerKind::Conv2d { padding: p, .. } | LayerKind::MaxPool2d { padding: p, .. },
            LayerKind::Conv2d { padding: q, .. } | LayerKind::MaxPool2d { padding: q, .. },
        ) = (&node.kind, on)
            && *p == Padding::Same
        {
            assert_eq!(*q, Padding::Same, "{}: `{}`", original.name, node.name);
        }
    }
    assert_eq!(
        edges_by_name(original),
        edges_by_name(back),
        "{}: wires",
        original.name
    );
}

#[test]
fn every_preset_round_trips_with_identical_params_and_macs() {
    let dir = std::env::temp_dir().join(format!("netloom-onnx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for preset in blocks::presets() {
        let g = (preset.build)();
        let path = dir.join(format!("{}.onnx", preset.stem));
        onnx::export(&g, None, &path).unwrap_or_else(|e| panic!("{}: {e}", preset.stem));
        let imported = onnx::import(&path).unwrap_or_else(|e| panic!("{}: {e}", preset.stem));
        assert!(
            imported.unsupported.is_empty(),
            "{}: {:?}",
            preset.stem,
            imported.unsupported
        );
        assert!(
            imported.warnings.is_empty(),
            "{}: {:?}",
            preset.stem,
            imported.warnings
        );
        assert_eq!(totals(&g), totals(&imported.graph), "{}", preset.stem);
        assert_eq!(imported.graph.name, g.name);
        assert_same_design(&g, &imported.graph);
        // Under the PyTorch parameter convention too.
        let conv = Conventions {
            params: netloom::infer::ParamStyle::PyTorch,
            ..Default::default()
        };
        assert_eq!(
            analyze(&g).totals(&conv),
            analyze(&imported.graph).totals(&conv),
            "{}",
            preset.stem
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Optional: where Python's `onnx` package is installed, the official checker
/// (with shape inference) accepts every exported preset, and where
/// onnxruntime is installed, the exports load and run.
#[test]
fn exports_pass_the_onnx_checker_when_available() {
    let Some(python) = python::or_skip(&["onnx"]) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("netloom-onnx-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for preset in blocks::presets() {
        onnx::export(
            &(preset.build)(),
            None,
            &dir.join(format!("{}.onnx", preset.stem)),
        )
        .unwrap();
    }
    let script = r#"
import glob, sys, onnx
for f in sorted(glob.glob(sys.argv[1] + '/*.onnx')):
    onnx.checker.check_model(onnx.load(f), full_check=True)
try:
    import numpy as np, onnxruntime as ort
except ImportError:
    print('onnxruntime not installed: checker only'); sys.exit(0)
for f in sorted(glob.glob(sys.argv[1] + '/*.onnx')):
    ort.InferenceSession(f)  # every export loads (unique node names, valid types)
s = ort.InferenceSession(sys.argv[1] + '/lenet5.onnx')
feeds = {i.name: np.zeros([1 if isinstance(d, str) else d for d in i.shape], np.float32) for i in s.get_inputs()}
print('lenet5 output', s.run(None, feeds)[0].shape)
"#;
    let out = python::run(&python, script, &[dir.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{}", String::from_utf8_lossy(&out.stdout));
}

/// Optional (needs python3 with numpy and onnxruntime): the ONNX export of a
/// small design with weights computes what Netloom's conventions compute
/// (NHWC, HWIO conv weights, HWC flatten, `[in][out]` dense), evaluated here
/// by a direct reference loop, so layouts and the flatten permutation are
/// checked end to end.
#[test]
fn exported_weights_give_the_same_logits_in_onnxruntime() {
    use netloom::graph::blocks::Builder;
    use netloom::interop::Tensors;
    let Some(python) = python::or_skip(&["numpy", "onnxruntime"]) else {
        return;
    };
    // in 6×6×2 → conv 4 3×3 /2 same (pads 0,1) → relu → maxpool 2/1 → flatten 16 → BN → dense 5 → softmax
    let mut g = Graph::new("check");
    let mut b = Builder::new(&mut g);
    let x = b.input("x", 6, 6, 2);
    let c = b.layer(
        "conv",
        LayerKind::Conv2d {
            filters: 4,
            kernel: [3, 3],
            stride: [2, 2],
            padding: Padding::Same,
            groups: 1,
            bias: true,
            dilation: [1, 1],
        },
        &[x],
    );
    let r = b.layer("relu", LayerKind::Relu, &[c]);
    let p = b.layer(
        "pool",
        LayerKind::MaxPool2d {
            kernel: [2, 2],
            stride: [1, 1],
            padding: Padding::Valid,
            ceil_mode: false,
        },
        &[r],
    );
    let f = b.layer("flat", LayerKind::Flatten, &[p]);
    let n = b.layer(
        "bn",
        LayerKind::BatchNorm {
            epsilon: 1e-3,
            momentum: 0.9,
        },
        &[f],
    );
    let d = b.layer(
        "fc",
        LayerKind::Dense {
            units: 5,
            bias: true,
        },
        &[n],
    );
    b.layer("prob", LayerKind::Softmax, &[d]);

    let mut seed = 7u64;
    let mut rand = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    };
    let mut w = Tensors::new();
    w.insert("conv.weight".into(), (vec![3, 3, 2, 4], rand(72)));
    w.insert("conv.bias".into(), (vec![4], rand(4)));
    w.insert("bn.gamma".into(), (vec![16], rand(16)));
    w.insert("bn.beta".into(), (vec![16], rand(16)));
    w.insert("bn.running_mean".into(), (vec![16], rand(16)));
    let var: Vec<f32> = rand(16).iter().map(|v| v + 1.0).collect();
    w.insert("bn.running_var".into(), (vec![16], var));
    w.insert("fc.weight".into(), (vec![16, 5], rand(80)));
    w.insert("fc.bias".into(), (vec![5], rand(5)));
    let input = rand(72); // NHWC, one image

    // Reference forward in Netloom conventions.
    let (cw, cb) = (&w["conv.weight"].1, &w["conv.bias"].1);
    let mut conv = [0f32; 3 * 3 * 4];
    for oy in 0..3 {
        for ox in 0..3 {
            for co in 0..4 {
                let mut s = cb[co];
                for ky in 0..3 {
                    for kx in 0..3 {
                        let (iy, ix) = (oy * 2 + ky, ox * 2 + kx); // pad_before = 0
                        if iy >= 6 || ix >= 6 {
                            continue;
                        }
                        for ci in 0..2 {
                            s += input[(iy * 6 + ix) * 2 + ci]
                                * cw[((ky * 3 + kx) * 2 + ci) * 4 + co];
                        }
                    }
                }
                conv[(oy * 3 + ox) * 4 + co] = s.max(0.0);
            }
        }
    }
    let mut pooled = [0f32; 2 * 2 * 4];
    for oy in 0..2 {
        for ox in 0..2 {
            for c in 0..4 {
                let mut m = f32::NEG_INFINITY;
                for ky in 0..2 {
                    for kx in 0..2 {
                        m = m.max(conv[((oy + ky) * 3 + ox + kx) * 4 + c]);
                    }
                }
                pooled[(oy * 2 + ox) * 4 + c] = m;
            }
        }
    }
    let bn: Vec<f32> = (0..16)
        .map(|i| {
            let (gm, bt, mu, vr) = (
                w["bn.gamma"].1[i],
                w["bn.beta"].1[i],
                w["bn.running_mean"].1[i],
                w["bn.running_var"].1[i],
            );
            gm * (pooled[i] - mu) / (vr + 1e-3).sqrt() + bt
        })
        .collect();
    let logits: Vec<f32> = (0..5)
        .map(|o| {
            w["fc.bias"].1[o]
                + (0..16)
                    .map(|i| bn[i] * w["fc.weight"].1[i * 5 + o])
                    .sum::<f32>()
        })
        .collect();
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let total: f32 = exp.iter().sum();
    let expected: Vec<f32> = exp.iter().map(|e| e / total).collect();

    let dir = std::env::temp_dir().join(format!("netloom-ort-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("check.onnx");
    onnx::export(&g, Some(&w), &model).unwrap();
    let script = r#"
import json, sys, numpy as np, onnxruntime as ort
x = np.array(json.loads(sys.argv[2]), np.float32).reshape(1, 6, 6, 2).transpose(0, 3, 1, 2)
s = ort.InferenceSession(sys.argv[1])
print(json.dumps(s.run(None, {'x': np.ascontiguousarray(x)})[0][0].tolist()))
"#;
    let out = python::run(
        &python,
        script,
        &[
            model.to_str().unwrap(),
            &serde_json::to_string(&input).unwrap(),
        ],
    );
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<f32> = serde_json::from_slice(&out.stdout).unwrap();
    for (a, e) in got.iter().zip(&expected) {
        assert!(
            (a - e).abs() < 1e-5,
            "onnxruntime {got:?} vs Netloom {expected:?}"
        );
    }
    println!("onnxruntime matches: {got:?}");
}

/// Optional (needs python3 with numpy and onnxruntime): presets exported with
/// the weights of a compiled training plan give the plan's own eval-mode
/// probabilities in onnxruntime.
#[test]
fn exported_presets_match_netloom_forward_in_onnxruntime() {
    use netloom::interop::Tensors;
    use netloom::train::{Mode, ParamRole, Plan};
    let Some(python) = python::or_skip(&["numpy", "onnxruntime"]) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("netloom-ort-fw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for g in [
        blocks::lenet5(),
        blocks::resnet_mini(),
        blocks::happy_model(),
    ] {
        let analysis = analyze(&g);
        let mut plan = Plan::compile(&g, &analysis, 1, 7).unwrap();
        let mut seed = 99u64;
        let mut rand = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        // Non-trivial BatchNorm statistics so their layout matters too.
        for p in &mut plan.params {
            for v in &mut p.data {
                match p.role {
                    ParamRole::RunningMean | ParamRole::Beta | ParamRole::Bias => *v = 0.2 * rand(),
                    ParamRole::RunningVar | ParamRole::Gamma => *v = 1.0 + rand(),
                    ParamRole::Weight => {}
                }
            }
        }
        let weights: Tensors = plan
            .params
            .iter()
            .map(|p| (p.name.clone(), (p.shape.clone(), p.data.clone())))
            .collect();
        let (h, w, c) = plan.input_shape;
        let image: Vec<f32> = (0..h * w * c).map(|_| rand()).collect();
        plan.forward(&image, Mode::Eval);
        let expected = plan.probabilities().to_vec();
        let model = dir.join(format!("{}.onnx", g.name));
        onnx::export(&g, Some(&weights), &model).unwrap();
        let script = format!(
            "import json, sys, numpy as np, onnxruntime as ort\n\
             x = np.fromfile(sys.argv[2], np.float32).reshape(1, {h}, {w}, {c}).transpose(0, 3, 1, 2)\n\
             s = ort.InferenceSession(sys.argv[1])\n\
             print(json.dumps(s.run(None, {{s.get_inputs()[0].name: np.ascontiguousarray(x)}})[0][0].tolist()))"
        );
        let input = dir.join(format!("{}.bin", g.name));
        let bytes: Vec<u8> = image.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&input, bytes).unwrap();
        let out = python::run(
            &python,
            &script,
            &[model.to_str().unwrap(), input.to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "{}: {}",
            g.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<f32> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(got.len(), expected.len(), "{}", g.name);
        for (a, e) in got.iter().zip(&expected) {
            assert!(
                (a - e).abs() < 1e-4,
                "{}: onnxruntime {got:?} vs Netloom {expected:?}",
                g.name
            );
        }
        println!("{}: onnxruntime matches Netloom: {got:?}", g.name);
    }
    std::fs::remove_dir_all(&dir).ok();
}
