//! UI tests of the canvas: fit, find, the error list, inserting a layer
//! into a wire, rewiring an input, collapsing and expanding a group, the
//! left-to-right layout, driven by accessible labels.
#![cfg(feature = "gui")]

use egui::{Key, Modifiers, Pos2, vec2};
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use netloom::app::NetloomApp;
use netloom::graph::layout::Orientation;
use netloom::graph::{Graph, LayerKind, blocks, layout, route};

fn harness(graph: Graph) -> Harness<'static, NetloomApp> {
    let app = NetloomApp::for_tests(graph);
    let mut h = Harness::builder()
        .with_size(vec2(1400.0, 900.0))
        .build_ui_state(|ui, app: &mut NetloomApp| app.ui(ui), app);
    h.run();
    h
}

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

/// Screen rect of a node's card.
fn node_on_screen(h: &Harness<'_, NetloomApp>, name: &str) -> egui::Rect {
    let r = h.get_by_label_contains(&format!("{name} · ")).rect();
    let c = &h.state().tab().canvas;
    egui::Rect::from_min_max(c.to_screen(r.min), c.to_screen(r.max))
}

/// A right click at a screen point (nodes inside the scene report scene rects).
fn right_click(h: &mut Harness<'_, NetloomApp>, at: Pos2) {
    click_with(h, at, egui::PointerButton::Secondary);
}

/// Press and release `button` at a screen point.
fn click_with(h: &mut Harness<'_, NetloomApp>, at: Pos2, button: egui::PointerButton) {
    h.hover_at(at);
    h.run();
    for pressed in [true, false] {
        h.event(egui::Event::PointerButton {
            pos: at,
            button,
            pressed,
            modifiers: Modifiers::NONE,
        });
        h.run();
    }
}

fn canvas_point(h: &Harness<'_, NetloomApp>, label: &str) -> Pos2 {
    let r = h.get_by_label(label).rect();
    h.state().tab().canvas.to_screen(r.center())
}

#[test]
fn fit_shows_every_node_of_resnet_mini() {
    let mut h = harness(blocks::resnet_mini());
    let canvas = h.state().tab().canvas.screen_rect;
    let names: Vec<String> = h
        .state()
        .doc()
        .graph
        .nodes()
        .map(|(_, n)| n.name.clone())
        .collect();
    assert_eq!(names.len(), 31);
    for name in &names {
        let r = node_on_screen(&h, name);
        assert!(
            canvas.contains_rect(r),
            "{name} at {r:?} is outside {canvas:?}"
        );
    }
    // Zoom in, then F fits again.
    h.state_mut().tabs[0]
        .canvas
        .focus(egui::Rect::from_min_size(Pos2::ZERO, vec2(10.0, 10.0)));
    h.run();
    // Zoomed in on the input: the head of the network is out of view (and not drawn).
    let head_hidden = h.query_by_label_contains("softmax · ").is_none()
        || !canvas.contains_rect(node_on_screen(&h, "softmax"));
    assert!(head_hidden);
    h.key_press(Key::F);
    h.run();
    h.run();
    for name in &names {
        assert!(
            canvas.contains_rect(node_on_screen(&h, name)),
            "{name} after F"
        );
    }
}

/// Ctrl+F, type `query`, click the match labelled `go`.
fn find_and_go(h: &mut Harness<'_, NetloomApp>, query: &str, go: &str) {
    h.key_press_modifiers(Modifiers::COMMAND, Key::F);
    h.run();
    h.get_by_role_and_label(egui::Role::TextInput, "Find layer")
        .type_text(query);
    h.run();
    h.get_by_label(go).click();
    h.run();
    h.run();
}

#[test]
fn ctrl_f_finds_a_layer_selects_it_and_brings_it_into_view() {
    let mut h = harness(blocks::resnet_mini());
    find_and_go(&mut h, "block3_b_bn", "Go to block3_b_bn (BatchNorm)");
    let g = &h.state().doc().graph;
    let id = g.find("block3_b_bn").unwrap();
    assert_eq!(
        h.state().selection().iter().copied().collect::<Vec<_>>(),
        vec![id]
    );
    let canvas = h.state().tab().canvas.screen_rect;
    let r = node_on_screen(&h, "block3_b_bn");
    assert!(canvas.contains_rect(r), "{r:?} not in {canvas:?}");
    assert!(r.width() > 150.0, "zoomed in to a readable card: {r:?}");
}

