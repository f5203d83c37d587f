//! Whole sets written by `write_set`: reproducible bytes, seeds that differ, files that agree with
//! each other, and defects that are really drawn.

use std::path::{Path, PathBuf};

use vigil_labelgen::date::Date;
use vigil_labelgen::plan::{Defect, SmudgedField, Truth};
use vigil_labelgen::render::{DEFAULT_FONT_DIR, Fonts, render_item};
use vigil_labelgen::rng::Rng;
use vigil_labelgen::{Format, SetOptions, write_set};

fn fonts() -> Fonts {
    Fonts::dejavu(Path::new(DEFAULT_FONT_DIR))
        .expect("the DejaVu fonts (Debian fonts-dejavu-core, installed by scripts/setup.sh)")
}

fn opts(seed: u64, count: usize, format: Format) -> SetOptions {
    SetOptions {
        count,
        seed,
        reference_date: Date::parse("2026-12-01").unwrap(),
        defect_rate: 0.25,
        width: 640,
        height: 400,
        format,
    }
}

/// A fresh folder under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("vigil-labelgen-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every file of a set: relative path -> bytes, sorted.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in [dir.to_path_buf(), dir.join("items")] {
        for e in std::fs::read_dir(&sub).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                out.push((
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn same_seed_gives_identical_bytes_and_other_seeds_differ() {
    let fonts = fonts();
    let (a, b, c) = (
        TempDir::new("same-a"),
        TempDir::new("same-b"),
        TempDir::new("other"),
    );
    write_set(&a.0, &opts(7, 8, Format::Jpg), &fonts).unwrap();
    write_set(&b.0, &opts(7, 8, Format::Jpg), &fonts).unwrap();
    write_set(&c.0, &opts(8, 8, Format::Jpg), &fonts).unwrap();
    let (fa, fb, fc) = (files(&a.0), files(&b.0), files(&c.0));
    assert_eq!(fa.len(), 8 + 3, "8 images, truth.jsonl, lots.csv, set.json");
    assert!(fa == fb, "the same seed wrote different bytes");
    for ((name, bytes_a), (_, bytes_c)) in fa.iter().zip(&fc) {
        if name.starts_with("items/") {
            assert_ne!(bytes_a, bytes_c, "{name} is the same with seeds 7 and 8");
        }
    }
    // Items of one set differ from each other too.
    let images: Vec<&Vec<u8>> = fa
        .iter()
        .filter(|(n, _)| n.starts_with("items/"))
        .map(|(_, b)| b)
        .collect();
    assert!(images.windows(2).all(|w| w[0] != w[1]));
}

#[test]
fn written_files_agree_with_each_other() {
    let fonts = fonts();
    let dir = TempDir::new("agree");
    let plan = write_set(&dir.0, &opts(3, 24, Format::Png), &fonts).unwrap();
    let truth: Vec<serde_json::Value> = std::fs::read_to_string(dir.0.join("truth.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(truth.len(), 24);
    assert_eq!(truth.iter().filter(|t| t["verdict"] == "FAIL").count(), 6);
    let lots = std::fs::read_to_string(dir.0.join("lots.csv")).unwrap();
    let mut lines = lots.lines();
    assert_eq!(lines.next(), Some("product,lot"));
    let table: Vec<(String, String)> = lines
        .map(|l| {
            let (p, lot) = l.split_once(',').unwrap();
            (p.to_string(), lot.to_string())
        })
        .collect();
    assert_eq!(table, plan.lots);
    let reference = Date::parse("2026-12-01").unwrap();
    for t in &truth {
        let file = dir.0.join(t["file"].as_str().unwrap());
        let img = image::open(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!((img.width(), img.height()), (640, 400));
        let product = t["product"].as_str().unwrap();
        let good = &table
            .iter()
            .find(|(p, _)| p == product)
            .expect("every product has a lot")
            .1;
        let expiry = Date::parse(t["expiry"].as_str().unwrap()).unwrap();
        match t["defect"].as_str() {
            None => {
                assert_eq!(t["lot"].as_str(), Some(good.as_str()));
                assert!(expiry > reference);
            }
            Some("expired") => assert!(expiry < reference),
            Some("missing_lot") => assert!(t["lot"].is_null()),
            Some("wrong_lot") => assert_ne!(t["lot"].as_str(), Some(good.as_str())),
            Some("smudged") => assert!(t["smudged_field"].is_string()),
            Some(other) => panic!("unknown defect {other}"),
        }
    }
    let set: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.0.join("set.json")).unwrap()).unwrap();
    assert_eq!(set["seed"], 3);
    assert_eq!(set["count"], 24);
    assert_eq!(set["reference_date"], "2026-12-01");
    assert_eq!(set["defects"]["none"], 18);
}

fn draw(t: &Truth, fonts: &Fonts) -> image::RgbImage {
    render_item(t, fonts, 640, 400, &mut Rng::new(5, 99)).image
}

fn luma(p: &image::Rgb<u8>) -> i32 {
    p.0.iter().map(|&v| i32::from(v)).sum::<i32>() / 3
}

#[test]
fn defects_are_drawn() {
    let fonts = fonts();
    let good = Truth {
        id: "item-0001".into(),
        file: "items/item-0001.png".into(),
        product: "RYE BREAD 500 G".into(),
        lot: Some("KX4821".into()),
        expiry: "2027-05-01".into(),
        serial: "10452310".into(),
        defect: None,
        verdict: "PASS",
        smudged_field: None,
    };
    let base = draw(&good, &fonts);
    // A smudge is an opaque blot over the value: many pixels much darker than without it, and
    // nothing else changes (the smudge has its own random stream).
    for field in [SmudgedField::Serial, SmudgedField::Lot] {
        let smudged = Truth {
            defect: Some(Defect::Smudged),
            verdict: "FAIL",
            smudged_field: Some(field),
            ..good.clone()
        };
        let img = draw(&smudged, &fonts);
        let darker = img
            .pixels()
            .zip(base.pixels())
            .filter(|(a, b)| luma(a) + 80 < luma(b))
            .count();
        let lighter = img
            .pixels()
            .zip(base.pixels())
            .filter(|(a, b)| luma(a) > luma(b) + 80)
            .count();
        assert!(
            darker > 2000,
            "{field:?}: {darker} pixels darkened by the smudge"
        );
        assert!(
            lighter < darker / 10,
            "{field:?}: {lighter} pixels lighter with the smudge"
        );
    }
    // Without the LOT line its place stays empty: the text's pixels are lighter, nothing darker.
    let missing = Truth {
        lot: None,
        defect: Some(Defect::MissingLot),
        verdict: "FAIL",
        ..good.clone()
    };
    let img = draw(&missing, &fonts);
    let lighter = img
        .pixels()
        .zip(base.pixels())
        .filter(|(a, b)| luma(a) > luma(b) + 80)
        .count();
    let darker = img
        .pixels()
        .zip(base.pixels())
        .filter(|(a, b)| luma(a) + 80 < luma(b))
        .count();
    assert!(
        lighter > 300,
        "missing lot: only {lighter} pixels of text gone"
    );
    assert_eq!(darker, 0, "missing lot: {darker} pixels darker");
}
