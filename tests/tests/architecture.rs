//! The workspace's module structure, read from the sources: no two modules import each other
//! (directly or round a longer circle), and the probe crate's rooms import only downward, in the
//! order ARCHITECTURE.md writes once (the block fenced as `layers`).
//!
//! The Rust analogue of ArchUnit or Python's import-linter: the compiler keeps crates apart, this
//! keeps the modules inside a crate apart. It reads `crate::…` and `super::…` paths (in `use`
//! lines and inline), resolves each to the deepest module it names, and compares them at the
//! level where the two modules part: `crate::wire::tunnel` using `crate::wire::ethernet` is an
//! edge between the siblings `tunnel` and `ethernet`; `crate::live::rx` using
//! `crate::pipeline::handoff` is an edge between the rooms `live` and `pipeline`. A module using
//! its own parent (`wire/tunnel.rs` taking `crate::wire::FrameSummary`) is not an edge. Unit
//! tests (a trailing `#[cfg(test)]` module, or a `tests.rs` file) are left out: a test may
//! reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path inside one crate: `["wire", "tunnel"]`; the crate root is empty.
type ModPath = Vec<String>;

/// One use of another module: where it is written, for the failure message.
#[derive(Clone, Debug)]
struct Evidence {
    file: PathBuf,
    line: usize,
    text: String,
}

/// The modules of one crate (a library or a binary root) and what each file refers to.
struct Crate {
    name: &'static str,
    modules: BTreeSet<ModPath>,
    /// For each module, the module paths its code names (resolved later), with evidence.
    refs: Vec<(ModPath, Vec<String>, Evidence)>,
}

fn module_path(root: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(root).expect("under the root");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") || !parts.is_empty() && stem != "mod" {
        parts.push(stem.to_string());
    }
    parts
}

/// The `.rs` files under `dir`, except other binaries' roots (`bin/`) and unit-test files.
fn rust_files(dir: &Path, skip_bin: bool, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if !(skip_bin && p.file_name().is_some_and(|n| n == "bin")) {
                rust_files(&p, false, out);
            }
        } else if p.extension().is_some_and(|e| e == "rs")
            && p.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(p);
        }
    }
}

/// The code of a file without its trailing unit tests and without comments.
fn code_of(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut pending_cfg_test = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if pending_cfg_test && (t.starts_with("mod tests") || t.starts_with("pub mod tests")) {
            lines.pop();
            break;
        }
        pending_cfg_test = t == "#[cfg(test)]";
        let code = match t.find("//") {
            Some(at) => &t[..at],
            None => t,
        };
        lines.push((i + 1, code.to_string()));
    }
    lines
}

/// Each module path written after `crate::` or `super::` in `code`, from the module `here`:
/// `crate::a::{b::C, d}` gives `a::b::C` and `a::d`; `super::x` resolves against `here`.
fn paths_in(code: &str, here: &ModPath) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let boundary = i == 0 || !is_ident(bytes[i - 1]) && bytes[i - 1] != b':';
        let (base, skip) = if boundary && rest.starts_with(b"crate::") {
            (Vec::new(), "crate::".len())
        } else if boundary && rest.starts_with(b"super::") {
            // `super` is the parent of the module the file is (a `mod.rs` is its directory).
            let mut base = here.clone();
            let mut at = i;
            while code.as_bytes()[at..].starts_with(b"super::") {
                base.pop();
                at += "super::".len();
            }
            found.extend(group(&code[at..], &base));
            i = at;
            continue;
        } else {
            i += 1;
            continue;
        };
        found.extend(group(&code[i + skip..], &base));
        i += skip;
    }
    found
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The paths a `use` tail such as `a::b::{c, d::E}` names, each prefixed with `base`.
fn group(s: &str, base: &[String]) -> Vec<Vec<String>> {
    let mut path = base.to_vec();
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        if i > start {
            path.push(s[start..i].to_string());
        }
        if s[i..].starts_with("::{") {
            // A group: split its items at top-level commas.
            let inner_start = i + 3;
            let mut depth = 1;
            let mut j = inner_start;
            let mut item_start = inner_start;
            let mut out = Vec::new();
            while j < b.len() && depth > 0 {
                match b[j] {
                    b'{' => depth += 1,
                    b'}' => depth -= 1,
                    b',' if depth == 1 => {
                        out.extend(group(s[item_start..j].trim(), &path));
                        item_start = j + 1;
                    }
                    _ => {}
                }
                j += 1;
            }
            let end = if depth == 0 { j - 1 } else { j };
            let last = s[item_start..end].trim();
            if !last.is_empty() {
                out.extend(group(last, &path));
            }
            return out;
        }
        if s[i..].starts_with("::") {
            i += 2;
            continue;
        }
        return vec![path];
    }
}

