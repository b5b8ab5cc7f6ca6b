//! `[auth]`: sessions, sign-up, the public URL and log-in attempt limits.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// How long a login session lasts, in seconds.
    pub session_ttl_secs: u64,
    /// Mark the `session` cookie `Secure` (always done when `public_url` is `https://…`).
    pub secure_cookies: bool,
    /// Free credits a new account receives, once (`signup_bonus`).
    pub signup_bonus: i64,
    /// Whether `POST /api/v1/auth/signup` is open; operators can still create accounts by CLI.
    pub signup_enabled: bool,
    /// The public base URL of this service, used in messages such as the 402 body; its origin
    /// is also accepted on state-changing browser requests (with the request's own host).
    pub public_url: String,
    /// Log-in attempts per email address per minute, counted across every host (0 = no limit).
    pub login_attempts_per_minute: u64,
    /// Log-in and sign-up attempts per client address per minute (0 = no limit). Behind a
    /// reverse proxy every client shares its address: raise it or set 0 there.
    pub attempts_per_address_per_minute: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_ttl_secs: 30 * 86_400,
            secure_cookies: false,
            signup_bonus: 5,
            signup_enabled: true,
            public_url: "http://127.0.0.1:8080".to_string(),
            login_attempts_per_minute: 10,
            attempts_per_address_per_minute: 60,
        }
    }
}
