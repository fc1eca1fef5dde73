//! How postconf prints `name = value`: white space runs shown as one space,
//! and with `-f` long lines folded at 80 columns with a 4-space indent.

const LINE_LIMIT: usize = 80;

/// Joins the words of `value` after `head` (`name = ` or nothing), folded
/// when asked.
pub fn format_line(head: &str, value: &str, fold: bool) -> String {
    let mut out = head.to_string();
    let mut line_start = 0;
    for (i, word) in value.split_whitespace().enumerate() {
        let line_len = out.len() - line_start;
        let at_line_start = i == 0 && head.is_empty();
        if !at_line_start && fold && line_len + 1 + word.len() > LINE_LIMIT {
            out.push_str("\n    ");
            line_start = out.len() - 4;
        } else if i > 0 || !head.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// `name = value`, or `name =` for an empty value.
pub fn parameter(name: &str, value: &str, fold: bool) -> String {
    format_line(&format!("{name} ="), value, fold)
}

/// One line of output as `-h` (value only), `-H` (name only) or neither
/// asks; the same for parameters and for master.cf fields.
pub fn entry(options: &crate::Options, name: &str, value: &str) -> String {
    if options.names_only {
        name.to_string()
    } else if options.values_only {
        format_line("", value, options.fold)
    } else {
        parameter(name, value, options.fold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_is_normalized() {
        assert_eq!(
            parameter("a", "one\t\ttwo   three", false),
            "a = one two three"
        );
        assert_eq!(parameter("empty", "", false), "empty =");
        assert_eq!(format_line("", "x  y", false), "x y");
    }

    #[test]
    fn folding_at_80_columns() {
        let value = "$myhostname, localhost.$mydomain, localhost, a.very.long.domain.example.com, another.very.long.domain.example.org, third.example.net";
        assert_eq!(
            parameter("mydestination", value, true),
            "mydestination = $myhostname, localhost.$mydomain, localhost,\n    a.very.long.domain.example.com, another.very.long.domain.example.org,\n    third.example.net"
        );
        assert_eq!(parameter("mydestination", value, false).lines().count(), 1);
        let long = "x".repeat(74);
        assert_eq!(
            parameter("command_expansion_filter", &long, true),
            format!("command_expansion_filter =\n    {long}")
        );
        assert_eq!(format_line("", &long, true), long);
    }
}
