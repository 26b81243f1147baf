//! PyTorch code export: every preset gives a module whose parametric layers
//! match the state dict's keys and sizes; Python checks where available.

use netloom::graph::{Graph, LayerKind, blocks};
use netloom::infer::{Conventions, ParamStyle, analyze};
use netloom::interop::{Tensors, pytorch};
use std::collections::BTreeSet;

#[path = "common/python.rs"]
mod python;

/// Zero-filled weights for every parameter (Netloom layouts).
fn zero_weights(g: &Graph) -> Tensors {
    let a = analyze(g);
    let mut t = Tensors::new();
    for (id, node) in g.nodes() {
        let input = a.node(id).unwrap().input_shapes.first().copied().flatten();
        let cin = input.map_or(0, |s| s.channels() as usize);
        let mut put = |key: &str, shape: Vec<usize>| {
            let n = shape.iter().product();
            t.insert(format!("{}.{key}", node.name), (shape, vec![0.0; n]));
        };
        match node.kind {
            LayerKind::Conv2d {
                filters,
                kernel,
                groups,
                bias,
                ..
            } => {
                put(
                    "weight",
                    vec![
                        kernel[0] as usize,
                        kernel[1] as usize,
                        cin / groups as usize,
                        filters as usize,
                    ],
                );
                if bias {
                    put("bias", vec![filters as usize]);
                }
            }
            LayerKind::Dense { units, bias } => {
                put(
                    "weight",
                    vec![input.unwrap().elements() as usize, units as usize],
                );
                if bias {
                    put("bias", vec![units as usize]);
                }
            }
            LayerKind::BatchNorm { .. } => {
                for k in ["gamma", "beta", "running_mean", "running_var"] {
                    put(k, vec![cin]);
                }
            }
            _ => {}
        }
    }
    t
}

#[test]
fn every_preset_exports_a_module_matching_its_state_dict() {
    for preset in blocks::presets() {
        let g = (preset.build)();
        let src = pytorch::module_source(&g).unwrap_or_else(|e| panic!("{}: {e}", preset.stem));
        assert!(src.contains("class "), "{}", preset.stem);
        assert!(src.contains("def forward(self, "), "{}", preset.stem);
        // Attributes holding parameters in the source …
        let parametric: BTreeSet<String> = src
            .lines()
            .filter_map(|l| {
                let l = l.trim().strip_prefix("self.")?;
                let (attr, rhs) = l.split_once(" = ")?;
                ["nn.Conv2d(", "nn.Linear(", "nn.BatchNorm"]
                    .iter()
                    .any(|m| rhs.starts_with(m))
                    .then(|| attr.to_string())
            })
            .collect();
        // … are exactly the state dict's key prefixes.
        let sd = pytorch::state_dict(&g, &zero_weights(&g)).unwrap();
        let prefixes: BTreeSet<String> = sd
            .keys()
            .map(|k| k.rsplit_once('.').unwrap().0.to_string())
            .collect();
        assert_eq!(parametric, prefixes, "{}", preset.stem);
        // PyTorch counts parameters without running statistics.
        let params: usize = sd
            .iter()
            .filter(|(k, _)| {
                !k.ends_with(".running_mean")
                    && !k.ends_with(".running_var")
                    && !k.ends_with(".num_batches_tracked")
            })
            .map(|(_, (_, v))| v.len())
            .sum();
        let conventions = Conventions {
            params: ParamStyle::PyTorch,
            ..Default::default()
        };
        assert_eq!(
            params as u64,
            analyze(&g).totals(&conventions).total_params,
            "{}",
            preset.stem
        );
    }
}

#[test]
fn layouts_and_names_follow_pytorch() {
    let g = blocks::lenet5();
    let src = pytorch::module_source(&g).unwrap();
    let mut w = zero_weights(&g);
    // Mark one conv weight element in Netloom HWIO layout: (kh=1, kw=2, cin=0, cout=3).
    let conv = g
        .nodes()
        .find(|(_, n)| matches!(n.kind, LayerKind::Conv2d { .. }))
        .unwrap()
        .1
        .name
        .clone();
    let (shape, values) = w.get_mut(&format!("{conv}.weight")).unwrap();
    let [kh, kw, ci, co] = [shape[0], shape[1], shape[2], shape[3]];
    values[((kw + 2) * ci) * co + 3] = 1.0;
    let sd = pytorch::state_dict(&g, &w).unwrap();
    let (dims, v) = &sd[&format!("{conv}.weight")];
    assert_eq!(dims, &vec![co, ci, kh, kw]);
    let at = v.iter().position(|&x| x == 1.0).unwrap();
    assert_eq!(at, ((3 * ci) * kh + 1) * kw + 2);
    assert!(src.contains(&format!("self.{conv} = nn.Conv2d(")), "{src}");
}

