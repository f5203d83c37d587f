use super::*;
use crate::objects::ItemInfo;
use std::path::PathBuf;

const RULES: &str = "\
reference_date: 2026-12-01
regions:
  - {name: label, rect: [0.0, 0.0, 1.0, 1.0]}
  - {name: top, rect: [0.0, 0.0, 1.0, 0.25]}
lookups:
  lots: {file: lots.csv, key: product, value: lot}
fields:
  - {name: product, region: top, pattern: '^[A-Z][A-Z0-9 ]+$', pick: largest}
  - {name: lot, pattern: 'LOT[: ]*([A-Z0-9]{6})\\b', shape: AA9999}
  - {name: expiry, pattern: 'EXP[: ]*(\\d{4}-\\d{2}-\\d{2})'}
  - {name: serial, pattern: 'SN[: ]*(\\d{8})\\b'}
rules:
  - {name: lot-present, field: lot, present: true}
  - {name: lot-matches-product, field: lot, equals_lookup: {lookup: lots, key_field: product}}
  - {name: not-expired, field: expiry, date: {format: '%Y-%m-%d', not_before: reference_date}}
  - {name: serial-readable, field: serial, matches: '^\\d{8}$'}
  - {name: text-confident, min_confidence: 0.5, region: label}
  - {name: enough-lines, count: {label: text, min: 3}}
";

/// A temporary folder with `rules.yaml` (`rules`) and `lots.csv`.
fn setup(name: &str, rules: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("vigil-inspect-{name}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("lots.csv"),
        "product,lot\nALMOND COOKIES 250 G,KX4821\n\"OAT BARS, 6 PACK\",PB1200\n",
    )
    .unwrap();
    std::fs::write(dir.join("rules.yaml"), rules).unwrap();
    dir
}

fn inspector() -> Inspector {
    let dir = setup("main", RULES);
    let rules = Rules::load(&dir.join("rules.yaml")).unwrap();
    Inspector::new(rules).with_today(NaiveDate::from_ymd_opt(2030, 1, 1).unwrap())
}

fn text(t: &str, x: f32, y: f32, h: f32, conf: f32) -> Object {
    let mut o = Object::new(0, "text", conf, BBox::new(x, y, 10.0 * t.len() as f32, h));
    o.text = Some(t.into());
    o.model = "ppocr-rec".into();
    o
}

/// A 400x300 label: product name (large) on top, then lot, expiry, serial lines.
fn label(product: &str, lot: Option<&str>, expiry: &str, serial: &str) -> FrameObjects {
    let mut f = FrameObjects::new(400, 300);
    f.objects.push(text(product, 20.0, 20.0, 40.0, 0.95));
    if let Some(lot) = lot {
        f.objects
            .push(text(&format!("LOT: {lot}"), 20.0, 100.0, 20.0, 0.93));
    }
    f.objects
        .push(text(&format!("EXP: {expiry}"), 20.0, 150.0, 20.0, 0.92));
    f.objects
        .push(text(&format!("SN: {serial}"), 20.0, 200.0, 20.0, 0.91));
    f.renumber();
    f
}

fn rules_of(i: &Inspection) -> Vec<&str> {
    i.failures.iter().map(|f| f.rule.as_str()).collect()
}

#[test]
fn good_label_passes_with_its_fields() {
    let i = inspector().inspect(&label(
        "ALMOND COOKIES 250 G",
        Some("KX4821"),
        "2027-03-01",
        "10452310",
    ));
    assert_eq!(i.verdict, Verdict::Pass, "{:?}", i.failures);
    assert!(i.failures.is_empty());
    let fields: Vec<(&str, &str)> = i
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.value.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("product", "ALMOND COOKIES 250 G"),
            ("lot", "KX4821"),
            ("expiry", "2027-03-01"),
            ("serial", "10452310")
        ]
    );
    let lot = &i.fields[1];
    assert_eq!(lot.bbox, Some(BBox::new(20.0, 100.0, 110.0, 20.0)));
    assert_eq!(lot.confidence, 0.93);
}

