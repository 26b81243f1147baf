//! ONNX interop: every preset survives export → import with the same design
//! and costs; small hand-built models import; bad files give clear errors.

use netloom::graph::{Graph, LayerKind, Padding, blocks};
use netloom::infer::{Conventions, analyze};
use netloom::interop::onnx;
use std::collections::BTreeSet;

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
    let has = |module: &str| {
        std::process::Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !has("onnx") {
        println!("skipped: python3 with the `onnx` package is not installed");
        return;
    }
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
s = ort.InferenceSession(sys.argv[1] + '/lenet5.onnx')
feeds = {i.name: np.zeros([1 if isinstance(d, str) else d for d in i.shape], np.float32) for i in s.get_inputs()}
print('lenet5 output', s.run(None, feeds)[0].shape)
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, dir.to_str().unwrap()])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{}", String::from_utf8_lossy(&out.stdout));
}
