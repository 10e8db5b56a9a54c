//! A bounded in-process result cache: answers keyed by the cube, its snapshot version and the
//! normalised query (the query document re-serialised, so spacing and key order do not
//! matter). A new snapshot never sees an old answer: the version is part of the key, and
//! entries of older snapshots are dropped first when the cache is full.

use std::time::Instant;

use dashmap::DashMap;

use super::answer::Answer;
use super::error::QueryError;
use super::session::Dataset;
use super::spec::Query;

/// Cache key: cube name, snapshot version, normalised query, and a caller's partition (for
/// example the principal's scope, so that scoped answers are never shared).
type Key = (String, u64, String, String);

#[derive(Debug)]
pub struct QueryCache {
    map: DashMap<Key, Answer>,
    capacity: usize,
}

impl QueryCache {
    /// A cache holding at most `capacity` answers (0 disables it).
    pub fn new(capacity: usize) -> QueryCache {
        QueryCache {
            map: DashMap::new(),
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The answer to `query` on `data` within `partition` (a principal's access: each has its
    /// own, so no principal is ever served another's answer): from the cache when the same
    /// query was answered on the same snapshot (then `meta.cached` is true and
    /// `meta.elapsed_us` is the lookup's time), else `answer()`'s, kept.
    pub(crate) async fn get_or_run<F, Fut>(
        &self,
        cube: &Dataset,
        query: &Query,
        partition: &str,
        answer: F,
    ) -> Result<Answer, QueryError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Answer, QueryError>>,
    {
        if self.capacity == 0 {
            return answer().await;
        }
        let start = Instant::now();
        let key = (
            cube.model.name.clone(),
            cube.version,
            serde_json::to_string(query).map_err(|e| QueryError::Engine {
                message: format!("cannot normalise the query: {e}"),
            })?,
            partition.to_string(),
        );
        if let Some(hit) = self.map.get(&key) {
            let mut answer = hit.clone();
            answer.meta.cached = true;
            answer.meta.elapsed_us = start.elapsed().as_micros() as u64;
            return Ok(answer);
        }
        let answer = answer().await?;
        if self.map.len() >= self.capacity {
            let version = cube.version;
            self.map.retain(|k, _| k.1 == version);
            if self.map.len() >= self.capacity {
                self.map.clear();
            }
        }
        self.map.insert(key, answer.clone());
        Ok(answer)
    }
}