#[test]
fn missing_lot_is_one_finding() {
    let i = inspector().inspect(&label(
        "ALMOND COOKIES 250 G",
        None,
        "2027-03-01",
        "10452310",
    ));
    assert_eq!(i.verdict, Verdict::Fail);
    assert_eq!(rules_of(&i), ["lot-present"]);
    assert_eq!(i.failures[0].reason, "lot not found");
    assert!(i.fields.iter().all(|f| f.name != "lot"));
}

#[test]
fn wrong_lot_fails_with_evidence() {
    let i = inspector().inspect(&label(
        "ALMOND COOKIES 250 G",
        Some("KX4822"),
        "2027-03-01",
        "10452310",
    ));
    assert_eq!(rules_of(&i), ["lot-matches-product"]);
    let f = &i.failures[0];
    assert_eq!(
        f.reason,
        "lot \"KX4822\" is not \"KX4821\", the lot of product \"ALMOND COOKIES 250 G\""
    );
    assert_eq!(f.text.as_deref(), Some("KX4822"));
    assert_eq!(f.bbox, Some(BBox::new(20.0, 100.0, 110.0, 20.0)));
    assert_eq!(f.confidence, Some(0.93));
}

#[test]
fn look_alikes_are_corrected_by_position_but_a_wrong_lot_never_passes() {
    let insp = inspector();
    // O read for 0 where a digit must be, 8 for B where a letter must be: corrected.
    let i = insp.inspect(&label(
        "OAT BARS, 6 PACK",
        Some("P812OO"),
        "2027-03-01",
        "10452310",
    ));
    // The product line has a comma, so it does not match the product pattern: fails on the key.
    assert_eq!(rules_of(&i), ["lot-matches-product"], "{:?}", i.failures);
    assert_eq!(
        i.failures[0].reason,
        "cannot check lot against 'lots': product not found"
    );
    assert_eq!(
        i.fields.iter().find(|f| f.name == "lot").unwrap().value,
        "PB1200"
    );
    // B read for 8 and I for 1 in digit positions: corrected to the right lot, passes.
    let i = insp.inspect(&label(
        "ALMOND COOKIES 250 G",
        Some("KX4B2I"),
        "2027-03-01",
        "10452310",
    ));
    assert_eq!(i.verdict, Verdict::Pass, "{:?}", i.failures);
    assert_eq!(
        i.fields.iter().find(|f| f.name == "lot").unwrap().value,
        "KX4821"
    );
    // A look-alike of another lot is corrected to that other lot, which still fails.
    let i = insp.inspect(&label(
        "ALMOND COOKIES 250 G",
        Some("KX4B22"),
        "2027-03-01",
        "10452310",
    ));
    assert_eq!(rules_of(&i), ["lot-matches-product"]);
}

#[test]
fn shape_fitting() {
    assert_eq!(fit_shape("KX4821", "AA9999").as_deref(), Some("KX4821"));
    assert_eq!(fit_shape("kx482l", "AA9999").as_deref(), Some("KX4821"));
    assert_eq!(fit_shape("K84B2O", "AA9999").as_deref(), Some("KB4820"));
    assert_eq!(fit_shape("KX482", "AA9999"), None);
    assert_eq!(fit_shape("KX48#1", "AA9999"), None);
    assert_eq!(
        fit_shape("2026-12-O1", "9999-99-99").as_deref(),
        Some("2026-12-01")
    );
    assert_eq!(fit_shape("2026/12/01", "9999-99-99"), None);
    // A well-formed value is never changed, so a well-formed wrong lot stays wrong.
    for lot in ["KX4822", "AB1234", "ZZ9999"] {
        assert_eq!(fit_shape(lot, "AA9999").as_deref(), Some(lot));
    }
}

