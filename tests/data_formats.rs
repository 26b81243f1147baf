//! The dataset readers on real files: image folders (both layouts, corrupt
//! files), IDX (raw and gzipped, damaged), CIFAR-10 binary, the embedded
//! hand-digits set and, when present, the SIGNS set in `../shared`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use netloom::data::{
    self, AugmentConfig, Augmenter, BatchConfig, Batcher, DataError, Format, LoadOptions,
    Prefetcher, Shape, SkippedSummary,
};

/// A scratch folder removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("netloom-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A solid-colour RGB PNG of `w × h`.
fn png(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(w, h, image::Rgb(rgb))
        .save(path)
        .unwrap();
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn no_progress() -> impl FnMut(usize, usize) {
    |_, _| {}
}

#[test]
fn image_folder_split_layout_with_corrupt_files() {
    let t = TempDir::new("folder-split");
    let d = &t.0;
    // Classes "cat" < "dog" < "emu"; emu only appears in test.
    for i in 0..3 {
        png(&d.join(format!("train/dog/{i}.png")), 10, 8, [0, 255, 0]);
        png(&d.join(format!("train/cat/{i}.png")), 10, 8, [255, 0, 0]);
    }
    png(&d.join("train/cat/nested/deep.png"), 6, 6, [255, 0, 0]);
    png(&d.join("test/emu/0.png"), 4, 4, [0, 0, 255]);
    png(&d.join("test/dog/0.png"), 4, 4, [0, 255, 0]);
    write(
        &d.join("train/cat/broken.jpg"),
        b"\xff\xd8\xff\xe0 not really a jpeg",
    );
    let good = std::fs::read(d.join("train/dog/0.png")).unwrap();
    write(&d.join("train/dog/truncated.png"), &good[..good.len() / 2]);
    write(&d.join("train/dog/.DS_Store"), b"hidden files are ignored");

    let mut calls = Vec::new();
    let opts = LoadOptions {
        size: Some((4, 4)),
        channels: Some(3),
        test_fraction: 0.5,
        ..Default::default()
    };
    let s = data::load(d, &opts, &mut |done, total| calls.push((done, total))).unwrap();
    assert_eq!(s.class_names(), &["cat", "dog", "emu"]);
    assert_eq!(s.train.len(), 7);
    assert_eq!(s.train.class_counts(), vec![4, 3, 0]);
    let test = s
        .test
        .as_ref()
        .expect("test folder is used, not a hold-out");
    assert_eq!(test.len(), 2);
    assert_eq!(test.labels, vec![1, 2]); // dog, emu
    assert!(s.val.is_none());
    assert_eq!(s.train.shape(), Shape::new(4, 4, 3));
    // First cat image is pure red after resizing.
    assert_eq!(s.train.labels[0], 0);
    assert!(s.train.image(0).chunks(3).all(|p| p == [1.0, 0.0, 0.0]));

    assert_eq!(s.skipped.len(), 2, "{:?}", s.skipped);
    let msg = SkippedSummary(&s.skipped).to_string();
    assert!(msg.starts_with("2 files skipped: "), "{msg}");
    assert!(
        msg.contains("broken.jpg (") && msg.contains("truncated.png ("),
        "{msg}"
    );
    assert!(!msg.contains("DS_Store"));

    let &(done, total) = calls.last().unwrap();
    assert_eq!(
        (done, total),
        (11, 11),
        "progress counts every file, skipped ones too"
    );
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));

    // Grey, and at the first image's own size when none is asked for.
    let grey = data::load(
        d,
        &LoadOptions {
            channels: Some(1),
            ..Default::default()
        },
        &mut no_progress(),
    )
    .unwrap();
    assert_eq!(grey.train.shape(), Shape::new(8, 10, 1)); // the first file, train/cat/0.png
    let red_luma = grey.train.image(0)[0];
    assert!((red_luma - 0.2126).abs() < 0.01, "{red_luma}");
}

#[test]
fn image_folder_flat_layout_holds_out_stratified_splits_by_seed() {
    let t = TempDir::new("folder-flat");
    for class in ["a", "b"] {
        for i in 0..10 {
            png(
                &t.0.join(format!("{class}/{i:02}.png")),
                3,
                3,
                [i * 20, 0, 0],
            );
        }
    }
    let opts = LoadOptions {
        test_fraction: 0.2,
        val_fraction: 0.25,
        seed: 3,
        ..Default::default()
    };
    let s = data::load(&t.0, &opts, &mut no_progress()).unwrap();
    assert_eq!(s.test.as_ref().unwrap().class_counts(), vec![2, 2]);
    assert_eq!(s.val.as_ref().unwrap().class_counts(), vec![2, 2]);
    assert_eq!(s.train.class_counts(), vec![6, 6]);
    let again = data::load(&t.0, &opts, &mut no_progress()).unwrap();
    assert_eq!(
        again.test.unwrap().images,
        s.test.unwrap().images,
        "same seed, same split"
    );
    let other = data::load(&t.0, &LoadOptions { seed: 4, ..opts }, &mut no_progress()).unwrap();
    assert_ne!(other.train.images, s.train.images);
}

