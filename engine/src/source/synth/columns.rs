//! Arrow schemas and arrays shared by the tables; money is Decimal128(18, 2) from cents.

use std::sync::Arc;

use arrow::array::{ArrayRef, Decimal128Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::Result;

const MONEY_PRECISION: u8 = 18;
const MONEY_SCALE: i8 = 2;
pub(super) const MONEY: DataType = DataType::Decimal128(MONEY_PRECISION, MONEY_SCALE);

/// A schema of non-nullable columns.
pub(super) fn schema(columns: &[(&str, DataType)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, t)| Field::new(*name, t.clone(), false))
            .collect::<Vec<_>>(),
    ))
}

pub(super) fn batch(schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// A Decimal128(18, 2) column from cents (`Vec<i128>`, or `Vec<Option<i128>>` with nulls).
pub(super) fn money(cents: impl Into<Decimal128Array>) -> Result<ArrayRef> {
    let array = cents.into();
    Ok(Arc::new(
        array.with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)?,
    ))
}
