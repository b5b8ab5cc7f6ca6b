//! JavaScript in the page: evaluating an expression (its exception as `script_failed`), our own
//! script in an isolated world, waiting for a selector, quoting a string as a literal.

use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::page::{CreateIsolatedWorldParams, FrameId};
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

/// Evaluates `expression` (our own script, never a customer's) in an isolated world of `frame`:
/// it sees the page's DOM but none of the page's JavaScript, which can neither change what it
/// reads nor make it fail. `None` when it threw anyway.
pub(super) async fn evaluate_isolated(
    page: &Page,
    frame: &FrameId,
    expression: String,
) -> Result<Option<serde_json::Value>> {
    let world = page
        .execute(CreateIsolatedWorldParams {
            frame_id: frame.clone(),
            world_name: Some("shotfarm".into()),
            grant_univeral_access: None,
        })
        .await?
        .result
        .execution_context_id;
    let mut params = EvaluateParams::new(expression);
    params.context_id = Some(world);
    params.return_by_value = Some(true);
    let answer = page.execute(params).await?.result;
    Ok(match answer.exception_details {
        Some(_) => None,
        None => Some(answer.result.value.unwrap_or(serde_json::Value::Null)),
    })
}

/// A string as a JavaScript literal.
pub(super) fn js_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}
