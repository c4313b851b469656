//! The options of one requirement-file line, parsed the way pip's `build_parser()` does with
//! optparse: long options by unique prefix, `--opt=value`, `-fVALUE`, `-abc` clusters.

use std::collections::BTreeMap;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Dest {
    IndexUrl,
    ExtraIndexUrl,
    NoIndex,
    Constraint,
    Requirement,
    Editable,
    FindLinks,
    NoBinary,
    OnlyBinary,
    PreferBinary,
    RequireHashes,
    NoRequireHashes,
    Pre,
    AllReleases,
    OnlyFinal,
    TrustedHost,
    UseFeature,
    Hash,
    ConfigSettings,
}

struct Opt {
    short: Option<char>,
    long: &'static [&'static str],
    takes_value: bool,
    dest: Dest,
}

const fn opt(
    short: Option<char>,
    long: &'static [&'static str],
    takes_value: bool,
    dest: Dest,
) -> Opt {
    Opt {
        short,
        long,
        takes_value,
        dest,
    }
}

/// pip 26.3 `SUPPORTED_OPTIONS + SUPPORTED_OPTIONS_REQ`, in its order.
const OPTIONS: &[Opt] = &[
    opt(
        Some('i'),
        &["--index-url", "--pypi-url"],
        true,
        Dest::IndexUrl,
    ),
    opt(None, &["--extra-index-url"], true, Dest::ExtraIndexUrl),
    opt(None, &["--no-index"], false, Dest::NoIndex),
    opt(Some('c'), &["--constraint"], true, Dest::Constraint),
    opt(Some('r'), &["--requirement"], true, Dest::Requirement),
    opt(Some('e'), &["--editable"], true, Dest::Editable),
    opt(Some('f'), &["--find-links"], true, Dest::FindLinks),
    opt(None, &["--no-binary"], true, Dest::NoBinary),
    opt(None, &["--only-binary"], true, Dest::OnlyBinary),
    opt(None, &["--prefer-binary"], false, Dest::PreferBinary),
    opt(None, &["--require-hashes"], false, Dest::RequireHashes),
    opt(None, &["--no-require-hashes"], false, Dest::NoRequireHashes),
    opt(None, &["--pre"], false, Dest::Pre),
    opt(None, &["--all-releases"], true, Dest::AllReleases),
    opt(None, &["--only-final"], true, Dest::OnlyFinal),
    opt(None, &["--trusted-host"], true, Dest::TrustedHost),
    opt(None, &["--use-feature"], true, Dest::UseFeature),
    opt(None, &["--hash"], true, Dest::Hash),
    opt(
        Some('C'),
        &["--config-settings"],
        true,
        Dest::ConfigSettings,
    ),
];

const FEATURES: &[&str] = &[
    "fast-deps",
    "inprocess-build-deps",
    "venv-isolation",
    "truststore",
    "no-binary-enable-wheel-cache",
    "build-constraint",
];

pub const STRONG_HASHES: &[&str] = &["sha256", "sha384", "sha512"];

/// A `--no-binary`/`--only-binary` or `--all-releases`/`--only-final` value, kept in order
/// so that pip's mutual-exclusion rules can be replayed across lines.
#[derive(Debug, Clone, PartialEq)]
pub enum SetOp {
    NoBinary(String),
    OnlyBinary(String),
    AllReleases(String),
    OnlyFinal(String),
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct LineOpts {
    pub index_url: Option<String>,
    pub extra_index_urls: Vec<String>,
    pub no_index: bool,
    pub constraints: Vec<String>,
    pub requirements: Vec<String>,
    pub editables: Vec<String>,
    pub find_links: Vec<String>,
    pub set_ops: Vec<SetOp>,
    pub prefer_binary: bool,
    pub require_hashes: bool,
    pub no_require_hashes: bool,
    pub pre: bool,
    pub trusted_hosts: Vec<String>,
    pub features: Vec<String>,
    /// `algo:digest`, in the order given.
    pub hashes: Vec<String>,
    pub config_settings: BTreeMap<String, Vec<String>>,
}

fn find_long(name: &str) -> Result<&'static Opt, String> {
    for o in OPTIONS {
        if o.long.contains(&name) {
            return Ok(o);
        }
    }
    let mut matches: Vec<&'static str> = OPTIONS
        .iter()
        .flat_map(|o| o.long.iter().copied())
        .filter(|l| l.starts_with(name))
        .collect();
    match matches.len() {
        0 => Err(format!("no such option: {name}")),
        1 => Ok(OPTIONS
            .iter()
            .find(|o| o.long.contains(&matches[0]))
            .unwrap()),
        _ => {
            matches.sort();
            Err(format!(
                "ambiguous option: {name} ({}?)",
                matches.join(", ")
            ))
        }
    }
}

