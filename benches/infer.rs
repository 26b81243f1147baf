//! Inference runs on every edit in the designer: it must stay far below a frame.
//! `cargo bench --bench infer`

use criterion::{Criterion, criterion_group, criterion_main};
use netloom::graph::blocks;
use netloom::infer::{Conventions, analyze};
use std::hint::black_box;

fn infer_presets(c: &mut Criterion) {
    for (name, graph) in [
        ("resnet50", blocks::resnet50("resnet50", 224, 1000, false)),
        ("googlenet", blocks::googlenet()),
        ("vgg16", blocks::vgg16()),
    ] {
        c.bench_function(&format!("analyze {name}"), |b| {
            b.iter(|| {
                let a = analyze(black_box(&graph));
                black_box(a.totals(&Conventions::default()))
            })
        });
    }
}

criterion_group!(benches, infer_presets);
criterion_main!(benches);
