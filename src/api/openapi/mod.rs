//! The OpenAPI 3.1 document of the API, served unauthenticated at `GET /api/v1/openapi.json`.
//! Generated per request from the same descriptions the request code uses, under the running
//! configuration's caps: the capture options from `options::spec` (which the option parser
//! reads its bounds from and is tested against), the error codes from `errors::all_codes`
//! (tested against every code in the source), the transaction types from `TxKind`.
//!
//! - `capture`: the screenshot operations, their options and responses;
//! - `paths`: every other endpoint;
//! - here: the document's frame, shared components, and the response and header helpers.

mod capture;
mod paths;

use serde_json::{json, Map, Value};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::errors::all_codes;
use super::json::json_response;
use super::{with_request_id, ApiState};
use crate::config::Config;
use crate::ledger::TxKind;

pub fn routes(
    state: ApiState,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let with_state = warp::any().map(move || state.clone());
    warp::path!("api" / "v1" / "openapi.json")
        .and(warp::get())
        .and(with_request_id())
        .and(with_state)
        .then(|id: String, state: ApiState| {
            super::answer(id, async move {
                Ok(json_response(
                    StatusCode::OK,
                    &document(&state.config.get()),
                ))
            })
        })
}

/// The whole document for a server running `config`.
pub fn document(config: &Config) -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "shotfarm",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A self-hosted screenshot API. Each delivered screenshot costs one credit; failures are never charged. Errors are JSON: `{\"error\": {\"code\", \"message\", \"field\"?, \"details\"?, \"target_status\"?}, \"request_id\"}`, except the contract's 402 body.",
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "screenshots"},
            {"name": "account"},
            {"name": "keys"},
            {"name": "credits"},
            {"name": "payments"},
            {"name": "service"},
        ],
        "paths": paths::paths(config),
        "components": components(config),
    })
}

/// A `$ref` to a schema of `components`.
pub(super) fn ref_schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// An API key (`x-api-key` or `Authorization: Bearer`) or the session cookie.
pub(super) fn key_or_session() -> Value {
    json!([{"apiKey": []}, {"bearer": []}, {"session": []}])
}

/// The session cookie only (an API key is refused).
pub(super) fn session_only() -> Value {
    json!([{"session": []}])
}

/// No credentials.
pub(super) fn public() -> Value {
    json!([])
}

/// The response headers named (`x-ratelimit` stands for the four `x-ratelimit-*`), each
/// optional; `x-request-id` is added by the callers that always send it.
pub(super) fn headers(names: &[&str]) -> Value {
    let int =
        |description: &str| json!({"description": description, "schema": {"type": "integer"}});
    let text =
        |description: &str| json!({"description": description, "schema": {"type": "string"}});
    let mut out = Map::new();
    for name in names {
        let entries: Vec<(&str, Value)> = match *name {
            "x-request-id" => vec![(
                "x-request-id",
                json!({"description": "The request's id: the caller's sane `x-request-id`, else a fresh one.", "required": true, "schema": {"type": "string"}}),
            )],
            "x-credits-remaining" => vec![(
                "x-credits-remaining",
                int("The balance after this request settled."),
            )],
            "x-ratelimit" => vec![
                ("x-ratelimit-limit", int("Requests per minute allowed for this key.")),
                ("x-ratelimit-burst", int("How many may come at once.")),
                ("x-ratelimit-remaining", int("How many may be sent right now.")),
                ("x-ratelimit-reset", int("Seconds until the whole burst is back.")),
            ],
            "retry-after" => vec![("retry-after", int("Seconds to wait before retrying."))],
            "server-timing" => vec![(
                "server-timing",
                text("Milliseconds: queue, context, emulate, navigate, page, capture, encode, render, total."),
            )],
            "x-image-width" => vec![("x-image-width", int("Image width in pixels."))],
            "x-image-height" => vec![("x-image-height", int("Image height in pixels."))],
            "x-shotfarm-truncated" => vec![(
                "x-shotfarm-truncated",
                text("`true` when a full page was cut at the maximum height."),
            )],
            "x-credits-low" => vec![(
                "x-credits-low",
                text("`true` once the balance is below the auto top-up threshold."),
            )],
            "x-credits-suggested-pack" => vec![(
                "x-credits-suggested-pack",
                text("The auto top-up pack to buy."),
            )],
            "idempotent-replayed" => vec![(
                "idempotent-replayed",
                text("`true`: the stored response of an earlier request with this Idempotency-Key, not charged again."),
            )],
            "x-cache" => vec![(
                "x-cache",
                text("With `cache`: `hit` (served from the cache, not charged) or `miss` (captured, charged, and kept)."),
            )],
            "age" => vec![("age", int("With `x-cache: hit`: seconds since the cached capture was made."))],
            "cache-control" => vec![(
                "cache-control",
                text("`no-store`; with `cache`, `private, max-age=` what is left of the entry's lifetime."),
            )],
            "x-cache-filled-by" => vec![(
                "x-cache-filled-by",
                text("With `x-cache: hit`: the request id of the charged capture that filled the entry."),
            )],
            "set-cookie" => vec![(
                "set-cookie",
                text("The `session` cookie (HttpOnly, SameSite=Strict)."),
            )],
            other => vec![(other, text(""))],
        };
        for (k, v) in entries {
            out.insert(k.to_string(), v);
        }
    }
    Value::Object(out)
}

