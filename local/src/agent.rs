//! The delivery of one request's recipients: alias expansion, the user's
//! .forward, and the mailbox (mailbox_command, home_mailbox or the mail
//! spool), each final delivery logged with its own status line, and one
//! combined result per recipient for qmgr.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use libmail::cleanup::service_path;
use libmail::config::Config;
use libmail::deliver::{DeliveryRequest, RecipientResult, Status};
use libmail::log::delivery::{Delays, RecipientStatus};
use libmail::mailbox::{self, DeliveryHeaders, MailboxError};
use libmail::pipe_command::{PipeCommand, Verdict};
use libmail::queue::{Queue, Recipient};
use libmail::resolve::{AddressClass, Resolver};
use libmail::tables::search::{split_address, split_extension};
use libmail::tables::{self, Dict, OpenOptions};
use nix::unistd::User;

use crate::alias_list::{self, Target};
use crate::expand::{expand, Attributes};
use crate::forward::{self, Forward};
use crate::privileges::{Identity, Privileges};
use crate::settings::{Settings, SettingsError, Source};

/// How deep aliases, includes and .forward files may nest.
const MAX_DEPTH: usize = 100;

/// An alias table and whose privileges its commands and files get.
struct AliasTable {
    /// Why the table could not be opened: its lookups defer.
    dict: Result<Dict, String>,
    owner: Identity,
}

/// Everything opened once per process.
pub struct Agent {
    pub settings: Settings,
    aliases: Vec<AliasTable>,
    resolver: Resolver,
    pub privileges: Privileges,
    default_privs: Identity,
    /// cleanup's socket, for forwarded mail.
    cleanup_path: PathBuf,
    pub queue: Queue,
}

/// One message being delivered: its content, read once per request.
pub struct Message<'a> {
    pub request: &'a DeliveryRequest,
    pub content: Vec<u8>,
    /// The Delivered-To: values already in the message, lower case.
    pub delivered: Vec<String>,
    pub agent_start: SystemTime,
    users: HashMap<String, Option<User>>,
}

impl<'a> Message<'a> {
    pub fn new(request: &'a DeliveryRequest, headers: &[Vec<u8>], content: Vec<u8>) -> Message<'a> {
        Message {
            request,
            content,
            delivered: delivered_to_values(headers),
            agent_start: SystemTime::now(),
            users: HashMap::new(),
        }
    }

    /// The passwd entry, looked up once per request.
    fn user(&mut self, name: &str) -> Option<User> {
        self.users
            .entry(name.to_string())
            .or_insert_with(|| User::from_name(name).ok().flatten())
            .clone()
    }
}

/// The values of the message's Delivered-To: header fields.
pub fn delivered_to_values(headers: &[Vec<u8>]) -> Vec<String> {
    headers
        .iter()
        .filter_map(|field| {
            let text = String::from_utf8_lossy(field);
            let (name, value) = text.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("delivered-to")
                .then(|| value.trim().to_ascii_lowercase())
        })
        .collect()
}

/// The state of one top-level recipient's delivery.
struct Expansion<'r> {
    rcpt: &'r Recipient,
    /// X-Original-To: and the log's orig_to.
    orig: String,
    /// The frozen Delivered-To: address (frozen_delivered_to).
    delivered_to: String,
    /// Alias names and users whose .forward have been expanded (loops).
    alias_seen: HashSet<String>,
    forward_seen: HashSet<String>,
    /// Destinations already delivered (duplicate elimination).
    done: HashSet<String>,
    forwards: Vec<Forward>,
    results: Vec<Verdict>,
}

/// Where in the expansion a destination was found.
#[derive(Clone)]
struct Context {
    /// The address being expanded (for log lines of commands and files).
    address: String,
    domain: String,
    sender: String,
    source: Source,
    /// Who commands and files from here run as.
    privs: Identity,
    /// The user whose .forward this is, for the command environment.
    user: Option<User>,
    depth: usize,
}

fn verdict(status: Status, dsn: &str, reason: impl Into<String>) -> Verdict {
    Verdict {
        status,
        dsn: dsn.to_string(),
        reason: reason.into(),
    }
}

fn failure(dsn: &str, reason: impl Into<String>) -> Verdict {
    let status = match dsn.starts_with('4') {
        true => Status::Deferred,
        false => Status::Bounced,
    };
    verdict(status, dsn, reason)
}

