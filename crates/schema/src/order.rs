//! Dependency ordering: a topological sort that is deterministic (among the objects whose
//! dependencies are met, the smallest key goes first: kind, then name) and that reports a cycle
//! with the objects on it.

use crate::model::ObjectKey;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CycleError {
    /// One cycle, each object depending on the next, the last on the first.
    pub cycle: Vec<ObjectKey>,
    /// Every object that could not be ordered.
    pub left: Vec<ObjectKey>,
}

impl fmt::Display for CycleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.cycle.iter().map(|k| k.to_string()).collect();
        write!(f, "circular dependencies: {}", names.join(" -> "))?;
        if let Some(first) = self.cycle.first() {
            write!(f, " -> {first}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CycleError {}

/// `nodes` in an order where every node comes after the nodes it depends on (`edges`: `(from,
/// to)`, from needs to). Edges naming a node that is not in `nodes`, and self-edges, are ignored.
pub fn topological(
    nodes: &[ObjectKey],
    edges: &[(ObjectKey, ObjectKey)],
) -> Result<Vec<ObjectKey>, CycleError> {
    let index: BTreeMap<&ObjectKey, usize> =
        nodes.iter().enumerate().map(|(i, k)| (k, i)).collect();
    let mut needs: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); nodes.len()];
    let mut needed_by: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (from, to) in edges {
        if let (Some(&f), Some(&t)) = (index.get(from), index.get(to)) {
            if f != t && needs[f].insert(t) {
                needed_by[t].push(f);
            }
        }
    }
    let mut waiting: Vec<usize> = needs.iter().map(|n| n.len()).collect();
    let mut ready: BinaryHeap<Reverse<(&ObjectKey, usize)>> = (0..nodes.len())
        .filter(|&i| waiting[i] == 0)
        .map(|i| Reverse((&nodes[i], i)))
        .collect();
    let mut out = Vec::with_capacity(nodes.len());
    let mut done = vec![false; nodes.len()];
    while let Some(Reverse((_, i))) = ready.pop() {
        if done[i] {
            continue;
        }
        done[i] = true;
        out.push(nodes[i].clone());
        for &j in &needed_by[i] {
            waiting[j] -= 1;
            if waiting[j] == 0 {
                ready.push(Reverse((&nodes[j], j)));
            }
        }
    }
    if out.len() == nodes.len() {
        return Ok(out);
    }
    let mut left: Vec<ObjectKey> = (0..nodes.len())
        .filter(|&i| !done[i])
        .map(|i| nodes[i].clone())
        .collect();
    left.sort();
    left.dedup();
    Err(CycleError {
        cycle: find_cycle(&needs, &done)
            .into_iter()
            .map(|i| nodes[i].clone())
            .collect(),
        left,
    })
}

/// A cycle among the nodes not done: from the smallest such node, follow the smallest
/// unfinished dependency until a node repeats (every unfinished node has one).
fn find_cycle(needs: &[BTreeSet<usize>], done: &[bool]) -> Vec<usize> {
    let Some(start) = (0..needs.len()).find(|&i| !done[i]) else {
        return Vec::new();
    };
    let mut path = vec![start];
    let mut seen = BTreeMap::from([(start, 0usize)]);
    let mut at = start;
    loop {
        let Some(&next) = needs[at].iter().find(|&&t| !done[t]) else {
            return path;
        };
        if let Some(&pos) = seen.get(&next) {
            return path[pos..].to_vec();
        }
        seen.insert(next, path.len());
        path.push(next);
        at = next;
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.label(), self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NodeKind;

    fn k(kind: NodeKind, name: &str) -> ObjectKey {
        ObjectKey {
            kind,
            name: name.into(),
        }
    }

    #[test]
    fn orders_by_dependencies_then_kind_then_name() {
        use NodeKind::*;
        let (t, f, v, w, d) = (
            k(Table, "t"),
            k(Function, "f()"),
            k(View, "v"),
            k(View, "w"),
            k(Type, "d"),
        );
        type Case = (Vec<ObjectKey>, Vec<(ObjectKey, ObjectKey)>, Vec<ObjectKey>);
        let cases: Vec<Case> = vec![
            // no edges: kind, then name
            (
                vec![w.clone(), v.clone(), t.clone(), d.clone()],
                vec![],
                vec![d.clone(), t.clone(), v.clone(), w.clone()],
            ),
            // a type that needs a function (a domain's check) comes after it
            (
                vec![d.clone(), f.clone()],
                vec![(d.clone(), f.clone())],
                vec![f.clone(), d.clone()],
            ),
            // v needs w: w first although v sorts first
            (
                vec![v.clone(), w.clone()],
                vec![(v.clone(), w.clone())],
                vec![w.clone(), v.clone()],
            ),
            // a table whose default calls a function that reads a view... of another table
            (
                vec![t.clone(), f.clone(), v.clone(), w.clone()],
                vec![(t.clone(), f.clone()), (f.clone(), w.clone())],
                vec![v.clone(), w.clone(), f.clone(), t.clone()],
            ),
            // self-edges and edges to unknown nodes are ignored
            (
                vec![t.clone()],
                vec![(t.clone(), t.clone()), (t.clone(), k(Table, "elsewhere"))],
                vec![t.clone()],
            ),
        ];
        for (nodes, edges, expected) in cases {
            assert_eq!(
                topological(&nodes, &edges).unwrap(),
                expected,
                "{nodes:?} {edges:?}"
            );
        }
    }

    #[test]
    fn the_order_does_not_depend_on_the_input_order() {
        use NodeKind::*;
        let nodes: Vec<ObjectKey> = (0..50).map(|i| k(Table, &format!("t{i:02}"))).collect();
        let edges: Vec<(ObjectKey, ObjectKey)> = (1..50)
            .filter(|i| i % 3 == 0)
            .map(|i| (nodes[i - 1].clone(), nodes[i].clone()))
            .collect();
        let a = topological(&nodes, &edges).unwrap();
        let mut reversed = nodes.clone();
        reversed.reverse();
        let mut edges_rev = edges.clone();
        edges_rev.reverse();
        assert_eq!(topological(&reversed, &edges_rev).unwrap(), a);
        for (from, to) in &edges {
            let pos = |x: &ObjectKey| a.iter().position(|y| y == x).unwrap();
            assert!(pos(to) < pos(from));
        }
    }

    #[test]
    fn a_cycle_is_an_error_naming_it() {
        use NodeKind::*;
        let (a, b, c, d) = (
            k(Table, "a"),
            k(Function, "b()"),
            k(View, "c"),
            k(View, "d"),
        );
        let err = topological(
            &[a.clone(), b.clone(), c.clone(), d.clone()],
            &[
                (a.clone(), b.clone()),
                (b.clone(), c.clone()),
                (c.clone(), a.clone()),
                (d.clone(), c.clone()),
            ],
        )
        .unwrap_err();
        assert_eq!(err.left, vec![a.clone(), b.clone(), c.clone(), d.clone()]);
        assert_eq!(err.cycle, vec![a.clone(), b.clone(), c.clone()]);
        assert_eq!(
            err.to_string(),
            "circular dependencies: table a -> function b() -> view c -> table a"
        );
    }
}
