//! How a maildrop file becomes cleanup requests: the submitter's
//! envelope, filtered to what a local user may say, then our Received:
//! header and the content. A pure function of the file, so it is tested
//! without sockets.

use std::time::SystemTime;

use libmail::cleanup::{Disposition, Flags, Request};
use libmail::maildrop;
use libmail::queue::{attr, Part, QueueError, QueueFile};

/// What pickup knows besides the file.
#[derive(Debug, Clone)]
pub struct Context {
    /// The queue ID cleanup gave the new file.
    pub queue_id: String,
    /// The file owner: the submitting user.
    pub uid: u32,
    /// The maildrop file's time (arrival time and Received: date).
    pub time: SystemTime,
    pub myhostname: String,
    pub mail_name: String,
    /// $content_filter, if set.
    pub content_filter: String,
    /// Put back by `postsuper -r`: a queue file the mail system wrote, so
    /// its envelope is trusted and it keeps its arrival time.
    pub requeued: bool,
}

/// The cleanup flags for this file: the standard ones less what
/// receive_override_options turns off, plus the submitter's `-t`.
pub fn flags(file: &QueueFile, overrides: &[String]) -> Flags {
    let off = |name: &str| overrides.iter().any(|o| o == name);
    Flags {
        filter: !off("no_header_body_checks"),
        map: !off("no_address_mappings"),
        extract: file
            .envelope()
            .attribute(maildrop::FLAGS)
            .is_some_and(maildrop::wants_extract),
    }
}

/// `Received: by HOST (Postfix, from userid N)` + `id ID; DATE`.
pub fn received_header(ctx: &Context) -> String {
    format!(
        "Received: by {} ({}, from userid {})\n\tid {}; {}\n",
        ctx.myhostname,
        ctx.mail_name,
        ctx.uid,
        ctx.queue_id,
        libmail::mail_date::mail_date(ctx.time)
    )
}