impl Agent {
    pub fn new(config: &Config, privileges: Privileges) -> Result<Agent, SettingsError> {
        let settings = Settings::from_config(config)?;
        let default_privs = match User::from_name(&settings.default_privs) {
            Ok(Some(user)) => Identity {
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            },
            _ => {
                return Err(SettingsError::Bad(format!(
                    "unknown default_privs user: {}",
                    settings.default_privs
                )))
            }
        };
        let aliases = open_aliases(&settings.alias_maps, default_privs);
        let bad = |e: &dyn std::fmt::Display| SettingsError::Bad(e.to_string());
        let resolver = Resolver::new(config).map_err(|e| bad(&e))?;
        Ok(Agent {
            settings,
            aliases,
            resolver,
            privileges,
            default_privs,
            cleanup_path: service_path(config)?,
            queue: Queue::from_config(config).map_err(|e| bad(&e))?,
        })
    }

    /// Delivers to one recipient of the request; logs each final
    /// delivery and returns the combined result.
    pub fn deliver(&mut self, message: &mut Message, rcpt: &Recipient) -> RecipientResult {
        let orig = match rcpt.orig_recipient.is_empty() {
            true => rcpt.address.clone(),
            false => rcpt.orig_recipient.clone(),
        };
        let mut exp = Expansion {
            rcpt,
            orig,
            delivered_to: rcpt.address.clone(),
            alias_seen: HashSet::new(),
            forward_seen: HashSet::new(),
            done: HashSet::new(),
            forwards: Vec::new(),
            results: Vec::new(),
        };
        let (localpart, domain) = split_address(&rcpt.address);
        let ctx = Context {
            address: rcpt.address.clone(),
            domain: domain.unwrap_or("").to_string(),
            sender: message.request.sender.clone(),
            source: Source::Alias,
            privs: self.default_privs,
            user: None,
            depth: 0,
        };
        if message
            .delivered
            .contains(&rcpt.address.to_ascii_lowercase())
        {
            let v = failure(
                "5.4.6",
                format!("mail forwarding loop for {}", rcpt.address),
            );
            self.log(message, &exp, &rcpt.address, &v);
            return self.result(rcpt, v);
        }
        let localpart = localpart.to_string();
        self.deliver_local(message, &mut exp, &ctx, &localpart);
        self.send_forwards(message, &mut exp);
        let worst = exp
            .results
            .iter()
            .find(|v| v.status == Status::Deferred)
            .or_else(|| exp.results.iter().find(|v| v.status == Status::Bounced))
            .or_else(|| exp.results.first())
            .cloned()
            .unwrap_or_else(|| verdict(Status::Sent, "2.0.0", "delivered"));
        self.result(rcpt, worst)
    }

    fn result(&self, rcpt: &Recipient, v: Verdict) -> RecipientResult {
        RecipientResult {
            offset: rcpt.offset,
            status: v.status,
            dsn: v.dsn,
            reason: v.reason,
            relay: "local".to_string(),
        }
    }

    /// Logs a final delivery and keeps its verdict for the reply.
    fn record(&self, message: &Message, exp: &mut Expansion, to: &str, v: Verdict) {
        self.log(message, exp, to, &v);
        exp.results.push(v);
    }

    fn log(&self, message: &Message, exp: &Expansion, to: &str, v: &Verdict) {
        let request = message.request;
        let line = RecipientStatus {
            queue_id: &request.queue_id,
            recipient: to,
            orig_recipient: &exp.orig,
            relay: "local",
            delays: Delays {
                arrival: request.arrival_time,
                active: request.active_time,
                agent_start: message.agent_start,
                connected: message.agent_start,
                done: SystemTime::now(),
            },
            dsn: &v.dsn,
            status: v.status.name(),
            reason: &v.reason,
        }
        .line();
        libmail::msg::info(line);
    }

