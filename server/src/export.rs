//! Answers as CSV or as a spreadsheet: a request to the query, drill-through, analytics or
//! search routes whose `Accept` header prefers `text/csv` or the XLSX type gets the same
//! answer, under the same access and limits, as a table of that format.
//!
//! ```text
//! request (Accept: text/csv) --route answers JSON--> the answer's table --> CSV | XLSX
//! ```
//!
//! The table is read from the answer itself, so every exportable route exports what its JSON
//! says and nothing else: the `columns` and `rows` of a query, drill-through or search (and a
//! query's grand totals as a last row); the objects of an analysis's `rows`, `cells` (band
//! migration) or `curve` (Pareto), one column per field. A withheld cell is empty, never 0.
//! An error answers as JSON, as it would without the header.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rust_xlsxwriter::{Format, Workbook, XlsxError};
use serde_json::{Map, Value};

use crate::AppState;
use crate::error::ApiError;

pub(crate) const CSV: &str = "text/csv";
pub(crate) const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Csv,
    Xlsx,
}

/// The format the first media type of `Accept` names, when it is one of ours.
fn wanted(accept: Option<&HeaderValue>) -> Option<Wanted> {
    let first = accept?.to_str().ok()?.split(',').next()?;
    let media = first.split(';').next()?.trim().to_ascii_lowercase();
    match media.as_str() {
        CSV => Some(Wanted::Csv),
        XLSX => Some(Wanted::Xlsx),
        _ => None,
    }
}

/// Whether `path` is a route whose answer is a table: queries, drill-through, analyses and
/// searches that run.
pub(crate) fn exportable(method: &Method, path: &str) -> bool {
    *method == Method::POST
        && path.starts_with("/v1/cubes/")
        && (path.ends_with("/query")
            || path.ends_with("/drillthrough")
            || path.contains("/analytics/")
            || (path.contains("/searches/") && path.ends_with("/run")))
}

/// The middleware: runs the route for JSON, then writes its answer in the format asked for.
pub(crate) async fn export(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(format) = wanted(req.headers().get(header::ACCEPT)) else {
        return next.run(req).await;
    };
    if !exportable(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let name = file_name(req.uri().path());
    req.headers_mut()
        .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    let response = next.run(req).await;
    if response.status() != StatusCode::OK {
        return response;
    }
    // An answer is already bounded by the row limit; this bounds the copy made here.
    let cap = state.config.limits.max_body_bytes.max(256 << 20);
    let bytes = match to_bytes(response.into_body(), cap).await {
        Ok(b) => b,
        Err(e) => return ApiError::internal("reading an answer to export", &e).into_response(),
    };
    let answer: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return ApiError::internal("reading an answer to export", &e).into_response(),
    };
    let table = Table::of(&answer);
    let (body, mime, ext) = match format {
        Wanted::Csv => match table.csv() {
            Ok(b) => (b, "text/csv; charset=utf-8", "csv"),
            Err(e) => return ApiError::internal("writing CSV", &e).into_response(),
        },
        Wanted::Xlsx => match table.xlsx() {
            Ok(b) => (b, XLSX, "xlsx"),
            Err(e) => return ApiError::internal("writing XLSX", &e).into_response(),
        },
    };
    let mut out = Body::from(body).into_response();
    let headers = out.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.{ext}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    out
}

/// `bank_crm-query` from `/v1/cubes/bank_crm/query`: the cube and what was asked.
fn file_name(path: &str) -> String {
    let parts: Vec<&str> = path.trim_start_matches("/v1/cubes/").split('/').collect();
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    parts.iter().map(|p| safe(p)).collect::<Vec<_>>().join("-")
}

/// The fields an analysis's rows start with, in this order (the others follow by name).
const LEADING: [&str; 19] = [
    "period",
    "member",
    "parent",
    "peer",
    "from",
    "to",
    "members",
    "x",
    "cumulative",
    "y",
    "before",
    "after",
    "change",
    "relative_change",
    "impact",
    "last_active",
    "customers",
    "new_customers",
    "lost_customers",
];

