//! The shape of the code base: `host/src` has no import cycle (between its
//! top-level modules, nor between the modules of one directory), `lib.rs`'s
//! module map names every module, and the README's layout table
//! matches the tree.
//!
//! The import graph is read from the source text: every `crate::a::b` path (in
//! `use` items or inline) and every `super::x` path, resolved to the modules
//! that exist as files. A parent and its own children may use each other (a
//! `mod.rs` re-exports its children); siblings and top-level modules may not
//! form a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn host_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, with its module path (`["plugin", "reload"]`).
fn modules(dir: &Path, prefix: &[String], out: &mut Vec<(Vec<String>, PathBuf)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read host/src")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("file name")
            .to_owned();
        if p.is_dir() {
            let mut sub = prefix.to_vec();
            sub.push(name);
            modules(&p, &sub, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let mut path = prefix.to_vec();
            if !matches!(name.as_str(), "mod" | "lib" | "main") {
                path.push(name);
            }
            out.push((path, p));
        }
    }
}

/// Identifiers after `crate::` or `super::` at each occurrence: `a::b` and the
/// first identifier of each item of a `{…}` group that follows.
fn paths_after(text: &str, anchor: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(anchor) {
        let before = rest[..i].chars().last();
        rest = &rest[i + anchor.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        found.extend(expand(rest));
    }
    found
}

/// `a::b::c`, `a::{b, c::d}`, `{a, b::c}` → `[a, b]`, `[a, b]`/`[a, c]`, `[a]`/`[b, c]`.
fn expand(s: &str) -> Vec<Vec<String>> {
    let ident: String = s
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if ident.is_empty() {
        if let Some(group) = s.strip_prefix('{') {
            return group_items(group)
                .into_iter()
                .flat_map(|item| expand(item.trim()))
                .collect();
        }
        return Vec::new();
    }
    let after = &s[ident.len()..];
    let Some(next) = after.strip_prefix("::") else {
        return vec![vec![ident]];
    };
    let tails = expand(next);
    if tails.is_empty() {
        return vec![vec![ident]];
    }
    let mut out: Vec<Vec<String>> = Vec::new();
    for t in tails {
        let mut v = vec![ident.clone()];
        v.extend(t.into_iter().take(1));
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// The items of a brace group, split at depth-1 commas, up to its closing brace.
fn group_items(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut items) = (0, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&s[start..i]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items
}

/// Source text without comments (doc comments name modules without using them).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The import graph between modules, as module paths.
fn import_graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut files = Vec::new();
    modules(&host_src(), &[], &mut files);
    let known: BTreeSet<Vec<String>> = files.iter().map(|(m, _)| m.clone()).collect();
    // The longest known module a path names.
    let resolve = |path: &[String]| -> Option<Vec<String>> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| known.contains(p))
    };
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, file) in &files {
        let text = code_of(&std::fs::read_to_string(file).expect("read source"));
        let parent: Vec<String> = module[..module.len().saturating_sub(1)].to_vec();
        let mut targets = Vec::new();
        for p in paths_after(&text, "crate::") {
            targets.extend(resolve(&p));
        }
        // `super::` is the module one level up, for `foo/mod.rs` and `foo/bar.rs` alike
        // (a `mod.rs` file's module path already leaves `mod` out).
        for p in paths_after(&text, "super::") {
            let mut full = parent.clone();
            full.extend(p);
            targets.extend(resolve(&full));
        }
        let edges = graph.entry(module.clone()).or_default();
        for t in targets {
            if &t != module {
                edges.insert(t);
            }
        }
    }
    graph
}

