//! Addresses as a user writes them on the sendmail command line: RFC 822
//! address lists (`a@x, "B" <b@y>`, `list: c@z, d@z;`), from which the
//! bare addresses are taken, with quotes and comments removed (Postfix's
//! internal form).

/// The addresses in one command-line word, in order.
pub fn address_list(text: &str) -> Vec<String> {
    split_top_level(text)
        .iter()
        .filter_map(|item| one_address(item))
        .collect()
}

/// The first address in `text` (for `-f`), and whether there were more.
pub fn first_address(text: &str) -> (String, bool) {
    let all = address_list(text);
    let more = all.len() > 1;
    (all.into_iter().next().unwrap_or_default(), more)
}

/// Splits at commas (and group punctuation) outside quotes, comments and
/// angle brackets; a group's display name (`name:`) is dropped.
fn split_top_level(text: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut escaped, mut comment, mut angle) = (false, false, 0usize, false);
    for c in text.chars() {
        if escaped {
            escaped = false;
            current.push(c);
            continue;
        }
        match c {
            '\\' if quoted || comment > 0 => {
                escaped = true;
                current.push(c);
                continue;
            }
            '"' if comment == 0 => quoted = !quoted,
            '(' if !quoted => comment += 1,
            ')' if !quoted && comment > 0 => comment -= 1,
            '<' if !quoted && comment == 0 => angle = true,
            '>' if !quoted && comment == 0 => angle = false,
            ',' | ';' if !quoted && comment == 0 && !angle => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            ':' if !quoted && comment == 0 && !angle => {
                // A group's name: what came before is not an address.
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current);
    items
}

/// The address in one list item: inside `<...>` if there is one, else the
/// item without comments; `None` for an empty item.
fn one_address(item: &str) -> Option<String> {
    let plain = strip_comments(item);
    let inner = match (plain.find('<'), plain.rfind('>')) {
        (Some(open), Some(close)) if open < close => {
            let route_free = plain[open + 1..close].trim();
            // A source route (`@a,@b:user@c`) is dropped, as Postfix does.
            match route_free.starts_with('@') {
                true => route_free.rsplit(':').next().unwrap_or("").to_string(),
                false => route_free.to_string(),
            }
        }
        _ => {
            let trimmed = plain.trim();
            if trimmed.is_empty() {
                return None;
            }
            trimmed.to_string()
        }
    };
    Some(unquote(&inner))
}

fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    let (mut quoted, mut escaped, mut depth) = (false, false, 0usize);
    for c in text.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' if quoted || depth > 0 => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
                continue;
            }
            '"' if depth == 0 => quoted = !quoted,
            '(' if !quoted => {
                depth += 1;
                continue;
            }
            ')' if !quoted && depth > 0 => {
                depth -= 1;
                continue;
            }
            _ => {}
        }
        if depth == 0 {
            out.push(c);
        }
    }
    out
}

/// `"a b"@x` becomes `a b@x`; white space outside quotes goes away.
fn unquote(address: &str) -> String {
    let mut out = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in address.chars() {
        if escaped {
            escaped = false;
            out.push(c);
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_comma_separated() {
        assert_eq!(address_list("bob"), ["bob"]);
        assert_eq!(address_list("a@x, b@y"), ["a@x", "b@y"]);
        assert_eq!(address_list(" a@x ,, "), ["a@x"]);
    }

    #[test]
    fn display_names_comments_and_quotes() {
        assert_eq!(address_list("Bob Smith <bob@x>"), ["bob@x"]);
        assert_eq!(
            address_list("\"Smith, Bob\" <bob@x>, c@y"),
            ["bob@x", "c@y"]
        );
        assert_eq!(address_list("bob@x (Bob, the builder)"), ["bob@x"]);
        assert_eq!(address_list("\"a b\"@x"), ["a b@x"]);
        assert_eq!(address_list("<@relay:user@x>"), ["user@x"]);
    }

    #[test]
    fn groups_and_nothing() {
        assert_eq!(address_list("team: a@x, b@y;"), ["a@x", "b@y"]);
        assert!(address_list("undisclosed-recipients:;").is_empty());
        assert!(address_list("").is_empty());
        assert_eq!(address_list("<>"), [""]);
    }

    #[test]
    fn first_of_a_sender() {
        assert_eq!(first_address("Joe <joe@x>"), ("joe@x".to_string(), false));
        assert_eq!(first_address("a@x, b@y"), ("a@x".to_string(), true));
        assert_eq!(first_address("<>"), (String::new(), false));
        assert_eq!(first_address(""), (String::new(), false));
    }
}
