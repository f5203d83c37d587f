//! What each item of a set says (product, lot, expiry, serial, defect): the ground truth, decided before
//! anything is drawn.

use serde::Serialize;

use crate::date::Date;
use crate::rng::Rng;

/// The products of every set (uppercase ASCII, digits and spaces). No `0` next to a letter or an `O`:
/// RapidOCR read `GREEN TEA 50 BAGS` as `5O` and `ALMOND COOKIES` as `C0OKIES` in 8 of 200 items.
pub const PRODUCTS: [&str; 8] = [
    "ALMOND BISCUITS 250 G",
    "OAT CRACKERS 200 G",
    "DARK CHOCOLATE 100 G",
    "HONEY WAFERS 150 G",
    "RYE BREAD 500 G",
    "GREEN TEA 25 BAGS",
    "COFFEE BEANS 1 KG",
    "RICE SNACKS 120 G",
];

/// Letters of a lot: A-Z without I and O (never confused with 1 and 0).
pub const LOT_LETTERS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";

/// Expired items: expiry 1..=400 days before the reference date.
pub const EXPIRED_DAYS: (i64, i64) = (1, 400);
/// Valid items: expiry 30..=900 days after the reference date.
pub const VALID_DAYS: (i64, i64) = (30, 900);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Defect {
    MissingLot,
    WrongLot,
    Expired,
    Smudged,
}

impl Defect {
    pub const ALL: [Defect; 4] = [
        Defect::MissingLot,
        Defect::WrongLot,
        Defect::Expired,
        Defect::Smudged,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Defect::MissingLot => "missing_lot",
            Defect::WrongLot => "wrong_lot",
            Defect::Expired => "expired",
            Defect::Smudged => "smudged",
        }
    }
}

/// Which field a smudge covers (its value; the `SN:`/`LOT:` prefix stays readable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmudgedField {
    Serial,
    Lot,
}

/// One line of `truth.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Truth {
    pub id: String,
    /// Path relative to the set folder, e.g. `items/item-0001.jpg`.
    pub file: String,
    pub product: String,
    /// The printed lot (`None` when the LOT line is missing; the hidden correct lot when smudged).
    pub lot: Option<String>,
    pub expiry: String,
    pub serial: String,
    pub defect: Option<Defect>,
    pub verdict: &'static str,
    /// For `smudged` items: which field is covered.
    pub smudged_field: Option<SmudgedField>,
}

/// The planned content of a set: lots per product and every item's truth.
#[derive(Debug, Clone)]
pub struct SetPlan {
    /// `(product, lot)` in `PRODUCTS` order.
    pub lots: Vec<(String, String)>,
    pub items: Vec<Truth>,
}

pub fn random_lot(rng: &mut Rng) -> String {
    let mut s = String::with_capacity(6);
    for _ in 0..2 {
        s.push(*rng.pick(LOT_LETTERS) as char);
    }
    for _ in 0..4 {
        s.push(char::from(b'0' + rng.int(0, 9) as u8));
    }
    s
}

/// A well-formed lot that differs from `lot`: one digit or one letter changed.
pub fn near_miss(lot: &str, rng: &mut Rng) -> String {
    let mut b = lot.as_bytes().to_vec();
    let pos = rng.index(b.len());
    let old = b[pos];
    loop {
        let new = if pos < 2 {
            *rng.pick(LOT_LETTERS)
        } else {
            b'0' + rng.int(0, 9) as u8
        };
        if new != old {
            b[pos] = new;
            break;
        }
    }
    String::from_utf8(b).expect("ASCII")
}