#[test]
fn unreadable_lot_is_reported_once_with_what_was_read() {
    let i = inspector().inspect(&label(
        "ALMOND COOKIES 250 G",
        Some("KX4#21"),
        "2027-03-01",
        "10452310",
    ));
    // The pattern does not even match "KX4#21": not found.
    assert_eq!(rules_of(&i), ["lot-present"]);
    let i = inspector().inspect(&label(
        "ALMOND COOKIES 250 G",
        Some("KXA8Z1"),
        "2027-03-01",
        "10452310",
    ));
    assert_eq!(rules_of(&i), ["lot-present"]);
    assert_eq!(
        i.failures[0].reason,
        "lot unreadable: read \"KXA8Z1\", which does not fit its shape"
    );
    assert_eq!(i.failures[0].text.as_deref(), Some("LOT: KXA8Z1"));
    assert!(i.failures[0].bbox.is_some());
}

#[test]
fn expired_fails_against_the_reference_date() {
    let insp = inspector();
    let i = insp.inspect(&label(
        "ALMOND COOKIES 250 G",
        Some("KX4821"),
        "2026-11-30",
        "10452310",
    ));
    assert_eq!(rules_of(&i), ["not-expired"]);
    assert_eq!(
        i.failures[0].reason,
        "expiry 2026-11-30 is before the reference date 2026-12-01"
    );
    // The reference date itself is not expired.
    let i = insp.inspect(&label(
        "ALMOND COOKIES 250 G",
        Some("KX4821"),
        "2026-12-01",
        "10452310",
    ));
    assert_eq!(i.verdict, Verdict::Pass);
    // Not a date.
    let i = insp.inspect(&label(
        "ALMOND COOKIES 250 G",
        Some("KX4821"),
        "2026-13-01",
        "10452310",
    ));
    assert_eq!(
        i.failures[0].reason,
        "expiry \"2026-13-01\" is not a date in the format %Y-%m-%d"
    );
}

#[test]
fn grace_days_and_today() {
    let dir = setup(
        "grace",
        concat!(
            "fields: [{name: expiry, pattern: 'EXP[: ]*(\\S+)'}]\n",
            "rules:\n",
            "  - {name: fresh, field: expiry, date: {format: '%d.%m.%Y', not_before: today, grace_days: -10}}\n",
            "  - {name: late, field: expiry, date: {format: '%d.%m.%Y', not_before: 2026-01-10, grace_days: 5}}\n",
        ),
    );
    let insp = Inspector::new(Rules::load(&dir.join("rules.yaml")).unwrap())
        .with_today(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap());
    let item = |e: &str| {
        let mut f = FrameObjects::new(100, 100);
        f.objects
            .push(text(&format!("EXP: {e}"), 0.0, 0.0, 10.0, 0.9));
        f
    };
    // 10 days of shelf life needed from 2026-01-01.
    assert_eq!(insp.inspect(&item("11.01.2026")).verdict, Verdict::Pass);
    let i = insp.inspect(&item("10.01.2026"));
    assert_eq!(rules_of(&i), ["fresh"]);
    assert_eq!(
        i.failures[0].reason,
        "expiry 2026-01-10 is before today 2026-01-01 (grace -10 days)"
    );
    // 5 days of grace before 2026-01-10: the 5th passes, the 4th does not.
    assert_eq!(rules_of(&insp.inspect(&item("05.01.2026"))), ["fresh"]);
    let i = insp.inspect(&item("04.01.2026"));
    assert_eq!(rules_of(&i), ["fresh", "late"]);
    assert_eq!(
        i.failures[1].reason,
        "expiry 2026-01-04 is before the limit 2026-01-10 (grace 5 days)"
    );
    let i = insp.inspect(&item("2026-01-20"));
    assert_eq!(
        i.failures[0].reason,
        "expiry \"2026-01-20\" is not a date in the format %d.%m.%Y"
    );
    // Without reference_date, `reference_date` is today.
    assert_eq!(
        insp.reference_date(),
        NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
    );
}

#[test]
fn smudged_serial_fails_serial_readable() {
    let i = inspector().inspect(&label(
        "ALMOND COOKIES 250 G",
        Some("KX4821"),
        "2027-03-01",
        "104~~310",
    ));
    assert_eq!(rules_of(&i), ["serial-readable"]);
    assert_eq!(i.failures[0].reason, "serial not found");
}

