//! The validated model: what the rest of Lattice sees. Every name here resolved, every rule in
//! [`crate::validate`] held; the engine may trust it without checking again. Positions are kept
//! only where data can still prove the definition wrong (columns, hierarchy steps), so the
//! data-phase checks ([`crate::catalog`]) can point at the line.

use std::fmt;
use std::path::PathBuf;

use crate::diag::Pos;

/// Index of a dimension in [`Model::dimensions`].
pub type DimId = usize;
/// Index of a fact table in [`Model::facts`].
pub type FactId = usize;
/// Index of a measure in [`Model::measures`].
pub type MeasureId = usize;

/// A validated cube definition.
#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub description: Option<String>,
    /// The definition's file name, for diagnostics found later (data-phase checks).
    pub file: String,
    pub sources: Vec<Source>,
    pub facts: Vec<Fact>,
    pub dimensions: Vec<Dimension>,
    pub measures: Vec<Measure>,
    /// Facts the build computes rather than reads: each allocation is the fact
    /// `facts[allocation.fact]`, after the facts read from sources.
    pub allocations: Vec<Allocation>,
    pub aggregates: Aggregates,
    /// Small-cell suppression, when the cube declares it.
    pub privacy: Option<Privacy>,
    /// Saved target-customer searches the definition names (`searches:`), in file order.
    pub searches: Vec<SavedSearch>,
}

/// `searches.<name>`: a search over the members of `entity`, the API's document
/// (docs/searches.md) with its names checked. Whether its members and periods exist is known
/// only with the data: the engine checks that when it builds the cube.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedSearch {
    pub name: String,
    pub description: Option<String>,
    /// `dimension.level` (default `customer.id`).
    pub entity: String,
    pub condition: SearchCondition,
    /// Where the search's name is.
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SearchCondition {
    All(Vec<SearchCondition>),
    Any(Vec<SearchCondition>),
    Not(Box<SearchCondition>),
    /// The members with facts in these members of `level` (a query filter's `op`).
    Member {
        filter: SearchFilter,
        period: Option<SearchPeriod>,
    },
    /// The members whose `measure` over the facts passing `filters` compares true (`op`: gt,
    /// ge, lt, le, eq, ne) with `value` (an exact decimal as written).
    Measure {
        measure: String,
        op: String,
        value: String,
        filters: Vec<SearchFilter>,
        period: Option<SearchPeriod>,
    },
}

/// A query filter: `op` one of eq, in, not_in, between, prefix, search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchFilter {
    pub level: String,
    pub op: String,
    pub value: Option<String>,
    pub values: Option<Vec<String>>,
}

/// The `last` periods of time level `level` ending at `value` (a member or `latest`).
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPeriod {
    pub level: String,
    pub value: String,
    pub last: u32,
}

/// `privacy:`: answers to principals with one of `applies_to`'s roles suppress every cell
/// (and every total containing one) with fewer than `min_customers` distinct customers.
#[derive(Debug, Clone)]
pub struct Privacy {
    pub min_customers: u64,
    /// The dimension whose distinct keys are counted.
    pub customers: DimId,
    pub applies_to: Vec<String>,
    /// Per fact that carries the customers' dimension: the distinct measure over its key.
    pub counts: Vec<(FactId, MeasureId)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    Parquet,
    Csv,
}

/// A table the definition reads. `path` is resolved against the definition's folder (or the
/// data folder): a file, a folder of files or a glob; the engine finds its files
/// (`lattice_engine::source::files`).
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub path: PathBuf,
    /// `format:`, or the path's extension; `None` when neither says (a folder, or a path
    /// without an extension): the files found tell.
    pub format: Option<SourceFormat>,
    pub pos: Pos,
}

/// A column of a source table, with where the definition names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRef {
    pub table: String,
    pub column: String,
    pub pos: Pos,
    /// Key path of the reference, e.g. `measures.txn_amount.column`.
    pub path: String,
}

/// A fact table.
#[derive(Debug, Clone)]
pub struct Fact {
    /// The source table's name.
    pub name: String,
    /// Date column placing each fact in time; `None` when the cube has no time dimension.
    pub time: Option<ColumnRef>,
    /// Dimensions whose key the fact carries directly (not those reached `via` another).
    pub direct: Vec<DimId>,
    /// Where each of `direct` is named (`facts.<name>.dimensions[i]`).
    pub direct_pos: Vec<Pos>,
}

