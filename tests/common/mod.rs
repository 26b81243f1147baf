//! Tiny designs and synthetic datasets shared by the trainer tests.
#![allow(dead_code)]

#[cfg(feature = "gui")]
pub mod app;
pub mod gradcheck;

use netloom::data::{Dataset, Shape, Splits};
use netloom::graph::{Graph, file};
use netloom::kernels::misc::SplitMix64;
use netloom::train::trainer::DataSource;
use netloom::train::trainer::{Event, TrainConfig, TrainOutcome, Trainer};

pub const H: usize = 8;

/// A design saved after a wire made its group `pair` (`a`, `sum`)
/// non-contiguous: `b` lies on a path between them outside the group.
pub const BROKEN_GROUP_DESIGN: &str = r#"{"format":"netloom-design","version":2,"name":"g","nodes":[
{"name":"in","kind":"input","height":8,"width":8,"channels":3},
{"name":"a","kind":"relu"},{"name":"b","kind":"relu"},{"name":"sum","kind":"add"}],
"edges":[{"from":"in","to":"a"},{"from":"a","to":"b"},{"from":"a","to":"sum","input":0},{"from":"b","to":"sum","input":1}],
"groups":[{"name":"pair","members":["a","sum"]}]}"#;

/// conv(4) → BN → ReLU → conv(6) → BN → ReLU → GAP → Dense(`units`) → Softmax on 8×8×3.
pub fn tiny_design(units: u32) -> Graph {
    let json = format!(
        r#"{{"format":"netloom-design","version":1,"name":"tiny","nodes":[
        {{"name":"input","kind":"input","height":{H},"width":{H},"channels":3,"position":[0,0]}},
        {{"name":"c1","kind":"conv2d","filters":4,"kernel":[3,3],"stride":[1,1],"padding":"same","position":[0,1]}},
        {{"name":"bn1","kind":"batch_norm","epsilon":0.001,"momentum":0.9,"position":[0,2]}},
        {{"name":"r1","kind":"relu","position":[0,3]}},
        {{"name":"c2","kind":"conv2d","filters":6,"kernel":[3,3],"stride":[1,1],"padding":"same","position":[0,4]}},
        {{"name":"bn2","kind":"batch_norm","epsilon":0.001,"momentum":0.9,"position":[0,5]}},
        {{"name":"r2","kind":"relu","position":[0,6]}},
        {{"name":"gap","kind":"global_avg_pool","position":[0,7]}},
        {{"name":"fc","kind":"dense","units":{units},"position":[0,8]}},
        {{"name":"softmax","kind":"softmax","position":[0,9]}}],
        "edges":[
        {{"from":"input","to":"c1","input":0}},{{"from":"c1","to":"bn1","input":0}},
        {{"from":"bn1","to":"r1","input":0}},{{"from":"r1","to":"c2","input":0}},
        {{"from":"c2","to":"bn2","input":0}},{{"from":"bn2","to":"r2","input":0}},
        {{"from":"r2","to":"gap","input":0}},{{"from":"gap","to":"fc","input":0}},
        {{"from":"fc","to":"softmax","input":0}}]}}"#
    );
    file::from_json(&json).expect("tiny design parses")
}

/// `n` images of 3 classes: class k has a bright 4×4 patch in channel k at a
/// class-specific corner, on noise.
pub fn synthetic(n: usize, seed: u64) -> Dataset {
    let mut rng = SplitMix64::new(seed);
    let mut images = Vec::with_capacity(n * H * H * 3);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let k = i % 3;
        let (y0, x0) = [(0, 0), (0, 4), (4, 2)][k];
        for y in 0..H {
            for x in 0..H {
                for ch in 0..3 {
                    let inside = (y0..y0 + 4).contains(&y) && (x0..x0 + 4).contains(&x);
                    let v = if inside && ch == k { 0.8 } else { 0.2 };
                    images.push((v + 0.2 * (rng.next_f32() - 0.5)).clamp(0.0, 1.0));
                }
            }
        }
        labels.push(k as u32);
    }
    let names = vec!["a".into(), "b".into(), "c".into()];
    Dataset::new(images, labels, Shape::new(H, H, 3), names).expect("valid dataset")
}

pub fn splits() -> Splits {
    Splits {
        train: synthetic(96, 1),
        val: Some(synthetic(24, 2)),
        test: Some(synthetic(30, 3)),
        skipped: Vec::new(),
        notices: Vec::new(),
    }
}

/// A config for the tiny design on the synthetic splits, autostarting.
pub fn config(units: u32, epochs: u64) -> TrainConfig {
    let mut c = TrainConfig::new(tiny_design(units), DataSource::Splits(Box::new(splits())));
    c.epochs = epochs;
    c.batch_size = 16;
    c.seed = 5;
    c.autostart = true;
    c.optimizer.learning_rate = 0.01;
    c
}

/// Runs to the end; returns all events and the outcome.
pub fn run(config: TrainConfig) -> (Vec<Event>, TrainOutcome) {
    let t = Trainer::spawn(config).expect("spawn");
    let events: Vec<Event> = t.events().iter().collect();
    let outcome = t.join().expect("join");
    (events, outcome)
}

pub fn batch_losses(events: &[Event]) -> Vec<f32> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Batch { loss, .. } => Some(*loss),
            _ => None,
        })
        .collect()
}

pub fn notices(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Notice(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// Writes train and test splits of [`synthetic`] images as PNG class
/// folders under `root`, plus one corrupt file in `train/a`.
pub fn write_png_folder(root: &std::path::Path) {
    let splits = [("train", synthetic(60, 11)), ("test", synthetic(15, 12))];
    for (split, ds) in splits {
        for i in 0..ds.len() {
            let dir = root
                .join(split)
                .join(&ds.class_names[ds.labels[i] as usize]);
            std::fs::create_dir_all(&dir).expect("mkdir");
            let px: Vec<u8> = ds
                .image(i)
                .iter()
                .map(|v| (v * 255.0).round() as u8)
                .collect();
            image::RgbImage::from_raw(H as u32, H as u32, px)
                .expect("image")
                .save(dir.join(format!("{i}.png")))
                .expect("png");
        }
    }
    std::fs::write(root.join("train/a/corrupt.png"), b"not a png").expect("write");
}

/// Runs the `netloom` binary from the repository root: (exit code, stdout, stderr).
pub fn netloom(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netloom"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run netloom");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
