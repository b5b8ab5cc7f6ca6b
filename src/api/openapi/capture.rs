//! The screenshot operations in OpenAPI: their query parameters and JSON body generated from
//! the options' description (`options::spec`) under this server's caps, and their responses.

use serde_json::{json, Map, Value};

use super::{error_response, headers, ref_schema, Responses};
use crate::api::options::spec::{
    DefaultValue, Item, Kind, OptionSpec, COOKIE_LINE, COOKIE_NAME, COOKIE_VALUE, HEADER_LINE,
    HEADER_NAME, HEADER_VALUE, OPTIONS,
};
use crate::config::CaptureConfig;

/// Where an option is written: it takes the same names in both, with their own shapes for the
/// structured ones.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Query,
    Body,
}

fn number(v: f64, integer: bool) -> Value {
    if integer {
        json!(v as i64)
    } else {
        json!(v)
    }
}

/// The schema of one option's value.
fn schema(o: &OptionSpec, caps: &CaptureConfig, place: Place) -> Value {
    let mut s = match o.kind {
        Kind::Text {
            min_len,
            max_len,
            format,
            pattern,
        } => {
            let mut s = json!({"type": "string", "minLength": min_len, "maxLength": max_len.of(caps) as u64});
            if let Some(format) = format {
                s["format"] = json!(format);
            }
            if let Some(pattern) = pattern {
                s["pattern"] = json!(pattern);
            }
            s
        }
        Kind::Boolean => json!({"type": "boolean"}),
        Kind::Integer { min, max } => json!({
            "type": "integer",
            "minimum": number(min.of(caps), true),
            "maximum": number(max.of(caps), true),
        }),
        Kind::Number { min, max } => json!({
            "type": "number",
            "minimum": number(min.of(caps), false),
            "maximum": number(max.of(caps), false),
        }),
        Kind::OneOf { values, aliases } => {
            let mut all = values();
            all.extend_from_slice(aliases);
            json!({"type": "string", "enum": all})
        }
        Kind::List { max_items, item } => {
            let item = match item {
                Item::Text { max_len, pattern } => {
                    let mut s = json!({"type": "string", "minLength": 1, "maxLength": max_len});
                    if let Some(pattern) = pattern {
                        s["pattern"] = json!(pattern);
                    }
                    s
                }
                Item::OneOf(values) => json!({"type": "string", "enum": values()}),
            };
            json!({"type": "array", "items": item, "maxItems": max_items})
        }
        Kind::Headers { max_items } => match place {
            Place::Query => json!({
                "type": "array",
                "maxItems": max_items,
                "items": {"type": "string", "description": "`Name: value`", "pattern": HEADER_LINE},
            }),
            Place::Body => json!({
                "type": "object",
                "maxProperties": max_items,
                "propertyNames": {"pattern": HEADER_NAME},
                "additionalProperties": {"type": "string", "maxLength": 4096, "pattern": HEADER_VALUE},
            }),
        },
        Kind::Cookies { max_items } => match place {
            Place::Query => json!({
                "type": "array",
                "maxItems": max_items,
                "items": {"type": "string", "description": "`name=value`", "pattern": COOKIE_LINE},
            }),
            Place::Body => json!({
                "type": "array",
                "maxItems": max_items,
                "items": {"oneOf": [
                    {"type": "string", "description": "`name=value`", "pattern": COOKIE_LINE},
                    ref_schema("Cookie"),
                ]},
            }),
        },
    };
    let integer = matches!(o.kind, Kind::Integer { .. });
    match o.default {
        DefaultValue::None => {}
        DefaultValue::Bool(b) => s["default"] = json!(b),
        DefaultValue::Number(l) => s["default"] = number(l.of(caps), integer),
        DefaultValue::Text(t) => s["default"] = json!(t),
    }
    s
}

