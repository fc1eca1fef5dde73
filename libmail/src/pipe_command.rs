//! Delivering to an external command, for local(8) (mailbox_command,
//! `|command` in aliases and .forward) and later pipe(8): run it with
//! `/bin/sh -c` under a given uid/gid, in a clean environment, with the
//! message on standard input and a time limit; capture what it says, and
//! map its exit status to a delivery status as Postfix does (sysexits.h).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::deliver::Status;

/// At most this much of the command's output is kept for the reason.
const OUTPUT_LIMIT: usize = 2048;

/// One command to run.
#[derive(Debug, Clone)]
pub struct PipeCommand {
    /// The command line, given to the shell.
    pub command: String,
    /// The shell (local_command_shell; `/bin/sh` when empty).
    pub shell: String,
    /// Whom to run it as; `None` keeps the caller's identity (when not
    /// root there is no choice).
    pub user: Option<(u32, u32)>,
    /// The whole environment of the command.
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    pub time_limit: Duration,
}

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signaled(i32),
    TimedOut,
    /// It could not be started.
    NotStarted(String),
}

/// The ending and what the command wrote on stdout and stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeResult {
    pub ending: Ending,
    pub output: Vec<u8>,
}

impl PipeCommand {
    /// Runs the command with `input` on its standard input.
    pub fn run(&self, input: &[u8]) -> PipeResult {
        let (mut child, output_pipe) = match self.spawn() {
            Ok(spawned) => spawned,
            Err(err) => {
                return PipeResult {
                    ending: Ending::NotStarted(crate::error::strerror(&err)),
                    output: Vec::new(),
                }
            }
        };
        let deadline = Instant::now() + self.time_limit;
        let mut output = Vec::new();
        let exchanged = exchange(&mut child, output_pipe, input, &mut output, deadline);
        let ending = match exchanged.and_then(|()| wait_until(&mut child, deadline)) {
            Ok(Some(ending)) => ending,
            Ok(None) | Err(_) => {
                kill_group(&child);
                let _ = child.wait();
                Ending::TimedOut
            }
        };
        PipeResult { ending, output }
    }

    /// The child and the read end of the one pipe its stdout and stderr
    /// share (so that the output reads in the order it was written).
    fn spawn(&self) -> io::Result<(Child, File)> {
        let shell = if self.shell.trim().is_empty() {
            "/bin/sh"
        } else {
            self.shell.trim()
        };
        let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let mut command = Command::new(shell);
        command
            .arg("-c")
            .arg(&self.command)
            .env_clear()
            .envs(self.env.iter().map(|(n, v)| (n, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::from(write_end.try_clone()?))
            .stderr(Stdio::from(write_end))
            // A group of its own, so that a time-out kills all of it.
            .process_group(0);
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        // `command` holds the write end until it goes at the return.
        Ok((command.spawn()?, File::from(read_end)))
    }
}

fn kill_group(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Feeds `input` and collects output until both output pipes close or
/// the deadline passes (an error of kind TimedOut).
fn exchange(
    child: &mut Child,
    output_pipe: File,
    input: &[u8],
    output: &mut Vec<u8>,
    deadline: Instant,
) -> io::Result<()> {
    let mut stdin = child.stdin.take();
    let mut stdout = Some(output_pipe);
    if let Some(pipe) = &stdin {
        fcntl(pipe.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    }
    let mut written = 0;
    if input.is_empty() {
        stdin = None;
    }
    while stdin.is_some() || stdout.is_some() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let timeout =
            PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = Vec::with_capacity(2);
        if let Some(pipe) = &stdin {
            fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLOUT));
        }
        if let Some(pipe) = &stdout {
            fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(err) => return Err(err.into()),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut at = 0;
        if stdin.is_some() {
            if ready[at] && feed(&mut stdin, input, &mut written) {
                stdin = None;
            }
            at += 1;
        }
        if stdout.is_some() && ready[at] && drain(stdout.as_mut(), output) {
            stdout = None;
        }
    }
    Ok(())
}

/// Writes what the pipe takes; true when done (all written, or the
/// command stopped reading, which is its right).
fn feed(stdin: &mut Option<std::process::ChildStdin>, input: &[u8], written: &mut usize) -> bool {
    let Some(pipe) = stdin.as_mut() else {
        return true;
    };
    match pipe.write(&input[*written..]) {
        Ok(n) => {
            *written += n;
            *written >= input.len()
        }
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => false,
        Err(err) if err.kind() == io::ErrorKind::Interrupted => false,
        Err(_) => true,
    }
}

/// Reads what is there; true at end of file. Output beyond the limit is
/// read and dropped so that the command never blocks on a full pipe.
fn drain(pipe: Option<&mut impl Read>, output: &mut Vec<u8>) -> bool {
    let Some(pipe) = pipe else {
        return true;
    };
    let mut buf = [0u8; 4096];
    match pipe.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => {
            let room = OUTPUT_LIMIT.saturating_sub(output.len());
            output.extend_from_slice(&buf[..n.min(room)]);
            false
        }
        Err(err) if err.kind() == io::ErrorKind::Interrupted => false,
        Err(_) => true,
    }
}

/// Waits for the exit; `None` when the deadline passes first.
fn wait_until(child: &mut Child, deadline: Instant) -> io::Result<Option<Ending>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(match (status.code(), status.signal()) {
                (Some(code), _) => Ending::Exited(code),
                (None, Some(signal)) => Ending::Signaled(signal),
                (None, None) => Ending::Exited(1),
            }));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// A delivery status with its enhanced code and reason text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    pub dsn: String,
    pub reason: String,
}

