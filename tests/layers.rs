//! The crate's layering, checked from its source: the top-level modules depend on each other
//! without cycles, and the pure core (mapping, validation, consent decisions, workflow, letters,
//! fit-note rules, eligibility, audit records) reaches no store, network, file or runtime.
//!
//! A module's dependencies are the `crate::<module>` paths in its non-test code (comments and
//! `#[cfg(test)]` modules aside): what `use` brings in and what is named in place alike.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Pure modules: plain functions over data. They use each other and nothing else: not the
/// configuration file's types either (they take plain values, such as the configured
/// [`whg::services::Service`]s, which `config` reads the file into).
const CORE: &[&str] = &[
    "fhir",
    "caller",
    "consent",
    "workflow",
    "letters",
    "fit_notes",
    "eligibility",
    "intake",
    "audit",
    "ids",
    "services",
    "monitoring",
    "reports",
    "alerts",
];

/// The HTTP edge: routes that parse, call one use case and answer.
const HTTP: &str = "api";

/// Crates and std modules that do I/O or need a runtime: none of them in the core.
const IO: &[&str] = &[
    "tokio::",
    "sqlx::",
    "reqwest::",
    "axum::",
    "hyper::",
    "std::fs",
    "std::net",
    "std::process",
    "std::io::stdin",
];

struct Source {
    /// `module/file.rs`, for the message.
    path: String,
    /// The top-level module the file belongs to.
    module: String,
    /// Non-test code lines, comments removed, with their line numbers.
    lines: Vec<(usize, String)>,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .filter_map(|file| {
            let rel = file
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let module = rel
                .split('/')
                .next()
                .unwrap()
                .trim_end_matches(".rs")
                .to_string();
            // The crate root and the binary wire everything together; unit-test files are tests.
            if module == "lib" || module == "main" || rel.ends_with("/tests.rs") {
                return None;
            }
            let text = fs::read_to_string(&file).unwrap();
            let code = match text.find("#[cfg(test)]\nmod tests") {
                Some(at) => &text[..at],
                None => &text[..],
            };
            let lines = code
                .lines()
                .enumerate()
                .filter_map(|(i, line)| {
                    let line = match line.find("//") {
                        // `//` inside a string (a URL) is not a comment.
                        Some(at) if !line[..at].contains('"') => &line[..at],
                        _ => line,
                    };
                    (!line.trim().is_empty()).then(|| (i + 1, line.to_string()))
                })
                .collect();
            Some(Source {
                path: rel,
                module,
                lines,
            })
        })
        .collect()
}

/// Each module's dependencies on other top-level modules, with where each is named.
fn dependencies(sources: &[Source]) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut deps: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for s in sources {
        deps.entry(s.module.clone()).or_default();
        for (n, line) in &s.lines {
            let mut rest = line.as_str();
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                    .collect();
                if !name.is_empty() && name != s.module {
                    deps.entry(s.module.clone())
                        .or_default()
                        .entry(name)
                        .or_default()
                        .push(format!("src/{}:{n}", s.path));
                }
            }
        }
    }
    deps
}

/// Modules that reach themselves: every strongly connected component of more than one.
fn cycles(deps: &BTreeMap<String, BTreeMap<String, Vec<String>>>) -> Vec<BTreeSet<String>> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for next in deps.get(&m).into_iter().flat_map(|d| d.keys()) {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> = deps.keys().map(|m| (m, reach(m))).collect();
    let mut found: Vec<BTreeSet<String>> = Vec::new();
    for (m, from_m) in &reached {
        if !from_m.contains(*m) {
            continue;
        }
        let component: BTreeSet<String> = from_m
            .iter()
            .filter(|other| reached.get(other).is_some_and(|r| r.contains(*m)))
            .cloned()
            .collect();
        if !found.contains(&component) {
            found.push(component);
        }
    }
    found
}

#[test]
fn the_modules_depend_on_each_other_without_cycles() {
    let deps = dependencies(&sources());
    assert!(
        deps.contains_key("store") && deps.contains_key("intake"),
        "{deps:?}"
    );
    let cycles = cycles(&deps);
    let described: Vec<String> = cycles
        .iter()
        .map(|component| {
            let edges: Vec<String> = component
                .iter()
                .flat_map(|a| {
                    deps[a]
                        .iter()
                        .filter(|(b, _)| component.contains(*b))
                        .map(move |(b, at)| format!("  {a} -> {b} at {}", at.join(", ")))
                })
                .collect();
            format!("{component:?}:\n{}", edges.join("\n"))
        })
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles between modules:\n{}",
        described.join("\n")
    );
}

#[test]
fn the_core_reaches_no_store_network_or_runtime() {
    let sources = sources();
    let mut problems = Vec::new();
    for s in sources.iter().filter(|s| CORE.contains(&s.module.as_str())) {
        for (n, line) in &s.lines {
            for io in IO {
                if line.contains(io) {
                    problems.push(format!("src/{}:{n} uses {io}", s.path));
                }
            }
        }
    }
    for (module, uses) in dependencies(&sources) {
        if !CORE.contains(&module.as_str()) {
            continue;
        }
        for (used, at) in uses {
            if !CORE.contains(&used.as_str()) {
                problems.push(format!("{module} (core) uses {used} at {}", at.join(", ")));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The routes call use cases, handing them the store; they name store types (errors, ids) but
/// call no store method themselves (`app.store.read(…)`, or the method on the next line).
#[test]
fn the_http_edge_calls_use_cases_not_the_store() {
    let mut problems = Vec::new();
    for s in sources().iter().filter(|s| s.module == HTTP) {
        for (i, (n, line)) in s.lines.iter().enumerate() {
            let next = s.lines.get(i + 1).map_or("", |(_, l)| l.trim_start());
            let calls =
                line.contains("store.") && !line.contains("store::") && !line.contains("no_store")
                    || line.trim_end().ends_with(".store") && next.starts_with('.');
            if calls {
                problems.push(format!(
                    "src/{}:{n} calls the store: {}",
                    s.path,
                    line.trim()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_check_sees_a_cycle_when_there_is_one() {
    let mut deps: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (a, b) in [
        ("store", "intake"),
        ("intake", "access"),
        ("access", "store"),
    ] {
        deps.entry(a.into())
            .or_default()
            .insert(b.into(), vec!["x".into()]);
    }
    deps.entry("fhir".into()).or_default();
    let found = cycles(&deps);
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0],
        ["access", "intake", "store"].map(String::from).into()
    );
}
