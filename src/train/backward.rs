//! The backward pass: one reverse walk of the compiled steps, one `match` arm
//! per layer kind with its gradient rule. Gradients of a value consumed
//! twice (skip paths, branches) are summed: the first contribution in reverse
//! order overwrites the buffer, later ones accumulate (decided at compile time).

use super::forward::dropout_seed;
use super::plan::{GradWrite, Head, Op, ParamTensor, Plan};
use crate::kernels::{activation, conv, dense, loss, misc, norm, pool, scale};
use std::time::Instant;

impl Plan {
    /// Loss of the last forward pass against `labels`, and its gradient with
    /// respect to the logits (written for the backward pass).
    pub fn loss_backward(&mut self, labels: &[u32]) -> f32 {
        let n = self.batch;
        assert_eq!(labels.len(), n, "loss: one label per image");
        let len = n * self.classes;
        let mut d_logits = match self.grad_slot[self.logits] {
            Some(slot) => std::mem::take(&mut self.grad_slots[slot]),
            None => std::mem::take(&mut self.scratch),
        };
        let logits = &self.acts[self.logits][..len];
        let loss = match self.head {
            Head::SoftmaxCrossEntropy => {
                assert!(
                    labels.iter().all(|&l| (l as usize) < self.classes),
                    "loss: label out of range for {} classes",
                    self.classes
                );
                loss::softmax_cross_entropy(
                    logits,
                    labels,
                    self.classes,
                    &mut d_logits[..len],
                    Some(&mut self.probs[..len]),
                )
            }
            Head::SigmoidBinaryCrossEntropy => {
                let targets = &mut self.labels_f32[..len];
                if self.classes == 1 {
                    for (t, &l) in targets.iter_mut().zip(labels) {
                        *t = (l > 0) as u32 as f32;
                    }
                } else {
                    targets.fill(0.0);
                    for (row, &l) in targets.chunks_exact_mut(self.classes).zip(labels) {
                        if let Some(t) = row.get_mut(l as usize) {
                            *t = 1.0;
                        }
                    }
                }
                loss::sigmoid_binary_cross_entropy(
                    logits,
                    targets,
                    &mut d_logits[..len],
                    Some(&mut self.probs[..len]),
                )
            }
        };
        match self.grad_slot[self.logits] {
            Some(slot) => self.grad_slots[slot] = d_logits,
            None => self.scratch = d_logits,
        }
        loss
    }

    /// Gradients of every trainable parameter for the last forward pass and
    /// [`Plan::loss_backward`]. Parameter gradients are overwritten.
    pub fn backward(&mut self) {
        for i in (0..self.steps.len()).rev() {
            if self.steps[i].runs_backward {
                let start = Instant::now();
                self.backward_step(i);
                self.step_nanos[i] += start.elapsed().as_nanos() as u64;
            }
        }
    }

    /// Takes the buffer input `k` of step `i` writes its gradient into.
    fn take_input_grad(&mut self, i: usize, k: usize) -> Option<Vec<f32>> {
        let u = self.steps[i].inputs[k];
        match self.steps[i].grad_writes[k] {
            GradWrite::Skip | GradWrite::Shared => None,
            GradWrite::Overwrite => {
                self.grad_slot[u].map(|s| std::mem::take(&mut self.grad_slots[s]))
            }
            GradWrite::Accumulate => Some(std::mem::take(&mut self.scratch)),
        }
    }

    /// Returns the buffer from [`Plan::take_input_grad`], summing it in if it was scratch.
    fn put_input_grad(&mut self, i: usize, k: usize, buf: Option<Vec<f32>>) {
        let Some(buf) = buf else { return };
        let u = self.steps[i].inputs[k];
        let Some(slot) = self.grad_slot[u] else {
            return;
        };
        match self.steps[i].grad_writes[k] {
            GradWrite::Skip | GradWrite::Shared => {}
            GradWrite::Overwrite => self.grad_slots[slot] = buf,
            GradWrite::Accumulate => {
                let len = self.batch * self.value_elems[u];
                misc::accumulate(&mut self.grad_slots[slot][..len], &buf[..len]);
                self.scratch = buf;
            }
        }
    }

