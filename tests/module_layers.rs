//! Layers point one way. This test reads `src/`, lists which top-level
//! module uses which (`crate::x` paths, and `super::x` from a module whose
//! parent is the crate), and fails on a cycle among them, naming it. It
//! also keeps `render` free of clap and the file provider to itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The top-level module a file belongs to (`provider` for
/// `src/provider/fly/mod.rs`), `None` for the crate roots.
fn top_module(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// The text without comments and without `#[cfg(test)]` items: tests may
/// reach anywhere, production code may not.
fn production_code(text: &str) -> String {
    let without_comments: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = String::new();
    let mut rest = without_comments.as_str();
    while let Some(i) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..i]);
        rest = skip_item(&rest[i..]);
    }
    out.push_str(rest);
    out
}

/// `text` after the item it starts with: up to the first `;` at depth 0 or
/// the `}` closing the first `{`.
fn skip_item(text: &str) -> &str {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return &text[i + 1..];
                }
            }
            ';' if depth == 0 => return &text[i + 1..],
            _ => {}
        }
    }
    ""
}

/// The first path segments after each occurrence of `prefix` (`crate::`):
/// `a` for `crate::a::b`, and `a`, `b` for `crate::{a::x, b}`.
fn segments_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices(prefix) {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut item = String::new();
            let mut first_of_item = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        first_of_item = true;
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 && first_of_item {
                    if c.is_alphanumeric() || c == '_' {
                        item.push(c);
                    } else if !item.is_empty() {
                        out.insert(std::mem::take(&mut item));
                        first_of_item = false;
                    }
                }
            }
            if !item.is_empty() {
                out.insert(item);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// Top-level module → the top-level modules its production code uses.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(SRC);
    let files = rust_files(src);
    let tops: BTreeSet<String> = files
        .iter()
        .filter_map(|f| top_module(f.strip_prefix(src).expect("inside src")))
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(src).expect("inside src");
        let Some(top) = top_module(rel) else { continue };
        let text = std::fs::read_to_string(file).expect("readable source");
        let code = production_code(&text);
        let mut used = segments_after(&code, "crate::");
        // `super::` is the crate in `src/x.rs` and `src/x/mod.rs`.
        let parent_is_crate =
            rel.components().count() == 1 || rel.ends_with(format!("{top}/mod.rs"));
        if parent_is_crate {
            used.extend(segments_after(&code, "super::"));
        }
        let entry = graph.entry(top.clone()).or_default();
        entry.extend(used.into_iter().filter(|m| *m != top && tops.contains(m)));
    }
    graph
}

/// A cycle of the graph, as the modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn top_level_modules_form_no_cycle() {
    let graph = module_graph();
    assert!(
        graph.len() > 10,
        "the scan found too few modules: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        let edges: Vec<String> = graph
            .iter()
            .map(|(m, uses)| {
                format!(
                    "  {m} -> {}",
                    uses.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            })
            .collect();
        panic!(
            "the top-level modules form a cycle: {}\n{}",
            cycle.join(" -> "),
            edges.join("\n")
        );
    }
}

#[test]
fn the_scan_sees_uses_through_groups_and_super() {
    let code = "use crate::{a::X, b};\nuse super::c;\nfn f() { crate::d::g(); my_crate::e(); }";
    let got = segments_after(code, "crate::");
    assert_eq!(got, BTreeSet::from(["a", "b", "d"].map(String::from)));
    assert_eq!(
        segments_after(code, "super::"),
        BTreeSet::from(["c".to_string()])
    );
    let cyclic = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert_eq!(
        find_cycle(&cyclic),
        Some(["a", "b", "a"].map(String::from).to_vec())
    );
    let test_only = "fn f() {}\n#[cfg(test)]\nmod tests { use crate::x; }\nuse crate::y;";
    assert_eq!(
        segments_after(&production_code(test_only), "crate::"),
        BTreeSet::from(["y".to_string()])
    );
}

#[test]
fn render_knows_nothing_of_clap() {
    let text = std::fs::read_to_string(Path::new(SRC).join("render.rs")).expect("render.rs");
    assert!(
        !production_code(&text).contains("clap"),
        "src/render.rs uses clap: its command-line side belongs in src/cli/args.rs"
    );
}

#[test]
fn production_code_does_not_borrow_from_the_file_provider() {
    let src = Path::new(SRC);
    // The command line opens the file provider for `--live`; nothing else
    // may reach into it.
    let allowed = [Path::new("provider/file.rs"), Path::new("cli/mod.rs")];
    let mut offenders = Vec::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).expect("inside src");
        if allowed.contains(&rel) {
            continue;
        }
        let code = production_code(&std::fs::read_to_string(&file).expect("readable"));
        if code.contains("provider::file") || code.contains("super::file::") {
            offenders.push(rel.display().to_string());
        }
    }
    assert!(
        offenders.is_empty(),
        "production code uses the file provider: {offenders:?}"
    );
}
