use std::cell::RefCell;
use std::rc::Rc;

use libmail::queue::{QueueSettings, ACTIVE};

use super::*;

struct Fixture {
    flush: Flush,
    queue: Queue,
    woken: Rc<RefCell<Vec<u8>>>,
}

fn fixture(tag: &str) -> Fixture {
    let dir = std::env::temp_dir().join(format!("flush-service-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in [FLUSH, DEFERRED, INCOMING, ACTIVE] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let queue = Queue::new(QueueSettings::new(&dir)).unwrap();
    let woken = Rc::new(RefCell::new(Vec::new()));
    let record = Rc::clone(&woken);
    let eligible = Eligible::new("relay.example [192.0.2.1]", true).unwrap();
    let waker: Waker = Box::new(move |request| record.borrow_mut().extend_from_slice(request));
    Fixture {
        flush: Flush::for_test(queue.clone(), eligible, waker),
        queue,
        woken,
    }
}

const ID1: &str = "4F9D1C2A3B";
const ID2: &str = "5A0B1C2D3E";

fn id(text: &str) -> QueueId {
    QueueId::parse(text).unwrap()
}

fn put(queue: &Queue, name: &str, text: &str) -> PathBuf {
    let path = queue.path(name, &id(text));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"queue file").unwrap();
    path
}

fn log_text(f: &Fixture, name: &str) -> String {
    std::fs::read_to_string(f.queue.directory().join(FLUSH).join(name)).unwrap()
}

#[test]
fn add_keeps_eligible_sites_only() {
    let mut f = fixture("add");
    assert_eq!(f.flush.add("Relay.Example", ID1), FlushStatus::Ok);
    assert_eq!(f.flush.add("sub.relay.example", ID2), FlushStatus::Ok);
    assert_eq!(f.flush.add("relay.example", ID2), FlushStatus::Ok);
    assert_eq!(f.flush.add("[192.0.2.1]", ID1), FlushStatus::Ok);
    assert_eq!(log_text(&f, "relay.example"), format!("{ID1}\n{ID2}\n"));
    assert_eq!(log_text(&f, "sub.relay.example"), format!("{ID2}\n"));
    assert_eq!(log_text(&f, "%5B192.0.2.1%5D"), format!("{ID1}\n"));
    assert_eq!(f.flush.add("other.example", ID1), FlushStatus::Deny);
    assert_eq!(f.flush.add("relay.example", "../etc"), FlushStatus::Bad);
    assert!(f.woken.borrow().is_empty());
}

#[test]
fn send_site_moves_deferred_mail_and_empties_the_log() {
    let mut f = fixture("send-site");
    let old = SystemTime::now() + Duration::from_secs(3600);
    let deferred = put(&f.queue, DEFERRED, ID1);
    let since = old.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    let later = TimeSpec::from(since);
    utimensat(
        None,
        &deferred,
        &later,
        &later,
        UtimensatFlags::FollowSymlink,
    )
    .unwrap();
    put(&f.queue, ACTIVE, ID2);
    for queue_id in [ID1, ID2, ID1] {
        assert_eq!(f.flush.add("relay.example", queue_id), FlushStatus::Ok);
    }
    assert_eq!(f.flush.send_site("RELAY.example"), FlushStatus::Ok);
    let incoming = f.queue.path(INCOMING, &id(ID1));
    assert!(incoming.is_file());
    assert!(!deferred.exists());
    // Due now, not at the retry time it had.
    let mtime = std::fs::metadata(&incoming).unwrap().modified().unwrap();
    assert!(mtime <= SystemTime::now());
    // The message in active/ stays with qmgr, which adds it again if it
    // defers it again.
    assert!(f.queue.path(ACTIVE, &id(ID2)).is_file());
    assert_eq!(log_text(&f, "relay.example"), "");
    assert_eq!(f.woken.borrow().as_slice(), b"FI");
}

#[test]
fn send_site_answers() {
    let mut f = fixture("send-answers");
    assert_eq!(f.flush.send_site("other.example"), FlushStatus::Deny);
    // Eligible, but nothing was ever deferred for it.
    assert_eq!(f.flush.send_site("relay.example"), FlushStatus::Ok);
    assert!(f.woken.borrow().is_empty());
    // Listed mail that is gone: the log empties, qmgr has nothing new.
    assert_eq!(f.flush.add("relay.example", ID1), FlushStatus::Ok);
    assert_eq!(f.flush.send_site("relay.example"), FlushStatus::Ok);
    assert_eq!(log_text(&f, "relay.example"), "");
    assert_eq!(f.woken.borrow().as_slice(), b"F");
}

#[test]
fn send_file_moves_one_message() {
    let mut f = fixture("send-file");
    put(&f.queue, DEFERRED, ID1);
    put(&f.queue, DEFERRED, ID2);
    assert_eq!(f.flush.send_file(ID1), FlushStatus::Ok);
    assert!(f.queue.path(INCOMING, &id(ID1)).is_file());
    assert!(f.queue.path(DEFERRED, &id(ID2)).is_file());
    assert_eq!(f.woken.borrow().as_slice(), b"I");
    f.woken.borrow_mut().clear();
    assert_eq!(f.flush.send_file("0123456789"), FlushStatus::Ok);
    assert!(f.woken.borrow().is_empty());
    assert_eq!(f.flush.send_file("not/an/id"), FlushStatus::Bad);
}

#[test]
fn refresh_sends_stale_logs_and_purges_old_empty_ones() {
    let mut f = fixture("refresh");
    put(&f.queue, DEFERRED, ID1);
    assert_eq!(f.flush.add("relay.example", ID1), FlushStatus::Ok);
    assert_eq!(f.flush.add("sub.relay.example", ID2), FlushStatus::Ok);
    let logs = f.queue.directory().join(FLUSH);
    let empty = logs.join("old.relay.example");
    std::fs::write(&empty, b"").unwrap();
    std::fs::write(logs.join(".not-a-log"), b"").unwrap();
    let long_ago = TimeSpec::from(Duration::from_secs(1_000_000));
    utimensat(
        None,
        &empty,
        &long_ago,
        &long_ago,
        UtimensatFlags::FollowSymlink,
    )
    .unwrap();
    // Fresh logs are left alone by a refresh.
    f.flush.refresh(Refresh::Stale);
    assert!(!empty.exists());
    assert!(logs.join(".not-a-log").exists());
    assert_eq!(log_text(&f, "relay.example"), format!("{ID1}\n"));
    assert!(f.woken.borrow().is_empty());
    // A purge sends every log, without unthrottling.
    f.flush.refresh(Refresh::All);
    assert_eq!(log_text(&f, "relay.example"), "");
    assert_eq!(log_text(&f, "sub.relay.example"), "");
    assert!(f.queue.path(INCOMING, &id(ID1)).is_file());
    assert_eq!(f.woken.borrow().as_slice(), b"I");
}
