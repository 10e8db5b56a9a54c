//! What can be wrong with a query: each variant has its data in fields, a message a person can
//! act on, and a stable [`QueryError::code`].

/// A query the cube cannot answer as asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("the query is not valid JSON for a query: {message}")]
    Malformed { message: String },
    #[error("the query names {found} {what}, more than the limit of {limit}")]
    TooLarge {
        what: &'static str,
        found: usize,
        limit: usize,
    },
    #[error("unknown level '{}'{}", shown(name), did_you_mean(suggestion))]
    UnknownLevel {
        name: String,
        suggestion: Option<String>,
    },
    #[error("unknown measure '{}'{}", shown(name), did_you_mean(suggestion))]
    UnknownMeasure {
        name: String,
        suggestion: Option<String>,
    },
    #[error("a query needs at least one measure")]
    NoMeasures,
    #[error("level '{level}' is used twice (in {first} and in {second})")]
    LevelTwice {
        level: String,
        first: &'static str,
        second: &'static str,
    },
    #[error(
        "measure '{measure}' does not vary by '{level}' (its facts have no '{dimension}'); ask for them in separate queries"
    )]
    MeasureDoesNotVary {
        measure: String,
        level: String,
        dimension: String,
    },
    #[error(
        "'{}' is not a member of '{}'{}",
        shown(value),
        shown(level),
        close_members(suggestions)
    )]
    UnknownMember {
        level: String,
        value: String,
        suggestions: Vec<String>,
    },
    #[error("filter on '{level}': {message}")]
    BadFilter { level: String, message: String },
    #[error("having on '{measure}': the measure is not asked for in `measures`")]
    HavingNotAsked { measure: String },
    #[error("cannot order by '{by}': it is neither a measure of the query nor a grouped level")]
    BadOrder { by: String },
    #[error(
        "cannot order by '{by}': it is on the pivot's columns; order a pivot by a row level or by a measure (its row total)"
    )]
    OrderByColumn { by: String },
    #[error("compare on '{level}': {message}")]
    BadCompare { level: String, message: String },
    #[error("share of '{measure}': {message}")]
    BadShare { measure: String, message: String },
    #[error("drill-through to '{level}': {message}")]
    BadDrill { level: String, message: String },
    #[error("the answer has {rows} rows, more than the limit of {limit}; add filters or a `limit`")]
    TooManyRows { rows: usize, limit: usize },
    /// The principal may not ask this (their scope does not fit the cube or the measure).
    #[error("forbidden: {message}")]
    Forbidden { message: String },
    /// Not the query's fault: the engine could not answer it.
    #[error("{message}")]
    Engine { message: String },
}

/// A name or value as a message shows it: cut short past 128 characters (the error's details
/// carry it whole).
fn shown(s: &str) -> String {
    const MAX: usize = 128;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_string(),
    }
}

fn did_you_mean(s: &Option<String>) -> String {
    s.as_ref()
        .map_or(String::new(), |s| format!(" (did you mean '{s}'?)"))
}

fn close_members(s: &[String]) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(
            " (close members: {})",
            s.iter()
                .map(|m| format!("'{m}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

impl QueryError {
    /// Stable, machine-readable name of the problem.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::Malformed { .. } => "malformed_query",
            QueryError::TooLarge { .. } => "query_too_large",
            QueryError::UnknownLevel { .. } => "unknown_level",
            QueryError::UnknownMeasure { .. } => "unknown_measure",
            QueryError::NoMeasures => "no_measures",
            QueryError::LevelTwice { .. } => "level_twice",
            QueryError::MeasureDoesNotVary { .. } => "measure_does_not_vary",
            QueryError::UnknownMember { .. } => "unknown_member",
            QueryError::BadFilter { .. } => "bad_filter",
            QueryError::HavingNotAsked { .. } => "having_not_asked",
            QueryError::BadOrder { .. } | QueryError::OrderByColumn { .. } => "bad_order",
            QueryError::BadCompare { .. } => "bad_compare",
            QueryError::BadShare { .. } => "bad_share",
            QueryError::BadDrill { .. } => "bad_drill",
            QueryError::TooManyRows { .. } => "too_many_rows",
            QueryError::Forbidden { .. } => "forbidden",
            QueryError::Engine { .. } => "internal",
        }
    }
}

impl From<crate::access::NotApplicable> for QueryError {
    fn from(e: crate::access::NotApplicable) -> QueryError {
        QueryError::Forbidden { message: e.message }
    }
}
