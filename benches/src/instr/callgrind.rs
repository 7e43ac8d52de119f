//! Pure: callgrind's output format → per-function self and call costs → expanded stacks → pprof protobuf and folded lines.
//!
//! callgrind records, per function, its self cost and the inclusive cost of each call it
//! made (`cfn=` / `calls=` and the cost line after them), not whole stacks. [`Graph::stacks`]
//! expands the call graph from its roots, giving each call's inclusive cost to the callee's
//! own profile in proportion (the usual context-free assumption: exact for a call tree, an
//! estimate where a function is called from several places). Self costs sum to the
//! recorded total; recursion and depth are cut, and costs below a floor are kept as the
//! callee's self cost, so nothing is lost and the output stays small.

use std::collections::{BTreeMap, BTreeSet};

/// Which event of the file is read: callgrind's first (`Ir`, instructions, for gungraun's
/// default run).
const EVENT_COLUMN: usize = 0;

/// A parse failure, with the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("callgrind output, line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

/// The call graph of one callgrind run (all parts summed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    /// Function names, by index.
    pub names: Vec<String>,
    /// Self cost by function index.
    pub self_cost: Vec<u64>,
    /// (caller, callee) → inclusive cost of the calls.
    pub calls: BTreeMap<(usize, usize), u64>,
    /// The event read (`Ir`).
    pub event: String,
}

impl Graph {
    fn intern(&mut self, index: &mut BTreeMap<String, usize>, name: &str) -> usize {
        if let Some(&i) = index.get(name) {
            return i;
        }
        self.names.push(name.to_string());
        self.self_cost.push(0);
        index.insert(name.to_string(), self.names.len() - 1);
        self.names.len() - 1
    }

    /// The sum of the self costs: the run's total.
    pub fn total(&self) -> u64 {
        self.self_cost.iter().sum()
    }

    /// Expands the graph into stacks (root first, function indices) with their self cost.
    /// Costs under `floor` are not expanded further (kept as self cost of where they stop).
    pub fn stacks(&self, floor: f64, max_depth: usize) -> BTreeMap<Vec<usize>, f64> {
        let n = self.names.len();
        let mut out_edges: Vec<Vec<(usize, u64)>> = vec![Vec::new(); n];
        let mut called = vec![false; n];
        for (&(from, to), &c) in &self.calls {
            if from != to {
                out_edges[from].push((to, c));
                called[to] = true;
            }
        }
        // what a function's own profile adds up to: self + its calls
        let profile_total: Vec<f64> = (0..n)
            .map(|f| {
                self.self_cost[f] as f64 + out_edges[f].iter().map(|e| e.1 as f64).sum::<f64>()
            })
            .collect();
        let mut out = BTreeMap::new();
        let mut path = Vec::new();
        for root in (0..n).filter(|&f| !called[f] && profile_total[f] > 0.0) {
            self.expand(
                root,
                1.0,
                &out_edges,
                &profile_total,
                floor,
                max_depth,
                &mut path,
                &mut out,
            );
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn expand(
        &self,
        f: usize,
        scale: f64,
        out_edges: &[Vec<(usize, u64)>],
        profile_total: &[f64],
        floor: f64,
        max_depth: usize,
        path: &mut Vec<usize>,
        out: &mut BTreeMap<Vec<usize>, f64>,
    ) {
        path.push(f);
        let own = self.self_cost[f] as f64 * scale;
        for &(g, c) in &out_edges[f] {
            let cost = c as f64 * scale;
            if path.contains(&g) {
                // recursion: the deeper frames' self cost is already in g's self cost
                continue;
            }
            if path.len() >= max_depth || cost < floor || profile_total[g] <= 0.0 {
                // too deep or too small to draw: the call's cost as g's, here
                path.push(g);
                *out.entry(path.clone()).or_insert(0.0) += cost;
                path.pop();
                continue;
            }
            self.expand(
                g,
                cost / profile_total[g],
                out_edges,
                profile_total,
                floor,
                max_depth,
                path,
                out,
            );
        }
        if own > 0.0 {
            *out.entry(path.clone()).or_insert(0.0) += own;
        }
        path.pop();
    }
}

/// Splits `(id) name` / `(id)` / `name` of a compressed-name line.
fn compressed(value: &str) -> (Option<&str>, Option<&str>) {
    let v = value.trim();
    if let Some(rest) = v.strip_prefix('(') {
        // ids are numbers: `(below main)` is a name that merely starts with a parenthesis
        if let Some((id, name)) = rest.split_once(')') {
            if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
                let name = name.trim();
                return (Some(id), (!name.is_empty()).then_some(name));
            }
        }
    }
    (None, Some(v))
}

/// Parses callgrind's output format (name compression, position compression, several parts).
pub fn parse(text: &str) -> Result<Graph, ParseError> {
    let mut g = Graph::default();
    let mut index = BTreeMap::new();
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    let mut positions = 1usize;
    let mut current: Option<usize> = None;
    let mut callee: Option<usize> = None;
    // after `calls=`: the next cost line is the call's inclusive cost
    let mut call_pending = false;
    let mut resolve = |value: &str, line: usize| -> Result<String, ParseError> {
        match compressed(value) {
            (Some(id), Some(name)) => {
                ids.insert(id.to_string(), name.to_string());
                Ok(name.to_string())
            }
            (Some(id), None) => ids.get(id).cloned().ok_or_else(|| ParseError {
                line,
                reason: format!("function id ({id}) used before it is named"),
            }),
            (None, Some(name)) => Ok(name.to_string()),
            (None, None) => Err(ParseError {
                line,
                reason: "empty function name".into(),
            }),
        }
    };
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim_end();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let first = l.as_bytes()[0];
        if first.is_ascii_digit() || first == b'+' || first == b'-' || first == b'*' {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let cost = match cols.get(positions + EVENT_COLUMN) {
                None => 0,
                Some(v) => v.parse::<u64>().map_err(|_| ParseError {
                    line,
                    reason: format!("cost {v:?} is not a number"),
                })?,
            };
            let Some(f) = current else {
                return Err(ParseError {
                    line,
                    reason: "a cost line before any fn=".into(),
                });
            };
            if call_pending {
                let to = callee.ok_or_else(|| ParseError {
                    line,
                    reason: "calls= without cfn=".into(),
                })?;
                *g.calls.entry((f, to)).or_insert(0) += cost;
                call_pending = false;
            } else {
                g.self_cost[f] += cost;
            }
            continue;
        }
        let Some((key, value)) = l.split_once(['=', ':']) else {
            continue;
        };
        match key {
            "positions" => positions = value.split_whitespace().count().max(1),
            "events" => {
                g.event = value
                    .split_whitespace()
                    .nth(EVENT_COLUMN)
                    .unwrap_or_default()
                    .to_string()
            }
            "fn" => {
                let name = resolve(value, line)?;
                current = Some(g.intern(&mut index, &name));
                callee = None;
                call_pending = false;
            }
            "cfn" => {
                let name = resolve(value, line)?;
                callee = Some(g.intern(&mut index, &name));
            }
            "calls" => call_pending = true,
            _ => {}
        }
    }
    Ok(g)
}

