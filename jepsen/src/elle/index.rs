//! First pass of the list-append checker: who appended what, what every committed transaction
//! read, each key's version order (its longest read), which transactions belong in the
//! dependency graph, and the anomalies that need no graph (aborted, intermediate, garbage and
//! duplicate reads, incompatible orders, internal inconsistencies, lost updates).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Anomaly, BadRead};
use crate::error::{Error, Result};
use crate::history::{Mop, Outcome, TxnOp};

/// One read of a committed transaction.
pub(super) struct Read<'h> {
    pub op: usize,
    pub key: &'h str,
    pub list: &'h [u64],
    /// Made before the transaction appended to the key: it shows others' state.
    pub external: bool,
}

/// A key's version order as far as reads revealed it.
pub(super) struct KeyOrder<'h> {
    /// The longest read of the key; every other read should be a prefix of it.
    pub longest: &'h [u64],
    /// The version order: `longest` without repeated values.
    pub order: Vec<u64>,
}

impl KeyOrder<'_> {
    /// Whether `list` is a prefix of the longest read (so it needs no check of its own).
    fn covers(&self, list: &[u64]) -> bool {
        self.longest.starts_with(list)
    }
}

/// Everything the graph and the anomaly checks need to know about a history.
pub(super) struct Index<'h> {
    pub ops: &'h [TxnOp],
    /// (key, value) -> index of the transaction that appended it.
    pub writer: HashMap<(&'h str, u64), usize>,
    /// Per key, every append as (value, transaction), in history order.
    pub appends: BTreeMap<&'h str, Vec<(u64, usize)>>,
    /// (transaction, key) -> the transaction's last append to that key.
    pub last_append: HashMap<(usize, &'h str), u64>,
    /// Reads of committed transactions, in history order.
    pub reads: Vec<Read<'h>>,
    /// Per key, what the longest read tells about its version order.
    pub orders: BTreeMap<&'h str, KeyOrder<'h>>,
    /// Per transaction: committed, or indeterminate with an observed append.
    pub in_graph: Vec<bool>,
    pub anomalies: Vec<Anomaly>,
}

impl<'h> Index<'h> {
    /// Indexes `ops`; fails when a value is appended to the same key twice.
    pub fn build(ops: &'h [TxnOp]) -> Result<Self> {
        let mut index = Index {
            ops,
            writer: HashMap::new(),
            appends: BTreeMap::new(),
            last_append: HashMap::new(),
            reads: Vec::new(),
            orders: BTreeMap::new(),
            in_graph: vec![false; ops.len()],
            anomalies: Vec::new(),
        };
        index.index_appends()?;
        index.index_reads();
        index.infer_orders();
        index.check_reads();
        index.mark_graph_members();
        index.check_lost_updates();
        Ok(index)
    }

    fn index_appends(&mut self) -> Result<()> {
        let ops = self.ops;
        for (i, op) in ops.iter().enumerate() {
            for mop in &op.mops {
                let Mop::Append { key, value } = mop else {
                    continue;
                };
                if let Some(first) = self.writer.insert((key, *value), i) {
                    return Err(Error::InvalidHistory(format!(
                        "value {value} appended to key {key:?} twice (transactions {first} and {i}); \
                         appended values must be unique per key"
                    )));
                }
                self.appends.entry(key).or_default().push((*value, i));
                self.last_append.insert((i, key), *value);
            }
        }
        Ok(())
    }

    /// Records the reads of committed transactions and checks each against the transaction's own
    /// earlier reads and appends of the key.
    fn index_reads(&mut self) {
        let ops = self.ops;
        for (i, op) in ops.iter().enumerate() {
            if op.outcome != Outcome::Ok {
                continue;
            }
            let mut seen: HashMap<&str, Seen<'h>> = HashMap::new();
            for mop in &op.mops {
                let state = seen.entry(mop.key()).or_default();
                match mop {
                    Mop::Append { value, .. } => {
                        state.own.push(*value);
                        if state.base.is_some() {
                            state.after.push(*value);
                        }
                    }
                    Mop::Read { key, value } => {
                        let list = value.as_deref().unwrap_or(&[]);
                        if let Some((expected, exact)) = state.contradicted_by(list) {
                            self.anomalies.push(Anomaly::Internal {
                                txn: i,
                                key: key.clone(),
                                read: list.to_vec(),
                                expected,
                                exact,
                            });
                        }
                        let external = state.own.is_empty();
                        state.base = Some(list);
                        state.after.clear();
                        self.reads.push(Read {
                            op: i,
                            key,
                            list,
                            external,
                        });
                    }
                }
            }
        }
    }

    fn infer_orders(&mut self) {
        let mut longest: BTreeMap<&'h str, &'h [u64]> = BTreeMap::new();
        for read in &self.reads {
            let known = longest.entry(read.key).or_insert(read.list);
            if read.list.len() > known.len() {
                *known = read.list;
            }
        }
        for (key, list) in longest {
            let mut seen = HashSet::with_capacity(list.len());
            let order = list.iter().copied().filter(|v| seen.insert(*v)).collect();
            self.orders.insert(
                key,
                KeyOrder {
                    longest: list,
                    order,
                },
            );
        }
    }

    /// Reports incompatible orders, duplicates, and aborted, garbage and intermediate reads.
    /// Each bad element is reported once, at the first read that saw it. A read that is a prefix
    /// of its key's longest read is judged from the longest read's summary, so a history costs
    /// one pass over each longest read rather than one over every read.
    fn check_reads(&mut self) {
        let mut summaries: HashMap<&str, Summary> = HashMap::new();
        for (key, order) in &self.orders {
            summaries.insert(key, self.summarize(key, order.longest));
        }
        let mut incompatible: HashSet<(&str, &[u64])> = HashSet::new();
        let mut reported: HashSet<(&str, u64, &str)> = HashSet::new();
        let mut found = Vec::new();
        for read in &self.reads {
            let Some(order) = self.orders.get(read.key) else {
                continue;
            };
            let covered = order.covers(read.list);
            let mut elements = Vec::new();
            if let (true, Some(summary)) = (covered, summaries.get_mut(read.key)) {
                let len = read.list.len();
                if summary.first_repeat.is_some_and(|d| d < len) {
                    found.push(duplicates(read));
                }
                while let Some(&(_, element)) =
                    summary.bad.get(summary.next).filter(|(p, _)| *p < len)
                {
                    elements.push(element);
                    summary.next += 1;
                }
            } else {
                if incompatible.insert((read.key, read.list)) {
                    found.push(Anomaly::IncompatibleOrder {
                        reader: read.op,
                        key: read.key.to_owned(),
                        read: read.list.to_vec(),
                        longest: order.longest.to_vec(),
                    });
                }
                if first_repeat(read.list).is_some() {
                    found.push(duplicates(read));
                }
                elements.extend(read.list);
            }
            for element in elements {
                if let Some(anomaly) = self.bad_element(read, element) {
                    if reported.insert((read.key, element, anomaly.name())) {
                        found.push(anomaly);
                    }
                }
            }
            if let Some(Anomaly::G1b(bad)) = self.intermediate_read(read) {
                if reported.insert((read.key, bad.element, "G1b")) {
                    found.push(Anomaly::G1b(bad));
                }
            }
        }
        self.anomalies.extend(found);
    }

    /// What a key's longest read holds that its prefixes would show too.
    fn summarize(&self, key: &str, longest: &[u64]) -> Summary {
        let bad = longest
            .iter()
            .enumerate()
            .filter(|(_, &e)| match self.writer.get(&(key, e)) {
                None => true,
                Some(&w) => self.ops[w].outcome == Outcome::Fail,
            })
            .map(|(pos, &e)| (pos, e))
            .collect();
        Summary {
            first_repeat: first_repeat(longest),
            bad,
            next: 0,
        }
    }

    fn bad_read(&self, read: &Read<'h>, writer: Option<usize>, element: u64) -> BadRead {
        BadRead {
            reader: read.op,
            writer,
            key: read.key.to_owned(),
            element,
            read: read.list.to_vec(),
        }
    }

    /// G1a when a failed transaction appended `element`, garbage when nobody did.
    fn bad_element(&self, read: &Read<'h>, element: u64) -> Option<Anomaly> {
        match self.writer.get(&(read.key, element)) {
            None => Some(Anomaly::GarbageRead(self.bad_read(read, None, element))),
            Some(&w) if self.ops[w].outcome == Outcome::Fail => {
                Some(Anomaly::G1a(self.bad_read(read, Some(w), element)))
            }
            Some(_) => None,
        }
    }

    /// G1b when an external read ends at another transaction's non-final append to the key.
    fn intermediate_read(&self, read: &Read<'h>) -> Option<Anomaly> {
        let &last = read.list.last()?;
        let &w = self.writer.get(&(read.key, last))?;
        let final_append = self.last_append.get(&(w, read.key)).copied();
        (read.external && w != read.op && final_append != Some(last))
            .then(|| Anomaly::G1b(self.bad_read(read, Some(w), last)))
    }

    /// Committed transactions, and indeterminate ones one of whose appends someone read.
    fn mark_graph_members(&mut self) {
        for (i, op) in self.ops.iter().enumerate() {
            self.in_graph[i] = op.outcome == Outcome::Ok;
        }
        let longest = self.orders.iter().map(|(key, order)| (*key, order.longest));
        let uncovered = self
            .reads
            .iter()
            .filter(|r| self.orders.get(r.key).is_none_or(|o| !o.covers(r.list)))
            .map(|r| (r.key, r.list));
        let observed: Vec<(&str, &[u64])> = longest.chain(uncovered).collect();
        for (key, list) in observed {
            for element in list {
                if let Some(&w) = self.writer.get(&(key, *element)) {
                    if self.ops[w].outcome == Outcome::Info {
                        self.in_graph[w] = true;
                    }
                }
            }
        }
    }

    /// Lost update: committed transactions that read the same version of a key (before
    /// appending to it themselves) and then appended to it.
    fn check_lost_updates(&mut self) {
        let mut groups: BTreeMap<(&str, &[u64]), Vec<usize>> = BTreeMap::new();
        let mut counted: HashSet<(usize, &str)> = HashSet::new();
        for read in self.reads.iter().filter(|r| r.external) {
            let appends = self.last_append.contains_key(&(read.op, read.key));
            if appends && counted.insert((read.op, read.key)) {
                groups
                    .entry((read.key, read.list))
                    .or_default()
                    .push(read.op);
            }
        }
        for ((key, read), txns) in groups {
            if txns.len() > 1 {
                self.anomalies.push(Anomaly::LostUpdate {
                    key: key.to_owned(),
                    read: read.to_vec(),
                    txns,
                });
            }
        }
    }
}

/// The anomalies a key's longest read shows, so its prefixes can be judged without a rescan.
struct Summary {
    /// Position of the first repeated value.
    first_repeat: Option<usize>,
    /// Values nobody committed appending (failed or unknown writer), as (position, value).
    bad: Vec<(usize, u64)>,
    /// How many of `bad` earlier reads already covered.
    next: usize,
}

/// A transaction's view of one key so far, for the internal-consistency check.
#[derive(Default)]
struct Seen<'h> {
    /// Its last read of the key, if any.
    base: Option<&'h [u64]>,
    /// Its appends to the key since that read.
    after: Vec<u64>,
    /// All its appends to the key.
    own: Vec<u64>,
}

impl Seen<'_> {
    /// What a read of `list` should have returned, when it did not: `(expected, exact)`.
    fn contradicted_by(&self, list: &[u64]) -> Option<(Vec<u64>, bool)> {
        match self.base {
            Some(base) => {
                let fits = list.len() == base.len() + self.after.len()
                    && list.starts_with(base)
                    && list.ends_with(&self.after);
                (!fits).then(|| ([base, self.after.as_slice()].concat(), true))
            }
            None => (!list.ends_with(&self.own)).then(|| (self.own.clone(), false)),
        }
    }
}

fn duplicates(read: &Read<'_>) -> Anomaly {
    Anomaly::DuplicateElements {
        reader: read.op,
        key: read.key.to_owned(),
        read: read.list.to_vec(),
    }
}

/// Position of the first value that already appeared earlier in `list`.
fn first_repeat(list: &[u64]) -> Option<usize> {
    let mut seen = HashSet::with_capacity(list.len());
    list.iter().position(|v| !seen.insert(*v))
}