/// How a column's values are written in a spreadsheet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    /// Exact decimals (strings in the JSON): numbers with their digits after the point.
    Decimal,
    Integer,
    /// Ratios and other floating values.
    Number,
}

/// An answer as a header and rows of JSON values.
#[derive(Debug, Default)]
struct Table {
    header: Vec<String>,
    kinds: Vec<Kind>,
    rows: Vec<Vec<Value>>,
}

impl Table {
    /// The table an answer shows (see the module's documentation); empty when it has none.
    fn of(answer: &Value) -> Table {
        if let (Some(Value::Array(columns)), Some(Value::Array(rows))) =
            (answer.get("columns"), answer.get("rows"))
        {
            return Table::of_columns(columns, rows, answer.get("totals"));
        }
        for key in ["rows", "cells", "curve"] {
            if let Some(Value::Array(items)) = answer.get(key) {
                return Table::of_objects(items);
            }
        }
        Table::default()
    }

    /// `columns` (names, or objects with `name` and `type`) and `rows` of values; `totals`
    /// (measure column name -> value) becomes a last row labelled `Total`.
    fn of_columns(columns: &[Value], rows: &[Value], totals: Option<&Value>) -> Table {
        let header: Vec<String> = columns
            .iter()
            .map(|c| match c {
                Value::String(s) => s.clone(),
                c => c
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            })
            .collect();
        let kinds = columns
            .iter()
            .map(|c| match c.get("type").and_then(Value::as_str) {
                Some("decimal") => Kind::Decimal,
                Some("integer") => Kind::Integer,
                Some("number") => Kind::Number,
                _ => Kind::Text,
            })
            .collect();
        let mut out: Vec<Vec<Value>> = rows
            .iter()
            .map(|r| r.as_array().cloned().unwrap_or_default())
            .collect();
        if let Some(Value::Object(totals)) = totals {
            let is_level = |c: &Value| c.get("kind").and_then(Value::as_str) == Some("level");
            let row: Vec<Value> = columns
                .iter()
                .zip(&header)
                .enumerate()
                .map(|(i, (c, name))| match totals.get(name) {
                    Some(v) if !is_level(c) => v.clone(),
                    _ if i == 0 => Value::String("Total".into()),
                    _ => Value::Null,
                })
                .collect();
            out.push(row);
        }
        Table {
            header,
            kinds,
            rows: out,
        }
    }

    /// One row per object, one column per field (nested objects as `field.key`): the member
    /// and periods first ([`LEADING`]), then the rest by name.
    fn of_objects(items: &[Value]) -> Table {
        let flat: Vec<Map<String, Value>> = items
            .iter()
            .map(|item| {
                let mut m = Map::new();
                flatten("", item, &mut m);
                m
            })
            .collect();
        let mut header: Vec<String> = Vec::new();
        for m in &flat {
            for k in m.keys() {
                if !header.contains(k) {
                    header.push(k.clone());
                }
            }
        }
        // The parsed answer has lost its fields' order: who (or when) first, then the values.
        let rank = |k: &str| {
            LEADING
                .iter()
                .position(|l| *l == k)
                .unwrap_or(LEADING.len())
        };
        header.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
        let rows: Vec<Vec<Value>> = flat
            .iter()
            .map(|m| {
                header
                    .iter()
                    .map(|h| m.get(h).cloned().unwrap_or(Value::Null))
                    .collect()
            })
            .collect();
        // Without declared types: numbers are numbers, and strings with a decimal point that
        // every non-null value of the column has are exact decimals (ids stay text).
        let kinds = (0..header.len())
            .map(|j| {
                let values = || rows.iter().map(|r| &r[j]).filter(|v| !v.is_null());
                if values().next().is_none() {
                    Kind::Text
                } else if values().all(|v| v.is_i64() || v.is_u64()) {
                    Kind::Integer
                } else if values().all(Value::is_number) {
                    Kind::Number
                } else if values()
                    .all(|v| v.as_str().is_some_and(|s| is_decimal(s) && s.contains('.')))
                {
                    Kind::Decimal
                } else {
                    Kind::Text
                }
            })
            .collect();
        Table {
            header,
            kinds,
            rows,
        }
    }

