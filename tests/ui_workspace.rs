//! The workspace keeps still: the bottom panel does not resize itself over
//! repaints, on any of its tabs, and the cost table's Total row stays in view;
//! the start page and Help, File › Export, and the in-app path field used
//! when no native file dialog is available.
#![cfg(feature = "gui")]

mod common;

use egui::vec2;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use netloom::app::command::Command;
use netloom::app::{BottomTab, NetloomApp};
use netloom::graph::blocks;

fn harness(size: egui::Vec2) -> Harness<'static, NetloomApp> {
    let app = NetloomApp::for_tests(blocks::resnet_mini());
    let mut h = Harness::builder()
        .with_size(size)
        // Opening the Training tab starts the step-time estimate, which
        // repaints four times a second until it is measured.
        .with_max_steps(32)
        .build_ui_state(|ui, app: &mut NetloomApp| app.ui(ui), app);
    h.run();
    h
}

/// The top of the bottom panel: where its tab strip is drawn.
fn panel_top(h: &Harness<'_, NetloomApp>) -> f32 {
    h.get_by_label("Cost table").rect().top()
}

#[test]
fn the_bottom_panel_keeps_its_height_over_many_frames_on_every_tab() {
    for size in [vec2(1280.0, 800.0), vec2(1920.0, 1080.0)] {
        let mut h = harness(size);
        for tab in BottomTab::ALL {
            let ctx = h.ctx.clone();
            h.state_mut().execute(&ctx, Command::SetBottomTab(tab));
            h.run();
            let before = panel_top(&h);
            for _ in 0..40 {
                h.step();
            }
            let after = panel_top(&h);
            assert_eq!(before, after, "{tab:?} at {size:?}: the panel moved");
            assert!(
                before > size.y * 0.3,
                "{tab:?} at {size:?}: the panel is {before} from the top"
            );
        }
    }
}

#[test]
fn the_cost_tables_total_row_is_always_in_view() {
    for size in [vec2(1280.0, 800.0), vec2(1920.0, 1080.0)] {
        let mut h = harness(size);
        for _ in 0..10 {
            h.step();
        }
        let total = h.get_by_label("Total").rect();
        assert!(
            total.bottom() <= size.y,
            "Total row at {total:?} in a window {size:?}"
        );
    }
}

fn has(h: &Harness<'_, NetloomApp>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

fn click(h: &mut Harness<'static, NetloomApp>, label: &str) {
    h.get_by_role_and_label(egui::Role::Button, label)
        .click_accesskit();
    h.run();
}

/// Clicks through a menu path: the menu, any submenus, then the item.
fn menu(h: &mut Harness<'static, NetloomApp>, path: &[&str]) {
    for label in path {
        h.get_by_role_and_label(egui::Role::Button, label).click();
        h.run();
    }
}

/// A folder of this test's own under the temporary folder.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("netloom-ui-ws-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp folder");
    dir
}

/// Types `path` into the in-app path field and presses its button `ok`.
fn answer_path(h: &mut Harness<'static, NetloomApp>, path: &std::path::Path, ok: &str) {
    let field = h
        .state_mut()
        .dialogs
        .field
        .as_mut()
        .expect("the in-app path field is open");
    field.text = path.display().to_string();
    h.run();
    click(h, ok);
    assert!(h.state().dialogs.field.is_none(), "the path field closed");
}

