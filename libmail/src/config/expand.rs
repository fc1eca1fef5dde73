//! `$name` expansion of parameter values, done lazily at the point of use:
//! `$name`, `${name}`, `$(name)`, `${name?value}`, `${name:value}`,
//! `${name?{value}:{other}}`, `$$`, and the Postfix 3 relational form
//! `${{text} OP {text} ? {value} : {other}}` with OP one of `==`, `!=`,
//! `<`, `<=`, `>`, `>=` (numbers) and `<level`, `<=level`, `>level`,
//! `>=level` (compatibility levels such as `3.6`).

use std::borrow::Cow;

use super::error::ExpandError;

/// Where expansion finds the unexpanded value of a parameter.
pub trait Lookup {
    /// The raw value, or `None` when no such parameter is defined.
    fn raw(&self, name: &str) -> Option<Cow<'_, str>>;
}

/// An expanded value and the names it referred to that are not defined.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expansion {
    pub value: String,
    pub undefined: Vec<String>,
}

/// Expands `text` completely, following references recursively.
pub fn expand(text: &str, lookup: &dyn Lookup) -> Result<Expansion, ExpandError> {
    let mut ex = Expander {
        lookup,
        stack: Vec::new(),
        undefined: Vec::new(),
    };
    let value = ex.text(text)?;
    Ok(Expansion {
        value,
        undefined: ex.undefined,
    })
}

/// Every parameter name that `text` refers to, without expanding anything.
/// Used to tell which main.cf parameters are in use.
pub fn references(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            rest = after;
            continue;
        }
        let skip = rest.trim_start_matches(['{', '(']);
        let name_len = name_length(skip);
        if name_len > 0 {
            names.push(skip[..name_len].to_string());
        }
    }
    names
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn name_length(text: &str) -> usize {
    text.find(|c: char| !is_name_char(c)).unwrap_or(text.len())
}

fn syntax(text: &str, reason: &str) -> ExpandError {
    ExpandError::Syntax {
        text: text.to_string(),
        reason: reason.to_string(),
    }
}

/// Given text just after an opening bracket, the index of its matching
/// closing bracket.
fn matching_close(text: &str, open: char, close: char) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        if c == open {
            depth += 1;
        } else if c == close {
            if depth == 0 {
                return Some(i);
            }
            depth -= 1;
        }
    }
    None
}

/// Splits `{inner} rest` into (inner, rest with leading white space removed).
fn braced(text: &str) -> Option<(&str, &str)> {
    let body = text.strip_prefix('{')?;
    let end = matching_close(body, '{', '}')?;
    Some((&body[..end], body[end + 1..].trim_start()))
}

const RELATIONS: [&str; 10] = [
    "<=level", ">=level", "<level", ">level", "==", "!=", "<=", ">=", "<", ">",
];

struct Expander<'a> {
    lookup: &'a dyn Lookup,
    stack: Vec<String>,
    undefined: Vec<String>,
}