    fn csv(&self) -> Result<Vec<u8>, csv::Error> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&self.header)?;
        for row in &self.rows {
            w.write_record(row.iter().map(text))?;
        }
        w.into_inner().map_err(|e| e.into_error().into())
    }

    fn xlsx(&self) -> Result<Vec<u8>, XlsxError> {
        let mut book = Workbook::new();
        let sheet = book.add_worksheet();
        let bold = Format::new().set_bold();
        for (j, h) in self.header.iter().enumerate() {
            sheet.write_string_with_format(0, col(j), h, &bold)?;
        }
        let integer = Format::new().set_num_format("#,##0");
        let number = Format::new().set_num_format("#,##0.0000");
        let last = self.rows.len();
        for (i, row) in self.rows.iter().enumerate() {
            let r = u32::try_from(i + 1).unwrap_or(u32::MAX);
            // The totals row (a query's) in bold.
            let total = i + 1 == last && row.first().and_then(Value::as_str) == Some("Total");
            for (j, v) in row.iter().enumerate() {
                let kind = self.kinds.get(j).copied().unwrap_or(Kind::Text);
                let c = col(j);
                match (kind, v) {
                    (_, Value::Null) => {}
                    (Kind::Decimal, Value::String(s)) if is_decimal(s) => {
                        let places = s.split_once('.').map_or(0, |(_, f)| f.len());
                        let mut f = Format::new().set_num_format(decimal_format(places));
                        if total {
                            f = f.set_bold();
                        }
                        match s.parse::<f64>() {
                            Ok(x) => sheet.write_number_with_format(r, c, x, &f)?,
                            Err(_) => sheet.write_string(r, c, s)?,
                        };
                    }
                    (Kind::Integer | Kind::Number | Kind::Decimal, Value::Number(n)) => {
                        let f = if kind == Kind::Integer || n.is_i64() || n.is_u64() {
                            &integer
                        } else {
                            &number
                        };
                        let f = if total { &f.clone().set_bold() } else { f };
                        sheet.write_number_with_format(r, c, n.as_f64().unwrap_or(f64::NAN), f)?;
                    }
                    (_, v) if total && j == 0 => {
                        sheet.write_string_with_format(r, c, text(v), &bold)?;
                    }
                    (_, v) => {
                        sheet.write_string(r, c, text(v))?;
                    }
                }
            }
        }
        sheet.set_freeze_panes(1, 0)?;
        for j in 0..self.header.len() {
            let width = self
                .rows
                .iter()
                .take(200)
                .map(|r| r.get(j).map_or(0, |v| text(v).chars().count()))
                .chain([self.header[j].chars().count()])
                .max()
                .unwrap_or(8);
            sheet.set_column_width(col(j), (width.clamp(6, 60) + 2) as f64)?;
        }
        book.save_to_buffer()
    }
}

fn col(j: usize) -> u16 {
    u16::try_from(j).unwrap_or(u16::MAX)
}

/// `#,##0.00` for two places.
fn decimal_format(places: usize) -> String {
    if places == 0 {
        "#,##0".to_string()
    } else {
        format!("#,##0.{}", "0".repeat(places.min(30)))
    }
}

/// An exact decimal as the API writes one: optional minus, digits, optional fraction.
fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = s.split_once('.').unwrap_or((s, "0"));
    !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// A value as a cell's text: strings as they are, null empty, others as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

