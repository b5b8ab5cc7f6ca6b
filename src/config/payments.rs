//! `[payments]`: buying credits through Polar (which server, its token, the webhook secret,
//! products).

use serde::{Deserialize, Serialize};

/// Which Polar API a checkout goes to.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PolarServer {
    /// Payments are off: `POST /credits/purchase` answers 503 `payments_not_configured`.
    #[default]
    Off,
    Sandbox,
    Production,
}

/// How the webhook secret is written in config.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum WebhookSecretFormat {
    /// As Polar's dashboard shows it; its bytes are the HMAC key (what Polar's SDKs do).
    #[default]
    Polar,
    /// Standard Webhooks: `whsec_` followed by the base64 of the key.
    Standard,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PaymentsConfig {
    /// `off`, `sandbox` (https://sandbox-api.polar.sh) or `production` (https://api.polar.sh).
    pub polar_server: PolarServer,
    /// Overrides the server's base URL (a proxy, or a stand-in in tests); empty = the server's.
    pub polar_api_url: String,
    /// An organization access token (secret: prefer `SHOTFARM_PAYMENTS__POLAR_ACCESS_TOKEN`).
    pub polar_access_token: String,
    /// The Polar webhook endpoint's secret (prefer `SHOTFARM_PAYMENTS__WEBHOOK_SECRET`); empty =
    /// `POST /api/v1/webhooks/polar` refuses every delivery.
    pub webhook_secret: String,
    pub webhook_secret_format: WebhookSecretFormat,
    /// Where Polar sends the customer after paying; empty = `{auth.public_url}/dashboard/credits?checkout=success`.
    pub success_url: String,
    /// How long a call to Polar's API may take, in milliseconds.
    pub timeout_ms: u64,
    /// Pack id → Polar product id, e.g. `pack_pro = "5f0c…"`.
    pub products: std::collections::BTreeMap<String, String>,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            polar_server: PolarServer::Off,
            polar_api_url: String::new(),
            polar_access_token: String::new(),
            webhook_secret: String::new(),
            webhook_secret_format: WebhookSecretFormat::Polar,
            success_url: String::new(),
            timeout_ms: 10_000,
            products: std::collections::BTreeMap::new(),
        }
    }
}
