//! Buying credits: Polar checkouts, and signed webhooks that credit exactly once.
//!
//! - [`polar`]: the Polar API client (create a checkout) and the order events it sends.
//! - [`webhook`]: Standard Webhooks signature checks.
//!
//! What a paid order is worth comes from our own config (Polar product id → pack → credits),
//! never from the payload. Every grant carries the Polar order id as its ledger reference, so
//! duplicate, replayed and concurrent deliveries of one order credit it once. A refund takes
//! back the order's refunded share of credits, never more than the account has unspent and
//! never below zero, as a `refund` transaction; successive partial refunds of one order each
//! take their new share (Polar reports the cumulative amount). A refund that arrives before
//! its order's payment is answered 409 and applied on Polar's retry.

pub(crate) mod polar;
pub(crate) mod webhook;

use std::collections::HashMap;
use std::time::Duration;

use crate::config::{Config, PackConfig};
use crate::ledger::{Ledger, LedgerError, Op, Outcome, TxKind};
use crate::live::Live;
use crate::telemetry::events::WebhookResult;
use polar::{CheckoutRequest, Event, Order, Polar, PolarError};
use webhook::Verifier;

#[derive(Debug, thiserror::Error)]
pub enum PaymentsError {
    #[error("no pack has the id `{0}`")]
    UnknownPack(String),
    #[error("payments are not configured on this server")]
    NotConfigured,
    #[error(transparent)]
    Provider(#[from] PolarError),
    #[error("the webhook signature is not valid: {0}")]
    BadSignature(String),
    #[error("the webhook payload is not a Polar event: {0}")]
    BadPayload(String),
    /// A refund of an order whose payment is not recorded yet (the deliveries crossed):
    /// nothing changed, and Polar's retry will apply it once the payment is in.
    #[error("order {0} is refunded, but its payment is not recorded yet; retry later")]
    NotCreditedYet(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// What a verified delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// `order.paid`: credits granted (or already granted by an earlier delivery).
    Credited {
        account: String,
        credits: i64,
        duplicate: bool,
    },
    /// `order.refunded`: `credits` taken back (the newly refunded share, fewer when they were
    /// spent; 0 for a duplicate).
    Refunded {
        account: String,
        credits: i64,
        duplicate: bool,
    },
    /// Another event type, or an order we cannot place; acknowledged so Polar stops retrying.
    Ignored(String),
}

/// What a reconciliation did: every paid order of the organization applied (again).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Orders read from Polar.
    pub orders: u64,
    /// Paid orders whose grant was missing and is now applied.
    pub credited: u64,
    /// Paid orders already granted (nothing changed).
    pub already_credited: u64,
    /// Refunded shares taken back now.
    pub refunded: u64,
    /// Orders that are not ours to apply (unpaid, another product, no or unknown account).
    pub ignored: u64,
}

impl Handled {
    /// The `result` label of `shotfarm_webhooks_total`.
    pub fn result(&self) -> WebhookResult {
        match self {
            Handled::Credited {
                duplicate: false, ..
            } => WebhookResult::Credited,
            Handled::Refunded {
                duplicate: false, ..
            } => WebhookResult::Refunded,
            Handled::Credited { .. } | Handled::Refunded { .. } => WebhookResult::Duplicate,
            Handled::Ignored(_) => WebhookResult::Ignored,
        }
    }
}

/// The payments side of one daemon.
pub struct Payments {
    polar: Option<Polar>,
    verifier: Option<Verifier>,
    success_url: String,
    /// The running configuration: the packs (names, prices, credits) are read from it, so a
    /// reload (SIGHUP) changes what a paid order is worth from then on.
    config: Live<Config>,
    product_of_pack: HashMap<String, String>,
    pack_of_product: HashMap<String, String>,
}

impl Payments {
    /// Payments on a fixed configuration (the operator commands, tests).
    pub fn new(config: &Config) -> Result<Payments, String> {
        Payments::on_live(Live::new(config.clone()))
    }

