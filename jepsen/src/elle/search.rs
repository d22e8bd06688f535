//! Graph algorithms of the cycle search, over any successor function: iterative Tarjan SCCs
//! and a budgeted breadth-first shortest path. A successor function pushes `(node, step)`
//! pairs, `step` naming the [`super::Step`] that proves the edge, so a path comes back as the
//! list of steps it takes.

use std::collections::{HashMap, VecDeque};

/// Pushes the successors of a node as `(node, step index)`.
pub(super) trait Successors: Fn(usize, &mut Vec<(usize, usize)>) {}
impl<F: Fn(usize, &mut Vec<(usize, usize)>)> Successors for F {}

const UNSEEN: usize = usize::MAX;

struct Frame {
    node: usize,
    succs: Vec<(usize, usize)>,
    next: usize,
}

/// Tarjan's bookkeeping, with an explicit stack of frames instead of recursion.
struct Tarjan<S> {
    succ: S,
    order: Vec<usize>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    frames: Vec<Frame>,
    counter: usize,
    components: Vec<Vec<usize>>,
    singletons: bool,
}

impl<S: Successors> Tarjan<S> {
    fn enter(&mut self, v: usize) {
        self.order[v] = self.counter;
        self.low[v] = self.counter;
        self.counter += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        let mut succs = Vec::new();
        (self.succ)(v, &mut succs);
        self.frames.push(Frame {
            node: v,
            succs,
            next: 0,
        });
    }

    fn run_from(&mut self, root: usize) {
        self.enter(root);
        while let Some(frame) = self.frames.last_mut() {
            let v = frame.node;
            if let Some(&(w, _)) = frame.succs.get(frame.next) {
                frame.next += 1;
                if self.order[w] == UNSEEN {
                    self.enter(w);
                } else if self.on_stack[w] {
                    self.low[v] = self.low[v].min(self.order[w]);
                }
                continue;
            }
            self.frames.pop();
            if let Some(parent) = self.frames.last() {
                self.low[parent.node] = self.low[parent.node].min(self.low[v]);
            }
            if self.low[v] == self.order[v] {
                self.pop_component(v);
            }
        }
    }

    fn pop_component(&mut self, root: usize) {
        let mut component = Vec::new();
        while let Some(w) = self.stack.pop() {
            self.on_stack[w] = false;
            component.push(w);
            if w == root {
                break;
            }
        }
        if self.singletons || component.len() > 1 {
            component.sort_unstable();
            self.components.push(component);
        }
    }
}

/// Strongly connected components of more than one node, over nodes `0..n`.
pub(super) fn tarjan(n: usize, succ: impl Successors) -> Vec<Vec<usize>> {
    run_tarjan(n, succ, false)
}

/// Every strongly connected component, single nodes included, sinks first: a component comes
/// after every component it reaches (reverse topological order of the condensation).
pub(super) fn tarjan_all(n: usize, succ: impl Successors) -> Vec<Vec<usize>> {
    run_tarjan(n, succ, true)
}

fn run_tarjan(n: usize, succ: impl Successors, singletons: bool) -> Vec<Vec<usize>> {
    let mut t = Tarjan {
        succ,
        order: vec![UNSEEN; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        frames: Vec::new(),
        counter: 0,
        components: Vec::new(),
        singletons,
    };
    for root in 0..n {
        if t.order[root] == UNSEEN {
            t.run_from(root);
        }
    }
    t.components
}

/// Per node, the index of its component in `components`, or `usize::MAX`.
pub(super) fn component_of(n: usize, components: &[Vec<usize>]) -> Vec<usize> {
    let mut of = vec![UNSEEN; n];
    for (c, nodes) in components.iter().enumerate() {
        for &v in nodes {
            of[v] = c;
        }
    }
    of
}

/// The steps of a shortest path from `start` to `goal`, or `None` when there is none or when
/// the search visited `budget` edges first (each visited edge costs one).
pub(super) fn shortest_path(
    start: usize,
    goal: usize,
    succ: impl Successors,
    budget: &mut u64,
) -> Option<Vec<usize>> {
    let mut came_from: HashMap<usize, (usize, usize)> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    let mut succs = Vec::new();
    while let Some(v) = queue.pop_front() {
        succs.clear();
        succ(v, &mut succs);
        for &(w, step) in &succs {
            *budget = budget.checked_sub(1)?;
            if w == start || came_from.contains_key(&w) {
                continue;
            }
            came_from.insert(w, (v, step));
            if w == goal {
                return Some(unwind(&came_from, start, goal));
            }
            queue.push_back(w);
        }
    }
    None
}

fn unwind(came_from: &HashMap<usize, (usize, usize)>, start: usize, goal: usize) -> Vec<usize> {
    let mut steps = Vec::new();
    let mut at = goal;
    while at != start {
        let Some(&(prev, step)) = came_from.get(&at) else {
            break;
        };
        steps.push(step);
        at = prev;
    }
    steps.reverse();
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn succ_of(edges: &[(usize, usize)]) -> impl Successors + '_ {
        move |v, out: &mut Vec<(usize, usize)>| {
            for (i, &(a, b)) in edges.iter().enumerate() {
                if a == v {
                    out.push((b, i));
                }
            }
        }
    }

    #[test]
    fn tarjan_finds_only_nontrivial_components() {
        // 0 <-> 1, 1 -> 2, 2 -> 3 -> 4 -> 2, 5 alone.
        let edges = [(0, 1), (1, 0), (1, 2), (2, 3), (3, 4), (4, 2)];
        let mut comps = tarjan(6, succ_of(&edges));
        comps.sort();
        assert_eq!(comps, vec![vec![0, 1], vec![2, 3, 4]]);
    }

    #[test]
    fn tarjan_all_lists_sinks_first() {
        let edges = [(0, 1), (1, 2), (2, 1)];
        assert_eq!(tarjan_all(3, succ_of(&edges)), vec![vec![1, 2], vec![0]]);
    }

    #[test]
    fn tarjan_handles_a_long_chain_without_recursion() {
        let n = 200_000;
        let edges: Vec<(usize, usize)> = (0..n).map(|i| (i, (i + 1) % n)).collect();
        let succ = |v: usize, out: &mut Vec<(usize, usize)>| out.push((edges[v].1, v));
        let comps = tarjan(n, succ);
        assert_eq!(comps.len(), 1);
        assert_eq!(comps[0].len(), n);
    }

    #[test]
    fn shortest_path_prefers_fewer_steps_and_respects_the_budget() {
        // 0 -> 1 -> 2 -> 3 and a shortcut 0 -> 3.
        let edges = [(0, 1), (1, 2), (2, 3), (0, 3)];
        let mut budget = u64::MAX;
        assert_eq!(
            shortest_path(0, 3, succ_of(&edges), &mut budget),
            Some(vec![3])
        );
        assert_eq!(
            shortest_path(1, 3, succ_of(&edges), &mut budget),
            Some(vec![1, 2])
        );
        assert_eq!(shortest_path(3, 0, succ_of(&edges), &mut budget), None);
        let mut tiny = 1;
        assert_eq!(shortest_path(1, 3, succ_of(&edges), &mut tiny), None);
    }
}
