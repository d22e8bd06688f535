//! Second pass of the list-append checker: the dependency graph between transactions.
//!
//! For each key with version order `v1 v2 ... vn` (its longest read):
//! - ww: writer(vi) -> writer(vi+1); and writer(vn) -> every graph member whose append to the key
//!   nobody read (an unread append must come after every value a read saw).
//! - wr: writer(last value of an external read) -> the reader.
//! - rw: an external reader -> writer of the value right after what it saw; a reader that saw
//!   the whole known order -> every unread append's writer.
//!
//! Nodes are transaction indices; only graph members get edges and self-edges are dropped. Each
//! edge keeps, per kind, the [`Step`] that proves it; the cycle search walks it through
//! [`Edge::via`], which picks the weakest kind a subgraph allows.

use std::collections::{BTreeMap, HashSet};

use super::index::Index;
use super::{EdgeKind, Step};

pub(super) const WW: u8 = 1;
pub(super) const WR: u8 = 2;
pub(super) const RW: u8 = 4;

const KINDS: [(EdgeKind, u8); 3] = [(EdgeKind::Ww, WW), (EdgeKind::Wr, WR), (EdgeKind::Rw, RW)];

fn slot_of(kind: EdgeKind) -> usize {
    match kind {
        EdgeKind::Ww => 0,
        EdgeKind::Wr => 1,
        EdgeKind::Rw => 2,
    }
}

/// All dependencies from one transaction to another.
pub(super) struct Edge {
    pub to: usize,
    /// Per kind (ww, wr, rw), the index of the step proving it.
    why: [Option<usize>; 3],
}

impl Edge {
    /// The weakest kind among `allowed` (ww before wr before rw) and its step index.
    pub fn via(&self, allowed: u8) -> Option<(EdgeKind, usize)> {
        KINDS
            .iter()
            .zip(self.why)
            .find_map(|((kind, bit), why)| why.filter(|_| allowed & bit != 0).map(|s| (*kind, s)))
    }
}

/// The dependency graph.
pub(super) struct Graph {
    adj: Vec<Vec<Edge>>,
    steps: Vec<Step>,
}

struct Builder<'i, 'h> {
    index: &'i Index<'h>,
    pairs: BTreeMap<(usize, usize), [Option<usize>; 3]>,
    steps: Vec<Step>,
}

impl Builder<'_, '_> {
    fn add(
        &mut self,
        kind: EdgeKind,
        (from, to): (usize, usize),
        key: &str,
        value: Option<u64>,
        next: Option<u64>,
    ) {
        let in_graph = &self.index.in_graph;
        if from == to || !in_graph[from] || !in_graph[to] {
            return;
        }
        let slot = &mut self.pairs.entry((from, to)).or_default()[slot_of(kind)];
        if slot.is_none() {
            *slot = Some(self.steps.len());
            self.steps.push(Step {
                from,
                to,
                kind,
                key: key.to_owned(),
                value,
                next,
            });
        }
    }

    fn writer(&self, key: &str, value: u64) -> Option<usize> {
        self.index.writer.get(&(key, value)).copied()
    }

    /// Appends to `key` that no read saw, as (value, writer).
    fn unread(&self, key: &str, order: &[u64]) -> Vec<(u64, usize)> {
        let seen: HashSet<u64> = order.iter().copied().collect();
        let appends = self
            .index
            .appends
            .get(key)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        appends
            .iter()
            .filter(|(v, _)| !seen.contains(v))
            .copied()
            .collect()
    }

    fn write_edges(&mut self, key: &str, order: &[u64], unread: &[(u64, usize)]) {
        for pair in order.windows(2) {
            if let (Some(a), Some(b)) = (self.writer(key, pair[0]), self.writer(key, pair[1])) {
                self.add(EdgeKind::Ww, (a, b), key, Some(pair[0]), Some(pair[1]));
            }
        }
        let Some(&last) = order.last() else { return };
        if let Some(a) = self.writer(key, last) {
            for &(value, b) in unread {
                self.add(EdgeKind::Ww, (a, b), key, Some(last), Some(value));
            }
        }
    }

    fn read_edges(
        &mut self,
        reader: usize,
        key: &str,
        list: &[u64],
        order: &[u64],
        unread: &[(u64, usize)],
    ) {
        let last = list.last().copied();
        if let Some(w) = last.and_then(|v| self.writer(key, v)) {
            self.add(EdgeKind::Wr, (w, reader), key, last, None);
        }
        if !order.starts_with(list) {
            return;
        }
        match order.get(list.len()) {
            Some(&next) => {
                if let Some(w) = self.writer(key, next) {
                    self.add(EdgeKind::Rw, (reader, w), key, last, Some(next));
                }
            }
            None => {
                for &(next, w) in unread {
                    self.add(EdgeKind::Rw, (reader, w), key, last, Some(next));
                }
            }
        }
    }
}

impl Graph {
    /// Derives every ww, wr and rw edge the index supports.
    pub fn build(index: &Index<'_>) -> Graph {
        let mut b = Builder {
            index,
            pairs: BTreeMap::new(),
            steps: Vec::new(),
        };
        let mut unread_by_key = BTreeMap::new();
        for &key in index.appends.keys() {
            let order = index
                .orders
                .get(key)
                .map(|o| o.order.as_slice())
                .unwrap_or(&[]);
            let unread = b.unread(key, order);
            b.write_edges(key, order, &unread);
            unread_by_key.insert(key, unread);
        }
        for read in index.reads.iter().filter(|r| r.external) {
            let order = index
                .orders
                .get(read.key)
                .map(|o| o.order.as_slice())
                .unwrap_or(&[]);
            let unread = unread_by_key
                .get(read.key)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            b.read_edges(read.op, read.key, read.list, order, unread);
        }
        let mut adj: Vec<Vec<Edge>> = (0..index.ops.len()).map(|_| Vec::new()).collect();
        for ((from, to), why) in b.pairs {
            adj[from].push(Edge { to, why });
        }
        Graph {
            adj,
            steps: b.steps,
        }
    }

    pub fn len(&self) -> usize {
        self.adj.len()
    }

    pub fn edges(&self, from: usize) -> &[Edge] {
        &self.adj[from]
    }

    pub fn step(&self, index: usize) -> &Step {
        &self.steps[index]
    }

    /// Distinct (from, to) pairs with at least one edge.
    pub fn edge_count(&self) -> usize {
        self.adj.iter().map(Vec::len).sum()
    }
}
