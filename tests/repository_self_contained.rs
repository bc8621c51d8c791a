//! The repository is all a user has: the build, the tests and the
//! benchmarks read only files inside it. This test scans the tree so that a
//! path leading outside the checkout cannot come back unnoticed, and checks
//! that every vendored data folder says where its files come from.

use std::path::{Component, Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Folders that are not part of the project's sources.
const SKIPPED: &[&str] = &["target", ".git"];

/// Every file of the project, as (path relative to the root, text). Binary
/// files are skipped: no path can hide in them that a build would follow.
fn project_files() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if !SKIPPED.contains(&name) {
                    walk(&path, out);
                }
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                let rel = path
                    .strip_prefix(ROOT)
                    .expect("inside the root")
                    .to_path_buf();
                out.push((rel, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new(ROOT), &mut out);
    assert!(
        out.iter().any(|(p, _)| p == Path::new("Cargo.toml")),
        "the scan must see the project's own files"
    );
    out
}

/// `a/b/../c` → `a/c`, without touching the file system; `None` when the
/// path climbs above its start.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

/// The first string literal in `text`, if it starts within `within` bytes.
fn first_literal(text: &str, within: usize) -> Option<&str> {
    let start = text.find('"')?;
    if start > within {
        return None;
    }
    let rest = &text[start + 1..];
    let end = rest.find('"')?;
    Some(&rest[..end])
}

#[test]
fn no_file_refers_to_the_folder_beside_the_checkout() {
    // Built from parts so that this file does not match itself.
    let needle = ["..", "/", "shared"].concat();
    let offenders: Vec<String> = project_files()
        .into_iter()
        .filter(|(_, text)| text.contains(&needle))
        .map(|(p, _)| p.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "these files refer to {needle}, which exists only beside our own checkouts: {offenders:?}"
    );
}

#[test]
fn every_path_built_from_the_manifest_dir_stays_inside_the_repository() {
    let root = Path::new(ROOT);
    let mut checked = 0;
    let mut offenders = Vec::new();
    for (file, text) in project_files() {
        if file.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        for (at, _) in text.match_indices("env!(\"CARGO_MANIFEST_DIR\")") {
            let after = &text[at + "env!(\"CARGO_MANIFEST_DIR\")".len()..];
            let Some(lit) = first_literal(after, 80) else {
                continue;
            };
            checked += 1;
            let rel = lit.trim_start_matches('/');
            let inside = normalise(Path::new(rel)).map(|p| root.join(p));
            match inside {
                Some(p) if p.exists() => {}
                Some(p) => offenders.push(format!(
                    "{}: {lit} ({} is missing)",
                    file.display(),
                    p.display()
                )),
                None => offenders.push(format!("{}: {lit} leaves the repository", file.display())),
            }
        }
        for mac in ["include_str!(\"", "include_bytes!(\""] {
            for (at, _) in text.match_indices(mac) {
                let lit = &text[at + mac.len()..];
                let lit = &lit[..lit.find('"').unwrap_or(0)];
                checked += 1;
                let base = file.parent().unwrap_or(Path::new(""));
                if normalise(&base.join(lit)).is_none() {
                    offenders.push(format!(
                        "{}: {mac}{lit} leaves the repository",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(
        checked >= 5,
        "expected to check the test data paths, checked {checked}"
    );
    assert!(
        offenders.is_empty(),
        "paths outside the repository: {offenders:#?}"
    );
}

#[test]
fn every_vendored_data_folder_names_its_sources() {
    let data = Path::new(ROOT).join("tests/data");
    for folder in ["fly", "fly-corpus"] {
        let sources = std::fs::read_to_string(data.join(folder).join("SOURCES.md"))
            .unwrap_or_else(|e| panic!("tests/data/{folder}/SOURCES.md: {e}"));
        assert!(
            sources.to_lowercase().contains("licen"),
            "tests/data/{folder}/SOURCES.md must say under which licence its files are"
        );
        let mut names = Vec::new();
        let mut stack = vec![data.join(folder)];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read vendored folder") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.file_name().is_some_and(|n| n != "SOURCES.md") {
                    let rel = path.strip_prefix(data.join(folder)).expect("inside");
                    names.push(rel.display().to_string());
                }
            }
        }
        assert!(!names.is_empty(), "tests/data/{folder} is empty");
        let unnamed: Vec<_> = names
            .iter()
            .filter(|n| !sources.contains(&format!("`{n}`")))
            .collect();
        assert!(
            unnamed.is_empty(),
            "tests/data/{folder}/SOURCES.md does not name {unnamed:?}"
        );
    }
}
