//! Raw types: the YAML file exactly as written, with the position of everything a user can get
//! wrong. Nothing here is trusted; [`crate::validate`] turns a [`RawCube`] into a
//! [`crate::Model`]. Maps keep their order and the position of each key ([`SpannedMap`]).

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_saphyr::Spanned;

/// A YAML mapping whose keys are names a user chose (dimensions, levels, measures), kept in
/// file order with the position of every key.
#[derive(Debug)]
pub struct SpannedMap<T>(pub Vec<(Spanned<String>, T)>);

impl<T> Default for SpannedMap<T> {
    fn default() -> Self {
        SpannedMap(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for SpannedMap<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for MapVisitor<T> {
            type Value = SpannedMap<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of names to definitions")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let value = map.next_value::<T>()?;
                    entries.push((key, value));
                }
                Ok(SpannedMap(entries))
            }
        }
        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

/// A number as written in the file (bucket edges), kept as text so it converts to an exact
/// decimal without passing through binary floating point.
#[derive(Debug, Clone, PartialEq)]
pub struct RawNumber(pub String);

impl<'de> Deserialize<'de> for RawNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumVisitor;
        impl Visitor<'_> for NumVisitor {
            type Value = RawNumber;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawNumber, E> {
                Ok(RawNumber(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawNumber, E> {
                Ok(RawNumber(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawNumber, E> {
                // `{}` prints the shortest text that reads back as the same f64, i.e. what the
                // user wrote for any edge with up to 15 significant digits.
                Ok(RawNumber(format!("{v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawNumber, E> {
                Ok(RawNumber(v.to_string()))
            }
        }
        deserializer.deserialize_any(NumVisitor)
    }
}

/// A whole definition file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCube {
    pub version: Spanned<u32>,
    pub cube: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub sources: SpannedMap<RawSource>,
    pub facts: SpannedMap<RawFact>,
    pub dimensions: SpannedMap<RawDimension>,
    pub measures: SpannedMap<RawMeasure>,
    /// Computed fact tables: a cost pool spread over a driver fact's cells.
    #[serde(default)]
    pub allocations: SpannedMap<RawAllocation>,
    #[serde(default)]
    pub aggregates: Option<RawAggregates>,
    #[serde(default)]
    pub privacy: Option<RawPrivacy>,
    #[serde(default)]
    pub searches: Option<SpannedMap<RawSearch>>,
}

/// A scalar as written (a member name, a period, a threshold), kept as text so a number
/// converts to an exact decimal and a name like `2025` stays the name.
#[derive(Debug, Clone, PartialEq)]
pub struct RawScalar(pub String);

impl<'de> Deserialize<'de> for RawScalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = RawScalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name or a number")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawScalar, E> {
                Ok(RawScalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawScalar, E> {
                Ok(RawScalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawScalar, E> {
                Ok(RawScalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawScalar, E> {
                Ok(RawScalar(format!("{v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawScalar, E> {
                Ok(RawScalar(v.to_string()))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// `searches.<name>`: a saved target-customer search, the same document as the API's
/// (docs/searches.md) less its name, which is the key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearch {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub entity: Option<Spanned<String>>,
    #[serde(rename = "where")]
    pub condition: Spanned<RawCondition>,
}

/// One condition: exactly one of `all`, `any`, `not`, `level` (member atom), `measure`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    #[serde(default)]
    pub all: Option<Vec<Spanned<RawCondition>>>,
    #[serde(default)]
    pub any: Option<Vec<Spanned<RawCondition>>>,
    #[serde(default)]
    pub not: Option<Box<Spanned<RawCondition>>>,
    #[serde(default)]
    pub level: Option<Spanned<String>>,
    #[serde(default)]
    pub measure: Option<Spanned<String>>,
    #[serde(default)]
    pub op: Option<Spanned<String>>,
    #[serde(default)]
    pub value: Option<Spanned<RawScalar>>,
    #[serde(default)]
    pub values: Option<Spanned<Vec<Spanned<RawScalar>>>>,
    #[serde(default)]
    pub filters: Vec<Spanned<RawSearchFilter>>,
    #[serde(default)]
    pub period: Option<Spanned<RawPeriod>>,
}

/// A measure atom's filter: a query filter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearchFilter {
    pub level: Spanned<String>,
    pub op: Spanned<String>,
    #[serde(default)]
    pub value: Option<Spanned<RawScalar>>,
    #[serde(default)]
    pub values: Option<Spanned<Vec<Spanned<RawScalar>>>>,
}

/// The periods an atom reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeriod {
    #[serde(default)]
    pub level: Option<Spanned<String>>,
    #[serde(default)]
    pub value: Option<Spanned<RawScalar>>,
    #[serde(default)]
    pub last: Option<Spanned<u32>>,
}

/// `privacy:`: small-cell suppression for some principals.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrivacy {
    pub min_customers: Spanned<u64>,
    /// The dimension whose distinct keys are the customers counted (default `customer`).
    #[serde(default)]
    pub customers: Option<Spanned<String>>,
    /// Roles whose answers are suppressed.
    pub applies_to: Spanned<Vec<Spanned<String>>>,
}

/// `sources.<table>`: where a table's rows are.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub path: Spanned<String>,
    #[serde(default)]
    pub format: Option<Spanned<String>>,
}

/// `facts.<table>`: a fact table, its time column and the dimensions whose keys it carries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFact {
    #[serde(default)]
    pub time: Option<Spanned<String>>,
    #[serde(default)]
    pub dimensions: Vec<Spanned<String>>,
}

/// `dimensions.<name>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDimension {
    /// `time` for the time dimension; absent for ordinary ones.
    #[serde(default, rename = "type")]
    pub kind: Option<Spanned<String>>,
    #[serde(default)]
    pub table: Option<Spanned<String>>,
    #[serde(default)]
    pub key: Option<Spanned<String>>,
    /// Another dimension whose table carries this dimension's key (a customer's home branch).
    #[serde(default)]
    pub via: Option<Spanned<String>>,
    /// Snowflake joins: `lookups: { regions: { key: region_id } }` lets levels name
    /// `regions.branch`.
    #[serde(default)]
    pub lookups: Option<SpannedMap<RawLookup>>,
    #[serde(default)]
    pub levels: Option<SpannedMap<RawLevel>>,
    #[serde(default)]
    pub hierarchy: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `lookups.<table>`: the dimension table's column that joins the lookup table's column of the
/// same name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLookup {
    pub key: Spanned<String>,
}

/// `levels.<name>`: a column, or a bucket over a column or a metric.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLevel {
    #[serde(default)]
    pub column: Option<Spanned<String>>,
    #[serde(default)]
    pub bucket: Option<Spanned<RawBucket>>,
}

/// `bucket:`: fixed edges over a column, or fixed edges or quantiles over a metric per entity
/// and period.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBucket {
    #[serde(default)]
    pub column: Option<Spanned<String>>,
    #[serde(default)]
    pub metric: Option<Spanned<String>>,
    #[serde(default)]
    pub per: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub edges: Option<Spanned<Vec<Spanned<RawNumber>>>>,
    /// Rank-based cuts of a metric bucket (instead of `edges`): `[0.8, 0.95]`.
    #[serde(default)]
    pub quantiles: Option<Spanned<Vec<Spanned<RawNumber>>>>,
    #[serde(default)]
    pub labels: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `measures.<name>`: an aggregation over a fact column, or a derived expression.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMeasure {
    #[serde(default)]
    pub fact: Option<Spanned<String>>,
    #[serde(default)]
    pub agg: Option<Spanned<String>>,
    #[serde(default)]
    pub column: Option<Spanned<String>>,
    #[serde(default)]
    pub over_time: Option<Spanned<String>>,
    #[serde(default)]
    pub expr: Option<Spanned<String>>,
    #[serde(default)]
    pub format: Option<Spanned<String>>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `allocations.<name>`: a fact table the build computes by spreading each row of a pool
/// (an amount per member and period) over the cells of a driver fact that lie under that
/// member in that period, in proportion to a driver.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllocation {
    pub pool: Spanned<RawPool>,
    pub driver: Spanned<RawDriver>,
    /// The dimensions of the allocated fact (default: every dimension the driver fact carries).
    #[serde(default)]
    pub dimensions: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `pool:`: the amounts to spread, one per member of a dimension and period.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub source: Spanned<String>,
    pub amount: Spanned<String>,
    pub time: Spanned<String>,
    pub member: Spanned<RawPoolMember>,
}

/// `member:`: the dimension each pool row belongs to and the pool's column holding its key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPoolMember {
    pub dimension: Spanned<String>,
    /// Default: the dimension's key column name.
    #[serde(default)]
    pub key: Option<Spanned<String>>,
}

/// `driver:`: `{ measure: m }` (shares in proportion to a sum or count measure) or
/// `{ equal: fact }` (the same share for every cell of the fact).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDriver {
    #[serde(default)]
    pub measure: Option<Spanned<String>>,
    #[serde(default)]
    pub equal: Option<Spanned<String>>,
}

/// `aggregates:`: which cuboids to precompute.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAggregates {
    pub mode: Spanned<String>,
    #[serde(default)]
    pub budget_mb: Option<Spanned<u64>>,
    #[serde(default)]
    pub cuboids: Vec<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub groups: Vec<RawAggGroup>,
}

/// One Kylin-style aggregation group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAggGroup {
    pub includes: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub mandatory: Vec<Spanned<String>>,
    #[serde(default)]
    pub hierarchies: Vec<Vec<Spanned<String>>>,
    #[serde(default)]
    pub joint: Vec<Vec<Spanned<String>>>,
}
