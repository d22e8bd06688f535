//! Third pass of the list-append checker: find dependency cycles and name them.
//!
//! Each class is searched in the subgraph that can hold it, SCC by SCC (Tarjan), and one short
//! cycle per SCC is reported: the shortest found by closing a candidate edge `a -> b` with a
//! breadth-first path `b -> a`.
//! - G0: SCCs of the ww subgraph.
//! - G1c: SCCs of the ww+wr subgraph holding a wr-only edge.
//! - G-single / G-nonadjacent: SCCs of a product graph whose nodes are (transaction, "the last
//!   edge was rw") and where rw may not follow rw. Its cycles are exactly the cycles with no two
//!   adjacent rw edges, which is what snapshot isolation forbids (Fekete et al.), so finding them
//!   is exact. A cycle with a single rw (G-single) is preferred: candidates are tried within a
//!   budget; otherwise the SCC's cycle is reported by its own rw count.
//! - G2-item: SCCs of the whole graph that hold none of the above, closed through an rw edge.

use super::graph::{Graph, RW, WR, WW};
use super::search::{component_of, shortest_path, tarjan, tarjan_all};
use super::{Anomaly, Cycle, EdgeKind};

/// Candidate edges tried per SCC when looking for its shortest cycle.
const CANDIDATES: usize = 16;
/// Edge visits allowed for the optional searches (beyond the first per SCC, always run).
const BUDGET: u64 = 20_000_000;

/// Every cycle anomaly of `g`, one per SCC and class.
pub(super) fn find(g: &Graph) -> Vec<Anomaly> {
    let mut search = Search {
        g,
        budget: BUDGET,
        flagged: vec![false; g.len()],
        found: Vec::new(),
    };
    search.class(WW, WW);
    search.class(WW | WR, WR);
    search.snapshot_isolation();
    search.write_skew();
    search.found
}

struct Search<'g> {
    g: &'g Graph,
    budget: u64,
    /// Transactions already in a reported SCC (write skew is reported only elsewhere).
    flagged: Vec<bool>,
    found: Vec<Anomaly>,
}

type Succ<'a> = Box<dyn Fn(usize, &mut Vec<(usize, usize)>) + 'a>;

/// Successors over the edge kinds in `allowed`, restricted to component `c` of `comp`.
fn succ<'a>(g: &'a Graph, allowed: u8, comp: &'a [usize], c: usize) -> Succ<'a> {
    Box::new(move |v, out| {
        for e in g.edges(v) {
            if comp[e.to] == c {
                if let Some((_, step)) = e.via(allowed) {
                    out.push((e.to, step));
                }
            }
        }
    })
}

/// Successors in the product graph: node `2v + p`, `p` = 1 when the edge into `v` was rw.
/// ww/wr edges lead to phase 0; rw-only edges lead from phase 0 to phase 1 when `with_rw`.
fn product<'a>(g: &'a Graph, comp: &'a [usize], c: usize, with_rw: bool) -> Succ<'a> {
    Box::new(move |p, out| {
        for e in g.edges(p / 2) {
            if let Some((_, step)) = e.via(WW | WR) {
                if comp[2 * e.to] == c {
                    out.push((2 * e.to, step));
                }
            } else if let Some((_, step)) = e.via(RW) {
                if with_rw && p % 2 == 0 && comp[2 * e.to + 1] == c {
                    out.push((2 * e.to + 1, step));
                }
            }
        }
    })
}

/// Edges from `nodes` staying inside component `c` whose weakest allowed kind is `kind`, as
/// (a, b, step).
fn candidates(
    g: &Graph,
    nodes: &[usize],
    comp: &[usize],
    c: usize,
    allowed: u8,
    kind: EdgeKind,
) -> Vec<Edge3> {
    let mut out = Vec::new();
    for &a in nodes {
        for e in g.edges(a) {
            match e.via(allowed) {
                Some((k, step)) if k == kind && comp[e.to] == c => out.push((a, e.to, step)),
                _ => {}
            }
        }
    }
    out
}

/// An edge to close a cycle with: (a, b, step a -> b).
type Edge3 = (usize, usize, usize);

/// Shortest cycle closing one of `cands` with a path `b -> a` from `path`. The first candidate
/// is searched without limit, the others within `budget`.
fn close(
    budget: &mut u64,
    cands: &[Edge3],
    path: impl Fn(usize, usize, &mut u64) -> Option<Vec<usize>>,
) -> Option<Vec<usize>> {
    let mut best: Option<Vec<usize>> = None;
    for (i, &(a, b, step)) in cands.iter().take(CANDIDATES).enumerate() {
        let mut unlimited = u64::MAX;
        let found = path(b, a, if i == 0 { &mut unlimited } else { &mut *budget });
        if let Some(rest) = found {
            if best.as_ref().is_none_or(|c| rest.len() + 1 < c.len()) {
                best = Some(std::iter::once(step).chain(rest).collect());
            }
        }
        if best.as_ref().is_some_and(|c| c.len() == 2) || *budget == 0 {
            break;
        }
    }
    best
}