    fn backward_step(&mut self, i: usize) {
        let n = self.batch;
        let Some(own_slot) = self.grad_slot[i] else {
            return;
        };
        let dy_buf = std::mem::take(&mut self.grad_slots[own_slot]);
        let dy = &dy_buf[..n * self.value_elems[i]];
        let mut op = std::mem::replace(&mut self.steps[i].op, Op::Input);
        let frozen = self.steps[i].frozen;
        match &mut op {
            Op::Add => {
                for k in 0..self.steps[i].inputs.len() {
                    let u = self.steps[i].inputs[k];
                    let Some(slot) = self.grad_slot[u] else {
                        continue;
                    };
                    let dx = &mut self.grad_slots[slot][..dy.len()];
                    match self.steps[i].grad_writes[k] {
                        GradWrite::Skip | GradWrite::Shared => {}
                        GradWrite::Overwrite => dx.copy_from_slice(dy),
                        GradWrite::Accumulate => misc::accumulate(dx, dy),
                    }
                }
            }
            Op::Concat { channels } => {
                for k in 0..channels.len() {
                    let u = self.steps[i].inputs[k];
                    let Some(slot) = self.grad_slot[u] else {
                        continue;
                    };
                    let len = n * self.value_elems[u];
                    let dx = &mut self.grad_slots[slot][..len];
                    match self.steps[i].grad_writes[k] {
                        GradWrite::Skip | GradWrite::Shared => {}
                        GradWrite::Overwrite => {
                            misc::concat_channels_backward_one(dy, channels, k, dx, false)
                        }
                        GradWrite::Accumulate => {
                            misc::concat_channels_backward_one(dy, channels, k, dx, true)
                        }
                    }
                }
            }
            Op::ChannelScale { hw, c } => self.channel_scale_backward(i, dy, *hw, *c),
            _ => {
                let mut target = self.take_input_grad(i, 0);
                let u = self.steps[i].inputs.first().copied().unwrap_or(0);
                let in_len = n * self.value_elems[u];
                let x = &self.acts[u][..in_len];
                let y = &self.acts[i][..n * self.value_elems[i]];
                let dx = target.as_mut().map(|t| &mut t[..in_len]);
                match &mut op {
                    Op::Input | Op::Add | Op::Concat { .. } | Op::ChannelScale { .. } => {}
                    Op::Conv { geo, weight, bias } => {
                        let (mut dw, mut db) =
                            take_param_grads(&mut self.params, *weight, *bias, frozen);
                        conv::conv2d_backward(
                            &geo.with_batch(n),
                            x,
                            &self.params[*weight].data,
                            dy,
                            dx,
                            (!frozen).then_some(dw.as_mut_slice()),
                            (!frozen && bias.is_some()).then_some(db.as_mut_slice()),
                            &mut self.workspace,
                        );
                        put_param_grads(&mut self.params, *weight, *bias, frozen, dw, db);
                    }
                    Op::DilatedConv { conv, weight, bias } => {
                        let (mut dw, mut db) =
                            take_param_grads(&mut self.params, *weight, *bias, frozen);
                        conv.with_batch(n).backward(
                            x,
                            &self.params[*weight].data,
                            dy,
                            dx,
                            (!frozen).then_some(dw.as_mut_slice()),
                            (!frozen && bias.is_some()).then_some(db.as_mut_slice()),
                            &mut self.workspace,
                        );
                        put_param_grads(&mut self.params, *weight, *bias, frozen, dw, db);
                    }
                    Op::ZeroPad { hwc, pad } => {
                        if let Some(dx) = dx {
                            misc::zero_pad2d_backward(dy, dx, n, *hwc, *pad);
                        }
                    }
                    Op::MaxPool { geo } => {
                        if let Some(dx) = dx {
                            pool::max_pool2d_backward(&geo.with_batch(n), x, y, dy, dx);
                        }
                    }
                    Op::AvgPool {
                        geo,
                        include_padding,
                    } => {
                        if let Some(dx) = dx {
                            pool::avg_pool2d_backward(&geo.with_batch(n), dy, dx, *include_padding);
                        }
                    }
                    Op::GlobalAvgPool { hw, c } => {
                        if let Some(dx) = dx {
                            pool::global_avg_pool_backward(dy, dx, *hw, *c);
                        }
                    }
                    Op::BatchNorm {
                        c,
                        eps,
                        gamma,
                        beta,
                        running_mean,
                        running_var,
                        save_mean,
                        save_invstd,
                        ..
                    } => {
                        if frozen {
                            // Frozen BN is a fixed affine map with running statistics.
                            if let Some(dx) = dx {
                                norm::batch_norm_eval_backward(
                                    x,
                                    dy,
                                    *c,
                                    &self.params[*gamma].data,
                                    &self.params[*running_mean].data,
                                    &self.params[*running_var].data,
                                    *eps,
                                    dx,
                                    None,
                                    None,
                                );
                                // Frozen after compiling (Grad-CAM freezes every
                                // BatchNorm): the ReLU that shares this gradient
                                // buffer still needs its mask applied here.
                                if let Some(r) = self.steps[i].backward_relu {
                                    let y = &self.acts[r][..dx.len()];
                                    for (d, &v) in dx.iter_mut().zip(y) {
                                        if v <= 0.0 {
                                            *d = 0.0;
                                        }
                                    }
                                }
                            }
                        } else {
                            let mut dgamma = std::mem::take(&mut self.params[*gamma].grad);
                            let mut dbeta = std::mem::take(&mut self.params[*beta].grad);
                            // The kernel always produces dx; without a consumer it goes to scratch.
                            let mut spare = Vec::new();
                            let dx = match dx {
                                Some(dx) => dx,
                                None => {
                                    spare = std::mem::take(&mut self.scratch);
                                    &mut spare[..in_len]
                                }
                            };
                            norm::batch_norm_train_backward(
                                x,
                                dy,
                                *c,
                                &self.params[*gamma].data,
                                &self.params[*beta].data,
                                save_mean,
                                save_invstd,
                                self.steps[i].backward_relu.is_some(),
                                dx,
                                &mut dgamma,
                                &mut dbeta,
                            );
                            if !spare.is_empty() {
                                self.scratch = spare;
                            }
                            self.params[*gamma].grad = dgamma;
                            self.params[*beta].grad = dbeta;
                        }
                    }
                    Op::Relu => {
                        // None when the BatchNorm before applies the mask (GradWrite::Shared).
                        if let Some(dx) = dx {
                            activation::relu_backward(y, dy, dx);
                        }
                    }
                    Op::LeakyRelu { alpha } => {
                        if let Some(dx) = dx {
                            activation::leaky_relu_backward(x, dy, dx, *alpha);
                        }
                    }
                    Op::Sigmoid => {
                        if let Some(dx) = dx {
                            activation::sigmoid_backward(y, dy, dx);
                        }
                    }
                    Op::Tanh => {
                        if let Some(dx) = dx {
                            activation::tanh_backward(y, dy, dx);
                        }
                    }
                    Op::Elementwise(f) => {
                        if let Some(dx) = dx {
                            f.backward(x, dy, dx);
                        }
                    }
                    Op::Softmax { classes } => {
                        if let Some(dx) = dx {
                            loss::softmax_backward(y, dy, dx, *classes);
                        }
                    }
                    Op::Dropout { rate, seed } => {
                        if let Some(dx) = dx {
                            misc::dropout_backward(
                                dy,
                                dx,
                                *rate,
                                dropout_seed(*seed, self.iteration),
                            );
                        }
                    }
                    Op::Flatten => {
                        if let Some(dx) = dx {
                            dx.copy_from_slice(dy);
                        }
                    }
                    Op::ChannelAffine { scale: a, .. } => {
                        if let Some(dx) = dx {
                            scale::channel_affine_backward(a, dy, dx);
                        }
                    }
                    Op::Dense {
                        n_in,
                        n_out,
                        weight,
                        bias,
                    } => {
                        let (mut dw, mut db) =
                            take_param_grads(&mut self.params, *weight, *bias, frozen);
                        dense::dense_backward(
                            x,
                            &self.params[*weight].data,
                            dy,
                            dx,
                            (!frozen).then_some(dw.as_mut_slice()),
                            (!frozen && bias.is_some()).then_some(db.as_mut_slice()),
                            n,
                            *n_in,
                            *n_out,
                        );
                        put_param_grads(&mut self.params, *weight, *bias, frozen, dw, db);
                    }
                }
                self.put_input_grad(i, 0, target);
            }
        }
        self.steps[i].op = op;
        self.grad_slots[own_slot] = dy_buf;
    }
}

