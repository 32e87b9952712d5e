//! The reference's label tables, byte for byte in its conventions: `NF`/`unk` for an empty
//! window, `UNK` for an unknown location, `0` for no other flares, and Python-list
//! strings (`['C6.6', 'C4.8']`, `[21.0, 'UNK']`) otherwise.

use super::{Fold, LabelRow};
use crate::fsio;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

pub const FULL_HEADER: &str = "label,target,goes_class,fl_lon,fl_lat,rest_fl,rest_lon,rest_lat";
/// The reference's name for the 0/1 target column of the simplified tables.
pub const SIMPLE_HEADER: &str = "label,goes_class";
pub const SIMPLE_DIR: &str = "simplified_data_labels";

/// A float as Python's `repr` writes it: `32.0`, `-39.14127219935199`, `1e-05`.
pub fn py_float(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "nan".into()
        } else if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        // Rust writes `1e-5`, Python `1e-05`.
        let s = format!("{v:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = e.strip_prefix('-').map_or(("+", e), |d| ("-", d));
        return format!("{m}e{sign}{digits:0>2}");
    }
    if v.fract() == 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// A flare coordinate: the number, or `UNK` when the catalogue does not know it.
fn coord(v: Option<f64>) -> String {
    v.map_or_else(|| "UNK".to_string(), py_float)
}

fn py_coord(v: Option<f64>) -> String {
    v.map_or_else(|| "'UNK'".to_string(), py_float)
}

fn py_list(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(", "))
}

/// CSV quoting as Python's `csv` module does by default (only where needed).
fn field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// One row of the full table, without the line end.
pub fn full_line(row: &LabelRow) -> String {
    let target = u8::from(row.target);
    let Some((top, rest)) = row.flares.split_first() else {
        return format!("{},{target},NF,unk,unk,0,0,0", field(&row.name));
    };
    let (rest_fl, rest_lon, rest_lat) = if rest.is_empty() {
        ("0".to_string(), "0".to_string(), "0".to_string())
    } else {
        (
            py_list(rest.iter().map(|f| format!("'{}'", f.class))),
            py_list(rest.iter().map(|f| py_coord(f.lon))),
            py_list(rest.iter().map(|f| py_coord(f.lat))),
        )
    };
    format!(
        "{},{target},{},{},{},{},{},{}",
        field(&row.name),
        field(top.class.as_str()),
        coord(top.lon),
        coord(top.lat),
        field(&rest_fl),
        field(&rest_lon),
        field(&rest_lat)
    )
}

/// The hidden folder that holds the current set of tables; the names the reference uses
/// (`labels.csv`, `Fold1_train.csv`, ..., `simplified_data_labels/`) are links into it.
pub const TABLES_DIR: &str = ".label_tables";

/// The top-level names of one set of tables, in the reference's layout.
pub fn table_names() -> Vec<String> {
    let mut names = vec!["labels.csv".to_string()];
    for fold in Fold::ALL {
        for part in ["train", "val"] {
            names.push(format!("Fold{}_{part}.csv", fold.number()));
        }
    }
    names
}

/// Writes `labels.csv`, `Fold{k}_{train,val}.csv` and the simplified tables into `out`.
///
/// The tables are one result: they are written into a temporary folder that replaces
/// `out/.label_tables` in one rename, and the reference's names in `out` are links into
/// it. A reader, a concurrent run or a run that fails partway thus never leaves tables of
/// two runs side by side. Other files in `out` are left alone.
pub fn write_tables(out: &Path, rows: &[LabelRow]) -> Result<()> {
    let staged = fsio::AtomicDir::create(&out.join(TABLES_DIR))?;
    write_set(staged.path(), rows)
        .with_context(|| format!("cannot write the label tables in {}", out.display()))?;
    staged.commit()?;
    for name in table_names().iter().map(String::as_str).chain([SIMPLE_DIR]) {
        fsio::symlink_atomic(&Path::new(TABLES_DIR).join(name), &out.join(name))?;
    }
    Ok(())
}

/// Writes one complete set of tables into the empty folder `dir`.
fn write_set(dir: &Path, rows: &[LabelRow]) -> Result<()> {
    let simple_dir = dir.join(SIMPLE_DIR);
    std::fs::create_dir(&simple_dir)
        .with_context(|| format!("cannot create {}", simple_dir.display()))?;
    let full: Vec<String> = rows.iter().map(full_line).collect();
    let simple: Vec<String> = rows
        .iter()
        .map(|r| format!("{},{}", field(&r.name), u8::from(r.target)))
        .collect();
    let table = |path: &Path, header: &str, lines: &[String], keep: &dyn Fn(&LabelRow) -> bool| {
        fsio::write_atomic_with(path, |w| {
            writeln!(w, "{header}")?;
            for (row, line) in rows.iter().zip(lines) {
                if keep(row) {
                    writeln!(w, "{line}")?;
                }
            }
            Ok(())
        })
    };
    table(&dir.join("labels.csv"), FULL_HEADER, &full, &|_| true)?;
    for fold in Fold::ALL {
        for (part, val) in [("train", false), ("val", true)] {
            let keep = move |r: &LabelRow| (r.fold() == fold) == val;
            let name = format!("Fold{}_{part}.csv", fold.number());
            table(&dir.join(&name), FULL_HEADER, &full, &keep)?;
            table(&simple_dir.join(&name), SIMPLE_HEADER, &simple, &keep)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_python_writes_them() {
        assert_eq!(py_float(32.0), "32.0");
        assert_eq!(py_float(-90.0), "-90.0");
        assert_eq!(py_float(-0.0), "-0.0");
        assert_eq!(py_float(7.997591078337072), "7.997591078337072");
        assert_eq!(py_float(-54.3906314899), "-54.3906314899");
        assert_eq!(py_float(7.128212491499999), "7.128212491499999");
        assert_eq!(py_float(1e-5), "1e-05");
        assert_eq!(py_float(2.5e16), "2.5e+16");
        assert_eq!(py_float(0.0001), "0.0001");
    }

    #[test]
    fn quoting() {
        assert_eq!(field("a"), "a");
        assert_eq!(field("[1.0, 2.0]"), "\"[1.0, 2.0]\"");
        assert_eq!(field("a\"b,"), "\"a\"\"b,\"");
    }
}
