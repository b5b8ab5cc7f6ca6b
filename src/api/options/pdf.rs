//! The `format=pdf` options: paper (a named size, or a width and height with units), margins,
//! orientation, background, scale and page ranges, read into a [`PdfSpec`]; and which image
//! options a PDF refuses.

use serde_json::{Map, Value};

use super::reader::{Access, Reader};
use crate::farm::job::PdfSpec;

/// The options only a PDF takes.
pub(super) const PDF_OPTIONS: [&str; 12] = [
    "pdf_paper",
    "pdf_width",
    "pdf_height",
    "pdf_landscape",
    "pdf_margin",
    "pdf_margin_top",
    "pdf_margin_right",
    "pdf_margin_bottom",
    "pdf_margin_left",
    "pdf_print_background",
    "pdf_scale",
    "pdf_page_ranges",
];

/// The image options a PDF has no use for: a 400 naming each one given.
pub(super) const NOT_WITH_PDF: [&str; 10] = [
    "quality",
    "selector",
    "clip_x",
    "clip_y",
    "clip_width",
    "clip_height",
    "full_page",
    "device_scale_factor",
    "omit_background",
    "scroll_to",
];

/// The four margins' options, in CSS order.
const SIDES: [&str; 4] = [
    "pdf_margin_top",
    "pdf_margin_right",
    "pdf_margin_bottom",
    "pdf_margin_left",
];

/// Named paper sizes, width × height in millimetres (portrait).
const PAPERS: [(&str, f64, f64); 11] = [
    ("letter", 215.9, 279.4),
    ("legal", 215.9, 355.6),
    ("tabloid", 279.4, 431.8),
    ("ledger", 431.8, 279.4),
    ("a0", 841.0, 1189.0),
    ("a1", 594.0, 841.0),
    ("a2", 420.0, 594.0),
    ("a3", 297.0, 420.0),
    ("a4", 210.0, 297.0),
    ("a5", 148.0, 210.0),
    ("a6", 105.0, 148.0),
];

/// Smallest and largest paper side, in inches (the largest is above A0's long side).
const MIN_PAPER_IN: f64 = 0.5;
const MAX_PAPER_IN: f64 = 50.0;

/// Longest `pdf_page_ranges`, in characters, and most ranges in it.
const MAX_RANGES_CHARS: usize = 256;
const MAX_RANGES: usize = 64;
/// Highest page number a range may name.
const MAX_PAGE_NUMBER: u32 = 100_000;

/// Whether a present, non-null option named `field` is in `map`.
pub(super) fn given(map: &Map<String, Value>, field: &str) -> bool {
    map.get(field).is_some_and(|v| !v.is_null())
}

/// Reads the PDF options (call only for `format=pdf`).
pub(super) fn read(r: &mut Reader, max_pages: u32) -> PdfSpec {
    let paper = r.string("pdf_paper").and_then(|name| {
        let wanted = name.trim().to_ascii_lowercase();
        let found = PAPERS.iter().find(|(n, _, _)| *n == wanted);
        if found.is_none() {
            let names: Vec<&str> = PAPERS.iter().map(|(n, _, _)| *n).collect();
            r.error("pdf_paper", &format!("must be one of {}", names.join(", ")));
        }
        found.map(|&(_, w, h)| (w / 25.4, h / 25.4))
    });
    let width = length(r, "pdf_width", MIN_PAPER_IN, MAX_PAPER_IN);
    let height = length(r, "pdf_height", MIN_PAPER_IN, MAX_PAPER_IN);
    let letter = (8.5, 11.0);
    let (paper_width, paper_height) = match (paper, width, height) {
        (_, None, None) => paper.unwrap_or(letter),
        (Some(_), _, _) => {
            let field = if width.is_some() {
                "pdf_width"
            } else {
                "pdf_height"
            };
            r.error(field, "cannot be combined with pdf_paper");
            letter
        }
        (None, Some(w), Some(h)) => (w, h),
        // A size needs both sides (one that was given but wrong is already reported).
        (None, Some(_), None) => {
            if !r.has_error("pdf_height") {
                r.error("pdf_height", "is required with pdf_width");
            }
            letter
        }
        (None, None, Some(_)) => {
            if !r.has_error("pdf_width") {
                r.error("pdf_width", "is required with pdf_height");
            }
            letter
        }
    };
    let landscape = r.bool("pdf_landscape").unwrap_or(false);
    let margins = read_margins(r, paper_width, paper_height, landscape);
    let print_background = r.bool("pdf_print_background").unwrap_or(true);
    let scale = r.float("pdf_scale").unwrap_or(1.0);
    let page_ranges = r
        .string("pdf_page_ranges")
        .and_then(|raw| r.check("pdf_page_ranges", page_ranges(&raw, max_pages)))
        .unwrap_or_default();
    PdfSpec {
        paper_width,
        paper_height,
        landscape,
        margins,
        print_background,
        scale,
        page_ranges,
        max_pages,
    }
}