fn flatten(prefix: &str, v: &Value, out: &mut Map<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        v => {
            let key = if prefix.is_empty() { "value" } else { prefix };
            out.insert(key.to_string(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_media_type_decides() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(wanted(Some(&h("text/csv"))), Some(Wanted::Csv));
        assert_eq!(
            wanted(Some(&h("Text/CSV; charset=utf-8, */*"))),
            Some(Wanted::Csv)
        );
        assert_eq!(wanted(Some(&h(XLSX))), Some(Wanted::Xlsx));
        assert_eq!(wanted(Some(&h("application/json, text/csv"))), None);
        assert_eq!(wanted(Some(&h("*/*"))), None);
        assert_eq!(wanted(None), None);
    }

    #[test]
    fn only_answers_that_are_tables_export() {
        assert!(exportable(&Method::POST, "/v1/cubes/c/query"));
        assert!(exportable(&Method::POST, "/v1/cubes/c/drillthrough"));
        assert!(exportable(
            &Method::POST,
            "/v1/cubes/c/analytics/migration/drill"
        ));
        assert!(exportable(&Method::POST, "/v1/cubes/c/searches/run"));
        assert!(exportable(&Method::POST, "/v1/cubes/c/searches/vip/run"));
        assert!(!exportable(&Method::GET, "/v1/cubes/c/searches/vip"));
        assert!(!exportable(&Method::PUT, "/v1/cubes/c/definition"));
        assert!(!exportable(&Method::POST, "/v1/cubes/c/refresh"));
    }

    #[test]
    fn a_query_answer_is_its_columns_rows_and_totals() {
        let answer = json!({
            "columns": [{"name": "region.province", "kind": "level"},
                        {"name": "fee_income", "kind": "measure", "type": "decimal"},
                        {"name": "customers", "kind": "measure", "type": "integer"}],
            "rows": [["Zhejiang", "10.50", 3], ["Jiangsu, \"north\"", null, 2]],
            "totals": {"fee_income": null, "customers": 5},
        });
        let t = Table::of(&answer);
        let csv = String::from_utf8(t.csv().unwrap()).unwrap();
        assert_eq!(
            csv,
            "region.province,fee_income,customers\nZhejiang,10.50,3\n\"Jiangsu, \"\"north\"\"\",,2\nTotal,,5\n"
        );
        let xlsx = t.xlsx().unwrap();
        assert_eq!(&xlsx[..2], b"PK", "an XLSX is a zip");
    }

    #[test]
    fn an_analysis_is_its_objects_flattened() {
        let answer = json!({"kind": "change", "total": 2, "rows": [
            {"member": "517", "before": "10.00", "after": null, "relative_change": -0.5},
            {"member": "9", "before": "2.50", "after": "1.25", "relative_change": 0.25,
             "values": {"x": 1}},
        ]});
        let t = Table::of(&answer);
        assert_eq!(
            t.header,
            ["member", "before", "after", "relative_change", "values.x"]
        );
        assert_eq!(
            t.kinds,
            [
                Kind::Text,
                Kind::Decimal,
                Kind::Decimal,
                Kind::Number,
                Kind::Integer
            ]
        );
        let csv = String::from_utf8(t.csv().unwrap()).unwrap();
        assert_eq!(
            csv.lines().nth(1),
            Some("517,10.00,,-0.5,"),
            "a missing field and a null are both empty"
        );
    }

    #[test]
    fn decimals_are_recognised_exactly() {
        assert!(is_decimal("12"));
        assert!(is_decimal("-0.50"));
        assert!(!is_decimal("1e5"));
        assert!(!is_decimal("12."));
        assert!(!is_decimal("."));
        assert!(!is_decimal("M0017"));
        assert_eq!(decimal_format(2), "#,##0.00");
        assert_eq!(
            file_name("/v1/cubes/bank_crm/analytics/pareto"),
            "bank_crm-analytics-pareto"
        );
    }
}