#[test]
fn the_start_page_opens_each_guided_task_and_help_brings_it_back() {
    let mut h = harness(vec2(1280.0, 800.0));
    h.state_mut().start_page = true;
    h.run();
    assert!(has(&h, "Welcome to Netloom"));
    click(&mut h, "Compare a naive and a bottleneck Inception module");
    assert!(!h.state().start_page, "a task closes the start page");
    let names: Vec<String> = h
        .state()
        .tabs
        .iter()
        .map(|t| t.doc.graph.name.clone())
        .collect();
    assert_eq!(names, ["inception-naive", "inception-bottleneck"]);
    assert!(h.state().comparing());
    assert!(has(&h, "Compare"), "the inspector's Compare section");
    // The course's figure: 28·28·32·5·5·192 MACs against a 16-channel
    // bottleneck and the 5×5 over it.
    assert!(
        has(&h, "B needs 9.68× fewer MACs than A (120.4M vs 12.4M)"),
        "the guided compare shows the course's 9.68×"
    );

    menu(&mut h, &["Help", "Start page"]);
    assert!(h.state().start_page);
    click(&mut h, "Train a ResNet and watch it learn");
    assert_eq!(h.state().tabs.len(), 1);
    assert_eq!(h.state().doc().graph.name, "resnet-mini");
    assert_eq!(h.state().bottom_tab, BottomTab::Training);
    assert_eq!(h.state().training.setup.dataset, None, "the built-in data");
    assert!(has(&h, "Train"));

    menu(&mut h, &["Help", "Start page"]);
    for (label, stem) in netloom::app::start_page::CLASSICS {
        if !h.state().start_page {
            menu(&mut h, &["Help", "Start page"]);
        }
        click(&mut h, label);
        assert_eq!(h.state().doc().graph.name, stem, "{label}");
    }
    menu(&mut h, &["Help", "Start page"]);
    click(&mut h, "Close");
    assert!(!h.state().start_page);
    assert!(!has(&h, "Welcome to Netloom"));
}

#[test]
fn help_lists_every_keyboard_shortcut_of_the_commands() {
    let mut h = harness(vec2(1280.0, 800.0));
    menu(&mut h, &["Help", "Keyboard shortcuts"]);
    let rows = netloom::app::start_page::shortcut_rows(&h.ctx);
    assert_eq!(rows.len(), netloom::app::command::SHORTCUT_COMMANDS.len());
    for (label, keys) in &rows {
        assert!(!keys.is_empty(), "{label} has a shortcut");
        assert!(has(&h, &keys.join("  or  ")), "{label}: {keys:?} shown");
    }
    let save = rows.iter().find(|(l, _)| *l == "Save").expect("Save");
    assert_eq!(
        save.1,
        [h.ctx.format_shortcut(&egui::KeyboardShortcut::new(
            egui::Modifiers::COMMAND,
            egui::Key::S
        ))]
    );
}