    /// Payments on the daemon's running configuration: credentials and product ids as they are
    /// now (they need a restart to change), packs as they are at each use.
    pub fn on_live(live: Live<Config>) -> Result<Payments, String> {
        let config = live.get();
        let p = &config.payments;
        let polar = match polar::api_base(p) {
            Some(base) if !p.polar_access_token.is_empty() => Some(Polar::new(
                base,
                p.polar_access_token.clone(),
                Duration::from_millis(p.timeout_ms),
            )?),
            _ => None,
        };
        let verifier = if p.webhook_secret.is_empty() {
            None
        } else {
            Some(Verifier::new(&p.webhook_secret, p.webhook_secret_format)?)
        };
        let success_url = if p.success_url.is_empty() {
            format!(
                "{}/dashboard/credits?checkout=success",
                config.auth.public_url.trim_end_matches('/')
            )
        } else {
            p.success_url.clone()
        };
        Ok(Payments {
            polar,
            verifier,
            success_url,
            config: live.clone(),
            product_of_pack: p.products.clone().into_iter().collect(),
            pack_of_product: p
                .products
                .iter()
                .map(|(pack, product)| (product.clone(), pack.clone()))
                .collect(),
        })
    }

    pub fn pack(&self, id: &str) -> Option<PackConfig> {
        self.config
            .get()
            .credits
            .packs
            .iter()
            .find(|p| p.id == id)
            .cloned()
    }

    /// Every pack on sale, in config order, as the running configuration has them.
    pub fn packs(&self) -> Vec<PackConfig> {
        self.config.get().credits.packs.clone()
    }

    /// A Polar checkout for `pack_id` → the URL to send the customer to.
    pub async fn checkout(
        &self,
        account_id: &str,
        email: &str,
        pack_id: &str,
        auto_topup: bool,
    ) -> Result<String, PaymentsError> {
        if self.pack(pack_id).is_none() {
            return Err(PaymentsError::UnknownPack(pack_id.to_string()));
        }
        let (Some(polar), Some(product_id)) = (&self.polar, self.product_of_pack.get(pack_id))
        else {
            return Err(PaymentsError::NotConfigured);
        };
        let url = polar
            .create_checkout(&CheckoutRequest {
                product_id,
                success_url: &self.success_url,
                account_id,
                email,
                pack_id,
                auto_topup,
            })
            .await?;
        Ok(url)
    }

    /// Verifies and applies one webhook delivery.
    pub async fn handle_webhook(
        &self,
        ledger: &Ledger,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<(String, Handled), PaymentsError> {
        let Some(verifier) = &self.verifier else {
            return Err(PaymentsError::BadSignature(
                "no webhook secret is configured".into(),
            ));
        };
        verifier
            .verify(body, headers)
            .map_err(PaymentsError::BadSignature)?;
        let event: Event =
            serde_json::from_slice(body).map_err(|e| PaymentsError::BadPayload(e.to_string()))?;
        let handled = match event.kind.as_str() {
            "order.paid" | "order.refunded" => {
                let order: Order = serde_json::from_value(event.data)
                    .map_err(|e| PaymentsError::BadPayload(e.to_string()))?;
                if event.kind == "order.paid" {
                    self.credit(ledger, &order).await?
                } else {
                    self.claw_back(ledger, &order).await?
                }
            }
            other => Handled::Ignored(format!("event type `{other}` is not used")),
        };
        Ok((event.kind, handled))
    }

    /// Applies every order of the organization, as the webhooks would have: a paid order's grant
    /// (keyed by its id, so applying it again changes nothing) and its refunded share. Repairs
    /// grants lost to a missed webhook or a Redis failover.
    pub async fn reconcile(&self, ledger: &Ledger) -> Result<Reconciled, PaymentsError> {
        let Some(polar) = &self.polar else {
            return Err(PaymentsError::NotConfigured);
        };
        let mut report = Reconciled::default();
        let mut page = 1;
        loop {
            let orders = polar.orders(page).await?;
            for order in &orders.items {
                report.orders += 1;
                if !order.is_paid() {
                    report.ignored += 1;
                    continue;
                }
                match self.credit(ledger, order).await? {
                    Handled::Credited {
                        duplicate: false, ..
                    } => report.credited += 1,
                    Handled::Credited { .. } => report.already_credited += 1,
                    _ => {
                        report.ignored += 1;
                        continue;
                    }
                }
                if order.refunded_amount > 0 {
                    if let Handled::Refunded {
                        duplicate: false, ..
                    } = self.claw_back(ledger, order).await?
                    {
                        report.refunded += 1;
                    }
                }
            }
            if page >= orders.pagination.max_page || orders.items.is_empty() {
                return Ok(report);
            }
            page += 1;
        }
    }

    /// The account and pack of an order, or why it cannot be placed.
    fn place<'a>(&self, order: &'a Order) -> Result<(&'a str, PackConfig), String> {
        let product = order.product().ok_or("the order names no product")?;
        let pack = self
            .pack_of_product
            .get(product)
            .and_then(|id| self.pack(id))
            .ok_or_else(|| format!("product {product} is not mapped to a pack"))?;
        let account = order
            .account()
            .ok_or("the order carries no account id (metadata or external customer id)")?;
        Ok((account, pack))
    }

