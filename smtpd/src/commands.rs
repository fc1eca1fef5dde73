//! The SMTP commands: parsing a command line, Postfix's checks in Postfix's
//! order, and Postfix's reply texts. DATA and BDAT hand over to content.rs.

use std::borrow::Cow;

use crate::address::{parse_path, split_path, Address, Path};
use crate::data::DataReader;
use crate::params::{parse_mail, parse_rcpt, Offered};
use crate::policy::{Decision, Disposition, Etrn, Policy};
use crate::reply::Reply;
use crate::session::{Input, Io, Session, Transaction};

/// Commands after which RFC 2920 forbids more pipelined input.
const GROUP_LAST: &[&str] = &[
    "HELO", "EHLO", "DATA", "NOOP", "VRFY", "ETRN", "STARTTLS", "AUTH",
];

/// Commands Postfix knows (the others are `unknown`).
const KNOWN: &[&str] = &[
    "HELO", "EHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "VRFY",
    "ETRN", "QUIT",
];

/// The most pending input an "improper command pipelining" line shows.
const PIPELINING_LOG_MAX: usize = 100;

/// Handles one command line (without its line end). `crlf`: it ended in
/// `<CR><LF>`; `pending`: input that followed it in the same read.
pub(crate) fn dispatch(s: &mut Session, line: &[u8], crlf: bool, pending: &[u8], io: &mut Io) {
    // A command ends at a NUL byte, as it does for Postfix's C strings:
    // `\0\0\0` is an empty command, a syntax error, not a non-SMTP one.
    let line = line.split(|&b| b == 0).next().unwrap_or_default();
    let text = match std::str::from_utf8(line) {
        Ok(t) => Cow::Borrowed(t),
        Err(_) if s.settings.smtputf8_enable => {
            return s.fail(Reply::new(500, "5.5.2", "Error: bad UTF-8 syntax"));
        }
        Err(_) => String::from_utf8_lossy(line),
    };
    let text = text.trim_matches([' ', '\t']);
    if text.is_empty() {
        return s.fail(Reply::new(500, "5.5.2", "Error: bad syntax"));
    }
    let (verb, args) = text.split_once([' ', '\t']).unwrap_or((text, ""));
    let args = args.trim_start_matches([' ', '\t']);
    let upper = verb.to_ascii_uppercase();
    if is_forbidden(s, &upper, text) {
        return non_smtp(s, text, io);
    }
    let known = KNOWN.contains(&upper.as_str());
    s.where_ = if known {
        upper.clone()
    } else {
        "UNKNOWN".into()
    };
    let name = if known {
        upper.to_ascii_lowercase()
    } else {
        "unknown".into()
    };
    if s.access_denied && upper != "QUIT" {
        s.counters.count(&name, false);
        let client = s.settings.client.log_name();
        return s.fail(Reply::new(
            503,
            "5.7.0",
            format!("Error: access denied for {client}"),
        ));
    }
    count_junk(s, &upper);
    if known && pipelining_violation(s, &upper, pending, io) {
        return;
    }
    if let Some(ok) = run(s, &upper, args, text, crlf, io) {
        s.counters.count(&name, ok);
    }
}

/// Runs a command; `Some(ok)` to count it now, `None` when it counts
/// itself later (DATA, BDAT, QUIT).
fn run(
    s: &mut Session,
    upper: &str,
    args: &str,
    text: &str,
    crlf: bool,
    io: &mut Io,
) -> Option<bool> {
    match upper {
        "HELO" => helo(s, args, false, io),
        "EHLO" => helo(s, args, true, io),
        "MAIL" => mail(s, args, io),
        "RCPT" => rcpt(s, args, io),
        "DATA" => data(s, args, crlf, io),
        "BDAT" => crate::content::bdat(s, args, text, io),
        "RSET" => rset(s, args, io),
        "NOOP" => ok(s, Reply::new(250, "2.0.0", "Ok")),
        "QUIT" => quit(s, io),
        "VRFY" => vrfy(s, args, io),
        "ETRN" => etrn(s, args, io),
        "STARTTLS" => failed(
            s,
            Reply::new(502, "5.5.1", "Error: command not implemented"),
        ),
        "AUTH" => failed(
            s,
            Reply::new(503, "5.5.1", "Error: authentication not enabled"),
        ),
        _ => failed(s, Reply::new(500, "5.5.2", "Error: command not recognized")),
    }
}

