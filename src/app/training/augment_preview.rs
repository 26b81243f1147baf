//! The Run setup's augmentation previews: the dataset's first image, read
//! once per dataset and input size on the named thread `netloom-preview`,
//! and one small texture per augmentation drawn from it through
//! [`augment::preview`] with the setup's seed and strengths, redrawn when
//! those change.

use crate::data::augment::{self, Augmentation};
use crate::data::{self, AugmentConfig, LoadOptions, Shape};
use egui::{Color32, ColorImage, TextureHandle, TextureOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, TryRecvError};

const THREAD_NAME: &str = "netloom-preview";

/// Where the preview image comes from: the dataset (`None`: built in) and the design's input.
type Source = (Option<PathBuf>, (usize, usize, usize));

/// The first image, its shape, or why it could not be read.
type FirstImage = Result<(Vec<f32>, Shape), String>;

/// The preview image and the textures drawn from it.
#[derive(Default)]
pub struct AugmentPreviews {
    source: Option<Source>,
    image: Option<FirstImage>,
    pending: Option<Receiver<FirstImage>>,
    /// Per augmentation: the settings it was drawn with, and its texture.
    textures: HashMap<Augmentation, ((AugmentConfig, u64), TextureHandle)>,
}

impl AugmentPreviews {
    /// Asks for the first image of `dataset` at the design's input size
    /// `hwc` (read on a thread when it changes); `ctx` repaints when it comes.
    pub fn want(
        &mut self,
        ctx: &egui::Context,
        dataset: Option<&Path>,
        hwc: (usize, usize, usize),
    ) {
        let source = (dataset.map(Path::to_path_buf), hwc);
        if self.source.as_ref() == Some(&source) {
            return;
        }
        self.source = Some(source.clone());
        self.image = None;
        self.textures.clear();
        let (tx, rx) = mpsc::channel();
        let repaint = ctx.clone();
        let started = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                let path = source.0.unwrap_or_else(data::default_dataset_dir);
                let _ = tx.send(first_image(&path, source.1));
                repaint.request_repaint();
            });
        match started {
            Ok(_) => self.pending = Some(rx),
            Err(e) => self.image = Some(Err(format!("could not start a thread: {e}"))),
        }
    }

    /// Takes the image if it has come.
    fn poll(&mut self) {
        let Some(rx) = &self.pending else {
            return;
        };
        match rx.try_recv() {
            Ok(image) => {
                self.image = Some(image);
                self.pending = None;
            }
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => {
                self.image = Some(Err("the preview thread ended without an image".into()));
                self.pending = None;
            }
        }
    }

    /// Why there is no preview (still reading, or the reason), if there is none.
    pub fn problem(&mut self) -> Option<String> {
        self.poll();
        match &self.image {
            None => Some("reading the first image…".into()),
            Some(Err(why)) => Some(format!("no preview: {why}")),
            Some(Ok(_)) => None,
        }
    }

    /// The texture of `which` under `config` and `seed`, drawn again when
    /// they changed since the last call.
    pub fn texture(
        &mut self,
        ctx: &egui::Context,
        config: &AugmentConfig,
        seed: u64,
        which: Augmentation,
    ) -> Option<TextureHandle> {
        self.poll();
        let Some(Ok((image, shape))) = &self.image else {
            return None;
        };
        let key = (which.alone(config), seed);
        if let Some((k, tex)) = self.textures.get(&which)
            && *k == key
        {
            return Some(tex.clone());
        }
        let pixels = augment::preview(config, which, image, *shape, seed);
        let tex = ctx.load_texture(
            format!("augment_preview_{which:?}"),
            to_color_image(&pixels, *shape),
            TextureOptions::NEAREST,
        );
        self.textures.insert(which, (key, tex.clone()));
        Some(tex)
    }
}

/// The first image of the dataset at `path`, at the design's input size:
/// for an image folder the first image file found (folders and files in
/// name order), for other formats the first training image.
fn first_image(path: &Path, (h, w, c): (usize, usize, usize)) -> FirstImage {
    let shape = Shape::new(h, w, c);
    if let Ok(data::Format::ImageFolder) = data::detect_format(path) {
        let file = first_file(path, 0).ok_or_else(|| format!("no image in {}", path.display()))?;
        let image = data::image_folder::load_image(&file, shape)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        return Ok((image, shape));
    }
    let splits = data::load(path, &LoadOptions::for_input(h, w, c), &mut |_, _| {})
        .map_err(|e| e.to_string())?;
    if splits.train.is_empty() {
        return Err(format!("{} has no training images", path.display()));
    }
    Ok((splits.train.image(0).to_vec(), shape))
}

/// The first image file under `dir`, depth first in name order.
fn first_file(dir: &Path, depth: usize) -> Option<PathBuf> {
    const IMAGES: [&str; 5] = ["png", "jpg", "jpeg", "bmp", "gif"];
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    // Name order, the training split first.
    entries.sort_by_key(|p| {
        (
            p.file_name().and_then(|n| n.to_str()) != Some("train"),
            p.clone(),
        )
    });
    let is_image = |p: &Path| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGES.contains(&e.to_ascii_lowercase().as_str()))
    };
    if let Some(f) = entries.iter().find(|p| p.is_file() && is_image(p)) {
        return Some(f.clone());
    }
    if depth >= 3 {
        return None;
    }
    entries
        .iter()
        .filter(|p| p.is_dir())
        .find_map(|d| first_file(d, depth + 1))
}

/// Raw pixels in `[0, 1]` as an image (one channel as grey).
fn to_color_image(values: &[f32], s: Shape) -> ColorImage {
    let byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let pixels = values
        .chunks_exact(s.c.max(1))
        .map(|px| match px {
            [r, g, b, ..] => Color32::from_rgb(byte(*r), byte(*g), byte(*b)),
            [v, ..] => Color32::from_gray(byte(*v)),
            [] => Color32::BLACK,
        })
        .collect();
    ColorImage {
        size: [s.w, s.h],
        source_size: egui::vec2(s.w as f32, s.h as f32),
        pixels,
    }
}
