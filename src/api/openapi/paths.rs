//! Every endpoint but the screenshots: accounts, keys, credits, payments, the probes and this
//! document, as `api::{auth, keys, credits, payments, auto_topup, probes}` serve them.

use serde_json::{json, Map, Value};

use super::{capture, key_or_session, public, ref_schema, session_only, Responses};
use crate::config::Config;
use crate::ledger::TxKind;

/// One operation.
struct Op {
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    security: Value,
    parameters: Vec<Value>,
    body: Option<Value>,
    responses: Responses,
}

impl Op {
    fn value(self) -> Value {
        let mut parameters = self.parameters;
        parameters.push(json!({"$ref": "#/components/parameters/RequestId"}));
        let mut op = json!({
            "operationId": self.id,
            "tags": [self.tag],
            "summary": self.summary,
            "security": self.security,
            "parameters": parameters,
            "responses": self.responses.into_value(),
        });
        if let Some(body) = self.body {
            op["requestBody"] = body;
        }
        op
    }
}

fn json_body(schema: Value, required: bool) -> Value {
    json!({"required": required, "content": {"application/json": {"schema": schema}}})
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

/// The 401 of an endpoint that needs credentials, and its 503 when Redis is unreachable.
fn authenticated(r: &mut Responses, session_only: bool) {
    r.error(
        "401",
        if session_only {
            "`unauthorized` (no session, or an API key was sent: this endpoint takes the session cookie only) or `session_expired`."
        } else {
            "`unauthorized`, `invalid_api_key` or `session_expired`."
        },
        &[],
    );
    r.error(
        "403",
        "`cross_site_request`: a session-authenticated request from another site.",
        &[],
    );
    r.error(
        "503",
        "`ledger_unavailable`: Redis is unreachable; or `server_busy`.",
        &["retry-after"],
    );
}

fn body_errors(r: &mut Responses) {
    r.error(
        "400",
        "`invalid_body`: the body is not the expected JSON; `invalid_parameter` naming the field; or `bad_request`.",
        &[],
    );
    r.error("413", "`payload_too_large`.", &[]);
}

pub(super) fn paths(config: &Config) -> Value {
    let mut paths = Map::new();
    let mut add = |path: &str, method: &str, op: Op| {
        let item = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        item[method] = op.value();
    };
    paths_insert(&mut add);
    paths.insert(
        "/api/v1/screenshot".into(),
        capture::path_item(&config.capture),
    );
    if let Value::Object(probes) = probes() {
        paths.extend(probes);
    }
    Value::Object(paths)
}

fn paths_insert(add: &mut impl FnMut(&str, &str, Op)) {
    // Async capture jobs.
    let job_id =
        json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    let job = json!({
        "type": "object",
        "required": ["id", "status", "created_at", "finished_at"],
        "properties": {
            "id": {"type": "string"},
            "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed"]},
            "created_at": {"type": "string", "format": "date-time"},
            "finished_at": {"type": ["string", "null"], "format": "date-time"},
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "The code a synchronous capture would have answered."},
                    "message": {"type": "string"},
                },
            },
            "image_url": {"type": "string", "description": "Where the image is served (succeeded jobs, until the result expires)."},
            "format": {"type": "string"},
            "width": {"type": "integer"},
            "height": {"type": "integer"},
            "bytes": {"type": "integer"},
            "webhook": {"type": "string", "enum": ["pending", "delivered", "gave_up"], "description": "The webhook's delivery, once the job finished."},
        },
    });
    let mut r = Responses::new();
    r.json(
        "200",
        "The job (`async=true` capture) of this account.",
        job,
        &[],
    );
    r.error(
        "404",
        "`not_found`: this account has no such job, or it expired.",
        &[],
    );
    authenticated(&mut r, false);
    add(
        "/api/v1/screenshots/{id}",
        "get",
        Op {
            id: "getScreenshotJob",
            tag: "screenshots",
            summary: "An async capture job's status",
            security: key_or_session(),
            parameters: vec![job_id.clone()],
            body: None,
            responses: r,
        },
    );
    let mut r = Responses::new();
    let binary =
        json!({"schema": {"type": "string", "contentMediaType": "application/octet-stream"}});
    r.add(
        "200",
        json!({
            "description": "The job's image, until the job expires.",
            "headers": super::headers(&["x-request-id"]),
            "content": {
                "image/png": binary,
                "image/jpeg": binary,
                "image/webp": binary,
                "application/pdf": binary,
            },
        }),
    );
    r.error("404", "`not_found`: this account has no such job, it expired, or it has no image (not succeeded).", &[]);
    authenticated(&mut r, false);
    add(
        "/api/v1/screenshots/{id}/image",
        "get",
        Op {
            id: "getScreenshotJobImage",
            tag: "screenshots",
            summary: "An async capture job's image",
            security: key_or_session(),
            parameters: vec![job_id],
            body: None,
            responses: r,
        },
    );
    // Accounts.
    let mut r = Responses::new();
    r.json(
        "201",
        "The account, logged in (5 free credits).",
        ref_schema("Account"),
        &["set-cookie"],
    );
    body_errors(&mut r);
    r.error("403", "`signup_disabled`, or `cross_site_request`.", &[]);
    r.error("409", "`email_taken`.", &[]);
    r.error(
        "429",
        "`rate_limited`: too many attempts from this address.",
        &["retry-after"],
    );
    r.error(
        "503",
        "`ledger_unavailable`, or `server_busy`.",
        &["retry-after"],
    );
    add(
        "/api/v1/auth/signup",
        "post",
        Op {
            id: "signup",
            tag: "account",
            summary: "Create an account and log in",
            security: public(),
            parameters: vec![],
            body: Some(json_body(ref_schema("Credentials"), true)),
            responses: r,
        },
    );
    let mut r = Responses::new();
    r.json(
        "200",
        "The account, logged in.",
        ref_schema("Account"),
        &["set-cookie"],
    );
    body_errors(&mut r);
    r.error(
        "401",
        "`invalid_credentials`: a wrong email or password alike.",
        &[],
    );
    r.error("403", "`cross_site_request`.", &[]);
    r.error(
        "429",
        "`rate_limited`: too many attempts for this email or from this address.",
        &["retry-after"],
    );
    r.error(
        "503",
        "`ledger_unavailable`, or `server_busy`.",
        &["retry-after"],
    );
    add(
        "/api/v1/auth/login",
        "post",
        Op {
            id: "login",
            tag: "account",
            summary: "Log in (sets the session cookie)",
            security: public(),
            parameters: vec![],
            body: Some(json_body(ref_schema("Credentials"), true)),
            responses: r,
        },
    );
    let mut r = Responses::new();
    r.empty(
        "204",
        "Logged out: the session is revoked and the cookie cleared.",
        &["set-cookie"],
    );
    r.error("403", "`cross_site_request`.", &[]);
    r.error(
        "503",
        "`ledger_unavailable`, or `server_busy`.",
        &["retry-after"],
    );
    add(
        "/api/v1/auth/logout",
        "post",
        Op {
            id: "logout",
            tag: "account",
            summary: "Log out",
            security: public(),
            parameters: vec![],
            body: None,
            responses: r,
        },
    );
    let mut r = Responses::new();
    r.json("200", "The caller's account.", ref_schema("Account"), &[]);
    authenticated(&mut r, false);
    add(
        "/api/v1/me",
        "get",
        Op {
            id: "me",
            tag: "account",
            summary: "Who is calling",
            security: key_or_session(),
            parameters: vec![],
            body: None,
            responses: r,
        },
    );

    // API keys.
    let mut r = Responses::new();
    r.json(
        "201",
        "The new key; `key` is shown this once.",
        ref_schema("NewApiKey"),
        &[],
    );
    body_errors(&mut r);
    authenticated(&mut r, true);
    add(
        "/api/v1/keys",
        "post",
        Op {
            id: "createKey",
            tag: "keys",
            summary: "Create an API key",
            security: session_only(),
            parameters: vec![],
            body: Some(json_body(
                json!({
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {"name": {"type": ["string", "null"], "description": "Default: `default`."}},
                }),
                false,
            )),
            responses: r,
        },
    );
    let mut r = Responses::new();
    r.json(
        "200",
        "The account's keys (never their secrets).",
        json!({
            "type": "object",
            "required": ["keys"],
            "properties": {"keys": {"type": "array", "items": ref_schema("ApiKey")}},
        }),
        &[],
    );
    authenticated(&mut r, true);
    add(
        "/api/v1/keys",
        "get",
        Op {
            id: "listKeys",
            tag: "keys",
            summary: "List API keys",
            security: session_only(),
            parameters: vec![],
            body: None,
            responses: r,
        },
    );
    let mut r = Responses::new();
    r.empty("204", "Revoked: the key stops working at once.", &[]);
    r.error("404", "`not_found`: this account has no such key.", &[]);
    authenticated(&mut r, true);
    add(
        "/api/v1/keys/{id}",
        "delete",
        Op {
            id: "revokeKey",
            tag: "keys",
            summary: "Revoke an API key",
            security: session_only(),
            parameters: vec![
                json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}),
            ],
            body: None,
            responses: r,
        },
    );
    let mut r = Responses::new();
    r.json(
        "201",
        "The key's new link-signing secret, shown this once; it replaces any the key had (links signed with that one stop working).",
        ref_schema("SigningSecret"),
        &[],
    );
    r.error("404", "`not_found`: this account has no such key.", &[]);
    authenticated(&mut r, true);
    add(
        "/api/v1/keys/{id}/signing-secret",
        "post",
        Op {
            id: "rotateSigningSecret",
            tag: "keys",
            summary: "Make or replace an API key's link-signing secret (signed links)",
            security: session_only(),
            parameters: vec![
                json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}),
            ],
            body: None,
            responses: r,
        },
    );
    let mut r = Responses::new();
    r.empty(
        "204",
        "The key has no signing secret now: links signed with it stop working at once.",
        &[],
    );
    r.error("404", "`not_found`: this account has no such key.", &[]);
    authenticated(&mut r, true);
    add(
        "/api/v1/keys/{id}/signing-secret",
        "delete",
        Op {
            id: "revokeSigningSecret",
            tag: "keys",
            summary: "Revoke an API key's link-signing secret",
            security: session_only(),
            parameters: vec![
                json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}),
            ],
            body: None,
            responses: r,
        },
    );

    // Credits.
    let mut r = Responses::new();
    r.json(
        "200",
        "The balance and the low-balance prompt.",
        ref_schema("Credits"),
        &[],
    );
    authenticated(&mut r, false);
    add(
        "/api/v1/credits",
        "get",
        Op {
            id: "credits",
            tag: "credits",
            summary: "Balance",
            security: key_or_session(),
            parameters: vec![],
            body: None,
            responses: r,
        },
    );
    let mut r = Responses::new();
    r.json(
        "200",
        "The credit packs.",
        json!({"type": "array", "items": ref_schema("Pack")}),
        &[],
    );
    add(
        "/api/v1/credits/packs",
        "get",
        Op {
            id: "packs",
            tag: "credits",
            summary: "Credit packs (public)",
            security: public(),
            parameters: vec![],
            body: None,
            responses: r,
        },
    );
    let tx_types: Vec<&str> = TxKind::ALL.iter().map(|k| k.as_str()).collect();
    let mut r = Responses::new();
    r.json(
        "200",
        "One page of the history, newest first.",
        json!({
            "type": "object",
            "required": ["transactions", "total", "limit", "offset"],
            "properties": {
                "transactions": {"type": "array", "items": ref_schema("Transaction")},
                "total": {"type": "integer", "description": "Transactions in all (of `type`, when given)."},
                "limit": {"type": "integer"},
                "offset": {"type": "integer"},
            },
        }),
        &[],
    );
    r.error(
        "400",
        "`invalid_parameter`: a bad or unknown query parameter; or `bad_request`.",
        &[],
    );
    authenticated(&mut r, false);
    add(
        "/api/v1/credits/transactions",
        "get",
        Op {
            id: "transactions",
            tag: "credits",
            summary: "Transaction history",
            security: key_or_session(),
            parameters: vec![
                query(
                    "limit",
                    "Page size.",
                    json!({"type": "integer", "minimum": 1, "maximum": crate::api::credits::MAX_LIMIT, "default": 20}),
                ),
                query(
                    "offset",
                    "Transactions to skip.",
                    json!({"type": "integer", "minimum": 0, "maximum": 10_000_000, "default": 0}),
                ),
                query(
                    "type",
                    "Keep one transaction type.",
                    json!({"type": "string", "enum": tx_types}),
                ),
            ],
            body: None,
            responses: r,
        },
    );
    let mut r = Responses::new();
    r.json(
        "200",
        "Captures charged, and captures served free from the cache, per UTC day, oldest first, every day present.",
        json!({
            "type": "object",
            "required": ["days", "total", "totalCacheHits"],
            "properties": {
                "days": {"type": "array", "items": {
                    "type": "object",
                    "required": ["date", "captures", "cacheHits"],
                    "properties": {"date": {"type": "string", "format": "date"}, "captures": {"type": "integer"}, "cacheHits": {"type": "integer"}},
                }},
                "total": {"type": "integer"},
                "totalCacheHits": {"type": "integer"},
            },
        }),
        &[],
    );
    r.error(
        "400",
        "`invalid_parameter`: a bad or unknown query parameter; or `bad_request`.",
        &[],
    );
    authenticated(&mut r, false);
    add(
        "/api/v1/credits/usage",
        "get",
        Op {
            id: "usage",
            tag: "credits",
            summary: "Usage per day",
            security: key_or_session(),
            parameters: vec![query(
                "days",
                "How many days back.",
                json!({"type": "integer", "minimum": 1, "maximum": 366, "default": 30}),
            )],
            body: None,
            responses: r,
        },
    );
    let mut r = Responses::new();
    r.json(
        "200",
        "The auto top-up settings.",
        ref_schema("AutoTopupSettings"),
        &[],
    );
    authenticated(&mut r, false);
    add(
        "/api/v1/credits/auto-topup",
        "get",
        Op {
            id: "autoTopup",
            tag: "credits",
            summary: "Auto top-up settings",
            security: key_or_session(),
            parameters: vec![],
            body: None,
            responses: r,
        },
    );
    let mut r = Responses::new();
    r.json(
        "200",
        "The new settings.",
        ref_schema("AutoTopupSettings"),
        &[],
    );
    body_errors(&mut r);
    r.error("400", "`invalid_body`, `invalid_parameter` (naming each field), `url_not_allowed` (the notification URL), or `bad_request`.", &[]);
    authenticated(&mut r, true);
    add(
        "/api/v1/credits/auto-topup",
        "put",
        Op {
            id: "setAutoTopup",
            tag: "credits",
            summary: "Change auto top-up (any subset of the fields)",
            security: session_only(),
            parameters: vec![],
            body: Some(json_body(
                json!({
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "enabled": {"type": ["boolean", "null"]},
                        "threshold": {"type": ["integer", "null"], "minimum": 1, "maximum": 1_000_000_000},
                        "packId": {"type": ["string", "null"]},
                        "notificationUrl": {"type": ["string", "null"], "description": "An http(s) URL the egress policy allows; null or \"\" removes it."},
                    },
                }),
                true,
            )),
            responses: r,
        },
    );

    // Payments.
    let mut r = Responses::new();
    r.json(
        "200",
        "A Polar checkout for the pack: send the customer there.",
        json!({"type": "object", "required": ["checkoutUrl"], "properties": {"checkoutUrl": {"type": "string"}}}),
        &[],
    );
    body_errors(&mut r);
    r.error(
        "400",
        "`unknown_pack`, `invalid_body`, or `bad_request`.",
        &[],
    );
    authenticated(&mut r, true);
    r.error(
        "502",
        "`payment_provider_error`: Polar could not start a checkout; nothing recorded.",
        &[],
    );
    r.error(
        "503",
        "`payments_not_configured`, `ledger_unavailable` or `server_busy`.",
        &["retry-after"],
    );
    add(
        "/api/v1/credits/purchase",
        "post",
        Op {
            id: "purchase",
            tag: "payments",
            summary: "Buy a credit pack",
            security: session_only(),
            parameters: vec![],
            body: Some(json_body(
                json!({
                    "type": "object",
                    "required": ["packId"],
                    "additionalProperties": false,
                    "properties": {
                        "packId": {"type": "string"},
                        "autoTopup": {"type": "boolean", "description": "Bought from the low-balance prompt: recorded as auto_topup."},
                    },
                }),
                true,
            )),
            responses: r,
        },
    );
    let signed = |name: &str| json!({"name": name, "in": "header", "required": true, "schema": {"type": "string"}});
    let mut r = Responses::new();
    r.json(
        "200",
        "Handled (or ignored: an event type that is not used).",
        json!({"type": "object", "required": ["received"], "properties": {"received": {"const": true}}}),
        &[],
    );
    body_errors(&mut r);
    r.error("401", "`invalid_signature`: the signature, timestamp or secret does not check out; nothing changed.", &[]);
    r.error(
        "409",
        "`order_not_credited`: a refund before its payment; Polar retries.",
        &[],
    );
    r.error(
        "503",
        "`ledger_unavailable` (Polar retries), or `server_busy`.",
        &["retry-after"],
    );
    add(
        "/api/v1/webhooks/polar",
        "post",
        Op {
            id: "polarWebhook",
            tag: "payments",
            summary: "Polar's webhook deliveries (Standard Webhooks signature)",
            security: public(),
            parameters: vec![
                signed("webhook-id"),
                signed("webhook-timestamp"),
                signed("webhook-signature"),
            ],
            body: Some(json_body(json!({"type": "object"}), true)),
            responses: r,
        },
    );

    // The service.
    let mut r = Responses::new();
    r.json("200", "This document.", json!({"type": "object"}), &[]);
    add(
        "/api/v1/openapi.json",
        "get",
        Op {
            id: "openapi",
            tag: "service",
            summary: "This OpenAPI document",
            security: public(),
            parameters: vec![],
            body: None,
            responses: r,
        },
    );
}