impl Plan {
    /// Both inputs' gradients of a channel scale, each written straight into
    /// its gradient slot (overwritten or summed in, as compiled).
    fn channel_scale_backward(&mut self, i: usize, dy: &[f32], hw: usize, c: usize) {
        let n = self.batch;
        let [volume, gate] = self.steps[i].inputs[..] else {
            return;
        };
        for (k, u) in [(0, volume), (1, gate)] {
            let accumulate = match self.steps[i].grad_writes[k] {
                GradWrite::Skip | GradWrite::Shared => continue,
                GradWrite::Overwrite => false,
                GradWrite::Accumulate => true,
            };
            let Some(slot) = self.grad_slot[u] else {
                continue;
            };
            let len = n * self.value_elems[u];
            let dx = &mut self.grad_slots[slot][..len];
            if k == 0 {
                let s = &self.acts[gate][..n * c];
                scale::channel_scale_backward_volume(s, dy, dx, n, hw, c, accumulate);
            } else {
                let x = &self.acts[volume][..n * hw * c];
                scale::channel_scale_backward_gate(x, dy, dx, n, hw, c, accumulate);
            }
        }
    }
}

/// Takes a conv/dense layer's weight and bias gradient buffers (empty when frozen).
fn take_param_grads(
    params: &mut [ParamTensor],
    weight: usize,
    bias: Option<usize>,
    frozen: bool,
) -> (Vec<f32>, Vec<f32>) {
    if frozen {
        return (Vec::new(), Vec::new());
    }
    let dw = std::mem::take(&mut params[weight].grad);
    let db = bias.map_or(Vec::new(), |b| std::mem::take(&mut params[b].grad));
    (dw, db)
}

