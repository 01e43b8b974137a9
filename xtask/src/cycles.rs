//! Import cycles between the modules (files) of a crate, and library
//! modules that import command modules.
//!
//! Written here rather than taken from `cargo-modules` (which has an
//! `--acyclic` check) because that tool builds rust-analyzer's crates, many
//! minutes on a fresh 2-core machine, for what is a text scan: every
//! `use` tree and every inline `crate::`/`super::` path of a file names the
//! modules it imports; a path resolves to the deepest module it names.
//!
//! A child module naming its own ancestor (`super::X`, or `crate::a::X`
//! inside `a/b.rs`) is not an edge: a folder's `mod.rs` is its facade, and
//! re-exporting children from it while they use its items is normal Rust.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// One module: its path inside the crate (`capture::cli`), and its file.
#[derive(Clone, Debug)]
struct Module {
    path: String,
    file: PathBuf,
}

/// Every `.rs` module file below `src`, except binary entry points.
fn modules(src: &Path) -> Vec<Module> {
    let mut files = Vec::new();
    collect(src, &mut files);
    files
        .into_iter()
        .filter_map(|file| {
            let rel = file.strip_prefix(src).ok()?.with_extension("");
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let path = match parts.as_slice() {
                [only] if only == "main" => return None,
                [only] if only == "lib" => String::new(),
                [dirs @ .., last] if last == "mod" => dirs.join("::"),
                all => all.join("::"),
            };
            Some(Module { path, file })
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.map_while(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Source text without comments (line comments and doc comments), so
/// paths named in prose are not imports, and without the unit-test module
/// at the end (tests may drive the command line; they are not library
/// code).
fn code_of(text: &str) -> String {
    let text = text
        .find("#[cfg(test)]\nmod tests")
        .map_or(text, |at| &text[..at]);
    text.lines()
        .map(|l| match l.find("//") {
            Some(at) if !l[..at].contains('"') => &l[..at],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The full paths a `use` tree names: `crate::{a::B, c::{d, e}}` gives
/// `crate::a::B`, `crate::c::d`, `crate::c::e`.
fn expand_use_tree(tree: &str) -> Vec<String> {
    // Drop renames (`x as y`): the module is what counts.
    let mut words = tree.split_whitespace().peekable();
    let mut tree = String::new();
    while let Some(w) = words.next() {
        if w == "as" {
            let renamed = words.next().unwrap_or("");
            tree.push_str(renamed.trim_start_matches(|c: char| c.is_alphanumeric() || c == '_'));
        } else {
            tree.push_str(w);
        }
    }
    let mut out = Vec::new();
    expand(&tree, "", &mut out);
    out
}

fn expand(tree: &str, prefix: &str, out: &mut Vec<String>) {
    match tree.find('{') {
        None => out.push(format!("{prefix}{tree}")),
        Some(open) => {
            let head = &tree[..open];
            let inner = tree[open + 1..]
                .strip_suffix('}')
                .unwrap_or(&tree[open + 1..]);
            for part in split_top_level(inner) {
                if part.is_empty() {
                    continue;
                }
                expand(part, &format!("{prefix}{head}"), out);
            }
        }
    }
}

/// Splits at commas that are not inside braces.
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Every path starting with `crate::`, `super::` or `self::` in the code:
/// the expanded `use` trees and the inline paths.
fn named_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = find_use(rest) {
        let after = &rest[at..];
        let Some(end) = after.find(';') else { break };
        let tree = after["use ".len()..end].trim();
        paths.extend(expand_use_tree(tree));
        rest = &after[end..];
    }
    for (i, _) in code.match_indices("::") {
        // The path segment before `::` and everything after it.
        let start = code[..i]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |p| p + 1);
        let first = &code[start..i];
        if matches!(first, "crate" | "super" | "self") || first.starts_with("super::") {
            let end = code[i..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |p| i + p);
            paths.push(code[start..end].to_string());
        }
    }
    paths
}

/// Where the next `use` statement starts (`use` or `pub use` at a word
/// boundary).
fn find_use(code: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = code[from..].find("use ") {
        let at = from + i;
        let before = code[..at].chars().next_back();
        if before.is_none_or(|c| c.is_whitespace() || c == ';' || c == '{' || c == ')') {
            return Some(at);
        }
        from = at + 4;
    }
    None
}

/// The module path a named path lands in, seen from module `from`; None
/// for paths outside the crate.
fn resolve(path: &str, from: &str, known: &BTreeSet<String>) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    // The module `self` means, as a list of segments.
    let mut base: Vec<&str> = if from.is_empty() {
        Vec::new()
    } else {
        from.split("::").collect()
    };
    match segments.first() {
        Some(&"crate") => {
            base.clear();
            segments.remove(0);
        }
        Some(&"self") => {
            segments.remove(0);
        }
        Some(&"super") => {
            // In `a/b.rs` (module a::b) `super` is `a`; in `a/mod.rs`
            // (module a) it is a's parent.
            while segments.first() == Some(&"super") {
                segments.remove(0);
                base.pop();
            }
        }
        _ => return None,
    }
    let mut full: Vec<&str> = base;
    full.extend(segments);
    // The deepest known module that the path names.
    (0..=full.len())
        .rev()
        .map(|n| full[..n].join("::"))
        .find(|candidate| known.contains(candidate))
}

fn is_ancestor(ancestor: &str, of: &str) -> bool {
    ancestor.is_empty() || of.starts_with(&format!("{ancestor}::"))
}

/// Import edges between the modules of the crate in `src`: from a module
/// to the modules it names, each with one path that shows it.
fn edges(src: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let mods = modules(src);
    let known: BTreeSet<String> = mods.iter().map(|m| m.path.clone()).collect();
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for m in &mods {
        let text = fs::read_to_string(&m.file).unwrap_or_default();
        let entry = graph.entry(m.path.clone()).or_default();
        for p in named_paths(&code_of(&text)) {
            let Some(target) = resolve(&p, &m.path, &known) else {
                continue;
            };
            if target == m.path || is_ancestor(&target, &m.path) {
                continue;
            }
            entry.entry(target).or_insert(p);
        }
    }
    graph
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeMap<String, String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flat_map(|e| e.keys()) {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(lw));
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// Every problem in the crate at `src`, one line each: import cycles (with
/// the paths that close them) and library modules importing a module of
/// `commands` (or one below it).
pub fn problems(src: &Path, commands: &[&str]) -> Vec<String> {
    let graph = edges(src);
    let mut out = Vec::new();
    for component in cycles(&graph) {
        let members: BTreeSet<&str> = component.iter().map(String::as_str).collect();
        let mut why = Vec::new();
        for from in &component {
            for (to, path) in graph.get(from).into_iter().flatten() {
                if members.contains(to.as_str()) {
                    why.push(format!("{from} -> {to} ({path})"));
                }
            }
        }
        out.push(format!(
            "{}: import cycle between {}: {}",
            src.display(),
            component.join(", "),
            why.join("; ")
        ));
    }
    let is_command = |m: &str| {
        commands
            .iter()
            .any(|c| m == *c || m.starts_with(&format!("{c}::")))
    };
    for (from, targets) in &graph {
        if is_command(from) {
            continue;
        }
        for (to, path) in targets {
            if is_command(to) {
                out.push(format!(
                    "{}: library module `{from}` imports command module `{to}` ({path})",
                    src.display()
                ));
            }
        }
    }
    out
}

/// The workspace's own crates: no import cycles, and library modules of
/// the agent never import its commands.
pub fn check_workspace(root: &Path) -> anyhow::Result<()> {
    let mut all = Vec::new();
    for (src, commands) in [
        ("agent/src", COMMAND_MODULES),
        ("agent-common/src", &[][..]),
        ("agent-ebpf/src", &[][..]),
    ] {
        all.extend(problems(&root.join(src), commands));
    }
    if all.is_empty() {
        return Ok(());
    }
    anyhow::bail!("module imports to untangle:\n{}", all.join("\n"))
}

/// The agent's command modules (`agent/src/cmd`: the command line and the
/// `nta` subcommands). Library modules never import these.
pub const COMMAND_MODULES: &[&str] = &["cmd"];

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        crate::util::workspace_root()
    }

    #[test]
    fn use_trees_expand_to_full_paths() {
        assert_eq!(
            expand_use_tree("crate::{a::B, c::{d, e as f}, g}"),
            vec!["crate::a::B", "crate::c::d", "crate::c::e", "crate::g"]
        );
    }

    #[test]
    fn a_cycle_and_a_command_import_are_found() {
        let dir = std::env::temp_dir().join(format!("nta-cycles-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("cmd")).unwrap_or_else(|e| panic!("{e}"));
        let write = |p: &str, t: &str| fs::write(dir.join(p), t).unwrap_or_else(|e| panic!("{e}"));
        write("lib.rs", "pub mod a; pub mod b; pub mod c; pub mod cmd;");
        write(
            "a.rs",
            "use crate::b::Thing;\n// crate::c::Nothing in prose\n",
        );
        write("b.rs", "use crate::{c::{self, X}};\n");
        write("c.rs", "fn f() { let _ = super::a::g(); }\n");
        write("cmd/mod.rs", "pub mod run; use crate::a::B;");
        write("cmd/run.rs", "use super::Facade; pub fn run() {}");
        write("d.rs", "");
        write("lonely.rs", "use crate::cmd::run::run;");
        let found = problems(&dir, &["cmd"]);
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found[0].contains("import cycle between a, b, c"),
            "{}",
            found[0]
        );
        assert!(
            found[1].contains("library module `lonely` imports command module `cmd::run`"),
            "{}",
            found[1]
        );
    }

    #[test]
    fn the_workspace_has_no_import_cycles() {
        if let Err(e) = check_workspace(&root()) {
            panic!("{e:#}");
        }
    }
}
