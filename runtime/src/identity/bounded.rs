//! The in-process caches' common shape: a sharded [`quick_cache`] whose number of entries never
//! exceeds the configured capacity.

use std::hash::Hash;

use quick_cache::sync::Cache;
use quick_cache::{OptionsBuilder, UnitWeighter};

/// Smallest shard worth having: below it the cache uses fewer shards.
const MIN_SHARD_ITEMS: usize = 64;

/// A cache of at most `capacity` entries, or `None` for a capacity of 0 (no cache).
///
/// Its shards are of equal size and their sum never exceeds `capacity`: quick_cache rounds a
/// shard's share up, so the bound given to it is rounded down to a multiple of the shards.
pub(crate) fn bounded_cache<K, V>(capacity: usize) -> Option<Cache<K, V>>
where
    K: Eq + Hash,
    V: Clone,
{
    if capacity == 0 {
        return None;
    }
    let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut shards = (parallelism * 4).next_power_of_two();
    while shards > 1 && capacity / shards < MIN_SHARD_ITEMS {
        shards /= 2;
    }
    let bound = capacity / shards * shards;
    let options = OptionsBuilder::new()
        .shards(shards)
        .estimated_items_capacity(bound)
        .weight_capacity(bound as u64)
        .build()
        .expect("every option is set");
    Some(Cache::with_options(
        options,
        UnitWeighter,
        Default::default(),
        Default::default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_holds_more_than_its_capacity() {
        assert!(bounded_cache::<u32, u32>(0).is_none());
        for capacity in [1, 5, 63, 64, 100, 1_000, 10_000] {
            let cache = bounded_cache::<u32, u32>(capacity).expect("a cache");
            for i in 0..(capacity as u32 * 3) {
                cache.insert(i, i);
            }
            assert!(cache.len() <= capacity, "{capacity}: {}", cache.len());
        }
    }
}