/// A cycle among `nodes` under `edge`, if there is one.
fn find_cycle<N: Ord + Clone + std::fmt::Debug>(
    nodes: &BTreeSet<N>,
    edge: &dyn Fn(&N, &N) -> bool,
) -> Option<Vec<N>> {
    fn visit<N: Ord + Clone>(
        n: &N,
        nodes: &BTreeSet<N>,
        edge: &dyn Fn(&N, &N) -> bool,
        stack: &mut Vec<N>,
        done: &mut BTreeSet<N>,
    ) -> Option<Vec<N>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(n.clone());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.clone());
        for m in nodes {
            if edge(n, m)
                && let Some(c) = visit(m, nodes, edge, stack, done)
            {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.clone());
        None
    }
    let mut done = BTreeSet::new();
    for n in nodes {
        if let Some(c) = visit(n, nodes, edge, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn host_src_has_no_import_cycle() {
    let graph = import_graph();
    assert!(
        graph.len() > 30,
        "the module scan found only {} modules",
        graph.len()
    );
    // Between top-level modules (the crate root, which only re-exports, aside).
    let top = |m: &Vec<String>| m.first().cloned();
    let tops: BTreeSet<String> = graph.keys().filter_map(top).collect();
    let top_edge = |a: &String, b: &String| {
        a != b
            && graph.iter().any(|(from, to)| {
                top(from).as_ref() == Some(a) && to.iter().any(|t| top(t).as_ref() == Some(b))
            })
    };
    if let Some(c) = find_cycle(&tops, &top_edge) {
        panic!("import cycle between top-level modules: {}", c.join(" → "));
    }
    // Between the modules of each directory (a parent and its children aside).
    let siblings_under = |parent: &[String]| -> BTreeSet<Vec<String>> {
        graph
            .keys()
            .filter(|m| m.len() == parent.len() + 1 && m.starts_with(parent))
            .cloned()
            .collect()
    };
    for parent in graph.keys() {
        let sibs = siblings_under(parent);
        if sibs.len() < 2 {
            continue;
        }
        let edge = |a: &Vec<String>, b: &Vec<String>| {
            graph.iter().any(|(from, to)| {
                from.starts_with(a) && to.iter().any(|t| t.starts_with(b) && !t.starts_with(a))
            })
        };
        if let Some(c) = find_cycle(&sibs, &edge) {
            let shown: Vec<String> = c.iter().map(|m| m.join("::")).collect();
            panic!(
                "import cycle inside {}: {}",
                parent.join("::"),
                shown.join(" → ")
            );
        }
    }
}

#[test]
fn the_scan_sees_a_cycle_when_there_is_one() {
    // The parser itself: grouped and nested `use` items resolve as they should.
    assert_eq!(
        expand("telemetry::{events::{A, B}, Untrusted};"),
        vec![
            vec!["telemetry".to_owned(), "events".to_owned()],
            vec!["telemetry".to_owned(), "Untrusted".to_owned()]
        ]
    );
    let nodes: BTreeSet<u8> = [1, 2, 3].into();
    assert_eq!(
        find_cycle(&nodes, &|a, b| (*a, *b) == (1, 2)
            || (*a, *b) == (2, 3)
            || (*a, *b) == (3, 1)),
        Some(vec![1, 2, 3, 1])
    );
    assert_eq!(find_cycle(&nodes, &|a, b| a < b), None);
}

#[test]
fn the_module_map_names_every_module() {
    let lib = std::fs::read_to_string(host_src().join("lib.rs")).expect("lib.rs");
    let map: String = lib
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    for l in lib.lines() {
        if let Some(name) = l.strip_prefix("pub mod ").and_then(|r| r.strip_suffix(';')) {
            assert!(
                map.contains(&format!("[`{name}`]")),
                "lib.rs's module map does not name `{name}`:\n{map}"
            );
        }
    }
}

#[test]
fn the_readme_layout_table_matches_the_tree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let table = readme
        .split("## Layout")
        .nth(1)
        .expect("a Layout section")
        .split("\n## ")
        .next()
        .unwrap_or("");
    let mut named = BTreeSet::new();
    for cell in table.lines().filter(|l| l.starts_with("| `")) {
        let first = cell.split(" | ").next().unwrap_or("");
        for path in first.split('`').skip(1).step_by(2) {
            named.insert(path.trim_end_matches('/').to_owned());
        }
    }
    for p in &named {
        assert!(
            root.join(p).exists(),
            "the layout table names `{p}`, which is not in the tree"
        );
    }
    let list = |dir: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(root.join(dir))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let mut must = Vec::new();
    for top in list(".") {
        if !matches!(top.as_str(), "target" | "Cargo.lock" | "README.md") {
            must.push(top);
        }
    }
    for dir in ["plugins", "docs", "contrib"] {
        must.extend(list(dir).into_iter().map(|n| format!("{dir}/{n}")));
    }
    for dir in ["host", "plugin-sdk"] {
        for n in list(dir) {
            let p = root.join(dir).join(&n);
            if p.is_dir() && n != "src" {
                must.push(format!("{dir}/{n}"));
            }
        }
    }
    for m in must {
        let m = m.trim_end_matches(".md").to_owned();
        assert!(
            named
                .iter()
                .any(|n| n.trim_end_matches(".md") == m || n.starts_with(&format!("{m}/"))),
            "`{m}` is in the tree but not in the README's layout table"
        );
    }
}
