//! Render stage: the compiled digests of a run by key, bounded. Imports
//! only its siblings in `render` and diagnostics.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::compiled::Compiled;
use crate::diagnostics::Diagnostic;

/// How many compiled digests are kept: enough for every (segment,
/// variant, picks) of an ordinary issue; an issue whose readers' picks
/// vary more recompiles the oldest ones instead of growing without bound
/// (each is several times the size of one message).
const CACHE_CAPACITY: usize = 8192;

/// Compiled digests by key, the oldest dropped first when full.
#[derive(Default)]
pub(super) struct Cache {
    map: HashMap<String, Result<Arc<Compiled>, Diagnostic>>,
    order: VecDeque<String>,
}

impl Cache {
    pub(super) fn get(&self, key: &str) -> Option<&Result<Arc<Compiled>, Diagnostic>> {
        self.map.get(key)
    }

    pub(super) fn insert(&mut self, key: String, compiled: Result<Arc<Compiled>, Diagnostic>) {
        if self.order.len() >= CACHE_CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.map.remove(&oldest);
        }
        self.order.push_back(key.clone());
        self.map.insert(key, compiled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_of_compiled_digests_keeps_the_newest_only() {
        let mut cache = Cache::default();
        for i in 0..CACHE_CAPACITY + 10 {
            cache.insert(format!("k{i}"), Err(Diagnostic::error("t", format!("{i}"))));
        }
        assert_eq!(cache.map.len(), CACHE_CAPACITY);
        assert_eq!(cache.order.len(), CACHE_CAPACITY);
        assert!(cache.get("k0").is_none() && cache.get("k9").is_none());
        assert!(cache.get("k10").is_some());
        assert!(cache.get(&format!("k{}", CACHE_CAPACITY + 9)).is_some());
    }
}
