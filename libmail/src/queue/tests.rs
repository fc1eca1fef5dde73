//! Tests of the queue as a whole: files written through `Queue` and read
//! back, damage of every kind, in-place recipient marking, the
//! durability order of commit, and a little fuzzing of the reader.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

/// A fresh queue directory with the directories the writer needs.
fn scratch(name: &str) -> PathBuf {
    let dir = crate::test_support::temp_dir(&format!("queue-{name}"));
    for queue in [INCOMING, HOLD, MAILDROP, ACTIVE, DEFERRED, CORRUPT] {
        fs::create_dir_all(dir.join(queue)).unwrap();
    }
    dir
}

fn queue_in(dir: &Path) -> Queue {
    Queue::new(QueueSettings::new(dir)).unwrap()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn full_recipient() -> Recipient {
    Recipient {
        address: "bob@example.com".into(),
        orig_recipient: "Bob".into(),
        dsn_orcpt: "rfc822;bob@example.com".into(),
        dsn_notify: notify::SUCCESS | notify::DELAY,
        ..Recipient::default()
    }
}

/// Writes a message with every kind of record and returns its path.
fn write_full(queue: &Queue) -> Committed {
    let mut w = queue.create(INCOMING).unwrap();
    let arrival = UNIX_EPOCH + Duration::new(1_763_719_200, 123_456_000);
    w.set_arrival_time(arrival).unwrap();
    w.sender("alice@example.com").unwrap();
    w.sender_fullname("Alice Ä").unwrap();
    w.attribute(attr::CLIENT_NAME, "localhost").unwrap();
    w.attribute(attr::CLIENT_ADDRESS, "127.0.0.1").unwrap();
    w.dsn_envid("QQ314159").unwrap();
    w.dsn_ret(ret::HDRS).unwrap();
    w.recipient(&full_recipient()).unwrap();
    w.recipient(&Recipient::new("carol@example.com")).unwrap();
    w.set_smtputf8(1);
    w.header(b"Subject: caf\xc3\xa9 \xff\n").unwrap();
    w.header(b"X-Long: a\n continued\n").unwrap();
    w.body(b"\n").unwrap();
    w.body(b"line one\r\n\x00\x80 binary\n").unwrap();
    w.recipient(&Recipient::new("extracted@example.com"))
        .unwrap();
    w.attribute(attr::CLIENT_NAME, "override").unwrap();
    w.content_filter("smtp:[127.0.0.1]:10025").unwrap();
    w.redirect_to("dave@example.com").unwrap();
    w.commit().unwrap()
}

#[test]
fn every_field_round_trips() {
    let dir = scratch("round");
    let queue = queue_in(&dir);
    let done = write_full(&queue);
    assert_eq!(done.path, dir.join("incoming").join(done.id.as_str()));
    assert_eq!(done.recipient_count, 3);
    let file = QueueFile::open(&done.path).unwrap();
    let env = file.envelope();
    assert_eq!(
        env.arrival_time,
        UNIX_EPOCH + Duration::new(1_763_719_200, 123_456_000)
    );
    assert!(env.create_time.is_some());
    assert_eq!(env.sender, "alice@example.com");
    assert_eq!(env.sender_fullname.as_deref(), Some("Alice Ä"));
    assert_eq!(env.dsn_envid.as_deref(), Some("QQ314159"));
    assert_eq!(env.dsn_ret, ret::HDRS);
    assert_eq!(
        env.content_filter.as_deref(),
        Some("smtp:[127.0.0.1]:10025")
    );
    assert_eq!(env.redirect_to.as_deref(), Some("dave@example.com"));
    assert_eq!(env.attribute(attr::CLIENT_ADDRESS), Some("127.0.0.1"));
    assert_eq!(env.attribute(attr::CLIENT_NAME), Some("override"));
    let addresses: Vec<&str> = env.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(
        addresses,
        [
            "bob@example.com",
            "carol@example.com",
            "extracted@example.com"
        ]
    );
    let bob = &env.recipients[0];
    assert_eq!(
        (bob.orig_recipient.as_str(), bob.dsn_orcpt.as_str()),
        ("Bob", "rfc822;bob@example.com")
    );
    assert_eq!(bob.dsn_notify, notify::SUCCESS | notify::DELAY);
    assert!(env.recipients.iter().all(|r| !r.done && r.offset > 0));
    assert_eq!(env.sizes.smtputf8, 1);
    let content = file.content().unwrap();
    assert_eq!(
        content.headers,
        [
            b"Subject: caf\xc3\xa9 \xff\n".to_vec(),
            b"X-Long: a\n continued\n".to_vec()
        ]
    );
    assert_eq!(content.body, b"\nline one\r\n\x00\x80 binary\n");
    assert_eq!(env.sizes.message_size, content.text().len() as u64);
    assert_eq!(done.message_size, content.text().len() as u64);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn long_lines_big_bodies_and_empty_content() {
    let dir = scratch("long");
    let queue = queue_in(&dir);
    let long_header = [b"X-Big: ".as_slice(), &vec![b'h'; 300_000], b"\n"].concat();
    let big_body: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut w = queue.create(INCOMING).unwrap();
    w.sender("").unwrap();
    w.recipient(&Recipient::new("u@example.com")).unwrap();
    w.header(&long_header).unwrap();
    for piece in big_body.chunks(7_777) {
        w.body(piece).unwrap();
    }
    let done = w.commit().unwrap();
    let file = QueueFile::open(&done.path).unwrap();
    assert_eq!(file.envelope().sender, "", "null sender");
    let content = file.content().unwrap();
    assert_eq!(content.headers, [long_header]);
    assert_eq!(content.body, big_body);

    let mut w = queue.create(INCOMING).unwrap();
    w.sender("a@b").unwrap();
    let empty = w.commit().unwrap();
    let file = QueueFile::open(&empty.path).unwrap();
    assert_eq!(file.content().unwrap(), Content::default());
    assert!(file.envelope().recipients.is_empty());
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn ids_are_unique_across_many_files_and_threads() {
    let dir = scratch("unique");
    let mut settings = QueueSettings::new(&dir);
    settings.long_ids = true;
    settings.hash_names = vec!["incoming".into()];
    settings.hash_depth = 2;
    let long = Queue::new(settings).unwrap();
    let short = queue_in(&dir);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let queue = if t % 2 == 0 {
                short.clone()
            } else {
                long.clone()
            };
            std::thread::spawn(move || {
                (0..100)
                    .map(|_| {
                        let mut w = queue.create(INCOMING).unwrap();
                        w.sender("a@b").unwrap();
                        w.commit().unwrap().id
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ids: Vec<QueueId> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let unique: HashSet<&QueueId> = ids.iter().collect();
    assert_eq!(unique.len(), 400);
    let mut scanned = long.scan(INCOMING).unwrap();
    scanned.extend(short.scan(INCOMING).unwrap());
    let scanned: HashSet<QueueId> = scanned.into_iter().collect();
    assert_eq!(scanned.len(), 400, "every file is found under its ID");
    for id in &ids {
        let queue = if id.is_long() { &long } else { &short };
        assert!(queue.path(INCOMING, id).is_file(), "{id}");
        let inode =
            std::os::unix::fs::MetadataExt::ino(&fs::metadata(queue.path(INCOMING, id)).unwrap());
        assert_eq!(id.inode(), inode, "the ID names the file's inode");
    }
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn nothing_is_visible_before_commit() {
    let dir = scratch("visible");
    let queue = queue_in(&dir);
    let mut w = queue.create(INCOMING).unwrap();
    w.sender("a@b").unwrap();
    w.recipient(&Recipient::new("c@d")).unwrap();
    w.body(&vec![b'x'; 200_000]).unwrap();
    assert!(
        listing(&dir.join("incoming")).is_empty(),
        "no name, not even a temporary one"
    );
    let id = w.id().clone();
    drop(w);
    assert!(
        listing(&dir.join("incoming")).is_empty(),
        "an abandoned file leaves nothing"
    );
    let mut w = queue.create(INCOMING).unwrap();
    w.sender("a@b").unwrap();
    let done = w.commit().unwrap();
    assert_ne!(done.id, id);
    assert_eq!(listing(&dir.join("incoming")), [done.id.to_string()]);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn named_temporary_files_when_unnamed_ones_are_impossible() {
    let dir = scratch("named");
    let queue = queue_in(&dir);
    queue.use_named_temp();
    let mut w = queue.create(HOLD).unwrap();
    let temp = w.temp_path().unwrap().to_path_buf();
    assert_eq!(temp.parent(), Some(dir.join("hold").as_path()));
    let name = temp.file_name().unwrap().to_str().unwrap();
    assert!(
        QueueId::parse(name).is_none(),
        "{name} must not look like an ID"
    );
    w.sender("a@b").unwrap();
    assert!(
        queue.scan(HOLD).unwrap().is_empty(),
        "the temporary name is not a queue file"
    );
    let done = w.commit().unwrap();
    assert_eq!(listing(&dir.join("hold")), [done.id.to_string()]);
    assert_eq!(QueueId::parse(name), None);
    let w = queue.create(HOLD).unwrap();
    let temp = w.temp_path().unwrap().to_path_buf();
    drop(w);
    assert!(!temp.exists(), "removed on drop");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn hashed_queues_get_their_subdirectories_on_demand() {
    let dir = scratch("hashed");
    let mut settings = QueueSettings::new(&dir);
    settings.hash_names = vec!["incoming".into(), "deferred".into()];
    settings.hash_depth = 2;
    let queue = Queue::new(settings).unwrap();
    let mut w = queue.create(INCOMING).unwrap();
    w.sender("a@b").unwrap();
    let done = w.commit().unwrap();
    let key = done.id.hash_key();
    let expected = dir
        .join("incoming")
        .join(&key[..1])
        .join(&key[1..2])
        .join(done.id.as_str());
    assert_eq!(done.path, expected);
    assert!(expected.is_file());
    let moved = queue.rename(&done.id, INCOMING, DEFERRED).unwrap();
    assert_eq!(moved, queue.path(DEFERRED, &done.id));
    assert!(moved.is_file());
    let (found, path) = queue.find(&done.id, &MESSAGE_QUEUES).unwrap();
    assert_eq!((found.as_str(), path), (DEFERRED, moved));
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn find_reports_postfix_words() {
    let dir = scratch("find");
    let queue = queue_in(&dir);
    let id = QueueId::parse("B822221522").unwrap();
    let err = queue.find(&id, &MESSAGE_QUEUES).unwrap_err();
    assert_eq!(
        err.to_string(),
        "open queue file B822221522: No such file or directory"
    );
    assert!(err.is_not_found());
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn marking_recipients_done_in_place() {
    let dir = scratch("done");
    let queue = queue_in(&dir);
    let done = write_full(&queue);
    let before = fs::read(&done.path).unwrap();
    let mut file = QueueFile::open_for_update(&done.path).unwrap();
    let offsets: Vec<u64> = file
        .envelope()
        .recipients
        .iter()
        .map(|r| r.offset)
        .collect();
    file.mark_done(&offsets[..1]).unwrap();
    mark_recipients_done(&done.path, &offsets[2..]).unwrap();
    mark_recipients_done(&done.path, &offsets[2..]).unwrap();
    let after = fs::read(&done.path).unwrap();
    let changed: Vec<usize> = (0..before.len())
        .filter(|&i| before[i] != after[i])
        .collect();
    assert_eq!(
        changed,
        [offsets[0] as usize, offsets[2] as usize],
        "one byte per recipient"
    );
    let reread = QueueFile::open(&done.path).unwrap();
    let states: Vec<bool> = reread
        .envelope()
        .recipients
        .iter()
        .map(|r| r.done)
        .collect();
    assert_eq!(states, [true, false, true]);
    assert_eq!(reread.envelope().pending().count(), 1);
    let err = mark_recipients_done(&done.path, &[offsets[0] + 1]).unwrap_err();
    assert!(
        matches!(err.damage(), Some(Damage::Malformed { .. })),
        "{err}"
    );
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn corrupt_files_are_saved_aside() {
    let dir = scratch("corrupt");
    let queue = queue_in(&dir);
    let done = write_full(&queue);
    let bytes = fs::read(&done.path).unwrap();
    fs::write(&done.path, &bytes[..bytes.len() - 1]).unwrap();
    let err = QueueFile::open(&done.path).unwrap_err();
    let damage = err.damage().unwrap();
    let saved = queue.save_corrupt(INCOMING, &done.id, damage).unwrap();
    assert_eq!(saved, dir.join("corrupt").join(done.id.as_str()));
    assert!(saved.is_file() && !done.path.exists());
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn maildrop_files_are_readable_by_pickup() {
    let dir = scratch("maildrop");
    let queue = queue_in(&dir);
    let mut w = queue.create(MAILDROP).unwrap();
    w.sender("user").unwrap();
    w.recipient(&Recipient::new("root")).unwrap();
    w.body(b"hello\n").unwrap();
    let done = w.commit().unwrap();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&done.path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o744);
    let incoming = queue.create(INCOMING).unwrap();
    drop(incoming);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn writer_order_mistakes_are_errors_not_panics() {
    let dir = scratch("order");
    let queue = queue_in(&dir);
    let mut w = queue.create(INCOMING).unwrap();
    assert!(w.header(b"Subject: x\n").is_err(), "content before sender");
    w.sender("a@b").unwrap();
    assert!(w.sender("again@b").is_err());
    assert!(w.attribute("bad=name", "x").is_err());
    w.body(b"\nbody\n").unwrap();
    let err = w.header(b"Late: header\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("queue file {}: header after body", w.id())
    );
    assert!(w.sender("x@y").is_err());
    assert!(w.set_arrival_time(SystemTime::now()).is_err());
    w.recipient(&Recipient::new("late@example.com")).unwrap();
    assert!(w.body(b"more").is_err(), "body after extracted records");
    let done = w.commit().unwrap();
    let file = QueueFile::open(&done.path).unwrap();
    assert_eq!(file.envelope().recipients.len(), 1);
    let _ = fs::remove_dir_all(dir);
}

/// The bytes of a small complete file.
fn small_file() -> Vec<u8> {
    let dir = scratch("small");
    let queue = queue_in(&dir);
    let mut w = queue.create(INCOMING).unwrap();
    w.sender("a@example.com").unwrap();
    w.attribute(attr::HELO_NAME, "client.example").unwrap();
    w.recipient(&full_recipient()).unwrap();
    w.header(b"Subject: hi\n").unwrap();
    w.body(b"\nbody\n").unwrap();
    w.recipient(&Recipient::new("x@example.com")).unwrap();
    let done = w.commit().unwrap();
    let bytes = fs::read(&done.path).unwrap();
    let _ = fs::remove_dir_all(dir);
    bytes
}

/// Reads everything a reader can: envelope and content, and a full walk.
fn read_all(bytes: &[u8]) -> Result<(), QueueError> {
    let file = QueueFile::from_bytes("test", bytes.to_vec())?;
    file.content()?;
    let data = Data::Bytes(bytes.to_vec());
    for record in Walker::new(&data, Path::new("test"))? {
        record?;
    }
    Ok(())
}

#[test]
fn truncation_at_every_offset_is_detected() {
    let bytes = small_file();
    read_all(&bytes).unwrap();
    for len in 0..bytes.len() {
        let err = read_all(&bytes[..len]).expect_err(&format!("truncated to {len}"));
        let damage = err
            .damage()
            .cloned()
            .unwrap_or_else(|| panic!("{len}: {err}"));
        assert!(
            matches!(
                damage,
                Damage::NotQueueFile | Damage::Truncated(_) | Damage::MissingEnd
            ),
            "{len}: {damage}"
        );
    }
}

#[test]
fn damage_is_named() {
    let bytes = small_file();
    let mut trailing = bytes.clone();
    trailing.push(b'E');
    let err = read_all(&trailing).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("test: data after end marker at offset {}", bytes.len())
    );

    let mut unknown = bytes.clone();
    unknown[8] = b'Z';
    assert_eq!(
        read_all(&unknown).unwrap_err().damage(),
        Some(&Damage::UnknownRecord {
            kind: b'Z',
            offset: 8
        })
    );

    // An optional record of an unknown type is skipped.
    let mut optional = bytes[..bytes.len() - 2].to_vec();
    optional.extend_from_slice(&[b'q', 3, b'a', b'b', b'c', b'E', 0]);
    read_all(&optional).unwrap();

    let mut count = bytes.clone();
    let rcpt_count_at = 8 + 2 + 16;
    count[rcpt_count_at] += 1;
    assert_eq!(
        read_all(&count).unwrap_err().damage(),
        Some(&Damage::SizeMismatch("recipient count"))
    );

    let no_magic = b"C\x30hello".to_vec();
    assert_eq!(
        read_all(&no_magic).unwrap_err().to_string(),
        "test: input is not a valid queue file"
    );
}

/// xorshift64*: a fixed sequence of pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn fuzzed_files_never_panic() {
    let bytes = small_file();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut detected = 0;
    for round in 0..20_000 {
        let mut mutated = bytes.clone();
        match round % 4 {
            0 => {
                let at = rng.below(mutated.len());
                mutated[at] ^= 1 << rng.below(8);
            }
            1 => {
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(mutated.len());
                    mutated[at] = rng.next() as u8;
                }
            }
            2 => {
                let at = rng.below(mutated.len());
                let junk: Vec<u8> = (0..rng.below(20)).map(|_| rng.next() as u8).collect();
                mutated.splice(at..at, junk);
            }
            _ => {
                let len = rng.below(200);
                mutated = (0..len).map(|_| rng.next() as u8).collect();
                if rng.below(2) == 0 {
                    mutated.splice(0..0, bytes[..8].iter().copied());
                }
            }
        }
        if read_all(&mutated).is_err() {
            detected += 1;
        }
    }
    // Most changes to a small file hit its structure; flips inside text
    // pass unnoticed, as they would in Postfix.
    assert!(detected > 10_000, "{detected}");
}

#[test]
fn commit_never_replaces_a_file() {
    let dir = scratch("exists");
    let queue = queue_in(&dir);
    for named in [false, true] {
        if named {
            queue.use_named_temp();
        }
        let mut w = queue.create(INCOMING).unwrap();
        w.sender("a@b").unwrap();
        let target = queue.path(INCOMING, w.id());
        fs::write(&target, b"someone else's").unwrap();
        let err = w.commit().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("link {}: File exists", target.display())
        );
        assert_eq!(fs::read(&target).unwrap(), b"someone else's");
        fs::remove_file(&target).unwrap();
        assert!(
            listing(&dir.join("incoming")).is_empty(),
            "nothing left behind"
        );
    }
    let _ = fs::remove_dir_all(dir);
}
