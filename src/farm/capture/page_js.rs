//! JavaScript in the page: evaluating an expression (its exception as `script_failed`),
//! waiting for a selector, quoting a string as a literal.

use std::time::Duration;

use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::Page;

use super::{Failure, Result};
use crate::farm::job::CaptureError;

/// Waits until `selector` matches, polling inside the page. `Ok(false)` when time runs out.
pub(super) async fn wait_for_element(
    page: &Page,
    selector: &str,
    budget: Duration,
) -> Result<bool> {
    let script = format!(
        r#"new Promise((resolve, reject) => {{
            const sel = {sel};
            const until = Date.now() + {ms};
            const check = () => {{
                let found;
                try {{ found = document.querySelector(sel); }} catch (e) {{ reject(e); return; }}
                if (found) resolve(true);
                else if (Date.now() >= until) resolve(false);
                else setTimeout(check, 25);
            }};
            check();
        }})"#,
        sel = js_string(selector),
        ms = budget.as_millis()
    );
    match evaluate(page, script, true).await {
        Ok(value) => Ok(value.as_bool().unwrap_or(false)),
        Err(Failure::Capture(CaptureError::ScriptFailed(_))) => {
            Err(CaptureError::InvalidSelector(selector.to_string()).into())
        }
        Err(other) => Err(other),
    }
}

/// Evaluates `expression` in the page; a thrown exception becomes [`CaptureError::ScriptFailed`].
pub(super) async fn evaluate(
    page: &Page,
    expression: String,
    await_promise: bool,
) -> Result<serde_json::Value> {
    evaluate_as(page, expression, await_promise, true).await
}

/// Evaluates `expression`; `by_value` = false leaves the result in the page (a customer's
/// script may end on a value that cannot be serialized: a window, a DOM node).
pub(super) async fn evaluate_as(
    page: &Page,
    expression: String,
    await_promise: bool,
    by_value: bool,
) -> Result<serde_json::Value> {
    let mut params = EvaluateParams::new(expression);
    params.await_promise = Some(await_promise);
    params.return_by_value = Some(by_value);
    let result = page.execute(params).await?.result;
    if let Some(details) = result.exception_details {
        let message = details
            .exception
            .as_ref()
            .and_then(|e| e.description.clone())
            .unwrap_or(details.text);
        let first_line = message.lines().next().unwrap_or_default().to_string();
        return Err(CaptureError::ScriptFailed(first_line).into());
    }
    Ok(result.result.value.unwrap_or(serde_json::Value::Null))
}

/// A string as a JavaScript literal.
pub(super) fn js_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}
