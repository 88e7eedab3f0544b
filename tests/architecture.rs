//! The layers hold: no module of `src/` reaches, through `crate::` or `super::` paths, a
//! module that reaches back to it (no import circles, tests excluded). Read from the
//! sources, so it needs no build of anything but this test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`projection::profile`) of every `.rs` file under `dir`.
fn modules(dir: &Path, root: &Path, out: &mut BTreeMap<String, PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            modules(&p, root, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            if parts.first().map(String::as_str) == Some("bin") {
                continue;
            }
            out.insert(parts.join("::"), p);
        }
    }
}

/// The source without comments and without its `#[cfg(test)]` part (tests may use
/// anything).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path that starts with `crate::` or `super::`, as a module path from the crate root
/// (`use` groups `{a, b::c}` expanded one level).
fn referenced_paths(code: &str, module: &str) -> Vec<String> {
    let mut out = Vec::new();
    let parent: Vec<&str> = {
        let mut v: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
        v.pop();
        v
    };
    for (kw, base) in [("crate::", Vec::new()), ("super::", parent)] {
        let mut rest = code;
        while let Some(i) = rest.find(kw) {
            let before_ok = rest[..i].chars().last().is_none_or(|c| !is_ident(c));
            let tail = &rest[i + kw.len()..];
            rest = tail;
            if !before_ok {
                continue;
            }
            let path: String = tail
                .chars()
                .take_while(|&c| is_ident(c) || c == ':')
                .collect();
            let path = path.trim_end_matches(':');
            let prefix: Vec<String> = base
                .iter()
                .map(|s| s.to_string())
                .chain(path.split("::").filter(|s| !s.is_empty()).map(String::from))
                .collect();
            let after = &tail[path.len()..];
            let group = after
                .strip_prefix("::{")
                .or_else(|| after.strip_prefix('{'));
            if let Some(group) = group {
                for first in group_items(group) {
                    let mut p = prefix.clone();
                    p.push(first.to_string());
                    out.push(p.join("::"));
                }
            }
            out.push(prefix.join("::"));
        }
    }
    out
}

/// First segment of each item of a `use` group, `text` starting just after its `{`:
/// `card::{self, X}, config}` gives `card`, `config`.
fn group_items(text: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&text[start..i]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items
        .into_iter()
        .filter_map(|item| {
            let first = item.trim().split("::").next()?.split_whitespace().next()?;
            (!first.is_empty() && first != "self").then_some(first)
        })
        .collect()
}

/// The longest module that `path` names or lies inside.
fn resolve<'a>(path: &str, mods: &'a BTreeMap<String, PathBuf>) -> Option<&'a str> {
    let segs: Vec<&str> = path.split("::").collect();
    (1..=segs.len()).rev().find_map(|n| {
        mods.get_key_value(&segs[..n].join("::"))
            .map(|(k, _)| k.as_str())
    })
}

/// Module edges: `a -> b` when `a` names something in `b` (not its own ancestor).
fn edges(mods: &BTreeMap<String, PathBuf>) -> BTreeMap<&str, BTreeSet<&str>> {
    let mut g: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (m, p) in mods {
        let code = code_of(&std::fs::read_to_string(p).unwrap());
        let e = g.entry(m.as_str()).or_default();
        for path in referenced_paths(&code, m) {
            if let Some(r) = resolve(&path, mods) {
                let ancestor = m == r || m.starts_with(&format!("{r}::")) || r.is_empty();
                if !ancestor {
                    e.insert(r);
                }
            }
        }
    }
    g
}

/// One cycle of `g`, if it has any (depth-first search).
fn find_cycle<'a>(g: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Option<Vec<&'a str>> {
    fn visit<'a>(
        v: &'a str,
        g: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        state.insert(v, 1);
        stack.push(v);
        for &w in g.get(v).into_iter().flatten() {
            match state.get(w).copied().unwrap_or(0) {
                1 => {
                    let i = stack.iter().position(|&x| x == w).unwrap();
                    let mut c = stack[i..].to_vec();
                    c.push(w);
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(w, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(v, 2);
        None
    }
    let mut state = BTreeMap::new();
    for &v in g.keys() {
        if state.get(v).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(v, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut mods = BTreeMap::new();
    modules(&src, &src, &mut mods);
    assert!(mods.contains_key("projection::latency"), "{mods:?}");
    let g = edges(&mods);
    // The scanner sees real edges (so an empty graph cannot pass).
    assert!(
        g["report"].contains("measure::samples"),
        "{:?}",
        g["report"]
    );
    assert!(g["measure::samples"].contains("schema"));
    if let Some(c) = find_cycle(&g) {
        panic!("import circle: {}", c.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_a_planted_cycle() {
    let mut g: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    g.entry("a").or_default().insert("b");
    g.entry("b").or_default().insert("c");
    g.entry("c").or_default().insert("a");
    g.entry("d").or_default().insert("a");
    let c = find_cycle(&g).unwrap();
    assert_eq!(c.first(), c.last());
    assert_eq!(c.len(), 4);
    g.get_mut("c").unwrap().clear();
    assert_eq!(find_cycle(&g), None);
}

#[test]
fn paths_in_use_groups_and_super_are_resolved() {
    let got = referenced_paths(
        "use super::{card::{self, X}, config};\nlet x = crate::report::Report::new();",
        "model::load",
    );
    assert!(got.contains(&"model::card".to_string()), "{got:?}");
    assert!(got.contains(&"model::config".to_string()), "{got:?}");
    assert!(got.contains(&"report::Report::new".to_string()), "{got:?}");
}
