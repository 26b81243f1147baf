//! UI tests driving the real designer by accessible labels (egui_kittest).
#![cfg(feature = "gui")]

use egui::{Key, Modifiers, Pos2, vec2};
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use netloom::app::NetloomApp;
use netloom::app::command::Command;
use netloom::graph::{Graph, LayerKind, blocks};

fn harness(graph: Graph) -> Harness<'static, NetloomApp> {
    let app = NetloomApp::for_tests(graph);
    let mut h = Harness::builder()
        .with_size(vec2(1400.0, 900.0))
        .build_ui_state(|ui, app: &mut NetloomApp| app.ui(ui), app);
    h.run();
    h
}

/// Screen position of the centre of a canvas widget (its rect is in scene coordinates).
fn canvas_point(h: &Harness<'_, NetloomApp>, label: &str) -> Pos2 {
    let r = h.get_by_label(label).rect();
    h.state().tab().canvas.to_screen(r.center())
}

/// Presses at `from`, moves in a few steps and releases at `to`.
fn drag(h: &mut Harness<'_, NetloomApp>, from: Pos2, to: Pos2) {
    h.hover_at(from);
    h.run();
    h.drag_at(from);
    h.run();
    for t in [0.1, 0.4, 0.7, 1.0] {
        h.hover_at(from + (to - from) * t);
        h.run();
    }
    h.drop_at(to);
    h.run();
}

fn has(h: &Harness<'_, NetloomApp>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

fn button<'a>(h: &'a Harness<'static, NetloomApp>, label: &'a str) -> egui_kittest::Node<'a> {
    h.get_by_role_and_label(egui::Role::Button, label)
}

fn input_only() -> Graph {
    let mut g = Graph::new("t");
    g.add_node(
        "input",
        LayerKind::Input {
            height: 32,
            width: 32,
            channels: 3,
        },
        [0.0, 0.0],
    )
    .unwrap();
    g
}

#[test]
fn drag_conv_from_palette_connect_and_see_its_shape() {
    let mut h = harness(input_only());
    let src = button(&h, "Conv2D").rect().center();
    let target = h.state().tab().canvas.screen_rect.center() + vec2(0.0, 120.0);
    drag(&mut h, src, target);
    let doc = h.state().doc();
    let conv = doc
        .graph
        .find("conv2d_1")
        .expect("conv dropped on the canvas");
    assert_eq!(doc.graph.len(), 2);
    // Not yet connected: the node says so.
    assert!(has(&h, "input not connected"));

    let out = canvas_point(&h, "input output");
    let inp = canvas_point(&h, "conv2d_1 input 0");
    drag(&mut h, out, inp);
    let doc = h.state().doc();
    assert_eq!(doc.graph.inputs_of(conv), vec![doc.graph.find("input")]);
    assert!(
        has(&h, "conv2d_1 · Conv2D 32 · 3×3 same · out 32×32×32"),
        "conv2d_1 · Conv2D 32 · 3×3 same · out 32×32×32"
    );
}

#[test]
fn cycle_is_refused_with_a_message() {
    let mut g = input_only();
    let a = g.add_node("a", LayerKind::Relu, [0.0, 150.0]).unwrap();
    let b = g.add_node("b", LayerKind::Relu, [0.0, 300.0]).unwrap();
    let input = g.find("input").unwrap();
    g.connect(input, a, 0).unwrap();
    g.connect(a, b, 0).unwrap();
    let mut h = harness(g);
    // b's output into a's input (replacing its wire) would close a loop: refused.
    let add = h.state().doc().graph.len();
    let out = canvas_point(&h, "b output");
    let target = canvas_point(&h, "a · ReLU · out 32×32×3");
    drag(&mut h, out, target);
    assert_eq!(h.state().doc().graph.len(), add);
    assert!(has(&h, "would make a cycle"), "would make a cycle");
    assert_eq!(h.state().doc().graph.inputs_of(a), vec![Some(input)]);
}