#[test]
fn item_error_skips_the_rules() {
    let mut f = FrameObjects::new(1, 1);
    f.item = Some(ItemInfo {
        id: "bad.png".into(),
        path: None,
        error: Some("truncated PNG".into()),
    });
    let i = inspector().inspect(&f);
    assert_eq!(i.verdict, Verdict::Fail);
    assert_eq!(rules_of(&i), [ITEM_ERROR_RULE]);
    assert_eq!(
        i.failures[0].reason,
        "item could not be analysed: truncated PNG"
    );
}

#[test]
fn empty_item_fails_every_kind_once() {
    let i = inspector().inspect(&FrameObjects::new(400, 300));
    assert_eq!(
        rules_of(&i),
        [
            "lot-present",
            "not-expired",
            "serial-readable",
            "enough-lines"
        ]
    );
    assert_eq!(
        i.failures[3].reason,
        "0 'text' objects, expected at least 3"
    );
}

#[test]
fn low_confidence_text_is_evidence() {
    let mut f = label(
        "ALMOND COOKIES 250 G",
        Some("KX4821"),
        "2027-03-01",
        "10452310",
    );
    f.objects[2].confidence = 0.3;
    f.objects[3].confidence = 0.4;
    let i = inspector().inspect(&f);
    assert_eq!(rules_of(&i), ["text-confident"]);
    assert_eq!(
        i.failures[0].reason,
        "2 text line(s) read with confidence below 0.50, lowest 0.30"
    );
    assert_eq!(i.failures[0].text.as_deref(), Some("EXP: 2027-03-01"));
    assert_eq!(i.failures[0].region.as_deref(), Some("label"));
}

#[test]
fn split_boxes_join_into_lines_and_regions_filter() {
    let mut f = FrameObjects::new(400, 300);
    // "LOT:" and "KX4821" read as two boxes on one line, slightly offset vertically.
    f.objects.push(text("KX4821", 80.0, 102.0, 20.0, 0.8));
    f.objects.push(text("LOT:", 20.0, 100.0, 20.0, 0.9));
    f.objects
        .push(text("EXP: 2027-01-01", 20.0, 150.0, 20.0, 0.9));
    let lines = text_lines(&f.objects);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].text, "LOT: KX4821");
    assert_eq!(lines[0].bbox, BBox::new(20.0, 100.0, 120.0, 22.0));
    assert_eq!(lines[0].confidence, 0.8);
    // The product field only looks at the top quarter: a matching line lower down is ignored.
    f.objects
        .push(text("ALMOND COOKIES 250 G", 20.0, 250.0, 40.0, 0.9));
    let insp = inspector();
    let product = insp
        .rules()
        .fields
        .iter()
        .find(|x| x.name == "product")
        .unwrap();
    assert_eq!(insp.extract(product, &f), FieldResult::NotFound);
}

#[test]
fn pick_chooses_among_matches() {
    let insp = inspector();
    let mut f = label(
        "ALMOND COOKIES 250 G",
        Some("KX4821"),
        "2027-03-01",
        "10452310",
    );
    // A smaller all-caps line above the product name, still in the top region.
    f.objects.push(text("BRAND", 20.0, 2.0, 12.0, 0.99));
    let product = insp
        .rules()
        .fields
        .iter()
        .find(|x| x.name == "product")
        .unwrap();
    let FieldResult::Found(v) = insp.extract(product, &f) else {
        panic!()
    };
    assert_eq!(v.value, "ALMOND COOKIES 250 G", "largest");
}

fn load_err(rules: &str) -> String {
    let dir = setup("bad", rules);
    Rules::load(&dir.join("rules.yaml"))
        .unwrap_err()
        .to_string()
}