/// Parses the option tokens of one line. Positional leftovers are ignored, as pip does.
pub fn parse(args: &[String]) -> Result<LineOpts, String> {
    let mut opts = LineOpts::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            break;
        }
        if let Some(body) = arg.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (format!("--{n}"), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            let o = find_long(&name)?;
            let shown = o.long[0];
            let value = if o.takes_value {
                match inline {
                    Some(v) => Some(v),
                    None if i < args.len() => {
                        i += 1;
                        Some(args[i - 1].clone())
                    }
                    None => return Err(format!("{shown} option requires 1 argument")),
                }
            } else {
                if inline.is_some() {
                    return Err(format!("{shown} option does not take a value"));
                }
                None
            };
            apply(&mut opts, o, shown, value)?;
        } else if arg.len() > 1 && arg.starts_with('-') {
            let chars: Vec<char> = arg[1..].chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                j += 1;
                let Some(o) = OPTIONS.iter().find(|o| o.short == Some(c)) else {
                    return Err(format!("no such option: -{c}"));
                };
                let shown = format!("-{c}");
                if o.takes_value {
                    let value = if j < chars.len() {
                        chars[j..].iter().collect()
                    } else if i < args.len() {
                        i += 1;
                        args[i - 1].clone()
                    } else {
                        return Err(format!("{shown} option requires 1 argument"));
                    };
                    apply(&mut opts, o, &shown, Some(value))?;
                    break;
                }
                apply(&mut opts, o, &shown, None)?;
            }
        }
        // Other positional arguments are dropped by pip (`opts, _ = parser.parse_args(...)`).
    }
    Ok(opts)
}

