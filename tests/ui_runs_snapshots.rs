//! Snapshot images of the training workspace at 1280×800 (tests/snapshots,
//! refreshed with `UPDATE_SNAPSHOTS=1 cargo test --test ui_runs_snapshots`):
//! the Training tab mid-run with two runs and the Runs table with its
//! evaluations. The runs are made up but consistent and no trainer runs, so
//! the images are stable; layout regressions show as image diffs. The
//! tests also check by accessible label that every part of the tab is on
//! screen at this size.
#![cfg(feature = "gui")]

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use netloom::app::command::Command;
use netloom::app::training::estimate::StepTimer;
use netloom::app::training::evaluate::{EnsembleResult, MultiCropResult};
use netloom::app::training::{Progress, RunRecord, RunSetup, RunStatus};
use netloom::app::{BottomTab, NetloomApp};
use netloom::graph::blocks;
use netloom::train::trainer::{EpochStats, RunInfo, TestResult};
use std::time::Duration;

const SIZE: egui::Vec2 = egui::Vec2::new(1280.0, 800.0);

fn harness() -> Harness<'static, NetloomApp> {
    let mut app = NetloomApp::for_tests(blocks::resnet_mini());
    app.training.step_timer = StepTimer::fixed(38.5);
    let mut h = Harness::builder()
        .with_size(SIZE)
        .with_max_steps(32)
        .build_ui_state(|ui, app: &mut NetloomApp| app.ui(ui), app);
    h.run();
    h
}

/// The memory lines say how large a batch fits in the machine's free
/// memory, which changes between runs by a few glyphs (about 35 pixels
/// each); a layout change moves far more.
fn snap(h: &mut Harness<'static, NetloomApp>, name: &str) {
    let options = egui_kittest::SnapshotOptions::default().max_failed_pixels(600);
    h.snapshot_options(name, &options);
}

/// Runs frames until the augmentation previews are drawn (read on a thread).
fn settle(h: &mut Harness<'static, NetloomApp>, previews: bool) {
    for _ in 0..600 {
        h.run();
        if !previews || h.query_by_label("local warp preview").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for _ in 0..4 {
        h.run();
    }
}

/// A run of `epochs_done` of `epochs` epochs, its batch losses falling
/// along a fixed curve with a fixed wiggle.
fn run(id: usize, design: &str, macs: u64, epochs_done: u64, epochs: u64, speed: f64) -> RunRecord {
    let setup = RunSetup {
        epochs,
        ..RunSetup::default()
    };
    let mut r = RunRecord::new(id, design.into(), macs, setup);
    r.params = 152_838;
    let batches = 27usize;
    r.info = Some(RunInfo {
        design: design.into(),
        classes: (0..10).map(|k| k.to_string()).collect(),
        train_images: 864,
        val_images: 96,
        test_images: 120,
        batches_per_epoch: batches,
        epochs,
        first_epoch: 0,
        trainable_params: 152_006,
        total_params: 152_838,
        cache: None,
    });
    let done = epochs_done as usize * batches + if epochs_done < epochs { 11 } else { 0 };
    for b in 1..=done {
        let x = b as f64 / batches as f64;
        let wiggle = 0.15 * ((b * 7919 % 101) as f64 / 101.0 - 0.5);
        r.batch_loss
            .push([x, 2.3 * (-speed * x).exp() + 0.1 + wiggle]);
        r.learning_rate.push([x, 1e-3]);
    }
    r.epochs = (1..=epochs_done)
        .map(|e| {
            let a = 1.0 - (-(speed as f32) * e as f32).exp() * 0.9;
            EpochStats {
                epoch: e,
                train_loss: 2.3 * (-(speed as f32) * e as f32).exp(),
                train_acc: a,
                val_loss: Some(2.4 * (-(speed as f32) * e as f32).exp()),
                val_acc: Some(a - 0.04),
                seconds: 13.5 + 0.1 * e as f64,
                learning_rate: 1e-3,
                layer_times: Vec::new(),
            }
        })
        .collect();
    if epochs_done < epochs {
        r.status = RunStatus::Running;
        r.progress = Some(Progress {
            epoch: epochs_done + 1,
            epochs,
            batch: 11,
            batches,
            images_per_sec: 812.0,
            eta: Duration::from_secs(96),
        });
    } else {
        r.status = RunStatus::Finished;
        let acc = r.val_acc().unwrap_or(0.0);
        r.test = Some(TestResult {
            test_loss: 0.4,
            test_acc: acc - 0.02,
            test_acc_without_precise_bn: Some(acc - 0.05),
            confusion: Vec::new(),
            samples: Vec::new(),
            image_shape: (64, 64, 3),
        });
    }
    r
}

#[test]
fn the_training_panel_mid_run_with_two_runs() {
    let mut h = harness();
    let mut runs = vec![
        run(1, "resnet-mini", 55_968_128, 8, 8, 0.45),
        run(2, "resnet-mini", 55_968_128, 3, 8, 0.7),
    ];
    // Runs of the design on the canvas as it is (not an earlier version).
    let generation = h.state().doc().generation;
    for r in &mut runs {
        r.generation = generation;
    }
    h.state_mut().training.runs = runs;
    let ctx = h.ctx.clone();
    h.state_mut()
        .execute(&ctx, Command::SetBottomTab(BottomTab::Training));
    settle(&mut h, true);
    // The controls and all three plots are on screen; the setup column
    // scrolls (its last rows, the augmentation previews, lie below the
    // fold at 1280x800 but are in the tree).
    let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, SIZE);
    assert!(h.query_by_label("local warp preview").is_some());
    for label in [
        "Train",
        "Loss plot with 308 points",
        "Accuracy plot with 11 epochs",
        "Learning-rate plot",
    ] {
        let node = h.get_by_label(label);
        assert!(
            screen.contains_rect(node.rect()),
            "{label} at {:?} is off screen",
            node.rect()
        );
    }
    snap(&mut h, "training_mid_run");
}

#[test]
fn the_runs_table_with_multi_crop_and_an_ensemble() {
    let mut h = harness();
    let mut runs = vec![
        run(1, "resnet-mini", 55_968_128, 8, 8, 0.45),
        run(2, "resnet-mini", 55_968_128, 8, 8, 0.7),
        run(3, "resnet-mini (B)", 38_114_560, 8, 8, 0.5),
    ];
    runs[0].multi_crop = Some(MultiCropResult {
        accuracy: 0.9083,
        single: 0.8917,
        views: 10,
        images: 120,
    });
    h.state_mut().training.runs = runs;
    h.state_mut().training.ensembles = vec![EnsembleResult {
        runs: vec![1, 2],
        design: "resnet-mini".into(),
        accuracy: 0.9167,
        views: 1,
        images: 120,
        single: vec![(1, 0.8917), (2, 0.9)],
    }];
    let ctx = h.ctx.clone();
    h.state_mut()
        .execute(&ctx, Command::SetBottomTab(BottomTab::Runs));
    settle(&mut h, false);
    let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, SIZE);
    let plot = h.get_by_label_contains("Accuracy against MACs plot with 3 runs");
    assert!(
        screen.contains_rect(plot.rect()) && plot.rect().width() > 200.0,
        "the scatter at {:?} is on screen beside the table",
        plot.rect()
    );
    snap(&mut h, "runs_table_evaluations");
}
