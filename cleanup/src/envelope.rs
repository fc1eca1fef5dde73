//! Address rewriting for the envelope and for address headers, in
//! Postfix's order: qualify (the local rewriting context), then, when the
//! client asked for mapping, sender/recipient canonical maps, canonical
//! maps and masquerading per their address classes, and for envelope
//! recipients virtual alias expansion. A table that cannot answer is a
//! temporary failure of the whole message.

use libmail::rewrite::{self, Expansion};
use libmail::tables::{LookupError, Maps};

use crate::settings::{Classes, Settings, Tables};

/// Which address is being rewritten: picks the canonical and masquerade
/// classes that apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    EnvelopeSender,
    EnvelopeRecipient,
    HeaderSender,
    HeaderRecipient,
}

impl Role {
    fn in_classes(self, classes: &Classes) -> bool {
        match self {
            Role::EnvelopeSender => classes.envelope_sender,
            Role::EnvelopeRecipient => classes.envelope_recipient,
            Role::HeaderSender => classes.header_sender,
            Role::HeaderRecipient => classes.header_recipient,
        }
    }

    fn is_sender(self) -> bool {
        matches!(self, Role::EnvelopeSender | Role::HeaderSender)
    }
}

/// How header addresses are completed (the rewriting context).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Mail from this machine or a local_header_rewrite_clients client.
    Local,
    /// Other mail: bare names get remote_header_rewrite_domain, if set.
    Remote,
}

/// Rewrites one address (not the null sender, which stays empty).
pub fn rewrite(
    settings: &Settings,
    tables: &mut Tables,
    address: &str,
    role: Role,
    context: Context,
    map: bool,
) -> Result<String, LookupError> {
    if address.is_empty() {
        return Ok(String::new());
    }
    let mut address = match context {
        Context::Local => settings.qualify.qualify(address),
        Context::Remote => qualify_remote(address, &settings.remote_domain),
    };
    if !map {
        return Ok(address);
    }
    let specific = match role.is_sender() {
        true => (&settings.sender_canonical_classes, Which::Sender),
        false => (&settings.recipient_canonical_classes, Which::Recipient),
    };
    for (classes, which) in [specific, (&settings.canonical_classes, Which::Common)] {
        if role.in_classes(classes) {
            address = canonical(settings, tables, which, &address)?;
        }
    }
    if role.in_classes(&settings.masquerade_classes) && !settings.masquerade_domains.is_empty() {
        address = rewrite::masquerade(
            &address,
            &settings.masquerade_domains,
            &settings.masquerade_exceptions,
        );
    }
    Ok(address)
}

#[derive(Clone, Copy)]
enum Which {
    Sender,
    Recipient,
    Common,
}

fn canonical(
    settings: &Settings,
    tables: &mut Tables,
    which: Which,
    address: &str,
) -> Result<String, LookupError> {
    let local = tables.is_local(address)?;
    let maps: Option<&mut Maps> = match which {
        Which::Sender => tables.sender_canonical.as_mut(),
        Which::Recipient => tables.recipient_canonical.as_mut(),
        Which::Common => tables.canonical.as_mut(),
    };
    match maps {
        Some(maps) => rewrite::canonical(maps, address, &settings.delimiters, local),
        None => Ok(address.to_string()),
    }
}

/// Remote context: a bare name gets `@remote_header_rewrite_domain`;
/// nothing else changes.
fn qualify_remote(address: &str, domain: &str) -> String {
    if domain.is_empty() || address.contains('@') {
        return address.to_string();
    }
    format!("{address}@{domain}")
}

/// virtual_alias_maps for one envelope recipient; without tables the
/// address stands for itself.
pub fn expand(
    settings: &Settings,
    tables: &mut Tables,
    address: &str,
) -> Result<Expansion, LookupError> {
    match tables.virtual_alias.as_mut() {
        Some(maps) => {
            rewrite::expand_virtual(maps, address, &settings.delimiters, settings.alias_limits)
        }
        None => Ok(Expansion {
            addresses: vec![address.to_string()],
            limited: false,
        }),
    }
}