fn put_param_grads(
    params: &mut [ParamTensor],
    weight: usize,
    bias: Option<usize>,
    frozen: bool,
    dw: Vec<f32>,
    db: Vec<f32>,
) {
    if !frozen {
        params[weight].grad = dw;
        if let Some(b) = bias {
            params[b].grad = db;
        }
    }
}

#[cfg(test)]
mod tests {
    //! Gradient checks: every layer kind's backward arm, and residual and
    //! inception graphs end to end, against central finite differences.
    //!
    //! The forward pass is f32. A central difference with step `EPS` = 1e-3
    //! has truncation error O(EPS²) ≈ 1e-6 relative for smooth layers, and
    //! f32 rounding of the loss (~1e-7 relative, loss ≈ 1) adds ≈ 5e-5 to each
    //! quotient. So the checked gradients must agree with the numeric ones to
    //! 2% in norm over each tensor's sampled entries, and to 5% + 1e-3 per
    //! entry; a wrong rule (a dropped skip-path sum, a transposed kernel) is
    //! off by tens of percent. A larger step (1e-2) was tried and crossed ReLU
    //! kinks often enough to fail correct gradients by ~10%; at 1e-3 the
    //! measured worst entry error over all these checks is below 1e-4.

    use crate::graph::blocks::{
        Builder, InceptionFilters, basic_residual_block, inception_bottleneck,
    };
    use crate::graph::{Graph, LayerKind, NodeId, Padding};
    use crate::infer::analyze;
    use crate::kernels::misc::SplitMix64;
    use crate::train::{Mode, Plan};

    const EPS: f32 = 1e-3;
    const BATCH: usize = 3;

    fn batch(plan: &Plan, seed: u64) -> (Vec<f32>, Vec<u32>) {
        let (h, w, c) = plan.input_shape;
        let mut rng = SplitMix64::new(seed);
        let images = (0..BATCH * h * w * c)
            .map(|_| rng.next_f32() * 2.0 - 1.0)
            .collect();
        let classes = plan.classes.max(2) as u64;
        let labels = (0..BATCH)
            .map(|_| (rng.next_u64() % classes) as u32)
            .collect();
        (images, labels)
    }

    fn loss_at(plan: &mut Plan, images: &[f32], labels: &[u32]) -> f64 {
        plan.iteration = 0; // the same dropout masks every time
        plan.forward(images, Mode::Train);
        plan.loss_backward(labels) as f64
    }

