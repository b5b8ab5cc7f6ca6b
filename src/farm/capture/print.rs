//! `format=pdf`: the page printed by Chromium (`Page.printToPDF`), at most `max_pages` pages.

use chromiumoxide::cdp::browser_protocol::page::PrintToPdfParams;
use chromiumoxide::error::CdpError;
use chromiumoxide::Page;

use super::region::decode_base64;
use super::{Failure, Rendered, Result};
use crate::farm::job::{CaptureError, PdfSpec, Phases};

/// Points (1/72 in) per inch: the unit of a PDF's page size, reported as the output's size.
const POINTS_PER_INCH: f64 = 72.0;

/// Prints the page as the spec asks. The media type is print unless the capture emulates
/// another (`media=screen`).
pub(super) async fn print(page: &Page, pdf: &PdfSpec) -> Result<Rendered> {
    let mut params = PrintToPdfParams {
        landscape: Some(pdf.landscape),
        print_background: Some(pdf.print_background),
        scale: Some(pdf.scale),
        paper_width: Some(pdf.paper_width),
        paper_height: Some(pdf.paper_height),
        page_ranges: Some(pdf.chromium_page_ranges()),
        prefer_css_page_size: Some(false),
        ..Default::default()
    };
    if let Some([top, right, bottom, left]) = pdf.margins {
        params.margin_top = Some(top);
        params.margin_right = Some(right);
        params.margin_bottom = Some(bottom);
        params.margin_left = Some(left);
    }
    let data = match page.execute(params).await {
        Ok(answer) => answer.result.data,
        // Ranges that all lie beyond the document's end: the customer's choice, not a fault.
        Err(CdpError::Chrome(e)) if e.message.contains("Page range exceeds page count") => {
            return Err(Failure::Capture(CaptureError::PdfNoPages));
        }
        Err(e) => return Err(e.into()),
    };
    let pdf_bytes = decode_base64(data.as_ref())?;
    if !pdf_bytes.starts_with(b"%PDF-") {
        return Err(
            CaptureError::Internal("Chromium printed something that is not a PDF".into()).into(),
        );
    }
    let (width, height) = if pdf.landscape {
        (pdf.paper_height, pdf.paper_width)
    } else {
        (pdf.paper_width, pdf.paper_height)
    };
    Ok(Rendered {
        image: pdf_bytes,
        width: (width * POINTS_PER_INCH).round() as u32,
        height: (height * POINTS_PER_INCH).round() as u32,
        truncated: false,
        phases: Phases::default(),
        page: None,
    })
}