/// Everything after `open`, up to and including `end`.
pub fn replay(file: &QueueFile, ctx: &Context) -> Result<Vec<Request>, QueueError> {
    let env = file.envelope();
    let arrival = match ctx.requeued {
        true => env.arrival_time,
        false => ctx.time,
    };
    let seconds = arrival
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut out = vec![Request::Arrival(seconds)];
    if !ctx.content_filter.is_empty() {
        out.push(Request::Disposition(Disposition::Filter(
            ctx.content_filter.clone(),
        )));
    }
    let allowed = |name: &str| {
        name != maildrop::FLAGS && (ctx.requeued || maildrop::is_submitter_attribute(name))
    };
    let has = |wanted: &str| {
        env.attributes
            .iter()
            .any(|(n, _)| n == wanted && allowed(n))
    };
    let (has_context, has_origin) = (has(attr::REWRITE_CONTEXT), has(attr::LOG_MESSAGE_ORIGIN));
    for (name, value) in &env.attributes {
        if allowed(name) {
            out.push(Request::Attribute(name.clone(), value.clone()));
        }
    }
    if !has_context {
        out.push(Request::Attribute(
            attr::REWRITE_CONTEXT.to_string(),
            "local".to_string(),
        ));
    }
    if !has_origin {
        // cleanup's log lines say `from local;` for these.
        out.push(Request::Attribute(
            attr::LOG_MESSAGE_ORIGIN.to_string(),
            "local".to_string(),
        ));
    }
    if let Some(name) = &env.sender_fullname {
        out.push(Request::Fullname(name.clone()));
    }
    out.push(Request::Sender(env.sender.clone()));
    if let Some(envid) = &env.dsn_envid {
        out.push(Request::DsnEnvid(envid.clone()));
    }
    if env.dsn_ret != 0 {
        out.push(Request::DsnRet(env.dsn_ret));
    }
    for rcpt in env.pending() {
        out.push(Request::Recipient(rcpt.clone()));
    }
    // A requeued message got its Received: header the first time.
    let mut content = match ctx.requeued {
        true => Vec::new(),
        false => received_header(ctx).into_bytes(),
    };
    let mut first = true;
    for part in file.content_parts()? {
        let bytes = match part? {
            Part::Header(bytes) | Part::Body(bytes) => bytes,
        };
        if first && !ctx.requeued && matches!(bytes.first(), Some(b' ' | b'\t')) {
            // Content that starts with white space would continue our
            // Received: header; an empty line keeps them apart.
            content.push(b'\n');
        }
        first = bytes.is_empty() && first;
        content.extend_from_slice(&bytes);
    }
    for piece in content.chunks(64 * 1024) {
        out.push(Request::Content(piece.to_vec()));
    }
    out.push(Request::End);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use libmail::queue::{Queue, QueueSettings, Recipient, MAILDROP};
    use std::time::Duration;

    fn maildrop_file(
        name: &str,
        build: impl FnOnce(&mut libmail::queue::QueueWriter),
    ) -> QueueFile {
        marked_file(name, &[], build)
    }

    /// A queue file whose recipients number `done` are marked done.
    fn marked_file(
        name: &str,
        done: &[usize],
        build: impl FnOnce(&mut libmail::queue::QueueWriter),
    ) -> QueueFile {
        let dir = std::env::temp_dir().join(format!("pickup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(MAILDROP)).unwrap();
        let queue = Queue::new(QueueSettings::new(&dir)).unwrap();
        let mut w = queue.create(MAILDROP).unwrap();
        build(&mut w);
        let committed = w.commit().unwrap();
        let recipients = QueueFile::open(&committed.path)
            .unwrap()
            .envelope()
            .recipients
            .clone();
        let offsets: Vec<u64> = done.iter().map(|&i| recipients[i].offset).collect();
        libmail::queue::mark_recipients_done(&committed.path, &offsets).unwrap();
        let bytes = std::fs::read(&committed.path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        QueueFile::from_bytes("maildrop/X", bytes).unwrap()
    }

    fn ctx() -> Context {
        Context {
            queue_id: "4F9D1C2A3B".into(),
            uid: 1000,
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            myhostname: "mail.example.com".into(),
            mail_name: "Postfix".into(),
            content_filter: String::new(),
            requeued: false,
        }
    }

    #[test]
    fn a_maildrop_file_replays_in_order() {
        let file = maildrop_file("order", |w| {
            w.attribute(maildrop::FLAGS, maildrop::EXTRACT).unwrap();
            w.attribute("rewrite_context", "local").unwrap();
            w.attribute("client_address", "6.6.6.6").unwrap();
            w.sender_fullname("Joe").unwrap();
            w.sender("joe@example.com").unwrap();
            w.dsn_envid("env").unwrap();
            w.recipient(&Recipient::new("bob@example.com")).unwrap();
            w.body(b"Subject: hi\n\nbody\n").unwrap();
        });
        assert!(flags(&file, &[]).extract);
        assert!(flags(&file, &[]).filter);
        assert!(!flags(&file, &["no_address_mappings".into()]).map);
        let got = replay(&file, &ctx()).unwrap();
        let received = received_header(&ctx());
        assert!(received.starts_with(
            "Received: by mail.example.com (Postfix, from userid 1000)\n\tid 4F9D1C2A3B; "
        ));
        assert!(received.ends_with(" 2023 ") || received.contains(" 2023 "));
        let mut content = received.into_bytes();
        content.extend_from_slice(b"Subject: hi\n\nbody\n");
        assert_eq!(
            got,
            vec![
                Request::Arrival(1_700_000_000),
                Request::Attribute("rewrite_context".into(), "local".into()),
                Request::Attribute("log_message_origin".into(), "local".into()),
                Request::Fullname("Joe".into()),
                Request::Sender("joe@example.com".into()),
                Request::DsnEnvid("env".into()),
                Request::Recipient(Recipient {
                    offset: file.envelope().recipients[0].offset,
                    ..Recipient::new("bob@example.com")
                }),
                Request::Content(content),
                Request::End,
            ]
        );
    }

    #[test]
    fn defaults_filter_and_leading_white_space() {
        let file = maildrop_file("defaults", |w| {
            w.sender("").unwrap();
            w.body(b" folded?\n").unwrap();
        });
        assert!(!flags(&file, &[]).extract);
        let mut c = ctx();
        c.content_filter = "scan:[127.0.0.1]:10025".into();
        let got = replay(&file, &c).unwrap();
        assert_eq!(
            got[1],
            Request::Disposition(Disposition::Filter("scan:[127.0.0.1]:10025".into()))
        );
        assert_eq!(
            got[2],
            Request::Attribute("rewrite_context".into(), "local".into())
        );
        assert_eq!(
            got[3],
            Request::Attribute("log_message_origin".into(), "local".into())
        );
        assert_eq!(got[4], Request::Sender(String::new()));
        let Request::Content(bytes) = &got[5] else {
            panic!("no content: {got:?}");
        };
        assert!(bytes.ends_with(b"\n\n folded?\n"));
    }

    #[test]
    fn a_requeued_file_keeps_its_envelope_and_gets_no_new_received_header() {
        let arrival = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        // The first recipient was delivered before postsuper -r.
        let file = marked_file("requeued", &[0], |w| {
            w.set_arrival_time(arrival).unwrap();
            w.attribute("rewrite_context", "remote").unwrap();
            w.attribute("client_address", "192.0.2.7").unwrap();
            w.sender("joe@example.com").unwrap();
            w.recipient(&Recipient::new("done@example.com")).unwrap();
            w.recipient(&Recipient::new("bob@example.com")).unwrap();
            w.header(b"Subject: hi\n").unwrap();
            w.body(b"\nbody\n").unwrap();
        });

        let mut c = ctx();
        c.requeued = true;
        let got = replay(&file, &c).unwrap();
        assert_eq!(got[0], Request::Arrival(1_600_000_000));
        assert_eq!(
            got[1..4],
            [
                Request::Attribute("rewrite_context".into(), "remote".into()),
                Request::Attribute("client_address".into(), "192.0.2.7".into()),
                Request::Attribute("log_message_origin".into(), "local".into()),
            ]
        );
        let rcpts: Vec<&Request> = got
            .iter()
            .filter(|r| matches!(r, Request::Recipient(_)))
            .collect();
        assert_eq!(rcpts.len(), 1, "{got:?}");
        assert!(got.contains(&Request::Content(b"Subject: hi\n\nbody\n".to_vec())));
    }
}