    /// Checks every trainable tensor's gradient on up to 8 sampled entries.
    fn check(graph: &Graph) {
        let analysis = analyze(graph);
        assert!(analysis.is_valid(), "{:?}", analysis.errors());
        let mut plan = Plan::compile(graph, &analysis, BATCH, 7).unwrap();
        let (images, labels) = batch(&plan, 99);
        loss_at(&mut plan, &images, &labels);
        plan.backward();
        let mut rng = SplitMix64::new(5);
        let mut checked = 0;
        for p in 0..plan.params.len() {
            if !plan.params[p].is_trainable() {
                continue;
            }
            let len = plan.params[p].data.len();
            let analytic = plan.params[p].grad.clone();
            let (mut num_sq, mut diff_sq, mut ana_sq) = (0f64, 0f64, 0f64);
            for _ in 0..len.min(8) {
                let j = (rng.next_u64() % len as u64) as usize;
                let orig = plan.params[p].data[j];
                plan.params[p].data[j] = orig + EPS;
                let up = loss_at(&mut plan, &images, &labels);
                plan.params[p].data[j] = orig - EPS;
                let down = loss_at(&mut plan, &images, &labels);
                plan.params[p].data[j] = orig;
                let numeric = (up - down) / (2.0 * EPS as f64);
                let a = analytic[j] as f64;
                assert!(
                    (numeric - a).abs() <= 1e-3 + 0.05 * numeric.abs().max(a.abs()),
                    "{}[{j}]: numeric {numeric}, analytic {a}",
                    plan.params[p].name
                );
                if std::env::var_os("GRAD_DEBUG").is_some() {
                    eprintln!("{}[{j}] {numeric} {a}", plan.params[p].name);
                }
                num_sq += numeric * numeric;
                ana_sq += a * a;
                diff_sq += (numeric - a) * (numeric - a);
                checked += 1;
            }
            // Tensors whose true gradient is ~0 (a conv bias followed by
            // BatchNorm) are covered by the per-entry absolute bound alone.
            let scale = num_sq.max(ana_sq).sqrt();
            if scale > 1e-2 {
                assert!(
                    diff_sq.sqrt() <= 0.02 * scale,
                    "{}: relative error {}",
                    plan.params[p].name,
                    diff_sq.sqrt() / scale
                );
            }
        }
        assert!(checked > 0, "nothing trainable to check");
    }

    /// input 6×6×4 → conv 3×3 → `middle` → (flatten) → dense 3 → softmax.
    fn around(middle: impl FnOnce(&mut Builder, NodeId) -> NodeId) -> Graph {
        let mut g = Graph::new("t");
        let mut b = Builder::new(&mut g);
        let x = b.input("in", 6, 6, 4);
        let x = b.conv("c", x, 4, 3, 1, Padding::Same);
        let x = middle(&mut b, x);
        let x = b.layer("flat", LayerKind::Flatten, &[x]);
        let x = b.dense("fc", x, 3);
        b.layer("softmax", LayerKind::Softmax, &[x]);
        g
    }

    fn single(kind: LayerKind) -> Graph {
        around(|b, x| b.layer("op", kind, &[x]))
    }

    #[test]
    fn conv_strided_grouped_padded() {
        check(&around(|b, x| {
            b.layer(
                "op",
                LayerKind::Conv2d {
                    filters: 6,
                    kernel: [3, 2],
                    stride: [2, 1],
                    padding: Padding::Explicit([1, 0, 1, 1]),
                    groups: 2,
                    bias: true,
                    dilation: [1, 1],
                },
                &[x],
            )
        }));
    }

    #[test]
    fn conv_pointwise_without_bias() {
        check(&single(LayerKind::Conv2d {
            filters: 5,
            kernel: [1, 1],
            stride: [1, 1],
            padding: Padding::Valid,
            groups: 1,
            bias: false,
            dilation: [1, 1],
        }));
    }

    #[test]
    fn zero_pad() {
        check(&single(LayerKind::ZeroPad2d {
            padding: [1, 0, 2, 1],
        }));
    }

    #[test]
    fn max_pool_ceil() {
        check(&single(LayerKind::MaxPool2d {
            kernel: [3, 3],
            stride: [2, 2],
            padding: Padding::Valid,
            ceil_mode: true,
        }));
    }

