//! The maildrop queue's contract between postdrop(1), which writes a file
//! there for an untrusted user, and pickup(8), which replays it into
//! cleanup: which named attributes a submitter may set, and how the
//! submitter's cleanup request flags travel in the file.
//!
//! A maildrop file is an ordinary queue file (libmail::queue) whose content
//! is all body records: header and body are told apart by cleanup, as in
//! Postfix. The submitting user is the file's owner, never anything the
//! file says.

use crate::queue::attr;

/// The named attribute that carries the submitter's cleanup flags.
pub const FLAGS: &str = "flags";
/// Its value for `sendmail -t`: take recipients from the headers.
pub const EXTRACT: &str = "extract";

/// Attributes a local submitter may set; anything else in a submission is
/// dropped with a warning by postdrop and ignored by pickup, so that a
/// user cannot pose as an SMTP client or skip content inspection.
const SUBMITTER_ATTRIBUTES: [&str; 3] = [attr::REWRITE_CONTEXT, attr::ENCODING, FLAGS];

/// Whether a submitter may set the named attribute.
pub fn is_submitter_attribute(name: &str) -> bool {
    SUBMITTER_ATTRIBUTES.contains(&name)
}

/// Whether a flags value asks for recipient extraction.
pub fn wants_extract(flags: &str) -> bool {
    flags.split(',').any(|word| word.trim() == EXTRACT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_submission_attributes_pass() {
        assert!(is_submitter_attribute("rewrite_context"));
        assert!(is_submitter_attribute("encoding"));
        assert!(is_submitter_attribute(FLAGS));
        assert!(!is_submitter_attribute("client_address"));
        assert!(!is_submitter_attribute("sasl_username"));
        assert!(!is_submitter_attribute("log_ident"));
    }

    #[test]
    fn extract_flag_is_recognized_in_a_list() {
        assert!(wants_extract("extract"));
        assert!(wants_extract("filter, extract"));
        assert!(!wants_extract(""));
        assert!(!wants_extract("extracted"));
    }
}