#[test]
fn broken_residual_add_shows_error_and_fix_it_repairs_it() {
    let mut h = harness(blocks::resnet_mini());
    assert!(h.state().doc().analysis.is_valid());
    // Delete block2's projection shortcut (conv and its BN) through the UI.
    for name in ["block2_proj · ", "block2_proj_bn · "] {
        h.get_by_label_contains(name).click_accesskit();
        h.run();
        h.key_press(Key::Delete);
        h.run();
    }
    assert!(h.state().doc().graph.find("block2_proj").is_none());
    // Wire block1's output straight into the Add: shapes differ.
    button(&h, "Cost table").click();
    h.run();
    let g = &h.state().doc().graph;
    let (a, b) = (g.find("block1_out").unwrap(), g.find("block2_add").unwrap());
    let mid = (Pos2::from(g.node(a).unwrap().position)
        + Pos2::from(g.node(b).unwrap().position).to_vec2())
        / 2.0;
    let active = h.state().active;
    h.state_mut().tabs[active]
        .canvas
        .center_on(mid + vec2(90.0, 40.0));
    h.run();
    let out = canvas_point(&h, "block1_out output");
    let add = canvas_point(&h, "block2_add input 1");
    drag(&mut h, out, add);
    assert!(
        has(&h, "block2_add · Add · error"),
        "block2_add · Add · error"
    );
    assert!(!h.state().doc().analysis.is_valid());

    // The fix-it is offered on the node ("Fix") and in the inspector.
    h.get_by_label_contains("block2_add · Add · error")
        .click_accesskit();
    h.run();
    h.get_by_label_contains("Apply fix: insert a 1×1 conv, stride 2, 64 filters")
        .click();
    h.run();
    assert!(
        h.state().doc().analysis.is_valid(),
        "{:?}",
        h.state().doc().analysis.errors()
    );
    assert!(!has(&h, " · error"));
    assert!(
        has(&h, "block2_add · Add · out 16×16×64"),
        "block2_add · Add · out 16×16×64"
    );

    // The fix is one undoable step.
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    assert!(
        has(&h, "block2_add · Add · error"),
        "block2_add · Add · error"
    );
}

#[test]
fn undo_redo_round_trip() {
    let mut h = harness(blocks::resnet_mini());
    let original = h.state().doc().graph.clone();
    button(&h, "Dense").click();
    h.run();
    button(&h, "ReLU").click();
    h.run();
    assert_eq!(h.state().doc().graph.len(), original.len() + 2);
    let edited = h.state().doc().graph.clone();
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    button(&h, "Undo").click();
    h.run();
    assert_eq!(h.state().doc().graph, original);
    h.key_press_modifiers(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z);
    h.run();
    h.key_press_modifiers(Modifiers::COMMAND, Key::Y);
    h.run();
    assert_eq!(h.state().doc().graph, edited);
}

#[test]
fn duplicate_copy_paste_and_delete_by_keyboard() {
    let mut h = harness(blocks::inception_5x5_naive());
    h.get_by_label_contains("conv5x5 · ").click_accesskit();
    h.run();
    h.key_press_modifiers(Modifiers::COMMAND, Key::D);
    h.run();
    assert!(h.state().doc().graph.find("conv5x5_1").is_some());
    h.key_press_modifiers(Modifiers::COMMAND, Key::C);
    h.run();
    h.key_press_modifiers(Modifiers::COMMAND, Key::V);
    h.run();
    assert!(h.state().doc().graph.find("conv5x5_1_1").is_some());
    h.key_press(Key::Delete);
    h.run();
    assert!(h.state().doc().graph.find("conv5x5_1_1").is_none());
    assert_eq!(h.state().doc().graph.len(), 4);
}