fn read_crate(name: &'static str, root: &Path, lib_or_main: &str) -> Crate {
    let mut files = Vec::new();
    rust_files(root, true, &mut files);
    // A binary root beside the library (`main.rs` next to `lib.rs`) is another crate.
    files.retain(|f| {
        let other_root = if lib_or_main == "lib.rs" {
            "main.rs"
        } else {
            "lib.rs"
        };
        f.parent() != Some(root) || f.file_name().is_some_and(|n| n != other_root)
    });
    let modules: BTreeSet<ModPath> = files.iter().map(|f| module_path(root, f)).collect();
    let mut refs = Vec::new();
    for f in &files {
        let here = module_path(root, f);
        let text = std::fs::read_to_string(f).expect("a readable source file");
        for (line, code) in code_of(&text) {
            for p in paths_in(&code, &here) {
                refs.push((
                    here.clone(),
                    p,
                    Evidence {
                        file: f.strip_prefix(e2e::workspace_root()).unwrap_or(f).into(),
                        line,
                        text: code.clone(),
                    },
                ));
            }
        }
    }
    Crate {
        name,
        modules,
        refs,
    }
}

impl Crate {
    /// The deepest module `path` names.
    fn resolve(&self, path: &[String]) -> ModPath {
        (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| self.modules.contains(p))
            .unwrap_or_default()
    }

    /// Edges between siblings: for each parent module, which child uses which, with evidence.
    fn sibling_edges(&self) -> BTreeMap<ModPath, BTreeMap<(String, String), Evidence>> {
        let mut edges: BTreeMap<ModPath, BTreeMap<(String, String), Evidence>> = BTreeMap::new();
        for (from, path, ev) in &self.refs {
            let to = self.resolve(path);
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common < from.len() && common < to.len() {
                edges
                    .entry(from[..common].to_vec())
                    .or_default()
                    .entry((from[common].clone(), to[common].clone()))
                    .or_insert_with(|| ev.clone());
            }
        }
        edges
    }

    /// Every circle among siblings, each as a readable paragraph.
    fn circles(&self) -> Vec<String> {
        let mut found = Vec::new();
        for (parent, edges) in self.sibling_edges() {
            let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (a, b) in edges.keys() {
                graph.entry(a).or_default().push(b);
            }
            for part in cycles(&graph) {
                let name = |m: &str| {
                    let mut p = parent.clone();
                    p.push(m.to_string());
                    format!("{}::{}", self.name, p.join("::"))
                };
                let mut text = format!(
                    "import circle among {} modules: {}",
                    part.len(),
                    part.iter().map(|m| name(m)).collect::<Vec<_>>().join(", ")
                );
                // Each member's shortest way back to itself, each round said once.
                let members: BTreeSet<&str> = part.iter().copied().collect();
                let mut said: BTreeSet<Vec<&str>> = BTreeSet::new();
                for &start in &part {
                    let mut round = shortest_round(&graph, &members, start);
                    let min = (0..round.len()).min_by_key(|&i| round[i]).unwrap_or(0);
                    round.rotate_left(min);
                    if !said.insert(round.clone()) {
                        continue;
                    }
                    text += &format!(
                        "\n  {}",
                        round
                            .iter()
                            .chain(round.first())
                            .map(|m| name(m))
                            .collect::<Vec<_>>()
                            .join(" -> ")
                    );
                    for (a, b) in round.iter().zip(round.iter().cycle().skip(1)) {
                        let ev = &edges[&(a.to_string(), b.to_string())];
                        text += &format!(
                            "\n    {} uses {}: {}:{}: {}",
                            name(a),
                            name(b),
                            ev.file.display(),
                            ev.line,
                            ev.text
                        );
                    }
                }
                found.push(text);
            }
        }
        found
    }
}

