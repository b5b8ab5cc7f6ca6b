//! Page tweaks before the shot, in this order: waiting for `wait_for_selector` and
//! `wait_for_function`, scrolling to load lazy content, clicking (`click`), hiding selectors and
//! adding CSS, running the customer's script, scrolling an element into view (`scroll_to`).

use chromiumoxide::cdp::browser_protocol::page::FrameId;
use chromiumoxide::Page;

use super::navigate::ensure_not_error_page;
use super::page_js::{evaluate, evaluate_as, evaluate_isolated, js_string, wait_for_element};
use super::page_moves::{navigated_away, settle_after_navigation, PageMoves};
use super::{Failure, Result, SELECTOR_REPORT_RESERVE};
use crate::content_filters::{FilterEngines, MAX_NAMES};
use crate::farm::job::{CaptureError, CaptureSpec};

/// Whether the capture has page options to apply (else [`prepare_page`] does nothing).
pub(super) fn has_work(spec: &CaptureSpec) -> bool {
    spec.wait_for_selector.is_some()
        || spec.wait_for_function.is_some()
        || spec.scroll_to_load
        || !spec.click.is_empty()
        || !spec.hide_selectors.is_empty()
        || spec.css.is_some()
        || spec.js.is_some()
        || spec.scroll_to.is_some()
        || spec.filters.any()
}

/// Applies the capture's page options, in order; a script that navigates the page is waited
/// out (the caller's deadline bounds every wait).
pub(super) async fn prepare_page(
    page: &Page,
    spec: &CaptureSpec,
    lists: Option<&FilterEngines>,
    main: &FrameId,
    deadline: tokio::time::Instant,
    moves: &mut PageMoves,
) -> Result<()> {
    if let Some(selector) = &spec.wait_for_selector {
        // Leave time to report "not found" before the job's own deadline passes.
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let budget = remaining.saturating_sub(SELECTOR_REPORT_RESERVE);
        if !wait_for_element(page, selector, budget).await? {
            return Err(CaptureError::SelectorNotFound(selector.clone()).into());
        }
    }
    if let Some(expression) = &spec.wait_for_function {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let budget = remaining.saturating_sub(SELECTOR_REPORT_RESERVE);
        // The customer's expression as code of its own function (like `js`, not through the
        // page's `eval`, which its CSP may forbid): a syntax error is a `script_error`. Polled
        // every 100 ms until truthy or out of time.
        let script = format!(
            "(async () => {{\n\
             const check = async () => (\n{expression}\n);\n\
             const until = Date.now() + {ms};\n\
             for (;;) {{\n\
               if (await check()) return true;\n\
               if (Date.now() >= until) return false;\n\
               await new Promise(r => setTimeout(r, 100));\n\
             }}\n\
             }})()",
            ms = budget.as_millis(),
        );
        if evaluate(page, script, true).await? != serde_json::Value::Bool(true) {
            return Err(CaptureError::FunctionTimeout.into());
        }
    }
    if spec.scroll_to_load {
        let script = format!(
            r#"(async () => {{
                const maxY = {max};
                const pause = ms => new Promise(r => setTimeout(r, ms));
                let y = 0;
                for (let i = 0; i < 400; i++) {{
                    const h = Math.min(document.documentElement.scrollHeight, maxY);
                    if (y + innerHeight >= h) break;
                    y += innerHeight;
                    window.scrollTo(0, y);
                    await pause(100);
                }}
                window.scrollTo(0, 0);
                const pending = Array.from(document.images).filter(i => !i.complete);
                await Promise.race([
                    Promise.all(pending.map(i => new Promise(r => {{
                        i.addEventListener('load', r, {{ once: true }});
                        i.addEventListener('error', r, {{ once: true }});
                    }}))),
                    pause(3000),
                ]);
                return true;
            }})()"#,
            max = spec.max_full_page_height
        );
        evaluate(page, script, true).await?;
    }
    for selector in &spec.click {
        let script = format!(
            r#"(async () => {{
                const el = document.querySelector({sel});
                if (!el) return false;
                el.scrollIntoView({{ block: 'center' }});
                el.click();
                await new Promise(r => requestAnimationFrame(() => setTimeout(r, 50)));
                return true;
            }})()"#,
            sel = js_string(selector)
        );
        // A click may navigate the page: then the capture is of where it went.
        match evaluate(page, script, true).await {
            Ok(serde_json::Value::Bool(true)) => moves.settle_if_moved(page, spec, main).await?,
            Ok(_) => return Err(CaptureError::SelectorNotFound(selector.clone()).into()),
            Err(Failure::Capture(CaptureError::ScriptFailed(_))) => {
                return Err(CaptureError::InvalidSelector(selector.clone()).into())
            }
            Err(Failure::Cdp(e)) if navigated_away(&e) => {
                moves.main_frame_moved(main);
                settle_after_navigation(&mut moves.lifecycle, spec, main).await?;
                ensure_not_error_page(page).await?;
            }
            Err(other) => return Err(other),
        }
    }
    let mut css = match lists.filter(|_| spec.filters.any()) {
        Some(lists) => hiding_css(page, spec, lists, main).await?,
        None => String::new(),
    };
    for selector in &spec.hide_selectors {
        // One rule per selector: an invalid one must not void the others.
        css.push_str(selector);
        css.push_str(" { visibility: hidden !important; }\n");
    }
    if let Some(extra) = &spec.css {
        css.push_str(extra);
    }
    if !css.is_empty() {
        let script = format!(
            "(() => {{ const s = document.createElement('style'); s.textContent = {}; \
             (document.head || document.documentElement).appendChild(s); return true; }})()",
            js_string(&css)
        );
        evaluate(page, script, false).await?;
    }
    if let Some(js) = &spec.js {
        // The script may navigate the page: then the capture is of where it went.
        match evaluate_as(page, js.clone(), true, false).await {
            Err(Failure::Cdp(e)) if navigated_away(&e) => {
                moves.main_frame_moved(main);
                settle_after_navigation(&mut moves.lifecycle, spec, main).await?;
                ensure_not_error_page(page).await?;
            }
            other => {
                other?;
                moves.settle_if_moved(page, spec, main).await?;
            }
        }
    }
    if let Some(selector) = &spec.scroll_to {
        let script = format!(
            r#"(() => {{
                const el = document.querySelector({sel});
                if (!el) return false;
                el.scrollIntoView({{ block: 'start' }});
                return true;
            }})()"#,
            sel = js_string(selector)
        );
        match evaluate(page, script, false).await {
            Ok(serde_json::Value::Bool(true)) => {}
            Ok(_) => return Err(CaptureError::SelectorNotFound(selector.clone()).into()),
            Err(Failure::Capture(CaptureError::ScriptFailed(_))) => {
                return Err(CaptureError::InvalidSelector(selector.clone()).into())
            }
            Err(other) => return Err(other),
        }
    }
    Ok(())
}

