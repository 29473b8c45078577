//! A circular doubly linked list over array indices, whose nodes can be
//! taken out and put back in O(1) (Knuth's dancing links): the search unlinks
//! the events of each operation it linearizes and relinks them when it backs
//! up.

/// The sentinel node; node `index + 1` stands for element `index`.
pub(super) const HEAD: usize = 0;

pub(super) struct Links {
    pub next: Vec<usize>,
    previous: Vec<usize>,
}

impl Links {
    /// A list holding elements `0..count` in order.
    pub(super) fn new(count: usize) -> Links {
        let nodes_count = count + 1;
        Links {
            next: (0..nodes_count)
                .map(|node| (node + 1) % nodes_count)
                .collect(),
            previous: (0..nodes_count)
                .map(|node| (node + count) % nodes_count)
                .collect(),
        }
    }

    pub(super) fn unlink(&mut self, node: usize) {
        debug_assert_ne!(node, HEAD);
        let (previous, next) = (self.previous[node], self.next[node]);
        self.next[previous] = next;
        self.previous[next] = previous;
    }

    /// Undoes `unlink(node)`. Valid only in the reverse order of unlinking:
    /// the unlinked node still points at its old neighbours, which must be
    /// back in place.
    pub(super) fn relink(&mut self, node: usize) {
        let (previous, next) = (self.previous[node], self.next[node]);
        self.next[previous] = node;
        self.previous[next] = node;
    }
}
