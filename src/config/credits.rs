//! `[credits]`: the credit packs on sale.

use serde::{Deserialize, Serialize};

/// One credit pack on sale.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PackConfig {
    pub id: String,
    pub name: String,
    pub credits: i64,
    pub price_cents: i64,
    #[serde(default)]
    pub popular: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CreditsConfig {
    /// The packs, in the order `GET /api/v1/credits/packs` lists them.
    pub packs: Vec<PackConfig>,
}

impl Default for CreditsConfig {
    fn default() -> Self {
        let pack = |id: &str, name: &str, credits, price_cents, popular| PackConfig {
            id: id.to_string(),
            name: name.to_string(),
            credits,
            price_cents,
            popular,
        };
        Self {
            packs: vec![
                pack("pack_starter", "Starter", 100, 500, false),
                pack("pack_pro", "Pro", 1_000, 3_500, true),
                pack("pack_business", "Business", 5_000, 12_500, false),
                pack("pack_enterprise", "Enterprise", 25_000, 50_000, false),
            ],
        }
    }
}