    #[test]
    fn avg_pool_same() {
        check(&single(LayerKind::AvgPool2d {
            kernel: [3, 3],
            stride: [2, 2],
            padding: Padding::Same,
            ceil_mode: false,
            include_padding: false,
        }));
        check(&single(LayerKind::AvgPool2d {
            kernel: [3, 3],
            stride: [2, 2],
            padding: Padding::Same,
            ceil_mode: true,
            include_padding: true,
        }));
    }

    #[test]
    fn global_avg_pool() {
        check(&single(LayerKind::GlobalAvgPool));
    }

    #[test]
    fn batch_norm() {
        check(&single(LayerKind::BatchNorm {
            epsilon: 1e-3,
            momentum: 0.9,
        }));
    }

    #[test]
    fn activations() {
        check(&single(LayerKind::Relu));
        check(&single(LayerKind::LeakyRelu { alpha: 0.1 }));
        check(&single(LayerKind::Sigmoid));
        check(&single(LayerKind::Tanh));
    }

    /// The conv before it learns through `dx = scale · dy` (the constants
    /// have no gradient of their own).
    #[test]
    fn channel_affine() {
        check(&single(LayerKind::ChannelAffine {
            scale: vec![2.0, -0.5, 0.0, 1.5],
            shift: vec![0.25, 1.0, -2.0, 0.0],
        }));
    }

    #[test]
    fn softmax_inside_the_network() {
        check(&around(|b, x| {
            let x = b.layer("flat0", LayerKind::Flatten, &[x]);
            let x = b.dense("fc0", x, 5);
            b.layer("op", LayerKind::Softmax, &[x])
        }));
    }

    #[test]
    fn dropout() {
        check(&single(LayerKind::Dropout { rate: 0.3 }));
    }

    #[test]
    fn dense_chain() {
        check(&around(|b, x| {
            let x = b.layer("flat0", LayerKind::Flatten, &[x]);
            let x = b.dense("fc0", x, 7);
            b.layer("tanh", LayerKind::Tanh, &[x])
        }));
    }

    #[test]
    fn add_with_value_used_twice() {
        check(&around(|b, x| {
            let y = b.conv("c2", x, 4, 3, 1, Padding::Same);
            let z = b.layer("t", LayerKind::Tanh, &[x]);
            // `x` feeds two Adds, so the inner Add's arm accumulates.
            let inner = b.layer("inner", LayerKind::Add, &[y, x]);
            b.layer("op", LayerKind::Add, &[x, inner, z])
        }));
    }

    #[test]
    fn concat_branches() {
        check(&around(|b, x| {
            let y = b.conv("c2", x, 3, 1, 1, Padding::Same);
            let z = b.conv("c3", x, 2, 3, 1, Padding::Same);
            b.layer("op", LayerKind::Concat, &[y, x, z])
        }));
    }

    #[test]
    fn residual_graph_end_to_end() {
        check(&residual_graph(false));
    }

    /// Stem (optionally max-pooled: a finite-difference check across a max
    /// pool's near-ties is unreliable, so only the fusion test pools) and two
    /// residual blocks.
    fn residual_graph(pool: bool) -> Graph {
        let mut g = Graph::new("residual");
        let mut b = Builder::new(&mut g);
        let x = b.input("in", 8, 8, 3);
        let mut x = b.conv_bn_relu("stem", x, 4, 3, 1, Padding::Same);
        if pool {
            x = b.max_pool("pool", x, 2, 2, Padding::Valid);
        }
        b.prefix = "b1_".into();
        let x = basic_residual_block(&mut b, x, 4, 1);
        b.prefix = "b2_".into();
        let x = basic_residual_block(&mut b, x, 6, 2);
        b.prefix.clear();
        let x = b.layer("gap", LayerKind::GlobalAvgPool, &[x]);
        let x = b.dense("fc", x, 3);
        b.layer("softmax", LayerKind::Softmax, &[x]);
        g
    }