    /// A local address: aliases, then the user's .forward, then the
    /// mailbox.
    fn deliver_local(
        &mut self,
        message: &mut Message,
        exp: &mut Expansion,
        ctx: &Context,
        localpart: &str,
    ) {
        let address = format!("{localpart}@{}", ctx.domain);
        if ctx.depth > MAX_DEPTH {
            let v = failure("5.4.6", format!("mail forwarding loop for {address}"));
            return self.record(message, exp, &address, v);
        }
        let lower = localpart.to_ascii_lowercase();
        let (base, extension) = match split_extension(&lower, &self.settings.recipient_delimiter) {
            Some((base, ext)) => (base.to_string(), ext.to_string()),
            None => (lower.clone(), String::new()),
        };
        if !exp.alias_seen.contains(&base) {
            match self.lookup_alias(&lower, &base) {
                Err(reason) => {
                    msg_warning(&reason);
                    let v = failure("4.3.0", "alias database unavailable");
                    return self.record(message, exp, &address, v);
                }
                Ok(Some((value, owner))) => {
                    exp.alias_seen.insert(base.clone());
                    let sender = self
                        .owner_sender(&base, &ctx.domain)
                        .unwrap_or_else(|| ctx.sender.clone());
                    let inner = Context {
                        address: address.clone(),
                        sender,
                        source: Source::Alias,
                        privs: owner,
                        user: None,
                        depth: ctx.depth + 1,
                        ..ctx.clone()
                    };
                    return self.expand_targets(message, exp, &inner, alias_list::parse(&value));
                }
                Ok(None) => {}
            }
        }
        let Some(user) = message.user(&base) else {
            let v = failure("5.1.1", format!("unknown user: \"{lower}\""));
            return self.record(message, exp, &address, v);
        };
        if !exp.forward_seen.contains(&base) {
            exp.forward_seen.insert(base.clone());
            if let Some(targets) = self.read_forward(&user, &address, &extension) {
                let inner = Context {
                    address: address.clone(),
                    source: Source::Forward,
                    privs: identity(&user),
                    user: Some(user.clone()),
                    depth: ctx.depth + 1,
                    ..ctx.clone()
                };
                return self.expand_targets(message, exp, &inner, targets);
            }
        }
        self.deliver_mailbox(message, exp, ctx, &user, &address, &extension);
    }

    /// The alias value for `user+ext`, else `user`, and who its
    /// commands run as; `Err` when a table is unavailable.
    fn lookup_alias(
        &mut self,
        full: &str,
        base: &str,
    ) -> Result<Option<(String, Identity)>, String> {
        let keys: Vec<&str> = if full == base {
            vec![base]
        } else {
            vec![full, base]
        };
        for key in keys {
            for table in &mut self.aliases {
                let dict = table.dict.as_mut().map_err(|reason| reason.clone())?;
                match dict.lookup(key) {
                    Ok(Some(value)) => return Ok(Some((value, table.owner))),
                    Ok(None) => {}
                    Err(err) => return Err(err.to_string()),
                }
            }
        }
        Ok(None)
    }

    /// `owner-NAME@domain` when an owner-NAME alias exists: the sender
    /// of mail forwarded for NAME.
    fn owner_sender(&mut self, name: &str, domain: &str) -> Option<String> {
        if !self.settings.owner_request_special || name.starts_with("owner-") {
            return None;
        }
        let owner = format!("owner-{name}");
        let (value, _) = self.lookup_alias(&owner, &owner).ok()??;
        if self.settings.expand_owner_alias {
            if let Some(Target::Address(first)) = alias_list::parse(&value).into_iter().next() {
                return Some(first);
            }
        }
        Some(match domain.is_empty() {
            true => owner,
            false => format!("{owner}@{domain}"),
        })
    }

    fn expand_targets(
        &mut self,
        message: &mut Message,
        exp: &mut Expansion,
        ctx: &Context,
        targets: Vec<Target>,
    ) {
        for target in targets {
            match target {
                Target::Address(address) => self.deliver_address(message, exp, ctx, &address),
                Target::Mailbox(name) => {
                    let base = name.to_ascii_lowercase();
                    exp.alias_seen.insert(base.clone());
                    exp.forward_seen.insert(base.clone());
                    if exp.done.insert(format!("user:{base}")) {
                        self.deliver_local(message, exp, ctx, &base);
                    }
                }
                Target::Command(command) => {
                    if exp.done.insert(format!("command:{command}")) {
                        self.deliver_command_target(message, exp, ctx, &command);
                    }
                }
                Target::File(path) => {
                    if exp.done.insert(format!("file:{path}")) {
                        self.deliver_file(message, exp, ctx, &path);
                    }
                }
                Target::Include(path) => self.deliver_include(message, exp, ctx, &path),
            }
        }
    }

