//! Kernel benchmarks on the shapes of the resnet-mini preset at batch 32.
//!
//! Throughput is reported in "elements" = floating-point operations (2 per
//! MAC), so criterion's `Gelem/s` reads as GFLOP/s.
//!
//! `cargo bench --bench kernels -- gemm/` compares netloom's sgemm with
//! ndarray's `dot` (matrixmultiply, threading on) and the `gemm` crate;
//! `cargo bench --bench kernels -- conv/` times the conv layers.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array2;
use netloom::kernels::conv::{Conv2dGeometry, Pads, conv2d_backward, conv2d_forward};
use netloom::kernels::gemm::{MatRef, par_sgemm};
use std::hint::black_box;
use std::time::Duration;

fn filled(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

/// (label, m, k, n, A transposed) — C (m×n) = A (m×k) · B (k×n).
const GEMM_SHAPES: &[(&str, usize, usize, usize, bool)] = &[
    ("fwd3x3_c32", 32768, 288, 32, false),
    ("fwd3x3_c64", 8192, 576, 64, false),
    ("fwd1x1_32to64", 8192, 32, 64, false),
    ("dx3x3_c32", 32768, 32, 288, false),
    ("dx3x3_c64", 8192, 64, 576, false),
    ("dw3x3_c32", 288, 32768, 32, true),
    ("dw3x3_c64", 576, 8192, 64, true),
];

fn bench_gemm(c: &mut Criterion) {
    let threads = rayon::current_num_threads();
    let mut g = c.benchmark_group("gemm");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for &(label, m, k, n, a_t) in GEMM_SHAPES {
        let a = filled(m * k, 1);
        let b = filled(k * n, 2);
        let mut cbuf = vec![0f32; m * n];
        g.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        // A stored k×m when transposed (the im2col tile seen from the dW side).
        let am = if a_t {
            MatRef::transposed(&a, m)
        } else {
            MatRef::row_major(&a, k)
        };
        g.bench_function(BenchmarkId::new("netloom", label), |bch| {
            bch.iter(|| {
                par_sgemm(
                    m,
                    n,
                    k,
                    1.0,
                    am,
                    MatRef::row_major(&b, n),
                    0.0,
                    &mut cbuf,
                    n,
                );
                black_box(&cbuf);
            })
        });
        let aa = if a_t {
            Array2::from_shape_vec((k, m), a.clone())
                .expect("shape")
                .reversed_axes()
        } else {
            Array2::from_shape_vec((m, k), a.clone()).expect("shape")
        };
        let bb = Array2::from_shape_vec((k, n), b.clone()).expect("shape");
        let mut cc = Array2::<f32>::zeros((m, n));
        g.bench_function(BenchmarkId::new("ndarray_dot", label), |bch| {
            bch.iter(|| {
                ndarray::linalg::general_mat_mul(1.0, &aa, &bb, 0.0, &mut cc);
                black_box(&cc);
            })
        });
        let (a_rs, a_cs) = if a_t {
            (1isize, m as isize)
        } else {
            (k as isize, 1)
        };
        g.bench_function(BenchmarkId::new("gemm_crate", label), |bch| {
            bch.iter(|| {
                // SAFETY: all pointers/strides describe the buffers above.
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        cbuf.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        a.as_ptr(),
                        a_cs,
                        a_rs,
                        b.as_ptr(),
                        1,
                        n as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::Rayon(threads),
                    )
                };
                black_box(&cbuf);
            })
        });
    }
    g.finish();
}

/// The conv layers of resnet-mini at batch 32.
fn conv_shapes() -> Vec<(&'static str, Conv2dGeometry)> {
    // `pad` is written `[top, left, bottom, right]` below.
    let g = |input, out_c, k, s, [top, left, bottom, right]: [usize; 4]| {
        let pad = Pads::new(top, bottom, left, right);
        Conv2dGeometry::new(32, input, out_c, k, s, pad, 1).expect("geometry")
    };
    vec![
        (
            "stem3x3_64x64x3to32",
            g((64, 64, 3), 32, (3, 3), (1, 1), [1; 4]),
        ),
        ("3x3_32x32x32", g((32, 32, 32), 32, (3, 3), (1, 1), [1; 4])),
        (
            "3x3s2_32to64",
            g((32, 32, 32), 64, (3, 3), (2, 2), [0, 0, 1, 1]),
        ),
        ("1x1s2_32to64", g((32, 32, 32), 64, (1, 1), (2, 2), [0; 4])),
        ("3x3_16x16x64", g((16, 16, 64), 64, (3, 3), (1, 1), [1; 4])),
    ]
}