/// `GET /api/v1/screenshot`'s parameters: every option as a query parameter (lists repeated).
fn query_parameters(caps: &CaptureConfig) -> Vec<Value> {
    OPTIONS
        .iter()
        .map(|o| {
            let mut p = json!({
                "name": o.name,
                "in": "query",
                "required": o.name == "url",
                "description": o.description,
                "schema": schema(o, caps, Place::Query),
            });
            if matches!(
                o.kind,
                Kind::List { .. } | Kind::Headers { .. } | Kind::Cookies { .. }
            ) {
                p["style"] = json!("form");
                p["explode"] = json!(true);
            }
            p
        })
        .collect()
}

/// The JSON body of `POST /api/v1/screenshot`.
pub(super) fn options_schema(caps: &CaptureConfig) -> Value {
    let properties: Map<String, Value> = OPTIONS
        .iter()
        .map(|o| {
            let mut s = schema(o, caps, Place::Body);
            s["description"] = json!(o.description);
            (o.name.to_string(), s)
        })
        .collect();
    json!({
        "type": "object",
        "description": "Capture options: the same names as the query parameters of GET. Every problem is reported at once; an unknown option is an error.",
        "required": ["url"],
        "additionalProperties": false,
        "properties": properties,
    })
}

/// The `Cookie` object of the `cookies` option.
pub(super) fn cookie_schema() -> Value {
    json!({
        "type": "object",
        "required": ["name", "value"],
        "additionalProperties": false,
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": COOKIE_NAME},
            "value": {"type": "string", "maxLength": 4096, "pattern": COOKIE_VALUE},
            "domain": {"type": "string", "minLength": 1, "maxLength": 253, "pattern": "^[A-Za-z0-9.-]+$"},
            "path": {"type": "string", "maxLength": 1024, "pattern": "^/[^;\\x00-\\x1f\\x7f-\\x9f]*$"},
            "secure": {"type": "boolean"},
            "httpOnly": {"type": "boolean"},
            "http_only": {"type": "boolean"},
        },
    })
}

/// The body of `response_type=json`.
pub(super) fn capture_json_schema() -> Value {
    let ms = json!({"type": "number", "minimum": 0});
    json!({
        "type": "object",
        "required": ["image", "format", "width", "height", "bytes", "truncated", "timings", "page"],
        "properties": {
            "image": {"type": "string", "contentEncoding": "base64", "description": "The image, base64."},
            "format": {"type": "string", "enum": ["png", "jpeg", "webp"]},
            "width": {"type": "integer", "minimum": 0},
            "height": {"type": "integer", "minimum": 0},
            "bytes": {"type": "integer", "minimum": 0},
            "truncated": {"type": "boolean", "description": "A full page cut at the server's maximum height."},
            "timings": {
                "type": "object",
                "required": ["queue_ms", "context_ms", "emulate_ms", "navigate_ms", "page_ms", "capture_ms", "encode_ms", "render_ms", "total_ms"],
                "properties": {
                    "queue_ms": ms, "context_ms": ms, "emulate_ms": ms, "navigate_ms": ms,
                    "page_ms": ms, "capture_ms": ms, "encode_ms": ms, "render_ms": ms, "total_ms": ms,
                },
            },
            "page": {
                "type": ["object", "null"],
                "required": ["title", "url", "status", "meta"],
                "properties": {
                    "title": {"type": "string"},
                    "url": {"type": "string", "description": "The final URL, after redirects."},
                    "status": {"type": "integer", "description": "The main document's HTTP status (0 when Chromium does not say)."},
                    "meta": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Its og:* and twitter:* tags."},
                },
            },
        },
    })
}

