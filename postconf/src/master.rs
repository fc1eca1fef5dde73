//! master.cf mode: show services (`-M`), their fields (`-F`) and their
//! `-o` parameters (`-P`), and edit them (`-Me`, `-M#`, `-MX`, `-Fe`,
//! `-Pe`, `-PX`) keeping every other line of the file.

use std::borrow::Cow;
use std::path::Path;

use libmail::config::edit::LineEdit;
use libmail::config::master_cf::{self, MasterCf, MasterEntry, FIELD_NAMES};
use libmail::config::{config_directory, expand, Config, Lookup};

use crate::output;
use crate::Options;
use libmail::msg::warning;

pub fn run(options: &Options) -> Result<(), String> {
    let (dir, _) = config_directory(options.config_dir.as_deref());
    let master = MasterCf::load(&dir).map_err(|e| e.to_string())?;
    let editing = options.edit || options.comment_out || options.remove;
    if editing {
        let edits = edits(options, &master)?;
        return write(&master.path, &edits);
    }
    // main.cf only adds warnings and `-x` values here; it may be missing.
    let config = dir
        .join("main.cf")
        .exists()
        .then(|| crate::params::load(options))
        .transpose()?;
    if let Some(config) = &config {
        crate::params::report_undefined(config, Some(&master));
    }
    let master = match (&config, options.expand) {
        (Some(config), true) => expand_master(config, &master),
        _ => master,
    };
    let lines = if options.master {
        show_entries(options, &master)
    } else if options.fields {
        show_fields(options, &master)
    } else {
        show_params(options, &master)
    };
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

/// main.cf as one service sees it: `$service_name` is that service.
struct ServiceLookup<'a> {
    config: &'a Config,
    service: &'a str,
}

impl Lookup for ServiceLookup<'_> {
    fn raw(&self, name: &str) -> Option<Cow<'_, str>> {
        if name == "service_name" {
            Some(Cow::Borrowed(self.service))
        } else {
            self.config.raw(name)
        }
    }
}

/// `-x`: every entry with `$name` in its arguments expanded; an argument
/// whose expansion fails is shown as written.
fn expand_master(config: &Config, master: &MasterCf) -> MasterCf {
    let entries = master
        .entries
        .iter()
        .map(|entry| {
            entry.expanded(|service, arg| {
                let lookup = ServiceLookup { config, service };
                expand(arg, &lookup).map_or_else(|_| arg.to_string(), |e| e.value)
            })
        })
        .collect();
    MasterCf {
        path: master.path.clone(),
        entries,
    }
}

/// Entries matching one request: `service`, `service/type`, or longer.
fn matching<'m>(master: &'m MasterCf, request: &str) -> Vec<&'m MasterEntry> {
    let mut parts = request.splitn(3, '/');
    let service = parts.next().unwrap_or_default();
    let pattern = match parts.next() {
        Some(kind) => format!("{service}/{kind}"),
        None => service.to_string(),
    };
    let found = master.select(&pattern);
    if found.is_empty() {
        warning(format!("unmatched request: \"{request}\""));
    }
    found
}

/// The entries the arguments ask for, each once, in file order.
fn requested<'m>(
    options: &Options,
    master: &'m MasterCf,
) -> Vec<(&'m MasterEntry, Option<String>)> {
    if options.args.is_empty() {
        return master.entries.iter().map(|e| (e, None)).collect();
    }
    let mut out = Vec::new();
    for request in &options.args {
        let third = request.splitn(3, '/').nth(2).map(String::from);
        for entry in matching(master, request) {
            out.push((entry, third.clone()));
        }
    }
    out
}

fn show_entries(options: &Options, master: &MasterCf) -> Vec<String> {
    requested(options, master)
        .into_iter()
        .map(|(entry, _)| entry.format(options.fold))
        .collect()
}

fn show_fields(options: &Options, master: &MasterCf) -> Vec<String> {
    let mut lines = Vec::new();
    for (entry, field) in requested(options, master) {
        let values = entry.fields();
        for (name, value) in FIELD_NAMES.iter().zip(values.iter()) {
            if field.as_deref().is_some_and(|f| f != *name) {
                continue;
            }
            let name = format!("{}/{name}", entry.key());
            if name.ends_with("/command") && options.fold && !options.names_only {
                let prefix = if options.values_only {
                    String::new()
                } else {
                    format!("{name} = ")
                };
                lines.push(entry.command_with_prefix(&prefix, true));
            } else {
                lines.push(output::entry(options, &name, value));
            }
        }
    }
    lines
}

