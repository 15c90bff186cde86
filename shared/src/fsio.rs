//! File-writing helpers shared by the MTA's queue and the Maildir delivery: a message made of
//! several buffers (envelope, trace headers, body) written with as few `writev(2)` calls as
//! the kernel allows. No fsync here: the callers decide what must be durable and when.

use std::io::{IoSlice, Write};

/// Writes every part, in order, to `out`; returns the bytes written.
pub fn write_parts(out: &mut impl Write, parts: &[&[u8]]) -> std::io::Result<u64> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut done = 0usize;
    while done < total {
        let slices = remaining(parts, done);
        match out.write_vectored(&slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total as u64)
}

/// The parts still to write once `skip` bytes are written (at most 64: `IOV_MAX` is 1024).
fn remaining<'a>(parts: &[&'a [u8]], mut skip: usize) -> Vec<IoSlice<'a>> {
    let mut slices = Vec::with_capacity(parts.len().min(64));
    for part in parts {
        if slices.len() == 64 {
            break;
        }
        if skip >= part.len() {
            skip -= part.len();
            continue;
        }
        slices.push(IoSlice::new(&part[skip..]));
        skip = 0;
    }
    slices
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `max` bytes per call, like a short write.
    struct Short {
        max: usize,
        out: Vec<u8>,
    }

    impl Write for Short {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.max);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.max - n);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                if n == self.max {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_byte_in_order_whatever_the_short_writes() {
        let parts: [&[u8]; 4] = [b"envelope\n", b"", b"Received: x\n", b"body\nmore\n"];
        let whole = parts.concat();
        for max in 1..=whole.len() {
            let mut w = Short {
                max,
                out: Vec::new(),
            };
            assert_eq!(write_parts(&mut w, &parts).unwrap(), whole.len() as u64);
            assert_eq!(w.out, whole, "max {max}");
        }
    }

    #[test]
    fn many_parts_are_written_in_batches() {
        let parts: Vec<&[u8]> = (0..200).map(|_| b"ab".as_slice()).collect();
        let mut w = Short {
            max: usize::MAX,
            out: Vec::new(),
        };
        assert_eq!(write_parts(&mut w, &parts).unwrap(), 400);
        assert_eq!(w.out.len(), 400);
    }
}