/// The body of a `store=true` capture: where the uploaded image is.
pub(super) fn stored_capture_schema() -> Value {
    json!({
        "type": "object",
        "required": ["url", "key", "format", "bytes", "width", "height", "truncated"],
        "properties": {
            "url": {"type": "string", "format": "uri", "description": "Where to GET the image: a presigned URL (until `expiresAt`), or the bucket's public URL."},
            "key": {"type": "string", "description": "The object's key in the bucket: `<prefix>/<account>/<store_path or uuid.ext>`."},
            "format": {"type": "string", "enum": ["png", "jpeg", "webp", "pdf"]},
            "bytes": {"type": "integer", "minimum": 0},
            "width": {"type": "integer", "minimum": 0},
            "height": {"type": "integer", "minimum": 0},
            "truncated": {"type": "boolean", "description": "A full page cut at the server's maximum height."},
            "expiresAt": {"type": "string", "format": "date-time", "description": "When a presigned `url` stops working (absent for a public URL)."},
            "page": {"type": "object", "description": "What the page said, with `response_type=json` (as in CaptureJson)."},
        },
    })
}

/// What a capture answers, for both methods.
fn responses(body: bool) -> Value {
    let mut ok_headers = headers(&[
        "x-credits-remaining",
        "x-ratelimit",
        "server-timing",
        "x-image-width",
        "x-image-height",
        "x-shotfarm-truncated",
        "x-credits-low",
        "x-credits-suggested-pack",
        "idempotent-replayed",
        "x-cache",
        "age",
        "cache-control",
        "x-cache-filled-by",
    ]);
    ok_headers["x-credits-remaining"]["description"] =
        json!("The balance after this request settled (not sent on a signed link).");
    let binary =
        json!({"schema": {"type": "string", "contentMediaType": "application/octet-stream"}});
    let mut r = Responses::new();
    r.add(
        "200",
        json!({
            "description": "The image (`response_type=binary`, the default) in its format's content type, or JSON (`response_type=json`), or, with `store=true`, JSON saying where the uploaded image is. Charged one credit; free when served from the cache (`x-cache: hit`).",
            "headers": ok_headers,
            "content": {
                "image/png": binary,
                "image/jpeg": binary,
                "image/webp": binary,
                "application/json": {"schema": {"oneOf": [ref_schema("CaptureJson"), ref_schema("StoredCapture")]}},
            },
        }),
    );
    r.add(
        "202",
        json!({
            "description": "`async=true`: the job is accepted and queued; nothing is charged yet (one credit when its image exists, nothing for a failure). Its result is POSTed to `webhook_url` and shown at `status_url`.",
            "headers": headers(&["x-request-id", "x-credits-remaining", "x-ratelimit"]),
            "content": {"application/json": {"schema": {
                "type": "object",
                "required": ["id", "status", "status_url"],
                "properties": {
                    "id": {"type": "string", "pattern": "^job_[0-9a-f]{32}$"},
                    "status": {"type": "string", "enum": ["queued"]},
                    "status_url": {"type": "string"},
                },
            }}},
        }),
    );
    let after_auth = &["x-credits-remaining", "x-ratelimit"];
    r.error("400", "An option is wrong (`invalid_parameter`, naming each field; `store` when this server has no object storage, `cache` when its cache is off), the body is not a JSON object (`invalid_body`), the URL is refused by the egress policy (`url_not_allowed`), a selector or script the page rejects (`invalid_selector`, `script_error`), a bad `Idempotency-Key`, or a signed link's parameters together with an API key header (`ambiguous_credentials`). Not charged.", after_auth);
    r.error(
        "401",
        "No credentials, or a wrong key or expired session.",
        &[],
    );
    r.add(
        "402",
        error_response(
            "Not enough credits: the contract's body. Nothing was captured.",
            "InsufficientCredits",
            &["x-credits-remaining", "x-ratelimit"],
        ),
    );
    r.error(
        "403",
        "`cross_site_request`: a session-authenticated request from another site; or a signed link refused (`invalid_signature`: malformed, misplaced, an unknown or revoked key or secret, a changed parameter; `signature_expired`: past its `expires`). Not charged.",
        &[],
    );
    r.error(
        "404",
        "`selector_not_found`: a selector never matched. Not charged.",
        after_auth,
    );
    r.error(
        "409",
        "`idempotency_in_flight` or `idempotency_result_unavailable`.",
        after_auth,
    );
    if body {
        r.error(
            "413",
            "`payload_too_large`: the body is over the server's cap.",
            &[],
        );
    }
    r.error("422", "`function_timeout`, `page_crashed`, `output_too_large` or `idempotency_key_reused`. Not charged.", after_auth);
    r.error(
        "429",
        "`rate_limited`, `too_many_in_flight`, `queue_full` or, for `async=true`, `too_many_jobs` (the account's or the server's open jobs at their cap) (with Retry-After).",
        &["x-ratelimit", "retry-after"],
    );
    r.error(
        "500",
        "`internal`: a fault of the server. Not charged.",
        after_auth,
    );
    r.error("502", "`navigation_failed`, `target_http_error` (with `target_status`) or `empty_page`: the target page, not the request, failed; or `storage_failed`: a `store=true` capture could not be uploaded. Not charged.", after_auth);
    r.error("503", "`browser_crashed`, `browser_error`, `unavailable`, `shutting_down` or `ledger_unavailable` (with Retry-After). Not charged.", &["x-credits-remaining", "x-ratelimit", "retry-after"]);
    r.error(
        "504",
        "`timeout`: the capture did not finish within `timeout`. Not charged.",
        after_auth,
    );
    r.into_value()
}