#[test]
fn config_errors_name_file_key_and_line() {
    let e = load_err(&RULES.replace("'SN[: ]*(\\d{8})\\b'", "'SN[: ]*(\\d{8}'"));
    assert!(
        e.contains("rules.yaml: line 11: fields[3].pattern: regex parse error"),
        "{e}"
    );
    let e = load_err(&RULES.replace("field: expiry, date", "field: expirey, date"));
    assert!(
        e.contains("line 15: rules[2].field: unknown field 'expirey' (fields: expiry, lot, product, serial)"),
        "{e}"
    );
    let e = load_err(&RULES.replace("name: serial-readable", "name: lot-present"));
    assert!(
        e.contains("line 16: rules[3].name: rule 'lot-present' is defined twice"),
        "{e}"
    );
    let e = load_err(&RULES.replace("value: lot}", "value: lots}"));
    assert!(
        e.contains("line 6: lookups.lots.file: ") && e.contains("no column 'lots'"),
        "{e}"
    );
    let e = load_err(&RULES.replace("file: lots.csv", "file: nope.csv"));
    assert!(
        e.contains("lookups.lots.file: cannot read ") && e.contains("nope.csv"),
        "{e}"
    );
    let e = load_err(&RULES.replace("%Y-%m-%d", "%Y-%m"));
    assert!(
        e.contains("line 15: rules[2].date.format: date format '%Y-%m' does not give a whole date"),
        "{e}"
    );
    let e = load_err(&RULES.replace("reference_date: 2026-12-01", "reference_date: 2026-12-41"));
    assert!(
        e.contains("line 1: reference_date: '2026-12-41' is not a YYYY-MM-DD date"),
        "{e}"
    );
    let e = load_err(&RULES.replace("present: true", "present: true, matches: x"));
    assert!(
        e.contains("line 13: rules[0]: a rule needs exactly one check")
            && e.contains("found present, matches"),
        "{e}"
    );
    let e = load_err(&RULES.replace("region: top", "region: bottom"));
    assert!(
        e.contains("line 8: fields[0].region: unknown region 'bottom' (regions: label, top)"),
        "{e}"
    );
    let e = load_err(&RULES.replace("{label: text, min: 3}", "{label: text, min: 3, exactly: 2}"));
    assert!(e.contains("rules[5].count: 'exactly' excludes"), "{e}");
    let e = load_err(&RULES.replace("min_confidence: 0.5", "min_confidence: 5"));
    assert!(
        e.contains("rules[4].min_confidence: 5 is not within 0..=1"),
        "{e}"
    );
    let e = load_err(&RULES.replace("rect: [0.0, 0.0, 1.0, 0.25]", "rect: [0.5, 0.0, 0.8, 0.25]"));
    assert!(
        e.contains("regions[1].rect: a region in fractions must lie within the item"),
        "{e}"
    );
    let e = load_err(&RULES.replace("pick: largest", "pick: biggest"));
    assert!(
        e.starts_with(&format!("{}", std::env::temp_dir().display()))
            && e.contains("line 8 column"),
        "{e}"
    );
    assert!(e.contains("unknown variant `biggest`"), "{e}");
    let e = load_err("rules: []\n");
    assert!(e.contains("rules: no rules"), "{e}");
}

#[test]
fn csv_lookups() {
    let dir = setup("csv", "rules: []");
    let t = config::load_csv(&dir.join("lots.csv"), "product", "lot").unwrap();
    assert_eq!(t["ALMOND COOKIES 250 G"], "KX4821");
    assert_eq!(t["OAT BARS, 6 PACK"], "PB1200");
    std::fs::write(dir.join("dup.csv"), "product,lot\nA,KX1111\nA,KX2222\n").unwrap();
    let e = config::load_csv(&dir.join("dup.csv"), "product", "lot").unwrap_err();
    assert!(
        e.ends_with("line 3: product 'A' appears twice with different lots ('KX1111', 'KX2222')"),
        "{e}"
    );
    std::fs::write(dir.join("short.csv"), "product,lot\nA\n").unwrap();
    let e = config::load_csv(&dir.join("short.csv"), "product", "lot").unwrap_err();
    assert!(e.ends_with("line 2: 1 columns, the header has 2"), "{e}");
}

#[test]
fn locate_key_finds_block_and_flow_items() {
    assert_eq!(config::locate_key(RULES, "rules[3].matches"), Some(16));
    assert_eq!(config::locate_key(RULES, "lookups.lots.file"), Some(6));
    assert_eq!(config::locate_key(RULES, "fields"), Some(7));
    assert_eq!(config::locate_key(RULES, "rules[9]"), Some(12));
    let block = "rules:\n  - name: a\n    present: true\n  - name: b\n    matches: x\n";
    assert_eq!(config::locate_key(block, "rules[1].matches"), Some(5));
}

