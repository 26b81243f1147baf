//! Grad-CAM (Selvaraju et al. 2017): where a trained network looks when it
//! scores a class.
//!
//! For one image and class `c`, with `A` the feature maps of a spatial layer
//! (by default the last one, where the last convolution's features are) and
//! `G = ∂y_c/∂A` the gradient of the class score (the logit, before the
//! softmax) with respect to them:
//!
//! 1. `w_k = mean over (y, x) of G[y, x, k]` — how much channel `k` matters for `c`;
//! 2. `map[y, x] = ReLU(Σ_k w_k · A[y, x, k])` — where the channels that
//!    matter fire;
//! 3. the map is upsampled (bilinear) to the image and scaled to `[0, 1]`.
//!
//! The gradient comes from the plan's own backward pass, seeded at the class
//! score instead of the loss. The network runs as in evaluation: a private
//! plan compiled from a copy of the design whose BatchNorms are frozen before
//! compiling (running statistics, and the matching backward) and whose
//! dropout keeps everything; the backward walk stops at the chosen layer.

use super::forward::Mode;
use super::plan::{CompileError, Op, ParamTensor, Plan};
use crate::graph::{Graph, LayerKind};
use crate::infer::{Shape, analyze};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum GradCamError {
    #[error(
        "Grad-CAM needs a layer with a spatial output (height and width above 1); the design has none"
    )]
    NoSpatialLayer,
    #[error("`{0}` is not a layer of the trained network")]
    UnknownLayer(String),
    #[error(
        "`{0}` has no spatial output (Grad-CAM needs feature maps of height and width above 1)"
    )]
    NotSpatial(String),
    #[error("`{0}` gets no gradient from the class scores (no trainable layer before it)")]
    NoGradient(String),
    #[error("class {class} does not exist: the network scores {classes} classes")]
    NoSuchClass { class: u32, classes: usize },
    #[error("Grad-CAM could not compile the network: {0}")]
    Compile(#[from] CompileError),
    #[error("Grad-CAM could not read the images: {0}")]
    Input(String),
}

/// The design as Grad-CAM compiles it: every weighted layer trainable, so
/// every value downstream of the first weights gets a gradient buffer (a
/// frozen layer would cut the walk), except the BatchNorms, frozen so that
/// the compiled plan normalises with the running statistics forward and
/// applies their fixed affine map backward, as in evaluation.
fn evaluation_copy(graph: &Graph) -> Graph {
    let mut graph = graph.clone();
    let ids: Vec<_> = graph.node_ids().collect();
    for id in ids {
        if let Some(n) = graph.node_mut(id) {
            n.frozen = matches!(n.kind, LayerKind::BatchNorm { .. });
        }
    }
    graph
}

/// One image's map.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassMap {
    /// The class whose score was explained.
    pub class: u32,
    /// The class the network predicts for the image.
    pub predicted: u32,
    /// `ReLU(Σ_k w_k A_k)` at the layer's resolution, `h × w` row-major (unscaled).
    pub coarse: Vec<f32>,
    pub coarse_size: (usize, usize),
}

impl ClassMap {
    /// The map upsampled to `size` (bilinear) and scaled so its maximum is 1
    /// (all zeros when the class has no positive evidence anywhere).
    pub fn heat(&self, size: (usize, usize)) -> Vec<f32> {
        let mut up = upsample_bilinear(&self.coarse, self.coarse_size, size);
        let max = up.iter().copied().fold(0.0f32, f32::max);
        if max > 0.0 {
            for v in &mut up {
                *v /= max;
            }
        }
        up
    }
}

/// A network prepared for Grad-CAM at one layer.
pub struct GradCam {
    plan: Plan,
    /// The step whose output is explained.
    target: usize,
    /// Its `(h, w, c)`.
    target_shape: (usize, usize, usize),
}

