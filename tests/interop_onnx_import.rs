//! ONNX import of small models built here (as PyTorch and other exporters
//! write them), weights round trips, and clear errors for bad files.

use netloom::graph::{Graph, LayerKind, Padding, blocks};
use netloom::infer::{Conventions, Shape, analyze};
use netloom::interop::proto::{
    AttributeProto, DimValue, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor,
    ValueInfoProto,
};
use netloom::interop::{InteropError, Tensors, onnx};
use prost::Message;

mod common;

// --- a tiny model builder ----------------------------------------------------

struct M {
    g: GraphProto,
    opset: i64,
}

fn vi(name: &str, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: 1,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(if d < 0 {
                                DimValue::DimParam("batch".into())
                            } else {
                                DimValue::DimValue(d)
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ai(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 7,
        ints: v.to_vec(),
        ..Default::default()
    }
}
fn a1(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 2,
        i: v,
        ..Default::default()
    }
}
fn af(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 1,
        f: v,
        ..Default::default()
    }
}
fn as_(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 3,
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

impl M {
    fn new(input: &str, dims: &[i64]) -> M {
        M {
            g: GraphProto {
                name: "tiny".into(),
                input: vec![vi(input, dims)],
                ..Default::default()
            },
            opset: 13,
        }
    }
    fn node(
        &mut self,
        op: &str,
        name: &str,
        ins: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> &mut Self {
        self.g.node.push(NodeProto {
            input: ins.iter().map(|s| s.to_string()).collect(),
            output: vec![name.to_string()],
            name: name.into(),
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
        self
    }
    /// A float initializer filled with 0, 1, 2, … (in the given dims).
    fn init(&mut self, name: &str, dims: &[i64]) -> &mut Self {
        let n: i64 = dims.iter().product();
        self.g.initializer.push(TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: 1,
            float_data: (0..n).map(|v| v as f32).collect(),
            ..Default::default()
        });
        self
    }
    fn ints(&mut self, name: &str, v: &[i64]) -> &mut Self {
        self.g.initializer.push(TensorProto {
            name: name.into(),
            dims: vec![v.len() as i64],
            data_type: 7,
            int64_data: v.to_vec(),
            ..Default::default()
        });
        self
    }
    fn output(&mut self, name: &str) -> &mut Self {
        self.g.output.push(vi(name, &[]));
        self
    }
    fn bytes(&self) -> Vec<u8> {
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: self.opset,
            }],
            producer_name: "test".into(),
            graph: Some(self.g.clone()),
            ..Default::default()
        }
        .encode_to_vec()
    }
    fn import(&self) -> onnx::Imported {
        onnx::import_bytes(&self.bytes(), "tiny").unwrap_or_else(|e| panic!("{e}"))
    }
}

fn kind<'g>(g: &'g Graph, name: &str) -> &'g LayerKind {
    &g.node(g.find(name).unwrap_or_else(|| panic!("no `{name}`")))
        .unwrap()
        .kind
}

fn inputs(g: &Graph, name: &str) -> Vec<String> {
    g.inputs_of(g.find(name).unwrap())
        .into_iter()
        .map(|f| f.map_or("-".into(), |f| g.name_of(f).to_string()))
        .collect()
}

// --- imports -----------------------------------------------------------------

/// What `torch.onnx.export` writes for conv → bn → relu → pool → flatten → linear.
#[test]
fn pytorch_style_cnn_imports_with_costs_and_weights() {
    let mut m = M::new("x", &[-1, 3, 8, 8]);
    m.init("conv.weight", &[4, 3, 3, 3])
        .init("conv.bias", &[4])
        .node(
            "Conv",
            "conv",
            &["x", "conv.weight", "conv.bias"],
            vec![
                ai("kernel_shape", &[3, 3]),
                ai("pads", &[1, 1, 1, 1]),
                ai("strides", &[1, 1]),
                a1("group", 1),
                ai("dilations", &[1, 1]),
            ],
        );
    for p in ["bn.scale", "bn.b", "bn.mean", "bn.var"] {
        m.init(p, &[4]);
    }
    m.node(
        "BatchNormalization",
        "bn",
        &["conv", "bn.scale", "bn.b", "bn.mean", "bn.var"],
        vec![af("epsilon", 1e-5), af("momentum", 0.9)],
    )
    .node("Relu", "relu", &["bn"], vec![])
    .node(
        "MaxPool",
        "pool",
        &["relu"],
        vec![ai("kernel_shape", &[2, 2]), ai("strides", &[2, 2])],
    )
    .ints("shape", &[-1, 64])
    .node("Reshape", "flat", &["pool", "shape"], vec![])
    .init("fc.weight", &[10, 64])
    .init("fc.bias", &[10])
    .node(
        "Gemm",
        "fc",
        &["flat", "fc.weight", "fc.bias"],
        vec![af("alpha", 1.0), af("beta", 1.0), a1("transB", 1)],
    )
    .node("Softmax", "prob", &["fc"], vec![a1("axis", 1)])
    .output("prob");
    let imp = m.import();
    assert!(imp.unsupported.is_empty(), "{:?}", imp.unsupported);
    let g = &imp.graph;
    assert_eq!(
        g.len(),
        8,
        "input, conv, bn, relu, pool, flatten, fc, softmax"
    );
    assert_eq!(
        kind(g, "x"),
        &LayerKind::Input {
            height: 8,
            width: 8,
            channels: 3
        }
    );
    assert_eq!(
        kind(g, "conv"),
        &LayerKind::Conv2d {
            filters: 4,
            kernel: [3, 3],
            stride: [1, 1],
            padding: Padding::Explicit([1, 1, 1, 1]),
            groups: 1,
            bias: true,
            dilation: [1, 1],
        }
    );
    assert!(matches!(kind(g, "flat"), LayerKind::Flatten));
    assert_eq!(
        kind(g, "fc"),
        &LayerKind::Dense {
            units: 10,
            bias: true
        }
    );
    let a = analyze(g);
    assert!(a.is_valid(), "{:?}", a.errors());
    let t = a.totals(&Conventions::default());
    // conv 3·3·3·4+4 = 112, bn 4·4 = 16, fc 64·10+10 = 650.
    assert_eq!(t.total_params, 112 + 16 + 650);
    assert_eq!(t.macs, 8 * 8 * 4 * 27 + 640);
    // Conv weight OIHW → HWIO: element (o=1, i=2, h=0, w=1) had value ((1·3+2)·3+0)·3+1 = 46.
    let (dims, w) = &imp.weights["conv.weight"];
    assert_eq!(dims, &vec![3, 3, 3, 4]);
    let (kh, kw, i, o) = (0, 1, 2, 1);
    let hwio = ((kh * 3 + kw) * 3 + i) * 4 + o;
    assert_eq!(w[hwio], 46.0);
    // Dense [out][in] (CHW rows) → [in][out] (HWC rows): Netloom row (h=1, w=2, c=3)
    // of the 4×4×4 pool output is framework row (3·4+1)·4+2 = 54; fc[o=7][54] = 7·64+54.
    let (dims, w) = &imp.weights["fc.weight"];
    assert_eq!(dims, &vec![64, 10]);
    let (y, x, c) = (1, 2, 3);
    let row = (y * 4 + x) * 4 + c;
    assert_eq!(w[row * 10 + 7], (7 * 64 + 54) as f32);
    assert_eq!(imp.weights["bn.gamma"].1, vec![0.0, 1.0, 2.0, 3.0]);
    assert_eq!(imp.weights["bn.running_var"].0, vec![4]);
}

