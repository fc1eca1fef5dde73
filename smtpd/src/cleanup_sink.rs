//! The `MessageSink` the daemon uses: each message goes to the cleanup
//! service over libmail::cleanup's protocol. The connection is made at
//! the first accepted recipient (that is when Postfix's smtpd learns the
//! queue ID), requests are buffered, and the only waits are for the
//! queue ID and for cleanup's verdict at the end of the message.

use std::net::IpAddr;
use std::path::PathBuf;

use libmail::cleanup::{self, CleanupClient, Flags, Outcome, Request};
use libmail::config::Config;
use libmail::match_list::NetworkList;
use libmail::queue::{attr, notify, ret, Recipient};
use libmail::resolve::interface_addresses;

use crate::address::{Address, Path};
use crate::params::{Body, RcptParams, Ret};
use crate::policy::{Disposition, Envelope, MessageSink, Refusal, SinkError};

/// How main.cf says headers are treated (local_header_rewrite_clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteContext {
    Local,
    Remote,
}

/// local_header_rewrite_clients, read once per process: which clients
/// get local header rewriting. permit_inet_interfaces, permit_mynetworks
/// and static:all are understood; a lookup that fails counts as remote,
/// the safe side.
pub struct LocalHeaderClients {
    all: bool,
    /// The inet_interfaces addresses, when permit_inet_interfaces is listed.
    interfaces: Vec<IpAddr>,
    /// mynetworks, when permit_mynetworks is listed.
    mynetworks: Option<NetworkList>,
}

impl LocalHeaderClients {
    pub fn new(config: &Config) -> LocalHeaderClients {
        let words = config
            .list("local_header_rewrite_clients")
            .unwrap_or_default();
        let listed = |name: &str| words.iter().any(|word| word == name);
        LocalHeaderClients {
            all: listed("static:all"),
            interfaces: match listed("permit_inet_interfaces") {
                true => interface_addresses(config, &["inet_interfaces"]).unwrap_or_default(),
                false => Vec::new(),
            },
            mynetworks: match listed("permit_mynetworks") {
                true => config
                    .string("mynetworks")
                    .ok()
                    .and_then(|value| NetworkList::new(&value).ok()),
                false => None,
            },
        }
    }

    /// The rewrite context for the client at `addr` named `name`.
    pub fn context(&mut self, addr: IpAddr, name: &str) -> RewriteContext {
        let in_mynetworks =
            |list: &mut NetworkList| list.matches(addr, Some(name)).unwrap_or(false);
        let local = self.all
            || self.interfaces.contains(&addr)
            || self.mynetworks.as_mut().is_some_and(in_mynetworks);
        match local {
            true => RewriteContext::Local,
            false => RewriteContext::Remote,
        }
    }
}

pub struct CleanupSink {
    service: PathBuf,
    context: RewriteContext,
    open: Option<CleanupClient>,
}

impl CleanupSink {
    pub fn new(service: PathBuf, context: RewriteContext) -> CleanupSink {
        CleanupSink {
            service,
            context,
            open: None,
        }
    }

    fn send(&mut self, request: Request) -> Result<(), SinkError> {
        let client = self.open.as_mut().ok_or_else(not_open)?;
        client.send(&request).map_err(temporary)
    }
}

fn not_open() -> SinkError {
    SinkError::Temporary("no queue file open".to_string())
}

fn temporary(err: cleanup::CleanupError) -> SinkError {
    libmail::msg::warning(err.to_string());
    SinkError::Temporary(err.to_string())
}

