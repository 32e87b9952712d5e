//! The training data pipeline: fold tables, class balancing on the real fold 1 counts,
//! loader determinism and caches on a generated image directory, device-style tensor
//! augmentation against Pillow's, and errors for missing or corrupt images.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use flarecast::data::{
    self, tensor_augment, Augment, Batch, CacheMode, Item, Loader, LoaderConfig, Sample,
};
use flarecast::preprocess::{self, augment};
use tch::{Device, Kind, Tensor};

/// The smallest side the networks take (the loader serves nothing smaller).
const SIDE: u32 = flarecast::im_size::ImSize::MIN;

/// Writes `n` 128x128 grey PNGs with distinct patterns under `dir/YYYY/...` and returns
/// their samples (every third one a flare).
fn generated_dir(dir: &Path, n: usize) -> Vec<Sample> {
    (0..n)
        .map(|i| {
            let label = format!("2011/01/{:02}/img_{i:03}.png", 1 + i % 3);
            let path = dir.join(&label);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let img = image::GrayImage::from_fn(128, 128, |x, y| {
                image::Luma([((x * (i as u32 + 3) + y * y / 7 + i as u32 * 11) % 256) as u8])
            });
            img.save(&path).unwrap();
            Sample {
                label,
                target: (i % 3 == 0) as i64,
            }
        })
        .collect()
}

fn config(dir: &Path) -> LoaderConfig {
    LoaderConfig {
        im_size: flarecast::im_size::ImSize::new(SIDE.into()).unwrap(),
        batch_size: 7,
        workers: 2,
        ..LoaderConfig::new(dir)
    }
}

fn collect(loader: &Loader, items: &[Item], epoch: u64) -> Vec<Batch> {
    loader
        .batches(items, epoch)
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

fn same_batches(a: &[Batch], b: &[Batch]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.names == y.names
                && x.items == y.items
                && x.images
                    .to_device(Device::Cpu)
                    .equal(&y.images.to_device(Device::Cpu))
                && x.targets
                    .to_device(Device::Cpu)
                    .equal(&y.targets.to_device(Device::Cpu))
        })
}

#[test]
fn fold1_balances_to_twice_nf() {
    let labels = common::realdata().join("original_labels");
    let train = data::read_fold_split(&labels, 1, data::Split::Train).unwrap();
    let (nf, fl) = data::class_counts(&train);
    let targets: Vec<i64> = train.iter().map(|s| s.target).collect();
    let b = data::balance(&targets, 4).unwrap();
    println!(
        "fold 1 train: NF {nf}, FL {fl}, {} copies each, {} top-ups, {} items",
        b.copies_per_fl,
        b.top_up,
        b.items.len()
    );
    assert_eq!(train.len(), 48_861);
    assert_eq!((b.nf, b.fl), (nf, fl));
    assert_eq!(b.copies_per_fl, (nf / fl).min(6));
    assert_eq!(b.top_up, nf - b.copies_per_fl * fl);
    assert_eq!(b.items.len(), 2 * nf);
    assert_eq!(b.fl_items(), nf);
}

#[test]
fn loader_serves_every_item_once_with_the_right_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let samples = generated_dir(dir.path(), 30);
    let cfg = LoaderConfig {
        shuffle: false,
        ..config(dir.path())
    };
    let loader = Loader::new(cfg, samples.clone()).unwrap();
    let plan = data::balance(&loader.targets(), 4).unwrap();
    // 20 NF, 10 FL: 2 copies each (original, hflip), no top-up.
    assert_eq!(
        (plan.copies_per_fl, plan.top_up, plan.items.len()),
        (2, 0, 40)
    );
    let batches = collect(&loader, &plan.items, 0);
    assert_eq!(batches.len(), 6); // 40 items in batches of 7
    assert_eq!(batches[5].names.len(), 5);
    let mut served = 0;
    for batch in &batches {
        assert_eq!(batch.images.size()[1..], [1, SIDE as i64, SIDE as i64]);
        assert_eq!(batch.images.kind(), Kind::Float);
        for (row, item) in batch.items.iter().enumerate() {
            let sample = &samples[item.index];
            assert_eq!(batch.names[row], sample.label);
            assert_eq!(batch.targets.int64_value(&[row as i64]), sample.target);
            let img = resized(&dir.path().join(&sample.label));
            let want = match item.augment {
                Augment::Original => img,
                Augment::HFlip => augment::hflip(&img),
                other => panic!("unexpected {other:?}"),
            };
            assert!(batch
                .images
                .get(row as i64)
                .equal(&preprocess::to_tensor(&want)));
            assert_eq!(item, &plan.items[served]);
            served += 1;
        }
    }
    assert_eq!(served, 40);
}

