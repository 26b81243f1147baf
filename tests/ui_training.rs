//! Training from the designer, driven by accessible labels (egui_kittest):
//! a short run on a tiny PNG dataset plots its loss, Pause/Resume/Stop change
//! its state, a broken design is refused with the reason, and a finished
//! run shows its predictions, confusion matrix and feature maps.
#![cfg(feature = "gui")]

mod common;

use common::app::*;
use common::*;

use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use netloom::app::NetloomApp;
use netloom::app::command::Command;
use netloom::app::training::RunStatus;
use netloom::app::training::views::RunColumn;
use netloom::graph::blocks;
use std::path::PathBuf;
use std::time::Duration;

/// The tiny design set up to train on a PNG folder of synthetic images.
fn tiny_app(epochs: u64) -> (Harness<'static, NetloomApp>, PathBuf) {
    // One folder per call: tests run in parallel and each removes its own.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "netloom-ui-train-{}-{epochs}-{call}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    write_png_folder(&dir);
    let mut h = harness(tiny_design(3));
    let mut setup = h.state().training.setup.clone();
    setup.dataset = Some(dir.clone());
    setup.epochs = epochs;
    setup.batch_size = 8;
    setup.learning_rate = 0.01;
    let ctx = h.ctx.clone();
    h.state_mut()
        .execute(&ctx, Command::SetRunSetup(Box::new(setup)));
    click(&mut h, "Training");
    (h, dir)
}

fn batches(h: &Harness<'static, NetloomApp>) -> usize {
    h.state()
        .training
        .current()
        .map_or(0, |r| r.batch_loss.len())
}