#[test]
fn awkward_names_become_unique_identifiers() {
    let mut g = Graph::new("my net");
    let i = g
        .add_node(
            "in put",
            LayerKind::Input {
                height: 4,
                width: 4,
                channels: 1,
            },
            [0.0, 0.0],
        )
        .unwrap();
    let a = g.add_node("1st-relu", LayerKind::Relu, [0.0, 0.0]).unwrap();
    let b = g.add_node("training", LayerKind::Relu, [0.0, 0.0]).unwrap();
    let c = g.add_node("in_put", LayerKind::Add, [0.0, 0.0]).unwrap();
    g.connect(i, a, 0).unwrap();
    g.connect(i, b, 0).unwrap();
    g.connect(a, c, 0).unwrap();
    g.connect(b, c, 1).unwrap();
    let src = pytorch::module_source(&g).unwrap();
    assert!(src.contains("class MyNet(nn.Module):"), "{src}");
    assert!(src.contains("def forward(self, in_put):"), "{src}");
    assert!(src.contains("layer_1st_relu = F.relu(in_put)"), "{src}");
    assert!(src.contains("training_ = F.relu(in_put)"), "{src}");
    assert!(
        src.contains("in_put_2 = layer_1st_relu + training_"),
        "{src}"
    );
}

/// Optional: the generated code is valid Python (where python3 exists), and
/// with PyTorch installed each small preset's module builds, loads its state
/// dict strictly and runs.
#[test]
fn generated_code_parses_and_runs_when_python_is_available() {
    let Some(python) = python::or_skip(&["ast"]) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("netloom-pt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for preset in blocks::presets() {
        let src = pytorch::module_source(&(preset.build)()).unwrap();
        std::fs::write(
            dir.join(format!("{}.py", preset.stem.replace('-', "_"))),
            src,
        )
        .unwrap();
    }
    let out = python::run(
        &python,
        "import ast, glob, sys\nfor f in glob.glob(sys.argv[1] + '/*.py'): ast.parse(open(f).read(), f)",
        &[dir.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let Some(python) = python::or_skip(&["torch"]) else {
        std::fs::remove_dir_all(&dir).ok();
        return;
    };
    for g in [
        blocks::lenet5(),
        blocks::resnet_mini(),
        blocks::happy_model(),
    ] {
        let stem = g.name.replace('-', "_");
        let inputs: Vec<String> = g
            .nodes()
            .filter_map(|(_, n)| match n.kind {
                LayerKind::Input {
                    height,
                    width,
                    channels,
                } => Some(format!("torch.zeros(1, {channels}, {height}, {width})")),
                _ => None,
            })
            .collect();
        let sd = pytorch::state_dict(&g, &zero_weights(&g)).unwrap();
        // Write the state dict as a Python literal (small presets only).
        let mut lit = String::from("{");
        for (k, (shape, v)) in &sd {
            lit.push_str(&format!("{k:?}: ({shape:?}, {}),", v.len()));
        }
        lit.push('}');
        let script = format!(
            "import sys, torch\nsys.path.insert(0, {dir:?})\nimport {stem} as m\nnet = [getattr(m, n) for n in dir(m) if isinstance(getattr(m, n), type) and issubclass(getattr(m, n), torch.nn.Module) and n != 'Module'][0]()\n\
             spec = {lit}\nsd = {{k: torch.zeros(s) for k, (s, n) in spec.items()}}\nnet.load_state_dict(sd, strict=True)\nnet.eval()\nprint(net({inputs}).shape)",
            dir = dir.to_str().unwrap(),
            inputs = inputs.join(", ")
        );
        let out = python::run(&python, &script, &[]);
        assert!(
            out.status.success(),
            "{}: {}",
            g.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn largest_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// A design with every kind added for torchvision's models: a fixed
/// per-channel input normalisation, ReLU6, a dilated grouped conv, HardSwish, SiLU, HardSigmoid, a
/// squeeze-and-excitation channel scale, and an average pool that counts
/// its padding.
fn new_kinds_design() -> Graph {
    use netloom::graph::Padding;
    use netloom::graph::blocks::Builder;
    let mut g = Graph::new("new-kinds");
    let mut b = Builder::new(&mut g);
    let input = b.input("in", 9, 9, 3);
    // Fixed per-channel normalisation (torchvision's `transform_input`).
    let norm = b.layer(
        "norm",
        LayerKind::ChannelAffine {
            scale: vec![0.458, 0.448, 0.45],
            shift: vec![-0.03, -0.088, -0.188],
        },
        &[input],
    );
    let x = b.conv("c1", norm, 8, 3, 1, Padding::Same);
    let x = b.layer("relu6", LayerKind::Relu6, &[x]);
    let x = b.layer(
        "c2",
        LayerKind::Conv2d {
            filters: 8,
            kernel: [3, 3],
            stride: [1, 1],
            padding: Padding::Explicit([2, 2, 2, 2]),
            groups: 2,
            bias: true,
            dilation: [2, 2],
        },
        &[x],
    );
    let x = b.layer("hswish", LayerKind::HardSwish, &[x]);
    let s = b.layer("squeeze", LayerKind::GlobalAvgPool, &[x]);
    let s = b.dense("reduce", s, 4);
    let s = b.layer("silu", LayerKind::Silu, &[s]);
    let s = b.dense("expand", s, 8);
    let s = b.layer("hsig", LayerKind::HardSigmoid, &[s]);
    let x = b.layer("scale", LayerKind::ChannelScale, &[x, s]);
    let x = b.layer(
        "pool",
        LayerKind::AvgPool2d {
            kernel: [3, 3],
            stride: [2, 2],
            padding: Padding::Explicit([1, 1, 1, 1]),
            ceil_mode: true,
            include_padding: true,
        },
        &[x],
    );
    let x = b.layer("flat", LayerKind::Flatten, &[x]);
    let x = b.dense("fc", x, 5);
    b.layer("softmax", LayerKind::Softmax, &[x]);
    g
}

/// Optional (skipped, saying why, without PyTorch): the generated module,
/// loaded with the state dict of randomly initialised weights, computes
/// what Netloom's forward pass computes, to 1e-5 + 1e-4 relative.
#[test]
fn new_kinds_compute_the_same_function_in_pytorch() {
    use netloom::train::{Mode, Plan};
    let Some(python) = python::or_skip(&["torch"]) else {
        return;
    };
    let g = new_kinds_design();
    let a = analyze(&g);
    assert!(a.is_valid(), "{}", a.error_summary(&g, 3));
    let batch = 2;
    let mut plan = Plan::compile(&g, &a, batch, 5).unwrap();
    let (h, w, c) = plan.input_shape;
    // Inputs spread over ±4 so the activations' kinks at −3, 0, 3 and 6 are all crossed.
    let images: Vec<f32> = (0..batch * h * w * c)
        .map(|i| ((i * 7919 % 1000) as f32 / 125.0) - 4.0)
        .collect();
    plan.forward(&images, Mode::Eval);
    let netloom = plan.probabilities()[..batch * plan.classes].to_vec();
    let tensors: Tensors = plan
        .params
        .iter()
        .map(|p| (p.name.clone(), (p.shape.clone(), p.data.clone())))
        .collect();
    let sd = pytorch::state_dict(&g, &tensors).unwrap();

    let dir = std::env::temp_dir().join(format!("netloom-pt-kinds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("new_kinds.py"),
        pytorch::module_source(&g).unwrap(),
    )
    .unwrap();
    // Raw little-endian f32 blobs and an index of names, shapes and offsets.
    let mut blob: Vec<u8> = Vec::new();
    let mut index = String::new();
    let mut put = |name: &str, shape: &[usize], values: &[f32], index: &mut String| {
        index.push_str(&format!(
            "{name} {} {} {}\n",
            blob.len() / 4,
            values.len(),
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ));
        blob.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    };
    put("__images__", &[batch, h, w, c], &images, &mut index);
    for (k, (shape, v)) in &sd {
        put(k, shape, v, &mut index);
    }
    std::fs::write(dir.join("blob.f32"), &blob).unwrap();
    std::fs::write(dir.join("index.txt"), index).unwrap();
    let script = format!(
        "import sys, torch\nsys.path.insert(0, {dir:?})\nimport new_kinds as m\n\
         net = [v for v in vars(m).values() if isinstance(v, type) and issubclass(v, torch.nn.Module) and v.__module__ == 'new_kinds'][0]()\n\
         blob = torch.frombuffer(bytearray(open({dir:?} + '/blob.f32', 'rb').read()), dtype=torch.float32)\n\
         t = {{}}\n\
         for line in open({dir:?} + '/index.txt'):\n    name, off, n, shape = line.split()\n    t[name] = blob[int(off):int(off) + int(n)].reshape([int(d) for d in shape.split(',')]).clone()\n\
         x = t.pop('__images__').permute(0, 3, 1, 2).contiguous()\n\
         net.load_state_dict(t, strict=True)\nnet.eval()\n\
         with torch.no_grad():\n    y = net.predict_proba(x)\n\
         print(' '.join(repr(float(v)) for v in y.flatten()))",
        dir = dir.to_str().unwrap()
    );
    let out = python::run(&python, &script, &[]);
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let torch: Vec<f32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(torch.len(), netloom.len());
    println!(
        "largest |Netloom − PyTorch|: {:e}",
        largest_difference(&netloom, &torch)
    );
    for (i, (a, b)) in netloom.iter().zip(&torch).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 + 1e-4 * b.abs(),
            "output {i}: Netloom {a}, PyTorch {b}\nNetloom {netloom:?}\nPyTorch {torch:?}"
        );
    }
    // The outputs are not degenerate (a constant output would match trivially).
    assert!(
        netloom.iter().any(|&p| (p - 0.2).abs() > 1e-3),
        "{netloom:?}"
    );
}

/// Optional (skipped, saying why, without onnxruntime): the ONNX export of
/// the same design with its weights computes in onnxruntime what Netloom's
/// forward pass computes, to 1e-5 + 1e-4 relative.
#[test]
fn new_kinds_export_to_onnx_runs_the_same_in_onnxruntime() {
    use netloom::interop::onnx;
    use netloom::train::{Mode, Plan};
    let Some(python) = python::or_skip(&["numpy", "onnxruntime"]) else {
        return;
    };
    let g = new_kinds_design();
    let a = analyze(&g);
    let batch = 2;
    let mut plan = Plan::compile(&g, &a, batch, 9).unwrap();
    let (h, w, c) = plan.input_shape;
    let images: Vec<f32> = (0..batch * h * w * c)
        .map(|i| ((i * 6151 % 1000) as f32 / 125.0) - 4.0)
        .collect();
    plan.forward(&images, Mode::Eval);
    let netloom = plan.probabilities()[..batch * plan.classes].to_vec();
    let tensors: Tensors = plan
        .params
        .iter()
        .map(|p| (p.name.clone(), (p.shape.clone(), p.data.clone())))
        .collect();
    let dir = std::env::temp_dir().join(format!("netloom-ort-kinds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("model.onnx"),
        onnx::export_bytes(&g, Some(&tensors)).unwrap(),
    )
    .unwrap();
    let blob: Vec<u8> = images.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join("images.f32"), blob).unwrap();
    let script = format!(
        "import numpy as np, onnxruntime as ort\n\
         x = np.fromfile({dir:?} + '/images.f32', dtype='<f4').reshape({batch}, {h}, {w}, {c}).transpose(0, 3, 1, 2).copy()\n\
         s = ort.InferenceSession({dir:?} + '/model.onnx', providers=['CPUExecutionProvider'])\n\
         y = s.run(['softmax'], {{'in': x}})[0]\n\
         print(' '.join(repr(float(v)) for v in y.flatten()))",
        dir = dir.to_str().unwrap()
    );
    let out = python::run(&python, &script, &[]);
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ort: Vec<f32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(ort.len(), netloom.len());
    println!(
        "largest |Netloom − onnxruntime|: {:e}",
        largest_difference(&netloom, &ort)
    );
    for (i, (a, b)) in netloom.iter().zip(&ort).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 + 1e-4 * b.abs(),
            "output {i}: Netloom {a}, onnxruntime {b}\nNetloom {netloom:?}\nonnxruntime {ort:?}"
        );
    }
    assert!(
        netloom.iter().any(|&p| (p - 0.2).abs() > 1e-3),
        "{netloom:?}"
    );
}
