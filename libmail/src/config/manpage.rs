//! The postconf(5) manual page, generated from the parameter registry at
//! build time (`make` runs the `postconf5` example), so the page lists
//! exactly the parameters, types and defaults the programs use.

use super::param::{DefaultValue, ParamType};
use super::registry::PARAMETERS;

/// Escapes text for roff: backslashes, and a leading `.` or `'` that would
/// otherwise start a request.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

fn type_name(kind: ParamType) -> String {
    match kind {
        ParamType::Str => "string".into(),
        ParamType::Bool => "boolean (yes or no)".into(),
        ParamType::Int => "integer".into(),
        ParamType::Time(unit) => format!("time (s, m, h, d, w; default unit {unit})"),
        ParamType::Size => "size in bytes".into(),
        ParamType::List => "list (separated by commas or white space)".into(),
    }
}

/// The whole page, in roff.
pub fn postconf5(version: &str) -> String {
    let mut page = String::new();
    page.push_str(&format!(
        ".TH POSTCONF 5 \"\" \"postfix-rs {version}\" \"File Formats\"\n"
    ));
    page.push_str(
        ".SH NAME\npostconf \\- Postfix configuration parameters\n\
         .SH SYNOPSIS\n.B postconf \\-d\n.br\n.B postconf \\-n\n\
         .SH DESCRIPTION\n\
         The file main.cf holds the parameters below as \\fIname = value\\fR lines.\n\
         A line that starts with white space continues the previous line; blank\n\
         lines and lines whose first non-blank character is # are ignored. The\n\
         last definition of a name wins. A value may refer to other parameters as\n\
         $name, ${name} or $(name); ${name?value} and ${name:value} expand to value\n\
         when name is non-empty or empty, and ${{a} == {b} ? {x} : {y}} compares\n\
         text, numbers (<, <=, >, >=) or compatibility levels (<level, >=level...).\n\
         References are expanded when a program uses the value.\n\
         .PP\nUse \\fBpostconf \\-e\\fR to change a value and \\fBpostconf \\-n\\fR to\n\
         list the values that differ from the defaults.\n\
         .SH PARAMETERS\n",
    );
    for param in PARAMETERS {
        let default = match param.default {
            DefaultValue::Fixed("") => "empty".to_string(),
            DefaultValue::Fixed(text) => roff(text),
            DefaultValue::Computed => "see \\fBpostconf \\-d\\fR output".to_string(),
        };
        page.push_str(&format!(
            ".SS {} (default: {default})\n{}\n.br\nType: {}.\n",
            param.name,
            roff(param.description),
            type_name(param.kind)
        ));
    }
    page.push_str(".SH SEE ALSO\npostconf(1)\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_has_a_section() {
        let page = postconf5("0.0");
        assert!(page.starts_with(".TH POSTCONF 5"));
        for param in PARAMETERS {
            assert!(
                page.contains(&format!(".SS {} (default: ", param.name)),
                "{} missing",
                param.name
            );
        }
        assert!(page.contains(".SS maximal_queue_lifetime (default: 5d)"));
        assert!(page.contains(".SS myhostname (default: see \\fBpostconf \\-d\\fR output)"));
    }

    #[test]
    fn roff_escapes() {
        assert_eq!(roff("a\\b"), "a\\eb");
        assert_eq!(roff(".x"), "\\&.x");
        assert_eq!(roff("-o"), "\\-o");
    }
}