/// The envelope as cleanup's requests: origin attributes, sender, DSN.
pub fn envelope_requests(envelope: &Envelope, context: RewriteContext) -> Vec<Request> {
    let client = envelope.client;
    let attribute = |name: &str, value: &str| Request::Attribute(name.into(), value.into());
    let mut out = vec![
        attribute(attr::LOG_CLIENT_NAME, &client.name),
        attribute(attr::LOG_CLIENT_ADDRESS, &client.addr),
        attribute(attr::LOG_CLIENT_PORT, &client.port.to_string()),
        attribute(attr::LOG_MESSAGE_ORIGIN, &client.log_name()),
        attribute(attr::LOG_HELO_NAME, envelope.helo.unwrap_or("")),
        attribute(attr::LOG_PROTOCOL_NAME, envelope.protocol),
        attribute(attr::CLIENT_NAME, &client.name),
        attribute(attr::REVERSE_CLIENT_NAME, &client.name),
        attribute(attr::CLIENT_ADDRESS, &client.addr),
        attribute(attr::CLIENT_PORT, &client.port.to_string()),
        attribute(attr::HELO_NAME, envelope.helo.unwrap_or("")),
        attribute(attr::PROTOCOL_NAME, envelope.protocol),
        attribute(
            attr::REWRITE_CONTEXT,
            match context {
                RewriteContext::Local => "local",
                RewriteContext::Remote => "remote",
            },
        ),
    ];
    let params = envelope.params;
    match params.body {
        Body::EightBitMime => out.push(attribute(attr::ENCODING, "8bit")),
        Body::SevenBit => out.push(attribute(attr::ENCODING, "7bit")),
        Body::Unspecified => {}
    }
    if params.smtputf8 {
        out.push(attribute("smtputf8", "1"));
    }
    out.push(Request::Sender(match envelope.sender {
        Path::Null => String::new(),
        Path::Mailbox(address) => address.internal(),
    }));
    if let Some(envid) = &params.envid {
        out.push(Request::DsnEnvid(envid.clone()));
    }
    match params.ret {
        Some(Ret::Full) => out.push(Request::DsnRet(ret::FULL)),
        Some(Ret::Hdrs) => out.push(Request::DsnRet(ret::HDRS)),
        None => {}
    }
    out
}

/// One recipient with its DSN fields.
pub fn recipient(address: &Address, params: &RcptParams) -> Recipient {
    let mut dsn_notify = 0;
    if let Some(n) = params.notify {
        let flags = [
            (n.never, notify::NEVER),
            (n.success, notify::SUCCESS),
            (n.delay, notify::DELAY),
            (n.failure, notify::FAILURE),
        ];
        dsn_notify = flags
            .iter()
            .filter(|(on, _)| *on)
            .fold(0, |acc, (_, bit)| acc | bit);
    }
    Recipient {
        address: address.internal(),
        // As the client wrote it: `"root"@example.com` and
        // `root@example.com` stay two recipients, as in Postfix.
        orig_recipient: address.to_string(),
        dsn_orcpt: params
            .orcpt
            .as_ref()
            .map(|(kind, addr)| format!("{kind};{addr}"))
            .unwrap_or_default(),
        dsn_notify,
        ..Recipient::default()
    }
}

impl MessageSink for CleanupSink {
    fn begin(&mut self, envelope: &Envelope) -> Result<String, SinkError> {
        let client = CleanupClient::connect(&self.service, Flags::standard()).map_err(temporary)?;
        let queue_id = client.queue_id().to_string();
        self.open = Some(client);
        for request in envelope_requests(envelope, self.context) {
            self.send(request)?;
        }
        Ok(queue_id)
    }

    fn add_recipient(&mut self, address: &Address, params: &RcptParams) -> Result<(), SinkError> {
        self.send(Request::Recipient(recipient(address, params)))
    }

    fn set_disposition(&mut self, disposition: &Disposition) -> Result<(), SinkError> {
        let request = match disposition {
            Disposition::Hold(t) => cleanup::Disposition::Hold(t.clone()),
            Disposition::Discard(t) => cleanup::Disposition::Discard(t.clone()),
            Disposition::Redirect(a) => cleanup::Disposition::Redirect(a.clone()),
            Disposition::Filter(f) => cleanup::Disposition::Filter(f.clone()),
            // The session writes PREPEND headers into the content itself.
            Disposition::Prepend(_) => return Ok(()),
        };
        self.send(Request::Disposition(request))
    }

    fn write(&mut self, content: &[u8]) -> Result<(), SinkError> {
        let client = self.open.as_mut().ok_or_else(not_open)?;
        client.content(content).map_err(temporary)
    }