/// `pdf_margin` (all four sides) or any of `pdf_margin_top/right/bottom/left` (the others 0),
/// leaving some of the page to print on.
fn read_margins(
    r: &mut Reader,
    paper_width: f64,
    paper_height: f64,
    landscape: bool,
) -> Option<[f64; 4]> {
    let all = length(r, "pdf_margin", 0.0, MAX_PAPER_IN);
    let sides = SIDES.map(|side| length(r, side, 0.0, MAX_PAPER_IN));
    let margins = match all {
        Some(m) => {
            if let Some(i) = sides.iter().position(Option::is_some) {
                r.error(SIDES[i], "cannot be combined with pdf_margin");
            }
            [m; 4]
        }
        None if sides.iter().all(Option::is_none) => return None,
        None => sides.map(|s| s.unwrap_or(0.0)),
    };
    let (width, height) = if landscape {
        (paper_height, paper_width)
    } else {
        (paper_width, paper_height)
    };
    // At least a tenth of an inch to print on, across and down.
    if margins[1] + margins[3] > width - 0.1 || margins[0] + margins[2] > height - 0.1 {
        let field = if all.is_some() {
            "pdf_margin"
        } else if margins[1] + margins[3] > width - 0.1 {
            "pdf_margin_left"
        } else {
            "pdf_margin_top"
        };
        r.error(field, "the margins leave no room on the page");
    }
    Some(margins)
}

/// A length option in inches, read from a number (CSS px) or a string with a unit.
fn length(r: &mut Reader, field: &'static str, min_in: f64, max_in: f64) -> Option<f64> {
    r.note(field, Access::Text);
    let raw = match r.take(field)? {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s,
        _ => {
            r.error(field, "must be a length such as 210mm, 8.5in, 2cm or 800px");
            return None;
        }
    };
    match parse_length(&raw) {
        Some(inches) if (min_in..=max_in).contains(&inches) => Some(inches),
        Some(_) => {
            r.error(
                field,
                &format!(
                    "must be from {min_in} in to {max_in} in ({} px)",
                    max_in * 96.0
                ),
            );
            None
        }
        None => {
            r.error(
                field,
                "must be a length such as 210mm, 8.5in, 2cm or 800px (a plain number is px)",
            );
            None
        }
    }
}

/// A length in inches: a number with `px` (CSS pixels, 96 per inch, also without a unit),
/// `in`, `cm` or `mm`.
pub(super) fn parse_length(raw: &str) -> Option<f64> {
    let s = raw.trim().to_ascii_lowercase();
    if s.len() > 32 {
        return None;
    }
    let (number, per_inch) = if let Some(n) = s.strip_suffix("px") {
        (n, 96.0)
    } else if let Some(n) = s.strip_suffix("in") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("cm") {
        (n, 2.54)
    } else if let Some(n) = s.strip_suffix("mm") {
        (n, 25.4)
    } else {
        (s.as_str(), 96.0)
    };
    let number = number.trim();
    // Plain decimals only: no signs, exponents, `inf` or `NaN`.
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    value.is_finite().then_some(value / per_inch)
}

