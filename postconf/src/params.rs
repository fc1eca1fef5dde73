//! Parameter mode: show main.cf parameters (current, `-d` defaults, `-n`
//! explicit ones, `-x` expanded) and edit main.cf (`-e`, `-#`, `-X`).

use std::collections::BTreeSet;
use std::path::Path;

use libmail::config::expand::references;
use libmail::config::main_cf::{self, Edit};
use libmail::config::master_cf::MasterCf;
use libmail::config::{
    builtin, config_directory, value, Config, ConfigError, Lookup, RAW_PARAMETERS,
};

use crate::output;
use crate::Options;
use libmail::msg::warning;

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
    if options.defaults {
        return show_defaults(options);
    }
    let mut config = load(options)?;
    let master = load_master(config.config_dir())?;
    if let Some(master) = &master {
        config.add_service_defaults(master);
    }
    let used = used_names(&config, master.as_ref());
    report_problems(&config, master.as_ref(), &used);
    show(options, &config, &used)
}

/// `-d`: built-in defaults, without reading main.cf (as in Postfix, this
/// works before main.cf exists).
fn show_defaults(options: &Options) -> Result<(), String> {
    let (dir, _) = config_directory(options.config_dir.as_deref());
    let mut config = Config::from_text(&dir, "").map_err(|e| e.to_string())?;
    if let Ok(master) = MasterCf::load(&dir) {
        config.add_service_defaults(&master);
    }
    show(options, &config, &BTreeSet::new())
}

/// Reads main.cf and applies `-o` overrides.
pub fn load(options: &Options) -> Result<Config, String> {
    let mut config = Config::load(options.config_dir.as_deref()).map_err(|e| e.to_string())?;
    for text in &config.warnings {
        warning(text);
    }
    for pair in &options.overrides {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("-o option requires name=value, not \"{pair}\""))?;
        config.set_override(name.trim(), value.trim());
    }
    Ok(config)
}

/// master.cf, for service-defined parameters: a missing file is only a
/// warning, a broken one is fatal, as in Postfix.
fn load_master(dir: &Path) -> Result<Option<MasterCf>, String> {
    match MasterCf::load(dir) {
        Ok(master) => Ok(Some(master)),
        Err(err @ ConfigError::Io { .. }) => {
            warning(err);
            Ok(None)
        }
        Err(err) => Err(err.to_string()),
    }
}

/// Parameters that main.cf or master.cf refer to as `$name`.
fn used_names(config: &Config, master: Option<&MasterCf>) -> BTreeSet<String> {
    let extra = master.map(MasterCf::override_values).unwrap_or_default();
    config.referenced_names(&extra)
}

/// Unused and undefined parameters, and values of the wrong type.
fn report_problems(config: &Config, master: Option<&MasterCf>, used: &BTreeSet<String>) {
    let main_cf = config.main_cf_path().display();
    for def in config.definitions() {
        if !config.is_known(&def.name) && !used.contains(&def.name) {
            let value = main_cf::printable(&def.value);
            warning(format!("{main_cf}: unused parameter: {}={value}", def.name));
        }
    }
    if let Some(master) = master {
        for entry in &master.entries {
            for (name, value) in entry.overrides() {
                if !config.is_known(&name)
                    && config.source(&name).is_none()
                    && !used.contains(&name)
                {
                    let path = master.path.display();
                    warning(format!("{path}: unused parameter: {name}={value}"));
                }
            }
        }
    }
    report_undefined(config, master);
    for err in config.validate() {
        warning(err);
    }
}

/// `$name` references to parameters that nothing defines, reported
/// against the file that holds the reference.
pub fn report_undefined(config: &Config, master: Option<&MasterCf>) {
    let mut reported = BTreeSet::new();
    for name in config.referenced_names(&[]) {
        if config.raw(&name).is_none() && reported.insert(name.clone()) {
            let path = config.main_cf_path().display();
            warning(format!("{path}: undefined parameter: {name}"));
        }
    }
    let Some(master) = master else { return };
    for value in master.override_values() {
        for name in references(&value) {
            if config.raw(&name).is_none() && reported.insert(name.clone()) {
                let path = master.path.display();
                warning(format!("{path}: undefined parameter: {name}"));
            }
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
                // A user-defined parameter counts only while something uses it.
                let known = config.is_known(name) || used.contains(name.as_str());
                if !known {
                    warning(format!("{name}: unknown parameter"));
                }
                known
            })
            .cloned()
            .collect();
    }
    let all = config.all_names(used);
    if options.non_default {
        all.into_iter().filter(|n| config.is_explicit(n)).collect()
    } else {
        all.into_iter().collect()
    }
}

fn show(options: &Options, config: &Config, used: &BTreeSet<String>) -> Result<(), String> {
    let mut out = String::new();
    for name in selected_names(options, config, used) {
        let Some(raw) = config.raw(&name) else {
            continue;
        };
        let value = if options.expand && !RAW_PARAMETERS.contains(&name.as_str()) {
            expanded(config, &name, &raw)?
        } else {
            raw.into_owned()
        };
        out.push_str(&output::entry(options, &name, &value));
        out.push('\n');
    }
    print!("{out}");
    Ok(())
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
        for text in warnings {
            warning(text);
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
            warning(reason);
        }
    }
}
