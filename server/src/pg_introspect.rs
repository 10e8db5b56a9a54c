//! Drivers' introspection statements, made to plan.
//!
//! SQLAlchemy's inspector (and so Superset) reads a table's columns with one statement over
//! `pg_catalog` whose projection holds correlated scalar subqueries inside `CASE` branches: a
//! column's default from `pg_attrdef`, its identity options from `pg_sequence`, its collation
//! from `pg_collation`. DataFusion plans a correlated scalar subquery only when it is
//! aggregated, and the catalog rewrite rules of `datafusion-pg-catalog` replace such a
//! subquery only when it is a whole projection item. In a statement that reads nothing but
//! the catalog, [`rewrite_for_planning`] replaces every correlated scalar subquery of a
//! projection, however deep, with `NULL`. That is the catalog's true answer for the cube
//! tables: their columns have no defaults, no identity and the default collation. A
//! statement that reads a cube is never touched.
//!
//! Its primary key, index and unique-constraint queries `unnest` the `int2vector` columns of
//! `pg_index` and number them with `generate_subscripts`: [`extend_catalog`] serves `pg_index`
//! with those columns as arrays (and no rows: a cube table has no index), and
//! [`rewrite_for_planning`] also spells `generate_subscripts(a, d)` as
//! `unnest(range(1, CAST(array_length(a, d) AS BIGINT) + 1))`, which DataFusion plans.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Int16Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{MemTable, SchemaProvider, TableProvider};
use datafusion::common::Column;
use datafusion::datasource::ViewTable;
use datafusion::datasource::provider_as_source;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::logical_expr::{Expr as LogicalExpr, LogicalPlanBuilder, cast, col, lit};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CastKind, DataType as SqlType, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, Ident, ObjectName, Query, SelectItem, SetExpr,
    Statement, TableFactor, Value, Visit, VisitMut, Visitor, VisitorMut, visit_expressions_mut,
    visit_relations,
};
use lattice_engine::sql;

/// The schemas a catalog-only statement reads.
const CATALOG_SCHEMAS: [&str; 2] = ["pg_catalog", "information_schema"];

/// Replaces correlated scalar subqueries in the projections of a statement that reads only
/// `pg_catalog` and `information_schema` with `NULL`; any other statement is left as it is.
/// In every statement, `generate_subscripts(a, d)` becomes
/// `unnest(range(1, CAST(array_length(a, d) AS BIGINT) + 1))` (DataFusion has no such function).
pub(crate) fn rewrite_for_planning(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |e: &mut Expr| {
        subscripts_as_unnest(e);
        ControlFlow::<()>::Continue(())
    });
    if !reads_only_catalog(statement) {
        return;
    }
    let _ = VisitMut::visit(statement, &mut Projections);
}

/// `generate_subscripts(a, d)` as `unnest(range(1, CAST(array_length(a, d) AS BIGINT) + 1))`.
fn subscripts_as_unnest(e: &mut Expr) {
    let Expr::Function(f) = e else { return };
    let named = f
        .name
        .0
        .last()
        .and_then(|part| part.as_ident())
        .is_some_and(|name| name.value.eq_ignore_ascii_case("generate_subscripts"));
    let FunctionArguments::List(list) = &f.args else {
        return;
    };
    if !named || list.args.len() != 2 {
        return;
    }
    let call = |name: &str, args: Vec<Expr>| {
        Expr::Function(Function {
            name: ObjectName::from(vec![Ident::new(name)]),
            uses_odbc_syntax: false,
            parameters: FunctionArguments::None,
            args: FunctionArguments::List(FunctionArgumentList {
                duplicate_treatment: None,
                args: args
                    .into_iter()
                    .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                    .collect(),
                clauses: vec![],
            }),
            filter: None,
            null_treatment: None,
            over: None,
            within_group: vec![],
        })
    };
    let args: Vec<Expr> = list
        .args
        .iter()
        .filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => Some(x.clone()),
            _ => None,
        })
        .collect();
    let Ok([array, dimension]) = <[Expr; 2]>::try_from(args) else {
        return;
    };
    let one = || Expr::Value(Value::Number("1".into(), false).with_empty_span());
    let length = Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(call("array_length", vec![array, dimension])),
        data_type: SqlType::BigInt(None),
        array: false,
        format: None,
    };
    let end = Expr::BinaryOp {
        left: Box::new(length),
        op: BinaryOperator::Plus,
        right: Box::new(one()),
    };
    *e = call("unnest", vec![call("range", vec![one(), end])]);
}