/// `1-3,5`: one-based pages and inclusive ranges, normalized to ascending, disjoint ranges
/// (Chromium prints pages in document order, each once) and cut after `max_pages` pages.
pub(super) fn page_ranges(raw: &str, max_pages: u32) -> Result<Vec<(u32, u32)>, String> {
    const SYNTAX: &str = "must be pages and ranges such as 1-3,5 (one-based, start ≤ end)";
    if raw.len() > MAX_RANGES_CHARS {
        return Err(format!("must be at most {MAX_RANGES_CHARS} characters"));
    }
    let page = |s: &str| -> Result<u32, String> {
        let s = s.trim();
        if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
            return Err(SYNTAX.into());
        }
        match s.parse::<u32>() {
            Ok(n) if (1..=MAX_PAGE_NUMBER).contains(&n) => Ok(n),
            _ => Err(format!("page numbers must be from 1 to {MAX_PAGE_NUMBER}")),
        }
    };
    let mut ranges = Vec::new();
    for part in raw.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (page(a)?, page(b)?),
            None => {
                let n = page(part)?;
                (n, n)
            }
        };
        if a > b {
            return Err(SYNTAX.into());
        }
        ranges.push((a, b));
        if ranges.len() > MAX_RANGES {
            return Err(format!("must have at most {MAX_RANGES} ranges"));
        }
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    // Cut after `max_pages` pages in all.
    let mut left = max_pages;
    let mut cut = Vec::with_capacity(merged.len());
    for (a, b) in merged {
        if left == 0 {
            break;
        }
        let end = b.min(a + (left - 1));
        left -= end - a + 1;
        cut.push((a, end));
    }
    Ok(cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_take_units_and_plain_px() {
        let close = |raw: &str, inches: f64| {
            let got = parse_length(raw).unwrap_or(f64::NAN);
            assert!((got - inches).abs() < 1e-9, "{raw}: {got} != {inches}");
        };
        close("8.5in", 8.5);
        close("210mm", 210.0 / 25.4);
        close("2.54cm", 1.0);
        close("960px", 10.0);
        close("96", 1.0);
        close(" 1IN ", 1.0);
        for bad in [
            "", "in", "-1in", "1e3px", "NaN", "inf", "1 2in", "10pt", "1.2.3mm",
        ] {
            assert_eq!(parse_length(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn page_ranges_are_sorted_merged_and_cut() {
        assert_eq!(page_ranges("1-3,5", 50), Ok(vec![(1, 3), (5, 5)]));
        assert_eq!(page_ranges("5, 1-3 ,2-4", 50), Ok(vec![(1, 5)]));
        assert_eq!(page_ranges("1-100", 50), Ok(vec![(1, 50)]));
        assert_eq!(page_ranges("1-2,10-20", 5), Ok(vec![(1, 2), (10, 12)]));
        assert_eq!(page_ranges("7", 1), Ok(vec![(7, 7)]));
        for bad in [
            "", "0", "3-1", "1-", "-2", "a", "1;2", "1--2", "1,,2", "+1", "100001",
        ] {
            assert!(page_ranges(bad, 50).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn chromium_is_never_asked_for_more_than_the_cap() {
        let spec = |page_ranges| PdfSpec {
            paper_width: 8.5,
            paper_height: 11.0,
            landscape: false,
            margins: None,
            print_background: true,
            scale: 1.0,
            page_ranges,
            max_pages: 50,
        };
        assert_eq!(spec(vec![]).chromium_page_ranges(), "1-50");
        assert_eq!(spec(vec![(1, 3), (5, 5)]).chromium_page_ranges(), "1-3,5");
    }
}