fn show_params(options: &Options, master: &MasterCf) -> Vec<String> {
    let mut lines = Vec::new();
    for (entry, param) in requested(options, master) {
        let mut pairs = entry.overrides();
        pairs.sort();
        for (name, value) in pairs {
            if param.as_deref().is_some_and(|p| p != name) {
                continue;
            }
            lines.push(output::entry(
                options,
                &format!("{}/{name}", entry.key()),
                &value,
            ));
        }
    }
    lines
}

/// Splits `service/type[/name][ = value]` into its parts.
fn split_request(
    arg: &str,
    parts: usize,
    with_value: bool,
) -> Result<(Vec<String>, Option<String>), String> {
    let (path, value) = match (with_value, arg.split_once('=')) {
        (true, Some((path, value))) => (path.trim(), Some(value.trim().to_string())),
        (true, None) => return Err(format!("missing '=' in \"{arg}\"")),
        (false, _) => (arg.trim(), None),
    };
    let names: Vec<String> = path.split('/').map(String::from).collect();
    if names.len() != parts || names.iter().any(String::is_empty) {
        let want = if parts == 2 {
            "-Me, -MX or -M# requires service_name/type"
        } else {
            "-Fe, -Pe or -PX requires service_name/type/name"
        };
        return Err(want.to_string());
    }
    Ok((names, value))
}

fn find<'m>(master: &'m MasterCf, service: &str, kind: &str) -> Result<&'m MasterEntry, String> {
    master
        .select(&format!("{service}/{kind}"))
        .into_iter()
        .next()
        .ok_or_else(|| format!("unmatched request: \"{service}/{kind}\""))
}

/// Turns the arguments into entry edits keyed by `service/type`.
fn edits(options: &Options, master: &MasterCf) -> Result<Vec<(String, LineEdit)>, String> {
    let mut edits: Vec<(String, LineEdit)> = Vec::new();
    for arg in &options.args {
        let (key, edit) = if options.master {
            entry_edit(options, arg)?
        } else {
            let with_value = options.edit;
            let (names, value) = split_request(arg, 3, with_value)?;
            let mut entry = find(master, &names[0], &names[1])?.clone();
            // Several changes to one entry build on each other.
            if let Some((_, LineEdit::Replace(text))) =
                edits.iter().find(|(k, _)| *k == entry.key())
            {
                entry = master_cf::parse_entry(text, entry.line)?;
            }
            let entry = if options.fields {
                if !options.edit {
                    return Err("-F goes with -e only".into());
                }
                entry.with_field(&names[2], value.as_deref().unwrap_or_default())?
            } else if options.remove {
                entry.with_override(&names[2], None)
            } else if options.edit {
                entry.with_override(&names[2], value.as_deref())
            } else {
                return Err("-P goes with -e or -X only".into());
            };
            (entry.key(), LineEdit::Replace(entry.format(true)))
        };
        edits.retain(|(k, _)| *k != key);
        edits.push((key, edit));
    }
    Ok(edits)
}

/// `-Me service/type = entry`, `-M# service/type`, `-MX service/type`.
fn entry_edit(options: &Options, arg: &str) -> Result<(String, LineEdit), String> {
    if !options.edit {
        let (names, _) = split_request(arg, 2, false)?;
        let edit = if options.remove {
            LineEdit::Remove
        } else {
            LineEdit::CommentOut
        };
        return Ok((names.join("/"), edit));
    }
    let (names, value) = split_request(arg, 2, true)?;
    let key = names.join("/");
    let text = value.unwrap_or_default();
    let entry = master_cf::parse_entry(&text, 0).map_err(|reason| format!("{key}: {reason}"))?;
    if entry.key() != key {
        return Err(format!("{key}: the new entry is for \"{}\"", entry.key()));
    }
    Ok((key, LineEdit::Replace(entry.format(true))))
}

fn write(path: &Path, edits: &[(String, LineEdit)]) -> Result<(), String> {
    crate::rewrite_existing(path, |old| {
        let (new, unmatched) = master_cf::edit(old, edits);
        for key in unmatched {
            let appended = edits
                .iter()
                .any(|(k, e)| *k == key && matches!(e, LineEdit::Replace(_)));
            if !appended {
                warning(format!("unmatched request: \"{key}\""));
            }
        }
        new
    })
}
