//! `vigil-labelgen --out DIR [--count 200] [--seed 7] ...`: writes a seeded set of label images with
//! their ground truth (see `samples/labelgen/README.md`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;
use vigil_labelgen::date::Date;
use vigil_labelgen::render::{BOLD_FILE, DEFAULT_FONT_DIR, Fonts, REGULAR_FILE};
use vigil_labelgen::{Format, SetOptions, defect_counts, write_set};

#[derive(Parser)]
#[command(
    name = "vigil-labelgen",
    version,
    about = "Seeded inspection label images with ground truth"
)]
struct Cli {
    /// Output folder (items/, truth.jsonl, lots.csv, set.json)
    #[arg(long)]
    out: PathBuf,
    /// Number of items (images)
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// Seed: the same seed and options give the same bytes
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Reference date for "not expired" (YYYY-MM-DD)
    #[arg(long, default_value = "2026-12-01")]
    reference_date: String,
    /// Share of defective items (exactly round(count * rate), the four defects in turn)
    #[arg(long, default_value_t = 0.25)]
    defect_rate: f64,
    #[arg(long, default_value_t = 640)]
    width: u32,
    #[arg(long, default_value_t = 400)]
    height: u32,
    #[arg(long, value_enum, default_value = "jpg")]
    format: Format,
    /// Folder with DejaVuSans.ttf and DejaVuSerif-Bold.ttf (Debian fonts-dejavu-core)
    #[arg(long, default_value = DEFAULT_FONT_DIR)]
    font: PathBuf,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let reference_date = Date::parse(&cli.reference_date).context("--reference-date")?;
    if !(0.0..=1.0).contains(&cli.defect_rate) {
        bail!("--defect-rate {} is not between 0 and 1", cli.defect_rate);
    }
    if cli.width < 320 || cli.height < 200 {
        bail!(
            "--width {} --height {}: the smallest label image is 320x200",
            cli.width,
            cli.height
        );
    }
    if cli.count == 0 || cli.count > 9999 {
        bail!("--count {} is not between 1 and 9999", cli.count);
    }
    let fonts = if cli.font.is_dir() {
        Fonts::dejavu(&cli.font)
    } else {
        // A single font file: used for both faces.
        Fonts::load(&cli.font, &cli.font)
    }
    .with_context(|| {
        format!(
            "--font {} (expects {REGULAR_FILE} and {BOLD_FILE} in a folder, or one font file)",
            cli.font.display()
        )
    })?;
    let opts = SetOptions {
        count: cli.count,
        seed: cli.seed,
        reference_date,
        defect_rate: cli.defect_rate,
        width: cli.width,
        height: cli.height,
        format: cli.format,
    };
    let plan = write_set(&cli.out, &opts, &fonts)
        .with_context(|| format!("writing the set into {}", cli.out.display()))?;
    println!(
        "vigil-labelgen: {} items (seed {}, reference date {}) in {}: {}",
        plan.items.len(),
        opts.seed,
        reference_date,
        cli.out.display(),
        serde_json::Value::Object(defect_counts(&plan.items))
    );
    Ok(())
}