#[test]
fn batches_depend_on_the_seed_not_on_the_workers_or_cache() {
    let dir = tempfile::tempdir().unwrap();
    let samples = generated_dir(dir.path(), 24);
    // 16 NF, 8 FL: 2 copies each: original and hflip; make rotations appear by hand.
    let mut items = data::balance(&samples.iter().map(|s| s.target).collect::<Vec<_>>(), 4)
        .unwrap()
        .items;
    for (i, it) in items.iter_mut().enumerate() {
        it.augment = [
            Augment::Original,
            Augment::HFlip,
            Augment::VFlip,
            Augment::RandomRotation,
        ][i % 4];
    }
    let run_on = |workers: usize, seed: u64, cache: CacheMode, device: Device| {
        let cfg = LoaderConfig {
            workers,
            seed,
            cache,
            device,
            ..config(dir.path())
        };
        let loader = Loader::new(cfg, samples.clone()).unwrap();
        (collect(&loader, &items, 0), collect(&loader, &items, 1))
    };
    let run = |workers, seed, cache| run_on(workers, seed, cache, Device::Cpu);
    let (base0, base1) = run(1, 4, CacheMode::None);
    for (workers, cache) in [
        (0, CacheMode::None),
        (2, CacheMode::None),
        (2, CacheMode::Memory),
        (2, CacheMode::Device),
    ] {
        let (e0, e1) = run(workers, 4, cache);
        assert!(
            same_batches(&base0, &e0),
            "epoch 0, {workers} workers, {cache:?}"
        );
        assert!(
            same_batches(&base1, &e1),
            "epoch 1, {workers} workers, {cache:?}"
        );
    }
    if tch::Cuda::is_available() {
        let (e0, e1) = run_on(0, 4, CacheMode::Device, Device::Cuda(0));
        assert_eq!(e0[0].images.device(), Device::Cuda(0));
        assert!(
            same_batches(&base0, &e0) && same_batches(&base1, &e1),
            "CUDA device cache"
        );
    }
    // Epochs differ in order; another seed gives another order.
    assert_ne!(base0[0].names, base1[0].names);
    let (other, _) = run(2, 5, CacheMode::None);
    assert_ne!(
        base0.iter().map(|b| b.names.clone()).collect::<Vec<_>>(),
        other.iter().map(|b| b.names.clone()).collect::<Vec<_>>()
    );
    // Rotated rows are Pillow's rotation by the item's seeded angle.
    let mut rotated = 0;
    for batch in &base0 {
        for (row, item) in batch.items.iter().enumerate() {
            if item.augment != Augment::RandomRotation {
                continue;
            }
            let pos = items.iter().position(|it| it == item).unwrap();
            let angle = data::rotation_angle(4, 0, pos);
            assert!((-5.0..5.0).contains(&angle));
            let img = resized(&dir.path().join(&samples[item.index].label));
            let want = preprocess::to_tensor(&augment::rotate_nearest(&img, angle));
            assert!(batch.images.get(row as i64).equal(&want));
            rotated += 1;
        }
    }
    assert_eq!(rotated, items.len() / 4);
}

