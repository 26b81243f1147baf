//! The workspace keeps still: the bottom panel does not resize itself over
//! repaints, on any of its tabs, and the cost table's Total row stays in view.
#![cfg(feature = "gui")]

use egui::vec2;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use netloom::app::command::Command;
use netloom::app::{BottomTab, NetloomApp};
use netloom::graph::blocks;

fn harness(size: egui::Vec2) -> Harness<'static, NetloomApp> {
    let app = NetloomApp::for_tests(blocks::resnet_mini());
    let mut h = Harness::builder()
        .with_size(size)
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