fn ok(s: &mut Session, reply: Reply) -> Option<bool> {
    s.reply(reply);
    Some(true)
}

fn failed(s: &mut Session, reply: Reply) -> Option<bool> {
    s.fail(reply);
    Some(false)
}

/// Commands smtpd_junk_command_limit counts.
const JUNK: &[&str] = &["NOOP", "VRFY", "ETRN", "RSET"];

/// Past smtpd_junk_command_limit, each junk command is also an error.
fn count_junk(s: &mut Session, upper: &str) {
    if !JUNK.contains(&upper) {
        return;
    }
    if s.junk_commands > s.settings.junk_command_limit {
        s.error_count += 1;
    }
    s.junk_commands = s.junk_commands.saturating_add(1);
}

/// smtpd_forbidden_commands, a command that does not start with a letter
/// (Postfix 3.7's `regexp:{{/^[^A-Z]/ Bogus}}`), or a `Label:` header line.
fn is_forbidden(s: &Session, upper: &str, text: &str) -> bool {
    let listed = s
        .settings
        .forbidden_commands
        .iter()
        .any(|c| c.eq_ignore_ascii_case(upper));
    let bogus = !upper.starts_with(|c: char| c.is_ascii_alphabetic());
    listed || bogus || is_header(text)
}

/// `Name:` with a printable ASCII name, as in a message header.
fn is_header(text: &str) -> bool {
    match text.split_once(':') {
        Some((name, _)) => !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b)),
        None => false,
    }
}

/// `221 2.7.0 Error: I can break rules, too. Goodbye.` and disconnect.
fn non_smtp(s: &mut Session, text: &str, io: &mut Io) {
    let client = s.settings.client.log_name();
    s.log(format!("warning: non-SMTP command from {client}: {text}"));
    s.counters.count("unknown", false);
    s.reply(Reply::new(
        221,
        "2.7.0",
        "Error: I can break rules, too. Goodbye.",
    ));
    s.close(io.sink);
}

/// RFC 2920: logs the first command followed by input it must not be
/// followed by; with smtpd_forbid_unauth_pipelining, disconnects.
fn pipelining_violation(s: &mut Session, upper: &str, pending: &[u8], io: &mut Io) -> bool {
    if s.improper_pipelining || pending.is_empty() || upper == "QUIT" {
        return false;
    }
    let offered = s.esmtp && s.settings.offers("pipelining");
    if offered && !GROUP_LAST.contains(&upper) {
        return false;
    }
    s.improper_pipelining = true;
    let client = s.settings.client.log_name();
    let shown = escape(&pending[..pending.len().min(PIPELINING_LOG_MAX)]);
    s.log(format!(
        "improper command pipelining after {upper} from {client}: {shown}"
    ));
    if !s.settings.forbid_unauth_pipelining {
        return false;
    }
    s.fail(Reply::new(
        554,
        "5.5.0",
        "Error: SMTP protocol synchronization",
    ));
    s.close(io.sink);
    true
}

/// Client bytes as a log shows them: `\r`, `\n`, `\t`, octal for the rest.
pub(crate) fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            32..=126 => out.push(char::from(b)),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out
}

