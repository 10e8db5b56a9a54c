//! A search as one principal may see it: a saved search names members (`manager.manager =
//! M0018 Wang Na`) that a scoped principal must not learn, yet can run, since the search
//! answers within their scope.
//!
//! - **Shown**: each member name (or `prefix` / `search` pattern) on a level the principal's
//!   scope restricts is kept when it is a member they may see (a pattern: when it matches one),
//!   else replaced by [`HIDDEN`]. On a level the cube no longer has, every name is hidden.
//! - **Runnable**: the names they may not see are dropped. Those members have no facts in the
//!   principal's scope, so this changes nothing the principal would get: `eq` / `in` left with
//!   no name match no one, `not_in` left with none excludes no one. Running the shown document
//!   instead would fail on a name that is not a member, echoing it; running the original would
//!   name it in an `unknown_member` error.
//!
//! A name the principal cannot see and a name no member has are treated alike, so the shown
//! document does not say which names exist elsewhere. Time periods and band labels are never
//! restricted, and a principal without a scope sees every search as written.

use std::collections::HashMap;
use std::sync::Arc;

use lattice_defs::model::LevelRef;
use roaring::RoaringBitmap;
use serde_json::Value as Json;

use super::{Condition, Search, SearchError};
use crate::query::{Dataset, Session};
use crate::query::{Filter, FilterOp};

/// What a hidden member name reads as.
pub const HIDDEN: &str = "(hidden)";

/// A filter no member passes (no member name contains NUL), as segments write it.
const NO_ONE: &str = "\u{0}";

/// A search as a principal may see and run it.
#[derive(Debug, Clone, PartialEq)]
pub struct Redacted {
    /// The document with each name outside the principal's scope replaced by [`HIDDEN`].
    pub shown: Search,
    /// The document to run for the principal: those names dropped.
    pub runnable: Search,
    /// How many names were hidden.
    pub hidden: usize,
}

/// What a principal sees of one level.
enum Seen {
    Every,
    Only(LevelRef, Arc<RoaringBitmap>),
    /// A level the cube does not have.
    Unknown,
}

impl Session {
    /// `search` as `access` may see and run it on `cube`.
    pub async fn redact_search(&self, search: &Search) -> Result<Redacted, SearchError> {
        let cube = self.data();
        let access = self.access();
        let mut out = Redacted {
            shown: search.clone(),
            runnable: search.clone(),
            hidden: 0,
        };
        if access.scope.is_empty() {
            return Ok(out);
        }
        let mut names = Vec::new();
        levels(&search.condition, &mut names);
        let mut seen = HashMap::new();
        for name in names {
            if seen.contains_key(name) {
                continue;
            }
            let s = match cube.model.level(name) {
                None => Seen::Unknown,
                Some(l) => match self.visible_members(l).await? {
                    None => Seen::Every,
                    Some(v) => Seen::Only(l, v),
                },
            };
            seen.insert(name.to_string(), s);
        }
        let r = Redactor { cube, seen: &seen };
        out.hidden = r.condition(&mut out.shown.condition, &mut out.runnable.condition);
        Ok(out)
    }
}

/// The levels a condition's atoms and their filters name.
fn levels<'c>(c: &'c Condition, out: &mut Vec<&'c str>) {
    for sub in c.all.iter().chain(&c.any).flatten() {
        levels(sub, out);
    }
    if let Some(sub) = &c.not {
        levels(sub, out);
    }
    out.extend(c.level.as_deref());
    out.extend(c.filters.iter().map(|f| f.level.as_str()));
}

struct Redactor<'a> {
    cube: &'a Dataset,
    seen: &'a HashMap<String, Seen>,
}

