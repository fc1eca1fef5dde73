#![forbid(unsafe_code)]
//! pickup(8): waits for a wakeup (from master's timer or from postdrop),
//! then feeds every file in the maildrop queue to cleanup and removes it
//! once cleanup has it. Damaged files go to corrupt/; files cleanup could
//! not take now stay for the next scan.

mod replay;

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

use libmail::cleanup::{self, CleanupClient, Outcome};
use libmail::config::Config;
use libmail::queue::{Queue, QueueError, QueueFile, QueueId, MAILDROP};
use libmail::server::{Client, Server};

const DAY: u64 = 86_400;
const HOUR: u64 = 3_600;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let server = Server::start("pickup", &args).unwrap_or_else(|err| libmail::msg::fatal(err));
    let queue = Queue::from_config(&server.config).unwrap_or_else(|err| libmail::msg::fatal(err));
    server.serve(|config, client| {
        drain(client);
        scan(config, &queue);
    });
}

/// Reads the wakeup request; its content does not matter.
fn drain(client: Client) {
    if let Client::Unix(mut stream) = client {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut buf = [0u8; 64];
        let _ = stream.read(&mut buf);
    }
}

/// What became of one maildrop file.
enum Fate {
    Remove,
    Keep,
    Moved,
}

/// Scans maildrop/ until a pass removes nothing.
fn scan(config: &Config, queue: &Queue) {
    loop {
        let ids = match queue.scan(MAILDROP) {
            Ok(ids) => ids,
            Err(err) => {
                libmail::msg::warning(format_args!("scan {MAILDROP}: {err}"));
                return;
            }
        };
        let mut removed = 0;
        for id in ids {
            if let Fate::Remove = pickup_file(config, queue, &id) {
                match queue.remove(MAILDROP, &id) {
                    Ok(()) => removed += 1,
                    Err(err) if err.is_not_found() => {}
                    Err(err) => libmail::msg::warning(err),
                }
            }
        }
        if removed == 0 {
            return;
        }
    }
}

fn pickup_file(config: &Config, queue: &Queue, id: &QueueId) -> Fate {
    let path = queue.path(MAILDROP, id);
    let file = match QueueFile::open(&path) {
        Ok(file) => file,
        Err(err) => return open_failed(queue, id, err),
    };
    let meta = match std::fs::metadata(&path) {
        Ok(meta) => meta,
        Err(_) => return Fate::Keep,
    };
    match copy(config, &file, id, &meta) {
        Ok(fate) => fate,
        Err(err) => {
            libmail::msg::warning(format_args!("{}: {err}", path.display()));
            Fate::Keep
        }
    }
}

fn open_failed(queue: &Queue, id: &QueueId, err: QueueError) -> Fate {
    if err.is_not_found() {
        return Fate::Keep;
    }
    if let Some(damage) = err.damage() {
        if let Err(move_err) = queue.save_corrupt(MAILDROP, id, damage) {
            libmail::msg::warning(move_err);
            return Fate::Keep;
        }
        return Fate::Moved;
    }
    libmail::msg::warning(err);
    Fate::Keep
}

#[derive(Debug, thiserror::Error)]
enum CopyError {
    #[error("{0}")]
    Cleanup(cleanup::CleanupError),
    #[error("{0}")]
    Queue(QueueError),
    #[error("{0}")]
    Config(libmail::config::ConfigError),
}

/// The file's time, kept from straying: a time far in the future is now.
fn file_time(id: &QueueId, meta: &std::fs::Metadata) -> SystemTime {
    let now = SystemTime::now();
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(meta.mtime().max(0) as u64);
    if mtime > now + Duration::from_secs(2 * HOUR) {
        let ahead = mtime.duration_since(now).unwrap_or_default().as_secs();
        libmail::msg::warning(format_args!(
            "{id}: message dated {ahead} seconds into the future"
        ));
        return now;
    }
    if let Ok(age) = now.duration_since(mtime) {
        if age.as_secs() > DAY {
            libmail::msg::warning(format_args!(
                "{id}: message has been queued for {} days",
                age.as_secs() / DAY
            ));
        }
    }
    mtime
}

fn copy(
    config: &Config,
    file: &QueueFile,
    id: &QueueId,
    meta: &std::fs::Metadata,
) -> Result<Fate, CopyError> {
    let overrides = config
        .list("receive_override_options")
        .map_err(CopyError::Config)?;
    let service = cleanup::service_path(config).map_err(CopyError::Config)?;
    let flags = replay::flags(file, &overrides);
    let mut client = CleanupClient::connect(&service, flags).map_err(CopyError::Cleanup)?;
    let ctx = replay::Context {
        queue_id: client.queue_id().to_string(),
        uid: meta.uid(),
        time: file_time(id, meta),
        myhostname: config.string("myhostname").map_err(CopyError::Config)?,
        mail_name: config.string("mail_name").map_err(CopyError::Config)?,
        content_filter: config.string("content_filter").map_err(CopyError::Config)?,
        requeued: is_requeued(config, meta),
    };
    let requests = replay::replay(file, &ctx).map_err(CopyError::Queue)?;
    log_pickup(&ctx, file, id);
    for request in &requests {
        if *request != libmail::cleanup::Request::End {
            client.send(request).map_err(CopyError::Cleanup)?;
        }
    }
    Ok(match client.finish().map_err(CopyError::Cleanup)? {
        Outcome::Queued => Fate::Remove,
        Outcome::Rejected {
            code,
            enhanced,
            text,
        } => {
            libmail::msg::warning(format_args!(
                "{}: uid={}: message rejected: {code} {enhanced} {text}",
                ctx.queue_id, ctx.uid
            ));
            Fate::Remove
        }
        Outcome::Failed(text) => {
            libmail::msg::warning(format_args!("{MAILDROP}/{id}: {text}"));
            Fate::Keep
        }
    })
}

/// Whether `postsuper -r` put the file here: it belongs to mail_owner
/// and is not world-readable, unlike postdrop's files, which anyone may
/// write as themselves but never without the read bit.
fn is_requeued(config: &Config, meta: &std::fs::Metadata) -> bool {
    let owner = config
        .string("mail_owner")
        .ok()
        .and_then(|name| nix::unistd::User::from_name(&name).ok().flatten())
        .map(|user| user.uid.as_raw());
    owner == Some(meta.uid()) && meta.mode() & 0o004 == 0
}

/// `ID: uid=N from=<sender>`, with the maildrop ID for mail that
/// `postsuper -r` put back.
fn log_pickup(ctx: &replay::Context, file: &QueueFile, id: &QueueId) {
    let sender = &file.envelope().sender;
    match ctx.requeued {
        true => libmail::msg::info(format_args!(
            "{}: uid={} from=<{sender}> orig_id={id}",
            ctx.queue_id, ctx.uid
        )),
        false => libmail::msg::info(format_args!(
            "{}: uid={} from=<{sender}>",
            ctx.queue_id, ctx.uid
        )),
    }
}