    /// Fused plans (ReLU into BatchNorm / Add, BatchNorm and residual Add
    /// into Conv in evaluation) give the same losses, gradients, running statistics and
    /// eval outputs, bit for bit, as the unfused plan; the gradient checks
    /// above run through the fused training path.
    #[test]
    fn fused_relus_match_the_unfused_plan() {
        use crate::train::plan::Fusion;
        let g = residual_graph(true);
        let analysis = analyze(&g);
        let mut fused = Plan::compile(&g, &analysis, BATCH, 7).unwrap();
        let mut plain = Plan::compile(&g, &analysis, BATCH, 7).unwrap();
        plain.unfuse();
        let count = |f: fn(&Fusion) -> bool| fused.steps.iter().filter(|s| f(&s.fusion)).count();
        // stem BN, each block's first BN and its Add (2 blocks).
        assert_eq!(count(|f| f.relu_into.is_some()), 5, "BN→ReLU, Add→ReLU");
        // every conv: stem, 2 per block, the projection.
        assert_eq!(count(|f| f.bn_into.is_some()), 6, "Conv→BN");
        // each block's second conv (or its projection) completes the Add.
        assert_eq!(count(|f| f.add_into.is_some()), 2, "Conv→BN→Add");
        assert_eq!(count(|f| f.pool_into.is_some()), 1, "Conv→BN→ReLU→MaxPool");
        let (images, labels) = batch(&fused, 99);
        for _ in 0..2 {
            for plan in [&mut fused, &mut plain] {
                plan.forward(&images, Mode::Train);
                plan.loss_backward(&labels);
                plan.backward();
            }
            for (a, b) in fused.params.iter().zip(&plain.params) {
                assert_eq!(a.grad, b.grad, "{}", a.name);
                assert_eq!(a.data, b.data, "{}", a.name);
            }
        }
        fused.forward(&images, Mode::Eval);
        plain.forward(&images, Mode::Eval);
        assert_eq!(fused.probabilities(), plain.probabilities());
        // A pass ending at a fused step materialises its output, and a
        // pass resuming after it runs the rest itself.
        for name in ["stem", "stem_bn", "stem_relu", "b1_b", "b1_b_bn", "b1_add"] {
            let cut = fused.step_of(name).unwrap();
            fused.forward_through(&images, cut, Mode::Eval);
            assert_eq!(fused.activation(cut), plain.activation(cut), "{name}");
            if name.starts_with("stem") {
                let cached = fused.activation(cut).to_vec();
                fused.forward_from(cut, &cached, Mode::Eval);
                assert_eq!(fused.probabilities(), plain.probabilities(), "{name}");
            }
        }
    }

    #[test]
    fn inception_graph_end_to_end() {
        let mut g = Graph::new("inception");
        let mut b = Builder::new(&mut g);
        let x = b.input("in", 6, 6, 5);
        let filters = InceptionFilters {
            f1: 2,
            f3_reduce: 3,
            f3: 4,
            f5_reduce: 2,
            f5: 3,
            pool_proj: 2,
        };
        let x = inception_bottleneck(&mut b, x, filters);
        let x = b.layer("gap", LayerKind::GlobalAvgPool, &[x]);
        let x = b.dense("fc", x, 3);
        b.layer("softmax", LayerKind::Softmax, &[x]);
        check(&g);
    }

    #[test]
    fn sigmoid_head() {
        let mut g = Graph::new("binary");
        let mut b = Builder::new(&mut g);
        let x = b.input("in", 6, 6, 2);
        let x = b.zero_pad("pad", x, 1);
        let x = b.conv_bn_relu("c", x, 3, 3, 1, Padding::Valid);
        let x = b.max_pool("pool", x, 2, 2, Padding::Valid);
        let x = b.layer("flat", LayerKind::Flatten, &[x]);
        let x = b.dense("fc", x, 1);
        b.layer("sigmoid", LayerKind::Sigmoid, &[x]);
        check(&g);
    }

    #[test]
    fn frozen_layers_get_no_gradient_and_stop_backward() {
        let mut g = single(LayerKind::Relu);
        let c = g.find("c").unwrap();
        g.node_mut(c).unwrap().frozen = true;
        let analysis = analyze(&g);
        let plan = Plan::compile(&g, &analysis, 2, 1).unwrap();
        assert!(plan.param("c.weight").unwrap().grad.is_empty());
        // Nothing upstream of `fc` is trainable: only fc's step runs backward.
        let running: Vec<&str> = plan
            .steps
            .iter()
            .filter(|s| s.runs_backward)
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(running, vec!["fc"]);
        check(&g);
    }
}
