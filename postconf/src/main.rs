#![forbid(unsafe_code)]
//! postconf: show and edit the Postfix configuration, main.cf parameters
//! and master.cf services, with Postfix's options and output formats.

mod master;
mod output;
mod params;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgAction, Command};

/// Everything the command line asked for.
#[derive(Debug, Default)]
pub struct Options {
    pub config_dir: Option<PathBuf>,
    pub defaults: bool,
    pub non_default: bool,
    pub values_only: bool,
    pub names_only: bool,
    pub expand: bool,
    pub fold: bool,
    pub edit: bool,
    pub comment_out: bool,
    pub remove: bool,
    pub master: bool,
    pub fields: bool,
    pub service_params: bool,
    pub table_types: bool,
    pub sasl_server: bool,
    pub sasl_client: bool,
    pub overrides: Vec<String>,
    pub args: Vec<String>,
}

const USAGE: &str =
    "usage: postconf [-aAdefFhHmMnpPvxX#] [-c config_dir] [-o name=value] [name...]";

fn flag(short: char, name: &'static str) -> Arg {
    Arg::new(name).short(short).action(ArgAction::SetTrue)
}

fn command() -> Command {
    Command::new("postconf")
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(Arg::new("config_dir").short('c').num_args(1))
        .arg(
            Arg::new("override")
                .short('o')
                .num_args(1)
                .action(ArgAction::Append),
        )
        .args([
            flag('a', "sasl_server"),
            flag('A', "sasl_client"),
            flag('d', "defaults"),
            flag('e', "edit"),
            flag('f', "fold"),
            flag('F', "fields"),
            flag('h', "values_only"),
            flag('H', "names_only"),
            flag('m', "table_types"),
            flag('M', "master"),
            flag('n', "non_default"),
            flag('p', "parameters"),
            flag('P', "service_params"),
            flag('x', "expand"),
            flag('X', "remove"),
            flag('#', "comment_out"),
            Arg::new("verbose").short('v').action(ArgAction::Count),
        ])
        .arg(Arg::new("args").num_args(0..).action(ArgAction::Append))
}

fn parse_options() -> Result<Options, String> {
    let matches = command().try_get_matches().map_err(|e| clap_reason(&e))?;
    let on = |name: &str| matches.get_flag(name);
    let strings = |name: &str| -> Vec<String> {
        matches
            .get_many::<String>(name)
            .map(|v| v.cloned().collect())
            .unwrap_or_default()
    };
    let options = Options {
        config_dir: matches.get_one::<String>("config_dir").map(PathBuf::from),
        defaults: on("defaults"),
        non_default: on("non_default"),
        values_only: on("values_only"),
        names_only: on("names_only"),
        expand: on("expand"),
        fold: on("fold"),
        edit: on("edit"),
        comment_out: on("comment_out"),
        remove: on("remove"),
        master: on("master"),
        fields: on("fields"),
        service_params: on("service_params"),
        table_types: on("table_types"),
        sasl_server: on("sasl_server"),
        sasl_client: on("sasl_client"),
        overrides: strings("override"),
        args: strings("args"),
    };
    check_combinations(&options)?;
    Ok(options)
}

/// The first line of clap's message, without its `error: ` prefix.
fn clap_reason(err: &clap::Error) -> String {
    let text = err.to_string();
    let first = text.lines().next().unwrap_or("bad command line");
    first.trim_start_matches("error: ").to_string()
}

/// Refuses options that ask for two things at once.
fn check_combinations(o: &Options) -> Result<(), String> {
    let count = |flags: &[bool]| flags.iter().filter(|f| **f).count();
    if count(&[o.edit, o.comment_out, o.remove]) > 1 {
        return Err("specify only one of -e, -# and -X".into());
    }
    if count(&[o.master, o.fields, o.service_params]) > 1 {
        return Err("specify only one of -M, -F and -P".into());
    }
    if count(&[o.table_types, o.sasl_server, o.sasl_client]) > 1 {
        return Err("specify only one of -m, -a and -A".into());
    }
    if o.defaults && o.non_default {
        return Err("specify only one of -d and -n".into());
    }
    if o.values_only && o.names_only {
        return Err("specify only one of -h and -H".into());
    }
    if (o.edit || o.comment_out || o.remove) && (o.defaults || o.non_default || o.expand) {
        return Err("the -d, -n and -x options do not go with editing".into());
    }
    Ok(())
}

/// Rewrites an existing configuration file in place, atomically; a
/// missing file is an error, as Postfix's postconf reports it.
pub fn rewrite_existing(
    path: &std::path::Path,
    edit: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Result<(), String> {
    if let Err(err) = std::fs::metadata(path) {
        let reason = libmail::error::strerror(&err);
        return Err(format!("open {} for reading: {reason}", path.display()));
    }
    libmail::atomic_file::update(path, |old| Ok(edit(old))).map_err(|e| e.to_string())
}

fn list(items: &[&str]) -> Result<(), String> {
    for item in items {
        println!("{item}");
    }
    Ok(())
}

fn run(options: &Options) -> Result<(), String> {
    use libmail::features;
    if options.table_types {
        return list(features::TABLE_TYPES);
    }
    if options.sasl_server {
        return list(features::SASL_SERVER_TYPES);
    }
    if options.sasl_client {
        return list(features::SASL_CLIENT_TYPES);
    }
    if options.master || options.fields || options.service_params {
        return master::run(options);
    }
    params::run(options)
}

fn main() -> ExitCode {
    libmail::msg::set_program("postconf");
    let result = parse_options()
        .map_err(|reason| format!("{reason}; {USAGE}"))
        .and_then(|options| run(&options));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(text) => {
            eprintln!("{}: fatal: {text}", libmail::msg::program());
            ExitCode::FAILURE
        }
    }
}