/// The example of `docs/inspection.md` is valid and judges the sample label.
#[test]
fn documented_example_is_valid() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/inspection.md"
    ))
    .unwrap();
    let yaml = doc
        .split("```yaml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a yaml block in docs/inspection.md");
    let dir = setup("doc", yaml);
    let insp = Inspector::new(Rules::load(&dir.join("rules.yaml")).unwrap());
    assert_eq!(insp.rules().rules.len(), 6);
    let i = insp.inspect(&label(
        "ALMOND COOKIES 250 G",
        Some("KX4821"),
        "2026-12-01",
        "10452310",
    ));
    assert_eq!(i.verdict, Verdict::Pass, "{:?}", i.failures);
    let i = insp.inspect(&label(
        "ALMOND COOKIES 250 G",
        None,
        "2026-11-30",
        "10452310",
    ));
    assert_eq!(rules_of(&i), ["lot-present", "not-expired"]);
}

#[test]
fn lookup_ignoring_spaces_finds_the_product_but_a_wrong_lot_still_fails() {
    let rules = RULES.replace(
        "lots: {file: lots.csv, key: product, value: lot}",
        "lots: {file: lots.csv, key: product, value: lot, ignore_spaces: true}",
    );
    let dir = setup("nospace", &rules);
    let ins = Inspector::new(Rules::load(&dir.join("rules.yaml")).unwrap())
        .with_today(NaiveDate::from_ymd_opt(2030, 1, 1).unwrap());
    // OCR dropped the spaces of the large print.
    let ok = ins.inspect(&label(
        "ALMONDCOOKIES 250G",
        Some("KX4821"),
        "2027-03-01",
        "10452310",
    ));
    assert_eq!(ok.verdict, Verdict::Pass, "{:?}", ok.failures);
    let bad = ins.inspect(&label(
        "ALMONDCOOKIES250G",
        Some("KX4822"),
        "2027-03-01",
        "10452310",
    ));
    assert_eq!(rules_of(&bad), vec!["lot-matches-product"]);
    assert!(
        bad.failures[0].reason.contains("is not \"KX4821\""),
        "{}",
        bad.failures[0].reason
    );
    // Without the option the spaces matter.
    let strict = inspector().inspect(&label(
        "ALMONDCOOKIES 250G",
        Some("KX4821"),
        "2027-03-01",
        "10452310",
    ));
    assert_eq!(rules_of(&strict), vec!["lot-matches-product"]);
    // Keys that collide without spaces are an error naming the key.
    std::fs::write(
        dir.join("lots.csv"),
        "product,lot\nAB C,KX1111\nA BC,KX2222\n",
    )
    .unwrap();
    let e = Rules::load(&dir.join("rules.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("lookups.lots.ignore_spaces: keys"), "{e}");
    assert!(e.contains("are the same without spaces"), "{e}");
}

#[test]
fn stacked_boxes_of_a_rotated_label_stay_separate_lines() {
    // Boxes read on a rotated label (item-0006 of the seed-7 set): the tall product box overlaps
    // the LOT box below it vertically by more than half the LOT box's height, but they are stacked,
    // not side by side.
    let boxed = |t: &str, x: f32, y: f32, w: f32, h: f32| {
        let mut o = Object::new(0, "text", 0.95, BBox::new(x, y, w, h));
        o.text = Some(t.into());
        o
    };
    let objs = [
        boxed("DARKCHOCOLATE 100G", 152.0, 97.0, 426.0, 67.0),
        boxed("LOT:NG4530", 147.0, 141.0, 165.0, 38.0),
        boxed("EXP:2028-09-21", 145.0, 178.0, 207.0, 42.0),
    ];
    let lines: Vec<String> = text_lines(&objs).into_iter().map(|l| l.text).collect();
    assert_eq!(
        lines,
        ["DARKCHOCOLATE 100G", "LOT:NG4530", "EXP:2028-09-21"]
    );
}