    async fn credit(&self, ledger: &Ledger, order: &Order) -> Result<Handled, PaymentsError> {
        let (account, pack) = match self.place(order) {
            Ok(placed) => placed,
            Err(why) => return Ok(Handled::Ignored(format!("order {}: {why}", order.id))),
        };
        let (kind, what) = if order.is_auto_topup() {
            (TxKind::AutoTopup, "Auto top-up")
        } else {
            (TxKind::Purchase, "Purchased")
        };
        let outcome = ledger
            .run(Op::order_grant(
                account,
                &order.id,
                pack.credits,
                kind,
                format!("{what}: {} pack ({} credits)", pack.name, pack.credits),
            ))
            .await?;
        Ok(match outcome {
            Outcome::Granted { .. } => Handled::Credited {
                account: account.to_string(),
                credits: pack.credits,
                duplicate: false,
            },
            Outcome::Duplicate { .. } => Handled::Credited {
                account: account.to_string(),
                credits: pack.credits,
                duplicate: true,
            },
            Outcome::NoAccount => {
                Handled::Ignored(format!("order {}: no account {account}", order.id))
            }
            other => return Err(LedgerError::Protocol(format!("grant: {other:?}")).into()),
        })
    }

    async fn claw_back(&self, ledger: &Ledger, order: &Order) -> Result<Handled, PaymentsError> {
        let (account, pack) = match self.place(order) {
            Ok(placed) => placed,
            Err(why) => return Ok(Handled::Ignored(format!("order {}: {why}", order.id))),
        };
        let refunded = refunded_share(pack.credits, order.refunded_amount, order.total_amount);
        if refunded == 0 {
            return Ok(Handled::Ignored(format!(
                "order {}: nothing refunded",
                order.id
            )));
        }
        let outcome = ledger
            .run(Op::Refund {
                account: account.to_string(),
                order: order.id.clone(),
                refunded,
                description: format!(
                    "Refund of a {} pack order ({refunded} of {} credits refunded)",
                    pack.name, pack.credits
                ),
            })
            .await?;
        Ok(match outcome {
            Outcome::Refunded { taken, .. } => Handled::Refunded {
                account: account.to_string(),
                credits: taken,
                duplicate: false,
            },
            Outcome::Duplicate { .. } => Handled::Refunded {
                account: account.to_string(),
                credits: 0,
                duplicate: true,
            },
            Outcome::NotCredited { .. } => {
                return Err(PaymentsError::NotCreditedYet(order.id.clone()))
            }
            Outcome::NoAccount => {
                Handled::Ignored(format!("order {}: no account {account}", order.id))
            }
            other => return Err(LedgerError::Protocol(format!("refund: {other:?}")).into()),
        })
    }
}

/// The credits of a pack that a refund of `refunded_amount` out of `total_amount` (cents) covers:
/// the pack's share, rounded down (in the customer's favour); all of them for a full refund or
/// an order without a price.
pub fn refunded_share(pack_credits: i64, refunded_amount: i64, total_amount: i64) -> i64 {
    if total_amount <= 0 || refunded_amount >= total_amount {
        return pack_credits;
    }
    (i128::from(pack_credits) * i128::from(refunded_amount.max(0)) / i128::from(total_amount))
        as i64
}

#[cfg(test)]
mod tests {
    use super::refunded_share;

    #[test]
    fn a_refund_covers_the_refunded_share_of_the_pack_rounded_down() {
        assert_eq!(refunded_share(1000, 3500, 3500), 1000);
        assert_eq!(refunded_share(1000, 1750, 3500), 500);
        assert_eq!(refunded_share(1000, 1, 3500), 0);
        assert_eq!(refunded_share(100, 499, 500), 99);
        assert_eq!(
            refunded_share(100, 9999, 500),
            100,
            "over-refund is capped at the pack"
        );
        assert_eq!(refunded_share(100, -5, 500), 0);
        assert_eq!(
            refunded_share(100, 0, 0),
            100,
            "a free order refunded is the whole pack"
        );
        assert_eq!(
            refunded_share(i64::MAX, i64::MAX - 1, i64::MAX),
            i64::MAX - 1
        );
    }
}
