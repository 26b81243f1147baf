//! The plan's array boundary: batches go in and results come out as ndarray
//! types whose shapes are checked against the plan, so a caller who passes
//! NCHW for NHWC, a batch larger than the plan, or one label too few gets an
//! [`ArrayError`] instead of a panic or a silently wrong result.
//!
//! Underneath, the plan keeps working on contiguous slices (the kernels know
//! nothing of ndarray): a standard-layout view is passed through without a
//! copy; any other layout is copied once into row-major order.

use std::borrow::Cow;

use ndarray::{Array4, ArrayView1, ArrayView2, ArrayView4, ArrayViewD, IxDyn};
use thiserror::Error;

use super::optim::Optimizer;
use super::plan::{ParamTensor, Plan};
use super::{Mode, argmax};
use crate::data::Dataset;

/// An array that does not fit the plan it is given to.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ArrayError {
    #[error(
        "images have shape {got:?}; the plan takes N×{h}×{w}×{c} (NHWC) with 1 ≤ N ≤ {max_batch}"
    )]
    Images {
        got: [usize; 4],
        h: usize,
        w: usize,
        c: usize,
        max_batch: usize,
    },
    #[error("{labels} labels for {images} images")]
    LabelCount { labels: usize, images: usize },
    #[error("label {label} at position {index} is out of range for {classes} classes")]
    LabelRange {
        index: usize,
        label: u32,
        classes: usize,
    },
    #[error("no step {step}: the plan has {steps}")]
    Step { step: usize, steps: usize },
    #[error("tensor `{name}` holds {len} numbers, not the {expected} its shape {shape:?} needs")]
    Tensor {
        name: String,
        shape: Vec<usize>,
        len: usize,
        expected: usize,
    },
}

impl Plan {
    /// The input one image must have, `(h, w, c)`.
    pub fn input_dims(&self) -> (usize, usize, usize) {
        self.input_shape
    }

    /// Runs the network on an NHWC batch and returns the class
    /// probabilities, `N × classes`.
    pub fn forward_array(
        &mut self,
        images: ArrayView4<f32>,
        mode: Mode,
    ) -> Result<ArrayView2<'_, f32>, ArrayError> {
        let flat = self.checked_images(&images)?;
        self.forward(&flat, mode);
        Ok(self.probabilities_array())
    }

    /// One training step (forward, loss, backward, optimizer update) on an
    /// NHWC batch and its labels; returns the loss.
    pub fn train_step_array(
        &mut self,
        images: ArrayView4<f32>,
        labels: ArrayView1<u32>,
        optimizer: &mut Optimizer,
    ) -> Result<f32, ArrayError> {
        let flat = self.checked_images(&images)?;
        let labels = self.checked_labels(&labels, images.dim().0)?;
        Ok(self.train_step(&flat, &labels, optimizer))
    }

    /// Class probabilities of the last forward pass, `N × classes`.
    pub fn probabilities_array(&self) -> ArrayView2<'_, f32> {
        let probs = self.probabilities();
        let k = self.classes.max(1);
        ArrayView2::from_shape((probs.len() / k, k), probs)
            .expect("probabilities hold batch × classes numbers")
    }

    /// Predicted class of each image of the last forward pass.
    pub fn predictions(&self) -> Vec<u32> {
        self.probabilities_array()
            .rows()
            .into_iter()
            .map(|row| match row.as_slice() {
                Some([p]) => (*p > 0.5) as u32,
                Some(r) => argmax(r) as u32,
                None => 0,
            })
            .collect()
    }

    /// The output of `step` for the last forward pass, one row per image
    /// (`N × elements`; see [`Plan::activation`] for fused steps).
    pub fn activation_array(&self, step: usize) -> Result<ArrayView2<'_, f32>, ArrayError> {
        if step >= self.steps.len() {
            return Err(ArrayError::Step {
                step,
                steps: self.steps.len(),
            });
        }
        let per = self.value_elems[step].max(1);
        let values = self.activation(step);
        Ok(ArrayView2::from_shape((values.len() / per, per), values)
            .expect("an activation holds batch × elements numbers"))
    }

    /// The images as the contiguous NHWC slice the plan reads, after checking
    /// their shape (a copy only when the view is not in standard layout).
    fn checked_images<'a>(
        &self,
        images: &'a ArrayView4<f32>,
    ) -> Result<Cow<'a, [f32]>, ArrayError> {
        let (n, h, w, c) = images.dim();
        let (ph, pw, pc) = self.input_shape;
        if n == 0 || n > self.max_batch || (h, w, c) != (ph, pw, pc) {
            return Err(ArrayError::Images {
                got: [n, h, w, c],
                h: ph,
                w: pw,
                c: pc,
                max_batch: self.max_batch,
            });
        }
        Ok(match images.as_slice() {
            Some(flat) => Cow::Borrowed(flat),
            None => Cow::Owned(images.iter().copied().collect()),
        })
    }

    fn checked_labels<'a>(
        &self,
        labels: &'a ArrayView1<u32>,
        images: usize,
    ) -> Result<Cow<'a, [u32]>, ArrayError> {
        if labels.len() != images {
            return Err(ArrayError::LabelCount {
                labels: labels.len(),
                images,
            });
        }
        // A single sigmoid output takes 0/1 labels; K outputs take 0..K.
        let classes = self.classes.max(2);
        if let Some((index, &label)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| l as usize >= classes)
        {
            return Err(ArrayError::LabelRange {
                index,
                label,
                classes,
            });
        }
        Ok(match labels.as_slice() {
            Some(flat) => Cow::Borrowed(flat),
            None => Cow::Owned(labels.iter().copied().collect()),
        })
    }
}

