//! Every command a message shows (`bundle pack --sign KEY`, `scripts/release --target …`)
//! takes every flag it names, and every flag a message tells the user to add is one some
//! wheelship command takes: read from the sources' string literals and the scripts, checked
//! against each command's `--help`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};

use testsupport::{bin_dir, repo, TOOLS};

fn help(argv: &[&str]) -> String {
    let (program, rest) = argv.split_first().unwrap();
    let path = if program.starts_with("scripts/") {
        repo().join(program)
    } else {
        bin_dir().join(program)
    };
    // The scripts find the binaries by WHEELSHIP_BIN (else they would build a release).
    let out = Command::new(&path)
        .args(rest)
        .arg("--help")
        .env("WHEELSHIP_BIN", bin_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The subcommands a clap help lists under `Commands:`.
fn subcommands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("Commands:") {
            inside = true;
        } else if inside && !line.starts_with(' ') && !line.is_empty() {
            break;
        } else if inside && line.starts_with("  ") && !line.starts_with("   ") {
            if let Some(w) = line.split_whitespace().next() {
                if w != "help" {
                    out.push(w.to_string());
                }
            }
        }
    }
    out
}

/// The flags a help text shows (`--name`), with `--no-name` where it shows `--[no-]name`.
fn flags(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    for (i, _) in text.match_indices("--") {
        let name: String = text[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if !name.is_empty() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
            out.insert(format!("--{name}"));
        }
    }
    out
}

/// Every command's help, by its words: `["bundle", "pack"]`, `["scripts/deploy"]`.
fn helps() -> BTreeMap<Vec<String>, String> {
    let mut out = BTreeMap::new();
    for tool in TOOLS {
        let top = help(&[tool]);
        for sub in subcommands(&top) {
            let text = help(&[tool, &sub]);
            for subsub in subcommands(&text) {
                let t = help(&[tool, &sub, &subsub]);
                out.insert(vec![tool.to_string(), sub.clone(), subsub], t);
            }
            out.insert(vec![tool.to_string(), sub], text);
        }
        out.insert(vec![tool.to_string()], top);
    }
    for e in std::fs::read_dir(repo().join("scripts")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".sh") || name == "lib.sh" {
            continue;
        }
        let script = format!("scripts/{name}");
        out.insert(vec![script.clone()], help(&[&script]));
    }
    out
}

/// The text between backticks in `text`.
fn quoted(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

fn sources() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dirs: Vec<_> = [
        "hashreq",
        "wheelhouse",
        "mkenv",
        "bundle",
        "switch",
        "wheelship",
    ]
    .iter()
    .map(|c| repo().join(c).join("src"))
    .collect();
    dirs.push(repo().join("scripts"));
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if let Ok(text) = std::fs::read_to_string(&p) {
                let rel = p.strip_prefix(repo()).unwrap().display().to_string();
                out.push((rel, text));
            }
        }
    }
    out
}

/// The command a quoted example names, as the longest key of `helps` its words start with.
fn command_of<'a, T>(words: &[&str], helps: &'a BTreeMap<Vec<String>, T>) -> Option<&'a [String]> {
    helps
        .keys()
        .filter(|k| k.len() <= words.len() && k.iter().zip(words).all(|(a, b)| a == b))
        .max_by_key(|k| k.len())
        .map(Vec::as_slice)
}

/// What is wrong in one file's text: examples naming flags their command does not take, and
/// flags the user is told to add that no command takes.
fn problems(
    file: &str,
    text: &str,
    helps: &BTreeMap<Vec<String>, BTreeSet<String>>,
    known: &BTreeSet<String>,
    checked: &mut usize,
) -> Vec<String> {
    let mut wrong = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for example in quoted(line) {
            for part in example.split('|') {
                let words: Vec<&str> = part.split_whitespace().collect();
                let Some(cmd) = command_of(&words, helps) else {
                    continue;
                };
                // A flag is the command's, or its parent's (switch's options before
                // `revert`), or any subcommand's the example goes on to name.
                let mut takes = BTreeSet::new();
                for (k, f) in helps {
                    let named = k.len() > cmd.len()
                        && k.starts_with(&cmd[..1])
                        && words.contains(&k[k.len() - 1].as_str());
                    if cmd.starts_with(k) || named {
                        takes.extend(f.iter().cloned());
                    }
                }
                for w in &words {
                    let flag = w.split('=').next().unwrap();
                    if flag.starts_with("--") && flag.len() > 2 {
                        *checked += 1;
                        if !takes.contains(flag) {
                            wrong.push(format!(
                                "{file}:{}: `{}` does not take {flag} (in `{example}`)",
                                n + 1,
                                cmd.join(" ")
                            ));
                        }
                    }
                }
            }
        }
        // "add --x", "pass --x", "with --x", "use --x", "(--x)": a flag the user is told to
        // give is one some command takes.
        for lead in ["add --", "pass --", "with --", "use --", "(--", "or --"] {
            for (i, _) in line.match_indices(lead) {
                let flag: String = line[i + lead.len() - 2..]
                    .chars()
                    .take_while(|c| *c == '-' || c.is_ascii_alphanumeric())
                    .collect();
                if flag.len() > 2 && is_ours(file) && !known.contains(&flag) {
                    wrong.push(format!(
                        "{file}:{}: {flag} is not a flag of any wheelship command",
                        n + 1
                    ));
                }
            }
        }
    }
    wrong
}

#[test]
fn every_command_a_message_shows_takes_the_flags_it_names() {
    let helps: BTreeMap<_, _> = helps().into_iter().map(|(k, t)| (k, flags(&t))).collect();
    let known: BTreeSet<String> = helps.values().flatten().cloned().collect();
    let mut checked = 0;
    // The check itself finds what it is for.
    let planted = "bail!(\"sign it (`bundle pack --sgin KEY`), or add --allow-dowgrade\")";
    let found = problems("bundle/src/x.rs", planted, &helps, &known, &mut checked);
    assert_eq!(found.len(), 2, "{found:?}");
    let mut wrong = Vec::new();
    for (file, text) in sources() {
        wrong.extend(problems(&file, &text, &helps, &known, &mut checked));
    }
    assert!(checked > 20, "only {checked} flags found in examples");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Files whose messages speak of wheelship's own flags (not pip's or uv's, which the
/// wheelhouse's resolver and requirement parser name).
fn is_ours(file: &str) -> bool {
    if file.starts_with("scripts/") {
        return true;
    }
    let speaks_of_pip = ["hashreq/src", "wheelhouse/src/uv", "pip"]
        .iter()
        .any(|p| file.contains(p));
    !speaks_of_pip && Path::new(file).extension().is_some_and(|e| e == "rs")
}