#[test]
fn image_folder_errors_are_clear() {
    let t = TempDir::new("folder-errors");
    let err = data::load(&t.0, &LoadOptions::default(), &mut no_progress()).unwrap_err();
    assert!(matches!(err, DataError::NoClasses { .. }), "{err}");
    write(&t.0.join("a/x.png"), b"junk");
    write(&t.0.join("b/y.jpg"), b"junk");
    let err = data::load(
        &t.0,
        &LoadOptions {
            size: Some((4, 4)),
            ..Default::default()
        },
        &mut no_progress(),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, DataError::NoImages { .. }) && text.contains("2 files skipped"),
        "{text}"
    );
    let missing = data::load(
        &t.0.join("nope"),
        &LoadOptions::default(),
        &mut no_progress(),
    )
    .unwrap_err();
    assert!(matches!(missing, DataError::Io { .. }), "{missing}");
}

#[test]
fn idx_raw_and_gzipped_and_damaged() {
    let t = TempDir::new("idx");
    let d = &t.0;
    // 3 images of 2×2, labels 0 1 9.
    let pixels: Vec<u8> = (0..12).map(|v| v * 20).collect();
    write(
        &d.join("train-images-idx3-ubyte"),
        &idx_bytes(&[3, 2, 2], &pixels),
    );
    write(
        &d.join("train-labels-idx1-ubyte"),
        &idx_bytes(&[3], &[0, 1, 9]),
    );
    write(
        &d.join("t10k-images-idx3-ubyte.gz"),
        &gz(&idx_bytes(&[1, 2, 2], &[255, 0, 0, 255])),
    );
    write(
        &d.join("t10k-labels-idx1-ubyte.gz"),
        &gz(&idx_bytes(&[1], &[4])),
    );
    assert_eq!(data::detect_format(d).unwrap(), Format::Idx);
    let s = data::load(d, &LoadOptions::default(), &mut no_progress()).unwrap();
    assert_eq!(s.train.shape(), Shape::new(2, 2, 1));
    assert_eq!(s.train.labels, vec![0, 1, 9]);
    assert_eq!(s.train.num_classes(), 10);
    assert_eq!(
        s.train.image(1),
        &[80.0 / 255.0, 100.0 / 255.0, 120.0 / 255.0, 140.0 / 255.0]
    );
    let test = s.test.unwrap();
    assert_eq!(
        (test.labels.as_slice(), test.image(0)),
        (&[4u32][..], &[1.0, 0.0, 0.0, 1.0][..])
    );

    // Resized and made RGB for a design with a 4×4×3 input.
    let rgb = data::load(
        d,
        &LoadOptions {
            size: Some((4, 4)),
            channels: Some(3),
            ..Default::default()
        },
        &mut no_progress(),
    )
    .unwrap();
    assert_eq!(rgb.train.shape(), Shape::new(4, 4, 3));

    // A single images file finds its labels file.
    let one = data::load(
        &d.join("train-images-idx3-ubyte"),
        &LoadOptions {
            test_fraction: 0.0,
            ..Default::default()
        },
        &mut no_progress(),
    )
    .unwrap();
    assert_eq!(one.train.len(), 3);

    // Damage: truncated, wrong magic, count mismatch, broken gzip.
    let imgs = d.join("train-images-idx3-ubyte");
    let labs = d.join("train-labels-idx1-ubyte");
    write(&imgs, &idx_bytes(&[3, 2, 2], &pixels[..7]));
    let e = data::idx::load_idx(&imgs, &labs).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::Truncated {
                expected: 28,
                actual: 23,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("truncated"), "{e}");
    write(&imgs, b"\x89PNG\r\n\x1a\n0000000000000000");
    let e = data::idx::load_idx(&imgs, &labs).unwrap_err();
    assert!(
        matches!(e, DataError::BadMagic { format: "IDX", .. }),
        "{e}"
    );
    assert!(e.to_string().contains("not an IDX file"), "{e}");
    write(&imgs, &idx_bytes(&[2, 2, 2], &pixels[..8]));
    let e = data::idx::load_idx(&imgs, &labs).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::CountMismatch {
                n_images: 2,
                n_labels: 3,
                ..
            }
        ),
        "{e}"
    );
    let g = gz(&idx_bytes(&[3], &[0, 1, 9]));
    write(&labs, &g[..g.len() - 6]);
    let e = data::idx::load_idx(&d.join("t10k-images-idx3-ubyte.gz"), &labs).unwrap_err();
    assert!(matches!(e, DataError::Corrupt { .. }), "{e}");
}

fn cifar_record(label: u8, rgb: [u8; 3]) -> Vec<u8> {
    let mut r = vec![label];
    for v in rgb {
        r.extend(std::iter::repeat_n(v, 1024));
    }
    r
}