impl Expander<'_> {
    fn text(&mut self, text: &str) -> Result<String, ExpandError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            rest = self.reference(text, rest, &mut out)?;
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Expands the reference that starts right after a `$` and returns the
    /// text after it.
    fn reference<'t>(
        &mut self,
        whole: &str,
        rest: &'t str,
        out: &mut String,
    ) -> Result<&'t str, ExpandError> {
        let (open, close) = match rest.chars().next() {
            Some('$') => {
                out.push('$');
                return Ok(&rest[1..]);
            }
            Some('{') => ('{', '}'),
            Some('(') => ('(', ')'),
            Some(c) if is_name_char(c) => {
                let len = name_length(rest);
                out.push_str(&self.value_of(&rest[..len])?);
                return Ok(&rest[len..]);
            }
            _ => {
                out.push('$');
                return Ok(rest);
            }
        };
        let body = &rest[1..];
        let end = matching_close(body, open, close)
            .ok_or_else(|| syntax(whole, &format!("missing '{close}'")))?;
        out.push_str(&self.bracketed(&body[..end])?);
        Ok(&body[end + 1..])
    }

    /// The inside of `${...}` or `$(...)`.
    fn bracketed(&mut self, inner: &str) -> Result<String, ExpandError> {
        if inner.trim_start().starts_with('{') {
            return self.relation(inner);
        }
        let len = name_length(inner);
        if len == 0 {
            return Err(syntax(inner, "empty macro name"));
        }
        let name = &inner[..len];
        let tail = inner[len..].trim_start();
        if tail.is_empty() {
            return self.value_of(name);
        }
        let non_empty = self.is_non_empty(name);
        let (op, arg) = tail.split_at(1);
        let arg = arg.trim_start();
        match op {
            "?" => self.if_else(inner, arg, non_empty),
            ":" => {
                let value = match braced(arg) {
                    Some((value, "")) => value,
                    _ => arg,
                };
                if non_empty {
                    Ok(String::new())
                } else {
                    self.text(value)
                }
            }
            _ => Err(syntax(inner, "unexpected text after macro name")),
        }
    }

    /// `?value`, `?{value}` or `?{value}:{other}`.
    fn if_else(&mut self, inner: &str, arg: &str, cond: bool) -> Result<String, ExpandError> {
        let Some((then, rest)) = braced(arg) else {
            return if cond {
                self.text(arg)
            } else {
                Ok(String::new())
            };
        };
        let other = match rest.strip_prefix(':') {
            None if rest.is_empty() => None,
            None => return Err(syntax(inner, "expected ':' after '{value}'")),
            Some(after) => match braced(after.trim_start()) {
                Some((other, "")) => Some(other),
                _ => return Err(syntax(inner, "expected '{value}' after ':'")),
            },
        };
        match (cond, other) {
            (true, _) => self.text(then),
            (false, Some(other)) => self.text(other),
            (false, None) => Ok(String::new()),
        }
    }

    /// `{left} OP {right} ? {value} : {other}`.
    fn relation(&mut self, inner: &str) -> Result<String, ExpandError> {
        let bad = |reason: &str| syntax(inner, reason);
        let (left, rest) = braced(inner.trim_start()).ok_or_else(|| bad("missing '}'"))?;
        let op = RELATIONS
            .iter()
            .find(|op| rest.starts_with(**op))
            .ok_or_else(|| bad("unknown operator"))?;
        let rest = rest[op.len()..].trim_start();
        let (right, rest) = braced(rest).ok_or_else(|| bad("expected '{text}' after operator"))?;
        let rest = rest
            .strip_prefix('?')
            .ok_or_else(|| bad("expected '?' after relation"))?;
        let (then, rest) =
            braced(rest.trim_start()).ok_or_else(|| bad("expected '{value}' after '?'"))?;
        let rest = rest
            .strip_prefix(':')
            .ok_or_else(|| bad("expected ':' after '{value}'"))?;
        let (other, rest) =
            braced(rest.trim_start()).ok_or_else(|| bad("expected '{value}' after ':'"))?;
        if !rest.is_empty() {
            return Err(bad("unexpected text after '{value}'"));
        }
        let left = self.text(left)?;
        let right = self.text(right)?;
        if compare(op, left.trim(), right.trim()).map_err(|reason| bad(&reason))? {
            self.text(then)
        } else {
            self.text(other)
        }
    }

    fn is_non_empty(&self, name: &str) -> bool {
        self.lookup.raw(name).is_some_and(|v| !v.is_empty())
    }

    fn value_of(&mut self, name: &str) -> Result<String, ExpandError> {
        let Some(raw) = self.lookup.raw(name) else {
            if !self.undefined.iter().any(|n| n == name) {
                self.undefined.push(name.to_string());
            }
            return Ok(String::new());
        };
        if self.stack.iter().any(|n| n == name) {
            return Err(ExpandError::Loop(self.stack[0].clone()));
        }
        self.stack.push(name.to_string());
        let value = self.text(&raw);
        self.stack.pop();
        value
    }
}

fn compare(op: &str, left: &str, right: &str) -> Result<bool, String> {
    if let Some(op) = op.strip_suffix("level") {
        let l = parse_level(left)?;
        let r = parse_level(right)?;
        return Ok(ordered(op, l.cmp(&r)));
    }
    match op {
        "==" => return Ok(left == right),
        "!=" => return Ok(left != right),
        _ => {}
    }
    let number = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| format!("\"{s}\" is not a number"))
    };
    Ok(ordered(op, number(left)?.cmp(&number(right)?)))
}

fn ordered(op: &str, ord: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    matches!(
        (op, ord),
        ("<", Less) | ("<=", Less | Equal) | (">", Greater) | (">=", Greater | Equal)
    )
}

