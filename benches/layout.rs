//! Layered layout plus wire routing of big designs: it runs on import, on
//! presets and on Auto-layout, so it must stay far below a second — the
//! target is 50 ms for GoogLeNet and a ~430-layer DenseNet-121.
//! `cargo bench --bench layout`

#[path = "../tests/common/densenet.rs"]
mod densenet;

use criterion::{Criterion, criterion_group, criterion_main};
use netloom::graph::layout::{Orientation, auto_layout_with};
use netloom::graph::{Graph, blocks, route};
use std::hint::black_box;

fn layout_and_route(graph: &Graph, orientation: Orientation) -> usize {
    let mut g = graph.clone();
    auto_layout_with(&mut g, orientation);
    let r = route::route(&g, &route::node_boxes(&g), orientation);
    r.wires.len()
}

fn layout_presets(c: &mut Criterion) {
    for (name, graph) in [
        ("googlenet", blocks::googlenet()),
        ("resnet50", blocks::resnet50("resnet50", 224, 1000, false)),
        ("densenet121", densenet::densenet121_like()),
    ] {
        c.bench_function(
            &format!("layout+route {name} ({} layers)", graph.len()),
            |b| {
                b.iter(|| {
                    black_box(layout_and_route(
                        black_box(&graph),
                        Orientation::TopToBottom,
                    ))
                })
            },
        );
    }
    let dense = densenet::densenet121_like();
    c.bench_function("route only densenet121 (stored positions)", |b| {
        let mut g = dense.clone();
        auto_layout_with(&mut g, Orientation::TopToBottom);
        let boxes = route::node_boxes(&g);
        b.iter(|| {
            black_box(
                route::route(&g, &boxes, Orientation::TopToBottom)
                    .wires
                    .len(),
            )
        })
    });
}

criterion_group!(benches, layout_presets);
criterion_main!(benches);
