//! [`Column`]: the codes or values of a cuboid or a base table, either a `Vec` the build made
//! or an Arrow buffer over a snapshot's mapped file, read the same way as a slice.
//!
//! A cube read from a snapshot uses its columns where they lie on disk (the page cache holds
//! them once, shared by every process that maps the file), so starting from a snapshot copies
//! nothing. A column is changed only by a build or a refresh, which own their columns as
//! vectors; changing a mapped column copies it into one first.

use std::ops::{Deref, DerefMut};

use arrow::buffer::ScalarBuffer;
use arrow::datatypes::ArrowNativeType;

/// Codes or values, read as `&[T]` (see the module).
#[derive(Clone)]
pub enum Column<T: ArrowNativeType> {
    /// Made by a build: changes in place.
    Owned(Vec<T>),
    /// Read from a snapshot: a buffer over its file, copied on the first change.
    Mapped(ScalarBuffer<T>),
}

impl<T: ArrowNativeType> Column<T> {
    pub fn new() -> Column<T> {
        Column::Owned(Vec::new())
    }

    pub fn with_capacity(capacity: usize) -> Column<T> {
        Column::Owned(Vec::with_capacity(capacity))
    }

    #[inline]
    pub fn as_slice(&self) -> &[T] {
        self
    }

    /// The values as a vector to change (a mapped column is copied first).
    #[inline]
    pub fn to_mut(&mut self) -> &mut Vec<T> {
        if let Column::Mapped(buffer) = self {
            *self = Column::Owned(buffer.to_vec());
        }
        match self {
            Column::Owned(values) => values,
            Column::Mapped(_) => unreachable!("a mapped column was copied above"),
        }
    }

    /// The values as a vector (a mapped column copied).
    pub fn into_vec(self) -> Vec<T> {
        match self {
            Column::Owned(values) => values,
            Column::Mapped(buffer) => buffer.to_vec(),
        }
    }

    /// An Arrow buffer of the values: a mapped column's own, else a copy.
    pub fn to_buffer(&self) -> ScalarBuffer<T> {
        match self {
            Column::Owned(values) => ScalarBuffer::from(values.clone()),
            Column::Mapped(buffer) => buffer.clone(),
        }
    }

    /// Whether the values lie in a mapped file rather than in memory of their own.
    pub fn is_mapped(&self) -> bool {
        matches!(self, Column::Mapped(_))
    }

    pub fn push(&mut self, value: T) {
        self.to_mut().push(value);
    }

    pub fn extend_from_slice(&mut self, values: &[T]) {
        self.to_mut().extend_from_slice(values);
    }

    pub fn reserve(&mut self, additional: usize) {
        self.to_mut().reserve(additional);
    }

    pub fn truncate(&mut self, len: usize) {
        self.to_mut().truncate(len);
    }

    pub fn resize(&mut self, len: usize, value: T) {
        self.to_mut().resize(len, value);
    }

    /// Gives back spare capacity; a mapped column has none.
    pub fn shrink_to_fit(&mut self) {
        if let Column::Owned(values) = self {
            values.shrink_to_fit();
        }
    }
}

impl<T: ArrowNativeType> Default for Column<T> {
    fn default() -> Column<T> {
        Column::new()
    }
}

impl<T: ArrowNativeType> Deref for Column<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        match self {
            Column::Owned(values) => values,
            Column::Mapped(buffer) => buffer,
        }
    }
}

impl<T: ArrowNativeType> DerefMut for Column<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        self.to_mut()
    }
}

impl<T: ArrowNativeType> From<Vec<T>> for Column<T> {
    fn from(values: Vec<T>) -> Column<T> {
        Column::Owned(values)
    }
}

impl<T: ArrowNativeType> From<ScalarBuffer<T>> for Column<T> {
    fn from(buffer: ScalarBuffer<T>) -> Column<T> {
        Column::Mapped(buffer)
    }
}

impl<T: ArrowNativeType> FromIterator<T> for Column<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Column<T> {
        Column::Owned(iter.into_iter().collect())
    }
}

impl<T: ArrowNativeType> Extend<T> for Column<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        self.to_mut().extend(iter);
    }
}

impl<'a, T: ArrowNativeType> IntoIterator for &'a Column<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> std::slice::Iter<'a, T> {
        self.iter()
    }
}

impl<T: ArrowNativeType> IntoIterator for Column<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
    fn into_iter(self) -> std::vec::IntoIter<T> {
        self.into_vec().into_iter()
    }
}

/// Columns are equal when their values are, wherever they lie.
impl<T: ArrowNativeType> PartialEq for Column<T> {
    fn eq(&self, other: &Column<T>) -> bool {
        **self == **other
    }
}

impl<T: ArrowNativeType> PartialEq<Vec<T>> for Column<T> {
    fn eq(&self, other: &Vec<T>) -> bool {
        **self == **other
    }
}

impl<T: ArrowNativeType, const N: usize> PartialEq<[T; N]> for Column<T> {
    fn eq(&self, other: &[T; N]) -> bool {
        **self == other[..]
    }
}

impl<T: ArrowNativeType> std::fmt::Debug for Column<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapped_column_reads_as_its_buffer_and_is_copied_on_change() {
        let buffer = ScalarBuffer::from(vec![3u32, 1, 2]);
        let mut column = Column::from(buffer.clone());
        assert!(column.is_mapped());
        assert_eq!(&column[..], &[3, 1, 2]);
        assert_eq!(column, Column::from(vec![3, 1, 2]));
        column[0] = 7;
        column.push(9);
        assert!(!column.is_mapped());
        assert_eq!(column, vec![7, 1, 2, 9]);
        // The buffer it was read from is untouched.
        assert_eq!(&buffer[..], &[3, 1, 2]);
        assert_eq!(column.to_buffer().to_vec(), vec![7, 1, 2, 9]);
    }
}