/// The strongly connected parts of `graph` with more than one node (Tarjan's algorithm).
fn cycles<'a>(graph: &BTreeMap<&'a str, Vec<&'a str>>) -> Vec<Vec<&'a str>> {
    struct Tarjan<'a, 'g> {
        graph: &'g BTreeMap<&'a str, Vec<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        parts: Vec<Vec<&'a str>>,
    }
    impl<'a> Tarjan<'a, '_> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for &w in self.graph.get(v).map(Vec::as_slice).unwrap_or(&[]) {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let l = self.low[v].min(self.low[w]);
                    self.low.insert(v, l);
                } else if self.on_stack.contains(w) {
                    let l = self.low[v].min(self.index[w]);
                    self.low.insert(v, l);
                }
            }
            if self.low[v] == self.index[v] {
                let mut part = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    part.push(w);
                    if w == v {
                        break;
                    }
                }
                if part.len() > 1 {
                    self.parts.push(part);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        parts: Vec::new(),
    };
    for &v in graph.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.parts.iter_mut().for_each(|p| p.sort());
    t.parts
}

/// The shortest walk from `start` back to itself inside `members` (breadth first).
fn shortest_round<'a>(
    graph: &BTreeMap<&'a str, Vec<&'a str>>,
    members: &BTreeSet<&'a str>,
    start: &'a str,
) -> Vec<&'a str> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in graph.get(v).map(Vec::as_slice).unwrap_or(&[]) {
            if !members.contains(w) {
                continue;
            }
            if w == start {
                let mut path = vec![v];
                let mut at = v;
                while at != start {
                    at = came_from[at];
                    path.push(at);
                }
                path.reverse();
                return path;
            }
            if !came_from.contains_key(w) && w != start {
                came_from.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    vec![start]
}

