//! `$name` expansion of forward_path and mailbox_command with local(8)'s
//! delivery attributes (`$user`, `$home`, `$extension`, ...): `$name`,
//! `${name}`, `${name?text}` (text when name is not empty) and
//! `${name:text}` (text when it is empty). Names that are not delivery
//! attributes stay as written, so `"$EXTENSION"` in mailbox_command is
//! left for the shell.

/// The attributes of one delivery, by name.
#[derive(Debug, Clone, Default)]
pub struct Attributes {
    pub pairs: Vec<(&'static str, String)>,
}

impl Attributes {
    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Expands `text`; `filter` lists the characters an expanded value may
/// hold (`forward_expansion_filter`), others become `_`.
pub fn expand(text: &str, attrs: &Attributes, filter: &str) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        match expand_one(rest, attrs, filter) {
            Some((value, used)) => {
                out.push_str(&value);
                rest = &rest[used..];
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
    out
}

/// One reference after its `$`: the replacement and how much of `rest`
/// it took; `None` leaves the `$` as text.
fn expand_one(rest: &str, attrs: &Attributes, filter: &str) -> Option<(String, usize)> {
    if let Some(inner) = rest.strip_prefix('{') {
        let end = inner.find('}')?;
        let body = &inner[..end];
        let name_len = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(body.len());
        let (name, tail) = body.split_at(name_len);
        let value = attrs.get(name)?;
        let replaced = match tail.chars().next() {
            None => clean(value, filter),
            Some('?') if !value.is_empty() => expand(&tail[1..], attrs, filter),
            Some(':') if value.is_empty() => expand(&tail[1..], attrs, filter),
            Some('?' | ':') => String::new(),
            Some(_) => return None,
        };
        return Some((replaced, end + 2));
    }
    let name_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let value = attrs.get(&rest[..name_len])?;
    Some((clean(value, filter), name_len))
}

fn clean(value: &str, filter: &str) -> String {
    if filter.is_empty() {
        return value.to_string();
    }
    value
        .chars()
        .map(|c| if filter.contains(c) { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILTER: &str =
        "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

    fn attrs(extension: &str, delimiter: &str) -> Attributes {
        Attributes {
            pairs: vec![
                ("user", "bob".into()),
                ("home", "/home/bob".into()),
                ("extension", extension.into()),
                ("recipient_delimiter", delimiter.into()),
            ],
        }
    }

    #[test]
    fn forward_path_default() {
        let path = "$home/.forward${recipient_delimiter}${extension}, $home/.forward";
        assert_eq!(
            expand(path, &attrs("", ""), FILTER),
            "/home/bob/.forward, /home/bob/.forward"
        );
        assert_eq!(
            expand(path, &attrs("list", "+"), FILTER),
            "/home/bob/.forward+list, /home/bob/.forward"
        );
    }

    #[test]
    fn conditionals_and_unknown_names() {
        let a = attrs("x", "+");
        assert_eq!(expand("${extension?+$extension}", &a, FILTER), "+x");
        assert_eq!(expand("${extension:none}", &a, FILTER), "");
        let none = attrs("", "");
        assert_eq!(expand("${extension:none}", &none, FILTER), "none");
        assert_eq!(
            expand("procmail -a \"$EXTENSION\" $user", &a, FILTER),
            "procmail -a \"$EXTENSION\" bob"
        );
        assert_eq!(expand("cost $5 ${", &a, FILTER), "cost $5 ${");
    }

    #[test]
    fn values_are_filtered() {
        let a = attrs("a;rm -rf", "+");
        assert_eq!(expand("$extension", &a, FILTER), "a_rm_-rf");
    }
}
