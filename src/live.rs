//! A value the daemon reads per request and a configuration reload may replace.

use std::sync::{Arc, RwLock};

/// A shared, replaceable value: readers take a cheap `Arc` of the current one and keep that view
/// for as long as they need it; a reload swaps in a new one for later readers.
#[derive(Clone)]
pub struct Live<T>(Arc<RwLock<Arc<T>>>);

impl<T> Live<T> {
    pub fn new(value: T) -> Live<T> {
        Live(Arc::new(RwLock::new(Arc::new(value))))
    }

    /// The current value (a cheap `Arc` clone; a request keeps one view throughout).
    pub fn get(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the value for every later [`Live::get`].
    pub fn replace(&self, value: T) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(value);
    }
}