/// HELO and EHLO: a new greeting resets any transaction.
fn helo(s: &mut Session, args: &str, esmtp: bool, io: &mut Io) -> Option<bool> {
    if args.is_empty() {
        let verb = if esmtp { "EHLO" } else { "HELO" };
        return failed(s, Reply::plain(501, format!("Syntax: {verb} hostname")));
    }
    s.reset_transaction(io.sink);
    s.bdat_error = false;
    let previous = s.helo.replace(args.to_string());
    if !s.settings.delay_reject {
        if let Decision::Reject(r) = io.policy.check_helo(&s.view(None)) {
            s.log_action("reject", "HELO", &r.reply().text(), None, None);
            s.helo = previous;
            return failed(s, r.reply());
        }
    }
    s.esmtp = esmtp;
    let reply = match esmtp {
        true => ehlo_reply(s),
        false => Reply::plain(250, s.settings.myhostname.clone()),
    };
    ok(s, reply)
}

/// `250-HOST` and the keywords smtpd_discard_ehlo_keywords leaves.
fn ehlo_reply(s: &Session) -> Reply {
    let set = &s.settings;
    let size = match set.message_size_limit {
        0 => "SIZE".to_string(),
        n => format!("SIZE {n}"),
    };
    let mut keywords = vec!["PIPELINING".to_string(), size];
    if !set.disable_vrfy_command {
        keywords.push("VRFY".into());
    }
    keywords.extend(["ETRN", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN"].map(String::from));
    if set.smtputf8_enable {
        keywords.push("SMTPUTF8".into());
    }
    keywords.push("CHUNKING".into());
    let mut lines = vec![set.myhostname.clone()];
    lines.extend(
        keywords
            .into_iter()
            .filter(|k| set.offers(k.split(' ').next().unwrap_or(k))),
    );
    Reply {
        code: 250,
        enhanced: None,
        lines,
    }
}

fn offered(s: &Session) -> Offered {
    Offered {
        dsn: s.settings.offers("dsn"),
        smtputf8: s.settings.smtputf8_enable && s.settings.offers("smtputf8"),
    }
}

/// `FROM:` / `TO:` (any case, blanks allowed after the colon) and the rest.
fn strip_keyword<'a>(args: &'a str, keyword: &str) -> Option<&'a str> {
    let head = args.get(..keyword.len())?;
    let rest = args[keyword.len()..].trim_start_matches([' ', '\t']);
    (head.eq_ignore_ascii_case(keyword) && !rest.is_empty()).then_some(rest)
}

/// Splits and parses a path and its parameters.
fn path_and_params(s: &Session, rest: &str) -> Option<(Path, String)> {
    let (text, params) = split_path(rest).ok()?;
    let path = parse_path(text, s.settings.smtputf8_enable).ok()?;
    Some((path, params.to_string()))
}

fn mail(s: &mut Session, args: &str, io: &mut Io) -> Option<bool> {
    if s.bdat_error || s.tx.as_ref().is_some_and(|t| t.bdat.is_some()) {
        return failed(s, Reply::new(503, "5.5.1", "Error: MAIL after BDAT"));
    }
    if s.tx.is_some() {
        return failed(s, Reply::new(503, "5.5.1", "Error: nested MAIL command"));
    }
    if s.settings.helo_required && s.helo.is_none() {
        return failed(s, Reply::new(503, "5.5.1", "Error: send HELO/EHLO first"));
    }
    let Some(rest) = strip_keyword(args, "FROM:") else {
        return failed(s, Reply::new(501, "5.5.4", "Syntax: MAIL FROM:<address>"));
    };
    let Some((sender, params)) = path_and_params(s, rest) else {
        return failed(s, Reply::new(501, "5.1.7", "Bad sender address syntax"));
    };
    let params = match parse_mail(&params, offered(s)) {
        Ok(p) => p,
        Err(reply) => return failed(s, reply),
    };
    let limit = s.settings.message_size_limit;
    if limit > 0 && params.size.is_some_and(|n| n > limit) {
        let reply = Reply::new(552, "5.3.4", "Message size exceeds fixed limit");
        s.log_action("reject", "MAIL", &reply.text(), Some(&sender), None);
        return failed(s, reply);
    }
    s.tx = Some(Transaction::new(sender, params));
    if !s.settings.delay_reject {
        let decision = io.policy.check_sender(&s.view(None));
        if let Some(reply) = apply_decision(s, decision, "MAIL", None) {
            s.tx = None;
            return failed(s, reply);
        }
    }
    ok(s, Reply::new(250, "2.1.0", "Ok"))
}