impl Redactor<'_> {
    /// Whether the principal may read `value` written with `op` on `level`.
    fn sees(&self, level: &str, op: &str, value: &str) -> bool {
        match self.seen.get(level) {
            None | Some(Seen::Every) => true,
            Some(Seen::Unknown) => false,
            Some(Seen::Only(l, visible)) => {
                let dict = self.cube.members(*l);
                let name = |c: u32| self.cube.member_name(*l, c);
                match op {
                    "prefix" => visible.iter().any(|c| name(c).starts_with(value)),
                    "search" => {
                        let s = value.to_lowercase();
                        visible.iter().any(|c| name(c).to_lowercase().contains(&s))
                    }
                    _ => dict.code(value).is_some_and(|c| visible.contains(c)),
                }
            }
        }
    }

    /// Whether the runnable document may drop what the principal does not see on `level`.
    fn restricted(&self, level: &str) -> bool {
        matches!(self.seen.get(level), Some(Seen::Only(..)))
    }

    /// Redacts `shown` and prunes `run` (two copies of one condition); the names hidden.
    fn condition(&self, shown: &mut Condition, run: &mut Condition) -> usize {
        let mut hidden = 0;
        let pairs = shown
            .all
            .iter_mut()
            .chain(shown.any.iter_mut())
            .flatten()
            .zip(run.all.iter_mut().chain(run.any.iter_mut()).flatten());
        for (s, r) in pairs {
            hidden += self.condition(s, r);
        }
        if let (Some(s), Some(r)) = (shown.not.as_deref_mut(), run.not.as_deref_mut()) {
            hidden += self.condition(s, r);
        }
        if let Some(level) = shown.level.clone() {
            hidden += self.member_atom(&level, shown, run);
        }
        for f in &mut shown.filters {
            hidden += self.show_filter(f);
        }
        run.filters.retain_mut(|f| self.prune_filter(f));
        hidden
    }

    fn member_atom(&self, level: &str, shown: &mut Condition, run: &mut Condition) -> usize {
        let op = shown.op.clone().unwrap_or_default();
        let text = |v: &Json| match v {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut hidden = 0;
        if let Some(v) = &mut shown.value
            && !self.sees(level, &op, &text(v))
        {
            *v = Json::String(HIDDEN.into());
            hidden += 1;
        }
        for v in shown.values.iter_mut().flatten() {
            if !self.sees(level, &op, v) {
                *v = HIDDEN.into();
                hidden += 1;
            }
        }
        if !self.restricted(level) {
            return hidden;
        }
        let keep = |vs: &mut Option<Vec<String>>| {
            let mut kept = vs.take().unwrap_or_default();
            kept.retain(|v| self.sees(level, &op, v));
            kept
        };
        match op.as_str() {
            "eq" if !run
                .value
                .as_ref()
                .is_some_and(|v| self.sees(level, &op, &text(v))) =>
            {
                run.op = Some("search".into());
                run.value = Some(Json::String(NO_ONE.into()));
            }
            "in" => match keep(&mut run.values) {
                kept if kept.is_empty() => {
                    run.op = Some("search".into());
                    run.value = Some(Json::String(NO_ONE.into()));
                }
                kept => run.values = Some(kept),
            },
            "not_in" => match keep(&mut run.values) {
                // Excluding no one: every member with facts.
                kept if kept.is_empty() => {
                    run.op = Some("prefix".into());
                    run.value = Some(Json::String(String::new()));
                }
                kept => run.values = Some(kept),
            },
            _ => {}
        }
        hidden
    }

    fn show_filter(&self, f: &mut Filter) -> usize {
        let op = f.op.name();
        let mut hidden = 0;
        if let Some(v) = &mut f.value
            && !self.sees(&f.level, op, v)
        {
            *v = HIDDEN.into();
            hidden += 1;
        }
        for v in f.values.iter_mut().flatten() {
            if !self.sees(&f.level, op, v) {
                *v = HIDDEN.into();
                hidden += 1;
            }
        }
        hidden
    }

    /// Prunes a measure atom's filter; false when it is to go (a `not_in` excluding no one).
    fn prune_filter(&self, f: &mut Filter) -> bool {
        if !self.restricted(&f.level) {
            return true;
        }
        let op = f.op.name();
        let seen = |v: &String| self.sees(&f.level, op, v);
        match f.op {
            FilterOp::Eq if !f.value.as_ref().is_some_and(seen) => {
                f.op = FilterOp::Search;
                f.value = Some(NO_ONE.into());
            }
            FilterOp::In | FilterOp::NotIn => {
                let mut kept = f.values.take().unwrap_or_default();
                kept.retain(seen);
                if kept.is_empty() {
                    if f.op == FilterOp::NotIn {
                        return false;
                    }
                    f.op = FilterOp::Search;
                    f.value = Some(NO_ONE.into());
                } else {
                    f.values = Some(kept);
                }
            }
            _ => {}
        }
        true
    }
}
