//! Reading gungraun 0.20's `summary.json` (written by `--save-summary=json`): each bench's id, instruction count and callgrind files.
//!
//! A summary (schema version 6) names the bench by `module_path` (`file::group::function`)
//! and `id`, and holds per tool a profile whose `data.total.metrics.Ir.values.new` is the
//! instruction count (`{"Int": n}`). The callgrind files are in `output_dir`
//! (`callgrind.<function>.<id>.out`, relative to `project_root` when below it).

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::InstrError;

/// One bench's instruction count.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// `module_path::id` (e.g. `instructions::planner::one_event::n1000`).
    pub id: String,
    pub instructions: u64,
    /// The folder of its callgrind files.
    pub output_dir: PathBuf,
}

fn int(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.get("Int").and_then(Value::as_u64))
}

/// Pure: the bench in one summary (`None` when it holds no callgrind instruction count).
pub fn parse(summary: &Value) -> Option<Measured> {
    let module = summary["module_path"].as_str()?;
    let id = match summary["id"].as_str() {
        Some(i) => format!("{module}::{i}"),
        None => module.to_string(),
    };
    let profiles = summary["profiles"].as_array()?;
    let callgrind = profiles.iter().find(|p| p["tool"] == "Callgrind")?;
    let instructions = int(&callgrind["data"]["total"]["metrics"]["Ir"]["values"]["new"])?;
    let out = PathBuf::from(summary["output_dir"].as_str()?);
    let output_dir = if out.is_absolute() {
        out
    } else {
        Path::new(summary["project_root"].as_str().unwrap_or(".")).join(out)
    };
    Some(Measured {
        id,
        instructions,
        output_dir,
    })
}

/// Every `summary.json` under `dir` (any depth), parsed, sorted by id.
pub fn discover(dir: &Path) -> Result<Vec<Measured>, InstrError> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = fs::read_dir(&d).map_err(|source| InstrError::Read {
            path: d.clone(),
            source,
        })?;
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "summary.json") {
                let text = fs::read_to_string(&p).map_err(|source| InstrError::Read {
                    path: p.clone(),
                    source,
                })?;
                let v: Value = serde_json::from_str(&text).map_err(|e| InstrError::Parse {
                    path: p.clone(),
                    reason: e.to_string(),
                })?;
                found.push(parse(&v).ok_or_else(|| InstrError::Parse {
                    path: p.clone(),
                    reason: "no module_path, output_dir or Callgrind Ir count".into(),
                })?);
            }
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(found)
}

/// The callgrind files of a bench's latest run (`callgrind.*.out`, not `.old` or logs).
pub fn callgrind_files(output_dir: &Path) -> Result<Vec<PathBuf>, InstrError> {
    let mut files: Vec<PathBuf> = fs::read_dir(output_dir)
        .map_err(|source| InstrError::Read {
            path: output_dir.to_path_buf(),
            source,
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("callgrind.") && n.ends_with(".out"))
        })
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_id_the_instruction_count_and_the_output_dir() {
        let v = serde_json::json!({
            "module_path": "instructions::planner::one_event",
            "id": "n1000",
            "output_dir": "target/gungraun/podgrant-benches/instructions/planner/one_event.n1000",
            "project_root": "/w",
            "profiles": [
                {"tool": "Callgrind", "data": {"parts": [], "total": {"metrics": {
                    "Ir": {"values": {"new": {"Int": 1234567}}},
                    "EstimatedCycles": {"values": {"new": {"Int": 9}}}
                }, "regressions": []}}}
            ]
        });
        let m = parse(&v).unwrap();
        assert_eq!(m.id, "instructions::planner::one_event::n1000");
        assert_eq!(m.instructions, 1234567);
        assert_eq!(
            m.output_dir,
            Path::new("/w/target/gungraun/podgrant-benches/instructions/planner/one_event.n1000")
        );
        let mut no_ir = v.clone();
        no_ir["profiles"][0]["tool"] = "DHAT".into();
        assert_eq!(parse(&no_ir), None);
    }
}