/// The `layers` block of ARCHITECTURE.md: the probe crate's rooms, top first; rooms on one
/// line are peers (neither may import the other).
fn layers() -> Vec<Vec<String>> {
    let doc = std::fs::read_to_string(e2e::workspace_root().join("ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md at the workspace root");
    let block = doc
        .split("```layers\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("ARCHITECTURE.md has a ```layers block: the probe crate's rooms, top first");
    block
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').map(|r| r.trim().to_string()).collect())
        .collect()
}

/// Rooms that import upward or sideways, against the layering ARCHITECTURE.md gives.
fn layering_faults(krate: &Crate, layers: &[Vec<String>]) -> Vec<String> {
    let level: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, line)| line.iter().map(move |r| (r.as_str(), i)))
        .collect();
    let mut faults = Vec::new();
    for top in krate.modules.iter().filter(|m| m.len() == 1) {
        if !level.contains_key(top[0].as_str()) {
            faults.push(format!(
                "room {}::{} is not in ARCHITECTURE.md's layers block: place it there",
                krate.name, top[0]
            ));
        }
    }
    let edges = krate.sibling_edges();
    for ((a, b), ev) in edges.get(&Vec::new()).into_iter().flatten() {
        let (Some(&la), Some(&lb)) = (level.get(a.as_str()), level.get(b.as_str())) else {
            continue;
        };
        if lb <= la {
            let how = if lb == la {
                "its peer"
            } else {
                "the room above it"
            };
            faults.push(format!(
                "{}::{a} uses {how} {}::{b}: {}:{}: {}",
                krate.name,
                krate.name,
                ev.file.display(),
                ev.line,
                ev.text
            ));
        }
    }
    faults
}

/// Every crate root in the workspace whose modules are checked for circles.
fn crates() -> Vec<Crate> {
    let root = e2e::workspace_root();
    let mut all = vec![
        read_crate("probe", &root.join("probe/src"), "lib.rs"),
        read_crate("ipfix_export", &root.join("ipfix-export/src"), "lib.rs"),
        read_crate("pcap_ring", &root.join("pcap-ring/src"), "lib.rs"),
        read_crate("bpf", &root.join("bpf/src"), "lib.rs"),
        read_crate("xtask", &root.join("xtask/src"), "main.rs"),
        read_crate("e2e", &root.join("tests/src"), "lib.rs"),
        read_crate("chores", &root.join("tests/src/bin/chores"), "main.rs"),
    ];
    if root.join("probe/core/src").is_dir() {
        all.push(read_crate(
            "probe_core",
            &root.join("probe/core/src"),
            "lib.rs",
        ));
    }
    all
}

#[test]
fn no_module_imports_in_a_circle() {
    let faults: Vec<String> = crates().iter().flat_map(Crate::circles).collect();
    assert!(faults.is_empty(), "\n{}\n", faults.join("\n"));
}

#[test]
fn the_probe_crates_rooms_import_only_downward() {
    let probe = crates().into_iter().next().expect("the probe crate");
    let faults = layering_faults(&probe, &layers());
    assert!(faults.is_empty(), "\n{}\n", faults.join("\n"));
}

#[test]
fn the_checker_sees_circles_and_upward_imports() {
    // A tiny crate written on disk: `a` and `b` use each other, `low` uses `top`.
    let tmp = e2e::TempDir::new("arch");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(
        src.join("lib.rs"),
        "pub mod a;\npub mod b;\npub mod top;\npub mod low;\n",
    )
    .unwrap();
    std::fs::write(src.join("a/mod.rs"), "pub mod x;\nuse crate::b::Thing;\n").unwrap();
    std::fs::write(
        src.join("a/x.rs"),
        "use super::super::b;\n#[cfg(test)]\nmod tests { use crate::top::T; }\n",
    )
    .unwrap();
    std::fs::write(src.join("b.rs"), "pub fn f() { crate::a::x::g() }\n").unwrap();
    std::fs::write(src.join("top.rs"), "use crate::{low::Y, b};\n").unwrap();
    std::fs::write(src.join("low.rs"), "// crate::top::Z is only a comment\n").unwrap();
    let k = read_crate("demo", &src, "lib.rs");
    let circles = k.circles();
    assert_eq!(circles.len(), 1, "{circles:?}");
    assert!(
        circles[0].contains("\n  demo::a -> demo::b -> demo::a\n"),
        "{}",
        circles[0]
    );
    let layers = vec![
        vec!["top".to_string()],
        vec!["a".into(), "b".into()],
        vec!["low".into()],
    ];
    let faults = layering_faults(&k, &layers);
    assert_eq!(faults.len(), 2, "{faults:?}");
    assert!(faults
        .iter()
        .any(|f| f.starts_with("demo::a uses its peer demo::b")));
    assert!(faults
        .iter()
        .any(|f| f.starts_with("demo::b uses its peer demo::a")));
    // Now `low` reaches up.
    std::fs::write(src.join("low.rs"), "use crate::top::Z;\n").unwrap();
    let k = read_crate("demo", &src, "lib.rs");
    let faults = layering_faults(&k, &layers);
    assert!(faults
        .iter()
        .any(|f| f.starts_with("demo::low uses the room above it demo::top")));
}