impl GradCam {
    /// Compiles `graph` (the design as trained) for batches of up to
    /// `max_batch`, explaining layer `layer` (`None`: the last layer with a
    /// spatial output). Load the trained weights with [`GradCam::load`].
    pub fn new(graph: &Graph, layer: Option<&str>, max_batch: usize) -> Result<Self, GradCamError> {
        let graph = evaluation_copy(graph);
        let analysis = analyze(&graph);
        let mut plan = Plan::compile(&graph, &analysis, max_batch.max(1), 0)?;
        plan.unfuse();
        let spatial = |step: usize| match analysis
            .node(plan.steps[step].node)
            .and_then(|i| i.output_shape)
        {
            Some(Shape::Volume { h, w, c }) if h > 1 || w > 1 => {
                Some((h as usize, w as usize, c as usize))
            }
            _ => None,
        };
        let (target, target_shape) = match layer {
            Some(name) => {
                let step = plan
                    .step_of(name)
                    .ok_or_else(|| GradCamError::UnknownLayer(name.into()))?;
                let shape = spatial(step).ok_or_else(|| GradCamError::NotSpatial(name.into()))?;
                (step, shape)
            }
            None => (0..plan.steps.len())
                .rev()
                .filter(|&s| {
                    !matches!(
                        graph.node(plan.steps[s].node).map(|n| &n.kind),
                        Some(LayerKind::Input { .. })
                    )
                })
                .find_map(|s| spatial(s).map(|shape| (s, shape)))
                .ok_or(GradCamError::NoSpatialLayer)?,
        };
        if plan.grad_slot[target].is_none() || plan.grad_slot[plan.logits].is_none() {
            return Err(GradCamError::NoGradient(plan.steps[target].name.clone()));
        }
        for (i, step) in plan.steps.iter_mut().enumerate() {
            if let Op::Dropout { rate, .. } = &mut step.op {
                *rate = 0.0;
            }
            // The walk ends at the explained layer: its gradient stays in its buffer.
            if i <= target {
                step.runs_backward = false;
            }
        }
        Ok(GradCam {
            plan,
            target,
            target_shape,
        })
    }

    /// The explained layer's name.
    pub fn layer(&self) -> &str {
        &self.plan.steps[self.target].name
    }

    /// Copies the trained values of every tensor of the same name and size.
    pub fn load(&mut self, trained: &[ParamTensor]) {
        for p in trained {
            if let Some(mine) = self.plan.param_mut(&p.name)
                && mine.data.len() == p.data.len()
            {
                mine.data.copy_from_slice(&p.data);
            }
        }
    }

    /// Maps for one batch. `forward` runs the plan on the batch's images in
    /// the mode it is given (and may fail); `classes[i]` is the class to
    /// explain for image `i` (`None`: the predicted one).
    pub fn maps(
        &mut self,
        forward: impl FnOnce(&mut Plan, Mode) -> Result<(), String>,
        classes: &[Option<u32>],
    ) -> Result<Vec<ClassMap>, GradCamError> {
        // Training mode for the max-pool switches the backward needs; the
        // preparation in `new` makes its values those of evaluation.
        forward(&mut self.plan, Mode::Train).map_err(GradCamError::Input)?;
        let n = self.plan.batch;
        if classes.len() != n {
            return Err(GradCamError::Input(format!(
                "{} classes for a batch of {n} images",
                classes.len()
            )));
        }
        let k = self.plan.classes;
        let predicted: Vec<u32> = self
            .plan
            .probabilities()
            .chunks_exact(k)
            .map(predicted_class)
            .collect();
        let chosen: Vec<u32> = classes
            .iter()
            .zip(&predicted)
            .map(|(c, &p)| c.unwrap_or(p))
            .collect();
        if let Some(&class) = chosen.iter().find(|&&c| c as usize >= k.max(2)) {
            return Err(GradCamError::NoSuchClass { class, classes: k });
        }
        self.seed_class_scores(&chosen);
        self.plan.backward();
        Ok((0..n)
            .map(|i| ClassMap {
                class: chosen[i],
                predicted: predicted[i],
                coarse: self.weighted_map(i),
                coarse_size: (self.target_shape.0, self.target_shape.1),
            })
            .collect())
    }

