//! The one way to read a cube. A [`Dataset`] is a built cube opened for reading — the cube,
//! the sources' DataFusion session for the fallback, and the members each access may see (filled
//! on first use) — shared by every reader of one snapshot. A [`Session`] is one caller's view of
//! it: the dataset, the caller's [`Access`] and the result cache. Every read — a query,
//! drill-through, the members of a level, each analysis ([`crate::analytics`]), searches
//! ([`crate::search`]) and the entity view ([`crate::entity`]) — is a method of a session, so
//! the caller's access is applied by construction, never chosen by the caller.
//!
//! ```text
//! Cube (pure data) --Dataset::new(cube, sources)--> Arc<Dataset> --.session(access)--> Session
//! Session::query / drill_through / members / pareto / run_search / entity_view / ...
//! ```

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

use lattice_defs::model::LevelRef;
use roaring::RoaringBitmap;

use super::answer::Answer;
use super::base::BasePath;
use super::cache::QueryCache;
use super::drill::{DrillAnswer, DrillQuery, drill_through_restricted};
use super::error::QueryError;
use super::exec::execute_restricted;
use super::fallback::FallbackData;
use super::missed::MissLog;
use super::spec::Query;
use super::visible::{VisibleCache, visible};
use crate::access::{Access, Applied, MemberView, apply};
use crate::source::load::Sources;
use crate::store::Cube;

/// A built cube opened for reading, shared by every session over this snapshot. Immutable but
/// for its caches.
#[derive(Debug)]
pub struct Dataset {
    cube: Cube,
    /// What the fallback needs to ask DataFusion (none for a cube opened without sources: then
    /// a question no cuboid answers is an error).
    pub(crate) fallback: Option<FallbackData>,
    /// Members visible under each access asked about so far.
    pub(crate) visible: VisibleCache,
    /// What answering from the base rows needs (nothing for a fact whose base is not kept).
    pub(crate) base: BasePath,
    /// The questions no cuboid answered.
    pub(crate) missed: MissLog,
    /// Snapshot number: a server counts the cubes it swaps in; answers and cache keys carry it.
    pub version: u64,
}

impl Dataset {
    /// `cube` opened over the `sources` it was built from (snapshot version 1). Its columns
    /// become shared buffers ([`Cube::share_columns`]).
    pub fn new(mut cube: Cube, sources: Option<&Sources>) -> Dataset {
        cube.share_columns();
        Dataset {
            base: BasePath::new(&cube),
            missed: MissLog::default(),
            cube,
            fallback: sources.map(|s| FallbackData::new(s.ctx.clone(), s.catalog.clone())),
            visible: VisibleCache::default(),
            version: 1,
        }
    }

    /// The same dataset numbered as snapshot `version`.
    pub fn with_version(self, version: u64) -> Dataset {
        Dataset { version, ..self }
    }

    pub fn cube(&self) -> &Cube {
        &self.cube
    }

    /// The group-bys questions asked of this dataset that no cuboid answered (from the base
    /// rows or the fallback), costliest first: what a rebuild should add
    /// ([`crate::build::BuildOptions::learned`]).
    pub fn missed(&self) -> Vec<crate::build::select::Learned> {
        self.missed.learned(&self.cube.model)
    }

    /// A session over this dataset as `access` may see it, without a result cache.
    pub fn session(self: &Arc<Self>, access: Access) -> Session {
        Session::new(self.clone(), access)
    }
}

/// The engine reads a dataset as its cube: code that needs only the cube's data takes a
/// `&Cube`, and a `&Dataset` is one.
impl Deref for Dataset {
    type Target = Cube;

    fn deref(&self) -> &Cube {
        &self.cube
    }
}

/// One caller's view of a dataset: every read through it is answered as its access may see it.
#[derive(Debug, Clone)]
pub struct Session {
    data: Arc<Dataset>,
    access: Access,
    cache: Option<Arc<QueryCache>>,
}

impl Session {
    /// A session over `data` for a principal with `access` (`Access::everything()` for an
    /// unrestricted caller).
    pub fn new(data: Arc<Dataset>, access: Access) -> Session {
        Session {
            data,
            access,
            cache: None,
        }
    }

    /// The same session answering queries through `cache` (each access has its own partition
    /// of it, so no principal is ever served another's answer).
    pub fn with_cache(self, cache: Arc<QueryCache>) -> Session {
        Session {
            cache: Some(cache),
            ..self
        }
    }

    pub fn cube(&self) -> &Cube {
        &self.data.cube
    }

    pub fn data(&self) -> &Arc<Dataset> {
        &self.data
    }

    pub fn access(&self) -> &Access {
        &self.access
    }

    /// The access resolved against this cube: an access whose scope names a level the cube
    /// lacks is refused (`forbidden`).
    pub(crate) fn applied(&self) -> Result<Applied, QueryError> {
        Ok(apply(self.cube(), &self.access)?)
    }

    /// Answers `query` (from the cache when the same query was answered on the same snapshot
    /// under the same access: then `meta.cached` is true).
    pub async fn query(&self, query: &Query) -> Result<Answer, QueryError> {
        let answer = || async {
            let applied = self.applied()?;
            execute_restricted(&self.data, query, &applied).await
        };
        match &self.cache {
            Some(cache) => {
                cache
                    .get_or_run(&self.data, query, &self.access.partition(), answer)
                    .await
            }
            None => answer().await,
        }
    }

    /// Lists the members behind a cell: the scope joins the cell's filters, and with
    /// suppression a cell of too few customers lists no one, as an empty cell.
    pub async fn drill_through(&self, q: &DrillQuery) -> Result<DrillAnswer, QueryError> {
        drill_through_restricted(&self.data, q, &self.applied()?).await
    }

    /// The members of `level` this session may see; `None` when it may see all of them.
    pub async fn visible_members(
        &self,
        level: LevelRef,
    ) -> Result<Option<Arc<RoaringBitmap>>, QueryError> {
        if self.access.scope.is_empty() {
            return Ok(None);
        }
        visible(&self.data, level, &self.applied()?).await
    }

    /// What this session may see of `levels` (levels it sees whole cost nothing): every
    /// expansion of a predicate into members outside the native resolution goes through one.
    pub async fn member_view(
        &self,
        levels: impl IntoIterator<Item = LevelRef>,
    ) -> Result<MemberView, QueryError> {
        if self.access.scope.is_empty() {
            return Ok(MemberView::everything());
        }
        let applied = self.applied()?;
        let mut seen = HashMap::new();
        for l in levels {
            if seen.contains_key(&l) {
                continue;
            }
            if let Some(v) = visible(&self.data, l, &applied).await? {
                seen.insert(l, v);
            }
        }
        Ok(MemberView::new(seen))
    }
}