/// Plans a set: stream 0 of the seed decides the lots and which items are defective (exactly
/// `round(count * defect_rate)` of them, the four defects in turn); stream `1 + index` decides
/// item `index`'s own values.
pub fn plan_set(
    seed: u64,
    count: usize,
    defect_rate: f64,
    reference: Date,
    extension: &str,
) -> SetPlan {
    let mut rng = Rng::new(seed, 0);
    let mut lots: Vec<(String, String)> = Vec::new();
    for p in PRODUCTS {
        let lot = loop {
            let l = random_lot(&mut rng);
            if lots.iter().all(|(_, other)| *other != l) {
                break l;
            }
        };
        lots.push((p.to_string(), lot));
    }
    let defective = ((count as f64) * defect_rate.clamp(0.0, 1.0)).round() as usize;
    let mut order: Vec<usize> = (0..count).collect();
    rng.shuffle(&mut order);
    let mut defects: Vec<Option<Defect>> = vec![None; count];
    let first = rng.index(4);
    for (k, &i) in order.iter().take(defective).enumerate() {
        defects[i] = Some(Defect::ALL[(first + k) % 4]);
    }

    let mut serials = std::collections::HashSet::new();
    let items = (0..count)
        .map(|i| {
            let mut r = Rng::new(seed, 1 + i as u64);
            let p = r.index(lots.len());
            let (product, good_lot) = lots[p].clone();
            let defect = defects[i];
            let lot = match defect {
                Some(Defect::MissingLot) => None,
                Some(Defect::WrongLot) => Some(if r.chance(0.5) {
                    // Another product's lot.
                    let mut q = r.index(lots.len() - 1);
                    if q >= p {
                        q += 1;
                    }
                    lots[q].1.clone()
                } else {
                    near_miss(&good_lot, &mut r)
                }),
                _ => Some(good_lot),
            };
            let days = match defect {
                Some(Defect::Expired) => -r.int(EXPIRED_DAYS.0, EXPIRED_DAYS.1),
                _ => r.int(VALID_DAYS.0, VALID_DAYS.1),
            };
            let serial = loop {
                let s = format!("{}", r.int(10_000_000, 99_999_999));
                if serials.insert(s.clone()) {
                    break s;
                }
            };
            let smudged_field = match defect {
                Some(Defect::Smudged) => Some(if r.chance(0.5) {
                    SmudgedField::Serial
                } else {
                    SmudgedField::Lot
                }),
                _ => None,
            };
            let id = format!("item-{:04}", i + 1);
            Truth {
                file: format!("items/{id}.{extension}"),
                id,
                product,
                lot,
                expiry: reference.plus_days(days).to_string(),
                serial,
                defect,
                verdict: if defect.is_some() { "FAIL" } else { "PASS" },
                smudged_field,
            }
        })
        .collect();
    SetPlan { lots, items }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> Date {
        Date::parse("2026-12-01").unwrap()
    }

    fn well_formed_lot(l: &str) -> bool {
        let b = l.as_bytes();
        b.len() == 6
            && b[..2].iter().all(|c| LOT_LETTERS.contains(c))
            && b[2..].iter().all(u8::is_ascii_digit)
    }

    #[test]
    fn defects_match_the_rate_and_each_kind_appears() {
        let plan = plan_set(7, 200, 0.25, reference(), "jpg");
        assert_eq!(plan.items.len(), 200);
        let failed = plan.items.iter().filter(|t| t.defect.is_some()).count();
        assert_eq!(failed, 50);
        for d in Defect::ALL {
            let n = plan.items.iter().filter(|t| t.defect == Some(d)).count();
            assert!((12..=13).contains(&n), "{} appears {n} times", d.name());
        }
        for t in &plan.items {
            assert_eq!(t.verdict == "FAIL", t.defect.is_some());
            assert_eq!(t.smudged_field.is_some(), t.defect == Some(Defect::Smudged));
        }
        let none = plan_set(7, 40, 0.0, reference(), "jpg");
        assert!(none.items.iter().all(|t| t.defect.is_none()));
    }

    #[test]
    fn lots_dates_and_serials_follow_the_defects() {
        let plan = plan_set(11, 300, 0.3, reference(), "png");
        assert_eq!(plan.lots.len(), PRODUCTS.len());
        let mut distinct: Vec<&String> = plan.lots.iter().map(|(_, l)| l).collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), PRODUCTS.len(), "lots are distinct");
        let r = reference();
        for t in &plan.items {
            let good = &plan
                .lots
                .iter()
                .find(|(p, _)| *p == t.product)
                .expect("product has a lot")
                .1;
            assert!(well_formed_lot(good));
            match t.defect {
                Some(Defect::MissingLot) => assert_eq!(t.lot, None),
                Some(Defect::WrongLot) => {
                    let l = t.lot.as_ref().unwrap();
                    assert!(well_formed_lot(l) && l != good, "{t:?}");
                }
                _ => assert_eq!(t.lot.as_ref(), Some(good)),
            }
            let exp = Date::parse(&t.expiry).unwrap().days() - r.days();
            if t.defect == Some(Defect::Expired) {
                assert!((-400..=-1).contains(&exp), "{t:?}");
            } else {
                assert!((30..=900).contains(&exp), "{t:?}");
            }
            assert!(t.serial.len() == 8 && t.serial.bytes().all(|c| c.is_ascii_digit()));
            assert!(t.file.ends_with(".png") && t.file.starts_with("items/item-"));
        }
        let mut serials: Vec<&String> = plan.items.iter().map(|t| &t.serial).collect();
        serials.sort();
        serials.dedup();
        assert_eq!(serials.len(), plan.items.len(), "serials are unique");
    }

    #[test]
    fn near_miss_is_well_formed_and_different() {
        let mut r = Rng::new(3, 0);
        for _ in 0..500 {
            let l = random_lot(&mut r);
            let m = near_miss(&l, &mut r);
            assert!(well_formed_lot(&m) && m != l);
            assert_eq!(l.bytes().zip(m.bytes()).filter(|(a, b)| a != b).count(), 1);
        }
    }

    #[test]
    fn seeds_give_different_sets() {
        let a = plan_set(1, 50, 0.25, reference(), "jpg");
        let b = plan_set(2, 50, 0.25, reference(), "jpg");
        let c = plan_set(1, 50, 0.25, reference(), "jpg");
        assert_ne!(a.items, b.items);
        assert_eq!(a.items, c.items);
    }
}
