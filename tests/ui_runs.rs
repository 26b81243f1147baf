//! The Runs tab's evaluation tricks and transfer learning from the canvas,
//! driven by accessible labels (egui_kittest): multi-crop and ensembles of
//! finished runs match the library's evaluator on the same weights and
//! images, and an imported ONNX model's weights are the next run's start
//! (its first loss is the imported model's loss on that batch).
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
use netloom::data::{self, BatchConfig, LoadOptions};
use netloom::graph::Graph;
use netloom::train::eval::{self, EvalOptions};
use netloom::train::trainer::DEFAULT_VAL_FRACTION;
use netloom::train::{Mode, Plan};
use std::path::{Path, PathBuf};

/// A folder of its own per test (tests run in parallel).
fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netloom-ui-runs-{}-{what}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Sets the run setup: dataset, epochs, batch size, seed.
fn set_up(h: &mut Harness<'static, NetloomApp>, data: &Path, epochs: u64, batch: usize, seed: u64) {
    let mut setup = h.state().training.setup.clone();
    setup.dataset = Some(data.to_path_buf());
    setup.epochs = epochs;
    setup.batch_size = batch;
    setup.learning_rate = 0.01;
    setup.seed = seed;
    let ctx = h.ctx.clone();
    h.state_mut()
        .execute(&ctx, Command::SetRunSetup(Box::new(setup)));
    h.run();
}

/// Trains one run to its end.
fn train_one(h: &mut Harness<'static, NetloomApp>) {
    let n = h.state().training.runs.len();
    // Open the Training tab unless it is showing (a click on the open tab closes the panel).
    if h.query_by_role_and_label(egui::Role::Button, "Train")
        .is_none()
    {
        click_busy(h, "Training");
    }
    click_busy(h, "Train");
    wait_until(h, "the run to finish", |h| {
        h.state().training.runs.len() == n + 1
            && h.state().training.current().map(|r| &r.status) == Some(&RunStatus::Finished)
    });
}

/// Whether a node labelled `text` sits under the header of `column`, in its column.
fn cell_under_header(h: &Harness<'static, NetloomApp>, column: RunColumn, text: &str) -> bool {
    let header_row = h.get_by_label("Show").rect();
    let header = h
        .query_all_by_label(column.header())
        .map(|n| n.rect())
        .find(|r| (r.center().y - header_row.center().y).abs() < 2.0)
        .unwrap_or_else(|| panic!("no {:?} header in the Runs table", column.header()));
    h.query_all_by_label(text)
        .map(|n| n.rect())
        .any(|cell| (cell.min.x - header.min.x).abs() < 1.0 && cell.min.y > header.max.y)
}

/// The library's own evaluation of run weights `files` on the dataset's
/// test split, read as `netloom eval` reads it.
fn library_eval(
    graph: &Graph,
    files: &[PathBuf],
    data_dir: &Path,
    multi_crop: bool,
) -> (f32, usize) {
    let models: Vec<eval::Model> = files
        .iter()
        .map(|f| eval::load_model(graph, f, 40).expect("the run's weights load"))
        .collect();
    let meta = models[0].meta.clone();
    let opts = LoadOptions {
        val_fraction: meta.val_fraction,
        seed: meta.seed,
        ..LoadOptions::for_input(H, H, 3)
    };
    let splits = data::load(data_dir, &opts, &mut |_, _| {}).expect("the dataset loads");
    let stats = meta.stats().expect("the weights carry their normalisation");
    let test = splits.test.expect("a test split");
    let mut plans: Vec<Plan> = models.into_iter().map(|m| m.plan).collect();
    let e = eval::evaluate(
        &mut plans,
        &test,
        &stats,
        &EvalOptions {
            multi_crop,
            ..EvalOptions::default()
        },
    );
    (e.accuracy, e.images)
}

