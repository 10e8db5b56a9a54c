//! Diagnostics: every problem in a definition, with the file, line, column and key path where it
//! is, what is wrong (a [`DefError`] with its data in fields) and, where one exists, a fix.

use std::fmt;

/// A place in a definition file. Lines and columns are 1-based; 0 means "not known" (for
/// example a problem with the file as a whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl Pos {
    pub const UNKNOWN: Pos = Pos { line: 0, column: 0 };

    pub fn new(line: u64, column: u64) -> Self {
        Pos { line, column }
    }

    pub(crate) fn from_location(loc: serde_saphyr::Location) -> Self {
        Pos {
            line: loc.line(),
            column: loc.column(),
        }
    }
}

/// What is wrong with a definition. The `Display` text is the message a person reads; `code()`
/// is the stable machine-readable name (used in HTTP errors).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DefError {
    #[error("{message}")]
    Syntax { message: String },
    #[error("unsupported definition version {found} (this Lattice reads version 1)")]
    UnsupportedVersion { found: u32 },
    #[error("unknown {what} '{name}'{}", in_scope(scope))]
    Unknown {
        what: &'static str,
        name: String,
        scope: Option<String>,
        suggestion: Option<String>,
    },
    #[error("duplicate {what} '{name}' (first defined at line {first_line})")]
    Duplicate {
        what: &'static str,
        name: String,
        first_line: u64,
    },
    #[error("bucket {what}s must be strictly ascending: {previous} is followed by {next}")]
    EdgesNotAscending {
        what: &'static str,
        previous: String,
        next: String,
    },
    #[error("a bucket needs at least one {what}")]
    NoEdges { what: &'static str },
    #[error("{labels} labels given for {buckets} buckets ({cuts} {what}s make {buckets} buckets)")]
    LabelCount {
        labels: usize,
        cuts: usize,
        what: &'static str,
        buckets: usize,
    },
    #[error("duplicate bucket label '{label}'")]
    DuplicateLabel { label: String },
    #[error("derived measure '{measure}' refers to itself: {}", cycle.join(" -> "))]
    DerivedCycle { measure: String, cycle: Vec<String> },
    #[error("unsupported aggregation '{agg}' (supported: sum, count, min, max, distinct)")]
    UnsupportedAggregation { agg: String },
    #[error("aggregation '{agg}' needs a column")]
    MissingColumn { agg: String },
    #[error("{message}")]
    Invalid { message: String },
    #[error("{found} {what}, more than the limit of {limit}")]
    TooMany {
        what: &'static str,
        found: u64,
        limit: u64,
    },
    #[error("invalid {what} name '{}': {reason}", name.escape_debug())]
    BadName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },
    #[error("cannot parse expression: {message}")]
    Expression { message: String },
    #[error("column '{column}' not found in table '{table}' ({file})")]
    ColumnNotFound {
        table: String,
        column: String,
        file: String,
        suggestion: Option<String>,
    },
    #[error("column '{table}.{column}' has type {found}, but {wanted} is needed here")]
    ColumnType {
        table: String,
        column: String,
        found: String,
        wanted: String,
    },
    #[error("source '{table}' cannot be read: {message}")]
    SourceUnreadable { table: String, message: String },
    #[error(
        "level '{parent}' is not functionally above '{child}' in dimension '{dimension}': \
         {child} '{member}' lies under {count} different {parent} members ({examples})"
    )]
    NotFunctional {
        dimension: String,
        parent: String,
        child: String,
        member: String,
        count: u64,
        examples: String,
    },
}

/// How to get under a limit of [`crate::limits`], by what is over it.
fn too_many_help(what: &str) -> Option<&'static str> {
    Some(match what {
        "cuboids" => {
            "list fewer cuboids, or prune the aggregation groups with `mandatory`, `hierarchies` and `joint`; `mode: auto` chooses under `budget_mb`"
        }
        "levels in an aggregation group" => "split the group into smaller ones",
        "bucket edges" | "bucket labels" => {
            "a level with that many members is a column, not a bucket: use `column:`"
        }
        "terms in the expanded expression" => {
            "a derived measure names others that name others again; write it with fewer references"
        }
        _ => return None,
    })
}

fn in_scope(scope: &Option<String>) -> String {
    match scope {
        Some(s) => format!(" in {s}"),
        None => String::new(),
    }
}

