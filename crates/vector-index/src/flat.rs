//! A growable flat array for the big parts of a segment (float rows, int8 codes). Small ones are a `Vec`;
//! past a few MiB they move to an anonymous mapping the kernel is asked to back with 2 MiB pages
//! (`MADV_HUGEPAGE`). A search touches a few thousand rows at random places in hundreds of MiB: with 4 KiB
//! pages nearly every row costs a TLB miss and a page-table walk that itself misses the cache, with 2 MiB
//! pages the TLB covers gigabytes (docs/vectors.md, "Memory pages"). Where the system does not give huge
//! pages (transparent huge pages off, or the process opted out) the mapping is ordinary memory.

use bytemuck::Pod;
use memmap2::{Advice, MmapMut};
use std::marker::PhantomData;

/// Arrays up to this many bytes stay a `Vec` (a huge page for a small collection would be mostly empty).
const MAPPED_FROM: usize = 8 << 20;
/// Mappings grow in whole huge pages.
const HUGE_PAGE: usize = 2 << 20;

/// A growable array of plain values (of a size that divides 2 MiB: bytes, 16-, 32- and 64-bit values).
pub(crate) struct Flat<T: Pod> {
    store: Store<T>,
}

enum Store<T: Pod> {
    Small(Vec<T>),
    Mapped {
        map: MmapMut,
        len: usize,
        kind: PhantomData<T>,
    },
}

impl<T: Pod> Flat<T> {
    /// An empty array.
    pub(crate) fn new() -> Self {
        Flat {
            store: Store::Small(Vec::new()),
        }
    }

    /// An empty array with room for `count` values (mapped at once when they will be many).
    pub(crate) fn with_capacity(count: usize) -> Self {
        if count * size_of::<T>() <= MAPPED_FROM {
            return Flat {
                store: Store::Small(Vec::with_capacity(count)),
            };
        }
        Flat {
            store: Store::Mapped {
                map: mapping::<T>(count),
                len: 0,
                kind: PhantomData,
            },
        }
    }

    /// The values of `values`, moved to a mapping when they are many.
    pub(crate) fn from_vec(values: Vec<T>) -> Self {
        let mut flat = Flat {
            store: Store::Small(values),
        };
        flat.map_when_big(0);
        flat
    }

    /// How many values there are.
    pub(crate) fn len(&self) -> usize {
        match &self.store {
            Store::Small(values) => values.len(),
            Store::Mapped { len, .. } => *len,
        }
    }

    /// The values.
    #[inline]
    pub(crate) fn as_slice(&self) -> &[T] {
        match &self.store {
            Store::Small(values) => values,
            Store::Mapped { map, len, .. } => &bytemuck::cast_slice(&map[..])[..*len],
        }
    }

    /// The values, to change.
    #[inline]
    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        match &mut self.store {
            Store::Small(values) => values,
            Store::Mapped { map, len, .. } => &mut bytemuck::cast_slice_mut(&mut map[..])[..*len],
        }
    }

    /// Appends `values`.
    pub(crate) fn extend_from_slice(&mut self, values: &[T]) {
        self.map_when_big(values.len());
        match &mut self.store {
            Store::Small(small) => small.extend_from_slice(values),
            Store::Mapped { map, len, .. } => {
                let capacity = map.len() / size_of::<T>();
                if *len + values.len() > capacity {
                    let wanted = (*len + values.len()).max(capacity * 2);
                    let mut bigger = mapping::<T>(wanted);
                    bigger[..*len * size_of::<T>()].copy_from_slice(&map[..*len * size_of::<T>()]);
                    *map = bigger;
                }
                bytemuck::cast_slice_mut::<u8, T>(&mut map[..])[*len..*len + values.len()].copy_from_slice(values);
                *len += values.len();
            }
        }
    }

    /// Drops the first `count` values (and memory no longer needed).
    pub(crate) fn drain_front(&mut self, count: usize) {
        let count = count.min(self.len());
        *self = Flat::from_vec(self.as_slice()[count..].to_vec());
    }

    /// Moves a `Vec` that will hold more than `MAPPED_FROM` bytes after `adding` more values to a mapping.
    fn map_when_big(&mut self, adding: usize) {
        let Store::Small(values) = &mut self.store else {
            return;
        };
        let wanted = values.len() + adding;
        if wanted * size_of::<T>() <= MAPPED_FROM {
            return;
        }
        let capacity = if adding == 0 {
            wanted
        } else {
            wanted.max(values.len() * 2)
        };
        let mut map = mapping::<T>(capacity);
        let bytes: &[u8] = bytemuck::cast_slice(values);
        map[..bytes.len()].copy_from_slice(bytes);
        self.store = Store::Mapped {
            map,
            len: values.len(),
            kind: PhantomData,
        };
    }
}

