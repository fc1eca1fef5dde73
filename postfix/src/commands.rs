//! The verbs of postfix(1), with Postfix's messages and exit codes:
//! start, start-fg, stop, abort, reload, flush, check, status,
//! set-permissions, logrotate.

use std::process::ExitCode;
use std::time::Duration;

use libmail::log::{self, Severity};
use nix::sys::signal::Signal;

use crate::check::{self, Detail};
use crate::instance::Instance;
use crate::{manifest, master};

/// How long `postfix stop` waits for master before it kills it; as
/// Postfix's script does, each second of waiting is logged.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// How long `postfix abort` waits (quietly) for master to go.
const ABORT_WAIT: Duration = Duration::from_secs(5);

/// postqueue's status when the mail system is down (EX_UNAVAILABLE),
/// which `postfix flush` passes on.
const EX_UNAVAILABLE: u8 = 69;

const VERBS: &str =
    "start (or start-fg, stop, reload, abort, flush, check, status, set-permissions, logrotate)";

pub fn run(instance: Instance, words: &[String]) -> ExitCode {
    let verb = words.first().map(String::as_str).unwrap_or_default();
    let args = words.get(1..).unwrap_or_default();
    let creates_queue = matches!(verb, "start" | "start-fg" | "check" | "set-permissions");
    if let Err(reason) = instance.require_installation(!creates_queue) {
        log::fatal(reason);
    }
    match verb {
        "start" => start(&instance),
        "start-fg" => start_fg(&instance),
        "stop" => stop(&instance),
        "abort" => abort(&instance),
        "reload" => reload(&instance),
        "flush" => flush(&instance),
        "check" => check(&instance),
        "status" => status(&instance),
        "set-permissions" => set_permissions(instance, args),
        "logrotate" => logrotate(&instance, args),
        "upgrade-configuration" => {
            log::fatal("upgrade-configuration is not provided by this build yet")
        }
        other => log::fatal(format_args!(
            "unknown command: '{other}'. Usage: postfix {VERBS}"
        )),
    }
}

/// The running master's pid; a pid file that cannot be read is fatal.
fn running(instance: &Instance) -> Option<i32> {
    libmail::pid_file::running(&instance.pid_file()).unwrap_or_else(|reason| log::fatal(reason))
}

fn running_or_fatal(instance: &Instance) -> i32 {
    running(instance).unwrap_or_else(|| log::fatal("the Postfix mail system is not running"))
}

fn send(pid: i32, signal: Signal) {
    if let Err(reason) = master::signal(pid, signal) {
        log::fatal(reason);
    }
}

/// Both halves of `check`; a fatal problem ends the command.
fn checks(instance: &Instance, detail: Detail) {
    instance.note_unprivileged();
    match check::fatal_checks(instance) {
        Ok(entries) => check::warning_checks(instance, &entries, detail),
        Err(_) => log::fatal("Postfix integrity check failed!"),
    }
}

fn check(instance: &Instance) -> ExitCode {
    checks(instance, Detail::Each);
    ExitCode::SUCCESS
}

fn refuse_if_running(instance: &Instance) {
    if running(instance).is_some() {
        log::fatal("the Postfix mail system is already running");
    }
}

fn start(instance: &Instance) -> ExitCode {
    refuse_if_running(instance);
    checks(instance, Detail::Summary);
    log::info("starting the Postfix mail system");
    if let Err(reason) = master::start_detached(instance) {
        log::error(reason);
        log::fatal("mail system startup failed");
    }
    if running(instance).is_none() {
        log::fatal("mail system startup failed");
    }
    ExitCode::SUCCESS
}

fn start_fg(instance: &Instance) -> ExitCode {
    refuse_if_running(instance);
    checks(instance, Detail::Summary);
    log::info("starting the Postfix mail system");
    let reason = master::exec_foreground(instance);
    log::error(reason);
    log::fatal("cannot start-fg the master daemon")
}