/// Logs a decision; a refusal comes back as the reply to give. HOLD and
/// DISCARD are remembered for the sink.
fn apply_decision(
    s: &mut Session,
    decision: Decision,
    where_: &str,
    rcpt: Option<&Address>,
) -> Option<Reply> {
    let sender = s.tx.as_ref().map(|t| t.sender.clone());
    let (action, text, disposition) = match decision {
        Decision::Accept => return None,
        Decision::Reject(r) => {
            s.log_action("reject", where_, &r.reply().text(), sender.as_ref(), rcpt);
            return Some(r.reply());
        }
        Decision::Hold(t) => ("hold", t.clone(), Disposition::Hold(t)),
        Decision::Discard(t) => ("discard", t.clone(), Disposition::Discard(t)),
    };
    s.log_action(action, where_, &text, sender.as_ref(), rcpt);
    if let Some(tx) = s.tx.as_mut() {
        tx.dispositions.push(disposition);
    }
    None
}

/// Takes the PREPEND, REDIRECT and FILTER actions of the checks just run:
/// logged and kept for the message when the command was accepted,
/// forgotten when it was refused.
pub(crate) fn take_side_actions(
    s: &mut Session,
    policy: &mut dyn Policy,
    accepted: bool,
    where_: &str,
    rcpt: Option<&Address>,
) {
    let actions = policy.side_actions();
    if !accepted {
        return;
    }
    let sender = s.tx.as_ref().map(|t| t.sender.clone());
    for (disposition, reason) in actions {
        let name = match &disposition {
            Disposition::Redirect(_) => "redirect",
            Disposition::Filter(_) => "filter",
            _ => "",
        };
        if !name.is_empty() {
            s.log_action(name, where_, &reason, sender.as_ref(), rcpt);
        }
        if let Some(tx) = s.tx.as_mut() {
            match disposition {
                Disposition::Prepend(header) => tx.prepend.push(header),
                other => tx.dispositions.push(other),
            }
        }
    }
}

/// The restriction stages a recipient passes: with smtpd_delay_reject the
/// client, helo and sender stages too. The first refusal wins; a HOLD or
/// DISCARD is kept while later stages run.
fn rcpt_decision(s: &Session, policy: &mut dyn Policy, rcpt: &Address) -> Decision {
    let view = s.view(Some(rcpt));
    let mut kept = Decision::Accept;
    let early: [fn(&mut dyn Policy, &crate::policy::View) -> Decision; 3] = [
        |p, v| p.check_client(v),
        |p, v| p.check_helo(v),
        |p, v| p.check_sender(v),
    ];
    let stages = if s.settings.delay_reject {
        &early[..]
    } else {
        &[]
    };
    for stage in stages {
        match stage(policy, &view) {
            Decision::Accept => {}
            Decision::Reject(r) => return Decision::Reject(r),
            other if kept == Decision::Accept => kept = other,
            _ => {}
        }
    }
    match policy.check_recipient(&view) {
        Decision::Accept => kept,
        Decision::Reject(r) => Decision::Reject(r),
        other if kept == Decision::Accept => other,
        _ => kept,
    }
}

