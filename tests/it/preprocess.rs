//! Preprocessing parity with the reference (torchvision on PIL) on the real magnetogram
//! JPG, and one-line errors for bad inputs.

use crate::common;

use std::path::Path;

use flarecast::preprocess::{self, augment};
use tch::Tensor;

fn golden(name: &str) -> Tensor {
    let path = common::golden().join("preprocess.safetensors");
    let all = Tensor::read_safetensors(&path).expect("read preprocess.safetensors");
    all.into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} missing from preprocess.safetensors"))
        .1
}

/// (max |difference| in grey levels, pixels that differ, pixels).
fn compare(ours: &image::GrayImage, expected: &Tensor) -> (i64, i64, i64) {
    let ours = preprocess::to_tensor(ours);
    assert_eq!(ours.size(), expected.size());
    let levels = (ours - expected) * 255.0;
    let diff = levels.abs().round().to_kind(tch::Kind::Int64);
    let max = diff.max().int64_value(&[]);
    let differing = diff.gt(0).sum(tch::Kind::Int64).int64_value(&[]);
    (max, differing, expected.numel() as i64)
}

fn resized() -> image::GrayImage {
    let img = preprocess::training_image(&common::magnetogram_jpg()).expect("load the real JPG");
    preprocess::resize_like_pil(&img, 256)
}

/// The model inputs of a file at `im_size`, labelled, as every command reads it.
fn load_input(path: &Path, im_size: u32) -> anyhow::Result<Vec<(String, Tensor)>> {
    let input = preprocess::Input::read(path)?;
    Ok(input
        .instances(im_size)?
        .into_iter()
        .map(|i| (i.label, i.tensor))
        .collect())
}

#[test]
fn resize_matches_torchvision_within_one_grey_level() {
    let (max, differing, n) = compare(&resized(), &golden("resize256"));
    println!("resize256: max difference {max} grey levels, {differing} of {n} pixels differ");
    assert!(max <= 1, "max difference {max} grey levels");
    // Decoding (libjpeg's islow IDCT) and resizing (Pillow's fixed-point filter) are
    // reproduced bit for bit, so the floats are ToTensor's exactly.
    assert_eq!(differing, 0, "{differing} of {n} pixels differ");
    let ours = preprocess::to_tensor(&resized());
    assert!(
        ours.equal(&golden("resize256")),
        "floats differ from ToTensor's"
    );
}

#[test]
fn flips_match_torchvision() {
    let img = resized();
    for (name, ours) in [
        ("hflip", augment::hflip(&img)),
        ("vflip", augment::vflip(&img)),
    ] {
        let (max, differing, n) = compare(&ours, &golden(name));
        println!("{name}: max difference {max} grey levels, {differing} of {n} pixels differ");
        assert!(max <= 1, "{name}: max difference {max}");
        assert_eq!(differing, 0, "{name}: {differing} of {n} pixels differ");
    }
}

#[test]
fn rotation_matches_torchvision() {
    let ours = augment::rotate_nearest(&resized(), 3.0);
    let expected = golden("rotate_plus3deg_nearest");
    let (max, differing, n) = compare(&ours, &expected);
    let levels = ((preprocess::to_tensor(&ours) - &expected) * 255.0)
        .abs()
        .round();
    let within_one = levels.le(1.0).sum(tch::Kind::Int64).int64_value(&[]);
    println!(
        "rotate +3 deg: max difference {max} grey levels, {differing} of {n} pixels differ, \
         {within_one} within one level"
    );
    assert!(
        within_one as f64 >= 0.999 * n as f64,
        "{within_one} of {n} within one level"
    );
}

#[test]
fn load_input_gives_one_tensor_per_image() {
    let inputs = load_input(&common::magnetogram_jpg(), 256).unwrap();
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs[0].1.size(), vec![1, 256, 256]);
    assert!(inputs[0].0.ends_with("HMI.m2022.08.02_10.47.53.jpg"));
    let diff = (&inputs[0].1 - golden("resize256"))
        .abs()
        .max()
        .double_value(&[]);
    assert!(diff <= 1.0 / 255.0 + 1e-6, "{diff}");
}

#[test]
fn jp2_input_goes_the_way_of_the_training_images() {
    // The JP2 becomes the 512x512 training JPG `convert` makes of it, then the model's
    // resize: what `convert` + reading its JPG gives, to the bit.
    let jp2 = common::magnetogram_jp2();
    let inputs = load_input(&jp2, 256).unwrap();
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs[0].1.size(), vec![1, 256, 256]);
    let bytes = std::fs::read(&jp2).unwrap();
    let training = preprocess::training_image_from_jp2(&bytes, "jp2").unwrap();
    assert_eq!(training.dimensions(), (512, 512));
    let want = preprocess::to_tensor(&preprocess::resize_like_pil(&training, 256));
    assert!(inputs[0].1.equal(&want));
    // The reference's own JPG of this JP2 (libjpeg's encoder) is a few grey levels away
    // at most, at few pixels.
    let (max, differing, n) = compare(
        &preprocess::resize_like_pil(&training, 256),
        &golden("resize256"),
    );
    println!(
        "JP2 via convert vs the reference resize: max {max} levels, {differing} of {n} pixels"
    );
    assert!(max <= 3, "max difference {max} grey levels");
}

fn write_npy(path: &Path, t: &Tensor) {
    t.write_npy(path).expect("write npy");
}