#[test]
fn error_list_entries_jump_to_the_layer() {
    let mut g = blocks::resnet_mini();
    // Bypass block2's projection: the Add's shapes no longer match.
    let (proj, bn) = (
        g.find("block2_proj").unwrap(),
        g.find("block2_proj_bn").unwrap(),
    );
    g.remove_node(proj);
    g.remove_node(bn);
    let (from, add) = (g.find("block1_out").unwrap(), g.find("block2_add").unwrap());
    g.connect(from, add, 1).unwrap();
    let mut h = harness(g);
    h.get_by_label("1 layer with errors").click();
    h.run();
    h.get_by_label_contains("block2_add: ").click();
    h.run();
    h.run();
    let add = h.state().doc().graph.find("block2_add").unwrap();
    assert!(h.state().selection().contains(&add));
    let canvas = h.state().tab().canvas.screen_rect;
    assert!(canvas.contains_rect(node_on_screen(&h, "block2_add")));
}

#[test]
fn dropping_a_layer_on_a_wire_inserts_it() {
    let mut h = harness(blocks::resnet_mini());
    let g = h.state().doc().graph.clone();
    let (pool, conv) = (g.find("stem_pool").unwrap(), g.find("block1_a").unwrap());
    // The wire's route, as the canvas draws it.
    let routes = route::route(&g, &route::node_boxes(&g), Orientation::TopToBottom);
    let wire = routes
        .wires
        .iter()
        .find(|w| w.edge.from == pool && w.edge.to == conv)
        .unwrap();
    let (a, b) = (wire.points[0], wire.points[1]);
    let mid = Pos2::new((a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0);
    let target = h.state().tab().canvas.to_screen(mid);
    let src = h
        .get_by_role_and_label(egui::Role::Button, "Conv2D")
        .rect()
        .center();
    drag(&mut h, src, target);
    let g = &h.state().doc().graph;
    let new = g.find("conv2d_1").expect("a conv layer was added");
    assert_eq!(g.inputs_of(new), vec![Some(pool)]);
    assert_eq!(g.inputs_of(conv), vec![Some(new)]);
    assert!(h.state().doc().analysis.is_valid());
}

#[test]
fn dragging_a_connected_input_rewires_it_in_one_undo_step() {
    let mut g = Graph::new("t");
    let input = g
        .add_node(
            "input",
            LayerKind::Input {
                height: 8,
                width: 8,
                channels: 3,
            },
            [0.0, 0.0],
        )
        .unwrap();
    let a = g.add_node("a", LayerKind::Relu, [0.0, 0.0]).unwrap();
    let b = g.add_node("b", LayerKind::Relu, [0.0, 0.0]).unwrap();
    let c = g.add_node("c", LayerKind::Tanh, [0.0, 0.0]).unwrap();
    g.connect(input, a, 0).unwrap();
    g.connect(a, b, 0).unwrap();
    g.connect(input, c, 0).unwrap();
    layout::auto_layout(&mut g);
    let before = g.clone();
    let mut h = harness(g);
    // Pick up the end of a → b at b's input and drop it on c's input.
    let from = canvas_point(&h, "b input 0");
    let to = canvas_point(&h, "c input 0");
    drag(&mut h, from, to);
    let g = &h.state().doc().graph;
    assert_eq!(g.inputs_of(b), vec![None], "{:?}", g.edges());
    assert_eq!(g.inputs_of(c), vec![Some(a)]);
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    assert_eq!(h.state().doc().graph, before);
}

/// The collapsed group labelled `part` reports `macs` as its rolled-up MACs.
fn assert_rolled_up_macs(h: &Harness<'_, NetloomApp>, part: &str, macs: u64) {
    let node = h.get_by_label_contains(part);
    let label = node
        .accesskit_node()
        .label()
        .unwrap_or_default()
        .to_string();
    assert!(
        label.ends_with(&format!("{} MACs", netloom::infer::compact(macs))),
        "{label}"
    );
}

#[test]
fn a_residual_block_collapses_to_one_node_with_its_rolled_up_cost_and_expands_again() {
    let mut h = harness(blocks::resnet_mini());
    let g = h.state().doc().graph.clone();
    let block = g.find_group("block2").unwrap();
    let members: Vec<String> = g.groups()[block]
        .members
        .iter()
        .map(|&m| g.name_of(m).to_string())
        .collect();
    let analysis = netloom::infer::analyze(&g);
    let macs: u64 = g.groups()[block]
        .members
        .iter()
        .map(|&m| analysis.node(m).unwrap().cost.macs)
        .sum();
    // Collapse from the right-click menu of one of its layers.
    let at = node_on_screen(&h, "block2_a").center();
    right_click(&mut h, at);
    h.get_by_label("Collapse group block2").click();
    h.run();
    h.run();
    let g = h.state().doc().graph.clone();
    assert!(g.groups()[block].collapsed);
    // One node stands for the block, with its rolled-up figures and output shape.
    let expected = format!(
        "block2 · Group of {} layers · out 16×16×64 · ",
        members.len()
    );
    assert_rolled_up_macs(&h, &expected, macs);
    for m in &members {
        assert!(
            h.query_by_label_contains(&format!("{m} · ")).is_none(),
            "{m} is drawn inside the collapsed block"
        );
    }
    // Its wires go to the group's boundary: the layers around it are wired to it.
    let canvas = h.state().tab().canvas.screen_rect;
    h.key_press(Key::F);
    h.run();
    for name in ["block1_out", "block3_a", "block2"] {
        assert!(canvas.contains_rect(node_on_screen(&h, name)), "{name}");
    }
    // Expand from the group's right-click menu; undo collapses it again.
    let at = node_on_screen(&h, "block2").center();
    right_click(&mut h, at);
    h.get_by_label("Expand group").click();
    h.run();
    h.run();
    assert!(!h.state().doc().graph.groups()[block].collapsed);
    for m in &members {
        assert!(
            h.query_by_label_contains(&format!("{m} · ")).is_some(),
            "{m}"
        );
    }
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    assert!(h.state().doc().graph.groups()[block].collapsed);
    assert!(h.query_by_label_contains(&expected).is_some());
}

#[test]
fn the_canvas_lays_the_design_out_left_to_right() {
    let mut h = harness(blocks::vgg16());
    h.get_by_label("View").click();
    h.run();
    h.get_by_label("Lay out left to right").click();
    h.run();
    h.run();
    assert_eq!(h.state().doc().graph.orientation, Orientation::LeftToRight);
    // VGG-16 as a row: each layer to the right of its input, all on screen after the fit.
    let canvas = h.state().tab().canvas.screen_rect;
    let (a, b) = (
        node_on_screen(&h, "block1_conv1"),
        node_on_screen(&h, "block1_conv2"),
    );
    assert!(b.left() > a.right(), "{a:?} then {b:?}");
    assert!((a.center().y - b.center().y).abs() < 1.0);
    for (_, n) in h.state().doc().graph.nodes() {
        // At fit zoom the names are drawn beside the blocks; the blocks are on screen.
        let r = node_on_screen(&h, &n.name);
        assert!(canvas.contains_rect(r), "{} at {r:?}", n.name);
    }
}

/// A left click on the canvas widget whose label contains `part` (its
/// rect is in scene coordinates, so the click goes to its screen point).
fn click_in_scene(h: &mut Harness<'_, NetloomApp>, part: &str) {
    let at = center_of(h, part);
    click_with(h, at, egui::PointerButton::Primary);
    h.run();
}

/// Screen centre of the widget whose label contains `part`.
fn center_of(h: &Harness<'_, NetloomApp>, part: &str) -> Pos2 {
    let r = match h.query_by_label(part) {
        Some(exact) => exact.rect(),
        None => h.get_by_label_contains(part).rect(),
    };
    h.state().tab().canvas.to_screen(r.center())
}

fn position_of(h: &Harness<'_, NetloomApp>, name: &str) -> [f32; 2] {
    let g = &h.state().doc().graph;
    g.node(g.find(name).unwrap()).unwrap().position
}

fn group_index(h: &Harness<'_, NetloomApp>, name: &str) -> usize {
    h.state().doc().graph.find_group(name).unwrap()
}

fn near(a: [f32; 2], b: [f32; 2]) -> bool {
    (a[0] - b[0]).abs() < 0.5 && (a[1] - b[1]).abs() < 0.5
}

#[test]
fn a_collapsed_group_is_dragged_with_its_layers_and_expands_where_it_went() {
    let mut h = harness(blocks::resnet_mini());
    click_in_scene(&mut h, "Collapse block2");
    let block = group_index(&h, "block2");
    assert!(h.state().doc().graph.groups()[block].collapsed);
    let members: Vec<String> = {
        let g = &h.state().doc().graph;
        g.groups()[block]
            .members
            .iter()
            .map(|&m| g.name_of(m).to_string())
            .collect()
    };
    let card_before = h.state().doc().graph.groups()[block].position;
    let layers_before: Vec<[f32; 2]> = members.iter().map(|m| position_of(&h, m)).collect();
    let outside_before = position_of(&h, "block3_a");
    // Drag the card 300 points to the right.
    let from = center_of(&h, "block2 · Group of");
    drag(&mut h, from, from + vec2(300.0, 0.0));
    let zoom = h.state().tab().canvas.zoom();
    let card = h.state().doc().graph.groups()[block].position;
    let moved = [card[0] - card_before[0], card[1] - card_before[1]];
    assert!(
        (moved[0] - 300.0 / zoom).abs() < 2.0 / zoom && moved[1].abs() < 2.0 / zoom,
        "the card moved by {moved:?}, the pointer by 300 points at zoom {zoom}"
    );
    for (m, before) in members.iter().zip(&layers_before) {
        let now = position_of(&h, m);
        assert!(
            near(now, [before[0] + moved[0], before[1] + moved[1]]),
            "{m} did not move with its group: {before:?} -> {now:?}"
        );
    }
    assert_eq!(position_of(&h, "block3_a"), outside_before);
    // Expanded, the block's layers start where the card went.
    let at = center_of(&h, "block2 · Group of");
    right_click(&mut h, at);
    h.get_by_label("Expand group").click();
    h.run();
    h.run();
    let g = &h.state().doc().graph;
    assert!(!g.groups()[block].collapsed);
    let left = members
        .iter()
        .map(|m| position_of(&h, m)[0])
        .fold(f32::INFINITY, f32::min);
    assert!((left - card[0]).abs() < 0.5, "{left} vs card {card:?}");
    // One undo step each: expansion, then the whole drag.
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    assert!(h.state().doc().graph.groups()[block].collapsed);
    assert_eq!(h.state().doc().graph.groups()[block].position, card_before);
    for (m, before) in members.iter().zip(&layers_before) {
        assert_eq!(position_of(&h, m), *before, "{m}");
    }
}

#[test]
fn an_expanded_group_is_dragged_by_its_label() {
    let mut h = harness(blocks::resnet_mini());
    let before = position_of(&h, "block1_a");
    let outside = position_of(&h, "stem");
    let from = center_of(&h, "Collapse block1");
    drag(&mut h, from, from + vec2(0.0, 120.0));
    let zoom = h.state().tab().canvas.zoom();
    let after = position_of(&h, "block1_a");
    assert!(
        (after[1] - before[1] - 120.0 / zoom).abs() < 2.0 / zoom
            && (after[0] - before[0]).abs() < 0.5,
        "{before:?} -> {after:?} at zoom {zoom}"
    );
    assert_eq!(position_of(&h, "stem"), outside);
    assert!(
        !h.state().doc().graph.groups()[group_index(&h, "block1")].collapsed,
        "a drag is not a click"
    );
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    assert_eq!(position_of(&h, "block1_a"), before);
}

#[test]
fn resnet50_stages_hold_their_blocks_collapsed_or_not() {
    let mut h = harness(blocks::resnet50("resnet50", 224, 1000, false));
    let g = h.state().doc().graph.clone();
    let (res2, res2a) = (group_index(&h, "res2"), group_index(&h, "res2a"));
    assert_eq!(g.nesting().parent[res2a], Some(res2));
    // Collapse a block, then its stage: the stage is one node, the block gone.
    // At fit zoom the block's label gives way to its stage's: collapse it
    // from a layer's menu (the innermost group).
    let at = node_on_screen(&h, "res2a_2a").center();
    right_click(&mut h, at);
    h.get_by_label("Collapse group res2a").click();
    h.run();
    h.run();
    assert!(
        h.query_by_label_contains("res2a · Group of 12 layers")
            .is_some()
    );
    assert!(h.query_by_label_contains("res2a_2a · ").is_none());
    click_in_scene(&mut h, "Collapse res2");
    let analysis = netloom::infer::analyze(&g);
    let macs: u64 = g.groups()[res2]
        .members
        .iter()
        .map(|&m| analysis.node(m).unwrap().cost.macs)
        .sum();
    assert_rolled_up_macs(&h, "res2 · Group of 32 layers", macs);
    for hidden in ["res2a · Group", "res2b_2a · ", "Collapse res2b"] {
        assert!(
            h.query_by_label_contains(hidden).is_none(),
            "{hidden} is drawn inside the collapsed stage"
        );
    }
    // Expanding the stage shows its blocks as they were: res2a still collapsed.
    let at = center_of(&h, "res2 · Group of");
    right_click(&mut h, at);
    h.get_by_label("Expand group").click();
    h.run();
    h.run();
    assert!(
        h.query_by_label_contains("res2a · Group of 12 layers")
            .is_some()
    );
    assert!(h.query_by_label_contains("res2b_2a · ").is_some());
    // Undo collapses the stage again.
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    assert!(h.state().doc().graph.groups()[res2].collapsed);
    assert!(
        h.query_by_label_contains("res2 · Group of 32 layers")
            .is_some()
    );
}

#[test]
fn ctrl_f_finds_a_group_and_expands_the_collapsed_stage_around_it() {
    let mut h = harness(blocks::resnet50("resnet50", 224, 1000, false));
    click_in_scene(&mut h, "Collapse res3");
    let (res3, res3b) = (group_index(&h, "res3"), group_index(&h, "res3b"));
    assert!(h.state().doc().graph.groups()[res3].collapsed);
    find_and_go(&mut h, "res3b", "Go to res3b (group of 10 layers)");
    let g = &h.state().doc().graph;
    assert!(
        !g.groups()[res3].collapsed,
        "the stage holding res3b opened"
    );
    let members: std::collections::BTreeSet<_> =
        g.groups()[res3b].members.iter().copied().collect();
    assert_eq!(h.state().selection(), &members);
    let canvas = h.state().tab().canvas.screen_rect;
    let r = node_on_screen(&h, "res3b_2a");
    assert!(canvas.contains_rect(r), "{r:?} not in {canvas:?}");
    let label = center_of(&h, "Collapse res3b");
    assert!(canvas.contains(label), "res3b's label at {label:?}");
}

#[test]
fn duplicate_copy_and_paste_carry_the_groups_inside_the_selection() {
    let mut h = harness(blocks::resnet_mini());
    click_in_scene(&mut h, "Collapse block1");
    let block = group_index(&h, "block1");
    let (layers, groups) = {
        let g = &h.state().doc().graph;
        (g.len(), g.groups().len())
    };
    let size = h.state().doc().graph.groups()[block].members.len();
    // A click on the collapsed card selects its layers; Ctrl+D duplicates them.
    click_in_scene(&mut h, "block1 · Group of");
    assert_eq!(h.state().selection().len(), size);
    h.key_press_modifiers(Modifiers::COMMAND, Key::D);
    h.run();
    h.run();
    let check_copy = |h: &Harness<'_, NetloomApp>, name: &str| {
        let g = &h.state().doc().graph;
        let copy = g.find_group(name).unwrap_or_else(|| panic!("no {name}"));
        let members: std::collections::BTreeSet<_> =
            g.groups()[copy].members.iter().copied().collect();
        assert_eq!(members.len(), size);
        assert!(g.groups()[copy].collapsed, "copied collapsed");
        assert_eq!(h.state().selection(), &members, "the copy is selected");
        assert!(
            h.query_by_label_contains(&format!("{name} · Group of {size} layers"))
                .is_some(),
            "{name} is drawn as one node"
        );
    };
    check_copy(&h, "block1_2");
    assert_eq!(h.state().doc().graph.len(), layers + size);
    assert_eq!(h.state().doc().graph.groups().len(), groups + 1);
    // One undo step takes the copy and its group away.
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    assert_eq!(h.state().doc().graph.len(), layers);
    assert_eq!(h.state().doc().graph.groups().len(), groups);
    // Copy and Paste: the same, renamed on the clash.
    click_in_scene(&mut h, "block1 · Group of");
    h.key_press_modifiers(Modifiers::COMMAND, Key::C);
    h.run();
    h.key_press_modifiers(Modifiers::COMMAND, Key::V);
    h.run();
    h.run();
    check_copy(&h, "block1_2");
}