fn rcpt(s: &mut Session, args: &str, io: &mut Io) -> Option<bool> {
    let Some(tx) = s.tx.as_ref() else {
        return failed(s, Reply::new(503, "5.5.1", "Error: need MAIL command"));
    };
    if tx.bdat.is_some() {
        return failed(s, Reply::new(503, "5.5.1", "Error: RCPT after BDAT"));
    }
    let Some(rest) = strip_keyword(args, "TO:") else {
        return failed(s, Reply::new(501, "5.5.4", "Syntax: RCPT TO:<address>"));
    };
    let Some((Path::Mailbox(addr), params)) = path_and_params(s, rest) else {
        return failed(s, Reply::new(501, "5.1.3", "Bad recipient address syntax"));
    };
    let params = match parse_rcpt(&params, offered(s)) {
        Ok(p) => p,
        Err(reply) => return failed(s, reply),
    };
    if let Some(outcome) = recipient_limit(s) {
        return Some(outcome);
    }
    let decision = rcpt_decision(s, io.policy, &addr);
    let refusal = apply_decision(s, decision, "RCPT", Some(&addr));
    take_side_actions(s, io.policy, refusal.is_none(), "RCPT", Some(&addr));
    if let Some(reply) = refusal {
        return failed(s, reply);
    }
    match s.add_recipient(addr, &params, io) {
        Ok(()) => ok(s, Reply::new(250, "2.1.5", "Ok")),
        Err(e) => failed(s, e.reply()),
    }
}

/// smtpd_recipient_limit: `452 4.5.3 Error: too many recipients`, not an
/// error until smtpd_recipient_overshoot_limit is passed.
fn recipient_limit(s: &mut Session) -> Option<bool> {
    let (limit, overshoot_limit) = (
        s.settings.recipient_limit,
        s.settings.recipient_overshoot_limit,
    );
    let tx = s.tx.as_mut()?;
    if limit == 0 || tx.rcpt_count < limit {
        return None;
    }
    tx.overshoot += 1;
    let reply = Reply::new(452, "4.5.3", "Error: too many recipients");
    match tx.overshoot <= overshoot_limit {
        true => ok(s, reply),
        false => failed(s, reply),
    }
}

/// DATA: checks, the Received: header, then `354`.
fn data(s: &mut Session, args: &str, crlf: bool, io: &mut Io) -> Option<bool> {
    let refusal = match s.tx.as_ref() {
        Some(t) if t.bdat.is_some() => Some(Reply::new(503, "5.5.1", "Error: DATA after BDAT")),
        None => Some(Reply::new(503, "5.5.1", "Error: need RCPT command")),
        Some(t) if t.rcpt_count == 0 => {
            Some(Reply::new(554, "5.5.1", "Error: no valid recipients"))
        }
        Some(_) if !args.is_empty() => Some(Reply::new(501, "5.5.4", "Syntax: DATA")),
        Some(_) => None,
    };
    if let Some(reply) = refusal {
        return failed(s, reply);
    }
    if let Some(reply) = crate::content::start_content(s, "DATA", io) {
        return failed(s, reply);
    }
    let set = &s.settings;
    let reader = DataReader::new(set.forbid_bare_newline, set.line_length_limit, crlf);
    s.input = Input::Data(Box::new(reader));
    s.reply(Reply::plain(354, "End data with <CR><LF>.<CR><LF>"));
    None
}

fn rset(s: &mut Session, args: &str, io: &mut Io) -> Option<bool> {
    if !args.is_empty() {
        return failed(s, Reply::new(501, "5.5.4", "Syntax: RSET"));
    }
    s.reset_transaction(io.sink);
    s.bdat_error = false;
    ok(s, Reply::new(250, "2.0.0", "Ok"))
}

fn quit(s: &mut Session, io: &mut Io) -> Option<bool> {
    s.counters.count("quit", true);
    s.reply(Reply::new(221, "2.0.0", "Bye"));
    s.close(io.sink);
    None
}

