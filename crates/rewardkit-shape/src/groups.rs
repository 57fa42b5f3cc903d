use std::collections::HashMap;
use std::hash::Hash;
use std::sync::OnceLock;

use crate::ShapeError;

/// Which samples belong together: the completions of one prompt in GRPO/RLOO.
///
/// Stored as member lists (compressed rows): for each group, the indices of its samples in input
/// order. Groups need not be contiguous in the input; a group's number is the order of its first
/// appearance. When every group is a run of consecutive samples (`from_sizes`, `uniform`), the
/// member list would be `0..len`: it is then built only if someone asks for it, so a table of a
/// million samples in groups of 16 costs its offsets alone.
#[derive(Clone, Debug)]
pub struct Groups {
    len: usize,
    offsets: Vec<usize>,
    members: OnceLock<Vec<usize>>,
    /// Whether the members are `0..len` (every group a run of consecutive samples).
    consecutive: bool,
    /// For consecutive groups: the size every group but the last has (the last no larger), if
    /// there is one ([`Groups::common_size`]).
    common: Option<usize>,
}

impl PartialEq for Groups {
    fn eq(&self, other: &Groups) -> bool {
        self.len == other.len
            && self.offsets == other.offsets
            && (0..self.count()).all(|g| self.members(g) == other.members(g))
    }
}

impl Eq for Groups {}

impl Groups {
    /// Groups from one label per sample; equal labels form a group.
    pub fn from_labels<T: Hash + Eq>(labels: &[T]) -> Groups {
        let mut numbers: HashMap<&T, usize> = HashMap::new();
        let ids: Vec<usize> = labels
            .iter()
            .map(|label| {
                let next = numbers.len();
                *numbers.entry(label).or_insert(next)
            })
            .collect();
        Groups::from_ids(&ids)
    }

    /// Groups from dense group numbers (`ids[i]` is the group of sample `i`; numbers need not be
    /// contiguous or sorted, but their maximum sizes the table, so keep them dense).
    pub fn from_ids(ids: &[usize]) -> Groups {
        let groups = ids.iter().max().map_or(0, |&m| m + 1);
        let mut counts = vec![0usize; groups + 1];
        for &id in ids {
            counts[id + 1] += 1;
        }
        for g in 0..groups {
            counts[g + 1] += counts[g];
        }
        let mut next = counts.clone();
        let mut members = vec![0usize; ids.len()];
        for (i, &id) in ids.iter().enumerate() {
            members[next[id]] = i;
            next[id] += 1;
        }
        // Drop numbers that no sample used, so every group is non-empty.
        let mut offsets = vec![0];
        for g in 0..groups {
            if counts[g + 1] > counts[g] {
                offsets.push(counts[g + 1]);
            }
        }
        let consecutive = members.iter().enumerate().all(|(i, &m)| i == m);
        let common = consecutive.then(|| common_size(&offsets)).flatten();
        Groups {
            len: ids.len(),
            offsets,
            members: OnceLock::from(members),
            consecutive,
            common,
        }
    }

    /// Consecutive groups of the given sizes.
    pub fn from_sizes(sizes: &[usize]) -> Groups {
        let mut offsets = vec![0];
        for &size in sizes.iter().filter(|&&s| s > 0) {
            offsets.push(offsets.last().expect("starts with 0") + size);
        }
        let len = *offsets.last().expect("starts with 0");
        let common = common_size(&offsets);
        Groups {
            len,
            offsets,
            members: OnceLock::new(),
            consecutive: true,
            common,
        }
    }

    /// `len` samples in consecutive groups of `size` (the last one shorter if `size` does not
    /// divide `len`).
    pub fn uniform(len: usize, size: usize) -> Result<Groups, ShapeError> {
        if size == 0 {
            return Err(ShapeError::invalid("group_size", size, "at least 1"));
        }
        let mut offsets: Vec<usize> = (0..=len / size).map(|g| g * size).collect();
        if !len.is_multiple_of(size) {
            offsets.push(len);
        }
        // What `common_size` finds, without the scan: full groups of `size`, then a shorter
        // one; or a single group of `len < size`.
        let common = Some(if len >= size { size } else { len });
        Ok(Groups {
            len,
            offsets,
            members: OnceLock::new(),
            consecutive: true,
            common,
        })
    }

