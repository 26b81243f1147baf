//! The forward pass: one walk of the plan's steps, one kernel call each.

use super::plan::{Head, Op, Plan};
use crate::kernels::{activation, conv, dense, loss, misc, norm, pool, scale};
use std::time::Instant;

/// Training uses batch statistics and dropout; evaluation uses running
/// statistics and no dropout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

impl Plan {
    /// Runs the network on `images` (`n × h × w × c`, NHWC) and fills the
    /// class probabilities. `n` may be anything up to `max_batch`.
    pub fn forward(&mut self, images: &[f32], mode: Mode) {
        let (h, w, c) = self.input_shape;
        let n = images.len() / (h * w * c);
        assert!(
            n >= 1 && n <= self.max_batch && n * h * w * c == images.len(),
            "forward: batch of {n} does not fit the plan (max {})",
            self.max_batch
        );
        self.batch = n;
        if mode == Mode::Train {
            self.iteration += 1;
        }
        self.run_steps(0, self.steps.len() - 1, images, mode);
        self.finish_probabilities();
    }

    /// Runs steps `first..=last`. A [`Fusion`](super::plan::Fusion) applies only when both of its
    /// steps are in the range (and, for Conv → BatchNorm, in evaluation): a
    /// pass ending at a fused producer must materialise its output, and a
    /// pass starting after it (a cached activation) must run the rest itself.
    fn run_steps(&mut self, first: usize, last: usize, images: &[f32], mode: Mode) {
        for i in first..=last {
            let start = Instant::now();
            let f = self.steps[i].fusion;
            // Done by its producer: a ReLU whenever that ran, a BatchNorm
            // when its conv ran in evaluation.
            if let Some(p) = f.done_by
                && p >= first
                && (mode == Mode::Eval || !matches!(self.steps[p].op, Op::Conv { .. }))
            {
                continue;
            }
            // The BatchNorm (and Add) this conv applies, and the step its result goes to.
            let bn = f.bn_into.filter(|&b| b <= last && mode == Mode::Eval);
            let add = bn
                .and_then(|b| self.steps[b].fusion.add_into)
                .filter(|&a| a <= last);
            let tail = add.or(bn);
            let after = tail.map_or(f, |t| self.steps[t].fusion);
            let relu_into = after.relu_into.filter(|&r| r <= last);
            let pool = relu_into
                .filter(|_| bn.is_some())
                .and_then(|r| self.steps[r].fusion.pool_into)
                .filter(|&p| p <= last);
            let dst = pool.or(relu_into).or(tail).unwrap_or(i);
            let relu = relu_into.is_some();
            self.forward_step(i, images, mode, dst, bn, add, relu, pool.is_some());
            self.step_nanos[i] += start.elapsed().as_nanos() as u64;
        }
    }

    /// Runs only steps `0..=last` on `images`; afterwards `activation(last)`
    /// holds that step's output (class probabilities are not computed).
    pub fn forward_through(&mut self, images: &[f32], last: usize, mode: Mode) {
        let (h, w, c) = self.input_shape;
        let n = images.len() / (h * w * c);
        assert!(
            n >= 1
                && n <= self.max_batch
                && n * h * w * c == images.len()
                && last < self.steps.len(),
            "forward_through: batch of {n} does not fit the plan (max {})",
            self.max_batch
        );
        self.batch = n;
        if mode == Mode::Train {
            self.iteration += 1;
        }
        self.run_steps(0, last, images, mode);
    }

    /// Sets value `start`'s activation to `cached` (`n × value_elems[start]`)
    /// and runs only the steps after it — training from an activation cache
    /// of a frozen prefix. Steps after `start` must not read values before it.
    pub fn forward_from(&mut self, start: usize, cached: &[f32], mode: Mode) {
        let per = self.value_elems[start];
        let n = cached.len() / per;
        assert!(
            n >= 1 && n <= self.max_batch && n * per == cached.len(),
            "forward_from: batch of {n} does not fit the plan (max {})",
            self.max_batch
        );
        self.batch = n;
        if mode == Mode::Train {
            self.iteration += 1;
        }
        self.acts[start][..cached.len()].copy_from_slice(cached);
        if start + 1 < self.steps.len() {
            self.run_steps(start + 1, self.steps.len() - 1, &[], mode);
        }
        self.finish_probabilities();
    }

    /// Class probabilities from the logits of the current batch.
    fn finish_probabilities(&mut self) {
        let len = self.batch * self.classes;
        let logits = &self.acts[self.logits][..len];
        match self.head {
            Head::SoftmaxCrossEntropy => {
                loss::softmax_forward(logits, &mut self.probs[..len], self.classes)
            }
            Head::SigmoidBinaryCrossEntropy => {
                activation::sigmoid_forward(logits, &mut self.probs[..len])
            }
        }
    }