#[test]
fn cifar10_batches_and_damaged_files() {
    let t = TempDir::new("cifar");
    let d = t.0.join("cifar-10-batches-bin");
    let train: Vec<u8> = [cifar_record(3, [10, 20, 30]), cifar_record(9, [0, 0, 255])].concat();
    write(&d.join("data_batch_1.bin"), &train);
    write(
        &d.join("data_batch_2.bin"),
        &cifar_record(0, [255, 255, 255]),
    );
    write(&d.join("test_batch.bin"), &cifar_record(5, [1, 2, 3]));
    assert_eq!(data::detect_format(&t.0).unwrap(), Format::Cifar10);
    let s = data::load(&t.0, &LoadOptions::default(), &mut no_progress()).unwrap();
    assert_eq!(s.train.shape(), Shape::new(32, 32, 3));
    assert_eq!(s.train.labels, vec![3, 9, 0]);
    assert_eq!(s.class_names()[3], "cat");
    assert!(
        s.train
            .image(0)
            .chunks(3)
            .all(|p| p == [10.0 / 255.0, 20.0 / 255.0, 30.0 / 255.0])
    );
    assert_eq!(s.test.unwrap().labels, vec![5]);

    write(
        &d.join("data_batch_2.bin"),
        &cifar_record(0, [1, 1, 1])[..3000],
    );
    let e = data::load(&t.0, &LoadOptions::default(), &mut no_progress()).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::Truncated {
                expected: 3073,
                actual: 3000,
                ..
            }
        ),
        "{e}"
    );
    write(&d.join("data_batch_2.bin"), &cifar_record(42, [1, 1, 1]));
    let e = data::load(&t.0, &LoadOptions::default(), &mut no_progress()).unwrap_err();
    assert!(e.to_string().contains("label 42"), "{e}");
}

#[test]
fn embedded_hand_digits() {
    let dir = data::default_dataset_dir();
    assert!(dir.join("LICENSE").is_file() && dir.join("NOTICE").is_file());
    let start = Instant::now();
    let mut last = (0, 0);
    let opts = LoadOptions {
        size: Some((64, 64)),
        channels: Some(3),
        ..Default::default()
    };
    let s = data::load(&dir, &opts, &mut |d, t| last = (d, t)).unwrap();
    println!("hand-digits loaded in {:.2?}", start.elapsed());
    assert_eq!(last, (2062, 2062));
    assert!(s.skipped.is_empty(), "{}", SkippedSummary(&s.skipped));
    assert_eq!(
        s.class_names(),
        (0..10).map(|d| d.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(s.train.len(), 1649);
    assert_eq!(s.test.as_ref().map(|t| t.len()), Some(413));
    assert_eq!(s.train.shape(), Shape::new(64, 64, 3));
    assert!(s.train.class_counts().iter().all(|&n| n > 100));

    let stats = s.train.channel_stats();
    assert!(
        stats.mean.iter().all(|m| (0.2..0.9).contains(m)),
        "{stats:?}"
    );
    assert!(
        stats.std.iter().all(|v| (0.05..0.5).contains(v)),
        "{stats:?}"
    );

    // Augmented, prefetched training batches carry the same labels in the
    // same order as plain ones: augmentation never touches labels.
    let train = Arc::new(s.train);
    let aug = Augmenter::new(AugmentConfig::parse("all").unwrap(), &train).unwrap();
    let plain = BatchConfig::train(32, 1, None, Some(stats.clone()));
    let augmented = BatchConfig {
        augment: Some(aug),
        ..plain.clone()
    };
    let mut b = Batcher::new(&train, plain).unwrap();
    let mut x = vec![0.0; b.images_buffer_len()];
    let mut y = vec![0; 32];
    let mut changed = 0;
    for batch in Prefetcher::spawn(Arc::clone(&train), augmented, 0..1, 3).unwrap() {
        let k = b.next_into(&mut x, &mut y).unwrap();
        assert_eq!(batch.labels(), &y[..k]);
        if batch.images() != &x[..k * train.image_len()] {
            changed += 1;
        }
    }
    assert_eq!(changed, 52, "every batch was augmented");
    assert!(b.next_into(&mut x, &mut y).is_none());
}

#[test]
fn signs_from_shared_if_present() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/signs");
    if !dir.is_dir() {
        println!("skipped: {} is absent", dir.display());
        return;
    }
    let start = Instant::now();
    let opts = LoadOptions {
        size: Some((64, 64)),
        channels: Some(3),
        ..Default::default()
    };
    let s = data::load(&dir, &opts, &mut no_progress()).unwrap();
    println!("signs loaded in {:.2?}", start.elapsed());
    assert_eq!(s.class_names(), &["0", "1", "2", "3", "4", "5"]);
    assert_eq!(s.train.len(), 1080);
    assert_eq!(s.train.class_counts(), vec![180; 6]);
    assert_eq!(s.test.as_ref().unwrap().class_counts(), vec![20; 6]);
    assert!(s.skipped.is_empty());
}
