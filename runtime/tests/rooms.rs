//! The rooms of `runtime/src` and what each imports, checked against the table of
//! `docs/architecture.md`: a room imports only rooms of a lower rank (no room reaches up, so
//! there are no circles), its imports are the ones the table lists, and every room is in the
//! table. Reads `crate::…` paths in code (comments aside), including `use crate::{a, b}` groups.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// One row of the table: rank, and the rooms it imports (`None`: any room).
struct Row {
    rank: u32,
    imports: Option<BTreeSet<String>>,
}

fn table() -> BTreeMap<String, Row> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/architecture.md");
    let text = fs::read_to_string(&path).expect("docs/architecture.md");
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // `| rank | `room` | holds | imports |` → ["", rank, room, holds, imports, ""]
        if cells.len() != 6 {
            continue;
        }
        let Ok(rank) = cells[1].parse::<u32>() else {
            continue;
        };
        let room = cells[2].trim_matches('`').to_owned();
        let imports = match cells[4] {
            "any room" => None,
            "nothing" => Some(BTreeSet::new()),
            list => Some(
                list.split(',')
                    .map(|r| r.trim().trim_matches('`').to_owned())
                    .collect(),
            ),
        };
        rows.insert(room, Row { rank, imports });
    }
    assert!(!rows.is_empty(), "no rooms table in {}", path.display());
    rows
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The rooms: every folder and file of `runtime/src` but `lib.rs`.
fn rooms() -> BTreeSet<String> {
    fs::read_dir(src())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "lib.rs")
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    if dir.is_file() {
        out.push(dir.to_owned());
        return;
    }
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The first path segment after each `crate::` in the code of `text` (comments aside).
fn crate_paths(text: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `tenantry_runtime::crate::` never occurs; `foocrate::` is not ours
        }
        if let Some(group) = rest.strip_prefix('{') {
            out.extend(group_heads(group));
        } else {
            out.push(ident(rest).to_owned());
        }
    }
    out
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first segment of each path of a `{a::b, c, d::{e, f}}` group (after its `{`).
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => start = true,
            c if start && (c.is_alphanumeric() || c == '_') => {
                heads.push(ident(&group[i..]).to_owned());
                start = false;
            }
            _ => {}
        }
    }
    heads
}

#[test]
fn each_room_imports_only_the_rooms_below_it_that_the_architecture_lists() {
    let table = table();
    let rooms = rooms();
    let missing: Vec<_> = rooms.iter().filter(|r| !table.contains_key(*r)).collect();
    assert!(
        missing.is_empty(),
        "rooms of runtime/src missing from the table of docs/architecture.md: {missing:?}"
    );
    let gone: Vec<_> = table.keys().filter(|r| !rooms.contains(*r)).collect();
    assert!(
        gone.is_empty(),
        "docs/architecture.md lists rooms that do not exist: {gone:?}"
    );

    let mut problems = Vec::new();
    for room in &rooms {
        let row = &table[room];
        let mut files = Vec::new();
        let path = src().join(room);
        rust_files(
            &if path.is_dir() {
                path
            } else {
                path.with_extension("rs")
            },
            &mut files,
        );
        let mut imported = BTreeSet::new();
        for file in &files {
            let text = fs::read_to_string(file).unwrap();
            let name = file.strip_prefix(src()).unwrap().display().to_string();
            for head in crate_paths(&text) {
                if head == *room {
                    continue;
                }
                if row.imports.is_none() {
                    continue; // the test kit may use anything
                }
                let Some(target) = table.get(&head) else {
                    problems.push(format!(
                        "{name}: `crate::{head}` is not a room (the crate root's re-exports are \
                         for users): import the room that holds it"
                    ));
                    continue;
                };
                if target.rank >= row.rank {
                    problems.push(format!(
                        "{name}: `{room}` (rank {}) imports `{head}` (rank {}): a room imports \
                         only rooms below it",
                        row.rank, target.rank
                    ));
                }
                imported.insert(head);
            }
        }
        if let Some(listed) = &row.imports {
            if &imported != listed {
                problems.push(format!(
                    "`{room}` imports {imported:?}, docs/architecture.md lists {listed:?}: \
                     update the table (a new import of a lower room is fine; say so there)"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_reader_sees_groups_and_skips_comments() {
    let text = "use crate::{a::X, b, c::{d, e}};\n// crate::f\nlet x = crate::g::h(); // crate::i";
    assert_eq!(crate_paths(text), ["a", "b", "c", "g"]);
}

#[test]
fn no_file_is_over_500_lines_outside_tests() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let long: Vec<_> = files
        .iter()
        .filter(|f| f.file_name().unwrap() != "tests.rs")
        .map(|f| (f, fs::read_to_string(f).unwrap().lines().count()))
        .filter(|(_, n)| *n > 500)
        .map(|(f, n)| format!("{} ({n} lines)", f.strip_prefix(src()).unwrap().display()))
        .collect();
    assert!(long.is_empty(), "files over 500 lines: {long:?}");
}