/// The `/api/v1/screenshot` path item.
pub(super) fn path_item(caps: &CaptureConfig) -> Value {
    let idempotency = json!({
        "name": "Idempotency-Key",
        "in": "header",
        "required": false,
        "description": "Makes retries safe: a success is replayed for 24 h at no charge; the same key with other options is 422.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    });
    let mut get_parameters = query_parameters(caps);
    get_parameters.extend(signed_link_parameters());
    get_parameters.push(idempotency.clone());
    get_parameters.push(ref_schema_param());
    json!({
        "get": {
            "operationId": "captureGet",
            "tags": ["screenshots"],
            "summary": "Capture a page (options as query parameters)",
            "description": "Holds one credit while the capture runs; charged only when the image is delivered. Instead of credentials, a signed link: `key_id`, `expires` and, last, `signature` — the lower-case hex HMAC-SHA256, keyed by the key's signing secret, of the raw query string as sent up to (not including) `&signature=` (see README, *Signed links*). It is charged and rate-limited as its key; its response carries no `x-credits-*` headers.",
            "security": signed_or_credentials(),
            "parameters": get_parameters,
            "responses": responses(false),
        },
        "post": {
            "operationId": "capturePost",
            "tags": ["screenshots"],
            "summary": "Capture a page (options as a JSON body)",
            "description": "The same as GET, with the options in a JSON object.",
            "security": super::key_or_session(),
            "parameters": [idempotency, ref_schema_param()],
            "requestBody": {
                "required": true,
                "content": {"application/json": {"schema": ref_schema("CaptureOptions")}},
            },
            "responses": responses(true),
        },
    })
}

/// A key or session, or none at all: a signed link carries its HMAC in the query instead.
fn signed_or_credentials() -> Value {
    let mut security = super::key_or_session();
    if let Value::Array(alternatives) = &mut security {
        alternatives.push(json!({}));
    }
    security
}

/// The signed-link parameters of `GET /api/v1/screenshot` (`api::signed_links`): never options.
fn signed_link_parameters() -> Vec<Value> {
    let param = |name: &str, description: &str, schema: Value| json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema});
    vec![
        param(
            "key_id",
            "Signed link: the id of the API key whose signing secret signed it (as `GET /api/v1/keys` lists it).",
            json!({"type": "string", "minLength": 1, "maxLength": 64}),
        ),
        param(
            "expires",
            "Signed link: when it stops working, in Unix seconds.",
            json!({"type": "integer", "minimum": 0}),
        ),
        param(
            "signature",
            "Signed link: the last parameter; lower-case hex HMAC-SHA256 of the raw query before `&signature=`.",
            json!({"type": "string", "pattern": "^[0-9a-f]{64}$"}),
        ),
    ]
}

fn ref_schema_param() -> Value {
    json!({"$ref": "#/components/parameters/RequestId"})
}