fn apply(opts: &mut LineOpts, o: &Opt, shown: &str, value: Option<String>) -> Result<(), String> {
    let v = || value.clone().unwrap_or_default();
    match o.dest {
        Dest::IndexUrl => opts.index_url = Some(v()),
        Dest::ExtraIndexUrl => opts.extra_index_urls.push(v()),
        Dest::NoIndex => opts.no_index = true,
        Dest::Constraint => opts.constraints.push(v()),
        Dest::Requirement => opts.requirements.push(v()),
        Dest::Editable => opts.editables.push(v()),
        Dest::FindLinks => opts.find_links.push(v()),
        Dest::NoBinary | Dest::OnlyBinary => {
            if v().starts_with('-') {
                return Err("--no-binary / --only-binary option requires 1 argument.".into());
            }
            opts.set_ops.push(if o.dest == Dest::NoBinary {
                SetOp::NoBinary(v())
            } else {
                SetOp::OnlyBinary(v())
            });
        }
        Dest::AllReleases | Dest::OnlyFinal => {
            if v().starts_with('-') {
                return Err("--all-releases / --only-final option requires 1 argument.".into());
            }
            opts.set_ops.push(if o.dest == Dest::AllReleases {
                SetOp::AllReleases(v())
            } else {
                SetOp::OnlyFinal(v())
            });
        }
        Dest::PreferBinary => opts.prefer_binary = true,
        Dest::RequireHashes => opts.require_hashes = true,
        Dest::NoRequireHashes => opts.no_require_hashes = true,
        Dest::Pre => opts.pre = true,
        Dest::TrustedHost => opts.trusted_hosts.push(v()),
        Dest::UseFeature => {
            let f = v();
            if !FEATURES.contains(&f.as_str()) {
                let choices: Vec<String> = FEATURES.iter().map(|c| format!("'{c}'")).collect();
                return Err(format!(
                    "option {shown}: invalid choice: '{f}' (choose from {})",
                    choices.join(", ")
                ));
            }
            opts.features.push(f);
        }
        Dest::Hash => {
            let val = v();
            let Some((algo, digest)) = val.split_once(':') else {
                return Err(format!(
                    "Arguments to {shown} must be a hash name followed by a value, like --hash=sha256:abcde..."
                ));
            };
            if !STRONG_HASHES.contains(&algo) {
                return Err(format!(
                    "Allowed hash algorithms for {shown} are {}.",
                    STRONG_HASHES.join(", ")
                ));
            }
            opts.hashes.push(format!("{algo}:{digest}"));
        }
        Dest::ConfigSettings => {
            let val = v();
            let Some((key, value)) = val.split_once('=') else {
                return Err(format!("Arguments to {shown} must be of the form KEY=VAL"));
            };
            opts.config_settings
                .entry(key.to_string())
                .or_default()
                .push(value.to_string());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<LineOpts, String> {
        parse(&crate::lines::shlex_split(s).unwrap())
    }

    #[test]
    fn long_short_inline_and_attached() {
        let o = p("-i https://a --extra-index-url=https://b -fdir --no-index").unwrap();
        assert_eq!(o.index_url.as_deref(), Some("https://a"));
        assert_eq!(o.extra_index_urls, ["https://b"]);
        assert_eq!(o.find_links, ["dir"]);
        assert!(o.no_index);
    }

    #[test]
    fn dash_foo_is_a_find_link() {
        // pip's `break_args_options` and optparse: `-foo==1.0` is `-f oo==1.0`
        // (https://pip.pypa.io/en/stable/reference/requirements-file-format/).
        assert_eq!(p("-foo==1.0").unwrap().find_links, ["oo==1.0"]);
    }

    #[test]
    fn unique_prefixes_are_accepted_ambiguous_ones_are_not() {
        assert_eq!(
            p("--extra https://x").unwrap().extra_index_urls,
            ["https://x"]
        );
        assert_eq!(
            p("--no x").unwrap_err(),
            "ambiguous option: --no (--no-binary, --no-index, --no-require-hashes?)"
        );
    }

    #[test]
    fn errors_read_like_pip() {
        assert_eq!(
            p("--install-option=x").unwrap_err(),
            "no such option: --install-option"
        );
        assert_eq!(
            p("--global-option x").unwrap_err(),
            "no such option: --global-option"
        );
        assert_eq!(p("-r").unwrap_err(), "-r option requires 1 argument");
        assert_eq!(
            p("--pre=1").unwrap_err(),
            "--pre option does not take a value"
        );
        assert_eq!(p("-x").unwrap_err(), "no such option: -x");
        assert_eq!(
            p("--hash=md5:abc").unwrap_err(),
            "Allowed hash algorithms for --hash are sha256, sha384, sha512."
        );
        assert!(p("--hash=abc")
            .unwrap_err()
            .starts_with("Arguments to --hash must be"));
        assert!(p("--use-feature=nope")
            .unwrap_err()
            .starts_with("option --use-feature: invalid choice"));
        assert_eq!(
            p("-C novalue").unwrap_err(),
            "Arguments to -C must be of the form KEY=VAL"
        );
    }

    #[test]
    fn hashes_and_config_settings_accumulate() {
        let o = p("--hash=sha256:aa --hash sha512:bb -C k=1 --config-settings k=2").unwrap();
        assert_eq!(o.hashes, ["sha256:aa", "sha512:bb"]);
        assert_eq!(o.config_settings["k"], ["1", "2"]);
    }
}