/// sysexits.h codes: (code, soft, enhanced status); anything else is a
/// hard 5.3.0 failure.
const SYSEXITS: &[(i32, bool, &str)] = &[
    (64, false, "5.3.0"), // EX_USAGE
    (65, false, "5.6.0"), // EX_DATAERR
    (66, false, "5.3.0"), // EX_NOINPUT
    (67, false, "5.1.1"), // EX_NOUSER
    (68, false, "5.1.2"), // EX_NOHOST
    (69, false, "5.3.0"), // EX_UNAVAILABLE
    (70, false, "5.3.0"), // EX_SOFTWARE
    (71, true, "4.3.0"),  // EX_OSERR
    (72, false, "5.3.0"), // EX_OSFILE
    (73, false, "5.2.0"), // EX_CANTCREAT
    (74, false, "5.3.0"), // EX_IOERR
    (75, true, "4.3.0"),  // EX_TEMPFAIL
    (76, false, "5.5.0"), // EX_PROTOCOL
    (77, false, "5.7.0"), // EX_NOPERM
    (78, false, "5.3.5"), // EX_CONFIG
];

/// The command's output as a reason may quote it: the first line,
/// trimmed, printable.
pub fn output_summary(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    first
        .unwrap_or("")
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl PipeResult {
    /// What the delivery comes to, in Postfix's words; `what` names the
    /// destination for the success text (`delivered to command: CMD`).
    pub fn verdict(&self, command: &str) -> Verdict {
        let verdict = |status, dsn: &str, reason: String| Verdict {
            status,
            dsn: dsn.to_string(),
            reason,
        };
        let with_output = |mut reason: String| {
            let said = output_summary(&self.output);
            if !said.is_empty() {
                reason.push_str(&format!(". Command output: {said}"));
            }
            reason
        };
        match &self.ending {
            Ending::Exited(0) => verdict(
                Status::Sent,
                "2.0.0",
                format!("delivered to command: {command}"),
            ),
            Ending::Exited(code) => {
                let (soft, dsn) = SYSEXITS
                    .iter()
                    .find(|(c, _, _)| c == code)
                    .map(|&(_, soft, dsn)| (soft, dsn))
                    .unwrap_or((false, "5.3.0"));
                let status = if soft {
                    Status::Deferred
                } else {
                    Status::Bounced
                };
                let reason = format!("Command died with status {code}: \"{command}\"");
                verdict(status, dsn, with_output(reason))
            }
            Ending::Signaled(signal) => verdict(
                Status::Bounced,
                "5.3.0",
                with_output(format!("Command died with signal {signal}: \"{command}\"")),
            ),
            Ending::TimedOut => verdict(
                Status::Deferred,
                "4.3.0",
                format!("Command time limit exceeded: \"{command}\""),
            ),
            Ending::NotStarted(why) => verdict(
                Status::Deferred,
                "4.3.0",
                format!("cannot execute command: \"{command}\": {why}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(text: &str, limit: Duration) -> PipeCommand {
        PipeCommand {
            command: text.to_string(),
            shell: String::new(),
            user: None,
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("RECIPIENT".into(), "bob@example.com".into()),
            ],
            cwd: None,
            time_limit: limit,
        }
    }

    #[test]
    fn input_environment_and_success() {
        let dir = crate::test_support::temp_dir("pipe-ok");
        let out = dir.join("out");
        let cmd = format!(
            "cat > {}; echo \"$RECIPIENT\" >> {}",
            out.display(),
            out.display()
        );
        let result = command(&cmd, Duration::from_secs(10)).run(b"line 1\nline 2\n");
        assert_eq!(result.ending, Ending::Exited(0));
        assert_eq!(
            std::fs::read(&out).unwrap(),
            b"line 1\nline 2\nbob@example.com\n"
        );
        let verdict = result.verdict(&cmd);
        assert_eq!(
            (verdict.status, verdict.dsn.as_str()),
            (Status::Sent, "2.0.0")
        );
        assert_eq!(verdict.reason, format!("delivered to command: {cmd}"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn big_input_not_read_is_fine() {
        let input = vec![b'x'; 1 << 20];
        let result = command("exit 0", Duration::from_secs(10)).run(&input);
        assert_eq!(result.ending, Ending::Exited(0));
    }

    #[test]
    fn exit_status_to_dsn() {
        let tempfail = command("echo busy; exit 75", Duration::from_secs(10)).run(b"x\n");
        let v = tempfail.verdict("procmail");
        assert_eq!((v.status, v.dsn.as_str()), (Status::Deferred, "4.3.0"));
        let nouser = command("exit 67", Duration::from_secs(10)).run(b"");
        let v = nouser.verdict("x");
        assert_eq!((v.status, v.dsn.as_str()), (Status::Bounced, "5.1.1"));
        let failed = command(
            "echo '  no such folder  ' >&2; echo more; exit 1",
            Duration::from_secs(10),
        )
        .run(b"x\n");
        let v = failed.verdict("deliver");
        assert_eq!((v.status, v.dsn.as_str()), (Status::Bounced, "5.3.0"));
        assert_eq!(
            v.reason,
            "Command died with status 1: \"deliver\". Command output: no such folder"
        );
    }

    #[test]
    fn time_limit_kills_the_whole_group() {
        let started = Instant::now();
        let result = command("sleep 30 & sleep 30", Duration::from_millis(300)).run(b"x\n");
        assert_eq!(result.ending, Ending::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(10));
        let v = result.verdict("sleep 30");
        assert_eq!((v.status, v.dsn.as_str()), (Status::Deferred, "4.3.0"));
        assert_eq!(v.reason, "Command time limit exceeded: \"sleep 30\"");
    }

    #[test]
    fn summary_takes_the_first_line() {
        assert_eq!(output_summary(b"\n  a\tb  \nc\n"), "a?b");
        assert_eq!(output_summary(b""), "");
    }
}
