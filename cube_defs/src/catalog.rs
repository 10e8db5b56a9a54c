//! Data-phase checks: what only the data's schemas can show. The engine reads each source's
//! schema into a [`Catalog`] (this crate knows no Arrow) and [`check_catalog`] reports every
//! column a definition names that is missing or has a type that cannot serve its purpose, at
//! the line and column where the definition names it.

use crate::diag::{DefError, Diagnostic, Diagnostics, Pos, suggest};
use crate::model::*;

/// A column's type, as far as the definition language cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    Integer,
    Decimal { scale: i8 },
    Float,
    Text,
    Date,
    Boolean,
    Other(String),
}

impl ColumnType {
    fn is_numeric(&self) -> bool {
        matches!(
            self,
            ColumnType::Integer | ColumnType::Decimal { .. } | ColumnType::Float
        )
    }

    fn describe(&self) -> String {
        match self {
            ColumnType::Integer => "integer".into(),
            ColumnType::Decimal { scale } => format!("decimal (scale {scale})"),
            ColumnType::Float => "float".into(),
            ColumnType::Text => "text".into(),
            ColumnType::Date => "date".into(),
            ColumnType::Boolean => "boolean".into(),
            ColumnType::Other(t) => t.clone(),
        }
    }
}

/// One source table's schema.
#[derive(Debug, Clone)]
pub struct TableSchema {
    pub name: String,
    /// The file it was read from, for messages.
    pub file: String,
    pub columns: Vec<(String, ColumnType)>,
}

impl TableSchema {
    fn column(&self, name: &str) -> Option<&ColumnType> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// The schemas of the sources a model names.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tables: Vec<TableSchema>,
}

impl Catalog {
    pub fn table(&self, name: &str) -> Option<&TableSchema> {
        self.tables.iter().find(|t| t.name == name)
    }
}

#[derive(Clone, Copy)]
enum Want {
    Any,
    Key,
    Numeric,
    /// Integer or decimal: money that must stay exact.
    Exact,
    Date,
}

impl Want {
    fn accepts(self, t: &ColumnType) -> bool {
        match self {
            Want::Any => true,
            Want::Key => matches!(t, ColumnType::Integer | ColumnType::Text),
            Want::Numeric => t.is_numeric(),
            Want::Exact => matches!(t, ColumnType::Integer | ColumnType::Decimal { .. }),
            Want::Date => matches!(t, ColumnType::Date),
        }
    }
    fn describe(self) -> &'static str {
        match self {
            Want::Any => "any type",
            Want::Key => "an integer or text key",
            Want::Numeric => "a number (integer, decimal or float)",
            Want::Exact => {
                "an exact number (integer or decimal; a float cannot be split to the cent)"
            }
            Want::Date => "a date",
        }
    }
}

struct Checker<'a> {
    model: &'a Model,
    catalog: &'a Catalog,
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn report(&mut self, pos: Pos, path: &str, error: DefError) {
        self.diags.push(Diagnostic {
            file: self.model.file.clone(),
            pos,
            path: path.to_string(),
            error,
        });
    }

    /// Checks that `table.column` exists with a type `want` accepts; returns its type.
    fn column(
        &mut self,
        table: &str,
        column: &str,
        pos: Pos,
        path: &str,
        want: Want,
    ) -> Option<ColumnType> {
        let Some(schema) = self.catalog.table(table) else {
            // An unreadable source is reported once, by whoever built the catalog.
            return None;
        };
        match schema.column(column) {
            None => {
                let suggestion = suggest(column, schema.columns.iter().map(|(n, _)| n.as_str()));
                let file = schema.file.clone();
                self.report(
                    pos,
                    path,
                    DefError::ColumnNotFound {
                        table: table.into(),
                        column: column.into(),
                        file,
                        suggestion,
                    },
                );
                None
            }
            Some(t) if !want.accepts(t) => {
                let found = t.describe();
                self.report(
                    pos,
                    path,
                    DefError::ColumnType {
                        table: table.into(),
                        column: column.into(),
                        found,
                        wanted: want.describe().into(),
                    },
                );
                None
            }
            Some(t) => Some(t.clone()),
        }
    }

    fn column_ref(&mut self, c: &ColumnRef, want: Want) -> Option<ColumnType> {
        self.column(&c.table, &c.column, c.pos, &c.path, want)
    }
}