#[test]
fn matmul_add_chains_pad_same_and_unsupported_ops() {
    let mut m = M::new("img", &[1, 8, 6, 6]);
    m.ints("pads", &[0, 0, 1, 2, 0, 0, 1, 2])
        .node(
            "Pad",
            "pad",
            &["img", "pads"],
            vec![as_("mode", "constant")],
        )
        .init("c1.w", &[8, 8, 3, 3])
        .node(
            "Conv",
            "c1",
            &["pad", "c1.w"],
            vec![as_("auto_pad", "SAME_UPPER"), ai("strides", &[2, 2])],
        )
        .init("c1.b", &[1, 8, 1, 1])
        .node("Add", "c1_bias", &["c1", "c1.b"], vec![])
        .init("c2.w", &[8, 4, 1, 1])
        .node(
            "Conv",
            "c2",
            &["pad", "c2.w"],
            vec![a1("group", 2), ai("strides", &[2, 2])],
        )
        .init("c3.w", &[8, 8, 1, 1])
        .node("Conv", "c3", &["pad", "c3.w"], vec![ai("strides", &[2, 2])])
        .node("Elu", "hs", &["c3"], vec![])
        .node("Add", "s1", &["c1_bias", "c2"], vec![])
        .node("Add", "s2", &["s1", "hs"], vec![])
        // Shape arithmetic as old PyTorch exports write x.view(x.size(0), -1).
        .node("Shape", "shp", &["s2"], vec![])
        .node("Gather", "n", &["shp", "zero"], vec![a1("axis", 0)])
        .ints("zero", &[0])
        .node("Resize", "up", &["s2"], vec![])
        .node("GlobalAveragePool", "gap", &["s2"], vec![])
        .node("Flatten", "gapf", &["gap"], vec![])
        .init("fc.w", &[8, 5])
        .node("MatMul", "fc", &["gapf", "fc.w"], vec![])
        .init("fc.b", &[5])
        .node("Add", "fc_out", &["fc", "fc.b"], vec![])
        .node("Mystery", "odd", &["fc_out"], vec![])
        .output("odd")
        .output("up");
    let imp = m.import();
    let g = &imp.graph;
    assert_eq!(
        kind(g, "pad"),
        &LayerKind::ZeroPad2d {
            padding: [1, 1, 2, 2]
        }
    );
    assert!(matches!(
        kind(g, "c1"),
        LayerKind::Conv2d {
            padding: Padding::Same,
            bias: true,
            ..
        }
    ));
    assert!(matches!(
        kind(g, "c2"),
        LayerKind::Conv2d {
            groups: 2,
            bias: false,
            ..
        }
    ));
    // (c1 + c2) + hs → one Add of three inputs; Elu passed through.
    assert!(g.find("s2").is_none());
    assert_eq!(inputs(g, "s1"), vec!["c1", "c2", "c3"]);
    assert_eq!(
        kind(g, "fc"),
        &LayerKind::Dense {
            units: 5,
            bias: true
        }
    );
    assert!(!imp.weights.is_empty(), "{:?}", imp.warnings);
    assert_eq!(imp.weights["fc.bias"].1, vec![0.0, 1.0, 2.0, 3.0, 4.0]);
    assert_eq!(imp.weights["c1.bias"].0, vec![8]);
    // Flatten after the (vector) GlobalAvgPool is folded away.
    assert!(g.find("gapf").is_none());
    assert_eq!(
        imp.unsupported,
        vec![
            ("Elu".to_string(), 1),
            ("Mystery".to_string(), 1),
            ("Resize".to_string(), 1)
        ]
    );
    assert!(!imp.is_faithful());
    let named: Vec<&str> = imp.deviations.iter().map(|d| d.what.as_str()).collect();
    assert_eq!(named, ["Elu", "Resize", "Mystery"], "{:?}", imp.deviations);
    assert!(
        imp.deviations[0]
            .effect
            .contains("passes through unchanged")
    );
    let a = analyze(g);
    assert!(a.is_valid(), "{:?}", a.errors());
    assert_eq!(
        a.node(g.find("s1").unwrap()).unwrap().output_shape,
        Some(Shape::Volume { h: 4, w: 5, c: 8 })
    );
}

#[test]
fn sum_concat_and_old_opset_attributes() {
    let mut m = M::new("x", &[1, 2, 4, 4]);
    m.opset = 9;
    m.node("Relu", "a", &["x"], vec![])
        .node("Sigmoid", "b", &["x"], vec![])
        .node("Tanh", "c", &["x"], vec![])
        .node("Sum", "sum", &["a", "b", "c"], vec![])
        .node("Concat", "cat", &["sum", "a"], vec![a1("axis", 1)])
        .node(
            "Pad",
            "pad",
            &["cat"],
            vec![ai("pads", &[0, 0, 1, 1, 0, 0, 1, 1]), af("value", 0.0)],
        )
        .node(
            "AveragePool",
            "pool",
            &["pad"],
            vec![
                ai("kernel_shape", &[3, 3]),
                ai("strides", &[2, 2]),
                a1("ceil_mode", 1),
            ],
        )
        .node("LeakyRelu", "lrelu", &["pool"], vec![af("alpha", 0.2)])
        .node("Dropout", "drop", &["lrelu"], vec![af("ratio", 0.25)])
        .output("drop");
    let imp = m.import();
    let g = &imp.graph;
    assert_eq!(inputs(g, "sum"), vec!["a", "b", "c"]);
    assert_eq!(inputs(g, "cat"), vec!["sum", "a"]);
    assert_eq!(
        kind(g, "pad"),
        &LayerKind::ZeroPad2d {
            padding: [1, 1, 1, 1]
        }
    );
    // 6 wide, kernel 3, stride 2: ceil mode gives 3 (floor would give 2).
    assert!(matches!(
        kind(g, "pool"),
        LayerKind::AvgPool2d {
            ceil_mode: true,
            ..
        }
    ));
    let a = analyze(g);
    assert_eq!(
        a.node(g.find("pool").unwrap()).unwrap().output_shape,
        Some(Shape::Volume { h: 3, w: 3, c: 4 })
    );
    assert!(
        matches!(kind(g, "lrelu"), LayerKind::LeakyRelu { alpha } if (*alpha - 0.2).abs() < 1e-6)
    );
    assert!(matches!(kind(g, "drop"), LayerKind::Dropout { rate } if *rate == 0.25));
}

// --- weights -----------------------------------------------------------------