    /// An address from a list: local ones recursively, others forwarded.
    fn deliver_address(
        &mut self,
        message: &mut Message,
        exp: &mut Expansion,
        ctx: &Context,
        address: &str,
    ) {
        if !exp
            .done
            .insert(format!("address:{}", address.to_ascii_lowercase()))
        {
            return;
        }
        let (localpart, domain) = split_address(address);
        let class = match domain {
            None => Ok(AddressClass::Local),
            Some(domain) => self.resolver.classify(&domain.to_ascii_lowercase()),
        };
        match class {
            Ok(AddressClass::Local) => {
                let inner = Context {
                    domain: domain
                        .map(str::to_string)
                        .unwrap_or_else(|| ctx.domain.clone()),
                    depth: ctx.depth + 1,
                    ..ctx.clone()
                };
                self.deliver_local(message, exp, &inner, localpart);
            }
            Ok(_) => exp.forwards.push(Forward {
                sender: ctx.sender.clone(),
                address: address.to_string(),
            }),
            Err(err) => {
                msg_warning(&err.to_string());
                let v = failure("4.3.0", "address resolver lookup failure");
                self.record(message, exp, address, v);
            }
        }
    }

    fn delivery_headers<'h>(
        &self,
        exp: &'h Expansion,
        sender: &'h str,
        delivered: bool,
    ) -> DeliveryHeaders<'h> {
        DeliveryHeaders {
            sender,
            orig_recipient: self
                .settings
                .enable_original_recipient
                .then_some(exp.orig.as_str()),
            delivered_to: delivered.then_some(exp.delivered_to.as_str()),
        }
    }

    /// The user's mailbox: mailbox_command, home_mailbox or the spool.
    fn deliver_mailbox(
        &mut self,
        message: &mut Message,
        exp: &mut Expansion,
        ctx: &Context,
        user: &User,
        address: &str,
        extension: &str,
    ) {
        if !exp.done.insert(format!("mailbox:{}", user.name)) {
            return;
        }
        let who = identity(user);
        let home = user.dir.to_string_lossy().into_owned();
        let v = if !self.settings.mailbox_command.trim().is_empty() {
            let attrs = self.attributes(user, address, extension, &ctx.sender);
            let command = expand(
                &self.settings.mailbox_command,
                &attrs,
                &self.settings.command_filter,
            );
            let headers = self.delivery_headers(exp, &ctx.sender, true);
            let input = command_input(&headers, &message.content);
            let env = self.environment(Some(user), address, extension, &ctx.sender, &exp.orig);
            self.run_command(&command, who, env, Some(user.dir.clone()), &input)
        } else if !self.settings.home_mailbox.is_empty() {
            let path = Path::new(&home).join(&self.settings.home_mailbox);
            let headers = self.delivery_headers(exp, &ctx.sender, true);
            match self.settings.home_mailbox.ends_with('/') {
                true => self.write_maildir(&path, who, &headers, &message.content),
                false => self.write_mbox(&path, who, false, &user.name, &headers, &message.content),
            }
        } else {
            let spool = &self.settings.mail_spool_directory;
            let path = Path::new(spool).join(&user.name);
            let headers = self.delivery_headers(exp, &ctx.sender, true);
            match spool.ends_with('/') {
                true => self.write_maildir(&path, who, &headers, &message.content),
                false => self.write_mbox(&path, who, true, &user.name, &headers, &message.content),
            }
        };
        self.record(message, exp, address, v);
    }

    fn write_maildir(
        &self,
        dir: &Path,
        who: Identity,
        headers: &DeliveryHeaders,
        content: &[u8],
    ) -> Verdict {
        let text = mailbox::plain_text(headers, content);
        let limit = self.settings.mbox.size_limit;
        let host = &self.settings.myhostname;
        let written = self
            .privileges
            .run_as(who, || mailbox::deliver_maildir(dir, host, &text, limit));
        match written {
            Ok(Ok(_)) => verdict(Status::Sent, "2.0.0", "delivered to maildir"),
            Ok(Err(err)) => failure(err.dsn("4.2.0"), format!("maildir delivery failed: {err}")),
            Err(err) => failure("4.3.0", format!("cannot switch to uid {}: {err}", who.uid)),
        }
    }

    /// An mbox file; a spool mailbox is opened and locked as root (the
    /// spool directory is not writable by users) and given to the user
    /// when it is created.
    fn write_mbox(
        &self,
        path: &Path,
        who: Identity,
        spool: bool,
        user: &str,
        headers: &DeliveryHeaders,
        content: &[u8],
    ) -> Verdict {
        let text = mailbox::mbox_text(headers, content, SystemTime::now());
        let mut settings = self.settings.mbox.clone();
        let owner = self.privileges.effective(who);
        if self.settings.strict_mailbox_ownership {
            settings.required_owner = Some(owner.uid);
        }
        let as_root = spool && self.privileges.is_privileged();
        let run = || -> Result<(), MailboxError> {
            let (file, created) = mailbox::open_mbox(path, &settings)?;
            if created && as_root {
                let chown = nix::unistd::fchown(
                    std::os::fd::AsRawFd::as_raw_fd(&file),
                    Some(nix::unistd::Uid::from_raw(owner.uid)),
                    Some(nix::unistd::Gid::from_raw(owner.gid)),
                );
                chown.map_err(|e| MailboxError::Io {
                    what: "cannot change file ownership".into(),
                    source: e.into(),
                })?;
            }
            mailbox::append_mbox(&file, path, &text, &settings)
        };
        let result = match as_root {
            true => Ok(run()),
            false => self.privileges.run_as(who, run),
        };
        let prefix = format!("cannot update mailbox {} for user {user}.", path.display());
        match result {
            Ok(Ok(())) => verdict(Status::Sent, "2.0.0", "delivered to mailbox"),
            Ok(Err(err)) => failure(err.dsn("5.2.0"), format!("{prefix} {err}")),
            Err(err) => failure("4.3.0", format!("{prefix} cannot switch uid: {err}")),
        }
    }

    /// `/file` or `/dir/` from an alias, include or .forward.
    fn deliver_file(
        &mut self,
        message: &mut Message,
        exp: &mut Expansion,
        ctx: &Context,
        path: &str,
    ) {
        if !self.settings.allow_files.allows(ctx.source) {
            let v = failure("5.7.1", format!("mail to file is restricted: {path}"));
            return self.record(message, exp, &ctx.address, v);
        }
        let who = self.run_identity(ctx.privs);
        let headers = self.delivery_headers(exp, &ctx.sender, self.settings.delivered_to.file);
        let v = if path.ends_with('/') {
            self.write_maildir(Path::new(path), who, &headers, &message.content)
        } else {
            let mut v = self.write_mbox(
                Path::new(path),
                who,
                false,
                &user_name(who),
                &headers,
                &message.content,
            );
            if v.status == Status::Sent {
                v.reason = format!("delivered to file: {path}");
            }
            v
        };
        self.record(message, exp, &ctx.address, v);
    }

    /// `|command` from an alias, include or .forward.
    fn deliver_command_target(
        &mut self,
        message: &mut Message,
        exp: &mut Expansion,
        ctx: &Context,
        command: &str,
    ) {
        if !self.settings.allow_commands.allows(ctx.source) {
            let v = failure("5.7.1", format!("mail to command is restricted: {command}"));
            return self.record(message, exp, &ctx.address, v);
        }
        let who = self.run_identity(ctx.privs);
        let headers = self.delivery_headers(exp, &ctx.sender, self.settings.delivered_to.command);
        let input = command_input(&headers, &message.content);
        let env = self.environment(ctx.user.as_ref(), &ctx.address, "", &ctx.sender, &exp.orig);
        let cwd = ctx.user.as_ref().map(|u| u.dir.clone());
        let v = self.run_command(command, who, env, cwd, &input);
        self.record(message, exp, &ctx.address, v);
    }

    /// Root never runs commands or writes files for others: those run as
    /// default_privs.
    fn run_identity(&self, wanted: Identity) -> Identity {
        match wanted.is_root() {
            true => self.default_privs,
            false => wanted,
        }
    }

    fn run_command(
        &self,
        command: &str,
        who: Identity,
        env: Vec<(String, String)>,
        home: Option<PathBuf>,
        input: &[u8],
    ) -> Verdict {
        let cwd = match self.settings.command_execution_directory.trim() {
            "" => home.filter(|dir| dir.is_dir()),
            dir => Some(PathBuf::from(dir)),
        };
        let pipe = PipeCommand {
            command: command.to_string(),
            shell: self.settings.local_command_shell.clone(),
            user: self.privileges.child_user(who),
            env,
            cwd,
            time_limit: self.settings.command_time_limit,
        };
        pipe.run(input).verdict(command)
    }

    /// `:include:/path`: destinations read as the current privileges,
    /// run as the file's owner (default_privs for root).
    fn deliver_include(
        &mut self,
        message: &mut Message,
        exp: &mut Expansion,
        ctx: &Context,
        path: &str,
    ) {
        if !path.starts_with('/') {
            let v = failure("5.3.5", format!(":include: path is not absolute: {path}"));
            return self.record(message, exp, &ctx.address, v);
        }
        if !exp.done.insert(format!("include:{path}")) {
            return;
        }
        let who = self.run_identity(ctx.privs);
        let read = self.privileges.run_as(who, || {
            let text = std::fs::read(path)?;
            let owner = std::fs::metadata(path)?;
            Ok::<_, std::io::Error>((String::from_utf8_lossy(&text).into_owned(), owner))
        });
        let (text, meta) = match read {
            Ok(Ok(found)) => found,
            Ok(Err(err)) | Err(err) => {
                let v = failure(
                    mailbox::errno_dsn(&err, "4.3.0"),
                    format!(
                        "cannot open include file {path}: {}",
                        libmail::error::strerror(&err)
                    ),
                );
                return self.record(message, exp, &ctx.address, v);
            }
        };
        let inner = Context {
            source: Source::Include,
            privs: Identity {
                uid: meta.uid(),
                gid: meta.gid(),
            },
            depth: ctx.depth + 1,
            ..ctx.clone()
        };
        self.expand_targets(message, exp, &inner, alias_list::parse_file(&text));
    }

    /// The first .forward file in forward_path that exists, read as the
    /// user; it must belong to the user.
    fn read_forward(&self, user: &User, address: &str, extension: &str) -> Option<Vec<Target>> {
        if self.settings.forward_path.trim().is_empty() {
            return None;
        }
        let attrs = self.attributes(user, address, extension, "");
        let expanded = expand(
            &self.settings.forward_path,
            &attrs,
            &self.settings.forward_filter,
        );
        let who = identity(user);
        let owner = self.privileges.effective(who).uid;
        let mut paths = libmail::config::value::split_list(&expanded);
        // Without an extension the stock forward_path names .forward
        // twice; looking once is enough.
        paths.dedup();
        let read = self.privileges.run_as(who, || {
            paths.iter().find_map(|path| {
                let meta = std::fs::metadata(path).ok()?;
                if !meta.is_file() {
                    return None;
                }
                if meta.uid() != owner && meta.uid() != 0 {
                    libmail::msg::warning(format!(
                        "file {path} is not owned by {}: ignored",
                        user.name
                    ));
                    return None;
                }
                let bytes = std::fs::read(path).ok()?;
                let targets = alias_list::parse_file(&String::from_utf8_lossy(&bytes));
                // An empty .forward means no forwarding, as Postfix.
                (!targets.is_empty()).then_some(targets)
            })
        });
        read.ok().flatten()
    }

    /// The `$name` attributes of forward_path and mailbox_command.
    fn attributes(&self, user: &User, address: &str, extension: &str, sender: &str) -> Attributes {
        let (localpart, domain) = split_address(address);
        let delimiter = extension
            .chars()
            .next()
            .map(String::from)
            .unwrap_or_default();
        let extension = extension.get(delimiter.len()..).unwrap_or("").to_string();
        Attributes {
            pairs: vec![
                ("user", user.name.clone()),
                ("home", user.dir.to_string_lossy().into_owned()),
                ("shell", user.shell.to_string_lossy().into_owned()),
                ("recipient", address.to_string()),
                ("local", localpart.to_ascii_lowercase()),
                ("domain", domain.unwrap_or("").to_string()),
                ("extension", extension),
                ("recipient_delimiter", delimiter),
                ("mailbox", user.name.clone()),
                ("sender", sender.to_string()),
            ],
        }
    }

    /// The environment of a command: the delivery attributes in upper
    /// case, and what export_environment lets through.
    fn environment(
        &self,
        user: Option<&User>,
        address: &str,
        extension: &str,
        sender: &str,
        orig: &str,
    ) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = Vec::new();
        for name in &self.settings.export_environment {
            match name.split_once('=') {
                Some((n, v)) => env.push((n.to_string(), v.to_string())),
                None => {
                    if let Ok(value) = std::env::var(name) {
                        env.push((name.clone(), value));
                    }
                }
            }
        }
        let (localpart, domain) = split_address(address);
        let mut set = |name: &str, value: String| env.push((name.to_string(), value));
        if let Some(user) = user {
            set("HOME", user.dir.to_string_lossy().into_owned());
            set("USER", user.name.clone());
            set("LOGNAME", user.name.clone());
            set("SHELL", user.shell.to_string_lossy().into_owned());
        }
        set("SENDER", sender.to_string());
        set("RECIPIENT", address.to_string());
        set("LOCAL", localpart.to_ascii_lowercase());
        set("DOMAIN", domain.unwrap_or("").to_string());
        set("EXTENSION", extension.get(1..).unwrap_or("").to_string());
        set("ORIGINAL_RECIPIENT", orig.to_string());
        set("PATH", "/usr/bin:/bin".to_string());
        env
    }

    /// Submits the collected non-local addresses, one new message per
    /// sender, and logs each as forwarded.
    fn send_forwards(&mut self, message: &mut Message, exp: &mut Expansion) {
        let forwards = std::mem::take(&mut exp.forwards);
        let mut senders: Vec<&str> = Vec::new();
        for f in &forwards {
            if !senders.contains(&f.sender.as_str()) {
                senders.push(&f.sender);
            }
        }
        let delivered = self
            .settings
            .delivered_to
            .forward
            .then(|| exp.delivered_to.clone());
        for sender in senders {
            let batch: Vec<&Forward> = forwards.iter().filter(|f| f.sender == sender).collect();
            let outcome = forward::submit(
                &self.cleanup_path,
                message,
                exp.rcpt,
                sender,
                &batch,
                delivered.as_deref(),
            );
            for f in batch {
                let v = match &outcome {
                    Ok(id) => verdict(Status::Sent, "2.0.0", format!("forwarded as {id}")),
                    Err(reason) => failure("4.3.0", reason.clone()),
                };
                self.record(message, exp, &f.address, v);
            }
        }
    }
}

