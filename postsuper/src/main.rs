#![forbid(unsafe_code)]
//! postsuper: the superuser's queue maintenance (postsuper(1) of Postfix
//! 3.7).
//!
//! `postsuper [-psSv] [-c config_dir] [-d queue_id] [-e queue_id]
//! [-f queue_id] [-h queue_id] [-H queue_id] [-r queue_id] [queue...]`
//! deletes, holds, releases, requeues and force-expires messages, by ID,
//! from standard input (`-`) or `ALL`, in the queues named (default:
//! those each operation applies to), and checks and repairs the queue's
//! structure (`-s`, `-S`) and purges old temporary files (`-p`); with no
//! option, `-s` and `-p`. Every message and the counts at the end go to
//! standard error and to the mail log, as Postfix's do.

mod error;
mod options;
mod privilege;
mod scan;
mod work;

use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use libmail::config::Config;
use libmail::log::{self, Severity};
use libmail::queue::{is_queue_name, Queue, QueueSettings, ACTIVE, DEFERRED, HOLD, INCOMING};
use libmail::trigger;

use error::SuperError;
use options::{Action, Options, Structure};
use scan::Plan;
use work::{Counts, Work, MESSAGE_QUEUES};

/// The directories postsuper knows, and the default list of its pass over
/// the queues: log directories first, so that logs are in place before
/// the message files they belong to are renamed.
const DEFAULT_QUEUES: [&str; 8] = [
    "defer", "bounce", "maildrop", "incoming", "active", "deferred", "hold", "flush",
];
/// Directory names accepted on the command line.
const KNOWN_QUEUES: [&str; 9] = [
    "maildrop", "incoming", "active", "deferred", "hold", "trace", "defer", "bounce", "flush",
];
/// Where `-h ALL` alone looks.
const HOLD_ALL_QUEUES: [&str; 3] = [INCOMING, ACTIVE, DEFERRED];
/// Where `-H ALL` alone looks.
const RELEASE_ALL_QUEUES: [&str; 1] = [HOLD];

/// Every action, in the order postsuper does them and reports them.
const ACTIONS: [Action; 6] = [
    Action::Requeue,
    Action::Delete,
    Action::Expire,
    Action::ExpireRelease,
    Action::Hold,
    Action::Release,
];