#[test]
fn inspector_edits_parameters_and_costs_follow() {
    let mut h = harness(blocks::inception_5x5_naive());
    h.get_by_label_contains("conv5x5 · ").click_accesskit();
    h.run();
    assert!(
        has(&h, "28·28·32 · 5·5·192 = 120,422,400"),
        "28·28·32 · 5·5·192 = 120,422,400"
    );
    button(&h, "FLOPs").click();
    h.run();
    assert!(
        has(
            &h,
            "conv5x5 · Conv2D 32 · 5×5 same · out 28×28×32 · 240.8M FLOPs"
        ),
        "conv5x5 · Conv2D 32 · 5×5 same · out 28×28×32 · 240.8M FLOPs"
    );
}

#[test]
fn compare_shows_inception_ratio() {
    let mut h = harness(blocks::resnet_mini());
    let ctx = h.ctx.clone();
    h.state_mut()
        .execute(&ctx, Command::OpenPreset("inception-naive"));
    h.run();
    button(&h, "Pin as A").click();
    h.run();
    assert!(h.state().comparing());
    // Open the bottleneck preset into B through the File menu.
    h.get_by_label("File").click();
    h.run();
    h.get_by_label("Presets").click();
    h.run();
    h.get_by_label("inception-bottleneck").click();
    h.run();
    assert!(
        has(&h, "B needs 9.68× fewer MACs than A"),
        "B needs 9.68× fewer MACs than A"
    );
    // Live: editing B updates the comparison.
    h.get_by_label_contains("bottleneck1x1 · ")
        .click_accesskit();
    h.run();
    h.key_press(Key::Delete);
    h.run();
    assert!(!has(&h, "9.68×"));
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    assert!(has(&h, "9.68×"), "9.68×");
}

#[test]
fn block_template_inserts_wired_valid_nodes() {
    let mut h = harness(Graph::new("empty"));
    button(&h, "Inception bottleneck").click();
    h.run();
    let doc = h.state().doc();
    assert!(doc.graph.len() > 10);
    assert!(doc.analysis.is_valid());
    // Only nodes in view are drawn (and so in the accessibility tree): fit first.
    let ctx = h.ctx.clone();
    h.state_mut().execute(&ctx, Command::FitView);
    h.run();
    assert!(
        has(&h, "concat · Concat · out 28×28×256"),
        "concat · Concat · out 28×28×256"
    );
}