fn msg_warning(text: &str) {
    libmail::msg::warning(text);
}

fn identity(user: &User) -> Identity {
    Identity {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    }
}

fn user_name(who: Identity) -> String {
    User::from_uid(nix::unistd::Uid::from_raw(who.uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| who.uid.to_string())
}

/// A command's input: the `From ` line, the delivery headers, the
/// message unquoted.
fn command_input(headers: &DeliveryHeaders, content: &[u8]) -> Vec<u8> {
    let mut input = mailbox::from_line(headers.sender, SystemTime::now()).into_bytes();
    input.extend_from_slice(&mailbox::plain_text(headers, content));
    input
}

/// Opens every table of alias_maps once; a table that cannot be opened
/// makes its lookups defer (a missing aliases.db is not "no alias"). Commands and files of a root-owned table run as default_privs.
fn open_aliases(alias_maps: &str, default_privs: Identity) -> Vec<AliasTable> {
    let mut tables = Vec::new();
    for spec in libmail::config::value::split_list(alias_maps) {
        let dict = match tables::open_with(spec, OpenOptions::default()) {
            Ok(dict) => Ok(dict),
            // A type this build lacks (the default's nis:) can never
            // answer: left out, as a system without NIS does.
            Err(err @ tables::TableError::UnsupportedType(_)) => {
                libmail::msg::warning(format!("alias_maps: {spec}: {err}"));
                continue;
            }
            Err(err) => {
                libmail::msg::warning(format!("alias_maps: {spec}: {err}"));
                Err(format!("{spec}: {err}"))
            }
        };
        let owner = table_file(spec)
            .and_then(|path| std::fs::metadata(path).ok())
            .map(|meta| Identity {
                uid: meta.uid(),
                gid: meta.gid(),
            })
            .filter(|owner| !owner.is_root())
            .unwrap_or(default_privs);
        tables.push(AliasTable { dict, owner });
    }
    tables
}

/// The file behind a `type:name` table, for its owner.
fn table_file(spec: &str) -> Option<String> {
    let (kind, name) = tables::split_spec(spec).ok()?;
    let (kind, name) = match kind {
        "proxy" => tables::split_spec(name).ok()?,
        _ => (kind, name),
    };
    match kind {
        "hash" | "btree" => Some(format!("{name}.db")),
        "cdb" => Some(format!("{name}.cdb")),
        _ if name.starts_with('/') => Some(name.to_string()),
        _ => None,
    }
}