#[test]
fn npy_inputs_split_into_instances() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden("resize256");
    let p = dir.path().join("batch.npy");
    write_npy(&p, &Tensor::stack(&[&g, &g.flip([2])], 0));
    let inputs = load_input(&p, 256).unwrap();
    assert_eq!(inputs.len(), 2);
    assert_eq!(inputs[1].0, format!("{}[1]", p.display()));
    assert_eq!(inputs[1].1.size(), vec![1, 256, 256]);
    assert!(inputs[0].1.equal(&g));

    let p = dir.path().join("plain.npy");
    write_npy(&p, &g.squeeze_dim(0));
    let inputs = load_input(&p, 256).unwrap();
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs[0].0, p.display().to_string());
    assert!(inputs[0].1.equal(&g));
}

fn one_line_error(path: &Path, want: &str) {
    let err = load_input(path, 256).expect_err("bad input must fail");
    let text = format!("{err:#}");
    assert!(!text.contains('\n'), "not one line: {text}");
    assert!(
        text.contains(&path.display().to_string()),
        "no file name: {text}"
    );
    assert!(text.contains(want), "expected {want:?} in: {text}");
}

#[test]
fn bad_inputs_give_one_line_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    one_line_error(&empty, "empty file");

    let html = dir.path().join("page.jpg");
    std::fs::write(&html, b"<!DOCTYPE html><html><body>Not found</body></html>").unwrap();
    one_line_error(&html, "not a JPEG, PNG or JPEG 2000 image");

    let text = dir.path().join("notes.png");
    std::fs::write(&text, b"just some text\n").unwrap();
    one_line_error(&text, "not a JPEG, PNG or JPEG 2000 image");

    let truncated = dir.path().join("cut.jpg");
    let bytes = std::fs::read(common::magnetogram_jpg()).unwrap();
    std::fs::write(&truncated, &bytes[..600]).unwrap();
    one_line_error(&truncated, "corrupt");

    let wrong = dir.path().join("wrong.npy");
    write_npy(
        &wrong,
        &Tensor::zeros([2, 3, 256, 256], (tch::Kind::Float, tch::Device::Cpu)),
    );
    one_line_error(&wrong, "expected [H, W], [1, H, W] or [N, 1, H, W]");

    let small = dir.path().join("small.npy");
    write_npy(
        &small,
        &Tensor::zeros([64, 64], (tch::Kind::Float, tch::Device::Cpu)),
    );
    one_line_error(&small, "shorter side 256");

    let fake = dir.path().join("fake.npy");
    std::fs::write(&fake, b"1,2,3\n").unwrap();
    one_line_error(&fake, "not a .npy file");

    one_line_error(&dir.path().join("missing.jpg"), "cannot read");
}

/// The golden 8-bit image back from its [0, 1] tensor.
fn golden_gray(name: &str) -> image::GrayImage {
    let t = (golden(name) * 255.0).round().to_kind(tch::Kind::Uint8);
    let (h, w) = (t.size()[1] as u32, t.size()[2] as u32);
    let data = Vec::<u8>::try_from(t.flatten(0, -1)).unwrap();
    image::GrayImage::from_raw(w, h, data).unwrap()
}

#[test]
fn augmentations_are_bit_exact_on_the_reference_resize() {
    let base = golden_gray("resize256");
    let cases = [
        ("hflip", augment::hflip(&base)),
        ("vflip", augment::vflip(&base)),
        (
            "rotate_plus3deg_nearest",
            augment::rotate_nearest(&base, 3.0),
        ),
    ];
    for (name, ours) in cases {
        let (max, differing, _) = compare(&ours, &golden(name));
        println!("{name} from the reference resize: {differing} pixels differ (max {max})");
        assert_eq!(differing, 0, "{name}");
    }
}

#[test]
fn exact_jpeg_decoder_agrees_with_a_general_decoder_and_never_panics() {
    use image::codecs::jpeg::JpegEncoder;
    // Another encoder's tables and a non-multiple-of-8 size: the libjpeg-exact path
    // and the image crate's decoder may only differ by IDCT rounding (one level).
    let src = image::GrayImage::from_fn(77, 45, |x, y| {
        image::Luma([((x * x + 3 * y * y + x * y) % 251) as u8])
    });
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, 90)
        .encode_image(&src)
        .unwrap();
    let exact = preprocess::decode_gray8_bytes(&bytes).unwrap();
    let general = image::load_from_memory(&bytes).unwrap().to_luma8();
    assert_eq!(exact.dimensions(), (77, 45));
    let max = exact
        .as_raw()
        .iter()
        .zip(general.as_raw())
        .map(|(a, b)| (*a as i32 - *b as i32).abs())
        .max()
        .unwrap();
    assert!(max <= 1, "max difference {max}");

    // A colour JPEG goes through the general decoder and Pillow's luma.
    let rgb = image::RgbImage::from_fn(16, 16, |x, _| image::Rgb([255, (x * 16) as u8, 0]));
    let mut colour = Vec::new();
    JpegEncoder::new_with_quality(&mut colour, 95)
        .encode_image(&rgb)
        .unwrap();
    assert_eq!(
        preprocess::decode_gray8_bytes(&colour)
            .unwrap()
            .dimensions(),
        (16, 16)
    );

    // Damaged copies of the real file decode or fail, but never panic.
    let real = std::fs::read(common::magnetogram_jpg()).unwrap();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..300 {
        let mut damaged = real.clone();
        if i % 3 == 0 {
            damaged.truncate(2 + (next() as usize % (real.len() - 2)));
            damaged.extend_from_slice(&[0xFF, 0xD9]);
        } else {
            for _ in 0..1 + i % 4 {
                let at = next() as usize % damaged.len();
                damaged[at] = next() as u8;
            }
        }
        let _ = preprocess::decode_gray8_bytes(&damaged);
    }
}