/// Zeroed memory for at least `count` values, in whole huge pages, asked to be backed by huge pages.
fn mapping<T: Pod>(count: usize) -> MmapMut {
    let bytes = (count.max(1) * size_of::<T>()).div_ceil(HUGE_PAGE) * HUGE_PAGE;
    let map = MmapMut::map_anon(bytes)
        .unwrap_or_else(|error| panic!("could not map {bytes} bytes of memory for vectors: {error}"));
    // Only a hint: without transparent huge pages the mapping is ordinary memory.
    let _ = map.advise(Advice::HugePage);
    map
}

impl<T: Pod> Default for Flat<T> {
    fn default() -> Self {
        Flat::new()
    }
}

impl<T: Pod> Clone for Flat<T> {
    fn clone(&self) -> Self {
        let mut copy = Flat::with_capacity(self.len());
        copy.extend_from_slice(self.as_slice());
        copy
    }
}

impl<T: Pod> std::fmt::Debug for Flat<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.store {
            Store::Small(_) => "vec",
            Store::Mapped { .. } => "mapped",
        };
        write!(formatter, "Flat({} values, {kind})", self.len())
    }
}

impl<T: Pod> std::ops::Deref for Flat<T> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Pod> std::ops::DerefMut for Flat<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_big_array_moves_to_a_mapping_and_keeps_its_values() {
        let mut flat: Flat<f32> = Flat::new();
        let row: Vec<f32> = (0..384).map(|value| value as f32).collect();
        let rows = MAPPED_FROM / (384 * 4) + 10;
        for number in 0..rows {
            let mut this = row.clone();
            this[0] = number as f32;
            flat.extend_from_slice(&this);
        }
        assert!(format!("{flat:?}").contains("mapped"));
        assert_eq!(flat.len(), rows * 384);
        for number in 0..rows {
            assert_eq!(flat[number * 384], number as f32);
            assert_eq!(flat[number * 384 + 383], 383.0);
        }
        flat.drain_front(384 * (rows - 2));
        assert_eq!(flat.len(), 2 * 384);
        assert_eq!(flat[0], (rows - 2) as f32);
        assert!(format!("{flat:?}").contains("vec"));
        let copy = Flat::from_vec(vec![7u8; MAPPED_FROM + 1]);
        assert!(format!("{copy:?}").contains("mapped"));
        assert_eq!(copy.clone().as_slice(), copy.as_slice());
        let mut reserved: Flat<f32> = Flat::with_capacity(MAPPED_FROM);
        assert!(format!("{reserved:?}").contains("mapped"));
        reserved.extend_from_slice(&[1.5; 10]);
        reserved[9] = 2.5;
        assert_eq!(reserved.as_slice(), [[1.5; 9].as_slice(), &[2.5]].concat());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        /// Whatever the sizes appended, the array holds what a `Vec` would.
        #[test]
        fn appends_read_back_like_a_vec(sizes in proptest::collection::vec(0usize..700_000, 1..6)) {
            let mut flat: Flat<u64> = Flat::new();
            let mut expected: Vec<u64> = Vec::new();
            for (number, size) in sizes.iter().enumerate() {
                let values: Vec<u64> = (0..*size).map(|index| (index * 7 + number) as u64).collect();
                flat.extend_from_slice(&values);
                expected.extend_from_slice(&values);
                prop_assert_eq!(flat.len(), expected.len());
            }
            prop_assert!(flat.as_slice() == expected.as_slice());
        }
    }
}