#[test]
fn importing_an_onnx_model_opens_it_with_its_costs() {
    let dir = std::env::temp_dir().join(format!("netloom-ui-onnx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut h = harness(blocks::resnet_mini());
    let ctx = h.ctx.clone();
    // A broken file is refused with a message and the design stays.
    let broken = dir.join("broken.onnx");
    std::fs::write(&broken, b"not a model").unwrap();
    h.state_mut().execute(&ctx, Command::ImportOnnxPath(broken));
    h.run();
    assert!(has(&h, "Could not import"));
    assert!(has(&h, "55,968,128"), "resnet-mini is still open");
    let mut h = harness(blocks::resnet_mini());
    let ctx = h.ctx.clone();
    let model = dir.join("bottleneck.onnx");
    netloom::interop::onnx::export(&blocks::inception_5x5_bottleneck(), None, &model).unwrap();
    h.state_mut()
        .execute(&ctx, Command::ImportOnnxPath(model.clone()));
    h.run();
    assert!(has(&h, "Imported"), "a notice says what was imported");
    assert!(
        has(&h, "12,443,648"),
        "the imported design's MACs are shown"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn canvas_exports_as_png() {
    let dir = std::env::temp_dir().join(format!("netloom-ui-png-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("canvas.png");
    let mut h = harness(blocks::inception_module_bottleneck());
    let ctx = h.ctx.clone();
    h.state_mut()
        .execute(&ctx, Command::ExportPngTo(path.clone()));
    for _ in 0..4 {
        h.run();
    }
    let _ = h.render();
    for _ in 0..4 {
        h.run();
    }
    assert!(has(&h, "Canvas saved"), "a notice confirms the export");
    let img = image::open(&path).expect("a PNG was written").to_rgba8();
    let canvas = h.state().tab().canvas.screen_rect;
    assert!(img.width() >= (canvas.width() * 0.9) as u32 && img.width() > 100);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn close_compare_asks_before_dropping_the_other_tabs_unsaved_edits() {
    let mut h = harness(blocks::resnet_mini());
    button(&h, "Pin as A").click();
    h.run();
    // Edit B, then go back to A and close the comparison from there.
    let ctx = h.ctx.clone();
    let first = h.state().doc().graph.node_ids().next().unwrap();
    h.state_mut().execute(&ctx, Command::Select([first].into()));
    h.state_mut().execute(&ctx, Command::DeleteSelection);
    h.run();
    assert!(h.state().doc().dirty);
    h.state_mut().execute(&ctx, Command::SwitchTab(0));
    h.state_mut().execute(&ctx, Command::CloseCompare);
    h.run();
    assert!(has(&h, "Unsaved changes"), "Unsaved changes");
    button(&h, "Cancel").click();
    h.run();
    assert!(h.state().comparing(), "cancel keeps both tabs");
    h.state_mut().execute(&ctx, Command::CloseCompare);
    h.run();
    button(&h, "Don't save").click();
    h.run();
    assert!(!h.state().comparing());
}

/// Preset `a` as compare design A, preset `b` as B.
fn compared(a: &'static str, b: &'static str) -> Harness<'static, NetloomApp> {
    let mut h = harness(blocks::resnet_mini());
    let ctx = h.ctx.clone();
    h.state_mut().execute(&ctx, Command::OpenPreset(a));
    h.state_mut().execute(&ctx, Command::PinAsA);
    h.state_mut().execute(&ctx, Command::OpenPreset(b));
    for _ in 0..3 {
        h.run();
    }
    h
}

/// inception-naive as A, inception-bottleneck as B, compared.
fn naive_vs_bottleneck() -> Harness<'static, NetloomApp> {
    compared("inception-naive", "inception-bottleneck")
}

/// The accessible name of the canvas node `name` ("name · Kind …").
fn node_label(h: &Harness<'_, NetloomApp>, name: &str) -> Vec<String> {
    let prefix = format!("{name} · ");
    h.query_all_by_label_contains(&prefix)
        .filter_map(|n| n.accesskit_node().label().map(|l| l.to_string()))
        .filter(|l| l.starts_with(&prefix))
        .collect()
}

#[test]
fn compare_draws_a_and_b_side_by_side_with_bs_changes_marked() {
    let mut h = naive_vs_bottleneck();
    assert_eq!(h.query_all_by_label("Design canvas").count(), 2);
    // The bottleneck's new layers are marked on B; conv5x5 (same
    // parameters, now fed 16 channels instead of 192) on both canvases.
    for added in ["bottleneck1x1", "bottleneck_relu"] {
        let labels = node_label(&h, added);
        assert_eq!(labels.len(), 1, "{added}: {labels:?}");
        assert!(labels[0].ends_with("(added in B)"), "{labels:?}");
    }
    let conv = node_label(&h, "conv5x5");
    assert_eq!(conv.len(), 2, "conv5x5 on both canvases: {conv:?}");
    assert!(
        conv.iter().all(|l| l.ends_with("(cost changed)")),
        "{conv:?}"
    );
    // Unchanged layers carry no mark.
    for same in ["input", "relu"] {
        let labels = node_label(&h, same);
        assert_eq!(labels.len(), 2, "{same}: {labels:?}");
        assert!(labels.iter().all(|l| !l.ends_with(')')), "{labels:?}");
    }
    assert!(has(&h, "B needs 9.68× fewer MACs than A"));

    // Swap A/B is in the Compare menu and the compare section.
    button(&h, "Compare").click();
    h.run();
    let swaps: Vec<String> = h
        .query_all_by_label_contains("Swap A/B")
        .filter_map(|n| n.accesskit_node().label())
        .collect();
    assert_eq!(swaps.len(), 2, "{swaps:?}");
    h.key_press(Key::Escape);
    h.run();
    // Swapping flips the headline and the marks.
    // The button's accessible label also carries its shortcut.
    h.query_all_by_label_contains("Swap A/B")
        .next()
        .expect("Swap A/B in the compare section")
        .click();
    for _ in 0..3 {
        h.run();
    }
    assert!(
        has(&h, "B needs 9.68× more MACs than A"),
        "the headline flips"
    );
    assert_eq!(h.state().tabs[0].doc.graph.name, "inception-bottleneck");
    let gone = node_label(&h, "bottleneck1x1");
    assert!(gone[0].ends_with("(not in B)"), "{gone:?}");
    // And back with the keyboard shortcut.
    h.key_press_modifiers(Modifiers::COMMAND.plus(Modifiers::SHIFT), Key::B);
    h.run();
    assert!(has(&h, "B needs 9.68× fewer MACs than A"));
}

#[test]
fn compare_lists_per_branch_deltas_and_a_row_selects_on_both_canvases() {
    use netloom::infer::compact;
    let mut h = compared("inception-module-naive", "inception-module-bottleneck");
    // One row per branch into the concat, named from B's first layer.
    for row in [
        "concat 0: 1x1",
        "concat 1: 3x3_reduce",
        "concat 2: 5x5_reduce",
        "concat 3: pool",
    ] {
        assert!(has(&h, row), "branch row {row}");
    }
    // The 5×5 branch: 28·28·32·25·192 MACs in A; a 16-filter 1×1 reduction
    // and the 5×5 over its 16 channels in B.
    let f5 = 28 * 28 * 32 * 25;
    let (a, b) = (f5 * 192, 28 * 28 * 16 * 192 + f5 * 16);
    assert!(has(&h, &compact(a)), "{}", compact(a));
    assert!(
        has(&h, &format!("-{}", compact(a - b))),
        "-{}",
        compact(a - b)
    );
    // The block row pairs the two modules' groups.
    assert!(has(&h, "inception / inception_3a"));

    // A layer row selects that layer on both canvases.
    h.get_by_label("~ 3x3").click();
    h.run();
    for tab in &h.state().tabs {
        let names: Vec<&str> = tab
            .selection
            .iter()
            .map(|&id| tab.doc.graph.name_of(id))
            .collect();
        assert_eq!(names, ["3x3"], "{}", tab.doc.graph.name);
    }
}

/// The diff of A and B is computed once for a pair of designs, not every
/// frame, and again after an edit of B (and its undo).
#[test]
fn the_compare_diff_is_kept_between_frames_and_follows_edits_of_b() {
    use netloom::app::compare::diff::Change;
    use std::sync::Arc;
    let mut h = naive_vs_bottleneck();
    let first = h.state_mut().compare_diff().expect("comparing");
    for _ in 0..3 {
        h.run();
    }
    let again = h.state_mut().compare_diff().expect("comparing");
    assert!(Arc::ptr_eq(&first, &again), "frames reuse the diff");
    assert_eq!(first.change_of("bottleneck1x1"), Some(Change::Added));
    assert!(has(&h, "+ bottleneck1x1"), "its row in the compare section");

    // Delete B's bottleneck conv.
    h.get_by_label_contains("bottleneck1x1 · ")
        .click_accesskit();
    h.run();
    h.key_press(Key::Delete);
    h.run();
    let edited = h.state_mut().compare_diff().expect("comparing");
    assert!(
        !Arc::ptr_eq(&first, &edited),
        "an edit of B computes it again"
    );
    assert_eq!(edited.change_of("bottleneck1x1"), None);
    assert_eq!(edited.change_of("bottleneck_relu"), Some(Change::Added));
    assert!(!has(&h, "+ bottleneck1x1"), "the row went with the layer");

    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    let undone = h.state_mut().compare_diff().expect("comparing");
    assert_eq!(*undone, *first, "undo brings back the first diff");
    assert!(has(&h, "+ bottleneck1x1"));
}