fn bench_conv(c: &mut Criterion) {
    let mut g = c.benchmark_group("conv");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for (label, geo) in conv_shapes() {
        let x = filled(geo.in_len(), 3);
        let w = filled(geo.weight_len(), 4);
        let bias = filled(geo.out_c, 5);
        let dy = filled(geo.out_len(), 6);
        let mut y = vec![0f32; geo.out_len()];
        let mut dx = vec![0f32; geo.in_len()];
        let mut dw = vec![0f32; geo.weight_len()];
        let mut db = vec![0f32; geo.out_c];
        let mut ws = vec![0f32; geo.workspace_len()];
        let macs = geo.macs();
        g.throughput(Throughput::Elements(2 * macs));
        g.bench_function(BenchmarkId::new("forward", label), |b| {
            b.iter(|| {
                conv2d_forward(&geo, &x, &w, Some(&bias), &mut y, &mut ws);
                black_box(&y);
            })
        });
        g.throughput(Throughput::Elements(4 * macs));
        g.bench_function(BenchmarkId::new("backward", label), |b| {
            b.iter(|| {
                conv2d_backward(
                    &geo,
                    &x,
                    &w,
                    &dy,
                    Some(&mut dx),
                    Some(&mut dw),
                    Some(&mut db),
                    &mut ws,
                );
                black_box((&dx, &dw));
            })
        });
    }
    g.finish();
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One thread, timed in thread CPU time: GFLOP/s per core, robust to other
/// processes sharing the machine (`cargo bench --bench kernels -- cpu1/`).
fn bench_cpu1(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let mut g = c.benchmark_group("cpu1");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for &(label, m, k, n, a_t) in GEMM_SHAPES {
        let a = filled(m * k, 1);
        let b = filled(k * n, 2);
        let mut cbuf = vec![0f32; m * n];
        let am = if a_t {
            MatRef::transposed(&a, m)
        } else {
            MatRef::row_major(&a, k)
        };
        g.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        g.bench_function(BenchmarkId::new("gemm", label), |bch| {
            bch.iter_custom(|iters| {
                pool.install(|| {
                    let t0 = thread_cpu();
                    for _ in 0..iters {
                        par_sgemm(
                            m,
                            n,
                            k,
                            1.0,
                            am,
                            MatRef::row_major(&b, n),
                            0.0,
                            &mut cbuf,
                            n,
                        );
                        black_box(&cbuf);
                    }
                    thread_cpu() - t0
                })
            })
        });
    }
    for (label, geo) in conv_shapes() {
        let geo = pool.install(|| geo.with_batch(geo.batch));
        let x = filled(geo.in_len(), 3);
        let w = filled(geo.weight_len(), 4);
        let bias = filled(geo.out_c, 5);
        let dy = filled(geo.out_len(), 6);
        let mut y = vec![0f32; geo.out_len()];
        let mut dx = vec![0f32; geo.in_len()];
        let mut dw = vec![0f32; geo.weight_len()];
        let mut db = vec![0f32; geo.out_c];
        let mut ws = vec![0f32; geo.workspace_len()];
        let macs = geo.macs();
        g.throughput(Throughput::Elements(2 * macs));
        g.bench_function(BenchmarkId::new("conv_forward", label), |b| {
            b.iter_custom(|iters| {
                pool.install(|| {
                    let t0 = thread_cpu();
                    for _ in 0..iters {
                        conv2d_forward(&geo, &x, &w, Some(&bias), &mut y, &mut ws);
                        black_box(&y);
                    }
                    thread_cpu() - t0
                })
            })
        });
        g.throughput(Throughput::Elements(4 * macs));
        g.bench_function(BenchmarkId::new("conv_backward", label), |b| {
            b.iter_custom(|iters| {
                pool.install(|| {
                    let t0 = thread_cpu();
                    for _ in 0..iters {
                        conv2d_backward(
                            &geo,
                            &x,
                            &w,
                            &dy,
                            Some(&mut dx),
                            Some(&mut dw),
                            Some(&mut db),
                            &mut ws,
                        );
                        black_box((&dx, &dw));
                    }
                    thread_cpu() - t0
                })
            })
        });
    }
    g.finish();
}

/// Every conv of one resnet-mini training step at batch 32: forward, dW and
/// db for all eight, dX for all but the stem. 10.52 GFLOP, the work the peer
/// benchmarks count for a whole step (`cargo bench --bench kernels -- step/`).
/// The eight conv layers of resnet-mini at batch 32.
fn step_layers() -> Vec<Conv2dGeometry> {
    // `pad` is written `[top, left, bottom, right]` below.
    let g = |input, out_c, k, s, [top, left, bottom, right]: [usize; 4]| {
        let pad = Pads::new(top, bottom, left, right);
        Conv2dGeometry::new(32, input, out_c, k, s, pad, 1).expect("geometry")
    };
    vec![
        g((64, 64, 3), 32, (3, 3), (1, 1), [1; 4]),
        g((32, 32, 32), 32, (3, 3), (1, 1), [1; 4]),
        g((32, 32, 32), 32, (3, 3), (1, 1), [1; 4]),
        g((32, 32, 32), 64, (3, 3), (2, 2), [0, 0, 1, 1]),
        g((16, 16, 64), 64, (3, 3), (1, 1), [1; 4]),
        g((32, 32, 32), 64, (1, 1), (2, 2), [0; 4]),
        g((16, 16, 64), 64, (3, 3), (1, 1), [1; 4]),
        g((16, 16, 64), 64, (3, 3), (1, 1), [1; 4]),
    ]
}

fn bench_step(c: &mut Criterion) {
    bench_step_in(c, "step", None);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    bench_step_in(c, "cpu1", Some(&pool));
}

/// Wall-clock on the global pool, or thread CPU time on a 1-thread `pool`.
fn bench_step_in(c: &mut Criterion, group: &str, pool: Option<&rayon::ThreadPool>) {
    let layers = step_layers();
    struct Bufs {
        x: Vec<f32>,
        w: Vec<f32>,
        b: Vec<f32>,
        y: Vec<f32>,
        dx: Vec<f32>,
        dw: Vec<f32>,
        db: Vec<f32>,
    }
    let mut bufs: Vec<Bufs> = layers
        .iter()
        .map(|g| Bufs {
            x: filled(g.in_len(), 7),
            w: filled(g.weight_len(), 8),
            b: filled(g.out_c, 9),
            y: vec![0.0; g.out_len()],
            dx: vec![0.0; g.in_len()],
            dw: vec![0.0; g.weight_len()],
            db: vec![0.0; g.out_c],
        })
        .collect();
    let ws_len = layers.iter().map(|g| g.workspace_len()).max().unwrap_or(0);
    let mut ws = vec![0f32; ws_len];
    let flops: u64 = layers
        .iter()
        .enumerate()
        .map(|(i, g)| 2 * g.macs() * if i == 0 { 2 } else { 3 })
        .sum();
    let mut step = || {
        for (g, bf) in layers.iter().zip(bufs.iter_mut()) {
            conv2d_forward(g, &bf.x, &bf.w, Some(&bf.b), &mut bf.y, &mut ws);
        }
        for (i, (g, bf)) in layers.iter().zip(bufs.iter_mut()).enumerate().rev() {
            let dx = if i == 0 { None } else { Some(&mut bf.dx[..]) };
            // y doubles as dY: same shape, arbitrary values.
            conv2d_backward(
                g,
                &bf.x,
                &bf.w,
                &bf.y,
                dx,
                Some(&mut bf.dw),
                Some(&mut bf.db),
                &mut ws,
            );
        }
        black_box(&bufs);
    };
    let mut grp = c.benchmark_group(group);
    grp.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    grp.throughput(Throughput::Elements(flops));
    grp.bench_function("resnet_mini_convs_fwd_bwd", |bch| match pool {
        None => bch.iter(&mut step),
        Some(pool) => bch.iter_custom(|iters| {
            pool.install(|| {
                let t0 = thread_cpu();
                for _ in 0..iters {
                    step();
                }
                thread_cpu() - t0
            })
        }),
    });
    grp.finish();
}

criterion_group!(benches, bench_gemm, bench_conv, bench_cpu1, bench_step);
criterion_main!(benches);