/// VRFY: `252 2.0.0 ADDRESS` unless disabled or refused.
fn vrfy(s: &mut Session, args: &str, io: &mut Io) -> Option<bool> {
    if s.settings.disable_vrfy_command {
        return failed(s, Reply::new(502, "5.5.1", "VRFY command is disabled"));
    }
    let words: Vec<&str> = args.split_ascii_whitespace().collect();
    let smtputf8_ok = words
        .get(1)
        .is_none_or(|w| w.eq_ignore_ascii_case("SMTPUTF8"));
    if words.is_empty() || words.len() > 2 || !smtputf8_ok {
        return failed(
            s,
            Reply::new(501, "5.5.4", "Syntax: VRFY address [SMTPUTF8]"),
        );
    }
    let Some((Path::Mailbox(addr), _)) = path_and_params(s, words[0]) else {
        return failed(s, Reply::new(501, "5.1.3", "Bad recipient address syntax"));
    };
    if let Decision::Reject(r) = io.policy.check_vrfy(&s.view(Some(&addr))) {
        s.log_action("reject", "VRFY", &r.reply().text(), None, Some(&addr));
        return failed(s, r.reply());
    }
    ok(s, Reply::new(252, "2.0.0", words[0]))
}

/// ETRN (RFC 1985): outside a mail transaction, for a domain or address
/// literal, optionally written `@domain` or `#domain`; after
/// smtpd_etrn_restrictions (and, with smtpd_delay_reject, the client and
/// helo restrictions) the flush service decides.
fn etrn(s: &mut Session, args: &str, io: &mut Io) -> Option<bool> {
    if s.settings.helo_required && s.helo.is_none() {
        return failed(s, Reply::plain(503, "Error: send HELO/EHLO first"));
    }
    if s.tx.is_some() {
        return failed(s, Reply::plain(503, "Error: MAIL transaction in progress"));
    }
    let words: Vec<&str> = args.split_ascii_whitespace().collect();
    if words.len() != 1 {
        return failed(s, Reply::plain(500, "Syntax: ETRN domain"));
    }
    let domain = words[0].strip_prefix(['@', '#']).unwrap_or(words[0]);
    if crate::address::parse_domain(domain, false).is_err() {
        return failed(s, Reply::plain(501, "Error: invalid parameter syntax"));
    }
    if let Decision::Reject(r) = etrn_decision(s, io.policy, domain) {
        s.log_action("reject", "ETRN", &r.reply().text(), None, None);
        return failed(s, r.reply());
    }
    let client = s.settings.client.log_name();
    let shown: String = domain.chars().take(100).collect();
    match io.policy.etrn(&s.view(None), domain) {
        Etrn::Started => ok(s, Reply::plain(250, "Queuing started")),
        Etrn::Denied => {
            s.log(format!("warning: reject: ETRN {shown}... from {client}"));
            failed(
                s,
                Reply::plain(459, format!("<{domain}>: service unavailable")),
            )
        }
        Etrn::Bad => {
            s.log(format!("warning: bad ETRN {shown}... from {client}"));
            failed(s, Reply::plain(458, "Unable to queue messages"))
        }
        Etrn::Failed => {
            s.log("warning: unable to talk to fast flush service".to_string());
            failed(s, Reply::plain(458, "Unable to queue messages"))
        }
    }
}

/// The restrictions an ETRN passes: with smtpd_delay_reject the client
/// and helo stages first (they did not run at connect and HELO). Only a
/// refusal counts: HOLD or DISCARD mean nothing without a message.
fn etrn_decision(s: &Session, policy: &mut dyn Policy, domain: &str) -> Decision {
    let view = s.view(None);
    let refused = |decision: Decision| matches!(decision, Decision::Reject(_)).then_some(decision);
    let mut decision = None;
    if s.settings.delay_reject {
        decision = refused(policy.check_client(&view));
        if decision.is_none() {
            decision = refused(policy.check_helo(&view));
        }
    }
    if decision.is_none() {
        decision = refused(policy.check_etrn(&view, domain));
    }
    // PREPEND and the like have no message to apply to.
    let _ = policy.side_actions();
    decision.unwrap_or(Decision::Accept)
}
