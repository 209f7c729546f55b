//! The layout's rules, checked on the sources (unit tests aside): each layer uses only the
//! layers below it, no
//! module imports one that imports it back, the model and the graph know no Diesel, only the
//! storage and query layers name tables, and the HTTP API uses the crate's public API.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, each with the layers it may use.
const LAYERS: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("graph", &["model"]),
    ("error", &["model", "graph"]),
    ("workflow", &["model", "graph", "error"]),
    ("store", &["model", "graph", "error"]),
    ("query", &["model", "error", "store"]),
    (
        "exec",
        &["model", "graph", "error", "workflow", "store", "query"],
    ),
    ("worker", &["model", "error", "exec", "store"]),
    ("config", &["error", "store", "query"]),
    ("testing", &["error", "store"]),
    // The HTTP API goes through the crate root (`crate::Executor`), never a layer.
    ("http", &[]),
];

/// Every source file, by its module path (`store::runs`), with its code (comments removed).
fn sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(&src).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            // A module's unit tests (from `#[cfg(test)]` on) are not part of its layer.
            let code: String = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .take_while(|l| {
                    let l = l.trim_start();
                    !(l.starts_with("#[cfg(test)]") || l.starts_with("#[cfg(all(test"))
                })
                .filter(|l| !l.trim_start().starts_with("//"))
                .map(|l| format!("{l}\n"))
                .collect();
            (parts.join("::"), code)
        })
        .collect()
}

/// The module paths a module's code names (`crate::store::runs::Lease`, `super::fence`, and
/// the items of `use crate::x::{a, b}`), resolved to the longest module that exists.
fn uses(module: &str, code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let words: Vec<char> = code.chars().collect();
    let text: String = words.iter().collect();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = text[from..].find(start) {
            let at = from + at;
            from = at + start.len();
            if at > 0 && text[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let path: String = text[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let path = path.trim_end_matches(':');
            let mut paths = vec![path.to_owned()];
            let rest = &text[at + path.len()..];
            if let Some(group) = rest.strip_prefix("::{") {
                let group = &group[..group.find('}').unwrap_or(0)];
                for item in group.split(',') {
                    let item = item.trim().split([' ', ':']).next().unwrap_or("");
                    if !item.is_empty() && item != "self" {
                        paths.push(format!("{path}::{item}"));
                    }
                }
            }
            for path in paths {
                if let Some(target) = resolve(module, &path, modules) {
                    found.insert(target);
                }
            }
        }
    }
    found
}

fn resolve(module: &str, path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").collect();
    let mut base: Vec<&str> = if module.is_empty() || module == "lib" {
        Vec::new()
    } else {
        module.split("::").collect()
    };
    match segments.first() {
        Some(&"crate") => {
            base.clear();
            segments.remove(0);
        }
        Some(&"super") => {
            while segments.first() == Some(&"super") {
                base.pop();
                segments.remove(0);
            }
        }
        _ => return None,
    }
    (0..=segments.len())
        .rev()
        .map(|n| {
            let mut full = base.clone();
            full.extend(&segments[..n]);
            full.join("::")
        })
        .find(|candidate| modules.contains(candidate))
        .filter(|target| target != module && !module.starts_with(&format!("{target}::")))
}

fn layer(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

#[test]
fn each_layer_uses_only_the_layers_below_it() {
    let sources = sources();
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let mut wrong = Vec::new();
    for (module, code) in &sources {
        let from = layer(module);
        let Some((_, allowed)) = LAYERS.iter().find(|(l, _)| *l == from) else {
            assert_eq!(from, "lib", "{module} is in no layer: add it to LAYERS");
            continue;
        };
        for target in uses(module, code, &modules) {
            let to = layer(&target);
            if to != from && !allowed.contains(&to) {
                wrong.push(format!("{module} uses {target}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "uses of a layer above or beside:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let sources = sources();
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let edges: BTreeMap<&str, BTreeSet<String>> = sources
        .iter()
        .map(|(m, code)| (m.as_str(), uses(m, code, &modules)))
        .collect();
    fn visit<'a>(
        m: &'a str,
        edges: &'a BTreeMap<&'a str, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        cycles: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|p| *p == m) {
            cycles.push(format!("{} -> {m}", path[at..].join(" -> ")));
            return;
        }
        if !done.insert(m) {
            return;
        }
        path.push(m);
        for next in edges.get(m).into_iter().flatten() {
            visit(next, edges, path, done, cycles);
        }
        path.pop();
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        visit(m, &edges, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(cycles.is_empty(), "import circles:\n{}", cycles.join("\n"));
}

#[test]
fn the_model_and_the_graph_know_no_diesel_and_only_storage_and_queries_name_tables() {
    for (module, code) in sources() {
        if matches!(layer(&module), "model" | "graph") {
            assert!(!code.contains("diesel"), "{module} uses Diesel");
        }
        if !matches!(layer(&module), "store" | "query" | "lib") {
            let tables = [
                "schema::runs",
                "schema::stages",
                "schema::decisions",
                "schema::checkpoints",
            ];
            assert!(
                !tables.iter().any(|t| code.contains(t)) && !code.contains("store::schema"),
                "{module} names a table"
            );
        }
    }
}
