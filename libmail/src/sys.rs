//! The one place with `unsafe`: starting a child process with descriptors
//! placed at fixed numbers (master hands every daemon its status channel
//! and listeners this way, as Postfix does). Between fork and exec only
//! dup2(2) runs, which is async-signal-safe.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

/// Starts `command` with each `(from, to)` descriptor duplicated onto `to`
/// in the child; the duplicates do not have close-on-exec set, so they
/// survive the exec. Sources are first moved above every target, so a
/// source that happens to sit on another's target number is not lost.
pub fn spawn_with_fds(command: &mut Command, fds: &[(RawFd, RawFd)]) -> io::Result<Child> {
    let pairs = fds.to_vec();
    let mut moved: Vec<RawFd> = vec![-1; pairs.len()];
    let above = pairs.iter().map(|&(_, to)| to).max().unwrap_or(0) + 1;
    // SAFETY: between fork and exec the closure calls only fcntl(2),
    // dup2(2) and close(2), which are async-signal-safe; its buffers were
    // allocated before fork, and it takes no locks.
    unsafe {
        command.pre_exec(move || {
            for (slot, &(from, _)) in moved.iter_mut().zip(&pairs) {
                *slot = check(nix::libc::fcntl(from, nix::libc::F_DUPFD, above))?;
            }
            for (&temporary, &(_, to)) in moved.iter().zip(&pairs) {
                check(nix::libc::dup2(temporary, to))?;
                nix::libc::close(temporary);
            }
            Ok(())
        });
    }
    command.spawn()
}

fn check(result: nix::libc::c_int) -> io::Result<RawFd> {
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(result)
}

/// Starts `command` as a daemon: in a session of its own (setsid), so it
/// has no controlling terminal and outlives the shell that started it.
pub fn spawn_daemon(command: &mut Command) -> io::Result<Child> {
    // SAFETY: setsid(2) is async-signal-safe and allocates nothing.
    unsafe {
        command.pre_exec(|| {
            if nix::libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn()
}

/// Receives a descriptor sent with SCM_RIGHTS over `socket` (a `pass`
/// service's client, handed over by the process that accepted it), with
/// at most 1024 bytes of accompanying data, which is discarded.
pub fn receive_fd(socket: &std::os::unix::net::UnixStream) -> io::Result<Option<OwnedFd>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::AsRawFd;
    let mut data = [0u8; 1024];
    let mut iov = [io::IoSliceMut::new(&mut data)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let message = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    let mut received: Vec<OwnedFd> = Vec::new();
    for control in message.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = control {
            // SAFETY: the kernel has just installed these descriptors in
            // our table for us; nothing else owns them.
            received.extend(
                fds.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    // Extra descriptors are closed as `received` goes.
    Ok(received.into_iter().next())
}

/// Takes ownership of a descriptor that master placed at a fixed number.
/// The caller checks first that it is open (fcntl F_GETFD); it is called
/// once per number, so nothing else in the process owns it.
pub fn own_fixed_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: open (checked by the caller), inherited from master, and
    // owned by nothing else in this process.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn child_sees_descriptor_at_fixed_number() {
        let file = std::fs::File::open("/etc/hostname")
            .or_else(|_| std::fs::File::open("/etc/passwd"))
            .unwrap();
        let mut command = Command::new("/bin/sh");
        command.args(["-c", "test -e /proc/self/fd/9 && echo ok"]);
        command.stdout(std::process::Stdio::piped());
        let child = spawn_with_fds(&mut command, &[(file.as_raw_fd(), 9)]).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    }

    #[test]
    fn crossing_descriptors_are_not_lost() {
        // Each source sits on the other's target.
        let a = std::fs::File::open("/dev/null").unwrap();
        let b = std::fs::File::open("/proc/self/status").unwrap();
        let (ra, rb) = (a.as_raw_fd(), b.as_raw_fd());
        let mut command = Command::new("/bin/sh");
        command.args([
            "-c",
            &format!("readlink /proc/self/fd/{rb}; readlink /proc/self/fd/{ra}"),
        ]);
        command.stdout(std::process::Stdio::piped());
        let child = spawn_with_fds(&mut command, &[(ra, rb), (rb, ra)]).unwrap();
        let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "/dev/null");
        assert!(lines[1].ends_with("/status"), "{out}");
    }
}