#[test]
fn a_run_plots_its_loss_and_pause_resume_stop_change_its_state() {
    let (mut h, dir) = tiny_app(1000);
    assert!(has(&h, "Loss plot with 0 points"));
    // Run setup shows the run's memory estimate for the chosen batch.
    assert!(has(&h, " at batch 8"), "memory estimate at batch 8");
    click(&mut h, "Train");
    wait_until(&mut h, "loss points", |h| batches(h) >= 3);
    assert!(has(&h, "Loss plot with") && !has(&h, "Loss plot with 0 points"));
    // Per-layer times reach the canvas.
    wait_until(&mut h, "layer times", |h| {
        h.state().training.live.contains_key("c1")
    });
    assert!(has(&h, "Running"));

    click(&mut h, "Pause");
    wait_until(&mut h, "paused", |h| {
        h.state().training.current().map(|r| &r.status) == Some(&RunStatus::Paused)
    });
    assert!(has(&h, "· Paused"));
    let n = batches(&h);
    std::thread::sleep(Duration::from_millis(300));
    h.run();
    assert_eq!(batches(&h), n, "no batches while paused");

    click(&mut h, "Step");
    wait_until(&mut h, "one more batch", |h| batches(h) == n + 1);

    click(&mut h, "Resume");
    wait_until(&mut h, "running again", |h| batches(h) > n + 2);

    // Editing during the run: the run goes on with the design it started
    // with, and the canvas says the design changed since.
    let c2 = h.state().doc().graph.find("c2").unwrap();
    let ctx = h.ctx.clone();
    h.state_mut().execute(
        &ctx,
        Command::Rename {
            id: c2,
            name: "conv_two".into(),
        },
    );
    h.run();
    assert!(has(&h, "Changed since the run started"));
    let m = batches(&h);
    wait_until(&mut h, "training on after the edit", |h| batches(h) > m + 2);

    click(&mut h, "Stop");
    wait_until(&mut h, "stopped", |h| {
        h.state().training.current().map(|r| &r.status) == Some(&RunStatus::Stopped)
    });
    assert!(has(&h, "· Stopped"));
    // The stopped run's weights can be saved from the panel's command.
    let weights = dir.join("saved.safetensors");
    let ctx = h.ctx.clone();
    h.state_mut()
        .execute(&ctx, Command::SaveWeightsTo(weights.clone()));
    h.run();
    assert!(weights.exists(), "weights saved");
    // And the metrics exported (one row per finished epoch, none here yet is fine).
    let csv = dir.join("runs.csv");
    h.state_mut()
        .execute(&ctx, Command::ExportMetricsTo(csv.clone()));
    h.run();
    let text = std::fs::read_to_string(&csv).expect("csv written");
    assert!(text.starts_with("run,design,macs,epoch,"), "{text}");
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn training_a_design_with_errors_is_refused_with_the_reason() {
    // resnet-mini with block 2's projection shortcut removed: the Add sees two shapes.
    let mut g = blocks::resnet_mini();
    for name in ["block2_proj", "block2_proj_bn"] {
        let id = g.find(name).unwrap();
        g.remove_node(id);
    }
    let (from, add) = (g.find("block1_out").unwrap(), g.find("block2_add").unwrap());
    g.connect(from, add, 1).unwrap();
    let mut h = harness(g);
    click(&mut h, "Training");
    click(&mut h, "Train");
    assert!(
        has(&h, "Training needs a design without errors: `block2_add`"),
        "the refusal names the layer at fault"
    );
    assert!(h.state().training.runs.is_empty());
}

#[test]
fn a_finished_run_shows_predictions_confusion_and_feature_maps() {
    let (mut h, dir) = tiny_app(2);
    click(&mut h, "Train");
    wait_until(&mut h, "the run to finish", |h| {
        h.state().training.current().map(|r| &r.status) == Some(&RunStatus::Finished)
    });
    assert!(has(&h, "test accuracy"));
    let run = h.state().training.current().unwrap().clone();
    assert_eq!(run.epochs.len(), 2);
    assert!(has(&h, "Accuracy plot with 2 epochs"));

    // The Runs table: each column's cell holds what its header names, in
    // the header's column.
    click(&mut h, "Runs");
    let expected = [
        (RunColumn::Macs, netloom::infer::compact(run.macs)),
        (RunColumn::Epochs, "2 of 2".to_string()),
        (
            RunColumn::ValAcc,
            format!("{:.2}%", 100.0 * run.val_acc().unwrap()),
        ),
        (
            RunColumn::TestAcc,
            format!("{:.2}%", 100.0 * run.test.as_ref().unwrap().test_acc),
        ),
        (RunColumn::Setup, run.setup.describe()),
    ];
    for (column, text) in expected {
        assert_eq!(column.cell(&run), text, "{column:?}");
        let header_row = h.get_by_label("Show").rect();
        let header = h
            .query_all_by_label(column.header())
            .map(|n| n.rect())
            .find(|r| (r.center().y - header_row.center().y).abs() < 2.0)
            .unwrap_or_else(|| panic!("no {:?} header in the Runs table", column.header()));
        let cells: Vec<egui::Rect> = h.query_all_by_label(&text).map(|n| n.rect()).collect();
        assert!(
            cells
                .iter()
                .any(|cell| (cell.min.x - header.min.x).abs() < 1.0 && cell.min.y > header.max.y),
            "{column:?}: no cell {text:?} under its header at {header:?} (found at {cells:?})"
        );
    }
    assert!(run.params > 0);

    click(&mut h, "Predictions");
    let test = run.test.as_ref().expect("test result");
    assert_eq!(test.samples.len(), 15);
    let first = &test.samples[0];
    let label = format!("test image {}: true ", first.index);
    assert!(has(&h, &label), "gallery thumbnails are labelled");

    click(&mut h, "Confusion matrix");
    let correct: usize = (0..3).map(|i| test.confusion[i][i]).sum();
    assert!(has(
        &h,
        &format!("Confusion matrix 3×3: {correct} of 15 on the diagonal")
    ));

    // Feature maps of `c2` for the first gallery image.
    let c2 = h.state().doc().graph.find("c2").unwrap();
    let ctx = h.ctx.clone();
    h.state_mut()
        .execute(&ctx, Command::Select([c2].into_iter().collect()));
    h.state_mut()
        .execute(&ctx, Command::ShowFeatureMapsOf { image: first.index });
    wait_until(&mut h, "feature maps", |h| {
        matches!(h.state().training.probe.result, Some(Ok(_)))
    });
    h.run();
    assert!(has(&h, "6 of 6 channels"), "c2 has 6 channels");
    assert!(has(&h, "`c2` output 8×8×6"));

    // The lock on a node freezes it; the trainable total follows at once.
    let trainable = |h: &Harness<'static, NetloomApp>| {
        h.state()
            .doc()
            .analysis
            .totals(&h.state().conventions)
            .trainable_params
    };
    let before = trainable(&h);
    click(&mut h, "Freeze c1");
    assert!(
        h.state()
            .doc()
            .graph
            .node(h.state().doc().graph.find("c1").unwrap())
            .unwrap()
            .frozen
    );
    assert_eq!(before - trainable(&h), 3 * 3 * 3 * 4 + 4);
    click(&mut h, "Unfreeze c1");
    assert_eq!(trainable(&h), before);
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reset_weights_restarts_from_the_seeded_start_and_continuing_does_not() {
    let (mut h, dir) = tiny_app(1);
    let finished = |h: &Harness<'static, NetloomApp>| {
        h.state().training.current().map(|r| &r.status) == Some(&RunStatus::Finished)
    };
    let first_loss =
        |h: &Harness<'static, NetloomApp>, i: usize| h.state().training.runs[i].batch_loss[0][1];
    click(&mut h, "Train");
    wait_until(&mut h, "run 1", finished);
    // Continue from the last run's weights: the first loss is lower than run 1's.
    let mut setup = h.state().training.setup.clone();
    setup.start_from = netloom::app::training::StartFrom::LastRun;
    let ctx = h.ctx.clone();
    h.state_mut()
        .execute(&ctx, Command::SetRunSetup(Box::new(setup)));
    click(&mut h, "Train");
    wait_until(&mut h, "run 2", |h| {
        h.state().training.runs.len() == 2 && finished(h)
    });
    assert!(
        first_loss(&h, 1) < first_loss(&h, 0),
        "run 2 continues from run 1"
    );
    // Reset: run 3 starts exactly where run 1 did (same seed).
    click(&mut h, "Reset weights");
    click(&mut h, "Train");
    wait_until(&mut h, "run 3", |h| {
        h.state().training.runs.len() == 3 && finished(h)
    });
    assert_eq!(first_loss(&h, 2), first_loss(&h, 0));
    assert!(has(&h, "Runs"));
    click(&mut h, "Runs");
    assert!(has(&h, "Accuracy against MACs plot with 3 runs"));
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_sweep_from_the_dialog_trains_one_run_per_value_and_plots_them() {
    let (mut h, dir) = tiny_app(1);
    let c2 = h.state().doc().graph.find("c2").unwrap();
    let ctx = h.ctx.clone();
    h.state_mut()
        .execute(&ctx, Command::Select([c2].into_iter().collect()));
    h.state_mut().execute(&ctx, Command::OpenSweepDialog);
    h.run();
    // An impossible value is refused in the dialog before anything trains.
    h.state_mut().execute(
        &ctx,
        Command::StartSweep(Box::new(netloom::app::training::sweep::SweepRequest {
            target: netloom::train::experiment::SweepTarget::parse("c2.filters").unwrap(),
            values: vec![4.0, 0.0],
            epochs: 1,
        })),
    );
    h.run();
    assert!(has(&h, "at least 1"), "the refusal is shown in the dialog");
    assert!(h.state().training.runs.is_empty());
    assert!(has(&h, "Start sweep"), "the dialog is open");
    click(&mut h, "Start sweep");
    wait_until(&mut h, "four sweep runs", |h| {
        let runs = &h.state().training.runs;
        runs.len() == 4 && runs.iter().all(|r| r.status == RunStatus::Finished)
    });
    h.run();
    let values: Vec<f64> = h
        .state()
        .training
        .runs
        .iter()
        .map(|r| {
            let (label, value) = r.sweep.as_ref().expect("a sweep run");
            assert_eq!(
                label, "c2.filters",
                "the dialog starts on the selected layer's filters"
            );
            *value
        })
        .collect();
    assert_eq!(values, [8.0, 16.0, 32.0, 64.0]);
    // Starting the sweep opened the Sweep tab.
    assert_eq!(h.state().bottom_tab, netloom::app::BottomTab::Sweep);
    let graph = h.state().doc().graph.clone();
    for (run, value) in h.state().training.runs.iter().zip(values) {
        // Each run trained its own copy: the MACs are those of the edited design.
        let edited =
            netloom::train::experiment::design_with(&graph, "c2", "filters", value).unwrap();
        let macs = netloom::infer::analyze(&edited)
            .totals(&netloom::infer::Conventions::default())
            .macs;
        assert_eq!(run.macs, macs);
        let acc = run.val_acc().expect("val acc");
        assert!(
            has(
                &h,
                &format!("c2.filters = {value}: {macs} MACs, val {:.2}%", 100.0 * acc)
            ),
            "the Sweep plot names the point of {value}"
        );
    }
    assert!(has(&h, "Sweep plot with 4 points"));
    // Its table exports as CSV, one row per value, with the runs' figures.
    assert!(has(&h, "Export sweep table as CSV…"));
    let csv_path = dir.with_extension("csv");
    h.state_mut()
        .execute(&ctx, Command::ExportSweepCsvTo(csv_path.clone()));
    let csv = std::fs::read_to_string(&csv_path).expect("the sweep CSV");
    let _ = std::fs::remove_file(&csv_path);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(netloom::train::experiment::SWEEP_CSV_HEADER)
    );
    let points = h.state().training.sweep_points("c2.filters");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 4);
    for (row, (run, p)) in rows.iter().zip(h.state().training.runs.iter().zip(&points)) {
        assert_eq!(row[0], "c2.filters");
        assert_eq!(row[1].parse::<f64>().unwrap(), p.value);
        assert_eq!(row[2].parse::<u64>().unwrap(), run.macs);
        assert_eq!(row[3].parse::<u64>().unwrap(), run.params);
        let ms: f64 = row[4].parse().expect("ms per step");
        assert!((ms - p.ms_per_step.unwrap()).abs() < 1e-9);
        assert_eq!(row[5].parse::<f32>().ok(), run.val_acc());
        assert_eq!(
            row[6].parse::<f32>().ok(),
            run.test.as_ref().map(|t| t.test_acc)
        );
        assert_eq!(row[7], p.pareto.to_string());
    }
    // The user's design is untouched by the sweep.
    assert!(matches!(
        graph.node(c2).unwrap().kind,
        netloom::graph::LayerKind::Conv2d { filters: 6, .. }
    ));
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_learning_rate_finder_plots_its_curve_offers_its_rate_and_leaves_the_runs_alone() {
    let (mut h, dir) = tiny_app(1);
    click(&mut h, "Train");
    wait_until(&mut h, "the run to finish", |h| {
        h.state().training.current().map(|r| &r.status) == Some(&RunStatus::Finished)
    });
    let weights = h.state().training.runs[0]
        .weights
        .clone()
        .expect("run weights");
    let before = std::fs::read(&weights).expect("weights");
    let ctx = h.ctx.clone();
    h.state_mut().execute(&ctx, Command::FindLearningRate);
    wait_until(&mut h, "the range test", |h| {
        h.state().lr_finder.result.is_some()
    });
    h.run();
    let curve = match &h.state().lr_finder.result {
        Some(Ok(curve)) => curve.clone(),
        other => panic!("the range test failed: {other:?}"),
    };
    assert!(curve.points.len() >= 5, "{} points", curve.points.len());
    assert!(has(
        &h,
        &format!(
            "Learning-rate finder plot with {} points",
            curve.points.len()
        )
    ));
    // A separate run: the session's runs and their weights are untouched.
    assert_eq!(h.state().training.runs.len(), 1);
    assert_eq!(std::fs::read(&weights).expect("weights"), before);
    if let Some(lr) = curve.suggested_lr {
        click(&mut h, &format!("Use {lr:.1e}"));
        assert_eq!(h.state().training.setup.learning_rate, lr);
    }
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn right_clicking_a_layer_parameter_offers_a_sweep_of_it() {
    let mut h = harness(tiny_design(3));
    let c2 = h.state().doc().graph.find("c2").unwrap();
    let ctx = h.ctx.clone();
    h.state_mut()
        .execute(&ctx, Command::Select([c2].into_iter().collect()));
    h.run();
    assert!(!h.state().sweep_dialog.open);
    h.get_by_label("Filters").click_secondary();
    h.run();
    h.get_by_role_and_label(egui::Role::Button, "Sweep…")
        .click();
    h.run();
    let dialog = &h.state().sweep_dialog;
    assert!(dialog.open, "the Sweep dialog opened");
    assert_eq!(dialog.target, "c2.filters");
    assert!(has(&h, "Start sweep"));
    // The same on another parameter presets that one.
    h.get_by_label("Groups").click_secondary();
    h.run();
    h.get_by_role_and_label(egui::Role::Button, "Sweep…")
        .click();
    h.run();
    assert_eq!(h.state().sweep_dialog.target, "c2.groups");
}

#[test]
fn the_inspector_shows_the_training_memory_estimate() {
    let h = harness(tiny_design(3));
    let doc = h.state().doc();
    let expected = netloom::app::training::panel::memory_estimate_text(
        &doc.graph,
        &doc.analysis,
        &h.state().training.setup,
    );
    // The part that does not move with the memory the system has free.
    let needs = expected.split(';').next().unwrap_or_default();
    assert!(
        needs.starts_with('~') && needs.ends_with("at batch 32"),
        "{expected}"
    );
    assert!(has(&h, "Training memory"));
    let shown = labels_containing(&h, needs);
    assert!(
        shown.iter().any(|l| l.contains("fits in")),
        "the inspector shows {needs} with the batch that fits: {shown:?}"
    );
}

#[test]
fn the_gallery_overlays_grad_cam_maps_for_the_predicted_or_a_chosen_class() {
    let (mut h, dir) = tiny_app(3);
    click(&mut h, "Train");
    wait_until(&mut h, "the run to finish", |h| {
        h.state().training.current().map(|r| &r.status) == Some(&RunStatus::Finished)
    });
    click(&mut h, "Predictions");
    h.get_by_label("Grad-CAM").click();
    h.run();
    let done = |h: &Harness<'static, NetloomApp>| {
        let cam = &h.state().training.cam;
        !cam.pending && cam.result.is_some()
    };
    wait_until(&mut h, "Grad-CAM maps", done);
    h.run();
    let run = h.state().training.current().unwrap().clone();
    let test = run.test.as_ref().unwrap();
    let maps = match &h.state().training.cam.result {
        Some((id, Ok(maps))) if *id == run.id => maps.clone(),
        other => panic!("no maps: {other:?}"),
    };
    assert_eq!(maps.layer, "r2", "the last spatial layer");
    assert_eq!(maps.maps.len(), test.samples.len());
    // Synthetic class k is a bright patch at a class-specific corner.
    let patch = |k: u32| [(0usize, 0usize), (0, 4), (4, 2)][k as usize];
    let mut correct = 0;
    for ((index, map), s) in maps.maps.iter().zip(&test.samples) {
        assert_eq!(*index, s.index);
        assert_eq!(
            map.predicted, s.predicted,
            "the map's network is the trained one"
        );
        assert_eq!(map.class, s.predicted, "the predicted class by default");
        assert_eq!(map.coarse_size, (8, 8));
        let heat = map.heat((8, 8));
        assert!(heat.iter().all(|v| (0.0..=1.0).contains(v)));
        let label = format!("test image {}: true ", s.index);
        let shown = labels_containing(&h, &label);
        assert!(
            shown
                .iter()
                .any(|l| l.contains("Grad-CAM for") && l.contains("at `r2`")),
            "{shown:?}"
        );
        if s.predicted == s.label {
            correct += 1;
            let (y0, x0) = patch(s.label);
            let sum = |f: &dyn Fn(usize, usize) -> bool| -> f32 {
                (0..64)
                    .filter(|&i| f(i / 8, i % 8))
                    .map(|i| map.coarse[i])
                    .sum()
            };
            let in_patch = sum(&|y, x| (y0..y0 + 4).contains(&y) && (x0..x0 + 4).contains(&x));
            let total = sum(&|_, _| true);
            // A quarter of the image is the patch: a map that did not look
            // there would put about a quarter of its mass in it.
            let share = in_patch / total.max(1e-9);
            assert!(
                share > 0.4,
                "image {} of class {}: {share:.2} of the map on the class's patch",
                s.index,
                s.label
            );
        }
    }
    assert!(correct >= 10, "{correct} of 15 right after 3 epochs");
    // A chosen class explains that class for every image.
    let ctx = h.ctx.clone();
    h.state_mut().execute(
        &ctx,
        Command::ShowGradCam {
            on: true,
            class: Some(1),
        },
    );
    wait_until(&mut h, "Grad-CAM maps of class b", |h| {
        let cam = &h.state().training.cam;
        !cam.pending && cam.result.is_some()
    });
    match &h.state().training.cam.result {
        Some((_, Ok(maps))) => assert!(maps.maps.iter().all(|(_, m)| m.class == 1)),
        other => panic!("no maps: {other:?}"),
    }
    h.run();
    assert!(has(&h, "Grad-CAM for b at `r2`"));
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_final_save_that_fails_keeps_the_weights_and_save_as_writes_them() {
    let (mut h, dir) = tiny_app(1);
    // The run's weights file cannot be written: a folder stands in its place.
    let runs = dir.join("runs");
    std::fs::create_dir_all(runs.join("run-1.safetensors")).expect("mkdir");
    h.state_mut().training.set_runs_dir(runs);
    click(&mut h, "Train");
    wait_until(&mut h, "the run to finish", |h| {
        h.state().training.current().map(|r| &r.status) == Some(&RunStatus::Finished)
    });
    h.run();
    let run = h.state().training.current().unwrap();
    assert!(run.weights.is_none(), "nothing was saved");
    assert!(run.unsaved.is_some(), "the weights are kept in memory");
    assert!(run.test.is_some(), "the run still finished and was tested");
    assert!(has(&h, "could not be saved"));
    assert!(has(&h, "kept in memory until you save them"));
    let kept: Vec<(String, Vec<f32>)> = run
        .unsaved
        .as_ref()
        .map(|(_, w)| {
            w.params
                .iter()
                .map(|p| (p.name.clone(), p.data.clone()))
                .collect()
        })
        .unwrap_or_default();
    assert!(kept.iter().any(|(n, _)| n == "c2.weight"));

    // Save As to a good path writes a file the trainer can start from.
    let good = dir.join("saved.safetensors");
    let field = h.get_by_label("Save as");
    field.focus();
    h.run();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.get_by_label("Save as")
        .type_text(good.to_str().expect("utf8"));
    h.run();
    assert_eq!(
        h.get_by_label("Save as").value().as_deref(),
        good.to_str(),
        "the typed path replaced the suggestion"
    );
    click(&mut h, "Save");
    let file = netloom::train::weights::read(&good).expect("a loadable weights file");
    for (name, data) in &kept {
        let saved = file.tensors.iter().find(|t| &t.0 == name);
        assert_eq!(saved.map(|t| &t.2), Some(data), "{name} saved as trained");
    }
    let run = h.state().training.current().unwrap();
    assert_eq!(run.weights.as_deref(), Some(good.as_path()));
    assert!(run.unsaved.is_none());
    assert!(!has(&h, "could not be saved"), "the window closed");
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_setup_estimates_seconds_per_epoch_from_timed_steps() {
    let (mut h, dir) = tiny_app(1);
    wait_until(&mut h, "the step timer", |h| has(h, "per epoch ("));
    // 60 images and a corrupt file in the class folders, less the 10%
    // held out for validation: 55 images, 7 batches of 8.
    assert!(has(&h, "ms per step × 7 batches)"));
    let measured = match h.state().training.step_timer.ms_per_step {
        Some(Ok(ms)) => ms,
        ref other => panic!("no step time: {other:?}"),
    };
    click(&mut h, "Train");
    // The run's ETA starts from that estimate: 7 batches of the measured step.
    let estimate = h.state().training.current().unwrap().estimate;
    assert_eq!(
        estimate,
        Some(netloom::app::training::estimate::StartEstimate {
            ms_per_step: measured,
            batches_per_epoch: Some(7),
        })
    );
    wait_until(&mut h, "the run to finish", |h| {
        h.state().training.current().map(|r| &r.status) == Some(&RunStatus::Finished)
    });
    // After a run the count is the trainer's own.
    let images = h
        .state()
        .training
        .current()
        .unwrap()
        .info
        .as_ref()
        .unwrap()
        .train_images;
    h.run();
    assert!(has(
        &h,
        &format!("ms per step × {} batches)", images.div_ceil(8))
    ));
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn train_both_in_the_compare_view_trains_a_and_b_alike_and_shows_both_runs() {
    let (mut h, dir) = tiny_app(1);
    // Run › Train both is there, disabled outside a compare.
    h.get_by_role_and_label(egui::Role::Button, "Run").click();
    h.run();
    assert!(
        h.get_by_role_and_label(egui::Role::Button, "Train both")
            .accesskit_node()
            .is_disabled()
    );
    h.key_press(egui::Key::Escape);
    h.run();
    click(&mut h, "Train");
    wait_until(&mut h, "an earlier run", |h| {
        h.state().training.current().map(|r| &r.status) == Some(&RunStatus::Finished)
    });
    let ctx = h.ctx.clone();
    h.state_mut().execute(&ctx, Command::PinAsA);
    // B: a wider c2.
    let c2 = h.state().doc().graph.find("c2").unwrap();
    let kind =
        netloom::train::experiment::design_with(&h.state().doc().graph, "c2", "filters", 12.0)
            .unwrap()
            .node(c2)
            .unwrap()
            .kind
            .clone();
    h.state_mut()
        .execute(&ctx, Command::SetKind { id: c2, kind });
    h.run();
    click(&mut h, "Train both");
    wait_until(&mut h, "both runs", |h| {
        let runs = &h.state().training.runs;
        runs.len() == 3 && runs[1..].iter().all(|r| r.status == RunStatus::Finished)
    });
    h.run();
    let runs = &h.state().training.runs;
    let (a, b) = (&runs[1], &runs[2]);
    assert_eq!((a.tab, b.tab), (0, 1));
    assert_eq!(a.design, "tiny");
    assert_eq!(b.design, "tiny (B)");
    assert!(b.macs > a.macs, "B's wider conv costs more");
    assert_eq!(a.setup, b.setup, "the same data and setup");
    assert!(
        !runs[0].visible && a.visible && b.visible,
        "the pair alone is overlaid"
    );
    assert_eq!(h.state().bottom_tab, netloom::app::BottomTab::Runs);
    // The scatter shows the shown runs only.
    assert!(has(&h, "Accuracy against MACs plot with 2 runs (#2, #3)"));
    assert!(has(&h, "A #2 Finished · B #3 Finished"));
    // Clicking a run in the table highlights it in every plot.
    let cell = RunColumn::Run.cell(&h.state().training.runs[1]);
    click(&mut h, &cell);
    assert_eq!(h.state().training.highlighted, Some(2));
    assert!(has(&h, "plot with 2 runs (#2, #3); highlighted run #2"));
    click(&mut h, "Training");
    for plot in ["Loss plot", "Accuracy plot", "Learning-rate plot"] {
        assert!(
            labels_containing(&h, plot)
                .iter()
                .any(|l| l.ends_with("; highlighted run #2")),
            "{plot} highlights run #2"
        );
    }
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}
