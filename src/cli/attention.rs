//! `flarecast attention`: attention-map overlays (or Grad-CAM for the standard CNN) for
//! magnetograms, as PNG, with the raw maps as .npy.

use anyhow::{bail, Context, Result};
use flarecast::explain;
use flarecast::model::{self as fmodel, Arch};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Weights: a PyTorch checkpoint (.pth/.pt) or flarecast .safetensors.
    #[arg(long)]
    model: PathBuf,
    /// Magnetograms (JPG/PNG/JP2).
    inputs: Vec<PathBuf>,
    /// Output directory for the PNG overlays and .npy maps.
    #[arg(long)]
    out: PathBuf,
    /// Which estimator's map: 1 (l1, 1/4 resolution), 2, 3, or all.
    #[arg(long, default_value = "all")]
    estimator: String,
    /// Side the images are resized to (default: the model's training size).
    #[arg(long)]
    im_size: Option<u32>,
    /// An instance list with a `timestamp` column of image paths (the reference's
    /// plots.csv), resolved against --images.
    #[arg(long, requires = "images")]
    csv: Option<PathBuf>,
    /// Image tree the --csv paths are relative to.
    #[arg(long)]
    images: Option<PathBuf>,
    /// Grad-CAM layer for the standard CNN: 5 (conv_block5, 16x16 at 256) or 6 (conv_block6, 2x2).
    #[arg(long, default_value_t = 5)]
    gradcam_block: usize,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    device: String,
}

fn estimators(spec: &str) -> Result<Vec<usize>> {
    match spec {
        "all" => Ok(vec![1, 2, 3]),
        "1" | "2" | "3" => Ok(vec![spec.parse()?]),
        other => bail!("--estimator must be 1, 2, 3 or all, got {other:?}"),
    }
}

/// The --csv instance list: the `timestamp` column, resolved against `images`.
fn csv_inputs(csv_path: &Path, images: &Path) -> Result<Vec<PathBuf>> {
    let mut rdr = csv::Reader::from_path(csv_path)
        .with_context(|| format!("reading {}", csv_path.display()))?;
    let headers = rdr.headers()?.clone();
    let col = headers
        .iter()
        .position(|h| h.trim_start_matches('\u{feff}') == "timestamp")
        .with_context(|| format!("{}: no `timestamp` column", csv_path.display()))?;
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: line {}", csv_path.display(), i + 2))?;
        let ts = rec.get(col).unwrap_or_default();
        let rel = flarecast::instant::Instant::from_path(ts)
            .map(|(_, tail)| tail.to_string())
            .unwrap_or(ts.to_string());
        out.push(images.join(rel));
    }
    Ok(out)
}

fn save_png(img: &image::RgbImage, path: &Path) -> Result<()> {
    let tmp = fmodel::weights::temp_path(path);
    img.save_with_format(&tmp, image::ImageFormat::Png)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

pub fn run(args: Args) -> Result<()> {
    let device = flarecast::device::parse_device(&args.device)?;
    let model = fmodel::load_model(&args.model, device)?;
    if let Some(s) = args.im_size {
        fmodel::check_im_size(s.into()).context("--im-size")?;
    }
    let im_size = args.im_size.unwrap_or(model.meta.im_size as u32);
    let ests = estimators(&args.estimator)?;
    let mut inputs = args.inputs.clone();
    if let (Some(csv), Some(images)) = (&args.csv, &args.images) {
        inputs.extend(csv_inputs(csv, images)?);
    }
    if inputs.is_empty() {
        bail!("no input images (give IMAGE paths or --csv with --images)");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let arch = model.net.arch();
    for path in &inputs {
        let gray = flarecast::preprocess::load_resized(path, im_size)?;
        let x = flarecast::preprocess::to_tensor(&gray)
            .unsqueeze(0)
            .to_device(device);
        fmodel::check_input(&x).with_context(|| path.display().to_string())?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("image")
            .to_string();
        let prob = tch::no_grad(|| model.net.forward_t(&x, false).flare_prob()).double_value(&[0]);
        let mut tiles = vec![image::DynamicImage::ImageLuma8(gray.clone()).to_rgb8()];
        let mut written = Vec::new();
        if arch == Arch::Attention {
            let maps = explain::attention_maps(&model.net, &x)?;
            for &k in &ests {
                let c = &maps[k - 1];
                let npy = args.out.join(format!("{stem}_c{k}.npy"));
                c.squeeze()
                    .to_device(tch::Device::Cpu)
                    .write_npy(&npy)
                    .with_context(|| format!("writing {}", npy.display()))?;
                let heat =
                    explain::attention_heatmap(c, explain::scale_of(k)).to_device(tch::Device::Cpu);
                let over = explain::overlay(&gray, &heat)?;
                let png = args.out.join(format!("{stem}_est{k}.png"));
                save_png(&over, &png)?;
                tiles.push(over);
                written.push(png);
            }
        } else {
            let heat =
                explain::gradcam(&model.net, &x, args.gradcam_block)?.to_device(tch::Device::Cpu);
            let npy = args.out.join(format!("{stem}_gradcam.npy"));
            heat.write_npy(&npy)
                .with_context(|| format!("writing {}", npy.display()))?;
            let over = explain::overlay(&gray, &heat)?;
            let png = args.out.join(format!("{stem}_gradcam.png"));
            save_png(&over, &png)?;
            tiles.push(over);
            written.push(png);
        }
        let panel = args.out.join(format!("{stem}_panel.png"));
        save_png(&explain::panel(&tiles), &panel)?;
        println!(
            "{}: P(FL) {prob:.4}; {} -> {}",
            path.display(),
            if arch == Arch::Attention {
                "attention"
            } else {
                "Grad-CAM"
            },
            written
                .iter()
                .chain([&panel])
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