/// Longest class name or id reported for element hiding (ad markers are short).
const MAX_NAME_CHARS: usize = 128;

/// The filter lists' element hiding for this page: the rules for its site, and the generic
/// rules for the class names and ids its elements carry. Read in one evaluation, bounded, in an
/// isolated world; a read that fails anyway hides by the site's rules alone.
async fn hiding_css(
    page: &Page,
    spec: &CaptureSpec,
    lists: &FilterEngines,
    main: &FrameId,
) -> Result<String> {
    let script = format!(
        r#"(() => {{
            const classes = new Set(), ids = new Set();
            const fits = (name) => name.length <= {chars};
            for (const el of document.querySelectorAll('[class], [id]')) {{
                if (el.id && ids.size < {max} && fits(el.id)) ids.add(el.id);
                for (const c of el.classList) if (classes.size < {max} && fits(c)) classes.add(c);
                if (classes.size >= {max} && ids.size >= {max}) break;
            }}
            return [location.href, Array.from(classes), Array.from(ids)];
        }})()"#,
        max = MAX_NAMES,
        chars = MAX_NAME_CHARS,
    );
    let found = evaluate_isolated(page, main, script)
        .await?
        .unwrap_or(serde_json::Value::Null);
    let strings = |i: usize| -> Vec<String> {
        found
            .get(i)
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let page_url = found
        .get(0)
        .and_then(serde_json::Value::as_str)
        .unwrap_or(spec.url.as_str())
        .to_string();
    Ok(lists.hiding_css(spec.filters, &page_url, &strings(1), &strings(2)))
}