    /// Writes `∂(Σ_i y_{c_i})/∂logits` where the loss gradient would go: one
    /// for each image's class score (a one-output sigmoid head scores class
    /// 1 by its logit and class 0 by its negation).
    fn seed_class_scores(&mut self, classes: &[u32]) {
        let k = self.plan.classes;
        let Some(slot) = self.plan.grad_slot[self.plan.logits] else {
            return;
        };
        let seed = &mut self.plan.grad_slots[slot][..classes.len() * k];
        seed.fill(0.0);
        for (row, &c) in seed.chunks_exact_mut(k).zip(classes) {
            if k == 1 {
                row[0] = if c == 1 { 1.0 } else { -1.0 };
            } else {
                row[c as usize] = 1.0;
            }
        }
    }

    /// `ReLU(Σ_k w_k A_k)` of image `i`, with `w_k` the spatial mean of `G_k`.
    fn weighted_map(&self, i: usize) -> Vec<f32> {
        let (h, w, c) = self.target_shape;
        let per = h * w * c;
        let a = &self.plan.activation(self.target)[i * per..(i + 1) * per];
        let g = self.target_gradient(i);
        let mut weights = vec![0.0f32; c];
        for px in g.chunks_exact(c) {
            for (wk, &gk) in weights.iter_mut().zip(px) {
                *wk += gk;
            }
        }
        for wk in &mut weights {
            *wk /= (h * w) as f32;
        }
        a.chunks_exact(c)
            .map(|px| {
                px.iter()
                    .zip(&weights)
                    .map(|(&ak, &wk)| ak * wk)
                    .sum::<f32>()
                    .max(0.0)
            })
            .collect()
    }

    /// `∂y_c/∂A` of image `i` from the last [`GradCam::maps`] (`h × w × c`).
    fn target_gradient(&self, i: usize) -> &[f32] {
        let (h, w, c) = self.target_shape;
        let per = h * w * c;
        match self.plan.grad_slot[self.target] {
            Some(slot) => &self.plan.grad_slots[slot][i * per..(i + 1) * per],
            None => &[],
        }
    }
}

/// What the designer asks the trainer to explain: test images by index,
/// for one class or each image's predicted one, at a layer or the default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GradCamRequest {
    /// `None`: the last layer with a spatial output.
    pub layer: Option<String>,
    /// Indices into the split feature maps are read from.
    pub images: Vec<usize>,
    /// `None`: each image's predicted class.
    pub class: Option<u32>,
}

/// The answer: one map per requested image, in request order.
#[derive(Clone, Debug, PartialEq)]
pub struct GradCamMaps {
    pub layer: String,
    /// `(image index, map)`.
    pub maps: Vec<(usize, ClassMap)>,
}

/// Images explained per forward and backward pass.
pub const BATCH: usize = 8;

/// Answers `request` with the `trained` weights of `graph`, reusing `cam`
/// when it explains the same layer. `forward(plan, indices, mode)` runs
/// the plan on those images of the split (`images` of them exist).
pub fn explain(
    cam: &mut Option<GradCam>,
    graph: &Graph,
    trained: &[ParamTensor],
    request: &GradCamRequest,
    images: usize,
    mut forward: impl FnMut(&mut Plan, &[usize], Mode) -> Result<(), String>,
) -> Result<GradCamMaps, GradCamError> {
    if let Some(&bad) = request.images.iter().find(|&&i| i >= images) {
        return Err(GradCamError::Input(format!(
            "image {bad} does not exist: the split has {images} images"
        )));
    }
    let reuse = cam
        .as_ref()
        .is_some_and(|c| request.layer.as_deref().is_none_or(|l| l == c.layer()));
    if !reuse {
        *cam = Some(GradCam::new(graph, request.layer.as_deref(), BATCH)?);
    }
    let Some(cam) = cam.as_mut() else {
        return Err(GradCamError::NoSpatialLayer);
    };
    cam.load(trained);
    let mut maps = Vec::with_capacity(request.images.len());
    for chunk in request.images.chunks(BATCH) {
        let classes = vec![request.class; chunk.len()];
        let batch = cam.maps(|plan, mode| forward(plan, chunk, mode), &classes)?;
        maps.extend(chunk.iter().copied().zip(batch));
    }
    Ok(GradCamMaps {
        layer: cam.layer().to_string(),
        maps,
    })
}

