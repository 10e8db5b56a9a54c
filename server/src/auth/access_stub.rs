//! TEMPORARY: the shape of `lattice_engine::access` until it lands on main.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Access {
    #[serde(default)]
    pub scope: Vec<ScopeRule>,
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Access {
    pub fn everything() -> Access {
        Access::default()
    }
    pub fn is_everything(&self) -> bool {
        self.scope.is_empty()
    }
    pub fn partition(&self) -> String {
        self.scope
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    }
    pub fn check(&self, _model: &lattice_defs::Model) -> Result<(), String> {
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ScopeRule {
    pub level: String,
    pub values: Vec<String>,
}

impl TryFrom<String> for ScopeRule {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}
impl From<ScopeRule> for String {
    fn from(r: ScopeRule) -> String {
        r.to_string()
    }
}

impl std::str::FromStr for ScopeRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some((level, list)) = s.split_once(" in ") {
            return Ok(ScopeRule {
                level: level.trim().to_string(),
                values: list
                    .trim()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .collect(),
            });
        }
        let (level, value) = s
            .split_once('=')
            .ok_or_else(|| format!("'{s}': expected 'dimension.level = member'"))?;
        Ok(ScopeRule {
            level: level.trim().to_string(),
            values: vec![value.trim().to_string()],
        })
    }
}

impl std::fmt::Display for ScopeRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {}", self.level, self.values.join(", "))
    }
}

use std::sync::Arc;

use lattice_defs::model::LevelRef;
use lattice_engine::query::{Answer, DrillAnswer, DrillQuery, Query, QueryCache, QueryError};
use lattice_engine::store::Cube;

fn refuse(access: &Access) -> Result<(), QueryError> {
    if access.is_everything() {
        Ok(())
    } else {
        Err(QueryError::Malformed {
            message: "scopes are not applied yet".into(),
        })
    }
}

pub async fn execute_as(cube: &Cube, q: &Query, access: &Access) -> Result<Answer, QueryError> {
    refuse(access)?;
    lattice_engine::query::execute(cube, q).await
}

pub async fn drill_through_as(
    cube: &Cube,
    q: &DrillQuery,
    access: &Access,
) -> Result<DrillAnswer, QueryError> {
    refuse(access)?;
    lattice_engine::query::drill_through(cube, q).await
}

pub async fn visible_members(
    _cube: &Cube,
    _level: LevelRef,
    access: &Access,
) -> Result<Option<Arc<roaring::RoaringBitmap>>, QueryError> {
    refuse(access)?;
    Ok(None)
}

pub trait CacheAs {
    fn execute_as(
        &self,
        cube: &Cube,
        q: &Query,
        access: &Access,
    ) -> impl std::future::Future<Output = Result<Answer, QueryError>> + Send;
}

impl CacheAs for QueryCache {
    async fn execute_as(
        &self,
        cube: &Cube,
        q: &Query,
        access: &Access,
    ) -> Result<Answer, QueryError> {
        refuse(access)?;
        self.execute(cube, q).await
    }
}
