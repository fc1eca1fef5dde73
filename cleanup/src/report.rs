//! The log line for a header_checks/body_checks action, in Postfix's
//! form (log analyzers parse it):
//!
//! ```text
//! 4A1B2C3D: reject: header Subject: buy now from localhost[127.0.0.1]; from=<a@example.com> to=<b@example.com> proto=ESMTP helo=<client.example>: 5.7.1 message content rejected
//! ```

/// Who sent the message, from the attributes the client gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// `name[address]` for a network client, `local` for pickup.
    pub origin: String,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub protocol: Option<String>,
    pub helo: Option<String>,
}

/// How much of the header or body line is shown.
const CONTENT_SHOWN: usize = 200;

/// `ID: ACTION: CLASS CONTENT from ORIGIN; from=<..> to=<..> proto=..
/// helo=<..>: TEXT`; the parts that are unknown are left out.
pub fn action_line(
    queue_id: &str,
    action: &str,
    class: &str,
    content: &str,
    origin: &Origin,
    text: &str,
) -> String {
    let shown: String = content.chars().take(CONTENT_SHOWN).collect();
    let mut line = format!(
        "{queue_id}: {action}: {class} {shown} from {};",
        origin.origin
    );
    if let Some(sender) = &origin.sender {
        line.push_str(&format!(" from=<{sender}>"));
    }
    if let Some(recipient) = &origin.recipient {
        line.push_str(&format!(" to=<{recipient}>"));
    }
    if let Some(protocol) = &origin.protocol {
        line.push_str(&format!(" proto={protocol}"));
    }
    if let Some(helo) = &origin.helo {
        line.push_str(&format!(" helo=<{helo}>"));
    }
    if !text.is_empty() {
        line.push_str(": ");
        line.push_str(text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_client_line() {
        let origin = Origin {
            origin: "localhost[127.0.0.1]".into(),
            sender: Some("a@example.com".into()),
            recipient: Some("b@example.com".into()),
            protocol: Some("ESMTP".into()),
            helo: Some("client.example".into()),
        };
        assert_eq!(
            action_line(
                "4A1B2C3D",
                "reject",
                "header",
                "Subject: buy now",
                &origin,
                "5.7.1 message content rejected"
            ),
            "4A1B2C3D: reject: header Subject: buy now from localhost[127.0.0.1]; \
             from=<a@example.com> to=<b@example.com> proto=ESMTP helo=<client.example>: \
             5.7.1 message content rejected"
        );
    }

    #[test]
    fn local_line_without_text_and_long_content() {
        let origin = Origin {
            origin: "local".into(),
            sender: Some(String::new()),
            ..Origin::default()
        };
        let long = "x".repeat(300);
        let line = action_line("ID", "warning", "body", &long, &origin, "");
        assert_eq!(
            line,
            format!("ID: warning: body {} from local; from=<>", "x".repeat(200))
        );
    }
}