/// A JSON response of `schema` with `x-request-id` and the headers named.
pub(super) fn error_response(description: &str, schema: &str, header_names: &[&str]) -> Value {
    let mut names = vec!["x-request-id"];
    names.extend_from_slice(header_names);
    json!({
        "description": description,
        "headers": headers(&names),
        "content": {"application/json": {"schema": ref_schema(schema)}},
    })
}

/// An operation's responses; [`Responses::into_value`] adds the answers any request can get.
pub(super) struct Responses(Map<String, Value>);

impl Responses {
    pub(super) fn new() -> Self {
        Responses(Map::new())
    }

    pub(super) fn add(&mut self, status: &str, response: Value) {
        self.0.insert(status.to_string(), response);
    }

    /// The JSON error body at `status`.
    pub(super) fn error(&mut self, status: &str, description: &str, header_names: &[&str]) {
        self.add(status, error_response(description, "Error", header_names));
    }

    /// JSON `schema` at `status`, with `x-request-id` and the headers named.
    pub(super) fn json(
        &mut self,
        status: &str,
        description: &str,
        schema: Value,
        header_names: &[&str],
    ) {
        let mut names = vec!["x-request-id"];
        names.extend_from_slice(header_names);
        self.add(
            status,
            json!({
                "description": description,
                "headers": headers(&names),
                "content": {"application/json": {"schema": schema}},
            }),
        );
    }

    /// No body.
    pub(super) fn empty(&mut self, status: &str, description: &str, header_names: &[&str]) {
        let mut names = vec!["x-request-id"];
        names.extend_from_slice(header_names);
        self.add(
            status,
            json!({"description": description, "headers": headers(&names)}),
        );
    }

    /// The responses, with those every request may get (an unreadable request, a request head
    /// over the cap, the connection caps) where the operation does not say more.
    pub(super) fn into_value(mut self) -> Value {
        let common: [(&str, &str, &[&str]); 5] = [
            ("400", "`bad_request`: the request could not be read (e.g. a header that is not text).", &[]),
            ("414", "`uri_too_long`: the request line is over the server's head cap; send long options in a POST body.", &[]),
            ("431", "`headers_too_large`: the request head is over the server's cap.", &[]),
            ("429", "`too_many_connections`: this client has too many connections open.", &["retry-after"]),
            ("503", "`server_busy`: the server has too many connections open.", &["retry-after"]),
        ];
        for (status, description, header_names) in common {
            if !self.0.contains_key(status) {
                self.error(status, description, header_names);
            }
        }
        Value::Object(self.0)
    }
}

