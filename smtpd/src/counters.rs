//! Per-command counters for the `disconnect from` summary line, in the
//! order and format of Postfix's: `ehlo=1 mail=1 rcpt=0/1 ... commands=3/4`.

/// The commands Postfix counts, in its command table order.
pub const NAMES: &[&str] = &[
    "helo", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "bdat", "rset", "noop", "vrfy",
    "etrn", "quit", "unknown",
];

#[derive(Debug, Clone, Default)]
pub struct Counters {
    ok: [u32; NAMES.len()],
    total: [u32; NAMES.len()],
}

impl Counters {
    /// Counts one command by its lower-case name (anything else is `unknown`).
    pub fn count(&mut self, name: &str, ok: bool) {
        let i = NAMES
            .iter()
            .position(|n| *n == name)
            .unwrap_or(NAMES.len() - 1);
        self.total[i] += 1;
        self.ok[i] += u32::from(ok);
    }

    /// ` ehlo=1 rcpt=0/1 commands=1/2` (with the leading space).
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (i, name) in NAMES.iter().enumerate() {
            if self.total[i] > 0 {
                out.push_str(&format!(" {name}={}", ratio(self.ok[i], self.total[i])));
            }
        }
        let ok: u32 = self.ok.iter().sum();
        let total: u32 = self.total.iter().sum();
        let commands = match total > 0 && ok == total {
            true => ok.to_string(),
            false => format!("{ok}/{total}"),
        };
        out.push_str(&format!(" commands={commands}"));
        out
    }
}

fn ratio(ok: u32, total: u32) -> String {
    match ok == total {
        true => ok.to_string(),
        false => format!("{ok}/{total}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_order_and_ratios() {
        let mut c = Counters::default();
        for (name, ok) in [
            ("quit", true),
            ("ehlo", true),
            ("rcpt", false),
            ("rcpt", true),
            ("XYZ", false),
            ("mail", true),
        ] {
            c.count(name, ok);
        }
        assert_eq!(
            c.summary(),
            " ehlo=1 mail=1 rcpt=1/2 quit=1 unknown=0/1 commands=4/6"
        );
    }

    #[test]
    fn nothing_counted() {
        assert_eq!(Counters::default().summary(), " commands=0/0");
    }
}