fn predicted_class(probabilities: &[f32]) -> u32 {
    if probabilities.len() == 1 {
        u32::from(probabilities[0] > 0.5)
    } else {
        super::argmax(probabilities) as u32
    }
}

/// Bilinear resampling of an `h × w` map to `size` (pixel centres aligned,
/// edges clamped: the convention of image resizers).
pub fn upsample_bilinear(
    map: &[f32],
    (h, w): (usize, usize),
    (out_h, out_w): (usize, usize),
) -> Vec<f32> {
    if h == 0 || w == 0 || map.len() != h * w {
        return vec![0.0; out_h * out_w];
    }
    let axis = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f32)> {
        (0..n_out)
            .map(|o| {
                let src = ((o as f32 + 0.5) * n_in as f32 / n_out as f32 - 0.5).max(0.0);
                let lo = (src.floor() as usize).min(n_in - 1);
                let hi = (lo + 1).min(n_in - 1);
                (lo, hi, src - lo as f32)
            })
            .collect()
    };
    let (rows, cols) = (axis(h, out_h), axis(w, out_w));
    let mut out = Vec::with_capacity(out_h * out_w);
    for &(y0, y1, fy) in &rows {
        for &(x0, x1, fx) in &cols {
            let top = map[y0 * w + x0] * (1.0 - fx) + map[y0 * w + x1] * fx;
            let bottom = map[y1 * w + x0] * (1.0 - fx) + map[y1 * w + x1] * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Padding;
    use crate::graph::blocks::Builder;
    use crate::kernels::misc::SplitMix64;

    fn forward_on(images: &[f32]) -> impl FnOnce(&mut Plan, Mode) -> Result<(), String> + '_ {
        move |plan, mode| {
            plan.forward(images, mode);
            Ok(())
        }
    }

    /// Input 4×4×1 → conv (2 filters 3×3, same) → ReLU → GAP → Dense 3.
    fn tiny() -> Graph {
        let mut g = Graph::new("tiny");
        let mut b = Builder::new(&mut g);
        let x = b.input("in", 4, 4, 1);
        let x = b.conv("c", x, 2, 3, 1, Padding::Same);
        let x = b.relu("r", x);
        let x = b.layer("gap", LayerKind::GlobalAvgPool, &[x]);
        b.dense("fc", x, 3);
        g
    }

    #[test]
    fn the_map_of_a_tiny_network_is_the_one_computed_by_hand() {
        let g = tiny();
        let mut trained = Plan::compile(&g, &analyze(&g), 1, 3).unwrap();
        let conv_w: Vec<f32> = (0..18)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 10.0)
            .collect();
        let conv_b = [0.1f32, -0.2];
        let fc_w = [0.5f32, -1.0, 0.25, 2.0, 0.75, -0.5]; // [2 in][3 out]
        trained.param_mut("c.weight").unwrap().data = conv_w.clone();
        trained.param_mut("c.bias").unwrap().data = conv_b.to_vec();
        trained.param_mut("fc.weight").unwrap().data = fc_w.to_vec();
        let image: Vec<f32> = (0..16).map(|i| ((i * 5 % 7) as f32) / 7.0).collect();

        // By hand: A = ReLU(conv(x)), zero padding 1; for GAP → Dense,
        // ∂y_c/∂A[y,x,k] = fc_w[k][c] / 16, so w_k = fc_w[k][c] / 16.
        let px = |y: i32, x: i32| -> f32 {
            if (0..4).contains(&y) && (0..4).contains(&x) {
                image[(y * 4 + x) as usize]
            } else {
                0.0
            }
        };
        let a = |y: i32, x: i32, k: usize| -> f32 {
            let mut s = conv_b[k];
            for dy in 0..3 {
                for dx in 0..3 {
                    s += px(y + dy - 1, x + dx - 1) * conv_w[((dy * 3 + dx) * 2) as usize + k];
                }
            }
            s.max(0.0)
        };
        for class in 0..3u32 {
            let w = [fc_w[class as usize] / 16.0, fc_w[3 + class as usize] / 16.0];
            let by_hand: Vec<f32> = (0..16)
                .map(|i| (w[0] * a(i / 4, i % 4, 0) + w[1] * a(i / 4, i % 4, 1)).max(0.0))
                .collect();
            for layer in [Some("r"), None] {
                let mut cam = GradCam::new(&g, layer, 1).unwrap();
                assert_eq!(cam.layer(), "r");
                cam.load(&trained.params);
                let maps = cam.maps(forward_on(&image), &[Some(class)]).unwrap();
                assert_eq!(maps[0].class, class);
                assert_eq!(maps[0].coarse_size, (4, 4));
                for (got, want) in maps[0].coarse.iter().zip(&by_hand) {
                    assert!(
                        (got - want).abs() < 1e-6,
                        "class {class}: {:?} vs {by_hand:?}",
                        maps[0].coarse
                    );
                }
                let heat = maps[0].heat((8, 8));
                assert_eq!(heat.len(), 64);
                let max = by_hand.iter().copied().fold(0.0, f32::max);
                if max > 0.0 {
                    assert!((heat.iter().copied().fold(0.0, f32::max) - 1.0).abs() < 1e-6);
                }
            }
        }
    }

    /// Input 8×8×2 → conv → BN → ReLU → pool → conv `c2` → BN → ReLU → pool
    /// → flatten → dropout → Dense 3 → softmax.
    fn deeper() -> Graph {
        let mut g = Graph::new("deeper");
        let mut b = Builder::new(&mut g);
        let x = b.input("in", 8, 8, 2);
        let x = b.conv("c1", x, 3, 3, 1, Padding::Same);
        let x = b.bn("bn1", x);
        let x = b.relu("r1", x);
        let x = b.max_pool("p1", x, 2, 2, Padding::Valid);
        let x = b.conv("c2", x, 4, 3, 1, Padding::Same);
        let x = b.bn("bn2", x);
        let x = b.relu("r2", x);
        let x = b.max_pool("p2", x, 2, 2, Padding::Valid);
        let x = b.layer("flat", LayerKind::Flatten, &[x]);
        let x = b.layer("drop", LayerKind::Dropout { rate: 0.5 }, &[x]);
        let x = b.dense("fc", x, 3);
        b.layer("softmax", LayerKind::Softmax, &[x]);
        g
    }

    /// A plan of `g` with random running statistics and BN affine parameters.
    fn trained(g: &Graph) -> Plan {
        let mut plan = Plan::compile(g, &analyze(g), 2, 11).unwrap();
        let mut rng = SplitMix64::new(5);
        for p in &mut plan.params {
            match p.role {
                super::super::ParamRole::RunningVar => {
                    p.data.iter_mut().for_each(|v| *v = 0.5 + rng.next_f32())
                }
                super::super::ParamRole::Weight | super::super::ParamRole::Bias => {}
                _ => p.data.iter_mut().for_each(|v| *v = rng.next_normal() * 0.5),
            }
        }
        plan
    }

    #[test]
    fn the_gradient_at_the_layer_matches_finite_differences() {
        let g = deeper();
        let trained = trained(&g);
        let mut rng = SplitMix64::new(9);
        let image: Vec<f32> = (0..8 * 8 * 2).map(|_| rng.next_normal()).collect();
        let mut cam = GradCam::new(&g, Some("c2"), 1).unwrap();
        cam.load(&trained.params);
        for class in 0..3u32 {
            let maps = cam.maps(forward_on(&image), &[Some(class)]).unwrap();
            let grad = cam.target_gradient(0).to_vec();
            let a = cam.plan.activation(cam.target).to_vec();
            assert_eq!(grad.len(), 4 * 4 * 4);
            // The class score (logit) with A replaced, evaluated as in evaluation.
            let mut score = |a: &[f32]| -> f64 {
                cam.plan.forward_from(cam.target, a, Mode::Eval);
                cam.plan.acts[cam.plan.logits][class as usize] as f64
            };
            const EPS: f32 = 1e-3;
            let mut fd = vec![0.0f32; a.len()];
            for i in 0..a.len() {
                let mut plus = a.clone();
                plus[i] += EPS;
                let mut minus = a.clone();
                minus[i] -= EPS;
                fd[i] = ((score(&plus) - score(&minus)) / (2.0 * EPS as f64)) as f32;
            }
            for (i, (&g, &f)) in grad.iter().zip(&fd).enumerate() {
                assert!(
                    (g - f).abs() <= 2e-3 + 1e-2 * f.abs(),
                    "class {class}, entry {i}: backward {g}, finite differences {f}"
                );
            }
            // And the map is ReLU(Σ_k mean(G_k) A_k) of those gradients.
            let mut w = [0.0f32; 4];
            for px in fd.chunks_exact(4) {
                for k in 0..4 {
                    w[k] += px[k] / 16.0;
                }
            }
            for (p, &m) in a.chunks_exact(4).zip(&maps[0].coarse) {
                let want = (0..4).map(|k| w[k] * p[k]).sum::<f32>().max(0.0);
                assert!(
                    (m - want).abs() <= 2e-3 + 1e-2 * want.abs(),
                    "{m} vs {want}"
                );
            }
        }
    }

    #[test]
    fn predictions_match_evaluation_and_each_image_gets_its_own_class() {
        let g = deeper();
        let mut plan = trained(&g);
        let mut rng = SplitMix64::new(4);
        let images: Vec<f32> = (0..2 * 8 * 8 * 2).map(|_| rng.next_normal()).collect();
        plan.forward(&images, Mode::Eval);
        let expected: Vec<u32> = plan
            .probabilities()
            .chunks_exact(3)
            .map(predicted_class)
            .collect();
        let cam = GradCam::new(&g, None, 2).unwrap();
        assert_eq!(cam.layer(), "p2", "the last spatial layer by default");
        let mut cam = GradCam::new(&g, Some("r2"), 2).unwrap();
        cam.load(&plan.params);
        let both = cam.maps(forward_on(&images), &[None, Some(2)]).unwrap();
        assert_eq!(both[0].predicted, expected[0]);
        assert_eq!(both[1].predicted, expected[1]);
        assert_eq!(both[0].class, expected[0]);
        assert_eq!(both[1].class, 2);
        let second = &images[8 * 8 * 2..];
        let alone = cam.maps(forward_on(second), &[Some(2)]).unwrap();
        for (a, b) in alone[0].coarse.iter().zip(&both[1].coarse) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
        }
        assert!(matches!(
            cam.maps(forward_on(second), &[Some(3)]),
            Err(GradCamError::NoSuchClass {
                class: 3,
                classes: 3
            })
        ));
        assert!(matches!(
            GradCam::new(&g, Some("fc"), 1),
            Err(GradCamError::NotSpatial(_))
        ));
        assert!(matches!(
            GradCam::new(&g, Some("nope"), 1),
            Err(GradCamError::UnknownLayer(_))
        ));
    }

    #[test]
    fn upsampling_keeps_constants_and_interpolates_between_centres() {
        assert_eq!(upsample_bilinear(&[2.0; 4], (2, 2), (5, 3)), vec![2.0; 15]);
        // 1×2 → 1×4: centres at 0.25 and 0.75 of the way; edges clamp.
        assert_eq!(
            upsample_bilinear(&[0.0, 1.0], (1, 2), (1, 4)),
            vec![0.0, 0.25, 0.75, 1.0]
        );
    }
}