fn stop(instance: &Instance) -> ExitCode {
    let pid = running_or_fatal(instance);
    log::info("stopping the Postfix mail system");
    send(pid, Signal::SIGTERM);
    let waiting = || log::info("waiting for the Postfix mail system to terminate");
    let gone = master::wait_gone(&instance.pid_file(), STOP_WAIT, waiting);
    if !gone.unwrap_or_else(|reason| log::fatal(reason)) {
        log::warning("stopping the Postfix mail system with force");
        master::kill_group(pid);
    }
    ExitCode::SUCCESS
}

fn abort(instance: &Instance) -> ExitCode {
    let pid = running_or_fatal(instance);
    log::info("aborting the Postfix mail system");
    send(pid, Signal::SIGQUIT);
    let _ = master::wait_gone(&instance.pid_file(), ABORT_WAIT, || ());
    ExitCode::SUCCESS
}

/// Re-reads the configuration. A main.cf or master.cf that master could
/// not use is refused here, before master sees it.
fn reload(instance: &Instance) -> ExitCode {
    let pid = running_or_fatal(instance);
    if check::fatal_checks(instance).is_err() {
        log::fatal("Postfix integrity check failed! (master was not told to reload)");
    }
    log::info("refreshing the Postfix mail system");
    send(pid, Signal::SIGHUP);
    ExitCode::SUCCESS
}

/// `postqueue -f` in Postfix: qmgr retries every deferred message now.
fn flush(instance: &Instance) -> ExitCode {
    let up = running(instance).is_some();
    if !up || libmail::trigger::flush_queue(&instance.config).is_err() {
        log::log(
            Severity::Fatal,
            "Cannot flush mail queue - mail system is down",
        );
        return ExitCode::from(EX_UNAVAILABLE);
    }
    ExitCode::SUCCESS
}

fn status(instance: &Instance) -> ExitCode {
    match running(instance) {
        Some(pid) => {
            log::info(format_args!(
                "the Postfix mail system is running: PID: {pid}"
            ));
            ExitCode::SUCCESS
        }
        None => {
            log::info("the Postfix mail system is not running");
            ExitCode::FAILURE
        }
    }
}

/// Owners and modes of the queue tree, data_directory and what
/// postfix-files lists. `name=value` arguments override main.cf, as with
/// Postfix's post-install.
fn set_permissions(mut instance: Instance, args: &[String]) -> ExitCode {
    for arg in args {
        let Some((name, value)) = arg.split_once('=') else {
            log::fatal(format_args!(
                "usage: postfix set-permissions [name=value ...], not \"{arg}\""
            ));
        };
        instance.config.set_override(name.trim(), value.trim());
    }
    if !args.is_empty() {
        instance.layout = libmail::queue_layout::Layout::from_config(&instance.config)
            .unwrap_or_else(|e| log::fatal(e));
    }
    instance.note_unprivileged();
    let repair = instance.layout.repair();
    let mut changes = repair.changes;
    let mut errors: Vec<String> = repair.errors.iter().map(ToString::to_string).collect();
    let list = instance.config_dir.join("postfix-files");
    if list.is_file() {
        match manifest::read(&list, &instance.config) {
            Ok(entries) => {
                let outcome = manifest::apply(&entries, &instance.layout);
                outcome.missing.iter().for_each(log::warning);
                changes.extend(outcome.changes);
                errors.extend(outcome.errors);
            }
            Err(reason) => errors.push(reason),
        }
    }
    for change in &changes {
        log::verbose(change);
    }
    for error in &errors {
        log::warning(error);
    }
    if !errors.is_empty() {
        log::fatal("unable to set all owners and permissions");
    }
    ExitCode::SUCCESS
}

/// Renames maillog_file with its rotate suffix, has master reopen (it
/// reloads), then runs the compressor.
fn logrotate(instance: &Instance, args: &[String]) -> ExitCode {
    if !args.is_empty() {
        log::fatal("usage postfix logrotate (no arguments)");
    }
    let rotation = log::rotate(&instance.config).unwrap_or_else(|e| log::fatal(e));
    if let Some(pid) = running(instance) {
        send(pid, Signal::SIGHUP);
    }
    if let Err(err) = rotation.compress() {
        log::fatal(err);
    }
    ExitCode::SUCCESS
}