/// A fact table computed by the build: every pool row (an amount of `pool.member`'s dimension
/// in a period of the time dimension's finest grain) is spread over the cells of `from` (its
/// rows grouped by the allocated fact's dimensions and that period) whose member is the pool
/// row's, in proportion to the driver, exactly by the largest-remainder method. Its table has
/// the key column of each of `facts[fact].direct`, the time column `pool.time.column` (the
/// period's first day) and the amount column `pool.amount.column`, at the pool's scale.
#[derive(Debug, Clone)]
pub struct Allocation {
    /// The fact it creates (its name is the allocation's).
    pub fact: FactId,
    pub pool: Pool,
    pub driver: Driver,
    /// The fact whose cells receive the amounts.
    pub from: FactId,
    pub pos: Pos,
}

/// Where an allocation's amounts come from.
#[derive(Debug, Clone)]
pub struct Pool {
    pub table: String,
    pub amount: ColumnRef,
    pub time: ColumnRef,
    /// The dimension each pool row's key belongs to.
    pub member: DimId,
    /// The pool's column holding that key.
    pub key: ColumnRef,
}

/// How an allocation weighs the cells that share a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// In proportion to an additive (sum or count) measure of the driver fact, per cell.
    Measure(MeasureId),
    /// The same weight for every cell.
    Equal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeGrain {
    Year,
    Quarter,
    Month,
    Day,
}

impl TimeGrain {
    pub const ALL: [TimeGrain; 4] = [
        TimeGrain::Year,
        TimeGrain::Quarter,
        TimeGrain::Month,
        TimeGrain::Day,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TimeGrain::Year => "year",
            TimeGrain::Quarter => "quarter",
            TimeGrain::Month => "month",
            TimeGrain::Day => "day",
        }
    }

    pub fn parse(name: &str) -> Option<TimeGrain> {
        TimeGrain::ALL.into_iter().find(|g| g.name() == name)
    }
}

/// A snowflake join from a dimension table to a lookup table on a column of the same name.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub table: String,
    pub key: ColumnRef,
}

#[derive(Debug, Clone)]
pub enum DimensionKind {
    /// Levels are calendar grains of each fact's time column.
    Time,
    /// Levels are columns of `table` (or its lookups), joined on `key`.
    Table {
        table: String,
        key: ColumnRef,
        /// The dimension whose table carries `key` (None: the facts carry it).
        via: Option<DimId>,
        lookups: Vec<Lookup>,
    },
}

#[derive(Debug, Clone)]
pub struct Dimension {
    pub name: String,
    pub kind: DimensionKind,
    pub levels: Vec<Level>,
    /// Level indices from the coarsest to the finest; each one is functionally above the next.
    pub hierarchy: Vec<usize>,
    /// Position of each hierarchy entry, for the data-phase functional check.
    pub hierarchy_pos: Vec<Pos>,
    pub pos: Pos,
}