    /// Runs step `i` (a Conv also BatchNorm step `bn` and Add step `add` in
    /// evaluation), then a ReLU if `relu` and a 2×2 max pool if `pool`,
    /// writing into value `dst`'s buffer (see [`Fusion`](super::plan::Fusion)).
    #[allow(clippy::too_many_arguments)]
    fn forward_step(
        &mut self,
        i: usize,
        images: &[f32],
        mode: Mode,
        dst: usize,
        bn: Option<usize>,
        add: Option<usize>,
        relu: bool,
        pool: bool,
    ) {
        let n = self.batch;
        let out_len = n * self.value_elems[dst];
        if let Some(b) = bn
            && let Op::BatchNorm {
                eps,
                running_var,
                save_invstd,
                ..
            } = &mut self.steps[b].op
        {
            norm::batch_norm_eval_invstd(&self.params[*running_var].data, *eps, save_invstd);
        }
        // Take the output buffer out so inputs can be borrowed alongside it.
        let mut y = std::mem::take(&mut self.acts[dst]);
        let out = &mut y[..out_len];
        // Likewise the op, whose per-step state (BN statistics) is written.
        let mut op = std::mem::replace(&mut self.steps[i].op, Op::Input);
        let x = |k: usize| -> &[f32] {
            let v = self.steps[i].inputs[k];
            &self.acts[v][..n * self.value_elems[v]]
        };
        let iteration = self.iteration;
        let frozen = self.steps[i].frozen;
        match &mut op {
            Op::Input => out.copy_from_slice(images),
            Op::Conv { geo, weight, bias } => {
                let geo = geo.with_batch(n);
                let b = bias.map(|b| self.params[b].data.as_slice());
                // The Add's other input, added before the ReLU.
                let residual = add.zip(bn).and_then(|(a, b)| {
                    let v = *self.steps[a].inputs.iter().find(|&&v| v != b)?;
                    Some(&self.acts[v][..n * self.value_elems[v]])
                });
                let bn = bn.and_then(|b| match &self.steps[b].op {
                    Op::BatchNorm {
                        gamma,
                        beta,
                        running_mean,
                        save_invstd,
                        ..
                    } => Some(norm::BnAffine {
                        mean: &self.params[*running_mean].data,
                        invstd: save_invstd,
                        gamma: &self.params[*gamma].data,
                        beta: &self.params[*beta].data,
                        relu,
                        residual,
                    }),
                    _ => None,
                });
                conv::conv2d_forward_bn(
                    &geo,
                    x(0),
                    &self.params[*weight].data,
                    b,
                    bn.as_ref(),
                    pool,
                    out,
                    &mut self.workspace,
                );
            }
            Op::DilatedConv { conv, weight, bias } => {
                let b = bias.map(|b| self.params[b].data.as_slice());
                let w = &self.params[*weight].data;
                conv.with_batch(n)
                    .forward(x(0), w, b, None, out, &mut self.workspace);
            }
            Op::ZeroPad { hwc, pad } => misc::zero_pad2d_forward(x(0), out, n, *hwc, *pad),
            Op::MaxPool { geo } => pool::max_pool2d_forward(&geo.with_batch(n), x(0), out),
            Op::AvgPool {
                geo,
                include_padding,
            } => {
                pool::avg_pool2d_forward(&geo.with_batch(n), x(0), out, *include_padding);
            }
            Op::GlobalAvgPool { hw, c } => pool::global_avg_pool_forward(x(0), out, *hw, *c),
            Op::BatchNorm {
                c,
                eps,
                momentum,
                gamma,
                beta,
                running_mean,
                running_var,
                save_mean,
                save_invstd,
            } => {
                if mode == Mode::Train && !frozen {
                    let mut rm = std::mem::take(&mut self.params[*running_mean].data);
                    let mut rv = std::mem::take(&mut self.params[*running_var].data);
                    norm::batch_norm_train_forward(
                        x(0),
                        out,
                        *c,
                        &self.params[*gamma].data,
                        &self.params[*beta].data,
                        *eps,
                        *momentum,
                        &mut rm,
                        &mut rv,
                        save_mean,
                        save_invstd,
                        relu,
                    );
                    self.params[*running_mean].data = rm;
                    self.params[*running_var].data = rv;
                } else {
                    norm::batch_norm_eval_forward(
                        x(0),
                        out,
                        *c,
                        &self.params[*gamma].data,
                        &self.params[*beta].data,
                        &self.params[*running_mean].data,
                        &self.params[*running_var].data,
                        *eps,
                        save_invstd,
                        relu,
                    );
                }
            }
            Op::Relu => activation::relu_forward(x(0), out),
            Op::LeakyRelu { alpha } => activation::leaky_relu_forward(x(0), out, *alpha),
            Op::Sigmoid => activation::sigmoid_forward(x(0), out),
            Op::Tanh => activation::tanh_forward(x(0), out),
            Op::Elementwise(f) => f.forward(x(0), out),
            Op::Softmax { classes } => loss::softmax_forward(x(0), out, *classes),
            Op::Dropout { rate, seed } => {
                if mode == Mode::Train {
                    misc::dropout_forward(x(0), out, *rate, dropout_seed(*seed, iteration));
                } else {
                    out.copy_from_slice(x(0));
                }
            }
            Op::Flatten => out.copy_from_slice(x(0)),
            Op::Dense {
                n_in,
                n_out,
                weight,
                bias,
            } => {
                let b = bias.map(|b| self.params[b].data.as_slice());
                dense::dense_forward(x(0), &self.params[*weight].data, b, out, n, *n_in, *n_out);
            }
            Op::ChannelScale { hw, c } => scale::channel_scale_forward(x(0), x(1), out, n, *hw, *c),
            Op::ChannelAffine { scale, shift } => {
                scale::channel_affine_forward(x(0), scale, shift, out)
            }
            Op::Add => misc::add_forward(self.steps[i].inputs.len(), x, out, relu),
            Op::Concat { channels } => misc::concat_channels_forward(x, channels, out),
        }
        self.steps[i].op = op;
        self.acts[dst] = y;
    }
}

/// The dropout mask seed of one layer at one iteration.
pub(crate) fn dropout_seed(layer_seed: u64, iteration: u64) -> u64 {
    misc::mix64(layer_seed ^ iteration.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}