impl DefError {
    /// Stable, machine-readable name of the problem.
    pub fn code(&self) -> &'static str {
        match self {
            DefError::Syntax { .. } => "syntax",
            DefError::UnsupportedVersion { .. } => "unsupported_version",
            DefError::Unknown { what, .. } => match *what {
                "table" => "unknown_table",
                "level" => "unknown_level",
                "measure" => "unknown_measure",
                "dimension" => "unknown_dimension",
                "fact" => "unknown_fact",
                _ => "unknown_name",
            },
            DefError::Duplicate { .. } => "duplicate_name",
            DefError::EdgesNotAscending { .. } => "edges_not_ascending",
            DefError::NoEdges { .. } => "no_edges",
            DefError::LabelCount { .. } => "label_count",
            DefError::DuplicateLabel { .. } => "duplicate_label",
            DefError::DerivedCycle { .. } => "derived_cycle",
            DefError::UnsupportedAggregation { .. } => "unsupported_aggregation",
            DefError::MissingColumn { .. } => "missing_column",
            DefError::Invalid { .. } => "invalid",
            DefError::TooMany { .. } => "too_many",
            DefError::BadName { .. } => "bad_name",
            DefError::Expression { .. } => "bad_expression",
            DefError::ColumnNotFound { .. } => "unknown_column",
            DefError::ColumnType { .. } => "column_type",
            DefError::SourceUnreadable { .. } => "source_unreadable",
            DefError::NotFunctional { .. } => "hierarchy_not_functional",
        }
    }

    /// The suggested fix, if the problem has an obvious one.
    pub fn help(&self) -> Option<String> {
        match self {
            DefError::Unknown {
                suggestion: Some(s),
                ..
            }
            | DefError::ColumnNotFound {
                suggestion: Some(s),
                ..
            } => Some(format!("did you mean '{s}'?")),
            DefError::UnsupportedAggregation { .. } => Some(
                "for an average, define a derived measure such as `expr: total / count`".into(),
            ),
            DefError::TooMany { what, .. } => too_many_help(what).map(String::from),
            _ => None,
        }
    }
}

/// One problem in a definition, located.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// The file's name as the user gave it (or `<input>` for text without a file).
    pub file: String,
    pub pos: Pos,
    /// Key path inside the document, e.g. `dimensions.customer.levels.deposit_band.bucket.edges`.
    pub path: String,
    pub error: DefError,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.pos.line, self.pos.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{}", self.error)?;
        if let Some(help) = self.error.help() {
            write!(f, " ({help})")?;
        }
        Ok(())
    }
}

/// All the problems found in one definition, in document order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
    pub(crate) fn sort(&mut self) {
        self.0
            .sort_by_key(|d| (d.pos.line == 0, d.pos.line, d.pos.column));
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The closest candidate to `name` by edit distance, if it is close enough to be a likely typo.
pub fn suggest<'a, I>(name: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let len = name.chars().count();
    let limit = (len / 3).max(1) + 1;
    candidates
        .into_iter()
        // The distance is at least the difference in length: skip the far ones unmeasured
        // (a 500 kB name against a thousand members would take seconds).
        .filter(|c| c.chars().count().abs_diff(len) <= limit)
        .map(|c| (levenshtein(name, c), c))
        .filter(|(d, _)| *d <= limit && *d > 0)
        .min_by_key(|(d, c)| (*d, c.to_string()))
        .map(|(_, c)| c.to_string())
}

/// Up to `n` candidates close to `name` (by edit distance, or containing it), closest first.
pub fn suggest_many<'a, I>(name: &str, candidates: I, n: usize) -> Vec<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let len = name.chars().count();
    let limit = (len / 3).max(1) + 1;
    let lower = name.to_lowercase();
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter_map(|c| {
            let c_len = c.chars().count();
            let contains = !lower.is_empty() && c_len >= len && c.to_lowercase().contains(&lower);
            // As in `suggest`: the distance is at least the difference in length.
            let d = if contains || c_len.abs_diff(len) <= limit {
                levenshtein(name, c)
            } else {
                usize::MAX
            };
            (d <= limit || contains).then_some((d, c))
        })
        .collect();
    scored.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(n)
        .map(|(_, c)| c.to_string())
        .collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["province", "city", "branch"];
        assert_eq!(suggest("provnce", names), Some("province".into()));
        assert_eq!(suggest("citty", names), Some("city".into()));
        assert_eq!(suggest("customer", names), None);
    }
}