/// A compatibility level `major[.minor[.patch]]`, compared part by part.
pub fn parse_level(text: &str) -> Result<(u32, u32, u32), String> {
    let mut parts = [0u32; 3];
    let fields: Vec<&str> = text.split('.').collect();
    if fields.is_empty() || fields.len() > 3 {
        return Err(format!("bad compatibility level \"{text}\""));
    }
    for (slot, field) in parts.iter_mut().zip(&fields) {
        *slot = field
            .parse()
            .map_err(|_| format!("bad compatibility level \"{text}\""))?;
    }
    Ok((parts[0], parts[1], parts[2]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Map(HashMap<&'static str, &'static str>);

    impl Lookup for Map {
        fn raw(&self, name: &str) -> Option<Cow<'_, str>> {
            self.0.get(name).map(|v| Cow::Borrowed(*v))
        }
    }

    fn map(pairs: &[(&'static str, &'static str)]) -> Map {
        Map(pairs.iter().copied().collect())
    }

    fn x(text: &str, m: &Map) -> String {
        expand(text, m).unwrap().value
    }

    #[test]
    fn plain_forms() {
        let m = map(&[("a", "A"), ("b", "$a-B"), ("empty", "")]);
        assert_eq!(x("$a ${a} $(a) $b", &m), "A A A A-B");
        assert_eq!(x("x$a.y", &m), "xA.y");
        assert_eq!(x("cost $$5", &m), "cost $5");
        assert_eq!(x("trailing $", &m), "trailing $");
        assert_eq!(x("${empty}|", &m), "|");
    }

    #[test]
    fn undefined_names_expand_empty_and_are_reported() {
        let m = map(&[]);
        let e = expand("<$nope><${nope}>", &m).unwrap();
        assert_eq!(e.value, "<><>");
        assert_eq!(e.undefined, vec!["nope"]);
    }

    #[test]
    fn conditional_forms() {
        let m = map(&[("set", "v"), ("empty", ""), ("n", "10")]);
        assert_eq!(x("${set?yes}", &m), "yes");
        assert_eq!(x("${empty?yes}", &m), "");
        assert_eq!(x("${nope?yes}", &m), "");
        assert_eq!(x("${set:no}", &m), "");
        assert_eq!(x("${empty:no}", &m), "no");
        assert_eq!(x("${set?{$n}:{300}}s", &m), "10s");
        assert_eq!(x("${empty?{$n}:{300}}s", &m), "300s");
        assert_eq!(x("${nope:{x y}}", &m), "x y");
        assert_eq!(x("$(set?{a}:{b})", &m), "a");
    }

    #[test]
    fn relational_forms() {
        let m = map(&[("compatibility_level", "3.6"), ("zero", "0")]);
        let style = "${{$compatibility_level} <level {2} ? {subnet} : {host}}";
        assert_eq!(x(style, &m), "host");
        let old = map(&[("compatibility_level", "0")]);
        assert_eq!(x(style, &old), "subnet");
        assert_eq!(
            x("${{$compatibility_level} >=level {3.6} ? {y} : {n}}", &m),
            "y"
        );
        assert_eq!(
            x("${{$compatibility_level} >level {3.6} ? {y} : {n}}", &m),
            "n"
        );
        assert_eq!(
            x("${{$compatibility_level} <=level {3.6.0} ? {y} : {n}}", &m),
            "y"
        );
        assert_eq!(x("${{a} == {a} ? {eq} : {ne}}", &m), "eq");
        assert_eq!(x("${{a} != {a} ? {eq} : {ne}}", &m), "ne");
        assert_eq!(x("${{10} < {9} ? {lt} : {ge}}", &m), "ge");
        assert_eq!(x("${{$zero} <= {0} ? {le} : {gt}}", &m), "le");
        assert_eq!(x("${{3}>{2}?{gt}:{le}}", &m), "gt");
    }

    #[test]
    fn relational_errors() {
        let m = map(&[]);
        for bad in [
            "${{a} < {b} ? {x} : {y}}",
            "${{a} ~ {b} ? {x} : {y}}",
            "${{a} == {b} {x} : {y}}",
            "${{a} == {b} ? {x} {y}}",
            "${{a} == {b} ? {x} : {y} junk}",
            "${{x.y} <level {2} ? {a} : {b}}",
            "${unclosed",
            "${}",
            "${name!x}",
        ] {
            assert!(
                matches!(expand(bad, &m), Err(ExpandError::Syntax { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn loops_are_reported_not_followed() {
        let m = map(&[("a", "$b"), ("b", "x $a")]);
        assert_eq!(expand("$a", &m), Err(ExpandError::Loop("a".into())));
        let me = map(&[("self", "${self?{x}:{y}} $self")]);
        assert_eq!(expand("$self", &me), Err(ExpandError::Loop("self".into())));
        let err = expand("$a", &m).unwrap_err();
        assert_eq!(err.to_string(), "unreasonable macro call nesting: \"a\"");
    }

    #[test]
    fn repeated_reference_is_not_a_loop() {
        let m = map(&[("a", "1"), ("b", "$a$a")]);
        assert_eq!(x("$b $b", &m), "11 11");
    }

    #[test]
    fn references_are_listed() {
        assert_eq!(
            references("$a, ${b}, $(c), ${d?{x}}, $$f, ${{$e} == {1} ? {} : {}}"),
            vec!["a", "b", "c", "d", "e"]
        );
    }

    #[test]
    fn levels() {
        assert_eq!(parse_level("3.6"), Ok((3, 6, 0)));
        assert_eq!(parse_level("2"), Ok((2, 0, 0)));
        assert!(parse_level("3.x").is_err());
        assert!(parse_level("").is_err());
    }
}
