//! Polar's API, the part we use: creating a checkout, and the order events its webhooks carry.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::config::{PaymentsConfig, PolarServer};

/// Polar's API: its sandbox and production servers.
const SANDBOX_API: &str = "https://sandbox-api.polar.sh";
const PRODUCTION_API: &str = "https://api.polar.sh";

/// The base URL of Polar's API for these settings (`payments.polar_api_url` when set, else the
/// server's own), or `None` when payments are off (whatever the URL says).
pub fn api_base(config: &PaymentsConfig) -> Option<String> {
    if config.polar_server == PolarServer::Off {
        return None;
    }
    if !config.polar_api_url.is_empty() {
        return Some(config.polar_api_url.trim_end_matches('/').to_string());
    }
    match config.polar_server {
        PolarServer::Off => None,
        PolarServer::Sandbox => Some(SANDBOX_API.into()),
        PolarServer::Production => Some(PRODUCTION_API.into()),
    }
}

/// A checkout to create for one pack.
pub struct CheckoutRequest<'a> {
    pub product_id: &'a str,
    pub success_url: &'a str,
    pub account_id: &'a str,
    pub email: &'a str,
    pub pack_id: &'a str,
    pub auto_topup: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PolarError {
    #[error("Polar could not be reached: {0}")]
    Unreachable(String),
    #[error("Polar answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("Polar's answer was not what its API documents: {0}")]
    Malformed(String),
}

/// A client of one Polar organization.
pub struct Polar {
    http: reqwest::Client,
    base: String,
    token: String,
}

#[derive(Deserialize)]
struct Checkout {
    url: String,
}

/// One page of `GET /v1/orders/`.
#[derive(Debug, Deserialize)]
pub struct OrderPage {
    pub items: Vec<Order>,
    pub pagination: Pagination,
}

#[derive(Debug, Deserialize)]
pub struct Pagination {
    pub max_page: u32,
}

impl Polar {
    pub fn new(base: String, token: String, timeout: Duration) -> Result<Polar, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("shotfarm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Polar { http, base, token })
    }

    /// `POST /v1/checkouts/` → the URL to send the customer to.
    pub async fn create_checkout(&self, req: &CheckoutRequest<'_>) -> Result<String, PolarError> {
        let body = serde_json::json!({
            "products": [req.product_id],
            "success_url": req.success_url,
            "external_customer_id": req.account_id,
            "customer_email": req.email,
            "metadata": {
                "account_id": req.account_id,
                "pack_id": req.pack_id,
                "auto_topup": req.auto_topup,
            },
        });
        let response = self
            .http
            .post(format!("{}/v1/checkouts/", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await;
        let text = body_of(response).await?;
        let checkout: Checkout =
            serde_json::from_str(&text).map_err(|e| PolarError::Malformed(e.to_string()))?;
        if !checkout.url.starts_with("https://") && !checkout.url.starts_with("http://") {
            return Err(PolarError::Malformed(checkout.url));
        }
        Ok(checkout.url)
    }

    /// `GET /v1/orders/?page=&limit=100&sorting=created_at`: one page of the organization's
    /// orders, oldest first (reconciliation reads them all).
    pub async fn orders(&self, page: u32) -> Result<OrderPage, PolarError> {
        let response = self
            .http
            .get(format!("{}/v1/orders/", self.base))
            .query(&[
                ("page", page.to_string()),
                ("limit", "100".to_string()),
                ("sorting", "created_at".to_string()),
            ])
            .bearer_auth(&self.token)
            .send()
            .await;
        let text = body_of(response).await?;
        serde_json::from_str(&text).map_err(|e| PolarError::Malformed(e.to_string()))
    }
}

/// The body of a successful answer, or why there is none (the start of an error body kept).
async fn body_of(sent: reqwest::Result<reqwest::Response>) -> Result<String, PolarError> {
    let response = sent.map_err(|e| PolarError::Unreachable(e.to_string()))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| PolarError::Unreachable(e.to_string()))?;
    if status.is_success() {
        return Ok(text);
    }
    // At most 500 bytes, cut on a character boundary (the body is someone else's text).
    let cut = (0..=text.len().min(500))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    Err(PolarError::Status {
        status: status.as_u16(),
        body: text[..cut].to_string(),
    })
}

/// A webhook delivery: `{"type": …, "timestamp": …, "data": …}`.
#[derive(Debug, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub data: Value,
}

/// The fields of Polar's `Order` we read.
#[derive(Debug, Deserialize)]
pub struct Order {
    pub id: String,
    #[serde(default)]
    pub product_id: Option<String>,
    #[serde(default)]
    pub product: Option<Product>,
    #[serde(default)]
    pub customer: Option<Customer>,
    #[serde(default)]
    pub metadata: BTreeMap<String, Value>,
    #[serde(default)]
    pub total_amount: i64,
    #[serde(default)]
    pub refunded_amount: i64,
    /// `pending`, `paid`, `refunded`, `partially_refunded` (empty when a payload lacks it).
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub paid: bool,
}

#[derive(Debug, Deserialize)]
pub struct Product {
    pub id: String,
}

#[derive(Debug, Deserialize)]
pub struct Customer {
    #[serde(default)]
    pub external_id: Option<String>,
}

impl Order {
    /// Whether the order was paid (refunded orders were paid first).
    pub fn is_paid(&self) -> bool {
        self.paid
            || matches!(
                self.status.as_str(),
                "paid" | "refunded" | "partially_refunded"
            )
    }

    pub fn product(&self) -> Option<&str> {
        self.product_id
            .as_deref()
            .or(self.product.as_ref().map(|p| p.id.as_str()))
    }

    /// Our account id: the checkout's metadata, else the customer's external id.
    pub fn account(&self) -> Option<&str> {
        self.metadata
            .get("account_id")
            .and_then(Value::as_str)
            .or(self
                .customer
                .as_ref()
                .and_then(|c| c.external_id.as_deref()))
    }

    /// Whether the checkout was started from the low-balance (auto top-up) prompt.
    pub fn is_auto_topup(&self) -> bool {
        match self.metadata.get("auto_topup") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true",
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_error_body_is_kept_short_and_cut_between_characters() {
        // 300 two-byte characters: byte 500 falls inside none, 501 would split one.
        let answer = http::Response::builder()
            .status(502)
            .body(format!("x{}", "é".repeat(300)))
            .expect("response");
        match body_of(Ok(reqwest::Response::from(answer))).await {
            Err(PolarError::Status { status, body }) => {
                assert_eq!(status, 502);
                assert!(body.len() <= 500 && body.len() >= 499, "{}", body.len());
                assert!(body.starts_with("xé"));
            }
            other => panic!("{other:?}"),
        }
        let ok = http::Response::builder()
            .status(200)
            .body("{}".to_string())
            .expect("response");
        assert_eq!(
            body_of(Ok(reqwest::Response::from(ok)))
                .await
                .ok()
                .as_deref(),
            Some("{}")
        );
    }
}