fn golden_u8(name: &str) -> Tensor {
    let all = Tensor::read_safetensors(common::golden().join("preprocess.safetensors")).unwrap();
    let t = all.into_iter().find(|(n, _)| n == name).unwrap().1;
    (t * 255.0).round().to_kind(Kind::Uint8).unsqueeze(0)
}

fn to_gray(t: &Tensor) -> image::GrayImage {
    let (h, w) = (t.size()[2] as u32, t.size()[3] as u32);
    image::GrayImage::from_raw(w, h, Vec::<u8>::try_from(t.flatten(0, -1)).unwrap()).unwrap()
}

#[test]
fn tensor_augmentations_match_pillow_exactly() {
    let base = golden_u8("resize256");
    // The reference's +3 degree rotation, flips, and Pillow's own 8-bit path.
    let rotated = tensor_augment::rotate_nearest(&base, &[3.0]).unwrap();
    assert!(rotated.equal(&golden_u8("rotate_plus3deg_nearest")));
    assert!(tensor_augment::hflip(&base).equal(&golden_u8("hflip")));
    assert!(tensor_augment::vflip(&base).equal(&golden_u8("vflip")));
    let img = to_gray(&base);
    let angles = [
        -5.0, -4.99, -1.234, 0.0, 0.7, 4.999, 90.0, 180.0, -90.0, 33.3,
    ];
    let batch = base.repeat([angles.len() as i64, 1, 1, 1]);
    let out = tensor_augment::rotate_nearest(&batch, &angles).unwrap();
    for (i, &a) in angles.iter().enumerate() {
        let want = augment::rotate_nearest(&img, a);
        let got = to_gray(&out.get(i as i64).unsqueeze(0));
        assert_eq!(got.as_raw(), want.as_raw(), "angle {a}");
    }
}

#[test]
fn missing_and_corrupt_images_are_named_or_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut samples = generated_dir(dir.path(), 9);
    std::fs::write(dir.path().join("broken.jpg"), b"<html>404</html>").unwrap();
    samples.push(Sample {
        label: "gone/missing.jpg".into(),
        target: 1,
    });
    samples.push(Sample {
        label: "broken.jpg".into(),
        target: 0,
    });
    let err = Loader::new(config(dir.path()), samples.clone())
        .err()
        .unwrap();
    let text = format!("{err:#}");
    assert!(
        text.contains("2 of 11 labelled images cannot be used"),
        "{text}"
    );
    assert!(text.contains("gone/missing.jpg"), "{text}");
    let cfg = LoaderConfig {
        skip_bad_images: true,
        ..config(dir.path())
    };
    let loader = Loader::new(cfg, samples).unwrap();
    assert_eq!(loader.samples().len(), 9);
    let skipped: BTreeMap<_, _> = loader
        .skipped()
        .iter()
        .map(|b| (b.label.as_str(), b.error.as_str()))
        .collect();
    assert_eq!(skipped.len(), 2);
    assert!(skipped["broken.jpg"].contains("not a JPEG, PNG or JPEG 2000"));
    assert!(skipped["gone/missing.jpg"].contains("cannot read"));
}

#[test]
fn loader_benchmark_serves_whole_balanced_epochs_until_enough_images() {
    let dir = tempfile::tempdir().unwrap();
    let samples = generated_dir(dir.path(), 12);
    let got = flarecast::bench::loader::measure_loader(&config(dir.path()), samples, 5).unwrap();
    // 5 batches of 7 asked for. 12 samples, 4 FL: each FL shown twice balances the 8 NF,
    // a 16-item epoch served as 7 + 7 + 2. Two whole epochs (32) fall short of 35, so
    // the first batch of the third ends it: 39 images in 7 batches from 3 epochs.
    assert_eq!((got.images, got.batches, got.epochs), (39, 7, 3), "{got:?}");
}

/// A training image as the loader reads it: decoded and resized to `SIDE`.
fn resized(path: &std::path::Path) -> image::GrayImage {
    preprocess::resize_like_pil(&preprocess::training_image(path).unwrap(), SIDE)
}
