//! Parameter mode: show main.cf parameters (current, `-d` defaults, `-n`
//! explicit ones, `-x` expanded) and edit main.cf (`-e`, `-#`, `-X`).

use std::collections::BTreeSet;
use std::path::Path;

use libmail::config::main_cf::{self, Edit};
use libmail::config::master_cf::MasterCf;
use libmail::config::{
    builtin, config_directory, value, Config, ConfigError, Lookup, RAW_PARAMETERS,
};

use crate::output;
use crate::{warn, Options};

pub fn run(options: &Options) -> Result<(), String> {
    let editing = options.edit || options.comment_out || options.remove;
    let implied_edit =
        !editing && !options.args.is_empty() && options.args.iter().all(|a| a.contains('='));
    if editing || implied_edit {
        // Editing reads main.cf as lines only, so that a file with a broken
        // line can still be repaired with postconf -e or -X.
        let (dir, _) = config_directory(options.config_dir.as_deref());
        return edit(options, &dir.join("main.cf"));
    }
    let config = load(options)?;
    let master = load_master(config.config_dir());
    let mut config = config;
    if let Some(master) = &master {
        config.add_service_defaults(master);
    }
    let extra: Vec<String> = master
        .as_ref()
        .map(MasterCf::override_values)
        .unwrap_or_default();
    let used = config.referenced_names(&extra);
    if !options.defaults {
        report_problems(&config, master.as_ref(), &used);
    }
    show(options, &config, &used)
}

/// Reads main.cf and applies `-o` overrides.
fn load(options: &Options) -> Result<Config, String> {
    let mut config = Config::load(options.config_dir.as_deref()).map_err(|e| e.to_string())?;
    for warning in &config.warnings {
        warn(warning);
    }
    for pair in &options.overrides {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("-o option requires name=value, not \"{pair}\""))?;
        config.set_override(name.trim(), value.trim());
    }
    Ok(config)
}

/// master.cf, for service-defined parameters; a problem is only a warning
/// here, as in Postfix.
fn load_master(dir: &Path) -> Option<MasterCf> {
    match MasterCf::load(dir) {
        Ok(master) => Some(master),
        Err(err) => {
            warn(err);
            None
        }
    }
}

/// Unused and undefined parameters, and values of the wrong type.
fn report_problems(config: &Config, master: Option<&MasterCf>, used: &BTreeSet<String>) {
    let main_cf = config.main_cf_path().display();
    for def in config.definitions() {
        if !config.is_known(&def.name) && !used.contains(&def.name) {
            let value = main_cf::printable(&def.value);
            warn(format!("{main_cf}: unused parameter: {}={value}", def.name));
        }
    }
    if let Some(master) = master {
        for entry in &master.entries {
            for (name, value) in entry.overrides() {
                if !config.is_known(&name)
                    && config.source(&name).is_none()
                    && !used.contains(&name)
                {
                    warn(format!(
                        "{}: unused parameter: {name}={value}",
                        master.path.display()
                    ));
                }
            }
        }
    }
    report_undefined(config, used);
    for err in config.validate() {
        warn(err);
    }
}

/// `$name` references to parameters that nothing defines.
pub fn report_undefined(config: &Config, used: &BTreeSet<String>) {
    for name in used {
        if config.raw(name).is_none() {
            warn(format!(
                "{}: undefined parameter: {name}",
                config.main_cf_path().display()
            ));
        }
    }
}

/// Which names to print: the ones asked for, or all that the mode covers.
fn selected_names(options: &Options, config: &Config, used: &BTreeSet<String>) -> Vec<String> {
    if !options.args.is_empty() {
        return options
            .args
            .iter()
            .filter(|name| {
                let known = config.is_known(name) || config.source(name).is_some();
                if !known {
                    warn(format!("{name}: unknown parameter"));
                }
                known
            })
            .cloned()
            .collect();
    }
    let all = config.all_names(used);
    if options.non_default {
        all.into_iter().filter(|n| config.is_explicit(n)).collect()
    } else if options.defaults {
        all.into_iter()
            .filter(|n| config.default_raw(n).is_some())
            .collect()
    } else {
        all.into_iter().collect()
    }
}

fn show(options: &Options, config: &Config, used: &BTreeSet<String>) -> Result<(), String> {
    let names = selected_names(options, config, used);
    // -d shows built-in defaults: a configuration with nothing set.
    let defaults_only = options
        .defaults
        .then(|| default_config(config))
        .transpose()?;
    let source = defaults_only.as_ref().unwrap_or(config);
    let mut out = String::new();
    for name in names {
        let Some(raw) = source.raw(&name) else {
            if options.defaults {
                warn(format!("{name}: unknown parameter"));
            }
            continue;
        };
        let value = if options.expand && !RAW_PARAMETERS.contains(&name.as_str()) {
            expanded(source, &name, &raw)?
        } else {
            raw.into_owned()
        };
        let line = if options.names_only {
            name.clone()
        } else if options.values_only {
            output::format_line("", &value, options.fold)
        } else {
            output::parameter(&name, &value, options.fold)
        };
        out.push_str(&line);
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}

fn default_config(config: &Config) -> Result<Config, String> {
    let mut empty = Config::from_text(config.config_dir(), "").map_err(|e| e.to_string())?;
    if let Some(master) = load_master_quiet(config.config_dir()) {
        empty.add_service_defaults(&master);
    }
    Ok(empty)
}

fn load_master_quiet(dir: &Path) -> Option<MasterCf> {
    MasterCf::load(dir).ok()
}

/// `-x`: the value with every `$name` expanded; a loop or syntax error is
/// fatal and names where the value came from.
fn expanded(config: &Config, name: &str, raw: &str) -> Result<String, String> {
    match config.expand(raw) {
        Ok(expansion) => Ok(expansion.value),
        Err(err) => Err(format!(
            "{}parameter {name}: {}",
            config.location(name),
            ConfigError::from(err)
        )),
    }
}

/// `-e`, `-#`, `-X`, and `postconf name=value` (an implied `-e`).
fn edit(options: &Options, path: &Path) -> Result<(), String> {
    let mut edits = Vec::new();
    for arg in &options.args {
        let edit = if options.comment_out || options.remove {
            let edit = if options.remove {
                Edit::Remove
            } else {
                Edit::CommentOut
            };
            (arg.trim().to_string(), edit)
        } else {
            let (name, value) = arg
                .split_once('=')
                .ok_or_else(|| format!("-e requires name=value, not \"{arg}\""))?;
            (name.trim().to_string(), Edit::Set(value.trim().to_string()))
        };
        if edit.0.is_empty() || edit.0.contains(char::is_whitespace) {
            return Err(format!("bad parameter name: \"{}\"", edit.0));
        }
        edits.push(edit);
    }
    warn_bad_values(&edits);
    crate::rewrite_existing(path, |old| {
        let (new, warnings) = main_cf::edit(path, old, &edits);
        for warning in warnings {
            warn(warning);
        }
        new
    })
}

/// A typed value that will not work is written anyway (the administrator
/// may be part-way through a change) but named at once.
fn warn_bad_values(edits: &[(String, Edit)]) {
    for (name, edit) in edits {
        let (Some(param), Edit::Set(v)) = (builtin(name), edit) else {
            continue;
        };
        if v.contains('$') {
            continue;
        }
        if let Err(reason) = value::check(name, param.kind, v) {
            warn(reason);
        }
    }
}