#[test]
fn multi_crop_from_the_runs_tab_matches_the_evaluator_beside_the_single_view() {
    let dir = temp_dir("multi-crop");
    write_png_folder(&dir);
    let mut h = harness(tiny_design(3));
    set_up(&mut h, &dir, 2, 8, 42);
    train_one(&mut h);
    click_busy(&mut h, "Runs");
    assert!(
        cell_under_header(&h, RunColumn::MultiCrop, "Multi-crop #1"),
        "the multi-crop button sits in its column"
    );
    click_busy(&mut h, "Multi-crop #1");
    wait_until(&mut h, "the multi-crop result", |h| {
        h.state().training.runs[0].multi_crop.is_some()
    });
    h.run();
    let run = h.state().training.runs[0].clone();
    let m = run.multi_crop.expect("a result");
    assert_eq!(m.views, 10);
    let weights = run.weights.clone().expect("the run's weights");
    let (ten, images) = library_eval(&tiny_design(3), std::slice::from_ref(&weights), &dir, true);
    let (one, _) = library_eval(&tiny_design(3), &[weights], &dir, false);
    assert_eq!(m.images, images);
    assert_eq!(m.accuracy, ten, "ten views, as the evaluator computes them");
    assert_eq!(m.single, one, "one view, same weights and images");
    // The single view is the trainer's own test figure.
    let test = run.test.as_ref().expect("a test result");
    assert!(
        (m.single - test.test_acc).abs() < 1e-6,
        "single view {} vs the run's test accuracy {}",
        m.single,
        test.test_acc
    );
    let text = RunColumn::MultiCrop.cell(&run);
    assert_eq!(
        text,
        format!("{:.2}% (1 view {:.2}%)", 100.0 * ten, 100.0 * one)
    );
    assert!(
        cell_under_header(&h, RunColumn::MultiCrop, &text),
        "the result {text:?} in the Multi-crop column"
    );
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_ensemble_of_picked_runs_matches_the_evaluator_and_shows_each_run_alone() {
    let dir = temp_dir("ensemble");
    write_png_folder(&dir);
    let mut h = harness(tiny_design(3));
    set_up(&mut h, &dir, 2, 8, 42);
    train_one(&mut h);
    set_up(&mut h, &dir, 2, 8, 7);
    train_one(&mut h);
    click_busy(&mut h, "Runs");
    let button = |h: &Harness<'static, NetloomApp>, label: &str| {
        h.query_by_role_and_label(egui::Role::Button, label)
            .is_some_and(|n| !n.accesskit_node().is_disabled())
    };
    assert!(
        !button(&h, "Ensemble picked runs"),
        "nothing to ensemble before two runs are picked"
    );
    for id in [1, 2] {
        h.get_by_label(&format!("Pick #{id} for the ensemble"))
            .click_accesskit();
        h.run();
    }
    assert!(button(&h, "Ensemble #1 + #2"));
    click_busy(&mut h, "Ensemble #1 + #2");
    wait_until(&mut h, "the ensemble", |h| {
        !h.state().training.ensembles.is_empty()
    });
    h.run();
    let s = &h.state().training;
    let e = s.ensembles[0].clone();
    let files: Vec<PathBuf> = s
        .runs
        .iter()
        .map(|r| r.weights.clone().expect("weights"))
        .collect();
    let (acc, images) = library_eval(&tiny_design(3), &files, &dir, false);
    assert_eq!(e.runs, vec![1, 2]);
    assert_eq!((e.accuracy, e.images, e.views), (acc, images, 1));
    for (i, (run, single)) in e.single.iter().enumerate() {
        assert_eq!(*run, i + 1);
        let (alone, _) = library_eval(&tiny_design(3), &files[i..=i], &dir, false);
        assert_eq!(*single, alone, "run #{run} alone");
    }
    assert!(
        h.query_by_label(&e.line()).is_some(),
        "the ensemble's line is shown: {}",
        e.line()
    );
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `per_class` images per class of 10 classes at 16×16×3 under `root/train`
/// and `root/test`: class k a bright square at a class-specific place.
fn ten_class_folder(root: &Path, per_class: usize) {
    for (split, n, seed) in [("train", per_class, 1u64), ("test", 2, 2)] {
        let mut rng = netloom::kernels::misc::SplitMix64::new(seed);
        for k in 0..10usize {
            let dir = root.join(split).join(format!("c{k}"));
            std::fs::create_dir_all(&dir).expect("mkdir");
            for i in 0..n {
                let (y0, x0) = (4 * (k / 4), 4 * (k % 4));
                let mut px = Vec::with_capacity(16 * 16 * 3);
                for y in 0..16 {
                    for x in 0..16 {
                        for ch in 0..3 {
                            let inside = (y0..y0 + 4).contains(&y) && (x0..x0 + 4).contains(&x);
                            let v = if inside && ch == k % 3 { 0.8 } else { 0.2 };
                            let v = (v + 0.2 * (rng.next_f32() - 0.5)).clamp(0.0, 1.0);
                            px.push((v * 255.0).round() as u8);
                        }
                    }
                }
                image::RgbImage::from_raw(16, 16, px)
                    .expect("image")
                    .save(dir.join(format!("{i}.png")))
                    .expect("png");
            }
        }
    }
}

#[test]
fn an_imported_onnx_models_weights_start_the_next_run() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx/gap_adaptive.legacy.onnx");
    let dir = temp_dir("import");
    ten_class_folder(&dir, 4);
    let mut h = harness(netloom::graph::blocks::resnet_mini());
    let ctx = h.ctx.clone();
    h.state_mut()
        .execute(&ctx, Command::ImportOnnxPath(fixture.clone()));
    wait_until(&mut h, "the import", |h| h.state().loading.is_none());
    let graph = h.state().doc().graph.clone();
    let imported = netloom::interop::onnx::import(&fixture).expect("the fixture imports");
    assert!(imported.is_faithful());
    assert_eq!(
        graph, imported.graph,
        "the imported design is on the canvas"
    );
    assert!(
        matches!(
            h.state().training.setup.start_from,
            netloom::app::training::StartFrom::File(_)
        ),
        "the next run starts from the imported weights"
    );
    // One batch holds the whole training split.
    let (batch, seed) = (64, 42);
    set_up(&mut h, &dir, 1, batch, seed);
    click_busy(&mut h, "Training");
    click_busy(&mut h, "Train");
    wait_until(&mut h, "the first batch", |h| {
        h.state()
            .training
            .current()
            .is_some_and(|r| !r.batch_loss.is_empty())
    });
    let first = h.state().training.current().expect("a run").batch_loss[0][1] as f32;

    // The same batch through the imported model, with the library's Plan.
    let opts = LoadOptions {
        val_fraction: DEFAULT_VAL_FRACTION,
        test_fraction: 0.2,
        seed,
        ..LoadOptions::for_input(16, 16, 3)
    };
    let splits = data::load(&dir, &opts, &mut |_, _| {}).expect("the dataset loads");
    let train = &splits.train;
    assert!(train.len() <= batch, "one batch is the whole split");
    let cfg = BatchConfig::train(batch, seed, None, Some(train.channel_stats()));
    let order = cfg.epoch_order(train.len(), 0);
    let mut images = vec![0.0; order.len() * train.image_len()];
    let mut labels = vec![0; order.len()];
    data::batch::fill_batch(train, &order, &cfg, 0, 0, &mut images, &mut labels);
    let analysis = netloom::infer::analyze(&graph);
    let mut plan = Plan::compile(&graph, &analysis, order.len(), seed).expect("compiles");
    for p in &mut plan.params {
        let (shape, data) = imported
            .weights
            .get(&p.name)
            .expect("every tensor imported");
        assert_eq!(shape, &p.shape, "{}", p.name);
        p.data.copy_from_slice(data);
    }
    plan.forward(&images, Mode::Train);
    let expected = plan.loss_backward(&labels);
    assert!(
        (first - expected).abs() <= 1e-5 * expected.abs().max(1.0),
        "first loss {first} vs the imported model's {expected}"
    );
    // Fresh weights give another loss: the check above can fail.
    let mut fresh = Plan::compile(&graph, &analysis, order.len(), seed).expect("compiles");
    fresh.forward(&images, Mode::Train);
    let fresh_loss = fresh.loss_backward(&labels);
    assert!(
        (fresh_loss - expected).abs() > 1e-3,
        "{fresh_loss} vs {expected}"
    );
    let ctx = h.ctx.clone();
    h.state_mut().execute(&ctx, Command::TrainStop);
    h.run();
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}
