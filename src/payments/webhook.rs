//! Standard Webhooks signatures (what Polar signs its deliveries with): HMAC-SHA256 over
//! `webhook-id.webhook-timestamp.body`, compared in constant time, timestamps within 5 minutes.

use crate::config::WebhookSecretFormat;

/// Checks deliveries signed with one secret.
pub struct Verifier {
    hook: standardwebhooks::Webhook,
}

impl Verifier {
    /// `secret` as config holds it: Polar's form (its bytes are the key) or `whsec_<base64>`.
    pub fn new(secret: &str, format: WebhookSecretFormat) -> Result<Verifier, String> {
        let hook = match format {
            WebhookSecretFormat::Polar => {
                standardwebhooks::Webhook::from_bytes(secret.as_bytes().to_vec())
            }
            WebhookSecretFormat::Standard => standardwebhooks::Webhook::new(secret),
        }
        .map_err(|e| e.to_string())?;
        Ok(Verifier { hook })
    }

    /// `Ok` when `body` carries a valid, fresh signature in `headers`; else why not.
    pub fn verify(&self, body: &[u8], headers: &http::HeaderMap) -> Result<(), String> {
        self.hook.verify(body, headers).map_err(|e| e.to_string())
    }
}