/// Deterministic pseudo-random weights for every parameter of a design (Netloom layouts).
fn random_weights(g: &Graph) -> Tensors {
    let a = analyze(g);
    let mut t = Tensors::new();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for (id, node) in g.nodes() {
        let input = a.node(id).unwrap().input_shapes.first().copied().flatten();
        let cin = input.map_or(0, |s| s.channels() as usize);
        let shapes: Vec<(&str, Vec<usize>)> = match node.kind {
            LayerKind::Conv2d {
                filters,
                kernel,
                groups,
                bias,
                ..
            } => {
                let mut v = vec![(
                    "weight",
                    vec![
                        kernel[0] as usize,
                        kernel[1] as usize,
                        cin / groups as usize,
                        filters as usize,
                    ],
                )];
                if bias {
                    v.push(("bias", vec![filters as usize]));
                }
                v
            }
            LayerKind::Dense { units, bias } => {
                let n = input.unwrap().elements() as usize;
                let mut v = vec![("weight", vec![n, units as usize])];
                if bias {
                    v.push(("bias", vec![units as usize]));
                }
                v
            }
            LayerKind::BatchNorm { .. } => ["gamma", "beta", "running_mean", "running_var"]
                .into_iter()
                .map(|k| (k, vec![cin]))
                .collect(),
            _ => vec![],
        };
        for (key, shape) in shapes {
            let n = shape.iter().product();
            let values = (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            t.insert(format!("{}.{key}", node.name), (shape, values));
        }
    }
    t
}

#[test]
fn weights_survive_export_and_import_exactly() {
    for g in [
        blocks::lenet5(),
        blocks::resnet_mini(),
        blocks::happy_model(),
    ] {
        let w = random_weights(&g);
        let bytes = onnx::export_bytes(&g, Some(&w)).unwrap();
        let imp = onnx::import_bytes(&bytes, "x").unwrap();
        assert_eq!(imp.weights.len(), w.len(), "{}", g.name);
        for (k, v) in &w {
            assert_eq!(imp.weights.get(k), Some(v), "{}: {k}", g.name);
        }
    }
}

#[test]
fn export_refuses_missing_or_misshapen_weights() {
    let g = blocks::lenet5();
    let mut w = random_weights(&g);
    let key = w.keys().next().unwrap().clone();
    w.get_mut(&key).unwrap().1.pop();
    let err = onnx::export_bytes(&g, Some(&w)).unwrap_err();
    assert!(matches!(err, InteropError::Weights(_)), "{err}");
    assert!(err.to_string().contains(&key), "{err}");
    w.remove(&key);
    let err = onnx::export_bytes(&g, Some(&w)).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

// --- bad files ---------------------------------------------------------------

#[test]
fn bad_files_give_clear_errors() {
    let good = onnx::export_bytes(&blocks::lenet5(), None).unwrap();
    // Truncated.
    let err = onnx::import_bytes(&good[..good.len() / 2], "x").unwrap_err();
    assert!(matches!(err, InteropError::Decode { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    // Not protobuf at all, and an empty file.
    let err = onnx::import_bytes(br#"{"kind": "design"}"#, "x").unwrap_err();
    assert!(
        err.to_string().contains("not a readable ONNX model"),
        "{err}"
    );
    let err = onnx::import_bytes(b"", "x").unwrap_err();
    assert!(err.to_string().contains("no graph"), "{err}");
    // Wrong wire type: field 7 (graph) as a varint.
    let err = onnx::import_bytes(&[0x08, 0x07, 0x38, 0x01], "x").unwrap_err();
    assert!(matches!(err, InteropError::Decode { .. }), "{err}");
    // A weight whose data does not match its dims.
    let mut m = M::new("x", &[1, 1, 4, 4]);
    m.init("w", &[2, 1, 3, 3])
        .node("Conv", "conv", &["x", "w"], vec![])
        .output("conv");
    m.g.initializer[0].float_data.pop();
    let err = onnx::import_bytes(&m.bytes(), "x").unwrap_err();
    assert!(err.to_string().contains("tensor `w`"), "{err}");
    // Cycle.
    let mut m = M::new("x", &[1, 1, 4, 4]);
    m.node("Add", "a", &["x", "b"], vec![])
        .node("Relu", "b", &["a"], vec![])
        .output("b");
    let err = onnx::import_bytes(&m.bytes(), "x").unwrap_err();
    assert!(err.to_string().contains("cycle"), "{err}");
    assert!(
        err.to_string().contains("`a`") && err.to_string().contains("`b`"),
        "{err}"
    );
    // Dangling input.
    let mut m = M::new("x", &[1, 1, 4, 4]);
    m.node("Relu", "r", &["ghost"], vec![]).output("r");
    let err = onnx::import_bytes(&m.bytes(), "x").unwrap_err();
    assert!(err.to_string().contains("`ghost`"), "{err}");
    // Symbolic image size.
    let mut m = M::new("x", &[1, 3, -1, 4]);
    m.node("Relu", "r", &["x"], vec![]).output("r");
    let err = onnx::import_bytes(&m.bytes(), "x").unwrap_err();
    assert!(err.to_string().contains("symbolic"), "{err}");
    // A file that does not exist.
    let err = onnx::import(std::path::Path::new("/nonexistent/model.onnx")).unwrap_err();
    assert!(matches!(err, InteropError::Io { .. }), "{err}");
}

#[test]
fn random_bytes_never_panic() {
    let good = onnx::export_bytes(&blocks::resnet_mini(), None).unwrap();
    let mut state = 12345u64;
    for _ in 0..300 {
        let mut bytes = good.clone();
        for _ in 0..4 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let i = (state >> 33) as usize % bytes.len();
            bytes[i] = (state >> 17) as u8;
        }
        let _ = onnx::import_bytes(&bytes, "x");
    }
}

#[test]
fn vector_inputs_fp16_weights_and_old_style_initializer_inputs() {
    // An MLP on N×10 vectors; the weight is also listed as a graph input (IR < 4 style)
    // and stored as float16.
    let mut m = M::new("v", &[-1, 10]);
    m.g.input.push(vi("fc.w", &[3, 10]));
    m.g.initializer.push(TensorProto {
        name: "fc.w".into(),
        dims: vec![3, 10],
        data_type: 10,
        // 1.0 and -2.0 in IEEE half precision.
        int32_data: (0..30)
            .map(|i| if i % 2 == 0 { 0x3c00 } else { 0xc000 })
            .collect(),
        ..Default::default()
    });
    m.node("Gemm", "fc", &["v", "fc.w"], vec![a1("transB", 1)])
        .node("Relu", "r", &["fc"], vec![])
        .output("r");
    let imp = m.import();
    let g = &imp.graph;
    assert_eq!(
        kind(g, "v"),
        &LayerKind::Input {
            height: 1,
            width: 1,
            channels: 10
        }
    );
    assert_eq!(inputs(g, "fc"), vec!["v_flatten"]);
    assert_eq!(
        kind(g, "fc"),
        &LayerKind::Dense {
            units: 3,
            bias: false
        }
    );
    let (dims, w) = &imp.weights["fc.weight"];
    assert_eq!(dims, &vec![10, 3]);
    assert_eq!((w[0], w[3]), (1.0, -2.0));
    assert!(analyze(g).is_valid());
}

#[test]
fn global_pool_feeding_a_conv_keeps_the_volume() {
    let mut m = M::new("x", &[1, 8, 5, 5]);
    m.node("GlobalAveragePool", "gap", &["x"], vec![])
        .init("w", &[2, 8, 1, 1])
        .node("Conv", "squeeze", &["gap", "w"], vec![])
        .init("ext", &[2, 2, 1, 1])
        .node("Conv", "ext_conv", &["squeeze", "ext"], vec![])
        .output("ext_conv");
    let imp = m.import();
    let g = &imp.graph;
    assert!(matches!(
        kind(g, "gap"),
        LayerKind::AvgPool2d { kernel: [5, 5], .. }
    ));
    let a = analyze(g);
    assert!(a.is_valid(), "{:?}", a.errors());
    assert_eq!(a.totals(&Conventions::default()).macs, 16 + 4);
    assert!(imp.weights.contains_key("squeeze.weight"));
    assert!(imp.weights.contains_key("ext_conv.weight"));
    // A tensor in an external file cannot be found from memory: refused by name.
    m.g.initializer[1].float_data.clear();
    m.g.initializer[1].data_location = 1;
    m.g.initializer[1].external_data = vec![StringStringEntryProto {
        key: "location".into(),
        value: "tiny.onnx.data".into(),
    }];
    let err = onnx::import_bytes(&m.bytes(), "tiny")
        .expect_err("external data from memory")
        .to_string();
    assert!(
        err.contains("`ext`") && err.contains("read from memory"),
        "{err}"
    );
}

/// tf2onnx writes Keras models with an NHWC input and a Transpose to NCHW.
#[test]
fn nhwc_input_with_transpose_reads_as_h_w_c() {
    let mut m = M::new("image", &[-1, 64, 48, 3]);
    m.g.input[0]
        .r#type
        .as_mut()
        .unwrap()
        .tensor_type
        .as_mut()
        .unwrap()
        .elem_type = 2; // uint8
    m.node(
        "Transpose",
        "to_nchw",
        &["image"],
        vec![ai("perm", &[0, 3, 1, 2])],
    )
    .init("w", &[8, 3, 3, 3])
    .node("Conv", "conv", &["to_nchw", "w"], vec![])
    .node(
        "Transpose",
        "back",
        &["conv"],
        vec![ai("perm", &[0, 2, 3, 1])],
    )
    .output("back");
    let imp = m.import();
    assert_eq!(
        kind(&imp.graph, "image"),
        &LayerKind::Input {
            height: 64,
            width: 48,
            channels: 3
        }
    );
    assert_eq!(inputs(&imp.graph, "conv"), vec!["image"]);
    assert!(imp.unsupported.is_empty(), "{:?}", imp.unsupported);
}

/// tf2onnx flattens Keras-style: Transpose to NHWC, then Reshape. That is
/// Netloom's own order, so the Dense rows are taken as they are.
#[test]
fn keras_style_nhwc_flatten_keeps_dense_rows() {
    let mut m = M::new("x", &[1, 2, 3, 3]);
    m.node("Transpose", "t", &["x"], vec![ai("perm", &[0, 2, 3, 1])])
        .ints("target", &[-1, 18])
        .node("Reshape", "flat", &["t", "target"], vec![])
        .init("fc.w", &[18, 4])
        .node("MatMul", "fc", &["flat", "fc.w"], vec![])
        .node("Transpose", "odd", &["t"], vec![ai("perm", &[0, 1, 3, 2])])
        .output("fc")
        .output("odd");
    let imp = m.import();
    assert_eq!(inputs(&imp.graph, "flat"), vec!["x"]);
    let (dims, w) = &imp.weights["fc.weight"];
    assert_eq!(dims, &vec![18, 4]);
    assert_eq!(w, &(0..72).map(|v| v as f32).collect::<Vec<_>>());
    assert_eq!(
        imp.unsupported,
        vec![("Transpose on NHWC data".to_string(), 1)]
    );
    // The same model flattening NCHW directly gets its rows permuted.
    let mut m = M::new("x", &[1, 2, 3, 3]);
    m.ints("target", &[-1, 18])
        .node("Reshape", "flat", &["x", "target"], vec![])
        .init("fc.w", &[18, 4])
        .node("MatMul", "fc", &["flat", "fc.w"], vec![])
        .output("fc");
    let imp = m.import();
    let (_, w) = &imp.weights["fc.weight"];
    // Netloom row 1 is (h=0, w=0, c=1) = framework row 9.
    assert_eq!(w[4..8], [36.0, 37.0, 38.0, 39.0]);
}

/// Older PyTorch exports of `x.view(x.size(0), -1)`: the target shape is computed.
#[test]
fn computed_reshape_is_read_as_flatten() {
    let mut m = M::new("x", &[1, 2, 3, 3]);
    m.node("Shape", "shp", &["x"], vec![])
        .ints("zero", &[0])
        .node("Gather", "n", &["shp", "zero"], vec![a1("axis", 0)])
        .node("Unsqueeze", "n1", &["n", "zero"], vec![])
        .ints("minus1", &[-1])
        .node("Concat", "target", &["n1", "minus1"], vec![a1("axis", 0)])
        .node("Reshape", "flat", &["x", "target"], vec![])
        .init("fc.w", &[18, 4])
        .node("MatMul", "fc", &["flat", "fc.w"], vec![])
        .output("fc");
    let imp = m.import();
    assert!(imp.unsupported.is_empty(), "{:?}", imp.unsupported);
    assert_eq!(inputs(&imp.graph, "fc"), vec!["flat"]);
    assert!(matches!(kind(&imp.graph, "flat"), LayerKind::Flatten));
    assert_eq!(imp.graph.len(), 3);
    assert!(imp.warnings.iter().any(|w| w.contains("computed")));
}

/// Weights given as shapes only (the ONNX test suite's "light" models):
/// ConstantOfShape, a Reshape of a constant, BN parameters as graph inputs,
/// and a caffe2-style per-channel Mul/Add (one ChannelAffine, constants
/// with no parameters).
#[test]
fn weights_from_constant_of_shape_and_reshaped_constants() {
    let mut m = M::new("x", &[1, 3, 8, 8]);
    m.g.input.push(vi("bn.s", &[4]));
    m.ints("w_shape", &[4, 27])
        .node("ConstantOfShape", "w_flat", &["w_shape"], vec![])
        .ints("w_dims", &[4, 3, 3, 3])
        .node("Reshape", "w", &["w_flat", "w_dims"], vec![])
        .init("conv.b", &[4])
        .node(
            "Conv",
            "conv",
            &["x", "w", "conv.b"],
            vec![ai("pads", &[1, 1, 1, 1])],
        )
        .node(
            "BatchNormalization",
            "bn",
            &["conv", "bn.s", "bn.s", "bn.s", "bn.s"],
            vec![],
        )
        .init("scale", &[1, 4, 1, 1])
        .node("Mul", "scaled", &["bn", "scale"], vec![])
        .node("Add", "shifted", &["scaled", "scale"], vec![])
        .node("GlobalAveragePool", "gap", &["shifted"], vec![])
        .node("Flatten", "flat", &["gap"], vec![])
        .output("flat");
    let imp = m.import();
    let a = analyze(&imp.graph);
    assert!(a.is_valid(), "{:?}", a.errors());
    let t = a.totals(&Conventions::default());
    assert_eq!(t.total_params, 4 * 27 + 4 + 4 * 4);
    assert_eq!(t.macs, 8 * 8 * 4 * 27);
    assert!(imp.unsupported.is_empty(), "{:?}", imp.unsupported);
    // Mul then Add, folded into one layer named after the Add.
    assert_eq!(inputs(&imp.graph, "shifted"), vec!["bn"]);
    assert_eq!(
        kind(&imp.graph, "shifted"),
        &LayerKind::ChannelAffine {
            scale: vec![0.0, 1.0, 2.0, 3.0],
            shift: vec![0.0, 1.0, 2.0, 3.0],
        }
    );
    assert!(imp.graph.find("scaled").is_none());
    assert!(
        !imp.weights
            .keys()
            .any(|k| k.starts_with("scaled") || k.starts_with("shifted")),
        "{:?}",
        imp.weights.keys()
    );
    // The conv's weight and the BatchNorm's values are not in the file (its
    // bias is): said, by tensor.
    let missing: Vec<&str> = imp.deviations.iter().map(|d| d.node.as_str()).collect();
    assert_eq!(
        missing,
        ["conv", "bn", "bn", "bn", "bn"],
        "{:?}",
        imp.deviations
    );
}

/// A normalisation `(x − mean) / std` by per-channel constants is one
/// ChannelAffine; a value read twice is not folded into; `k / x` is refused.
#[test]
fn constant_sub_and_div_become_one_channel_affine() {
    let mut m = M::new("x", &[1, 2, 3, 3]);
    m.init("mean", &[1, 2, 1, 1])
        .init("std", &[2, 1, 1])
        .node("Sub", "centred", &["x", "mean"], vec![])
        .node("Div", "normed", &["centred", "std"], vec![])
        .output("normed");
    m.g.initializer
        .iter_mut()
        .find(|t| t.name == "std")
        .unwrap()
        .float_data = vec![0.5, 4.0];
    let imp = m.import();
    assert!(imp.is_faithful(), "{:?}", imp.deviations);
    assert_eq!(imp.graph.len(), 2, "input and one layer");
    // mean (0, 1), std (0.5, 4): x·2 − 0 and x/4 − 1/4.
    assert_eq!(
        kind(&imp.graph, "normed"),
        &LayerKind::ChannelAffine {
            scale: vec![2.0, 0.25],
            shift: vec![0.0, -0.25],
        }
    );

    // `centred` also feeds the output: the Div is a layer of its own.
    let mut m = M::new("x", &[1, 2, 3, 3]);
    m.init("k", &[1, 2, 1, 1])
        .node("Sub", "centred", &["k", "x"], vec![])
        .node("Mul", "scaled", &["centred", "k"], vec![])
        .node("Add", "sum", &["centred", "scaled"], vec![])
        .output("sum");
    let imp = m.import();
    assert!(imp.is_faithful(), "{:?}", imp.deviations);
    assert_eq!(
        kind(&imp.graph, "centred"),
        &LayerKind::ChannelAffine {
            scale: vec![-1.0, -1.0],
            shift: vec![0.0, 1.0],
        }
    );
    assert_eq!(inputs(&imp.graph, "scaled"), vec!["centred"]);
    assert_eq!(inputs(&imp.graph, "sum"), vec!["centred", "scaled"]);

    let mut m = M::new("x", &[1, 2, 3, 3]);
    m.init("k", &[1, 2, 1, 1])
        .node("Div", "inverse", &["k", "x"], vec![])
        .output("inverse");
    let imp = m.import();
    assert!(!imp.is_faithful());
    assert_eq!(imp.deviations[0].what, "Div", "{:?}", imp.deviations);
}

/// `Gemm` with `transB` 0, `alpha` and `beta`: Y = alpha·X·B + beta·C.
#[test]
fn gemm_without_trans_b_scales_weights_and_bias() {
    let mut m = M::new("x", &[1, 3]);
    m.init("b", &[3, 2])
        .init("c", &[2])
        .node(
            "Gemm",
            "fc",
            &["x", "b", "c"],
            vec![af("alpha", 2.0), af("beta", 0.5), a1("transB", 0)],
        )
        .output("fc");
    let imp = m.import();
    assert!(imp.is_faithful(), "{:?}", imp.deviations);
    // Netloom's dense layout is [in][out], as B is here: 2·B.
    assert_eq!(
        imp.weights["fc.weight"].1,
        vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    );
    assert_eq!(imp.weights["fc.bias"].1, vec![0.0, 0.5]);
}

/// GoogLeNet's `transform_input`: channels picked one by one, scaled and
/// shifted, put back together — a ChannelAffine (no parameters, as in
/// torch), only when all of them come back in order.
#[test]
fn per_channel_transform_of_the_input() {
    let build = |order: [&str; 2]| {
        let mut m = M::new("x", &[1, 2, 3, 3]);
        m.ints("i0", &[0])
            .ints("i1", &[1])
            .node("Gather", "g0", &["x", "i0"], vec![a1("axis", 1)])
            .node("Gather", "g1", &["x", "i1"], vec![a1("axis", 1)])
            .init("k", &[1])
            .init("two", &[])
            .node("Mul", "m0", &["g0", "k"], vec![])
            .node("Add", "a1", &["two", "g1"], vec![])
            .node("Concat", "cat", &order, vec![a1("axis", 1)])
            .output("cat");
        m.g.initializer
            .iter_mut()
            .find(|t| t.name == "two")
            .unwrap()
            .float_data = vec![2.0];
        m.import()
    };
    let imp = build(["m0", "a1"]);
    assert!(imp.is_faithful(), "{:?}", imp.deviations);
    // `k` holds 0: channel 0 × 0; channel 1 × 1 + 2.
    assert_eq!(
        kind(&imp.graph, "cat"),
        &LayerKind::ChannelAffine {
            scale: vec![0.0, 1.0],
            shift: vec![0.0, 2.0],
        }
    );
    assert!(imp.weights.is_empty(), "{:?}", imp.weights.keys());
    let imp = build(["a1", "m0"]);
    assert!(!imp.is_faithful());
    assert!(
        imp.deviations[0].what.contains("not all in order"),
        "{:?}",
        imp.deviations
    );
}

/// torch.onnx (≥ 1.13) scopes node names; layers take their module path.
#[test]
fn pytorch_scoped_names_become_module_paths() {
    let mut m = M::new("input", &[1, 3, 4, 4]);
    m.init("layer1.0.conv1.weight", &[2, 3, 1, 1])
        .node(
            "Conv",
            "/layer1/layer1.0/conv1/Conv",
            &["input", "layer1.0.conv1.weight"],
            vec![],
        )
        .node(
            "Relu",
            "/layer1/layer1.0/relu/Relu",
            &["/layer1/layer1.0/conv1/Conv"],
            vec![],
        )
        .output("/layer1/layer1.0/relu/Relu");
    let imp = m.import();
    assert!(imp.graph.find("layer1.0.conv1").is_some());
    assert!(imp.graph.find("layer1/layer1.0/relu/Relu").is_some());
    assert!(imp.weights.contains_key("layer1.0.conv1.weight"));
}

// --- the layer kinds of MobileNet, EfficientNet and Inception-v3 --------------

/// A float initializer of one value (`dims` empty: a scalar).
fn scalar(m: &mut M, name: &str, v: f32) {
    m.g.initializer.push(TensorProto {
        name: name.into(),
        dims: vec![],
        data_type: 1,
        float_data: vec![v],
        ..Default::default()
    });
}

fn kinds(g: &Graph) -> Vec<String> {
    g.nodes().map(|(_, n)| n.kind.tag().to_string()).collect()
}

/// The deviations' `what`s.
fn refused(imp: &onnx::Imported) -> Vec<String> {
    imp.deviations.iter().map(|d| d.what.clone()).collect()
}

#[test]
fn clip_zero_to_six_is_relu6_and_other_ranges_are_refused() {
    // Opset 13: bounds as initializers (dynamo) or Constant nodes (legacy).
    let mut m = M::new("x", &[1, 4, 6, 6]);
    scalar(&mut m, "lo", 0.0);
    scalar(&mut m, "hi", 6.0);
    m.node("Clip", "r6", &["x", "lo", "hi"], vec![])
        .node("Constant", "c0", &[], vec![af("value_float", 0.0)])
        .node("Constant", "c6", &[], vec![af("value_float", 6.0)])
        .node("Clip", "r6b", &["r6", "c0", "c6"], vec![])
        .node("Clip", "relu", &["r6b", "lo"], vec![])
        .output("relu");
    let imp = m.import();
    assert!(imp.is_faithful(), "{:?}", imp.deviations);
    assert_eq!(kind(&imp.graph, "r6"), &LayerKind::Relu6);
    assert_eq!(kind(&imp.graph, "r6b"), &LayerKind::Relu6);
    // No upper bound: ReLU exactly.
    assert_eq!(kind(&imp.graph, "relu"), &LayerKind::Relu);
    // Opset 6: attributes.
    let mut m = M::new("x", &[1, 4, 6, 6]);
    m.opset = 6;
    m.node("Clip", "r6", &["x"], vec![af("min", 0.0), af("max", 6.0)])
        .output("r6");
    assert_eq!(kind(&m.import().graph, "r6"), &LayerKind::Relu6);
    // Any other range is named, with its bounds.
    let mut m = M::new("x", &[1, 4, 6, 6]);
    scalar(&mut m, "lo", 0.0);
    scalar(&mut m, "hi", 1.0);
    m.node("Clip", "c01", &["x", "lo", "hi"], vec![])
        .output("c01");
    let imp = m.import();
    assert_eq!(refused(&imp), ["Clip (min 0, max 1)"]);
    // Bounds computed from data cannot be mapped.
    let mut m = M::new("x", &[1, 4, 6, 6]);
    m.node("ReduceMean", "mean", &["x"], vec![ai("axes", &[1, 2, 3])])
        .node("Clip", "cx", &["x", "mean"], vec![])
        .output("cx");
    let imp = m.import();
    assert!(
        refused(&imp).contains(&"Clip (bounds not constant)".to_string()),
        "{:?}",
        imp.deviations
    );
}

#[test]
fn hard_sigmoid_with_pytorchs_constants_and_hard_swish() {
    let mut m = M::new("x", &[1, 4, 6, 6]);
    m.opset = 14;
    // The legacy exporter leaves beta at its default, 0.5.
    m.node("HardSigmoid", "hs", &["x"], vec![af("alpha", 1.0 / 6.0)])
        .node(
            "HardSigmoid",
            "hs2",
            &["hs"],
            vec![af("alpha", 1.0 / 6.0), af("beta", 0.5)],
        )
        .node("HardSwish", "hw", &["hs2"], vec![])
        .output("hw");
    let imp = m.import();
    assert!(imp.is_faithful(), "{:?}", imp.deviations);
    assert_eq!(kind(&imp.graph, "hs"), &LayerKind::HardSigmoid);
    assert_eq!(kind(&imp.graph, "hs2"), &LayerKind::HardSigmoid);
    assert_eq!(kind(&imp.graph, "hw"), &LayerKind::HardSwish);
    // ONNX's default slope (0.2) is not PyTorch's hard sigmoid.
    let mut m = M::new("x", &[1, 4, 6, 6]);
    m.node("HardSigmoid", "hs", &["x"], vec![]).output("hs");
    assert_eq!(refused(&m.import()), ["HardSigmoid (alpha 0.2, beta 0.5)"]);
}

#[test]
fn sigmoid_times_its_input_is_silu_and_hard_sigmoid_times_its_input_hard_swish() {
    // x · sigmoid(x), in both operand orders, and x · hard_sigmoid(x).
    let mut m = M::new("x", &[1, 4, 6, 6]);
    m.node("Relu", "r", &["x"], vec![])
        .node("Sigmoid", "s", &["r"], vec![])
        .node("Mul", "silu", &["r", "s"], vec![])
        .node("Sigmoid", "s2", &["silu"], vec![])
        .node("Mul", "silu2", &["s2", "silu"], vec![])
        .node("HardSigmoid", "h", &["silu2"], vec![af("alpha", 1.0 / 6.0)])
        .node("Mul", "hswish", &["silu2", "h"], vec![])
        .output("hswish");
    let imp = m.import();
    assert!(imp.is_faithful(), "{:?}", imp.deviations);
    let g = &imp.graph;
    assert_eq!(kinds(g), ["input", "relu", "silu", "silu", "hard_swish"]);
    // The gate layer became the activation, named after the Mul and reading
    // its other operand.
    assert_eq!(inputs(g, "silu"), ["r"]);
    assert_eq!(inputs(g, "silu2"), ["silu"]);
    assert_eq!(kind(g, "hswish"), &LayerKind::HardSwish);
    assert!(g.find("s").is_none());
    // A sigmoid that is also used on its own stays, and SiLU is added beside it.
    let mut m = M::new("x", &[1, 4, 6, 6]);
    m.node("Sigmoid", "s", &["x"], vec![])
        .node("Mul", "silu", &["x", "s"], vec![])
        .node("Add", "sum", &["silu", "s"], vec![])
        .output("sum");
    let imp = m.import();
    assert!(imp.is_faithful(), "{:?}", imp.deviations);
    assert_eq!(kind(&imp.graph, "s"), &LayerKind::Sigmoid);
    assert_eq!(kind(&imp.graph, "silu"), &LayerKind::Silu);
    assert_eq!(inputs(&imp.graph, "silu"), ["x"]);
    assert_eq!(inputs(&imp.graph, "sum"), ["silu", "s"]);
    // A sigmoid of something else times x is no activation Netloom has.
    let mut m = M::new("x", &[1, 4, 6, 6]);
    m.node("Relu", "r", &["x"], vec![])
        .node("Sigmoid", "s", &["r"], vec![])
        .node("Mul", "m", &["x", "s"], vec![])
        .output("m");
    assert_eq!(refused(&m.import()), ["Mul (of two tensors)"]);
}

/// torchvision's `SqueezeExcitation` as both exporters write it: pool,
/// 1×1 conv, ReLU, 1×1 conv, Sigmoid, then `Mul(gate, x)`.
#[test]
fn squeeze_and_excitation_gate_is_a_channel_scale() {
    for (pool, gate) in [
        ("GlobalAveragePool", "Sigmoid"),
        ("ReduceMean", "HardSigmoid"),
    ] {
        let mut m = M::new("x", &[1, 8, 5, 5]);
        m.opset = 18;
        m.node("Relu", "r", &["x"], vec![]);
        if pool == "ReduceMean" {
            m.ints("axes", &[-1, -2])
                .node(pool, "pool", &["r", "axes"], vec![a1("keepdims", 1)]);
        } else {
            m.node(pool, "pool", &["r"], vec![]);
        }
        let gate_attrs = if gate == "HardSigmoid" {
            vec![af("alpha", 1.0 / 6.0)]
        } else {
            vec![]
        };
        m.init("fc1.weight", &[2, 8, 1, 1])
            .init("fc1.bias", &[2])
            .node("Conv", "fc1", &["pool", "fc1.weight", "fc1.bias"], vec![])
            .node("Relu", "act", &["fc1"], vec![])
            .init("fc2.weight", &[8, 2, 1, 1])
            .init("fc2.bias", &[8])
            .node("Conv", "fc2", &["act", "fc2.weight", "fc2.bias"], vec![])
            .node(gate, "gate", &["fc2"], gate_attrs)
            .node("Mul", "scale", &["gate", "r"], vec![])
            .output("scale");
        let imp = m.import();
        assert!(imp.is_faithful(), "{pool}: {:?}", imp.deviations);
        let g = &imp.graph;
        assert_eq!(kind(g, "scale"), &LayerKind::ChannelScale, "{pool}");
        assert_eq!(inputs(g, "scale"), ["r", "gate"], "{pool}");
        let a = analyze(g);
        assert!(a.is_valid(), "{pool}: {:?}", a.errors());
        let out = a.node(g.find("scale").unwrap()).unwrap().output_shape;
        assert_eq!(out, Some(Shape::Volume { h: 5, w: 5, c: 8 }), "{pool}");
    }
    // Two volumes of one shape: an element-wise product Netloom has no layer for.
    let mut m = M::new("x", &[1, 4, 6, 6]);
    m.node("Relu", "r", &["x"], vec![])
        .node("Tanh", "t", &["x"], vec![])
        .node("Mul", "m", &["r", "t"], vec![])
        .output("m");
    assert_eq!(refused(&m.import()), ["Mul (of two tensors)"]);
}

#[test]
fn average_pool_counting_padding_and_dilated_conv() {
    let mut m = M::new("x", &[1, 3, 16, 16]);
    let window = |pads: i64| {
        vec![
            ai("kernel_shape", &[3, 3]),
            ai("strides", &[1, 1]),
            ai("pads", &[pads; 4]),
            a1("count_include_pad", 1),
        ]
    };
    m.node("AveragePool", "incl", &["x"], window(1))
        .node("AveragePool", "nopad", &["incl"], window(0))
        .init("w", &[8, 3, 3, 3])
        .node(
            "Conv",
            "dil",
            &["nopad", "w"],
            vec![ai("dilations", &[2, 3]), ai("pads", &[2, 3, 2, 3])],
        )
        .output("dil");
    let imp = m.import();
    assert!(imp.is_faithful(), "{:?}", imp.deviations);
    let g = &imp.graph;
    assert!(
        matches!(
            kind(g, "incl"),
            LayerKind::AvgPool2d {
                include_padding: true,
                ..
            }
        ),
        "{:?}",
        kind(g, "incl")
    );
    // Without padding there is nothing to count.
    assert!(matches!(
        kind(g, "nopad"),
        LayerKind::AvgPool2d {
            include_padding: false,
            ..
        }
    ));
    let LayerKind::Conv2d {
        dilation, padding, ..
    } = kind(g, "dil")
    else {
        panic!("dil is a conv")
    };
    assert_eq!(*dilation, [2, 3]);
    assert_eq!(*padding, Padding::Explicit([2, 2, 3, 3]));
    let a = analyze(g);
    assert!(a.is_valid(), "{:?}", a.errors());
    let out = a.node(g.find("dil").unwrap()).unwrap().output_shape;
    // 14×14 after the unpadded pool; the dilated 3×3 spans 5×7, padded to fit.
    assert_eq!(out, Some(Shape::Volume { h: 14, w: 14, c: 8 }));
}

/// Both exporters fold an eval-mode BatchNorm into the conv before it; the
/// import restores it (same function, PyTorch's parameter count) unless asked
/// to keep the file's convs.
#[test]
fn batchnorm_folded_by_the_exporters_is_restored() {
    let model = |weight: &str, bias: &str| {
        let mut m = M::new("x", &[1, 3, 6, 6]);
        m.init(weight, &[4, 3, 3, 3])
            .init(bias, &[4])
            .node("Conv", "c", &["x", weight, bias], vec![])
            .node("Relu", "r", &["c"], vec![])
            .output("r");
        m
    };
    for (weight, bias) in [
        ("onnx::Conv_21", "onnx::Conv_22"),
        ("conv.weight", "conv.weight_bias"),
    ] {
        let imp = model(weight, bias).import();
        assert!(imp.is_faithful(), "{weight}: {:?}", imp.deviations);
        let g = &imp.graph;
        assert!(
            matches!(kind(g, "c"), LayerKind::Conv2d { bias: false, .. }),
            "{weight}"
        );
        assert!(matches!(kind(g, "c.bn"), LayerKind::BatchNorm { .. }));
        assert_eq!(inputs(g, "c.bn"), ["c"]);
        assert_eq!(inputs(g, "r"), ["c.bn"]);
        assert_eq!(imp.weights["c.bn.gamma"].1, vec![1.0; 4]);
        assert_eq!(imp.weights["c.bn.beta"].1, vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(imp.weights["c.bn.running_mean"].1, vec![0.0; 4]);
        assert_eq!(imp.weights["c.bn.running_var"].1, vec![1.0 - 1e-5; 4]);
        assert!(!imp.weights.contains_key("c.bias"));
        assert!(
            imp.warnings.iter().any(|w| w.contains("1 BatchNorm")),
            "{:?}",
            imp.warnings
        );
        // PyTorch's count: 108 conv weights + γ and β of 4 channels.
        let torch_style = netloom::infer::Conventions {
            params: netloom::infer::ParamStyle::PyTorch,
            ..Conventions::default()
        };
        assert_eq!(analyze(g).totals(&torch_style).total_params, 108 + 8);
        // Kept as the file has it when asked.
        let kept = onnx::import_bytes_with_options(
            &model(weight, bias).bytes(),
            "tiny",
            &onnx::ImportOptions {
                restore_batchnorm: false,
            },
        )
        .expect("imports");
        assert!(matches!(
            kind(&kept.graph, "c"),
            LayerKind::Conv2d { bias: true, .. }
        ));
        assert!(kept.graph.find("c.bn").is_none());
    }
    // A conv's own bias keeps its module name: nothing to restore.
    let imp = model("conv.weight", "conv.bias").import();
    assert!(matches!(
        kind(&imp.graph, "c"),
        LayerKind::Conv2d { bias: true, .. }
    ));
    assert!(imp.graph.find("c.bn").is_none());
}

// --- the committed fixtures: what PyTorch's two exporters write --------------

mod fixtures {
    use netloom::infer::{Conventions, ParamStyle, analyze};
    use netloom::interop::onnx;
    use netloom::train::{Mode, Plan};
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// Files whose import is refused (exit 2, naming what it could not do).
    /// Every other fixture must import faithfully: exit 0, torch's parameter
    /// count (BatchNorm folded by the exporter restored; see
    /// [`PARAMS_BEYOND_TORCH`]) and Netloom's own forward within 1e-4 of
    /// torch's output.
    const REFUSED: &[&str] = &[];

    /// Where the design's parameter count is not torch's `sum(p.numel())`
    /// (`torch_params`), by how much and why.
    const PARAMS_BEYOND_TORCH: &[(&str, i64, &str)] = &[
        (
            "shared_initializers.dynamo.onnx",
            584,
            "a conv applied twice is one copy per use in the design (576 more than torch; the file has them so too), plus the restored BatchNorm's 2·8 for its 8 folded biases",
        ),
        ("shared_initializers.legacy.onnx", 584, "as the dynamo file"),
        (
            "zero_biases.dynamo.onnx",
            -16,
            "the dynamo exporter drops all-zero conv biases (2 convs × 8): not in the file, so not in the design",
        ),
    ];
    fn dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
    }

    struct Fixture {
        file: String,
        onnx_params: i64,
        torch_params: i64,
        io: String,
    }

    fn manifest() -> Vec<Fixture> {
        let text = std::fs::read_to_string(dir().join("MANIFEST.json")).expect("MANIFEST.json");
        let root: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
        root["fixtures"]
            .as_array()
            .expect("fixtures array")
            .iter()
            .map(|f| Fixture {
                file: f["file"].as_str().expect("file").to_string(),
                onnx_params: f["onnx_params"].as_i64().expect("onnx_params"),
                torch_params: f["torch_params"].as_i64().expect("torch_params"),
                io: f["io_file"].as_str().expect("io_file").to_string(),
            })
            .collect()
    }

    /// `input` (N·C·H·W, returned as NHWC) and `expected` of an io file.
    fn io(name: &str) -> (Vec<f32>, Vec<f32>) {
        let bytes = std::fs::read(dir().join(name)).expect("io file");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        let read = |key: &str| {
            let t = st.tensor(key).expect(key);
            let v: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (t.shape().to_vec(), v)
        };
        let (shape, nchw) = read("input");
        let [n, c, h, w] = shape[..] else {
            panic!("{name}: input shape {shape:?}")
        };
        let mut nhwc = vec![0.0; nchw.len()];
        for b in 0..n {
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        nhwc[((b * h + y) * w + x) * c + ch] = nchw[((b * c + ch) * h + y) * w + x];
                    }
                }
            }
        }
        (nhwc, read("expected").1)
    }

    /// Netloom's evaluation forward of an import on `input`: the output layer's values.
    fn forward(imported: &onnx::Imported, input: &[f32]) -> Vec<f32> {
        let g = &imported.graph;
        let analysis = analyze(g);
        let mut plan = Plan::compile(g, &analysis, 1, 0).expect("compiles");
        for p in &mut plan.params {
            let (shape, data) = imported
                .weights
                .get(&p.name)
                .unwrap_or_else(|| panic!("`{}` imported", p.name));
            assert_eq!(shape, &p.shape, "`{}`", p.name);
            p.data.copy_from_slice(data);
        }
        let outputs: Vec<_> = g
            .node_ids()
            .filter(|&id| g.edges().iter().all(|e| e.from != id))
            .collect();
        assert_eq!(outputs.len(), 1, "one output layer");
        let last = plan.step_of(g.name_of(outputs[0])).expect("output step");
        plan.forward_through(input, last, Mode::Eval);
        plan.activation(last).to_vec()
    }

    fn max_relative(a: &[f32], b: &[f32]) -> f64 {
        let scale = b.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
        let diff = a
            .iter()
            .zip(b)
            .fold(0.0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
        diff / scale.max(1e-30)
    }

    /// What one fixture's import gives: `Ok(params, max relative difference)`
    /// when faithful, else the deviations.
    fn check(f: &Fixture) -> Result<(i64, f64), String> {
        let imported = onnx::import(&dir().join(&f.file)).map_err(|e| format!("error: {e}"))?;
        if !imported.is_faithful() {
            return Err(imported.deviation_list(3));
        }
        let analysis = analyze(&imported.graph);
        if !analysis.is_valid() {
            return Err(analysis.error_summary(&imported.graph, 3));
        }
        // PyTorch's convention: BatchNorm running statistics are buffers, as
        // in the file's own count.
        let torch_style = Conventions {
            params: ParamStyle::PyTorch,
            ..Conventions::default()
        };
        let params = analysis.totals(&torch_style).total_params as i64;
        let (input, expected) = io(&f.io);
        let got = forward(&imported, &input);
        assert_eq!(got.len(), expected.len(), "{}: output size", f.file);
        Ok((params, max_relative(&got, &expected)))
    }

    /// `netloom import FILE -o d.json --weights w.safetensors [extra]` in `out`.
    fn netloom_import(file: &str, out: &Path, extra: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_netloom"))
            .arg("import")
            .arg(dir().join(file))
            .arg("-o")
            .arg(out.join("d.json"))
            .arg("--weights")
            .arg(out.join("w.safetensors"))
            .args(extra)
            .output()
            .expect("netloom runs")
    }

    /// The command line agrees with the library: exit 0 and a design for a
    /// faithful import, exit 2 naming every deviation and nothing written
    /// otherwise.
    fn check_cli(f: &Fixture, faithful: &Result<(i64, f64), String>, problems: &mut Vec<String>) {
        let out = tempfile::tempdir().expect("temp dir");
        let run = netloom_import(&f.file, out.path(), &[]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        let code = run.status.code();
        let written = out.path().join("d.json").exists();
        match faithful {
            Ok(_) if code != Some(0) || !written => {
                problems.push(format!("{}: `netloom import` exit {code:?}: {stderr}", f.file))
            }
            Err(why) if code != Some(2) || written || !stderr.contains(why.lines().next().unwrap_or("?").trim_start_matches("  - ")) => {
                problems.push(format!(
                    "{}: refused import gave exit {code:?}, design written {written}, stderr: {stderr}",
                    f.file
                ))
            }
            _ => {}
        }
    }

    /// A model with a `Clip` to [0, 1], which no Netloom layer computes.
    fn write_unfaithful_model(dir: &Path) -> PathBuf {
        let mut m = super::M::new("x", &[1, 3, 8, 8]);
        super::scalar(&mut m, "lo", 0.0);
        super::scalar(&mut m, "hi", 1.0);
        m.init("conv.weight", &[4, 3, 3, 3])
            .node("Conv", "conv", &["x", "conv.weight"], vec![])
            .node("Clip", "clip", &["conv", "lo", "hi"], vec![])
            .output("clip");
        let path = dir.join("clip01.onnx");
        std::fs::write(&path, m.bytes()).expect("write model");
        path
    }

    #[test]
    fn allow_partial_writes_a_marked_design() {
        let out = tempfile::tempdir().expect("temp dir");
        let model = write_unfaithful_model(out.path());
        let model = model.to_str().expect("utf-8 path");
        let run = netloom_import(model, out.path(), &[]);
        assert_eq!(run.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            stderr.contains("Clip (min 0, max 1)") && stderr.contains("--allow-partial"),
            "{stderr}"
        );
        assert!(!out.path().join("d.json").exists());
        let run = netloom_import(model, out.path(), &["--allow-partial"]);
        assert_eq!(run.status.code(), Some(0));
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            stderr.contains("PARTIAL import") && stderr.contains("Clip"),
            "{stderr}"
        );
        let text = std::fs::read_to_string(out.path().join("d.json")).expect("design");
        assert!(
            text.contains("\"note\": \"Partial import") && text.contains("Clip"),
            "{text}"
        );
        let g = netloom::graph::file::load(&out.path().join("d.json")).expect("loads");
        assert!(g.name.ends_with(onnx::PARTIAL_MARK), "{}", g.name);
        assert!(out.path().join("w.safetensors").exists());
    }

    /// `--keep-folded-batchnorm` keeps the file's convs: the file's own count.
    #[test]
    fn keep_folded_batchnorm_writes_the_files_convs() {
        let out = tempfile::tempdir().expect("temp dir");
        for (flag, layers) in [(None, 7), (Some("--keep-folded-batchnorm"), 6)] {
            let run = netloom_import("conv_bn_relu.legacy.onnx", out.path(), flag.as_slice());
            let stderr = String::from_utf8_lossy(&run.stderr);
            assert_eq!(run.status.code(), Some(0), "{stderr}");
            assert_eq!(
                stderr.contains("BatchNorm layer(s) restored"),
                flag.is_none(),
                "{stderr}"
            );
            let g = netloom::graph::file::load(&out.path().join("d.json")).expect("loads");
            let bn = g
                .nodes()
                .filter(|(_, n)| matches!(n.kind, netloom::graph::LayerKind::BatchNorm { .. }))
                .count();
            assert_eq!((g.len(), bn), (layers, layers - 6), "{flag:?}");
        }
    }

    #[test]
    fn every_fixture_imports_faithfully_or_is_refused() {
        let mut problems = Vec::new();
        let mut table = Vec::new();
        let mut faithful = 0;
        let all = manifest();
        for f in &all {
            let expect_faithful = !REFUSED.contains(&f.file.as_str());
            let beyond = PARAMS_BEYOND_TORCH
                .iter()
                .find(|(file, _, _)| *file == f.file)
                .map_or(0, |(_, extra, _)| *extra);
            let result = check(f);
            check_cli(f, &result, &mut problems);
            match result {
                Ok((params, diff)) => {
                    table.push(format!(
                        "{:<40} faithful  params {params} (file {}, torch {})  max rel diff {diff:.2e}",
                        f.file, f.onnx_params, f.torch_params
                    ));
                    faithful += 1;
                    if !expect_faithful {
                        problems.push(format!("{}: faithful now; take it out of REFUSED", f.file));
                    }
                    if params != f.torch_params + beyond {
                        problems.push(format!(
                            "{}: {params} params, expected {} (torch's {} + {beyond})",
                            f.file,
                            f.torch_params + beyond,
                            f.torch_params
                        ));
                    }
                    if diff > 1e-4 || diff.is_nan() {
                        problems.push(format!(
                            "{}: output differs by {diff:.3e} (relative)",
                            f.file
                        ));
                    }
                }
                Err(why) => {
                    table.push(format!(
                        "{:<40} refused   {}",
                        f.file,
                        why.lines().next().unwrap_or("")
                    ));
                    if expect_faithful {
                        problems.push(format!("{}: refused:\n{why}", f.file));
                    }
                }
            }
        }
        println!("{}", table.join("\n"));
        println!(
            "{faithful} of {} fixtures faithful, {} refused",
            all.len(),
            all.len() - faithful
        );
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}

// --- transfer learning from an imported model --------------------------------

/// The course's recipe on a torchvision architecture: import ResNet-18 (width
/// reduced, with its weights), lock everything but the classifier, train a
/// new head on an image folder (8×8 PNGs, resized to the 32×32 input).
#[test]
fn transfer_learning_from_an_imported_resnet18() {
    use netloom::train::trainer::{DataSource, RunEnd, TrainConfig};
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx/resnet18_mini.legacy.onnx");
    let imported = onnx::import(&model).expect("imports");
    assert!(imported.is_faithful(), "{:?}", imported.deviations);
    let dir = tempfile::tempdir().expect("temp dir");
    let weights = dir.path().join("resnet18.safetensors");
    let list: Vec<(String, Vec<usize>, &[f32])> = imported
        .weights
        .iter()
        .map(|(n, (shape, data))| (n.clone(), shape.clone(), data.as_slice()))
        .collect();
    let bytes = netloom::train::weights::to_safetensors(&list, None).expect("safetensors");
    std::fs::write(&weights, bytes).expect("write weights");
    let images = dir.path().join("images");
    common::write_png_folder(&images);

    let g = imported.graph.clone();
    let head = g
        .nodes()
        .filter(|(_, n)| matches!(n.kind, LayerKind::Dense { .. }))
        .map(|(_, n)| n.name.clone())
        .last()
        .expect("a classifier");
    let backbone: Vec<String> = g
        .nodes()
        .filter(|(_, n)| n.kind.has_weights() && n.name != head)
        .map(|(_, n)| n.name.clone())
        .collect();
    let mut c = TrainConfig::new(g, DataSource::Path(images));
    c.init_weights = Some(weights);
    c.freeze = backbone.clone();
    c.epochs = 6;
    c.batch_size = 16;
    c.seed = 3;
    c.autostart = true;
    c.optimizer.learning_rate = 0.05;
    let (_, out) = common::run(c);
    assert_eq!(out.end, RunEnd::Finished);

    // The locked backbone is exactly the imported model.
    let mut checked = 0;
    for p in out.params.iter().filter(|p| backbone.contains(&p.layer)) {
        let (_, want) = &imported.weights[&p.name];
        assert_eq!(&p.data, want, "`{}` changed", p.name);
        checked += 1;
    }
    // Every imported tensor but the head's weight and bias.
    assert_eq!(checked, imported.weights.len() - 2);
    // The new head (resized to the folder's 3 classes) learned.
    let first = out.history.first().expect("epochs").train_loss;
    let last = out.history.last().expect("epochs").train_loss;
    assert!(last < 0.8 * first, "train loss {first} -> {last}");
    let test = out.test.expect("test split");
    println!(
        "{} backbone tensors locked; train loss {first:.4} -> {last:.4} over {} epochs; test accuracy {:.3}",
        checked,
        out.history.len(),
        test.test_acc
    );
    assert!(test.test_acc > 0.6, "test accuracy {}", test.test_acc);
}