/// Extends a session's `pg_catalog` (set up by `datafusion-pg-catalog`) for drivers'
/// introspection: `pg_index` with its vector columns as arrays, `pg_class` with
/// `reloptions`, `pg_description` with the definitions' comments, and `pg_get_indexdef`.
pub(crate) fn extend_catalog(ctx: &SessionContext) {
    let Some(catalog) = ctx.catalog(sql::CATALOG) else {
        return;
    };
    let Some(inner) = catalog.schema("pg_catalog") else {
        return;
    };
    let overrides = CatalogOverrides {
        pg_index: empty_with_arrays(
            &inner,
            "pg_index",
            &["indkey", "indoption"],
            &["indclass", "indcollation"],
        ),
        pg_class: with_reloptions(&inner),
        pg_description: with_comments(ctx, &inner),
        inner,
    };
    if let Err(e) = catalog.register_schema("pg_catalog", Arc::new(overrides)) {
        tracing::warn!(error = %e, "pg_catalog could not be extended");
    }
    ctx.register_udf(ScalarUDF::from(NullText::new("pg_get_indexdef")));
}

/// An empty table with the schema of the catalog's `table`, the named columns as arrays of
/// `Int16` (`int2vector`) and of `Int32` (`oidvector`, the catalog's oids are `Int32`).
fn empty_with_arrays(
    inner: &Arc<dyn SchemaProvider>,
    table: &str,
    int2: &[&str],
    oid: &[&str],
) -> Option<Arc<dyn TableProvider>> {
    let schema = futures::executor::block_on(inner.table(table))
        .ok()??
        .schema();
    let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let name = f.name().as_str();
            if int2.contains(&name) {
                Field::new(name, list(DataType::Int16), true)
            } else if oid.contains(&name) {
                Field::new(name, list(DataType::Int32), true)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    let table = MemTable::try_new(Arc::new(Schema::new(fields)), vec![vec![]]).ok()?;
    Some(Arc::new(table))
}

/// The catalog's `pg_class` with the `reloptions` column it lacks (`NULL`: no storage
/// options), as a view over it.
fn with_reloptions(inner: &Arc<dyn SchemaProvider>) -> Option<Arc<dyn TableProvider>> {
    let table = futures::executor::block_on(inner.table("pg_class")).ok()??;
    if table.schema().column_with_name("reloptions").is_some() {
        return None;
    }
    let columns: Vec<LogicalExpr> = table
        .schema()
        .fields()
        .iter()
        .map(|f| col(Column::new(Some("pg_class"), f.name())))
        .chain([cast(
            lit(ScalarValue::Null),
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        )
        .alias("reloptions")])
        .collect();
    let plan = LogicalPlanBuilder::scan("pg_class", provider_as_source(table), None)
        .and_then(|b| b.project(columns))
        .and_then(|b| b.build())
        .ok()?;
    Some(Arc::new(ViewTable::new(plan, None)))
}

/// The catalog's `pg_description` with the definition's comments on the cube tables (the
/// cube's description) and their measure columns (each measure's), as a view: its own rows,
/// then one row per comment, keyed by the oids `pg_class` and `pg_attribute` give the cube
/// tables. The comments are those of the definitions served when the connection opened.
fn with_comments(
    ctx: &SessionContext,
    inner: &Arc<dyn SchemaProvider>,
) -> Option<Arc<dyn TableProvider>> {
    let public = ctx.catalog(sql::CATALOG)?.schema(sql::SCHEMA)?;
    let (mut relnames, mut attnums, mut texts) = (Vec::new(), Vec::new(), Vec::new());
    for name in public.table_names() {
        let Ok(Some(table)) = futures::executor::block_on(public.table(&name)) else {
            continue;
        };
        if let Some(text) = table.get_table_definition() {
            relnames.push(name.clone());
            attnums.push(0i16);
            texts.push(text.to_string());
        }
        for (i, field) in table.schema().fields().iter().enumerate() {
            if let Some(text) = field.metadata().get("comment") {
                relnames.push(name.clone());
                attnums.push(i16::try_from(i + 1).ok()?);
                texts.push(text.clone());
            }
        }
    }
    let comments = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("relname", DataType::Utf8, false),
            Field::new("attnum", DataType::Int16, false),
            Field::new("description", DataType::Utf8, false),
        ])),
        vec![
            Arc::new(StringArray::from(relnames)),
            Arc::new(Int16Array::from(attnums)),
            Arc::new(StringArray::from(texts)),
        ],
    )
    .ok()?;
    let scratch = SessionContext::new();
    scratch
        .register_table(
            "d",
            futures::executor::block_on(inner.table("pg_description")).ok()??,
        )
        .ok()?;
    scratch
        .register_table(
            "c",
            futures::executor::block_on(inner.table("pg_class")).ok()??,
        )
        .ok()?;
    scratch.register_batch("comments", comments).ok()?;
    let plan = futures::executor::block_on(scratch.state().create_logical_plan(
        "SELECT objoid, classoid, objsubid, description FROM d \
         UNION ALL \
         SELECT c.oid, pc.oid, CAST(m.attnum AS INT), m.description \
         FROM comments m JOIN c ON c.relname = m.relname JOIN c AS pc ON pc.relname = 'pg_class'",
    ))
    .ok()?;
    Some(Arc::new(ViewTable::new(plan, None)))
}

