//! The distinct questions each principal asked in the last minute, and the limit on them
//! (`--max-questions-per-minute`).
//!
//! Small-cell suppression protects each answer, but two overlapping questions (a total with and
//! without a filter) can subtract to a withheld cell. Nothing per answer can stop that; what the
//! server can do is make it show (the audit log) and make it slow: a principal whose answers
//! are restricted may ask at most `limit` *distinct* questions in any 60 seconds. Asking a
//! question again that it asked in that window is free (a dashboard refreshing), so the limit
//! only bites on many different questions, which is what differencing at scale needs.
//!
//! A question is the request's method, path, query string and body, hashed with keys drawn at
//! start ([`RandomState`]), so a client cannot make two different questions count as one.
//!
//! STATES: per principal, the hashes of its distinct questions of the last window, oldest first,
//! each with when it was first asked; at most `limit` of them (a question over the limit is
//! refused and not recorded). Principals with none left in the window are dropped when the map
//! grows, as token subjects come and go.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Method;
use crate::registry::lock;

/// The window the limit counts over.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Principals kept before those with no question in the window are dropped.
const PRUNE_AT: usize = 1024;

/// One principal's distinct questions in the window, oldest first: when first asked, and the
/// question's hash.
type Log = VecDeque<(Instant, u64)>;

/// Who asked which distinct questions lately.
#[derive(Debug, Default)]
pub(crate) struct Questions {
    hasher: RandomState,
    asked: Mutex<HashMap<(Method, String), Log>>,
}

impl Questions {
    /// The identity of a question made of `parts` (method, path, query string, body).
    pub fn key(&self, parts: &[&[u8]]) -> u64 {
        let mut h = self.hasher.build_hasher();
        for p in parts {
            // Length-prefixed, so that parts cannot run into each other.
            h.write_usize(p.len());
            h.write(p);
        }
        h.finish()
    }

    /// Lets `question` of `who` through, or says how long until it would be: at most `limit`
    /// distinct questions in any [`WINDOW`], repeats free.
    pub fn admit(
        &self,
        who: (Method, &str),
        question: u64,
        limit: usize,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut asked = lock(&self.asked);
        if asked.len() >= PRUNE_AT {
            asked.retain(|_, log| log.back().is_some_and(|(t, _)| now - *t < WINDOW));
        }
        let log = asked.entry((who.0, who.1.to_string())).or_default();
        while log.front().is_some_and(|(t, _)| now - *t >= WINDOW) {
            log.pop_front();
        }
        if log.iter().any(|(_, q)| *q == question) {
            return Ok(());
        }
        if log.len() >= limit {
            let oldest = log.front().map_or(now, |(t, _)| *t);
            return Err(WINDOW - (now - oldest));
        }
        log.push_back((now, question));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHO: (Method, &str) = (Method::Key, "manager");

    #[test]
    fn distinct_questions_are_counted_and_repeats_are_free() {
        let q = Questions::default();
        let t0 = Instant::now();
        let (a, b, c) = (q.key(&[b"a"]), q.key(&[b"b"]), q.key(&[b"c"]));
        assert_eq!(q.admit(WHO, a, 2, t0), Ok(()));
        assert_eq!(q.admit(WHO, b, 2, t0 + Duration::from_secs(10)), Ok(()));
        // Asked again: free, however often.
        for _ in 0..5 {
            assert_eq!(q.admit(WHO, a, 2, t0 + Duration::from_secs(20)), Ok(()));
        }
        // A third distinct one waits until the first leaves the window.
        assert_eq!(
            q.admit(WHO, c, 2, t0 + Duration::from_secs(20)),
            Err(Duration::from_secs(40))
        );
        // Another principal has its own count, and a key and a token subject of the same name
        // are two principals.
        assert_eq!(q.admit((Method::Key, "other"), c, 2, t0), Ok(()));
        assert_eq!(q.admit((Method::Jwt, "manager"), c, 2, t0), Ok(()));
        assert_eq!(q.admit(WHO, c, 2, t0 + WINDOW), Ok(()));
    }

    #[test]
    fn parts_do_not_run_into_each_other() {
        let q = Questions::default();
        assert_ne!(q.key(&[b"ab", b"c"]), q.key(&[b"a", b"bc"]));
        assert_eq!(q.key(&[b"ab", b"c"]), q.key(&[b"ab", b"c"]));
    }

    #[test]
    fn principals_with_nothing_in_the_window_are_dropped_as_the_map_grows() {
        let q = Questions::default();
        let t0 = Instant::now();
        for i in 0..PRUNE_AT {
            let name = format!("subject-{i}");
            assert_eq!(q.admit((Method::Jwt, &name), 1, 1, t0), Ok(()));
        }
        assert_eq!(q.admit(WHO, 1, 1, t0 + WINDOW), Ok(()));
        assert_eq!(lock(&q.asked).len(), 1);
    }
}
