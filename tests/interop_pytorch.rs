//! PyTorch code export: every preset gives a module whose parametric layers
//! match the state dict's keys and sizes; Python checks where available.

use netloom::graph::{Graph, LayerKind, blocks};
use netloom::infer::{Conventions, ParamStyle, analyze};
use netloom::interop::{Tensors, pytorch};
use std::collections::BTreeSet;

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

fn python_has(module: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Optional: the generated code is valid Python (where python3 exists), and
/// with PyTorch installed each small preset's module builds, loads its state
/// dict strictly and runs.
#[test]
fn generated_code_parses_and_runs_when_python_is_available() {
    if !python_has("ast") {
        println!("skipped: python3 is not installed");
        return;
    }
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
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import ast, glob, sys\nfor f in glob.glob(sys.argv[1] + '/*.py'): ast.parse(open(f).read(), f)",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if !python_has("torch") {
        println!("skipped running the modules: PyTorch is not installed");
        std::fs::remove_dir_all(&dir).ok();
        return;
    }
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
        let out = std::process::Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            g.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
