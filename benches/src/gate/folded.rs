//! Folded stacks (`a;b;c 12`): parsing, a per-function before/after table, and the differential flame graph.
//!
//! The table compares *shares* of samples (a function's self samples / all samples), so two
//! profiles of different lengths compare; the rows are sorted by how much the share grew.

use std::collections::BTreeMap;
use std::io::BufReader;

use serde::Serialize;

use super::GateError;

/// Stack → samples.
pub type Folded = BTreeMap<String, u64>;

/// Parses folded stacks; blank lines are skipped, a line without a trailing count is an error.
pub fn parse(text: &str) -> Result<Folded, GateError> {
    let mut out = Folded::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        let (stack, count) = line
            .rsplit_once(' ')
            .and_then(|(s, c)| c.parse::<u64>().ok().map(|c| (s, c)))
            .ok_or_else(|| GateError::Folded {
                line: n + 1,
                reason: "want `frame;frame;... COUNT`".into(),
            })?;
        *out.entry(stack.to_string()).or_insert(0) += count;
    }
    Ok(out)
}

/// One function's self time before and after, as shares of each profile's samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionDelta {
    pub function: String,
    pub before_share: f64,
    pub after_share: f64,
    /// Inclusive (cumulative) shares: the function anywhere on the stack.
    pub before_cum_share: f64,
    pub after_cum_share: f64,
}

fn shares(f: &Folded) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    let total: u64 = f.values().sum();
    let mut flat = BTreeMap::new();
    let mut cum = BTreeMap::new();
    if total == 0 {
        return (flat, cum);
    }
    for (stack, count) in f {
        let share = *count as f64 / total as f64;
        let frames: Vec<&str> = stack.split(';').collect();
        if let Some(leaf) = frames.last() {
            *flat.entry(leaf.to_string()).or_insert(0.0) += share;
        }
        let mut seen = std::collections::BTreeSet::new();
        for fr in frames {
            if seen.insert(fr) {
                *cum.entry(fr.to_string()).or_insert(0.0) += share;
            }
        }
    }
    (flat, cum)
}

/// The `limit` functions whose self-time share grew most from `before` to `after`.
pub fn top_deltas(before: &Folded, after: &Folded, limit: usize) -> Vec<FunctionDelta> {
    let (bf, bc) = shares(before);
    let (af, ac) = shares(after);
    let mut names: Vec<&String> = bc.keys().chain(ac.keys()).collect();
    names.sort();
    names.dedup();
    let mut rows: Vec<FunctionDelta> = names
        .into_iter()
        .map(|n| FunctionDelta {
            function: n.clone(),
            before_share: bf.get(n).copied().unwrap_or(0.0),
            after_share: af.get(n).copied().unwrap_or(0.0),
            before_cum_share: bc.get(n).copied().unwrap_or(0.0),
            after_cum_share: ac.get(n).copied().unwrap_or(0.0),
        })
        .collect();
    rows.sort_by(|a, b| {
        let da = a.after_share - a.before_share;
        let db = b.after_share - b.before_share;
        db.total_cmp(&da).then_with(|| a.function.cmp(&b.function))
    });
    rows.truncate(limit);
    rows
}

/// The top `limit` functions of one profile by self samples: (function, flat share, cum share).
pub fn top(profile: &Folded, limit: usize) -> Vec<(String, f64, f64)> {
    let (flat, cum) = shares(profile);
    let mut rows: Vec<(String, f64, f64)> = flat
        .into_iter()
        .map(|(f, s)| {
            let c = cum.get(&f).copied().unwrap_or(s);
            (f, s, c)
        })
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rows.truncate(limit);
    rows
}

fn render(folded: &Folded) -> String {
    folded.iter().map(|(s, c)| format!("{s} {c}\n")).collect()
}

/// A differential flame graph (inferno's diff-folded, normalised): red grew, blue shrank.
pub fn differential_svg(
    before: &Folded,
    after: &Folded,
    title: &str,
) -> Result<Vec<u8>, GateError> {
    let (b, a) = (render(before), render(after));
    let mut diff = Vec::new();
    inferno::differential::from_readers(
        inferno::differential::Options {
            normalize: true,
            strip_hex: true,
        },
        BufReader::new(b.as_bytes()),
        BufReader::new(a.as_bytes()),
        &mut diff,
    )
    .map_err(|e| GateError::Render(e.to_string()))?;
    let mut svg = Vec::new();
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title.to_string();
    inferno::flamegraph::from_reader(&mut opts, diff.as_slice(), &mut svg)
        .map_err(|e| GateError::Render(e.to_string()))?;
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_merges_lines() {
        let f = parse("main;a;b 3\nmain;a 2\n\nmain;a;b 1\n").unwrap();
        assert_eq!(f.get("main;a;b"), Some(&4));
        assert_eq!(f.get("main;a"), Some(&2));
        assert!(matches!(
            parse("main;a\n"),
            Err(GateError::Folded { line: 1, .. })
        ));
    }

    #[test]
    fn deltas_rank_the_function_that_grew_first() {
        let before = parse("main;plan 50\nmain;decode 50\n").unwrap();
        let after = parse("main;plan 90\nmain;decode 10\n").unwrap();
        let rows = top_deltas(&before, &after, 10);
        assert_eq!(rows[0].function, "plan");
        assert!((rows[0].before_share - 0.5).abs() < 1e-9);
        assert!((rows[0].after_share - 0.9).abs() < 1e-9);
        assert_eq!(rows.last().unwrap().function, "decode");
        // main is never a leaf: no self time, but it is on every stack
        let main = rows.iter().find(|r| r.function == "main").unwrap();
        assert_eq!(main.after_share, 0.0);
        assert!((main.after_cum_share - 1.0).abs() < 1e-9);
    }

    #[test]
    fn differential_svg_is_a_flame_graph() {
        let before = parse("main;plan 50\nmain;decode 50\n").unwrap();
        let after = parse("main;plan 90\nmain;decode 10\n").unwrap();
        let svg = String::from_utf8(differential_svg(&before, &after, "t").unwrap()).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("plan"),
            "{}",
            &svg[..200.min(svg.len())]
        );
    }
}
