//! Every program the workspace starts is in the one table of external
//! programs (`lab/src/programs.rs`), so that `cargo xtask setup` installs it
//! on a fresh machine, and none is started past that table.
//!
//! The sources are read as text. Two kinds of call name a program:
//! - `Command::new("...")` with a literal: never allowed outside the table
//!   module; a program is started through `nta_lab::programs::command` (or
//!   the helpers built on it), which checks the table at run time;
//! - the helpers themselves with a literal program name (`command`,
//!   `require`, `installed`, `in_netns`, `bounded`, `available_for`,
//!   `attack`, xtask's `program`, the lab's `run` and `exec`): the name
//!   must be in the table. (A slice handed to a local closure is not seen
//!   here; the helpers check it when the test runs.)
//!
//! Programs of the Debian base system (packages of priority `required`,
//! which every Debian has: coreutils, util-linux, mount, dpkg, debconf,
//! apt) are in the table too, marked `Base`, so the rule has no exception.

use std::path::{Path, PathBuf};

use nta_lab::programs::lookup;
use regex::Regex;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("lab has no parent directory"))
}

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.map_while(Result::ok) {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            rust_sources(&path, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// A program named in a source file, with where it was found.
struct Use {
    place: String,
    call: String,
    program: String,
    literal_command: bool,
}

fn uses_in(text: &str, place: &str) -> Vec<Use> {
    // `program` is xtask's helper; `.program(` is aya's program lookup.
    let direct = Regex::new(
        r#"(Command::new|\bcommand|\brequire|\binstalled|\brun|\bexec|(?:^|[^.\w])program)\(\s*"([^"]+)""#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let second =
        Regex::new(r#"\b(in_netns|available_for|bounded|attack)\([^,()]*,\s*&?\[?\s*"([^"]+)""#)
            .unwrap_or_else(|e| panic!("{e}"));
    let mut found = Vec::new();
    for re in [&direct, &second] {
        for c in re.captures_iter(text) {
            let (Some(all), Some(call), Some(program)) = (c.get(0), c.get(1), c.get(2)) else {
                continue;
            };
            // clap's `Command::new("name")` names a command line, not a
            // program.
            if text[..all.start()].ends_with("clap::") {
                continue;
            }
            let line = text[..all.start()].lines().count().max(1);
            found.push(Use {
                place: format!("{place}:{line}"),
                call: call
                    .as_str()
                    .trim_start_matches(|c: char| !c.is_alphabetic())
                    .to_string(),
                program: program.as_str().to_string(),
                literal_command: call.as_str() == "Command::new",
            });
        }
    }
    found
}

/// What is wrong with the programs a source text starts, one line each.
fn problems(text: &str, place: &str) -> Vec<String> {
    let mut out = Vec::new();
    for u in uses_in(text, place) {
        let listed = lookup(&u.program);
        if u.literal_command {
            let table = match &listed {
                Ok(_) => String::new(),
                Err(e) => format!("; {e}"),
            };
            out.push(format!(
                "{}: Command::new(\"{}\"): start external programs through nta_lab::programs::command, \
                 which checks the table (PROGRAMS in lab/src/programs.rs){table}",
                u.place, u.program
            ));
        } else if let Err(e) = listed {
            out.push(format!("{}: {}(\"{}\"): {e}", u.place, u.call, u.program));
        }
    }
    out
}

#[test]
fn every_started_program_is_in_the_table() {
    let root = workspace_root();
    let mut files = Vec::new();
    rust_sources(&root, &mut files);
    let this_file = Path::new(file!())
        .file_name()
        .unwrap_or_else(|| panic!("no file name"));
    let mut all = Vec::new();
    let mut seen = 0;
    for file in &files {
        if file.file_name() == Some(this_file) {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{e}"));
        let place = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        seen += uses_in(&text, &place).len();
        all.extend(problems(&text, &place));
    }
    assert!(files.len() > 50, "found only {} source files", files.len());
    assert!(
        seen > 50,
        "found only {seen} program uses: is the scan broken?"
    );
    assert!(all.is_empty(), "{}", all.join("\n"));
}

#[test]
fn a_new_tool_without_a_table_row_is_named_with_the_table() {
    let p = problems(
        "let x = Command::new(\"some-new-tool\").arg(\"-v\");",
        "x.rs",
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("lab/src/programs.rs"), "{}", p[0]);
    assert!(
        p[0].contains("`some-new-tool` is not in the table"),
        "{}",
        p[0]
    );

    let p = problems(
        "lab.attack(\n    5,\n    &[\"masscan\", \"-p1-100\"],\n);",
        "y.rs",
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("y.rs:1: attack(\"masscan\")"), "{}", p[0]);
}

#[test]
fn listed_programs_through_the_helpers_pass_and_literal_commands_do_not() {
    assert!(problems("ns.exec(\"ip\", &[\"link\"]); require(\"tshark\");", "z.rs").is_empty());
    assert!(problems("available_for(\"t\", \"promtool\")", "z.rs").is_empty());
    let p = problems("Command::new(\"tshark\")", "z.rs");
    assert_eq!(
        p.len(),
        1,
        "a literal Command::new is refused even for a listed program"
    );
}
