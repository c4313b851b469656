//! Markers in packaging's normal form (`str(Marker(...))`): one space around operators and
//! boolean words, double quotes, `os.name` spelled `os_name`, `python_implementation` spelled
//! `platform_python_implementation`, extra names canonicalised (PEP 685), redundant outer
//! parentheses dropped. Validity is checked by `pep508_rs`; this only reshapes the text.

use wheelship::python::names::canonicalize_name;

#[derive(Debug, Clone)]
enum Node {
    Var(String),
    Val(String),
}

#[derive(Debug, Clone)]
enum Item {
    Cmp(Node, String, Node),
    Group(Vec<Item>),
    BoolOp(&'static str),
}

const VARIABLES: &[&str] = &[
    "python_version",
    "python_full_version",
    "os_name",
    "os.name",
    "sys_platform",
    "sys.platform",
    "platform_release",
    "platform_system",
    "platform_version",
    "platform.version",
    "platform_machine",
    "platform.machine",
    "platform_python_implementation",
    "platform.python_implementation",
    "python_implementation",
    "implementation_name",
    "implementation_version",
    "extra",
    "extras",
    "dependency_groups",
];

struct Lexer<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn ws(&mut self) {
        while self.s[self.pos..].starts_with([' ', '\t']) {
            self.pos += 1;
        }
    }
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }
    fn word(&self, w: &str) -> bool {
        let r = self.rest();
        r.starts_with(w)
            && !r[w.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
    }
    fn eat(&mut self, t: &str) -> bool {
        if self.rest().starts_with(t) {
            self.pos += t.len();
            true
        } else {
            false
        }
    }
}

/// The canonical text of a marker expression, or `None` if it does not lex (the caller has
/// already validated it, so this only guards against a disagreement between parsers).
pub fn canonical(marker: &str) -> Option<String> {
    let mut lx = Lexer { s: marker, pos: 0 };
    let items = parse_marker(&mut lx)?;
    lx.ws();
    if !lx.rest().is_empty() {
        return None;
    }
    let items = normalize_extras(items);
    Some(format_list(&items, true))
}

fn parse_marker(lx: &mut Lexer) -> Option<Vec<Item>> {
    let mut out = vec![parse_atom(lx)?];
    loop {
        lx.ws();
        let op = if lx.word("and") {
            "and"
        } else if lx.word("or") {
            "or"
        } else {
            break;
        };
        lx.pos += op.len();
        out.push(Item::BoolOp(op));
        out.push(parse_atom(lx)?);
    }
    Some(out)
}

fn parse_atom(lx: &mut Lexer) -> Option<Item> {
    lx.ws();
    let item = if lx.eat("(") {
        lx.ws();
        let inner = parse_marker(lx)?;
        lx.ws();
        if !lx.eat(")") {
            return None;
        }
        Item::Group(inner)
    } else {
        let lhs = parse_var(lx)?;
        lx.ws();
        let op = parse_op(lx)?;
        lx.ws();
        let rhs = parse_var(lx)?;
        Item::Cmp(lhs, op, rhs)
    };
    lx.ws();
    Some(item)
}

fn parse_var(lx: &mut Lexer) -> Option<Node> {
    let r = lx.rest();
    if let Some(q) = r.chars().next().filter(|c| *c == '\'' || *c == '"') {
        let end = r[1..].find(q)?;
        let v = r[1..1 + end].to_string();
        lx.pos += end + 2;
        return Some(Node::Val(v));
    }
    // Longest name first, so `python_version` does not eat `python_version_x`.
    let mut best: Option<&str> = None;
    for v in VARIABLES {
        if lx.word(v) && best.is_none_or(|b| v.len() > b.len()) {
            best = Some(v);
        }
    }
    let v = best?;
    lx.pos += v.len();
    let name = v.replace('.', "_");
    let name = if name == "python_implementation" {
        "platform_python_implementation".to_string()
    } else {
        name
    };
    Some(Node::Var(name))
}

fn parse_op(lx: &mut Lexer) -> Option<String> {
    for op in ["===", "==", "~=", "!=", "<=", ">=", "<", ">"] {
        if lx.eat(op) {
            return Some(op.to_string());
        }
    }
    if lx.word("in") {
        lx.pos += 2;
        return Some("in".into());
    }
    if lx.word("not") {
        lx.pos += 3;
        let before = lx.pos;
        lx.ws();
        if lx.pos == before || !lx.word("in") {
            return None;
        }
        lx.pos += 2;
        return Some("not in".into());
    }
    None
}

fn normalize_extras(items: Vec<Item>) -> Vec<Item> {
    items
        .into_iter()
        .map(|it| match it {
            Item::Group(g) => Item::Group(normalize_extras(g)),
            Item::Cmp(Node::Var(l), op, Node::Val(r)) if l == "extra" => {
                Item::Cmp(Node::Var(l), op, Node::Val(canonicalize_name(&r)))
            }
            Item::Cmp(Node::Val(l), op, Node::Var(r))
                if matches!(r.as_str(), "extra" | "extras" | "dependency_groups") =>
            {
                Item::Cmp(Node::Val(canonicalize_name(&l)), op, Node::Var(r))
            }
            other => other,
        })
        .collect()
}

fn format_node(n: &Node) -> String {
    match n {
        Node::Var(v) => v.clone(),
        Node::Val(v) if v.contains('"') => format!("'{v}'"),
        Node::Val(v) => format!("\"{v}\""),
    }
}

fn format_item(it: &Item, first: bool) -> String {
    match it {
        Item::Cmp(l, op, r) => format!("{} {op} {}", format_node(l), format_node(r)),
        Item::Group(g) => format_list(g, first),
        Item::BoolOp(op) => op.to_string(),
    }
}

fn format_list(items: &[Item], first: bool) -> String {
    // packaging's `_format_marker`: a one-element list around a group is unwrapped.
    if let [Item::Group(g)] = items {
        return format_list(g, first);
    }
    if let [only @ Item::Cmp(..)] = items {
        return format_item(only, false);
    }
    let inner: Vec<String> = items.iter().map(|i| format_item(i, false)).collect();
    if first {
        inner.join(" ")
    } else {
        format!("({})", inner.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn spacing_and_quotes() {
        assert_eq!(
            canonical("python_version>'3.8'and(sys_platform=='linux'or os.name == \"nt\")")
                .unwrap(),
            "python_version > \"3.8\" and (sys_platform == \"linux\" or os_name == \"nt\")"
        );
        assert_eq!(
            canonical("'3.8' <python_version").unwrap(),
            "\"3.8\" < python_version"
        );
        assert_eq!(
            canonical("sys_platform not   in 'win32 cygwin'").unwrap(),
            "sys_platform not in \"win32 cygwin\""
        );
        assert_eq!(
            canonical("python_implementation=='CPython'").unwrap(),
            "platform_python_implementation == \"CPython\""
        );
    }

    #[test]
    fn outer_parentheses_and_nesting() {
        assert_eq!(canonical("((os_name=='a'))").unwrap(), "os_name == \"a\"");
        assert_eq!(
            canonical("(os_name=='a' or os_name=='b') and extra=='Foo_Bar'").unwrap(),
            "(os_name == \"a\" or os_name == \"b\") and extra == \"foo-bar\""
        );
        assert_eq!(
            canonical("(os_name=='a') and os_name=='b'").unwrap(),
            "os_name == \"a\" and os_name == \"b\""
        );
    }

    #[test]
    fn garbage_does_not_lex() {
        assert!(canonical("os_name == ").is_none());
        assert!(canonical("foo == 'x'").is_none());
        assert!(canonical("os_name == 'x' xor").is_none());
    }
}