#[test]
fn file_export_writes_onnx_pytorch_code_and_a_pytorch_project() {
    let dir = temp_dir("export");
    let mut h = harness(vec2(1280.0, 800.0));
    let layers = h.state().doc().graph.len();

    menu(&mut h, &["File", "Export", "ONNX…"]);
    let onnx = dir.join("mini.onnx");
    answer_path(&mut h, &onnx, "Save");
    let imported = netloom::interop::onnx::import(&onnx).expect("the exported ONNX imports");
    assert_eq!(imported.graph.len(), layers);

    menu(&mut h, &["File", "Export", "PyTorch code…"]);
    let py = dir.join("mini.py");
    answer_path(&mut h, &py, "Save");
    let source = std::fs::read_to_string(&py).expect("the module source");
    assert_eq!(
        source,
        netloom::interop::pytorch::module_source(&h.state().doc().graph).unwrap()
    );

    menu(&mut h, &["File", "Export", "PyTorch project…"]);
    let project = dir.join("project");
    answer_path(&mut h, &project, "Choose");
    for f in ["model.py", "train.py"] {
        assert!(project.join(f).is_file(), "{f} written");
    }

    // A path in a folder that does not exist is refused in the field.
    menu(&mut h, &["File", "Export", "ONNX…"]);
    h.state_mut().dialogs.field.as_mut().unwrap().text = dir
        .join("no-such-folder")
        .join("x.onnx")
        .display()
        .to_string();
    h.run();
    click(&mut h, "Save");
    assert!(has(&h, "does not exist"));
    click(&mut h, "Cancel");
    assert!(h.state().dialogs.field.is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_a_native_dialog_open_asks_in_app_and_completes_the_folder() {
    let dir = temp_dir("open");
    let design = dir.join("my-lenet.json");
    netloom::graph::file::save(&blocks::lenet5(), &design).expect("a design file");
    std::fs::write(dir.join("notes.txt"), "x").unwrap();
    let mut h = harness(vec2(1280.0, 800.0));
    let ctx = h.ctx.clone();
    h.state_mut().execute(&ctx, Command::Open);
    h.run();
    assert!(has(&h, "No file dialog is available"));
    let typed = format!("{}{}my-", dir.display(), std::path::MAIN_SEPARATOR);
    h.state_mut().dialogs.field.as_mut().unwrap().text = typed;
    h.run();
    // The folder's matching entry is offered; choosing it fills the field.
    let full = design.display().to_string();
    click(&mut h, &full);
    assert_eq!(h.state().dialogs.field.as_ref().unwrap().text, full);
    // A file that does not exist is refused in the field.
    h.state_mut().dialogs.field.as_mut().unwrap().text =
        dir.join("nope.json").display().to_string();
    h.run();
    click(&mut h, "Open");
    assert!(has(&h, "is not a file"));
    h.state_mut().dialogs.field.as_mut().unwrap().text = full;
    h.run();
    click(&mut h, "Open");
    assert!(h.state().dialogs.field.is_none());
    assert_eq!(h.state().doc().path.as_deref(), Some(design.as_path()));
    assert_eq!(h.state().doc().graph.len(), blocks::lenet5().len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn save_on_a_shipped_preset_asks_for_a_new_name_and_leaves_the_preset_alone() {
    let preset = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/lenet5.json");
    let before = std::fs::read(&preset).expect("the preset");
    let dir = temp_dir("preset");
    let mut h = harness(vec2(1280.0, 800.0));
    let ctx = h.ctx.clone();
    h.state_mut()
        .execute(&ctx, Command::OpenPath(preset.clone()));
    h.run();
    // An edit, then Save.
    let id = h.state().doc().graph.node_ids().next().unwrap();
    h.state_mut().execute(
        &ctx,
        Command::Rename {
            id,
            name: "renamed_input".into(),
        },
    );
    h.state_mut().execute(&ctx, Command::Save);
    h.run();
    assert!(has(&h, "is a preset shipped with Netloom"));
    let field = h
        .state()
        .dialogs
        .field
        .as_ref()
        .expect("Save asks for a name");
    assert!(field.text.ends_with("lenet5-copy.json"), "{}", field.text);
    assert!(
        !field
            .text
            .starts_with(&preset.parent().unwrap().display().to_string())
    );
    // Typing the preset's own path is refused too.
    answer_path(&mut h, &preset, "Save");
    assert!(
        h.state()
            .error_modal
            .as_deref()
            .is_some_and(|m| m.contains("not overwritten"))
    );
    h.state_mut().error_modal = None;
    h.state_mut().execute(&ctx, Command::Save);
    h.run();
    let copy = dir.join("lenet5-copy.json");
    answer_path(&mut h, &copy, "Save");
    assert_eq!(
        std::fs::read(&preset).unwrap(),
        before,
        "the preset is unchanged"
    );
    let saved = netloom::graph::file::load(&copy).expect("the copy");
    assert!(saved.find("renamed_input").is_some());
    assert_eq!(h.state().doc().path.as_deref(), Some(copy.as_path()));
    assert!(!h.state().doc().dirty);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A design file of `n` chained ReLUs after an input (slow to parse when `n` is large).
fn chain_file(path: &std::path::Path, n: usize) {
    let mut nodes = vec![
        r#"{"name":"input","kind":"input","height":8,"width":8,"channels":3,"position":[0,0]}"#
            .to_string(),
    ];
    let mut edges = Vec::new();
    for i in 0..n {
        nodes.push(format!(
            r#"{{"name":"r{i}","kind":"relu","position":[0,{}]}}"#,
            (i + 1) * 80
        ));
        let from = if i == 0 {
            "input".into()
        } else {
            format!("r{}", i - 1)
        };
        edges.push(format!(r#"{{"from":"{from}","to":"r{i}","input":0}}"#));
    }
    let json = format!(
        r#"{{"format":"netloom-design","version":1,"name":"chain","nodes":[{}],"edges":[{}]}}"#,
        nodes.join(","),
        edges.join(",")
    );
    std::fs::write(path, json).expect("the chain file");
}

#[test]
fn a_slow_open_shows_a_spinner_and_cancel_keeps_the_design() {
    let dir = temp_dir("slow-open");
    let big = dir.join("chain.json");
    chain_file(&big, 150_000);
    let mut h = harness(vec2(1280.0, 800.0));
    let ctx = h.ctx.clone();
    h.state_mut().execute(&ctx, Command::OpenPath(big.clone()));
    assert!(
        h.state().loading.is_some(),
        "a 150,000-layer file is still being read after the frame's wait"
    );
    for _ in 0..3 {
        h.step();
    }
    assert!(has(&h, &format!("Opening {}", big.display())));
    h.get_by_role_and_label(egui::Role::Button, "Cancel")
        .click();
    h.step();
    h.step();
    assert!(h.state().loading.is_none(), "cancelled");
    assert_eq!(
        h.state().doc().graph.name,
        "resnet-mini",
        "the design stays"
    );
    // A small file opens within the frame's wait, without a spinner.
    let small = dir.join("small.json");
    chain_file(&small, 5);
    h.state_mut()
        .execute(&ctx, Command::OpenPath(small.clone()));
    h.run();
    assert!(h.state().loading.is_none());
    assert_eq!(h.state().doc().path.as_deref(), Some(small.as_path()));
    assert_eq!(h.state().doc().graph.len(), 6);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Compare with the naive Inception module as A and the bottleneck one as B.
fn compare_the_inception_modules(h: &mut Harness<'static, NetloomApp>) {
    let ctx = h.ctx.clone();
    for cmd in [
        Command::OpenPreset("inception-module-naive"),
        Command::PinAsA,
        Command::OpenPreset("inception-module-bottleneck"),
    ] {
        h.state_mut().execute(&ctx, cmd);
    }
}

/// At 1280×800 the compare section fits the inspector: the headline wraps
/// and every table row, names and figures, ends inside the window.
#[test]
fn the_compare_section_fits_the_inspector_at_1280x800() {
    let size = vec2(1280.0, 800.0);
    let mut h = harness(size);
    compare_the_inception_modules(&mut h);
    for _ in 0..4 {
        h.run();
    }
    let inspector_left = h.get_by_label("Inspector").rect().left();
    let mut checked = 0;
    for text in [
        "B needs 2.37× fewer MACs than A (303.5M vs 128.0M)",
        "Training memory",
        "concat 1: 3x3_reduce",
        "inception / inception_3a",
        "-175.4M",
        "~ 3x3",
        "-110.4M",
    ] {
        for node in h.query_all_by_label_contains(text) {
            let r = node.rect();
            assert!(
                r.left() >= inspector_left && r.right() <= size.x,
                "{text} at {r:?}: outside the inspector (from x {inspector_left}) or the window"
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "{checked} widgets checked");
}

/// A file saved after a wire broke a group: the reader takes the group
/// apart to open it, and the designer says so where the user looks, the
/// design marked unsaved until the repair is saved.
#[test]
fn opening_a_design_with_a_broken_group_says_what_was_repaired() {
    let dir = temp_dir("broken-group");
    let path = dir.join("broken-group.json");
    std::fs::write(&path, common::BROKEN_GROUP_DESIGN).expect("the design file");
    let mut h = harness(vec2(1280.0, 800.0));
    let ctx = h.ctx.clone();
    h.state_mut().execute(&ctx, Command::Open);
    h.run();
    answer_path(&mut h, &path, "Open");
    assert_eq!(h.state().doc().path.as_deref(), Some(path.as_path()));
    assert_eq!(h.state().doc().graph.len(), 4, "every layer kept");
    assert!(h.state().doc().graph.groups().is_empty());
    assert!(h.state().doc().dirty, "the design differs from its file");
    let notice = h
        .query_all_by_label_contains("group `pair` was ungrouped")
        // A label's text is its accessible value.
        .filter_map(|n| n.accesskit_node().value())
        .next()
        .expect("a notice names the repaired group");
    assert!(notice.contains("Repaired"), "{notice}");
    assert!(notice.contains("through `b`"), "{notice}");
    // Saved, the repair is in the file: it opens as it is.
    h.state_mut().execute(&ctx, Command::Save);
    h.run();
    assert!(!h.state().doc().dirty, "saved");
    h.state_mut().execute(&ctx, Command::OpenPath(path.clone()));
    for _ in 0..3 {
        h.run();
    }
    assert!(!h.state().doc().dirty);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Snapshot images (tests/snapshots, refreshed with `UPDATE_SNAPSHOTS=1`):
/// layout regressions of the main views at 1280×800 show as image diffs.
mod snapshots {
    use super::*;
    use netloom::app::training::{RunRecord, RunSetup, RunStatus};
    use netloom::train::trainer::{EpochStats, TestResult};

    const SIZE: egui::Vec2 = egui::Vec2::new(1280.0, 800.0);

    /// The inspector's memory line says how large a batch fits in the
    /// machine's free memory, which changes between runs by a few glyphs
    /// (about 35 pixels); a layout change moves far more.
    fn snap(h: &mut Harness<'static, NetloomApp>, name: &str) {
        let options = egui_kittest::SnapshotOptions::default().max_failed_pixels(400);
        h.snapshot_options(name, &options);
    }

    fn settled(mut h: Harness<'static, NetloomApp>) -> Harness<'static, NetloomApp> {
        for _ in 0..6 {
            h.run();
        }
        h
    }

    /// A finished run with `epochs` epochs of made-up but consistent figures.
    fn finished_run(id: usize, design: &str, macs: u64, params: u64, accs: &[f32]) -> RunRecord {
        let mut r = RunRecord::new(id, design.into(), macs, RunSetup::default());
        r.params = params;
        r.status = RunStatus::Finished;
        r.epochs = accs
            .iter()
            .enumerate()
            .map(|(i, &a)| EpochStats {
                epoch: i as u64 + 1,
                train_loss: 1.0 - a * 0.9,
                train_acc: a,
                val_loss: Some(1.1 - a * 0.9),
                val_acc: Some(a - 0.03),
                seconds: 4.0 + i as f64 * 0.25,
                learning_rate: 1e-3,
                layer_times: Vec::new(),
            })
            .collect();
        r.test = Some(TestResult {
            test_loss: 0.4,
            test_acc: accs.last().copied().unwrap_or(0.0) - 0.05,
            test_acc_without_precise_bn: Some(accs.last().copied().unwrap_or(0.0) - 0.08),
            confusion: Vec::new(),
            samples: Vec::new(),
            image_shape: (8, 8, 3),
        });
        r
    }

    #[test]
    fn the_start_page() {
        let mut h = harness(SIZE);
        h.state_mut().start_page = true;
        let mut h = settled(h);
        snap(&mut h, "start_page");
    }

    #[test]
    fn the_designer_on_resnet_mini() {
        let mut h = settled(harness(SIZE));
        snap(&mut h, "designer_resnet_mini");
    }

    #[test]
    fn the_runs_table() {
        let mut h = harness(SIZE);
        let ctx = h.ctx.clone();
        h.state_mut().training.runs = vec![
            finished_run(1, "resnet-mini", 55_968_128, 172_218, &[0.52, 0.74, 0.86]),
            finished_run(
                2,
                "resnet-mini (B)",
                38_114_560,
                120_410,
                &[0.48, 0.70, 0.81],
            ),
        ];
        h.state_mut()
            .execute(&ctx, Command::SetBottomTab(BottomTab::Runs));
        let mut h = settled(h);
        snap(&mut h, "runs_table");
    }

    #[test]
    fn the_compare_view() {
        let mut h = harness(SIZE);
        // The modules: every table of the compare section has rows (branches,
        // the block, layers), the widest content the inspector holds.
        super::compare_the_inception_modules(&mut h);
        let mut h = settled(h);
        snap(&mut h, "compare_inception");
    }
}
