//! [`Column`]: the codes or values of a cuboid or a base table, either a `Vec` a build is
//! filling or an Arrow buffer, read the same way as a slice.
//!
//! A cube read from a snapshot uses its columns where they lie on disk: buffers over the
//! mapped files (the page cache holds them once, for every process that maps the file), so
//! starting from a snapshot copies nothing. A built cube hands its vectors over to buffers
//! when it starts serving ([`Column::share`]), so that writing it as a snapshot, or keeping its
//! columns in a refreshed cube, copies nothing either. Only a build or a refresh changes a
//! column; changing a shared one takes its memory back when nothing else holds it, and copies
//! it otherwise.

use std::ops::{Deref, DerefMut};

use arrow::buffer::ScalarBuffer;
use arrow::datatypes::ArrowNativeType;

/// Codes or values, read as `&[T]` (see the module).
#[derive(Clone)]
pub enum Column<T: ArrowNativeType> {
    /// Being made by a build: changes in place.
    Owned(Vec<T>),
    /// An Arrow buffer: over a snapshot's mapped file, or a built cube's vector handed over.
    Shared(ScalarBuffer<T>),
}

impl<T: ArrowNativeType> Column<T> {
    pub fn new() -> Column<T> {
        Column::Owned(Vec::new())
    }

    #[inline]
    pub fn as_slice(&self) -> &[T] {
        self
    }

    /// The values as a vector to change (see [`Column::into_vec`]).
    #[inline]
    pub fn to_mut(&mut self) -> &mut Vec<T> {
        if let Column::Shared(_) = self {
            let shared = std::mem::take(self);
            *self = Column::Owned(shared.into_vec());
        }
        match self {
            Column::Owned(values) => values,
            Column::Shared(_) => unreachable!("a shared column was made a vector above"),
        }
    }

    /// The values as a vector: a shared column's memory when nothing else holds it and a
    /// vector made it, else a copy (a mapped file's column, or one another cube holds too).
    pub fn into_vec(self) -> Vec<T> {
        match self {
            Column::Owned(values) => values,
            Column::Shared(buffer) => match buffer.into_inner().into_vec::<T>() {
                Ok(values) => values,
                Err(buffer) => buffer.typed_data::<T>().to_vec(),
            },
        }
    }

    /// Hands a vector over to a shared buffer, without a copy: done when a cube starts
    /// serving, so that it is written and cloned as buffers.
    pub fn share(&mut self) {
        if let Column::Owned(values) = self {
            *self = Column::Shared(ScalarBuffer::from(std::mem::take(values)));
        }
    }

    /// An Arrow buffer of the values: a shared column's own, else a copy.
    pub fn to_buffer(&self) -> ScalarBuffer<T> {
        match self {
            Column::Owned(values) => ScalarBuffer::from(values.clone()),
            Column::Shared(buffer) => buffer.clone(),
        }
    }

    /// Whether the values are a shared buffer rather than a vector.
    pub fn is_shared(&self) -> bool {
        matches!(self, Column::Shared(_))
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

    /// Gives back spare capacity; a shared column has none.
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
            Column::Shared(buffer) => buffer,
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
        Column::Shared(buffer)
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
    fn a_shared_column_reads_as_its_buffer_and_is_copied_on_change() {
        let buffer = ScalarBuffer::from(vec![3u32, 1, 2]);
        let mut column = Column::from(buffer.clone());
        assert!(column.is_shared());
        assert_eq!(&column[..], &[3, 1, 2]);
        assert_eq!(column, Column::from(vec![3, 1, 2]));
        column[0] = 7;
        column.push(9);
        assert!(!column.is_shared());
        assert_eq!(column, vec![7, 1, 2, 9]);
        // The buffer it was made from is untouched.
        assert_eq!(&buffer[..], &[3, 1, 2]);
        assert_eq!(column.to_buffer().to_vec(), vec![7, 1, 2, 9]);
    }

    #[test]
    fn a_shared_vector_is_handed_over_and_back_without_a_copy() {
        let mut column = Column::from(vec![1u64, 2, 3]);
        let at = column.as_ptr();
        column.share();
        assert!(column.is_shared());
        assert_eq!(column.as_ptr(), at);
        // Written out as its own buffer.
        assert_eq!(column.to_buffer().as_ptr(), at);
        // Nothing else holds it: changed in its own memory.
        column.to_mut().truncate(2);
        assert_eq!(column.as_ptr(), at);
        // Held by another (a cube kept serving while a refresh changes a copy): copied.
        column.share();
        let other = column.clone();
        column.push(4);
        assert_ne!(column.as_ptr(), at);
        assert_eq!(other, vec![1, 2]);
        assert_eq!(column, vec![1, 2, 4]);
    }
}
