//! A query result cache keyed by statement fingerprint and parameters, with
//! a time to live, invalidated table by table when a write passes through it,
//! and hit/miss/invalidation counters (moka keeps none).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::sync::Cache;
use serde::{Deserialize, Serialize};

use crate::{Fingerprint, Result, analyze};

/// What one statement text touches, kept so a text is parsed once.
#[derive(Debug)]
struct Shape {
    fingerprint: Fingerprint,
    tables: BTreeSet<String>,
    read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    fingerprint: Fingerprint,
    params: Vec<String>,
}

/// Counters of a [`QueryCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueryCacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// Entries dropped because a write touched their tables.
    pub invalidations: u64,
    /// Entries held now (approximate, as moka counts).
    pub entries: u64,
}

/// Results of read-only statements, reused until they expire or a write to
/// one of their tables passes through [`QueryCache::observe_write`].
///
/// ```
/// use std::time::Duration;
/// use perf_db::QueryCache;
/// let cache: QueryCache<Vec<String>> = QueryCache::new(1000, Duration::from_secs(60));
/// let sql = "SELECT name FROM users WHERE id = $1";
/// assert!(cache.get(sql, &["7"])?.is_none());
/// cache.insert(sql, &["7"], vec!["ann".into()])?;
/// assert_eq!(cache.get("select name from users where id = $1", &["7"])?.unwrap()[0], "ann");
/// cache.observe_write("UPDATE users SET name = 'bob' WHERE id = 7")?;
/// assert!(cache.get(sql, &["7"])?.is_none());
/// assert_eq!(cache.stats().hits, 1);
/// # Ok::<(), perf_db::Error>(())
/// ```
pub struct QueryCache<V: Send + Sync + 'static> {
    entries: Cache<Key, Arc<V>>,
    shapes: Cache<String, Arc<Shape>>,
    by_table: Mutex<HashMap<String, HashSet<Key>>>,
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
}

impl<V: Send + Sync + 'static> std::fmt::Debug for QueryCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl<V: Send + Sync + 'static> QueryCache<V> {
    /// A cache of at most `max_entries` results, each kept at most `ttl`.
    pub fn new(max_entries: u64, ttl: Duration) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build(),
            shapes: Cache::builder().max_capacity(10_000).build(),
            by_table: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
        }
    }

    fn shape(&self, sql: &str) -> Result<Arc<Shape>> {
        if let Some(s) = self.shapes.get(sql) {
            return Ok(s);
        }
        let a = analyze(sql)?;
        let lowered = sql.trim_start().to_ascii_lowercase();
        let read_only = lowered.starts_with("select")
            || lowered.starts_with("with")
                && !lowered.contains("insert")
                && !lowered.contains("update")
                && !lowered.contains("delete");
        let shape = Arc::new(Shape {
            fingerprint: a.fingerprint,
            tables: a.tables,
            read_only,
        });
        self.shapes.insert(sql.to_owned(), Arc::clone(&shape));
        Ok(shape)
    }

    fn key(shape: &Shape, params: &[&str]) -> Key {
        Key {
            fingerprint: shape.fingerprint,
            params: params.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    /// The cached result of `sql` with these parameters, if any.
    pub fn get(&self, sql: &str, params: &[&str]) -> Result<Option<Arc<V>>> {
        let shape = self.shape(sql)?;
        let found = self.entries.get(&Self::key(&shape, params));
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(found)
    }

    /// Caches a result; returns `false` (and caches nothing) for statements
    /// that write.
    pub fn insert(&self, sql: &str, params: &[&str], value: V) -> Result<bool> {
        let shape = self.shape(sql)?;
        if !shape.read_only {
            return Ok(false);
        }
        let key = Self::key(&shape, params);
        if let Ok(mut index) = self.by_table.lock() {
            for table in &shape.tables {
                index.entry(table.clone()).or_default().insert(key.clone());
            }
        }
        self.entries.insert(key, Arc::new(value));
        Ok(true)
    }

    /// Tells the cache a statement ran; when it writes, every cached result
    /// that read one of its tables is dropped. Returns how many.
    pub fn observe_write(&self, sql: &str) -> Result<u64> {
        let shape = self.shape(sql)?;
        if shape.read_only {
            return Ok(0);
        }
        let keys: Vec<Key> = match self.by_table.lock() {
            Ok(mut index) => shape
                .tables
                .iter()
                .filter_map(|t| index.remove(t))
                .flatten()
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut dropped = 0;
        for key in keys {
            if self.entries.remove(&key).is_some() {
                dropped += 1;
            }
        }
        self.invalidations.fetch_add(dropped, Ordering::Relaxed);
        Ok(dropped)
    }

    /// Hits, misses, invalidations and entries.
    pub fn stats(&self) -> QueryCacheStats {
        self.entries.run_pending_tasks();
        QueryCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            entries: self.entries.entry_count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_invalidate_only_their_tables_and_ttl_expires() {
        let cache: QueryCache<u32> = QueryCache::new(100, Duration::from_millis(300));
        cache
            .insert("SELECT * FROM a WHERE id = $1", &["1"], 1)
            .unwrap();
        cache
            .insert("SELECT * FROM b WHERE id = $1", &["1"], 2)
            .unwrap();
        cache
            .insert("SELECT * FROM a JOIN b ON a.id = b.id", &[], 3)
            .unwrap();
        assert!(!cache.insert("DELETE FROM a", &[], 4).unwrap());
        assert_eq!(cache.observe_write("INSERT INTO a VALUES (2)").unwrap(), 2);
        assert!(
            cache
                .get("SELECT * FROM a WHERE id = $1", &["1"])
                .unwrap()
                .is_none()
        );
        assert_eq!(
            *cache
                .get("SELECT * FROM b WHERE id = $1", &["1"])
                .unwrap()
                .unwrap(),
            2
        );
        // Other parameters are other entries.
        assert!(
            cache
                .get("SELECT * FROM b WHERE id = $1", &["2"])
                .unwrap()
                .is_none()
        );
        assert_eq!(cache.observe_write("SELECT 1").unwrap(), 0);
        std::thread::sleep(Duration::from_millis(400));
        assert!(
            cache
                .get("SELECT * FROM b WHERE id = $1", &["1"])
                .unwrap()
                .is_none()
        );
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.invalidations), (1, 3, 2));
        assert!(cache.get("SELECT * FROM", &[]).is_err());
    }
}