impl Dimension {
    pub fn level(&self, name: &str) -> Option<usize> {
        self.levels.iter().position(|l| l.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct Level {
    pub name: String,
    pub kind: LevelKind,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub enum LevelKind {
    /// Members are the distinct values of a column.
    Column(ColumnRef),
    /// Members are calendar periods ("2025", "2025-Q1", "2025-03", "2025-03-14").
    Time(TimeGrain),
    /// Members are the buckets' labels, in bucket order, plus `unknown` for nulls.
    Bucket(Bucket),
}

/// An exact decimal with [`Decimal::SCALE`] fractional digits: bucket edges compare with money
/// and integers without binary rounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Decimal(pub i128);

impl Decimal {
    pub const SCALE: u32 = 6;

    /// Parses `-12`, `10000`, `0.25`, `1e6`. `None` if it is not a finite number with at most
    /// [`Decimal::SCALE`] fractional digits.
    pub fn parse(text: &str) -> Option<Decimal> {
        let text = text.trim().replace('_', "");
        let (mantissa, exp) = match text.split_once(['e', 'E']) {
            Some((m, e)) => (m.to_string(), e.parse::<i32>().ok()?),
            None => (text, 0),
        };
        let (neg, digits) = match mantissa.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, mantissa.strip_prefix('+').unwrap_or(&mantissa)),
        };
        let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        if !int_part
            .chars()
            .chain(frac_part.chars())
            .all(|c| c.is_ascii_digit())
        {
            return None;
        }
        let all: String = format!("{int_part}{frac_part}");
        let shift = Decimal::SCALE as i32 - frac_part.len() as i32 + exp;
        let mut value: i128 =
            all.parse::<i128>()
                .ok()
                .or(if all.is_empty() { Some(0) } else { None })?;
        if shift >= 0 {
            value = value.checked_mul(10i128.checked_pow(shift as u32)?)?;
        } else {
            let div = 10i128.checked_pow((-shift) as u32)?;
            if value % div != 0 {
                return None;
            }
            value /= div;
        }
        Some(Decimal(if neg { -value } else { value }))
    }

    /// The value in units of `10^-scale` (e.g. cents for scale 2), if it is exact there.
    pub fn to_scale(self, scale: u32) -> Option<i128> {
        if scale >= Decimal::SCALE {
            self.0.checked_mul(10i128.pow(scale - Decimal::SCALE))
        } else {
            let div = 10i128.pow(Decimal::SCALE - scale);
            (self.0 % div == 0).then_some(self.0 / div)
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = 10i128.pow(Decimal::SCALE);
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let (int, frac) = (abs / unit as u128, abs % unit as u128);
        if frac == 0 {
            write!(f, "{sign}{int}")
        } else {
            let frac = format!("{frac:0width$}", width = Decimal::SCALE as usize);
            write!(f, "{sign}{int}.{}", frac.trim_end_matches('0'))
        }
    }
}

/// Buckets over a column or a metric: by fixed edges, or (metrics only) by rank within the
/// period. `labels.len() == cuts.len() + 1`.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub source: BucketSource,
    pub cuts: Cuts,
    pub labels: Vec<String>,
}

/// Where one bucket ends and the next begins.
#[derive(Debug, Clone, PartialEq)]
pub enum Cuts {
    /// Fixed edges, strictly ascending: bucket `i` holds `edges[i-1] <= v < edges[i]`, with an
    /// open first and last bucket.
    Edges(Vec<Decimal>),
    /// Quantiles, strictly ascending and strictly between 0 and 1, of a metric bucket: within
    /// each period, over the entities with a value of the metric in it, an entity's bucket is the
    /// number of quantiles `q` with `cume_dist > q`, where `cume_dist` is the share of those
    /// entities whose value is at most the entity's (SQL's `CUME_DIST() OVER (PARTITION BY
    /// period ORDER BY value)`; ties share a bucket).
    Quantiles(Vec<Decimal>),
}

impl Cuts {
    /// How many cuts (one bucket fewer than labels).
    pub fn len(&self) -> usize {
        match self {
            Cuts::Edges(c) | Cuts::Quantiles(c) => c.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bucket a value falls in, for fixed edges; `None` for quantiles, whose bucket
    /// depends on the other entities' values ([`Cuts::quantile_class`]).
    pub fn index_of(&self, value: Decimal) -> Option<usize> {
        match self {
            Cuts::Edges(edges) => Some(edges.partition_point(|e| *e <= value)),
            Cuts::Quantiles(_) => None,
        }
    }

    /// The quantile bucket of an entity that `at_most` of the period's `of` ranked entities do
    /// not exceed (itself and its ties included): the number of quantiles below
    /// `cume_dist = at_most / of`, compared exactly. `None` for fixed edges.
    pub fn quantile_class(&self, at_most: u64, of: u64) -> Option<usize> {
        let Cuts::Quantiles(qs) = self else {
            return None;
        };
        let unit = 10i128.pow(Decimal::SCALE);
        Some(
            qs.iter()
                .filter(|q| i128::from(at_most) * unit > q.0 * i128::from(of))
                .count(),
        )
    }
}

/// The label of the member that holds nulls (and entities with no value).
pub const UNKNOWN_MEMBER: &str = "unknown";

#[derive(Debug, Clone)]
pub enum BucketSource {
    /// A column of the dimension's table.
    Column(ColumnRef),
    /// A measure aggregated per entity of the dimension (e.g. per customer) and, when given, per
    /// period of the time dimension (per month): the entity's bucket may change each period.
    Metric {
        measure: MeasureId,
        period: Option<TimeGrain>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    Sum,
    Count,
    Min,
    Max,
    /// Exact distinct count (roaring bitmaps in the cube).
    Distinct,
}

impl Agg {
    pub fn parse(name: &str) -> Option<Agg> {
        Some(match name {
            "sum" => Agg::Sum,
            "count" => Agg::Count,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "distinct" | "count_distinct" => Agg::Distinct,
            _ => return None,
        })
    }
}

/// How a measure rolls up over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverTime {
    /// Like every other dimension.
    Additive,
    /// Semi-additive: the last period inside a time cell (or the latest period when the query
    /// has no time level), aggregated normally over everything else.
    Last,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Money,
    Integer,
    Number,
    Percent,
}

impl Format {
    pub fn parse(name: &str) -> Option<Format> {
        Some(match name {
            "money" => Format::Money,
            "integer" => Format::Integer,
            "number" => Format::Number,
            "percent" => Format::Percent,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Measure {
    pub name: String,
    pub kind: MeasureKind,
    pub format: Option<Format>,
    pub description: Option<String>,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub enum MeasureKind {
    Aggregate {
        fact: FactId,
        agg: Agg,
        /// `None` only for `count` (count of fact rows).
        column: Option<ColumnRef>,
        over_time: OverTime,
    },
    /// Evaluated after aggregation from other measures; no cycles (checked).
    Derived(Expr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// A derived measure's expression over other measures.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Measure(MeasureId),
    Number(f64),
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
}

impl Expr {
    /// Every measure the expression refers to directly.
    pub fn measures(&self, out: &mut Vec<MeasureId>) {
        match self {
            Expr::Measure(m) => out.push(*m),
            Expr::Number(_) => {}
            Expr::Neg(e) => e.measures(out),
            Expr::Binary(_, a, b) => {
                a.measures(out);
                b.measures(out);
            }
        }
    }
}

/// A level named as `dimension.level`, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LevelRef {
    pub dim: DimId,
    pub level: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggMode {
    /// Greedy benefit per byte under the budget, plus any listed cuboids.
    Auto,
    /// Only the base cuboids and the listed ones.
    Explicit,
    /// Kylin-style aggregation groups.
    Groups,
}

#[derive(Debug, Clone)]
pub struct Aggregates {
    pub mode: AggMode,
    pub budget_mb: u64,
    pub cuboids: Vec<Vec<LevelRef>>,
    pub groups: Vec<AggGroup>,
}

impl Default for Aggregates {
    fn default() -> Self {
        Aggregates {
            mode: AggMode::Auto,
            budget_mb: 1024,
            cuboids: Vec::new(),
            groups: Vec::new(),
        }
    }
}

/// A Kylin aggregation group: cuboids over subsets of `includes` that contain every mandatory
/// level, respect hierarchies (a level only with its ancestors) and keep joints together.
#[derive(Debug, Clone)]
pub struct AggGroup {
    pub includes: Vec<LevelRef>,
    pub mandatory: Vec<LevelRef>,
    pub hierarchies: Vec<Vec<LevelRef>>,
    pub joint: Vec<Vec<LevelRef>>,
}

impl Model {
    pub fn dimension(&self, name: &str) -> Option<DimId> {
        self.dimensions.iter().position(|d| d.name == name)
    }

    pub fn measure(&self, name: &str) -> Option<MeasureId> {
        self.measures.iter().position(|m| m.name == name)
    }

    pub fn fact(&self, name: &str) -> Option<FactId> {
        self.facts.iter().position(|f| f.name == name)
    }

    /// The allocation that computes `fact`, if the build computes it.
    pub fn allocation_of(&self, fact: FactId) -> Option<&Allocation> {
        self.allocations.iter().find(|a| a.fact == fact)
    }

    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// Resolves `dimension.level`.
    pub fn level(&self, qualified: &str) -> Option<LevelRef> {
        let (dim, level) = qualified.split_once('.')?;
        let d = self.dimension(dim)?;
        let l = self.dimensions[d].level(level)?;
        Some(LevelRef { dim: d, level: l })
    }

    /// `dimension.level` for a resolved level.
    pub fn level_name(&self, level: LevelRef) -> String {
        let d = &self.dimensions[level.dim];
        format!("{}.{}", d.name, d.levels[level.level].name)
    }

    /// Every `dimension.level` in the cube, in definition order.
    pub fn level_names(&self) -> Vec<String> {
        self.dimensions
            .iter()
            .flat_map(|d| {
                d.levels
                    .iter()
                    .map(move |l| format!("{}.{}", d.name, l.name))
            })
            .collect()
    }

    /// The time dimension, if the cube has one.
    pub fn time_dimension(&self) -> Option<DimId> {
        self.dimensions
            .iter()
            .position(|d| matches!(d.kind, DimensionKind::Time))
    }

    /// Whether facts of `fact` vary by `dim`: the fact carries its key, reaches it `via` a
    /// dimension it varies by, or it is the time dimension and the fact has a time column.
    pub fn fact_has_dimension(&self, fact: FactId, dim: DimId) -> bool {
        let f = &self.facts[fact];
        match &self.dimensions[dim].kind {
            DimensionKind::Time => f.time.is_some(),
            DimensionKind::Table { via, .. } => {
                f.direct.contains(&dim) || via.is_some_and(|v| self.fact_has_dimension(fact, v))
            }
        }
    }

    /// The fact tables a measure reads (derived measures: all the facts of their inputs).
    pub fn measure_facts(&self, measure: MeasureId) -> Vec<FactId> {
        let mut out = Vec::new();
        self.collect_facts(measure, &mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    fn collect_facts(&self, measure: MeasureId, out: &mut Vec<FactId>) {
        match &self.measures[measure].kind {
            MeasureKind::Aggregate { fact, .. } => out.push(*fact),
            MeasureKind::Derived(expr) => {
                let mut refs = Vec::new();
                expr.measures(&mut refs);
                for m in refs {
                    self.collect_facts(m, out);
                }
            }
        }
    }

    /// Whether a measure can be broken down by a level: every fact it reads varies by the
    /// level's dimension. (Channel with a balance is not.)
    pub fn measure_varies_by(&self, measure: MeasureId, level: LevelRef) -> bool {
        self.measure_facts(measure)
            .into_iter()
            .all(|f| self.fact_has_dimension(f, level.dim))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_parses_exactly() {
        assert_eq!(Decimal::parse("10000"), Some(Decimal(10_000_000_000)));
        assert_eq!(Decimal::parse("0.1"), Some(Decimal(100_000)));
        assert_eq!(Decimal::parse("-2.5"), Some(Decimal(-2_500_000)));
        assert_eq!(Decimal::parse("1e6"), Some(Decimal(1_000_000_000_000)));
        assert_eq!(Decimal::parse("1_000"), Some(Decimal(1_000_000_000)));
        assert_eq!(Decimal::parse("0.0000001"), None);
        assert_eq!(Decimal::parse("abc"), None);
        assert_eq!(Decimal::parse("."), None);
        assert_eq!(Decimal::parse("12.50").unwrap().to_string(), "12.5");
        assert_eq!(Decimal::parse("12.50").unwrap().to_scale(2), Some(1250));
        assert_eq!(Decimal::parse("0.125").unwrap().to_scale(2), None);
    }

    #[test]
    fn bucket_is_left_closed_right_open() {
        let b = Bucket {
            source: BucketSource::Metric {
                measure: 0,
                period: None,
            },
            cuts: Cuts::Edges(vec![
                Decimal::parse("25").unwrap(),
                Decimal::parse("35").unwrap(),
            ]),
            labels: vec!["<25".into(), "25-34".into(), "35+".into()],
        };
        let at = |v: &str| b.cuts.index_of(Decimal::parse(v).unwrap()).unwrap();
        assert_eq!(at("24.99"), 0);
        assert_eq!(at("25"), 1);
        assert_eq!(at("34.999"), 1);
        assert_eq!(at("35"), 2);
        assert_eq!(at("-1000"), 0);
        assert_eq!(b.cuts.quantile_class(1, 2), None);
    }

    #[test]
    fn quantile_class_counts_quantiles_below_cume_dist() {
        let cuts = Cuts::Quantiles(vec![
            Decimal::parse("0.8").unwrap(),
            Decimal::parse("0.95").unwrap(),
        ]);
        let class = |at_most, of| cuts.quantile_class(at_most, of).unwrap();
        // Ten entities: the eighth sits exactly at 0.8 (not above it), the ninth above.
        assert_eq!(class(8, 10), 0);
        assert_eq!(class(9, 10), 1);
        assert_eq!(class(10, 10), 2);
        // Twenty: the nineteenth is at 0.95 exactly, so B; only the top one is A.
        assert_eq!(class(19, 20), 1);
        assert_eq!(class(20, 20), 2);
        // A lone entity is at the top.
        assert_eq!(class(1, 1), 2);
        assert_eq!(cuts.index_of(Decimal(0)), None);
    }
}
