//! `vigil-labelgen`: seeded industrial-inspection label images with their ground truth.
//!
//! A set is `items/<id>.<jpg|png>` (one label per image), `truth.jsonl` (one [`plan::Truth`] per line),
//! `lots.csv` (`product,lot`: the expected lot of each product) and `set.json` (how the set was made).
//! The same options give the same bytes on every machine: every random number comes from ChaCha8
//! (`rand_chacha` 0.9) through the conversions in [`rng`], the glyphs from `ab_glyph` 0.2 and the
//! encoders from `image` 0.25.

pub mod date;
pub mod plan;
pub mod render;
pub mod rng;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::{ExtendedColorType, ImageEncoder, RgbImage};
use serde::Serialize;

use crate::date::Date;
use crate::plan::{Defect, SetPlan, Truth};
use crate::render::Fonts;
use crate::rng::Rng;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jpg,
    Png,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpg => "jpg",
            Format::Png => "png",
        }
    }
}

/// What a set is made from.
#[derive(Debug, Clone)]
pub struct SetOptions {
    pub count: usize,
    pub seed: u64,
    pub reference_date: Date,
    pub defect_rate: f64,
    pub width: u32,
    pub height: u32,
    pub format: Format,
}

/// The stream of item `index`'s drawing (the plan uses streams `0..=count`).
fn render_stream(index: usize) -> u64 {
    (1u64 << 32) + index as u64
}

/// Draws item `index` of a plan.
pub fn render(plan: &SetPlan, index: usize, opts: &SetOptions, fonts: &Fonts) -> render::Rendered {
    let mut rng = Rng::new(opts.seed, render_stream(index));
    render::render_item(&plan.items[index], fonts, opts.width, opts.height, &mut rng)
}

/// Encodes an image as the set's format.
pub fn encode(img: &RgbImage, format: Format, jpeg_quality: u8) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    match format {
        Format::Jpg => image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, jpeg_quality)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                ExtendedColorType::Rgb8,
            )
            .context("encoding JPEG")?,
        Format::Png => image::codecs::png::PngEncoder::new(&mut buf)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                ExtendedColorType::Rgb8,
            )
            .context("encoding PNG")?,
    }
    Ok(buf)
}

#[derive(Serialize)]
struct SetInfo<'a> {
    generator: &'static str,
    version: &'static str,
    seed: u64,
    count: usize,
    reference_date: String,
    defect_rate: f64,
    width: u32,
    height: u32,
    format: Format,
    font_regular: &'a Path,
    font_bold: &'a Path,
    rng: &'static str,
    defects: serde_json::Map<String, serde_json::Value>,
    smudge: &'static str,
    variation: serde_json::Value,
}

/// Counts per defect name (and `none`).
pub fn defect_counts(items: &[Truth]) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert(
        "none".into(),
        items.iter().filter(|t| t.defect.is_none()).count().into(),
    );
    for d in Defect::ALL {
        m.insert(
            d.name().into(),
            items.iter().filter(|t| t.defect == Some(d)).count().into(),
        );
    }
    m
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes a whole set into `out`; returns the plan.
pub fn write_set(out: &Path, opts: &SetOptions, fonts: &Fonts) -> Result<SetPlan> {
    let items_dir: PathBuf = out.join("items");
    std::fs::create_dir_all(&items_dir)
        .with_context(|| format!("cannot create {}", items_dir.display()))?;
    let plan = plan::plan_set(
        opts.seed,
        opts.count,
        opts.defect_rate,
        opts.reference_date,
        opts.format.extension(),
    );
    for (i, truth) in plan.items.iter().enumerate() {
        let r = render(&plan, i, opts, fonts);
        write_file(
            &out.join(&truth.file),
            &encode(&r.image, opts.format, r.jpeg_quality)?,
        )?;
    }
    let mut truth = String::new();
    for t in &plan.items {
        truth.push_str(&serde_json::to_string(t)?);
        truth.push('\n');
    }
    write_file(&out.join("truth.jsonl"), truth.as_bytes())?;
    let mut lots = String::from("product,lot\n");
    for (p, l) in &plan.lots {
        lots.push_str(&format!("{p},{l}\n"));
    }
    write_file(&out.join("lots.csv"), lots.as_bytes())?;
    let info = SetInfo {
        generator: "vigil-labelgen",
        version: VERSION,
        seed: opts.seed,
        count: opts.count,
        reference_date: opts.reference_date.to_string(),
        defect_rate: opts.defect_rate,
        width: opts.width,
        height: opts.height,
        format: opts.format,
        font_regular: &fonts.regular_path,
        font_bold: &fonts.bold_path,
        rng: "ChaCha8 (rand_chacha 0.9), seed_from_u64(seed); stream 0: lots and defects, 1+i: item i's values, 2^32+i: item i's drawing",
        defects: defect_counts(&plan.items),
        smudge: "an opaque dark blot over the value of the SN line or the LOT line (truth: smudged_field); the 'SN:'/'LOT:' prefix stays readable",
        variation: serde_json::json!({
            "rotation_deg": [-render::ROTATION_DEG, render::ROTATION_DEG],
            "blur_sigma_px": [render::BLUR_SIGMA.0, render::BLUR_SIGMA.1],
            "noise_sigma": [render::NOISE_SIGMA.0, render::NOISE_SIGMA.1],
            "jpeg_quality": [render::JPEG_QUALITY.0, render::JPEG_QUALITY.1],
            "expired_days_before": [plan::EXPIRED_DAYS.0, plan::EXPIRED_DAYS.1],
            "valid_days_after": [plan::VALID_DAYS.0, plan::VALID_DAYS.1],
        }),
    };
    let mut json = serde_json::to_string_pretty(&info)?;
    json.push('\n');
    write_file(&out.join("set.json"), json.as_bytes())?;
    Ok(plan)
}
