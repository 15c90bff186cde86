//! Filling the folder cache ahead of a FETCH or SEARCH over many uncached messages: the
//! files are read and parsed on a few threads at once (the parsing is pure, the cache is
//! written by the session's thread alone). Messages a worker cannot read (renamed by
//! another session meanwhile) are left to the command's own path, which copes with that.

use std::path::PathBuf;

use super::cache::Made;
use super::fetch::{make_entry, read_from};
use super::headertext;
use super::message;
use super::selected::Mailbox;

/// Fewer uncached messages than this are not worth threads.
const MIN_PARALLEL: usize = 64;
/// At most this many threads per command.
const MAX_WORKERS: usize = 4;

/// Makes the entries `mb`'s cache lacks among `uids` (from the header alone unless
/// `whole`), on several threads when there are many.
pub(super) fn prefill(mb: &mut Mailbox, uids: &[u32], whole: bool) {
    let todo: Vec<(u32, PathBuf, u64)> = uids
        .iter()
        .filter(|&&uid| {
            !mb.cache
                .get(uid)
                .is_some_and(|e| e.has_structure() || !whole)
        })
        .filter_map(|&uid| {
            let m = mb.folder.message(uid)?;
            Some((uid, mb.folder.dir().join(&m.file), m.size))
        })
        .collect();
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_WORKERS);
    if todo.len() < MIN_PARALLEL || workers < 2 {
        return;
    }
    let per = todo.len().div_ceil(workers);
    let made: Vec<Vec<(u32, Made)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = todo
            .chunks(per)
            .map(|chunk| {
                std::thread::Builder::new()
                    .spawn_scoped(scope, move || make_all(chunk, whole))
                    .map_err(|_| chunk)
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join().unwrap_or_default(),
                // No thread to be had (a process or memory limit): done here instead.
                Err(chunk) => make_all(chunk, whole),
            })
            .collect()
    });
    for (uid, m) in made.into_iter().flatten() {
        mb.cache.put(uid, m.entry());
    }
}

fn make_all(todo: &[(u32, PathBuf, u64)], whole: bool) -> Vec<(u32, Made)> {
    todo.iter()
        .filter_map(|(uid, path, size)| {
            let f = std::fs::File::open(path).ok()?;
            let raw = read_from(f, *size, !whole).ok()?;
            if raw.is_empty() {
                return None;
            }
            let search = headertext::encode(&raw[..headertext::header_len(&raw)]);
            let data = message::crlf(raw);
            Some((*uid, make_entry(&data, search, whole)))
        })
        .collect()
}
