//! A statement's rows as text: an aligned table, CSV, or JSON with exact decimals as strings
//! (as the JSON API writes them).

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Value as Json};

/// An aligned text table with a header (psql-like borders).
pub fn table(batches: &[RecordBatch]) -> Result<String, ArrowError> {
    Ok(arrow::util::pretty::pretty_format_batches(batches)?.to_string())
}

/// CSV with a header row.
pub fn csv(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<String, ArrowError> {
    let mut out = Vec::new();
    {
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut out);
        if batches.is_empty() {
            w.write(&RecordBatch::new_empty(schema.clone()))?;
        }
        for b in batches {
            w.write(b)?;
        }
    }
    String::from_utf8(out).map_err(|e| ArrowError::CsvError(e.to_string()))
}

/// One JSON object per row: integers and floats as numbers, decimals as exact strings, text
/// as strings, null as null.
pub fn json(batches: &[RecordBatch]) -> Result<Vec<Json>, ArrowError> {
    let options = FormatOptions::default().with_null("");
    let mut rows = Vec::new();
    for b in batches {
        let schema = b.schema();
        let formatters = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for r in 0..b.num_rows() {
            let mut row = Map::new();
            for (c, f) in formatters.iter().enumerate() {
                let col = b.column(c);
                let field = schema.field(c);
                let value = if col.is_null(r) {
                    Json::Null
                } else {
                    let text = f.value(r).to_string();
                    match field.data_type() {
                        DataType::Int8
                        | DataType::Int16
                        | DataType::Int32
                        | DataType::Int64
                        | DataType::UInt8
                        | DataType::UInt16
                        | DataType::UInt32
                        | DataType::UInt64
                        | DataType::Float32
                        | DataType::Float64 => {
                            serde_json::from_str(&text).unwrap_or(Json::String(text))
                        }
                        DataType::Boolean => Json::Bool(text == "true"),
                        _ => Json::String(text),
                    }
                };
                row.insert(field.name().clone(), value);
            }
            rows.push(Json::Object(row));
        }
    }
    Ok(rows)
}
