//! The orchestrator's modules depend on each other one way only; no crate
//! of the workspace (the CLI included), and no module inside the router,
//! the store or the API, has a cycle; no SQL is written outside the store.
//!
//! Every top-level module of `orchestrator/src` has a place in [`LAYERS`],
//! lowest first, and may use only modules placed before it: `store` runs
//! every statement and decides nothing, the router decides and calls the
//! store, the consumers and the API call the router. Since the order is a
//! total one, an edge against it is also the only way a cycle can form.
//!
//! `cargo test --test integration layers -- --nocapture` prints the graph.
//! References are read from the source (`crate::m`, `use crate::{m, …}`,
//! `super::m` at the top level), skipping comments and the `#[cfg(test)]`
//! module at the end of a file, whose imports are the test's business.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The orchestrator's top-level modules, lowest layer first.
const LAYERS: &[&str] = &[
    // leaves: errors, what clients send, the embedding model
    "error",
    "request",
    "embed",
    // every statement and row type
    "store",
    // domain logic over the store
    "collections",
    "rag",
    "planner",
    // every decision
    "router",
    // NATS, the consumers and the sampler
    "bus",
    "outbox",
    "dead",
    "results",
    "metrics",
    // HTTP
    "api",
];

/// The crate modules `text` (one file of module `top`) refers to.
fn references(text: &str, top: &str, top_level_file: bool) -> BTreeSet<String> {
    let code: String = text
        .split("\n#[cfg(test)]")
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    let mut take = |name: &str| {
        if !name.is_empty() && name != top && name != "self" {
            out.insert(name.to_string());
        }
    };
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut prefixes = vec!["crate::"];
    if top_level_file {
        prefixes.push("super::");
    }
    for prefix in prefixes {
        for (i, _) in code.match_indices(prefix) {
            let rest = &code[i + prefix.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a, b::c, d}` (nested braces only go deeper).
                let mut depth = 0;
                let mut item = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            take(&ident(item.trim()));
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    if depth == 0 || item.trim().is_empty() {
                        item.push(c);
                    }
                }
                take(&ident(item.trim()));
            } else {
                take(&ident(rest));
            }
        }
    }
    out
}

/// What the crate root re-exports (`pub use error::{Error, Result};`):
/// item name → the module it comes from.
fn root_exports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stmt in lib.split(';').filter_map(|s| s.trim().strip_prefix("pub use ")) {
        let Some((module, items)) = stmt.split_once("::") else {
            continue;
        };
        let items = items.trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            let name = item.split(" as ").last().unwrap_or_default().trim();
            out.insert(name.to_string(), module.trim().to_string());
        }
    }
    out
}

/// Every `.rs` file under `dir`.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The graph: each top-level module and the crate modules it uses.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut paths = Vec::new();
    files(src, &mut paths);
    let root = ["lib.rs", "main.rs"]
        .map(|f| src.join(f))
        .into_iter()
        .find(|p| p.exists());
    let exports = root_exports(&std::fs::read_to_string(root.expect("a crate root")).unwrap());
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in paths {
        let rel = path.strip_prefix(src).unwrap();
        let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let top = parts[0].trim_end_matches(".rs").to_string();
        if top == "lib" || top == "main" {
            continue; // the crate root wires everything together
        }
        // `m.rs` and `m/mod.rs` are module `m`, whose `super` is the crate.
        let top_level_file = parts.len() == 1 || (parts.len() == 2 && parts[1] == "mod.rs");
        let text = std::fs::read_to_string(&path).unwrap();
        // `crate::Result` is the crate root's re-export of `error::Result`.
        let uses = references(&text, &top, top_level_file)
            .into_iter()
            .map(|r| exports.get(&r).cloned().unwrap_or(r))
            .filter(|r| *r != top);
        graph.entry(top.clone()).or_default().extend(uses);
    }
    graph
}

#[test]
fn orchestrator_modules_depend_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("orchestrator/src");
    let graph = module_graph(&src);
    let place = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut wrong = Vec::new();
    for (module, uses) in &graph {
        let uses: Vec<&str> = uses.iter().map(String::as_str).collect();
        println!("{module:>12} → {}", uses.join(", "));
        let Some(at) = place(module) else {
            wrong.push(format!("`{module}` has no place in LAYERS (tests/layers.rs)"));
            continue;
        };
        for u in uses {
            match place(u) {
                Some(p) if p < at => {}
                Some(_) => wrong.push(format!("`{module}` uses `{u}`, which sits at or above it")),
                None => wrong.push(format!("`{module}` uses `{u}`, which has no place in LAYERS")),
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

/// The graph of the modules inside module `parent` (a directory `dir`):
/// each child and the siblings it uses (`crate::<parent>::x`, or `super::x`
/// in a child's own file, `super::super::x` one level further down).
fn inner_graph(dir: &Path, parent: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut paths = Vec::new();
    files(dir, &mut paths);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in paths {
        let parts: Vec<String> = path
            .strip_prefix(dir)
            .unwrap()
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let child = parts[0].trim_end_matches(".rs").to_string();
        if child == "mod" {
            continue; // the parent itself
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("\n#[cfg(test)]").next().unwrap_or_default();
        // How `super` reaches the parent from this file.
        let up = if parts.len() == 1 || parts[parts.len() - 1] == "mod.rs" && parts.len() == 2 {
            "super::"
        } else {
            "super::super::"
        };
        let crate_path = format!("crate::{parent}::");
        let mut uses = BTreeSet::new();
        for prefix in [crate_path.as_str(), up] {
            let code = if prefix == up && up == "super::" {
                code.replace("super::super::", "")
            } else {
                code.to_string()
            };
            uses.extend(references(&code.replace(prefix, "crate::"), &child, false));
        }
        let siblings: BTreeSet<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        graph.entry(child.clone()).or_default().extend(
            uses.into_iter()
                .filter(|u| siblings.contains(u) && *u != child && u != "mod"),
        );
    }
    graph
}

/// The cycles of `graph`, each as `a → b → … → a` (one per strongly
/// connected group found by a depth-first search).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut ring = path[at..].to_vec();
            ring.push(n.to_string());
            out.push(ring.join(" → "));
            return;
        }
        if !done.insert(n.to_string()) {
            return;
        }
        path.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            visit(m, graph, path, done, out);
        }
        path.pop();
    }
    let (mut done, mut out) = (BTreeSet::new(), Vec::new());
    for n in graph.keys() {
        visit(n, graph, &mut Vec::new(), &mut done, &mut out);
    }
    out
}

#[test]
fn no_crate_and_no_inner_module_has_a_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for dir in ["src", "orchestrator/src", "worker/src", "shared/src", "runtime/src"] {
        let graph = module_graph(&root.join(dir));
        found.extend(cycles(&graph).into_iter().map(|c| format!("{dir}: {c}")));
    }
    for (dir, parent) in [
        ("orchestrator/src/router", "router"),
        ("orchestrator/src/store", "store"),
        ("orchestrator/src/api", "api"),
    ] {
        let graph = inner_graph(&root.join(dir), parent);
        println!("{parent}: {graph:?}");
        found.extend(cycles(&graph).into_iter().map(|c| format!("{dir}: {c}")));
    }
    assert!(found.is_empty(), "module cycles:\n{}", found.join("\n"));
    let ring: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a")]
        .map(|(x, y)| (x.to_string(), BTreeSet::from([y.to_string()])))
        .into();
    assert_eq!(cycles(&ring), ["a → b → c → a"]);
}

#[test]
fn references_are_read_from_paths_and_use_groups() {
    let text = "use crate::error::Result;\nuse crate::{store::{self, Conn}, bus};\n// crate::api in a comment\n\
                fn f() { crate::metrics::record(); }\n#[cfg(test)]\nmod tests { use crate::api; }\n";
    let refs: Vec<String> = references(text, "router", false).into_iter().collect();
    assert_eq!(refs, ["bus", "error", "metrics", "store"]);
    let refs: Vec<String> = references("use super::x::Y;", "store", true).into_iter().collect();
    assert_eq!(refs, ["x"]);
    let exports = root_exports("pub mod api;\npub use error::{Error, Result};\npub use a::b as C;");
    assert_eq!(exports["Result"], "error");
    assert_eq!(exports["C"], "a");
}

/// A call that runs SQL: `sqlx::query(…)`, `query_as`, `query_scalar`,
/// `raw_sql`, turbofished or not.
fn runs_sql(code: &str) -> bool {
    ["query", "query_as", "query_scalar", "raw_sql"].iter().any(|f| {
        code.match_indices(&format!("sqlx::{f}")).any(|(at, m)| {
            let rest = &code[at + m.len()..];
            rest.starts_with('(') || rest.starts_with("::<")
        })
    })
}

#[test]
fn no_sql_is_written_outside_the_store() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let store = root.join("orchestrator/src/store");
    let mut paths = Vec::new();
    for dir in ["src", "orchestrator/src", "worker/src", "shared/src", "runtime/src"] {
        files(&root.join(dir), &mut paths);
    }
    let outside: Vec<String> = paths
        .iter()
        .filter(|p| !p.starts_with(&store))
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            // A file's own tests may set up rows as they like.
            runs_sql(text.split("\n#[cfg(test)]").next().unwrap_or_default())
        })
        .map(|p| p.strip_prefix(root).unwrap().display().to_string())
        .collect();
    assert!(outside.is_empty(), "SQL outside orchestrator/src/store: {outside:?}");
    assert!(runs_sql("sqlx::query_scalar::<_, i64>(\"SELECT 1\")") && runs_sql("sqlx::query(\"x\")"));
    assert!(!runs_sql("RUST_LOG=sqlx::query=debug") && !runs_sql(".matches(\"sqlx::query\")"));
}

/// The store returns records; what a response shows of them and its OpenAPI
/// schema are the API's (`api/views.rs`), so no store module names `utoipa`.
#[test]
fn response_shapes_are_the_apis_not_the_stores() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    files(&root.join("orchestrator/src/store"), &mut paths);
    let with_schema: Vec<String> = paths
        .iter()
        .filter(|p| std::fs::read_to_string(p).unwrap().contains("utoipa"))
        .map(|p| p.strip_prefix(root).unwrap().display().to_string())
        .collect();
    assert!(paths.len() > 5, "{paths:?}");
    assert!(with_schema.is_empty(), "OpenAPI schemas in the store: {with_schema:?}");
}

/// Crates of this workspace that do I/O (network, processes, files as a
/// service, exporters): none may be a dependency of `upshift-shared`.
const IO_CRATES: &[&str] = &[
    "async-nats",
    "axum",
    "hyper",
    "hyper-util",
    "llama-cpp-2",
    "metrics-exporter-prometheus",
    "nix",
    "opentelemetry-otlp",
    "opentelemetry_sdk",
    "reqwest",
    "sqlx",
    "tokio",
    "tokio-util",
    "tower-http",
    "tracing-subscriber",
];

#[test]
fn shared_has_no_io_dependency() {
    // `cargo metadata` lists every declared dependency, optional ones too.
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo metadata");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shared = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "upshift-shared")
        .expect("upshift-shared is a workspace member");
    let deps: Vec<&str> = shared["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    println!("upshift-shared depends on: {}", deps.join(", "));
    let io: Vec<&&str> = deps.iter().filter(|d| IO_CRATES.contains(d)).collect();
    assert!(io.is_empty(), "upshift-shared must stay pure; it depends on {io:?}");
}