fn main() -> ExitCode {
    libmail::msg::set_program("postsuper");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match options::parse(&args) {
        Ok(options) => options,
        Err(usage) => {
            if let Some(line) = usage.getopt {
                eprintln!("postsuper: {line}");
            }
            libmail::msg::fatal(options::USAGE)
        }
    };
    let (config, mut work, named) = setup(&options).unwrap_or_else(|err| log::fatal(err));
    if let Err(err) = run(&options, &config, &mut work, named) {
        log::log(Severity::Fatal, err);
        // Renames half done leave names that the next run completes.
        if work.counts.renamed > 0 || work.counts.moved > 0 {
            log::warning("OPERATION INCOMPLETE -- RERUN COMMAND TO FIX THE QUEUE FIRST");
        }
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Reads main.cf, checks the caller, starts logging, goes to the queue
/// directory and gives up root. Returns the queue names given, checked.
fn setup(options: &Options) -> Result<(Config, Work, Vec<String>), SuperError> {
    let config = load_config(options)?;
    let owner = privilege::check_caller(&config)?;
    log::set_verbose(options.verbose);
    if let Err(err) = log::init(&config, "postsuper") {
        log::warning(format_args!("{err}: logging to standard error only"));
    }
    for text in &config.warnings {
        log::warning(text);
    }
    let queue_dir = PathBuf::from(config.string("queue_directory")?);
    std::env::set_current_dir(&queue_dir).map_err(|source| SuperError::Chdir {
        path: queue_dir.clone(),
        source,
    })?;
    if let Some(owner) = &owner {
        privilege::become_owner(owner)?;
    }
    let named = checked_queue_names(&options.queues)?;
    let work = Work::new(
        relative_queue(&config)?,
        config.bool("enable_long_queue_ids")?,
    );
    Ok((config, work, named))
}

/// The pass over the queues, then the operations by queue ID, then the
/// report.
fn run(
    options: &Options,
    config: &Config,
    work: &mut Work,
    named: Vec<String>,
) -> Result<(), SuperError> {
    let plan = plan(options);
    if plan.is_needed() {
        work.scan(&scan_queues(&named, &plan), &plan)?;
    }
    if options.has_ids() && work.counts.renamed > 0 {
        log::error("QUEUE FILE NAMES WERE CHANGED TO MATCH INODE NUMBERS");
        return Err(SuperError::NamesChanged);
    }
    let id_queues = if named.is_empty() {
        MESSAGE_QUEUES.iter().map(|q| q.to_string()).collect()
    } else {
        named
    };
    by_id(work, options, &id_queues)?;
    report(options, &work.counts);
    wake(config, &work.counts);
    Ok(())
}

/// main.cf from `-c` (which must be absolute, as in Postfix), MAIL_CONFIG
/// or the default. A caller who may not read it is most likely one who
/// may not run postsuper at all: say that rather than the read error.
fn load_config(options: &Options) -> Result<Config, SuperError> {
    let dir = options.config_dir.as_deref();
    if dir.is_some_and(|dir| !dir.is_absolute()) {
        return Err(SuperError::RelativeConfig);
    }
    Config::load(dir).map_err(|err| {
        if nix::unistd::Uid::current().is_root() {
            SuperError::Config(err)
        } else {
            SuperError::Privilege(privilege::NOT_ROOT.into())
        }
    })
}

/// The queue as seen from inside the queue directory, so that paths in
/// messages read `deferred/B/B822221522`.
fn relative_queue(config: &Config) -> Result<Queue, SuperError> {
    let settings = QueueSettings {
        directory: PathBuf::new(),
        ..QueueSettings::from_config(config)?
    };
    Ok(Queue::new(settings)?)
}

/// The queue names from the command line, each one postsuper knows.
fn checked_queue_names(names: &[String]) -> Result<Vec<String>, SuperError> {
    for name in names {
        if !is_queue_name(name) || !KNOWN_QUEUES.contains(&name.as_str()) {
            return Err(SuperError::BadQueueName(name.clone()));
        }
    }
    Ok(names.to_vec())
}

fn plan(options: &Options) -> Plan {
    Plan {
        structure: options.structure,
        purge: options.purge,
        all: ACTIONS
            .into_iter()
            .filter(|action| options.all(*action))
            .collect(),
    }
}

/// The queues the pass goes over: those named, or the default list; `-h
/// ALL` or `-H ALL` on its own looks only where it applies.
fn scan_queues(named: &[String], plan: &Plan) -> Vec<String> {
    let alone = plan.structure == Structure::None && !plan.purge && plan.all.len() == 1;
    let list: &[&str] = match (named.is_empty(), alone, plan.all.first()) {
        (false, _, _) => return named.to_vec(),
        (true, true, Some(Action::Hold)) => &HOLD_ALL_QUEUES,
        (true, true, Some(Action::Release)) => &RELEASE_ALL_QUEUES,
        _ => &DEFAULT_QUEUES,
    };
    list.iter().map(|q| q.to_string()).collect()
}

/// The operations on messages named one by one, or on standard input
/// with `-`; an action given `ALL` was done by the pass.
fn by_id(work: &mut Work, options: &Options, queues: &[String]) -> Result<(), SuperError> {
    for action in ACTIONS {
        if options.all(action) {
            continue;
        }
        for (_, id) in options.requests.iter().filter(|(a, _)| *a == action) {
            if id == "-" {
                for line in io::stdin().lock().split(b'\n') {
                    let line = line.map_err(SuperError::Stdin)?;
                    work.by_id(action, &String::from_utf8_lossy(&line), queues)?;
                }
            } else {
                work.by_id(action, id, queues)?;
            }
        }
    }
    Ok(())
}

/// `Deleted: 3 messages` and the like, for each operation asked for.
fn report(options: &Options, counts: &Counts) {
    let wants = |actions: &[Action]| actions.iter().any(|a| options.wants(*a));
    let lines = [
        (wants(&[Action::Requeue]), "Requeued", counts.requeued),
        (wants(&[Action::Delete]), "Deleted", counts.deleted),
        (
            wants(&[Action::Expire, Action::ExpireRelease]),
            "Force-expired",
            counts.expired,
        ),
        (wants(&[Action::Hold]), "Placed on hold", counts.held),
        (
            wants(&[Action::Release, Action::ExpireRelease]),
            "Released from hold",
            counts.released,
        ),
        (
            counts.renamed > 0,
            "Renamed to match inode number",
            counts.renamed,
        ),
    ];
    for (wanted, what, count) in lines {
        if wanted {
            log::info(format_args!("{what}: {}", messages(count)));
        }
    }
    if counts.renamed > 0 {
        log::warning("QUEUE FILE NAMES WERE CHANGED TO MATCH INODE NUMBERS");
    }
}

fn messages(count: usize) -> String {
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} message{plural}")
}

/// Tells pickup about requeued mail and qmgr about released or expired
/// mail, so that neither waits for its next scan. Not running is fine.
fn wake(config: &Config, counts: &Counts) {
    if counts.requeued > 0 {
        if let Ok(path) = trigger::public_service(config, "pickup") {
            let _ = trigger::send_to_path(Path::new(&path), trigger::WAKEUP);
        }
    }
    if counts.released > 0 || counts.expired > 0 {
        trigger::wake_qmgr(config, trigger::qmgr::SCAN_DEFERRED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_postfix_writes_them() {
        assert_eq!(messages(0), "0 messages");
        assert_eq!(messages(1), "1 message");
        assert_eq!(messages(3), "3 messages");
    }

    #[test]
    fn queue_names_are_checked() {
        let names = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        assert!(checked_queue_names(&names(&["deferred", "defer", "maildrop"])).is_ok());
        for bad in ["corrupt", "saved", "Deferred", "../x", ""] {
            let err = checked_queue_names(&names(&[bad])).unwrap_err();
            assert_eq!(err.to_string(), format!("invalid directory name: {bad}"));
        }
    }

    #[test]
    fn hold_all_alone_looks_where_it_applies() {
        let plan = |all: Vec<Action>, purge: bool| Plan {
            all,
            purge,
            ..Plan::default()
        };
        assert_eq!(
            scan_queues(&[], &plan(vec![Action::Hold], false)),
            ["incoming", "active", "deferred"]
        );
        assert_eq!(
            scan_queues(&[], &plan(vec![Action::Release], false)),
            ["hold"]
        );
        assert_eq!(scan_queues(&[], &plan(vec![Action::Hold], true)).len(), 8);
        let named = vec!["deferred".to_string()];
        assert_eq!(
            scan_queues(&named, &plan(vec![Action::Delete], false)),
            named
        );
    }
}