/// The catalog schema, with some tables served differently.
#[derive(Debug)]
struct CatalogOverrides {
    inner: Arc<dyn SchemaProvider>,
    pg_index: Option<Arc<dyn TableProvider>>,
    pg_class: Option<Arc<dyn TableProvider>>,
    pg_description: Option<Arc<dyn TableProvider>>,
}

#[async_trait]
impl SchemaProvider for CatalogOverrides {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let table = match name {
            "pg_index" => &self.pg_index,
            "pg_class" => &self.pg_class,
            "pg_description" => &self.pg_description,
            _ => &None,
        };
        match table {
            Some(t) => Ok(Some(t.clone())),
            None => self.inner.table(name).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// A catalog function with no answer for the cube tables: any arguments, a `NULL` text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NullText {
    name: String,
    signature: Signature,
}

impl NullText {
    fn new(name: &str) -> Self {
        NullText {
            name: name.into(),
            signature: Signature::variadic_any(Volatility::Stable),
        }
    }
}

impl ScalarUDFImpl for NullText {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> datafusion::error::Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))
    }
}

/// Whether every table the statement names is in a catalog schema (and it names one).
fn reads_only_catalog(statement: &Statement) -> bool {
    let mut tables = 0;
    let outside = visit_relations(statement, |name: &ObjectName| {
        tables += 1;
        let schema = name.0.first().and_then(|part| part.as_ident());
        match schema {
            Some(schema) if name.0.len() > 1 && CATALOG_SCHEMAS.contains(&&*schema.value) => {
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Break(()),
        }
    });
    outside.is_continue() && tables > 0
}

struct Projections;

impl VisitorMut for Projections {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            for item in &mut select.projection {
                let expr = match item {
                    SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr,
                    _ => continue,
                };
                let _ = visit_expressions_mut(expr, |e: &mut Expr| {
                    if matches!(e, Expr::Subquery(q) if correlated(q)) {
                        *e = Expr::Value(Value::Null.with_empty_span());
                    }
                    ControlFlow::<()>::Continue(())
                });
            }
        }
        ControlFlow::Continue(())
    }
}

/// Whether a subquery names a column qualified by a table it does not read itself.
fn correlated(query: &Query) -> bool {
    let mut own = OwnTables::default();
    let _ = query.visit(&mut own);
    let mut outer = false;
    let _ = query.visit(&mut OuterColumns {
        own: &own.names,
        found: &mut outer,
    });
    outer
}

/// The names (and aliases) of the tables a query reads, its nested queries included.
#[derive(Default)]
struct OwnTables {
    names: HashSet<String>,
}

impl Visitor for OwnTables {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, alias, .. } = factor {
            if let Some(last) = name.0.last().and_then(|part| part.as_ident()) {
                self.names.insert(last.value.to_lowercase());
            }
            if let Some(alias) = alias {
                self.names.insert(alias.name.value.to_lowercase());
            }
        }
        ControlFlow::Continue(())
    }
}

struct OuterColumns<'a> {
    own: &'a HashSet<String>,
    found: &'a mut bool,
}

impl Visitor for OuterColumns<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::CompoundIdentifier(parts) = expr
            && parts.len() >= 2
            && !self
                .own
                .contains(&parts[parts.len() - 2].value.to_lowercase())
        {
            *self.found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut statements = PostgresCompatibilityParser::new()
            .parse(sql)
            .expect("parses");
        let mut statement = statements.remove(0);
        rewrite_for_planning(&mut statement);
        statement.to_string()
    }

    #[test]
    fn a_correlated_subquery_in_a_case_becomes_null() {
        let sql = "SELECT a.attname, CASE WHEN a.atthasdef THEN (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) \
                   FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid) ELSE NULL END AS def \
                   FROM pg_catalog.pg_attribute a";
        let out = rewritten(sql);
        assert!(out.contains("THEN NULL ELSE NULL"), "{out}");
        assert!(!out.contains("pg_attrdef"), "{out}");
    }

    #[test]
    fn an_uncorrelated_subquery_is_kept() {
        let sql = "SELECT CASE WHEN true THEN (SELECT max(oid) FROM pg_catalog.pg_class c WHERE c.relkind = 'r') END \
                   FROM pg_catalog.pg_namespace n";
        assert!(rewritten(sql).contains("pg_class"));
    }

    #[test]
    fn a_statement_over_a_cube_is_left_alone() {
        let sql = "SELECT CASE WHEN true THEN (SELECT max(c.oid) FROM pg_catalog.pg_class c WHERE c.oid = b.x) END \
                   FROM bank_crm b";
        assert!(rewritten(sql).contains("pg_class"));
    }

    #[test]
    fn generate_subscripts_becomes_an_unnest_of_a_range() {
        let out = rewritten(
            "SELECT unnest(i.indkey), generate_subscripts(i.indkey, 1) FROM pg_catalog.pg_index i",
        );
        assert!(
            out.contains("unnest(range(1, CAST(array_length(i.indkey, 1) AS BIGINT) + 1))"),
            "{out}"
        );
    }
}