    fn finish(&mut self) -> Result<String, SinkError> {
        let client = self.open.take().ok_or_else(not_open)?;
        let queue_id = client.queue_id().to_string();
        match client.finish().map_err(temporary)? {
            Outcome::Queued => Ok(queue_id),
            Outcome::Rejected {
                code,
                enhanced,
                text,
            } => Err(SinkError::Rejected(Refusal::new(code, &enhanced, text))),
            Outcome::Failed(text) => Err(SinkError::Temporary(text)),
        }
    }

    fn abort(&mut self) {
        // Closing the connection before `end` makes cleanup drop the file.
        self.open = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{MailParams, Notify};
    use crate::settings::Client;

    #[test]
    fn envelope_and_recipients_become_requests() {
        let client = Client::new("localhost", "127.0.0.1", 4000);
        let sender = crate::address::parse_path("<\"a b\"@example.com>", false).unwrap();
        let params = MailParams {
            body: Body::EightBitMime,
            ret: Some(Ret::Hdrs),
            envid: Some("E1".into()),
            smtputf8: true,
            ..MailParams::default()
        };
        let envelope = Envelope {
            client: &client,
            helo: Some("client.example"),
            protocol: "ESMTP",
            sender: &sender,
            params: &params,
        };
        let requests = envelope_requests(&envelope, RewriteContext::Remote);
        assert!(requests.contains(&Request::Sender("a b@example.com".into())));
        assert!(requests.contains(&Request::Attribute(
            "rewrite_context".into(),
            "remote".into()
        )));
        assert!(requests.contains(&Request::Attribute("encoding".into(), "8bit".into())));
        assert!(requests.contains(&Request::Attribute("smtputf8".into(), "1".into())));
        assert!(requests.contains(&Request::DsnRet(ret::HDRS)));
        assert!(requests.contains(&Request::DsnEnvid("E1".into())));

        let Path::Mailbox(rcpt) = crate::address::parse_path("<u@example.net>", false).unwrap()
        else {
            panic!("not a mailbox");
        };
        let rcpt_params = RcptParams {
            notify: Some(Notify {
                success: true,
                failure: true,
                ..Notify::default()
            }),
            orcpt: Some(("rfc822".into(), "U@example.net".into())),
        };
        let r = recipient(&rcpt, &rcpt_params);
        assert_eq!(r.address, "u@example.net");
        assert_eq!(r.dsn_orcpt, "rfc822;U@example.net");
        assert_eq!(r.dsn_notify, notify::SUCCESS | notify::FAILURE);
    }

    #[test]
    fn local_header_rewrite_clients() {
        let config = |value: &str| {
            let text = format!(
                "myhostname = mx.example.com\ninet_interfaces = 192.0.2.1\n\
                 mynetworks = 10.0.0.0/8\nlocal_header_rewrite_clients = {value}\n"
            );
            Config::from_text(std::path::Path::new("/nonexistent"), &text).unwrap()
        };
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let mut default = LocalHeaderClients::new(&config("permit_inet_interfaces"));
        assert_eq!(default.context(ip("192.0.2.1"), "x"), RewriteContext::Local);
        assert_eq!(default.context(ip("10.1.1.1"), "x"), RewriteContext::Remote);
        let mut nets = LocalHeaderClients::new(&config("permit_mynetworks"));
        assert_eq!(nets.context(ip("10.1.1.1"), "x"), RewriteContext::Local);
        assert_eq!(nets.context(ip("192.0.2.1"), "x"), RewriteContext::Remote);
        let mut all = LocalHeaderClients::new(&config("static:all"));
        assert_eq!(all.context(ip("198.51.100.7"), "x"), RewriteContext::Local);
    }

    #[test]
    fn cleanup_down_is_a_temporary_failure() {
        let mut sink = CleanupSink::new(
            PathBuf::from("/nonexistent/public/cleanup"),
            RewriteContext::Local,
        );
        let client = Client::new("unknown", "192.0.2.1", 1);
        let envelope = Envelope {
            client: &client,
            helo: None,
            protocol: "SMTP",
            sender: &Path::Null,
            params: &MailParams::default(),
        };
        assert!(matches!(
            sink.begin(&envelope),
            Err(SinkError::Temporary(_))
        ));
        assert!(matches!(sink.write(b"x"), Err(SinkError::Temporary(_))));
    }
}
