//! The content of one message, line by line: header fields gathered and
//! inspected (header_checks, hop count, Message-Id logging, address
//! rewriting, removal of message_drop_headers, `sendmail -t`
//! extraction), missing headers added at the end of the header section,
//! body lines inspected with body_checks, and what the check actions do.

use libmail::cleanup::Outcome;
use libmail::header_checks::{Action, Class};
use libmail::msg;

use crate::envelope::{Context, Role};
use crate::headers::{self, AddressKind, Fed};
use crate::message::{Message, StreamError};
use crate::report;

/// What a check decided for the header field or body line.
enum Verdict {
    Keep,
    Drop,
    Replace(String),
}

impl Message<'_> {
    /// One content line, without its line end.
    pub(crate) fn line(&mut self, line: &[u8]) -> Result<(), StreamError> {
        if self.failure.is_some() {
            return Ok(());
        }
        self.size += line.len() as u64 + 1;
        let limit = self.settings.message_size_limit;
        if limit > 0 && self.size > limit {
            self.fail(Outcome::Rejected {
                code: 552,
                enhanced: "5.3.4".into(),
                text: "Error: message file too big".into(),
            });
            return Ok(());
        }
        if self.in_body {
            return self.body_line(line);
        }
        match self.gatherer.feed(line) {
            Fed::Pending => Ok(()),
            Fed::Field(field) => self.header(field),
            Fed::End(field) => {
                if let Some(field) = field {
                    self.header(field)?;
                }
                self.end_of_headers()?;
                // The empty line between header and body is not body
                // text; one is supplied when the body starts without it.
                self.write(|w| w.body(b"\n"))?;
                match line.is_empty() {
                    true => Ok(()),
                    false => self.body_line(line),
                }
            }
        }
    }

    /// One complete header field, continuation lines included.
    pub(crate) fn header(&mut self, field: Vec<u8>) -> Result<(), StreamError> {
        if self.failure.is_some() {
            return Ok(());
        }
        let mut field = field;
        if self.checks_on && self.tables.header_checks.is_some() {
            match self.check(Class::Header, &field)? {
                Verdict::Keep => {}
                Verdict::Drop => return Ok(()),
                Verdict::Replace(text) => field = text.into_bytes(),
            }
        }
        self.primary_header(field)
    }

    /// What cleanup does with every primary header field.
    fn primary_header(&mut self, field: Vec<u8>) -> Result<(), StreamError> {
        let Some((name, value)) = headers::name_and_value(&field) else {
            return self.put_header(&field);
        };
        let value = String::from_utf8_lossy(value).into_owned();
        if name == "received" {
            self.hops += 1;
            let limit = self.settings.hopcount_limit;
            if limit > 0 && self.hops >= limit {
                self.fail(Outcome::Rejected {
                    code: 554,
                    enhanced: "5.4.0".into(),
                    text: "Error: too many hops".into(),
                });
                return Ok(());
            }
        }
        self.note_header(&name, value.trim());
        if self.flags.extract {
            match name.as_str() {
                "to" | "cc" | "bcc" => self.extracted.extend(headers::addresses(&value)),
                "resent-to" | "resent-cc" | "resent-bcc" => {
                    self.extracted_resent.extend(headers::addresses(&value))
                }
                _ => {}
            }
        }
        if self.settings.drop_headers.contains(&name) {
            return Ok(());
        }
        let field = match self.rewrite_header(&name, &field, &value) {
            Some(rewritten) => rewritten,
            None => field,
        };
        self.put_header(&field)
    }

    /// Remembers which headers there are; logs the Message-Id.
    fn note_header(&mut self, name: &str, value: &str) {
        let seen = &mut self.seen;
        if name.starts_with("resent-") {
            seen.resent = true;
        }
        match name {
            "message-id" => {
                seen.message_id = true;
                msg::info(format!("{}: message-id={value}", self.queue_id));
            }
            "resent-message-id" => {
                seen.resent_message_id = true;
                msg::info(format!("{}: resent-message-id={value}", self.queue_id));
            }
            "date" => seen.date = true,
            "resent-date" => seen.resent_date = true,
            "from" => seen.from = true,
            "resent-from" => seen.resent_from = true,
            "to" | "cc" => seen.to_or_cc = true,
            "resent-to" | "resent-cc" => seen.resent_to_or_cc = true,
            _ => {}
        }
    }

    /// The rewriting context for headers: local mail always; remote mail
    /// only when remote_header_rewrite_domain is set.
    fn header_context(&self) -> Option<Context> {
        if self.rewrite_local {
            Some(Context::Local)
        } else if !self.settings.remote_domain.is_empty() {
            Some(Context::Remote)
        } else {
            None
        }
    }

    /// An address header with its addresses rewritten, if any changed.
    fn rewrite_header(&mut self, name: &str, field: &[u8], value: &str) -> Option<Vec<u8>> {
        let context = self.header_context()?;
        let role = match headers::address_kind(name)? {
            AddressKind::Sender => Role::HeaderSender,
            AddressKind::Recipient => Role::HeaderRecipient,
        };
        // Non-UTF-8 values are left alone rather than rewritten lossily.
        let colon = field.iter().position(|&b| b == b':')?;
        std::str::from_utf8(&field[colon + 1..]).ok()?;
        let rewritten = headers::rewrite_addresses(value, |address| {
            self.rewrite(address, role, context).ok_or(())
        });
        let new_value = rewritten.ok()??;
        let mut out = field[..colon + 1].to_vec();
        out.extend_from_slice(new_value.as_bytes());
        Some(out)
    }

    fn put_header(&mut self, field: &[u8]) -> Result<(), StreamError> {
        let mut text = Vec::with_capacity(field.len() + 1);
        text.extend_from_slice(field);
        text.push(b'\n');
        self.write(|w| w.header(&text))
    }

    /// The header section is complete: the headers Postfix adds when
    /// they are missing, and the Message-Id log line.
    pub(crate) fn end_of_headers(&mut self) -> Result<(), StreamError> {
        if std::mem::replace(&mut self.headers_done, true) {
            return Ok(());
        }
        self.in_body = true;
        if self.failure.is_some() {
            return Ok(());
        }
        let add = self.rewrite_local || self.settings.always_add_missing_headers;
        let resent = self.seen.resent;
        let prefix = if resent { "Resent-" } else { "" };
        let (has_id, has_date, has_from, has_to) = match resent {
            true => (
                self.seen.resent_message_id,
                self.seen.resent_date,
                self.seen.resent_from,
                self.seen.resent_to_or_cc,
            ),
            false => (
                self.seen.message_id,
                self.seen.date,
                self.seen.from,
                self.seen.to_or_cc,
            ),
        };
        if add && !has_id {
            let id = headers::message_id(self.created(), &self.queue_id, &self.settings.myhostname);
            self.put_header(format!("{prefix}Message-Id: {id}").as_bytes())?;
            let what = if resent {
                "resent-message-id"
            } else {
                "message-id"
            };
            msg::info(format!("{}: {what}={id}", self.queue_id));
            self.seen.message_id |= !resent;
        }
        if !self.seen.message_id {
            msg::info(format!("{}: message-id=<>", self.queue_id));
        }
        if add && !has_date {
            let date = libmail::mail_date::mail_date(self.arrival);
            self.put_header(format!("{prefix}Date: {date}").as_bytes())?;
        }
        if add && !has_from {
            let sender = self.sender.clone().unwrap_or_default();
            let from = headers::from_value(
                &sender,
                self.fullname.as_deref(),
                self.settings.obsolete_from_format,
            );
            self.put_header(format!("{prefix}From: {from}").as_bytes())?;
        }
        let undisclosed = self.settings.undisclosed_recipients_header.trim();
        if add && !has_to && !undisclosed.is_empty() {
            let field = undisclosed.as_bytes().to_vec();
            self.put_header(&field)?;
        }
        Ok(())
    }

    /// One body line (the separator line excluded).
    fn body_line(&mut self, line: &[u8]) -> Result<(), StreamError> {
        if self.failure.is_some() {
            return Ok(());
        }
        let inspect = self.checks_on
            && self.tables.body_checks.is_some()
            && self.body_inspected < self.settings.body_checks_size_limit;
        let mut replaced = None;
        if inspect {
            self.body_inspected += line.len() + 1;
            match self.check(Class::Body, line)? {
                Verdict::Keep => {}
                Verdict::Drop => return Ok(()),
                Verdict::Replace(text) => replaced = Some(text.into_bytes()),
            }
        }
        let line = replaced.as_deref().unwrap_or(line);
        let mut text = Vec::with_capacity(line.len() + 1);
        text.extend_from_slice(line);
        text.push(b'\n');
        self.write(|w| w.body(&text))
    }

    /// Looks the input up in header_checks or body_checks and acts.
    fn check(&mut self, class: Class, input: &[u8]) -> Result<Verdict, StreamError> {
        let text = String::from_utf8_lossy(input).into_owned();
        let checks = match class {
            Class::Header => self.tables.header_checks.as_mut(),
            Class::Body => self.tables.body_checks.as_mut(),
        };
        let Some(checks) = checks else {
            return Ok(Verdict::Keep);
        };
        match checks.check(&text, class) {
            Ok(None) => Ok(Verdict::Keep),
            Ok(Some(Ok(action))) => self.act(action, class, &text),
            Ok(Some(Err(bad))) => {
                msg::warning(bad);
                Ok(Verdict::Keep)
            }
            Err(err) => {
                self.tempfail(err);
                Ok(Verdict::Drop)
            }
        }
    }

    /// Does what a check action says, and logs it as Postfix does.
    fn act(&mut self, action: Action, class: Class, content: &str) -> Result<Verdict, StreamError> {
        let log = |m: &Message, what: &str, text: &str| {
            let line =
                report::action_line(&m.queue_id, what, class.name(), content, &m.origin(), text);
            msg::info(line);
        };
        match action {
            Action::Reject { enhanced, text } => {
                log(self, "reject", &format!("{enhanced} {text}"));
                let code = if enhanced.starts_with('4') { 451 } else { 550 };
                self.fail(Outcome::Rejected {
                    code,
                    enhanced,
                    text,
                });
            }
            Action::Warn(text) => log(self, "warning", &text),
            Action::Info(text) => log(self, "info", &text),
            Action::Discard(text) => {
                log(self, "discard", &text);
                self.discard = true;
                self.hold = false;
                self.checks_on = false;
            }
            Action::Hold(text) => {
                if !self.hold && !self.discard {
                    log(self, "hold", &text);
                    self.hold = true;
                }
            }
            Action::Filter(target) => {
                log(self, "filter", &target);
                self.filter = Some(target);
            }
            Action::Redirect(target) => {
                log(self, "redirect", &target);
                self.redirect = Some(target);
                self.checks_on = false;
            }
            Action::Bcc(address) => {
                log(self, "bcc", &address);
                self.bcc.push(address);
            }
            Action::Prepend(text) => {
                log(self, "prepend", &text);
                match class {
                    Class::Header => self.put_header(text.as_bytes())?,
                    Class::Body => {
                        let line = format!("{text}\n");
                        self.write(|w| w.body(line.as_bytes()))?
                    }
                }
            }
            Action::Replace(text) => {
                log(self, "replace", &text);
                return Ok(Verdict::Replace(text));
            }
            Action::Ignore => return Ok(Verdict::Drop),
            Action::Dunno => {}
        }
        Ok(Verdict::Keep)
    }
}
