//! Reading DataFusion results column by column, in the few shapes the build needs.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Decimal128Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;

use crate::store::encoding::KeyValue;
use crate::{EngineError, Result};

/// Runs `sql` and returns its batches.
pub(crate) async fn query(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    tracing::debug!(sql, "build query");
    Ok(ctx.sql(sql).await?.collect().await?)
}

fn cast_to(col: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    Ok(if col.data_type() == to {
        Arc::clone(col)
    } else {
        cast(col, to)?
    })
}

/// Column `i` as text (NULL stays `None`).
pub(crate) fn strings(batch: &RecordBatch, i: usize) -> Result<StringArray> {
    let a = cast_to(batch.column(i), &DataType::Utf8)?;
    a.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| EngineError::Internal("utf8 cast did not give a string array".into()))
}

/// Column `i` as 64-bit integers.
pub(crate) fn ints(batch: &RecordBatch, i: usize) -> Result<Int64Array> {
    let a = cast_to(batch.column(i), &DataType::Int64)?;
    a.as_any()
        .downcast_ref::<Int64Array>()
        .cloned()
        .ok_or_else(|| EngineError::Internal("int64 cast did not give an int64 array".into()))
}

/// Column `i` as exact decimals at `scale` (integers are scaled up exactly).
pub(crate) fn decimals(batch: &RecordBatch, i: usize, scale: i8) -> Result<Decimal128Array> {
    let a = cast_to(batch.column(i), &DataType::Decimal128(38, scale))?;
    a.as_any()
        .downcast_ref::<Decimal128Array>()
        .cloned()
        .ok_or_else(|| EngineError::Internal("decimal cast did not give a decimal array".into()))
}

/// Column `i`'s decimals at `scale`, at whatever precision it has: decimals at the scale
/// already are the same values at any precision, so they are not cast (reading a base
/// table; [`decimals`] where the type must be exact).
pub(crate) fn decimal_values(batch: &RecordBatch, i: usize, scale: i8) -> Result<Decimal128Array> {
    let col = batch.column(i);
    match col.data_type() {
        DataType::Decimal128(_, s) if *s == scale => col
            .as_any()
            .downcast_ref::<Decimal128Array>()
            .cloned()
            .ok_or_else(|| EngineError::Internal("a decimal column is not decimal".into())),
        _ => decimals(batch, i, scale),
    }
}

/// Column `i` as key values (`None` for NULL).
pub(crate) fn keys(batch: &RecordBatch, i: usize, integer: bool) -> Result<Vec<Option<KeyValue>>> {
    if integer {
        let a = ints(batch, i)?;
        Ok((0..a.len())
            .map(|r| a.is_valid(r).then(|| KeyValue::Int(a.value(r))))
            .collect())
    } else {
        let a = strings(batch, i)?;
        Ok((0..a.len())
            .map(|r| {
                a.is_valid(r)
                    .then(|| KeyValue::Text(a.value(r).to_string()))
            })
            .collect())
    }
}