/// Folded stack lines (`root;…;leaf count`) of the expanded stacks, costs rounded; for inferno.
pub fn folded_lines(g: &Graph, stacks: &BTreeMap<Vec<usize>, f64>) -> Vec<String> {
    stacks
        .iter()
        .filter(|(_, &c)| c.round() >= 1.0)
        .map(|(s, c)| {
            let names: Vec<&str> = s.iter().map(|&f| g.names[f].as_str()).collect();
            format!("{} {}", names.join(";"), c.round() as u64)
        })
        .collect()
}

/// A pprof profile of the expanded stacks: one sample per stack, its cost in `event`s.
pub fn to_pprof(g: &Graph, stacks: &BTreeMap<Vec<usize>, f64>) -> pprof::protos::Profile {
    use pprof::protos::{Function, Line, Location, Profile, Sample, ValueType};
    let mut strings = vec![String::new()];
    let mut string_ids: BTreeMap<String, i64> = BTreeMap::new();
    let mut s = |x: &str| -> i64 {
        if let Some(&i) = string_ids.get(x) {
            return i;
        }
        strings.push(x.to_string());
        string_ids.insert(x.to_string(), strings.len() as i64 - 1);
        strings.len() as i64 - 1
    };
    let event = if g.event.is_empty() { "Ir" } else { &g.event };
    let sample_type = vec![ValueType {
        ty: s(&format!("{event} (instructions)")),
        unit: s("count"),
    }];
    let used: BTreeSet<usize> = stacks.keys().flatten().copied().collect();
    let mut function = Vec::new();
    let mut location = Vec::new();
    for &f in &used {
        let id = f as u64 + 1;
        let name = s(&g.names[f]);
        function.push(Function {
            id,
            name,
            system_name: name,
            ..Default::default()
        });
        location.push(Location {
            id,
            line: vec![Line {
                function_id: id,
                line: 0,
            }],
            ..Default::default()
        });
    }
    let sample = stacks
        .iter()
        .filter(|(_, &c)| c.round() >= 1.0)
        .map(|(stack, c)| Sample {
            // leaf first
            location_id: stack.iter().rev().map(|&f| f as u64 + 1).collect(),
            value: vec![c.round() as i64],
            label: vec![],
        })
        .collect();
    Profile {
        sample_type,
        sample,
        location,
        function,
        string_table: strings,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// main (self 10) calls plan (incl 100: self 60, calls sort incl 40) and decode (incl 50,
    /// self 50): a tree, so every expanded number is exact.
    const TREE: &str = "\
# callgrind format
version: 1
positions: line
events: Ir Dr
summary: 160

fn=(1) main
3 10 2
cfn=(2) plan
calls=1 10
4 100 9
cfn=(3) decode
calls=1 20
5 50 1

fn=(2)
10 60
cfn=(4) sort
calls=2 30
+1 40

fn=(3)
20 50
fn=(4)
30 40
";

    #[test]
    fn parses_self_and_call_costs_with_compressed_names() {
        let g = parse(TREE).unwrap();
        assert_eq!(g.event, "Ir");
        assert_eq!(g.names, vec!["main", "plan", "decode", "sort"]);
        assert_eq!(g.self_cost, vec![10, 60, 50, 40]);
        assert_eq!(g.calls[&(0, 1)], 100);
        assert_eq!(g.calls[&(1, 3)], 40);
        assert_eq!(g.total(), 160);
    }

    #[test]
    fn a_call_tree_expands_into_exact_stacks() {
        let g = parse(TREE).unwrap();
        let lines = folded_lines(&g, &g.stacks(0.0, 64));
        assert_eq!(
            lines,
            vec![
                "main 10",
                "main;plan 60",
                "main;plan;sort 40",
                "main;decode 50"
            ]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_shared_callee_is_split_by_its_callers_cost_and_totals_are_kept() {
        // a and b both call leaf; leaf's 30 goes 2:1 to a's and b's stacks
        let text = "events: Ir\nfn=(1) root\ncfn=(2) a\ncalls=1 1\n1 25\ncfn=(3) b\ncalls=1 1\n1 15\n\
                    fn=(2)\n1 5\ncfn=(4) leaf\ncalls=1 1\n1 20\nfn=(3)\n1 5\ncfn=(4)\ncalls=1 1\n1 10\nfn=(4)\n1 30\n";
        let g = parse(text).unwrap();
        let st = g.stacks(0.0, 64);
        let total: f64 = st.values().sum();
        assert!((total - 40.0).abs() < 1e-9, "{st:?}");
        assert_eq!(st[&vec![0, 1, 3]], 20.0);
        assert_eq!(st[&vec![0, 2, 3]], 10.0);
    }

    #[test]
    fn recursion_and_the_floor_cut_expansion_without_losing_cost() {
        let text = "events: Ir\nfn=(1) f\n1 5\ncfn=(1)\ncalls=1 1\n1 50\ncfn=(2) g\ncalls=1 1\n1 3\nfn=(2)\n1 3\n";
        let g = parse(text).unwrap();
        // the self-call is not a separate edge in the expansion; g (3) is under the floor
        let st = g.stacks(10.0, 64);
        assert_eq!(st[&vec![0]], 5.0);
        assert_eq!(st[&vec![0, 1]], 3.0);
    }

    #[test]
    fn the_pprof_profile_has_one_sample_per_stack_leaf_first() {
        let g = parse(TREE).unwrap();
        let p = to_pprof(&g, &g.stacks(0.0, 64));
        assert_eq!(p.sample.len(), 4);
        let sum: i64 = p.sample.iter().map(|s| s.value[0]).sum();
        assert_eq!(sum, 160);
        let sort = p.sample.iter().find(|s| s.location_id.len() == 3).unwrap();
        assert_eq!(sort.location_id, vec![4, 2, 1]);
        assert_eq!(
            p.string_table[p.sample_type[0].ty as usize],
            "Ir (instructions)"
        );
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let e = parse("events: Ir\nfn=(1) f\n1 lots\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(parse("events: Ir\n1 5\n").is_err());
        assert!(parse("events: Ir\nfn=(7)\n").is_err());
    }

    #[test]
    fn a_name_in_parentheses_is_a_name_not_an_id() {
        // valgrind writes `fn=(below main)` uncompressed, even when other names are compressed
        let g = parse("events: Ir\nfn=(below main)\n0 3\nfn=(1) main\n0 4\nfn=(1)\n0 1\n").unwrap();
        let mut names: Vec<&str> = g.names.iter().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, ["(below main)", "main"]);
    }
}
