//! The read cache of serialized list answers.

/// Serialized answers keyed by request, each valid for one epoch of what it was read from.
/// Bounded by memory, not by count: clients choose the keys (page tokens, query strings), so
/// the cache holds at most [`READ_CACHE_BYTES`] of keys and answers and starts over past it.
pub struct ReadCache {
    inner: std::sync::Mutex<CacheInner>,
    /// Striped fill locks: after a write, the many readers that miss at once wait for one of
    /// them to read the store instead of all reading it ([`ReadCache::fill`]).
    fills: Box<[tokio::sync::Mutex<()>]>,
}

const FILL_STRIPES: usize = 64;

impl Default for ReadCache {
    fn default() -> Self {
        Self {
            inner: Default::default(),
            fills: (0..FILL_STRIPES).map(|_| Default::default()).collect(),
        }
    }
}

/// Most bytes (keys and answers) the read cache holds.
pub const READ_CACHE_BYTES: usize = 32 << 20;

#[derive(Default)]
struct CacheInner {
    entries: std::collections::HashMap<String, (i64, axum::body::Bytes)>,
    bytes: usize,
}

impl ReadCache {
    pub fn get(&self, key: &str, epoch: i64) -> Option<axum::body::Bytes> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .entries
            .get(key)
            .filter(|(e, _)| *e == epoch)
            .map(|(_, b)| b.clone())
    }

    pub fn put(&self, key: String, epoch: i64, body: axum::body::Bytes) {
        let size = key.len() + body.len();
        // An answer too large to be worth a slot is served, not kept.
        if size > READ_CACHE_BYTES / 8 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Epochs only grow: an answer read at an older one never replaces a newer one.
        if inner.entries.get(&key).is_some_and(|(e, _)| *e > epoch) {
            return;
        }
        if let Some((_, old)) = inner.entries.remove(&key) {
            inner.bytes -= key.len() + old.len();
        }
        if inner.bytes + size > READ_CACHE_BYTES {
            inner.entries.clear();
            inner.bytes = 0;
        }
        inner.bytes += size;
        inner.entries.insert(key, (epoch, body));
    }

    /// The answer for `key` at `epoch`: cached, or made by `make` and kept. Concurrent misses
    /// of one key wait for the first to make it (striped by key: unrelated keys rarely share a
    /// stripe, and sharing one only serializes their fills).
    pub async fn fill<E, F, Fut>(
        &self,
        key: String,
        epoch: i64,
        make: F,
    ) -> Result<axum::body::Bytes, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<axum::body::Bytes, E>>,
    {
        if let Some(b) = self.get(&key, epoch) {
            return Ok(b);
        }
        let stripe = {
            use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
            BuildHasherDefault::<DefaultHasher>::default().hash_one(&key) as usize
                % self.fills.len()
        };
        let _filling = self.fills[stripe].lock().await;
        if let Some(b) = self.get(&key, epoch) {
            return Ok(b);
        }
        let body = make().await?;
        self.put(key, epoch, body.clone());
        Ok(body)
    }

    /// Bytes held (keys and answers).
    pub fn bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_bytes_whatever_the_keys() {
        let cache = ReadCache::default();
        let body = axum::body::Bytes::from(vec![b'x'; 64 << 10]);
        for i in 0..10_000 {
            cache.put(format!("/api/v1/clusters?page={i}"), 1, body.clone());
            assert!(cache.bytes() <= READ_CACHE_BYTES);
        }
        // The newest answers are there; a stale epoch is not an answer.
        assert!(cache.get("/api/v1/clusters?page=9999", 1).is_some());
        assert!(cache.get("/api/v1/clusters?page=9999", 2).is_none());
        // Replacing a key does not count it twice.
        let before = cache.bytes();
        cache.put("/api/v1/clusters?page=9999".into(), 2, body.clone());
        assert_eq!(cache.bytes(), before);
        // An answer over an eighth of the budget is not kept.
        cache.put("big".into(), 1, vec![0u8; READ_CACHE_BYTES / 4].into());
        assert!(cache.get("big", 1).is_none());
        // An older epoch's answer never replaces a newer one.
        cache.put("k".into(), 5, "new".into());
        cache.put("k".into(), 4, "old".into());
        assert_eq!(cache.get("k", 5).as_deref(), Some(&b"new"[..]));
    }

    #[tokio::test]
    async fn concurrent_misses_of_one_key_make_it_once() {
        let cache = std::sync::Arc::new(ReadCache::default());
        let made = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (cache, made) = (cache.clone(), made.clone());
                tokio::spawn(async move {
                    cache
                        .fill("list".into(), 7, || async {
                            made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            tokio::task::yield_now().await;
                            Ok::<_, ()>(axum::body::Bytes::from_static(b"page"))
                        })
                        .await
                        .unwrap()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(&t.await.unwrap()[..], b"page");
        }
        assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 1);
        // A new epoch is made again, once.
        cache
            .fill("list".into(), 8, || async {
                made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, ()>(axum::body::Bytes::from_static(b"page 2"))
            })
            .await
            .unwrap();
        assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