/// The schema of the table an allocation computes, from the schemas of its driver fact and
/// pool (`None` while either is missing): each of the allocated fact's dimensions' key columns
/// as the driver fact has it, the pool's time column (a date) and its amount column (the
/// pool's decimal scale; 0 for an integer amount).
pub fn allocation_schema(
    model: &Model,
    catalog: &Catalog,
    allocation: &Allocation,
) -> Option<TableSchema> {
    let fact = &model.facts[allocation.fact];
    let driver = catalog.table(&model.facts[allocation.from].name)?;
    let pool = catalog.table(&allocation.pool.table)?;
    let mut columns = Vec::new();
    for &d in &fact.direct {
        if let DimensionKind::Table { key, .. } = &model.dimensions[d].kind {
            columns.push((key.column.clone(), driver.column(&key.column)?.clone()));
        }
    }
    columns.push((allocation.pool.time.column.clone(), ColumnType::Date));
    let scale = match pool.column(&allocation.pool.amount.column)? {
        ColumnType::Decimal { scale } => *scale,
        _ => 0,
    };
    columns.push((
        allocation.pool.amount.column.clone(),
        ColumnType::Decimal { scale },
    ));
    Some(TableSchema {
        name: fact.name.clone(),
        file: format!("allocation '{}'", fact.name),
        columns,
    })
}

/// Every way the model disagrees with the schemas of its sources.
pub fn check_catalog(model: &Model, catalog: &Catalog) -> Diagnostics {
    let mut c = Checker {
        model,
        catalog,
        diags: Vec::new(),
    };
    for fact in &model.facts {
        if let Some(t) = &fact.time {
            c.column_ref(t, Want::Date);
        }
        for (&d, &p) in fact.direct.iter().zip(&fact.direct_pos) {
            if let DimensionKind::Table { key, .. } = &model.dimensions[d].kind {
                let path = format!("facts.{}.dimensions", fact.name);
                c.column(&fact.name, &key.column, p, &path, Want::Key);
            }
        }
    }
    for dim in &model.dimensions {
        if let DimensionKind::Table {
            key, via, lookups, ..
        } = &dim.kind
        {
            c.column_ref(key, Want::Key);
            if let Some(v) = via
                && let DimensionKind::Table {
                    table: via_table, ..
                } = &model.dimensions[*v].kind
            {
                c.column(via_table, &key.column, key.pos, &key.path, Want::Key);
            }
            for l in lookups {
                c.column_ref(&l.key, Want::Key);
                c.column(&l.table, &l.key.column, l.key.pos, &l.key.path, Want::Key);
            }
        }
        for level in &dim.levels {
            match &level.kind {
                LevelKind::Column(col) => {
                    c.column_ref(col, Want::Any);
                }
                LevelKind::Bucket(Bucket {
                    source: BucketSource::Column(col),
                    ..
                }) => {
                    c.column_ref(col, Want::Numeric);
                }
                LevelKind::Bucket(_) | LevelKind::Time(_) => {}
            }
        }
    }
    for a in &model.allocations {
        c.column_ref(&a.pool.amount, Want::Exact);
        c.column_ref(&a.pool.time, Want::Date);
        c.column_ref(&a.pool.key, Want::Key);
    }
    for m in &model.measures {
        if let MeasureKind::Aggregate {
            agg,
            column: Some(col),
            ..
        } = &m.kind
        {
            let want = match agg {
                Agg::Sum => Want::Numeric,
                Agg::Min | Agg::Max => Want::Numeric,
                Agg::Count | Agg::Distinct => Want::Any,
            };
            c.column_ref(col, want);
        }
    }
    let mut d = Diagnostics(c.diags);
    d.sort();
    d
}