impl ParamTensor {
    /// The tensor's values in its Netloom layout (conv HWIO, dense `[in, out]`).
    pub fn values(&self) -> Result<ArrayViewD<'_, f32>, ArrayError> {
        self.view_of(&self.data)
    }

    /// The gradient of the last backward pass, in the same layout;
    /// `None` for tensors that get no gradient (frozen, running statistics).
    pub fn gradient(&self) -> Option<Result<ArrayViewD<'_, f32>, ArrayError>> {
        (!self.grad.is_empty()).then(|| self.view_of(&self.grad))
    }

    fn view_of<'a>(&self, numbers: &'a [f32]) -> Result<ArrayViewD<'a, f32>, ArrayError> {
        ArrayViewD::from_shape(IxDyn(&self.shape), numbers).map_err(|_| ArrayError::Tensor {
            name: self.name.clone(),
            shape: self.shape.clone(),
            len: numbers.len(),
            expected: self.shape.iter().product(),
        })
    }
}

impl Dataset {
    /// Every image as one NHWC array (`len × h × w × c`), without a copy.
    pub fn images_array(&self) -> ArrayView4<'_, f32> {
        ArrayView4::from_shape((self.len(), self.h, self.w, self.c), &self.images)
            .expect("a dataset holds len × h × w × c numbers")
    }

    /// Images `start..start + count` as an NHWC array, without a copy.
    pub fn batch_array(&self, start: usize, count: usize) -> ArrayView4<'_, f32> {
        let per = self.image_len();
        let end = (start + count).min(self.len());
        let start = start.min(end);
        ArrayView4::from_shape(
            (end - start, self.h, self.w, self.c),
            &self.images[start * per..end * per],
        )
        .expect("a slice of whole images")
    }

    /// The labels as an array, one per image.
    pub fn labels_array(&self) -> ArrayView1<'_, u32> {
        ArrayView1::from(&self.labels)
    }
}

/// Converts an NCHW batch (PyTorch's layout) into the NHWC array the plan
/// takes: `out[n, y, x, c] = nchw[n, c, y, x]`.
pub fn nhwc_from_nchw(nchw: ArrayView4<f32>) -> Array4<f32> {
    let nhwc = nchw.permuted_axes([0, 2, 3, 1]);
    nhwc.as_standard_layout().into_owned()
}
