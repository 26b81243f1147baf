//! Transfer learning: frozen layers stay bit-identical, and training from the
//! activation cache of the frozen prefix gives the same losses as running it
//! every batch (in memory or spilled to a temporary file).

mod common;

use common::*;
use netloom::train::trainer::{Event, RunEnd};

#[test]
fn frozen_layers_are_bit_identical_after_training() {
    let mut c = config(3, 2);
    c.freeze = vec!["c1".into(), "bn1".into()];
    c.activation_cache = false;
    let (_, before) = {
        let mut c0 = config(3, 0);
        c0.freeze = c.freeze.clone();
        run(c0)
    };
    let (_, after) = run(c);
    assert_eq!(after.end, RunEnd::Finished);
    for name in [
        "c1.weight",
        "c1.bias",
        "bn1.gamma",
        "bn1.beta",
        "bn1.running_mean",
        "bn1.running_var",
    ] {
        let a = before.params.iter().find(|p| p.name == name).expect(name);
        let b = after.params.iter().find(|p| p.name == name).expect(name);
        assert_eq!(a.data, b.data, "{name} changed");
    }
    let a = before
        .params
        .iter()
        .find(|p| p.name == "c2.weight")
        .expect("c2");
    let b = after
        .params
        .iter()
        .find(|p| p.name == "c2.weight")
        .expect("c2");
    assert_ne!(a.data, b.data, "trainable layers must change");
}

#[test]
fn unknown_freeze_names_are_refused() {
    let mut c = config(3, 1);
    c.freeze = vec!["nope".into()];
    let (_, out) = run(c);
    let RunEnd::Failed(msg) = out.end else {
        panic!("expected failure")
    };
    assert!(msg.contains("no layer named `nope`"), "{msg}");
}

fn losses_with(cache: bool, memory_limit: usize, freeze: &[&str]) -> (Vec<f32>, Vec<Event>) {
    let mut c = config(3, 2);
    c.freeze = freeze.iter().map(|s| s.to_string()).collect();
    c.activation_cache = cache;
    c.cache_memory_limit = memory_limit;
    let (events, out) = run(c);
    assert_eq!(out.end, RunEnd::Finished);
    (batch_losses(&events), events)
}

fn assert_close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * x.abs().max(1.0),
            "batch {i}: {x} vs {y}"
        );
    }
}

#[test]
fn activation_cache_gives_the_same_losses_as_no_cache() {
    let all_but_fc = ["c1", "bn1", "c2", "bn2"];
    let (plain, _) = losses_with(false, usize::MAX, &all_but_fc);
    let (cached, events) = losses_with(true, usize::MAX, &all_but_fc);
    let info = events
        .iter()
        .find_map(|e| match e {
            Event::Started(i) => Some(i.clone()),
            _ => None,
        })
        .expect("started");
    let (layer, bytes) = info.cache.expect("the frozen prefix is cached");
    assert_eq!(layer, "gap");
    assert_eq!(bytes, (96 + 24 + 30) * 6 * 4);
    assert_close(&plain, &cached);
    // Spilled to a temporary file: same numbers.
    let (spilled, events) = losses_with(true, 0, &all_but_fc);
    assert!(
        notices(&events)
            .iter()
            .any(|n| n.contains("temporary file")),
        "{:?}",
        notices(&events)
    );
    assert_close(&plain, &spilled);
    // A cut in the middle (trainable BN after it): same again.
    let (plain, _) = losses_with(false, usize::MAX, &["c1", "bn1"]);
    let (cached, _) = losses_with(true, usize::MAX, &["c1", "bn1"]);
    assert_close(&plain, &cached);
}

#[test]
fn freeze_through_lists_the_prefix_in_order() {
    let names = netloom::train::trainer::layers_through(&tiny_design(3), "gap").expect("gap");
    assert_eq!(
        names,
        ["input", "c1", "bn1", "r1", "c2", "bn2", "r2", "gap"]
    );
    assert!(netloom::train::trainer::layers_through(&tiny_design(3), "zz").is_err());
}
