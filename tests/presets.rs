//! Every preset file loads, matches the builder that generated it, and
//! reproduces the published parameter and multiply counts exactly.
//!
//! `UPDATE_PRESETS=1 cargo test --test presets` rewrites `presets/*.json`
//! from `graph::blocks` (the builders are the source; the files are what ships).

use netloom::graph::{blocks, file};
use netloom::infer::{Conventions, OpCount, ParamStyle, Totals, analyze};
use std::path::PathBuf;

fn preset_path(stem: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("presets")
        .join(format!("{stem}.json"))
}

fn totals(stem: &str) -> Totals {
    totals_with(stem, Conventions::default())
}

fn totals_with(stem: &str, conventions: Conventions) -> Totals {
    let graph = file::load(&preset_path(stem)).unwrap_or_else(|e| panic!("{stem}: {e}"));
    let analysis = analyze(&graph);
    assert!(
        analysis.is_valid(),
        "{stem} has errors: {:?}",
        analysis.errors()
    );
    analysis.totals(&conventions)
}

#[test]
fn preset_files_match_their_builders() {
    let update = std::env::var_os("UPDATE_PRESETS").is_some();
    for preset in blocks::presets() {
        let text = file::to_json(&(preset.build)());
        let path = preset_path(preset.stem);
        if update {
            std::fs::write(&path, &text).unwrap();
        }
        let on_disk =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            on_disk, text,
            "{} is stale: run UPDATE_PRESETS=1 cargo test --test presets",
            preset.stem
        );
    }
}

#[test]
fn inception_5x5_naive_vs_bottleneck() {
    let naive = totals("inception-naive");
    assert_eq!(naive.total_params, 153_632);
    assert_eq!(naive.macs, 120_422_400);
    let bottleneck = totals("inception-bottleneck");
    assert_eq!(bottleneck.total_params, 15_920);
    assert_eq!(bottleneck.macs, 12_443_648);
}

#[test]
fn vgg16() {
    let t = totals("vgg16");
    assert_eq!(t.total_params, 138_357_544);
    assert_eq!(t.macs, 15_470_264_320);
}

#[test]
fn resnet50_keras() {
    let t = totals("resnet50");
    assert_eq!(t.total_params, 25_636_712);
    assert_eq!(t.trainable_params, 25_583_592);
    assert_eq!(t.non_trainable_params, 53_120);
    assert_eq!(t.macs, 3_857_973_248);
}

#[test]
fn resnet50_signs() {
    let t = totals("resnet50-signs");
    assert_eq!(t.total_params, 23_600_006);
    assert_eq!(t.trainable_params, 23_546_886);
    assert_eq!(t.non_trainable_params, 53_120);
}

#[test]
fn happy_model() {
    let t = totals("happy-model");
    assert_eq!(t.total_params, 37_633);
    assert_eq!(t.trainable_params, 37_569);
    assert_eq!(t.non_trainable_params, 64);
}

#[test]
fn googlenet() {
    let t = totals("googlenet");
    assert_eq!(t.total_params, 6_998_552);
    assert_eq!(t.macs, 1_582_671_872);
}

#[test]
fn alexnet() {
    let t = totals("alexnet");
    assert_eq!(t.total_params, 60_965_224);
    assert_eq!(t.macs, 724_406_816);
}

#[test]
fn lenet5() {
    let t = totals("lenet5");
    assert_eq!(t.total_params, 61_706);
    assert_eq!(t.macs, 416_520);
}

#[test]
fn resnet_mini_forward_macs() {
    assert_eq!(totals("resnet-mini").macs, 55_968_128);
}

#[test]
fn conventions_switch_counts() {
    let pytorch = Conventions {
        ops: OpCount::Flops,
        params: ParamStyle::PyTorch,
    };
    let t = totals_with("resnet50", pytorch);
    // PyTorch does not count BN running statistics: 25,636,712 − 53,120.
    assert_eq!(t.total_params, 25_583_592);
    assert_eq!(t.non_trainable_params, 0);
    assert_eq!(pytorch.ops(t.macs), 2 * 3_857_973_248);
}

#[test]
fn every_preset_infers_without_errors() {
    for preset in blocks::presets() {
        totals(preset.stem);
    }
}