fn components(config: &Config) -> Value {
    let caps = &config.capture;
    let date_time = json!({"type": "string", "format": "date-time"});
    let pack = json!({
        "type": "object",
        "required": ["id", "name", "credits", "priceCents", "isPopular"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "credits": {"type": "integer"},
            "priceCents": {"type": "integer"},
            "isPopular": {"type": "boolean"},
        },
    });
    let auto_topup = json!({
        "type": "object",
        "required": ["enabled", "threshold", "packId", "notificationUrl"],
        "properties": {
            "enabled": {"type": "boolean"},
            "threshold": {"type": "integer", "description": "0 until set."},
            "packId": {"type": "string", "description": "Empty until set."},
            "notificationUrl": {"type": ["string", "null"]},
        },
    });
    let mut auto_topup_settings = auto_topup.clone();
    auto_topup_settings["required"] = json!([
        "enabled",
        "threshold",
        "packId",
        "notificationUrl",
        "notificationSecret"
    ]);
    auto_topup_settings["properties"]["notificationSecret"] = json!({
        "type": ["string", "null"],
        "description": "The Standard Webhooks secret (`whsec_…`) low-balance notifications are signed with.",
    });
    let api_key = json!({
        "type": "object",
        "required": ["id", "name", "prefix", "createdAt", "lastUsedAt", "signingSecretCreatedAt"],
        "properties": {
            "id": {"type": "string", "description": "The key's id: `key_id` of its signed links."},
            "name": {"type": "string"},
            "prefix": {"type": "string"},
            "createdAt": date_time,
            "lastUsedAt": {"type": ["string", "null"], "format": "date-time"},
            "signingSecretCreatedAt": {"type": ["string", "null"], "format": "date-time", "description": "When the key's link-signing secret was made; `null`: it has none."},
        },
    });
    let mut new_api_key = api_key.clone();
    new_api_key["required"] = json!([
        "id",
        "name",
        "prefix",
        "createdAt",
        "lastUsedAt",
        "signingSecretCreatedAt",
        "key"
    ]);
    new_api_key["properties"]["key"] =
        json!({"type": "string", "description": "The secret, shown this once."});
    let tx_types: Vec<&str> = TxKind::ALL.iter().map(|k| k.as_str()).collect();
    json!({
        "securitySchemes": {
            "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "An API key (`sk_…`)."},
            "bearer": {"type": "http", "scheme": "bearer", "description": "An API key as `Authorization: Bearer sk_…`."},
            "session": {"type": "apiKey", "in": "cookie", "name": "session", "description": "The dashboard's session cookie; origin-checked."},
        },
        "parameters": {
            "RequestId": {
                "name": "x-request-id",
                "in": "header",
                "required": false,
                "description": "Your id for this request, echoed back when it is 1 to 128 of `A-Za-z0-9-_.:`.",
                "schema": {"type": "string"},
            },
        },
        "schemas": {
            "ErrorCode": {
                "type": "string",
                "description": "The stable machine-readable error code.",
                "enum": all_codes(),
            },
            "Error": {
                "type": "object",
                "required": ["error", "request_id"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": ref_schema("ErrorCode"),
                            "message": {"type": "string"},
                            "field": {"type": "string", "description": "The (first) option or field at fault."},
                            "details": {
                                "type": "array",
                                "description": "Every field at fault, when there are several.",
                                "items": {
                                    "type": "object",
                                    "required": ["field", "message"],
                                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                                },
                            },
                            "target_status": {"type": "integer", "description": "The HTTP status the captured page answered (`target_http_error`)."},
                        },
                    },
                    "request_id": {"type": "string"},
                },
            },
            "InsufficientCredits": {
                "type": "object",
                "description": "The credits contract's 402 body, with our code and request id beside it.",
                "required": ["error", "balance", "message", "code", "request_id"],
                "properties": {
                    "error": {"const": "Insufficient credits"},
                    "balance": {"type": "integer", "minimum": 0},
                    "message": {"type": "string"},
                    "code": {"const": "insufficient_credits"},
                    "request_id": {"type": "string"},
                },
            },
            "CaptureOptions": capture::options_schema(caps),
            "Cookie": capture::cookie_schema(),
            "CaptureJson": capture::capture_json_schema(),
            "StoredCapture": capture::stored_capture_schema(),
            "Account": {
                "type": "object",
                "required": ["id", "email", "createdAt", "balance"],
                "properties": {
                    "id": {"type": "string"},
                    "email": {"type": "string"},
                    "createdAt": date_time,
                    "balance": {"type": ["integer", "null"]},
                },
            },
            "Credentials": {
                "type": "object",
                "required": ["email", "password"],
                "additionalProperties": false,
                "properties": {
                    "email": {"type": "string"},
                    "password": {"type": "string"},
                },
            },
            "ApiKey": api_key,
            "NewApiKey": new_api_key,
            "SigningSecret": {
                "type": "object",
                "required": ["keyId", "signingSecret", "createdAt"],
                "properties": {
                    "keyId": {"type": "string"},
                    "signingSecret": {"type": "string", "description": "`lsk_…`, shown this once: the HMAC-SHA256 key of the key's signed links (its text as it is)."},
                    "createdAt": date_time,
                },
            },
            "Pack": pack,
            "AutoTopup": auto_topup,
            "AutoTopupSettings": auto_topup_settings,
            "Credits": {
                "type": "object",
                "required": ["balance", "reserved", "lowBalance", "autoTopup", "suggestedPack"],
                "properties": {
                    "balance": {"type": "integer"},
                    "reserved": {"type": "integer", "description": "Held by captures in flight."},
                    "lowBalance": {"type": "boolean"},
                    "autoTopup": ref_schema("AutoTopup"),
                    "suggestedPack": {"oneOf": [ref_schema("Pack"), {"type": "null"}]},
                },
            },
            "Transaction": {
                "type": "object",
                "required": ["id", "type", "amount", "description", "timestamp", "balanceAfter"],
                "properties": {
                    "id": {"type": "string"},
                    "type": {"type": "string", "enum": tx_types},
                    "amount": {"type": "integer"},
                    "description": {"type": "string"},
                    "timestamp": date_time,
                    "balanceAfter": {"type": "integer"},
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::options::spec::OPTIONS;
    use crate::farm::CaptureError;

    fn doc() -> Value {
        document(&Config::default())
    }

    #[test]
    fn every_option_is_a_query_parameter_and_a_body_property() {
        let doc = doc();
        let get = &doc["paths"]["/api/v1/screenshot"]["get"]["parameters"];
        let body = &doc["components"]["schemas"]["CaptureOptions"]["properties"];
        for o in OPTIONS {
            assert!(
                get.as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == o.name && p["in"] == "query")),
                "`{}` is not a query parameter of GET /api/v1/screenshot",
                o.name
            );
            assert!(
                body.get(o.name).is_some(),
                "`{}` is not in CaptureOptions",
                o.name
            );
        }
        assert_eq!(body.as_object().map(Map::len), Some(OPTIONS.len()));
    }

    #[test]
    fn the_signed_link_parameters_are_documented_and_are_no_options() {
        let doc = doc();
        let get = &doc["paths"]["/api/v1/screenshot"]["get"];
        for name in crate::api::signed_links::PARAMS {
            assert!(
                OPTIONS.iter().all(|o| o.name != name),
                "`{name}` is a signed link's parameter and cannot be a capture option"
            );
            assert!(
                get["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "query")),
                "`{name}` is not a query parameter of GET /api/v1/screenshot"
            );
        }
        assert!(
            get["security"]
                .as_array()
                .is_some_and(|s| s.contains(&json!({}))),
            "a signed link needs no credentials"
        );
    }

    #[test]
    fn the_error_code_enum_is_every_code_the_api_and_the_farm_give() {
        let doc = doc();
        let listed: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .expect("an enum")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for code in CaptureError::CODES
            .iter()
            .chain(crate::api::errors::API_CODES)
        {
            assert!(listed.contains(code), "`{code}` is missing from ErrorCode");
        }
        assert_eq!(listed, all_codes());
    }

    #[test]
    fn bounds_follow_the_running_caps() {
        let mut config = Config::default();
        config.capture.max_width = 1234;
        let doc = document(&config);
        assert_eq!(
            doc["components"]["schemas"]["CaptureOptions"]["properties"]["width"]["maximum"],
            1234
        );
    }

    /// Every `/api/v1` route the source declares (a `warp::path!` starting with `"api"`) is a
    /// path of the document, and every path of the document is a route.
    #[test]
    fn every_route_is_documented() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
        let mut routes = std::collections::BTreeSet::new();
        let mut files = vec![root.clone()];
        while let Some(path) = files.pop() {
            if path.is_dir() {
                for entry in std::fs::read_dir(&path).expect("read src/api").flatten() {
                    files.push(entry.path());
                }
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let text = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (at, _) in text.match_indices("warp::path!(\"api\"") {
                let args = &text[at + "warp::path!(".len()..];
                let args = &args[..args.find(')').unwrap_or(0)];
                let segments: Vec<String> = args
                    .split('/')
                    .map(|s| s.trim())
                    .map(
                        |s| match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                            Some(literal) => literal.to_string(),
                            None => "{id}".to_string(),
                        },
                    )
                    .collect();
                routes.insert(format!("/{}", segments.join("/")));
            }
        }
        let doc = doc();
        let documented: std::collections::BTreeSet<String> = doc["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .filter(|p| p.starts_with("/api/"))
            .cloned()
            .collect();
        assert!(
            routes.len() > 10,
            "the scan found too few routes: {routes:?}"
        );
        assert_eq!(
            routes, documented,
            "the /api/v1 routes of src/api (left) and the paths of the OpenAPI document (right, src/api/openapi/paths.rs) differ"
        );
    }

    /// Every `$ref` points at something the document defines.
    #[test]
    fn every_reference_resolves() {
        fn walk(v: &Value, doc: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        let pointer = r.trim_start_matches('#');
                        if doc.pointer(pointer).is_none() {
                            out.push(r.clone());
                        }
                    }
                    map.values().for_each(|v| walk(v, doc, out));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(v, doc, out)),
                _ => {}
            }
        }
        let doc = doc();
        let mut dangling = Vec::new();
        walk(&doc, &doc, &mut dangling);
        assert!(dangling.is_empty(), "dangling references: {dangling:?}");
    }
}