    /// One group holding all `len` samples.
    pub fn single(len: usize) -> Groups {
        Groups::from_sizes(&[len])
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of groups.
    pub fn count(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The sample indices of group `g`, in input order.
    pub fn members(&self, g: usize) -> &[usize] {
        let members = self.members.get_or_init(|| (0..self.len).collect());
        &members[self.offsets[g]..self.offsets[g + 1]]
    }

    /// Iterates over the groups' member lists.
    pub fn iter(&self) -> impl Iterator<Item = &[usize]> + '_ {
        (0..self.count()).map(|g| self.members(g))
    }

    /// The group offsets when every group is a run of consecutive samples in order (group `g` is
    /// `offsets[g]..offsets[g + 1]`), so callers can iterate ranges instead of member lists.
    pub(crate) fn ranges(&self) -> Option<&[usize]> {
        self.consecutive.then_some(self.offsets.as_slice())
    }

    /// The same groups, visited through their member lists (the general path) even when they
    /// are runs of consecutive samples: the reference the fast paths are tested against.
    #[cfg(test)]
    pub(crate) fn through_member_lists(mut self) -> Groups {
        self.consecutive = false;
        self.common = None;
        self
    }

    /// For consecutive groups ([`Groups::ranges`]), the size shared by every group but the last,
    /// which may be smaller (as [`Groups::uniform`] makes them); `None` otherwise. The group
    /// passes compile a copy of their loops for the usual sizes.
    pub(crate) fn common_size(&self) -> Option<usize> {
        self.common
    }

    pub(crate) fn check(&self, what: &'static str, found: usize) -> Result<(), ShapeError> {
        ShapeError::check_len(what, found, self.len, "sample in the groups")
    }
}

/// The size shared by every group of `offsets` but perhaps the last, which may be smaller.
fn common_size(offsets: &[usize]) -> Option<usize> {
    let count = offsets.len() - 1;
    let size = offsets.get(1).map_or(0, |&o| o);
    offsets
        .windows(2)
        .enumerate()
        .all(|(g, w)| w[1] - w[0] == size || (g + 1 == count && w[1] - w[0] < size))
        .then_some(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_group_in_order_of_first_appearance() {
        let groups = Groups::from_labels(&["b", "a", "b", "c", "a"]);
        assert_eq!(groups.count(), 3);
        assert_eq!(groups.members(0), &[0, 2]);
        assert_eq!(groups.members(1), &[1, 4]);
        assert_eq!(groups.members(2), &[3]);
        assert_eq!(groups.len(), 5);
    }

    #[test]
    fn sizes_and_uniform() {
        let groups = Groups::uniform(7, 3).unwrap();
        assert_eq!(
            groups.iter().map(<[usize]>::len).collect::<Vec<_>>(),
            [3, 3, 1]
        );
        assert_eq!(Groups::from_sizes(&[2, 0, 1]).count(), 2);
        assert!(Groups::uniform(3, 0).is_err());
        assert!(Groups::single(0).is_empty());
        assert_eq!(
            Groups::from_ids(&[2, 2, 0]).iter().collect::<Vec<_>>(),
            [&[2][..], &[0, 1]]
        );
    }

    #[test]
    fn common_size_of_every_constructor() {
        // `uniform` states it without a scan; it must be what the scan finds.
        for len in 0..40 {
            for size in 1..12 {
                let groups = Groups::uniform(len, size).unwrap();
                assert_eq!(
                    groups.common_size(),
                    common_size(&groups.offsets),
                    "{len} {size}"
                );
            }
        }
        let check = |groups: Groups, expected: Option<usize>| {
            assert_eq!(groups.common_size(), expected, "{:?}", groups.offsets);
        };
        check(Groups::from_sizes(&[4, 4, 2]), Some(4));
        check(Groups::from_sizes(&[4, 2, 4]), None);
        check(Groups::from_sizes(&[4, 4, 5]), None);
        check(Groups::from_ids(&[0, 0, 1, 1, 2]), Some(2));
        // Scattered members: no ranges, so no common size either.
        check(Groups::from_ids(&[0, 1, 0, 1]), None);
    }
}