/// `/healthz` and `/readyz` (they carry no request id).
fn probes() -> Value {
    let plain = |description: &str, schema: Value| json!({"description": description, "content": {"application/json": {"schema": schema}}});
    let readiness = json!({
        "type": "object",
        "required": ["status", "ledger", "browsers_ready", "browsers_total", "queue_depth", "in_flight"],
        "properties": {
            "status": {"type": "string", "enum": ["ready", "not_ready"]},
            "ledger": {"type": "string", "enum": ["ok", "unavailable"]},
            "browsers_ready": {"type": "integer"},
            "browsers_total": {"type": "integer"},
            "queue_depth": {"type": "integer"},
            "in_flight": {"type": "integer"},
        },
    });
    let mut health = Responses::new();
    health.add(
        "200",
        plain(
            "The process answers.",
            json!({"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}),
        ),
    );
    let mut ready = Responses::new();
    ready.add(
        "200",
        plain(
            "At least one browser can take work and Redis answers.",
            readiness.clone(),
        ),
    );
    ready.add(
        "503",
        plain(
            "Not ready (or `server_busy`, as the JSON error body).",
            json!({"oneOf": [readiness, ref_schema("Error")]}),
        ),
    );
    json!({
        "/healthz": {"get": {
            "operationId": "healthz", "tags": ["service"], "summary": "Liveness",
            "security": public(), "responses": health.into_value(),
        }},
        "/readyz": {"get": {
            "operationId": "readyz", "tags": ["service"], "summary": "Readiness",
            "security": public(), "responses": ready.into_value(),
        }},
    })
}
