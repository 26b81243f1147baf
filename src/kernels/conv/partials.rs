//! dW and db as per-slot partial sums: each work slot owns a contiguous run
//! of tiles and its own partials in the workspace; the partials are then
//! reduced in slot order, so every sum is the same whatever the thread
//! timing.

use rayon::prelude::*;

/// Floats of the reduction each task takes.
const REDUCE_CHUNK: usize = 1024;

/// Splits one slot's workspace into its scratch (`scratch` floats), its
/// partial dW (`weight_len`) and partial db (the rest), the partials zeroed.
pub(super) fn slot_partials(
    slot: &mut [f32],
    scratch: usize,
    weight_len: usize,
) -> (&mut [f32], &mut [f32], &mut [f32]) {
    let (buf, rest) = slot.split_at_mut(scratch);
    let (pw, pb) = rest.split_at_mut(weight_len);
    pw.fill(0.0);
    pb.fill(0.0);
    (buf, pw, pb)
}

/// `out[j] += Σ_rows m[row][j]` over the rows of the row-major `m`, in row order.
pub(super) fn add_column_sums(m: &[f32], width: usize, out: &mut [f32]) {
    for r in m.chunks_exact(width) {
        for (o, v) in out.iter_mut().zip(r) {
            *o += *v;
        }
    }
}

/// `out[i] = Σ_s parts[s·stride + offset + i]` over the `slots` slots, in
/// slot order; split between threads in chunks of [`REDUCE_CHUNK`].
pub(super) fn reduce_slots(
    parts: &[f32],
    slots: usize,
    stride: usize,
    offset: usize,
    out: &mut [f32],
) {
    out.par_chunks_mut(REDUCE_CHUNK)
        .enumerate()
        .for_each(|(ci, out)| {
            let i0 = offset + ci * REDUCE_CHUNK;
            out.fill(0.0);
            for s in 0..slots {
                let p = &parts[s * stride + i0..][..out.len()];
                for (o, v) in out.iter_mut().zip(p) {
                    *o += *v;
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduce_slots_sums_each_slot_in_order() {
        // 3 slots of stride 5: [scratch 1][partial 4]; 2500 floats per
        // partial would need several chunks, so also a long one.
        for len in [4usize, 2500] {
            let stride = len + 1;
            let parts: Vec<f32> = (0..3 * stride).map(|i| (i % 97) as f32 * 0.25).collect();
            let mut out = vec![f32::NAN; len];
            reduce_slots(&parts, 3, stride, 1, &mut out);
            for (i, o) in out.iter().enumerate() {
                let want = parts[1 + i] + parts[stride + 1 + i] + parts[2 * stride + 1 + i];
                assert_eq!(*o, want, "element {i} of {len}");
            }
        }
    }

    #[test]
    fn column_sums_add_to_what_is_there() {
        let m = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut out = [10.0, 20.0];
        add_column_sums(&m, 2, &mut out);
        assert_eq!(out, [19.0, 32.0]);
    }

    #[test]
    fn slot_partials_zero_the_partials_only() {
        let mut slot = [7.0f32; 6];
        let (buf, pw, pb) = slot_partials(&mut slot, 2, 3);
        assert_eq!((buf.len(), pw.len(), pb.len()), (2, 3, 1));
        assert!(buf.iter().all(|v| *v == 7.0));
        assert!(pw.iter().chain(pb.iter()).all(|v| *v == 0.0));
    }
}