impl Search<'_> {
    /// G0 (`allowed` = ww) or G1c (ww+wr, closing a wr edge): one cycle per SCC.
    fn class(&mut self, allowed: u8, closing: u8) {
        let g = self.g;
        let n = g.len();
        let comps = tarjan(n, succ(g, allowed, &vec![0; n], 0));
        let comp = component_of(n, &comps);
        let kind = if closing == WW {
            EdgeKind::Ww
        } else {
            EdgeKind::Wr
        };
        for (c, nodes) in comps.iter().enumerate() {
            let cands = candidates(g, nodes, &comp, c, allowed, kind);
            let path =
                |b, a, budget: &mut u64| shortest_path(b, a, succ(g, allowed, &comp, c), budget);
            if let Some(cycle) = close(&mut self.budget, &cands, path) {
                nodes.iter().for_each(|&v| self.flagged[v] = true);
                self.found.push(named(g, &cycle));
            }
        }
    }

    /// Cycles without two adjacent rw edges that hold at least one rw: G-single or
    /// G-nonadjacent, one per SCC of the product graph. G-single is preferred whenever the SCC
    /// holds one ([`closes_g_single`] decides that exactly).
    fn snapshot_isolation(&mut self) {
        let g = self.g;
        let n = 2 * g.len();
        let comps = tarjan(n, product(g, &vec![0; n], 0, true));
        let comp = component_of(n, &comps);
        let per_comp: Vec<Vec<Edge3>> = comps
            .iter()
            .enumerate()
            .map(|(c, states)| rw_entries(g, states, &comp, c))
            .collect();
        let all: Vec<Edge3> = per_comp
            .iter()
            .flatten()
            .map(|&(a0, b1, s)| (a0 / 2, b1 / 2, s))
            .collect();
        let mut single = closes_g_single(g, &all).into_iter();
        for (c, cands) in per_comp.iter().enumerate() {
            let (singles, others): (Vec<Edge3>, Vec<Edge3>) =
                cands.iter().partition(|_| single.next().unwrap_or(false));
            let with_rw = singles.is_empty();
            let cands = if with_rw { others } else { singles };
            let path =
                |b, a, budget: &mut u64| shortest_path(b, a, product(g, &comp, c, with_rw), budget);
            if let Some(cycle) = close(&mut self.budget, &cands, path) {
                comps[c].iter().for_each(|&p| self.flagged[p / 2] = true);
                self.found.push(named(g, &cycle));
            }
        }
    }

    /// Write skew: SCCs of the whole graph where no other cycle was found.
    fn write_skew(&mut self) {
        let g = self.g;
        let n = g.len();
        let all = WW | WR | RW;
        let comps = tarjan(n, succ(g, all, &vec![0; n], 0));
        let comp = component_of(n, &comps);
        for (c, nodes) in comps.iter().enumerate() {
            if nodes.iter().any(|&v| self.flagged[v]) {
                continue;
            }
            let cands = candidates(g, nodes, &comp, c, all, EdgeKind::Rw);
            let path = |b, a, budget: &mut u64| shortest_path(b, a, succ(g, all, &comp, c), budget);
            if let Some(cycle) = close(&mut self.budget, &cands, path) {
                self.found.push(named(g, &cycle));
            }
        }
    }
}

/// The rw transitions inside product component `c`: ((a, 0), (b, 1), step) as product nodes.
fn rw_entries(g: &Graph, states: &[usize], comp: &[usize], c: usize) -> Vec<Edge3> {
    let mut out = Vec::new();
    let mut succs = Vec::new();
    for &p in states.iter().filter(|&&p| p % 2 == 0) {
        succs.clear();
        product(g, comp, c, true)(p, &mut succs);
        let rw = succs.iter().filter(|(q, _)| q % 2 == 1);
        out.extend(rw.map(|&(q, step)| (p, q, step)));
    }
    out
}

/// For each rw edge `a -> b`, whether a ww/wr path leads from `b` back to `a`, closing a
/// G-single. Exact, in one pass over the ww/wr condensation per 64 edges: each edge's bit
/// starts at `b`'s component and flows along the condensation in topological order.
fn closes_g_single(g: &Graph, rw: &[Edge3]) -> Vec<bool> {
    if rw.is_empty() {
        return Vec::new();
    }
    let n = g.len();
    let comps = tarjan_all(n, succ(g, WW | WR, &vec![0; n], 0));
    let comp = component_of(n, &comps);
    let mut out = Vec::with_capacity(rw.len());
    for chunk in rw.chunks(64) {
        let mut bits = vec![0u64; comps.len()];
        for (i, &(_, b, _)) in chunk.iter().enumerate() {
            bits[comp[b]] |= 1 << i;
        }
        for (c, nodes) in comps.iter().enumerate().rev() {
            let mask = bits[c];
            if mask == 0 {
                continue;
            }
            for &v in nodes {
                for e in g.edges(v).iter().filter(|e| e.via(WW | WR).is_some()) {
                    bits[comp[e.to]] |= mask;
                }
            }
        }
        out.extend(
            chunk
                .iter()
                .enumerate()
                .map(|(i, &(a, _, _))| bits[comp[a]] & (1 << i) != 0),
        );
    }
    out
}

/// Names a cycle (its step indices) by its edge kinds.
fn named(g: &Graph, step_indices: &[usize]) -> Anomaly {
    let steps: Vec<_> = step_indices.iter().map(|&s| g.step(s).clone()).collect();
    let kinds: Vec<EdgeKind> = steps.iter().map(|s| s.kind).collect();
    let cycle = Cycle {
        txns: steps.iter().map(|s| s.from).collect(),
        steps,
    };
    match kinds.iter().filter(|&&k| k == EdgeKind::Rw).count() {
        0 if kinds.contains(&EdgeKind::Wr) => Anomaly::G1c(cycle),
        0 => Anomaly::G0(cycle),
        1 => Anomaly::GSingle(cycle),
        _ if adjacent_rw(&kinds) => Anomaly::G2Item(cycle),
        _ => Anomaly::GNonadjacent(cycle),
    }
}

/// Whether two rw edges follow each other anywhere around the cycle.
fn adjacent_rw(kinds: &[EdgeKind]) -> bool {
    let n = kinds.len();
    (0..n).any(|i| kinds[i] == EdgeKind::Rw && kinds[(i + 1) % n] == EdgeKind::Rw)
}
