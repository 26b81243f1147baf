//! The library's array boundary: ndarray batches in, ndarray results out,
//! shapes checked against the plan (LeNet-5, 32×32×1, 10 classes).

use ndarray::{Array1, Array4, Axis, s};
use netloom::data::{Dataset, Shape};
use netloom::graph::file;
use netloom::infer::analyze;
use netloom::kernels::misc::SplitMix64;
use netloom::train::arrays::nhwc_from_nchw;
use netloom::train::{ArrayError, Mode, Optimizer, OptimizerConfig, OptimizerKind, Plan, Schedule};

const BATCH: usize = 4;

fn lenet() -> Plan {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/lenet5.json");
    let graph = file::load(&path).expect("LeNet-5 preset");
    Plan::compile(&graph, &analyze(&graph), BATCH, 7).expect("compiles")
}

fn batch(n: usize, seed: u64) -> Array4<f32> {
    batch_of(n, 32, seed)
}

fn batch_of(n: usize, width: usize, seed: u64) -> Array4<f32> {
    let mut rng = SplitMix64::new(seed);
    Array4::from_shape_fn((n, 32, width, 1), |_| rng.next_f32())
}

fn sgd(plan: &Plan) -> Optimizer {
    Optimizer::new(
        OptimizerConfig {
            kind: OptimizerKind::sgd_momentum(),
            learning_rate: 0.01,
            weight_decay: 0.0,
            schedule: Schedule::Constant,
        },
        &plan.params,
    )
}

#[test]
fn forward_array_equals_the_slice_forward_and_checks_the_shape() {
    let mut plan = lenet();
    assert_eq!(plan.input_dims(), (32, 32, 1));
    let x = batch(3, 1);
    let probs = plan.forward_array(x.view(), Mode::Eval).unwrap().to_owned();
    assert_eq!(probs.dim(), (3, 10));
    for row in probs.rows() {
        assert!(
            (row.sum() - 1.0).abs() < 1e-5,
            "a row of probabilities sums to 1"
        );
    }
    plan.forward(x.as_slice().unwrap(), Mode::Eval);
    assert_eq!(probs.as_slice().unwrap(), plan.probabilities());
    assert_eq!(plan.predictions().len(), 3);

    // NCHW given as NHWC, a batch over the plan's, an empty batch: errors, not panics.
    let nchw = Array4::<f32>::zeros((2, 1, 32, 32));
    let err = plan.forward_array(nchw.view(), Mode::Eval).unwrap_err();
    assert!(
        matches!(
            err,
            ArrayError::Images {
                got: [2, 1, 32, 32],
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("N×32×32×1"), "{err}");
    let big = batch(BATCH + 1, 2);
    assert!(plan.forward_array(big.view(), Mode::Eval).is_err());
    let empty = Array4::<f32>::zeros((0, 32, 32, 1));
    assert!(plan.forward_array(empty.view(), Mode::Eval).is_err());
}

#[test]
fn a_non_standard_layout_gives_the_same_result_as_its_copy() {
    let mut plan = lenet();
    // Every other column of wider images: a strided, non-contiguous view.
    let wide = batch_of(2, 64, 3);
    let strided = wide.slice(s![.., .., ..;2, ..]);
    assert!(strided.as_slice().is_none());
    let copy = strided.as_standard_layout().into_owned();
    let a = plan.forward_array(strided, Mode::Eval).unwrap().to_owned();
    let b = plan
        .forward_array(copy.view(), Mode::Eval)
        .unwrap()
        .to_owned();
    assert_eq!(a, b);
    // PyTorch's NCHW converted for the plan.
    let nhwc = batch(2, 3);
    let nchw = nhwc.view().permuted_axes([0, 3, 1, 2]).to_owned();
    assert_eq!(nhwc_from_nchw(nchw.view()), nhwc);
}

#[test]
fn train_step_array_checks_labels_and_matches_the_slice_step() {
    let x = batch(BATCH, 4);
    let y = Array1::from(vec![0u32, 3, 9, 1]);
    let (mut a, mut b) = (lenet(), lenet());
    let (mut opt_a, mut opt_b) = (sgd(&a), sgd(&b));
    let la = a.train_step_array(x.view(), y.view(), &mut opt_a).unwrap();
    let lb = b.train_step(x.as_slice().unwrap(), y.as_slice().unwrap(), &mut opt_b);
    assert_eq!(la, lb);

    let short = Array1::from(vec![0u32, 1]);
    assert_eq!(
        a.train_step_array(x.view(), short.view(), &mut opt_a),
        Err(ArrayError::LabelCount {
            labels: 2,
            images: 4
        })
    );
    let out_of_range = Array1::from(vec![0u32, 1, 10, 2]);
    let err = a
        .train_step_array(x.view(), out_of_range.view(), &mut opt_a)
        .unwrap_err();
    assert_eq!(
        err,
        ArrayError::LabelRange {
            index: 2,
            label: 10,
            classes: 10
        }
    );
}

#[test]
fn parameters_gradients_and_activations_come_out_with_their_shapes() {
    let mut plan = lenet();
    let mut opt = sgd(&plan);
    let x = batch(BATCH, 5);
    let y = Array1::from(vec![1u32, 2, 3, 4]);
    plan.train_step_array(x.view(), y.view(), &mut opt).unwrap();
    let conv = plan
        .params
        .iter()
        .find(|p| p.shape.len() == 4)
        .expect("LeNet-5 has a conv");
    let w = conv.values().unwrap();
    assert_eq!(w.shape(), &conv.shape[..]);
    assert_eq!(
        w.shape()[..3],
        [5, 5, 1],
        "HWIO: 5×5 kernels on one channel"
    );
    let g = conv.gradient().expect("trainable").unwrap();
    assert_eq!(g.shape(), w.shape());
    assert!(g.iter().any(|v| *v != 0.0));

    let first = plan.activation_array(0).unwrap();
    assert_eq!(first.dim().0, BATCH);
    assert_eq!(first.dim().1, plan.value_elems[0]);
    let steps = plan.steps.len();
    assert_eq!(
        plan.activation_array(steps),
        Err(ArrayError::Step { step: steps, steps })
    );
}

#[test]
fn a_dataset_lends_its_images_as_nhwc_arrays() {
    let s = Shape::new(2, 3, 1);
    let ds = Dataset::new(
        (0..4 * 6).map(|v| v as f32).collect(),
        vec![0, 1, 0, 1],
        s,
        vec!["a".into(), "b".into()],
    )
    .unwrap();
    let all = ds.images_array();
    assert_eq!(all.dim(), (4, 2, 3, 1));
    assert_eq!(all[[2, 1, 0, 0]], (2 * 6 + 3) as f32);
    let b = ds.batch_array(3, 5);
    assert_eq!(b.dim(), (1, 2, 3, 1), "clipped at the end of the set");
    assert_eq!(b.index_axis(Axis(0), 0), all.index_axis(Axis(0), 3));
    assert_eq!(ds.labels_array().to_vec(), vec![0, 1, 0, 1]);
}
