//! A chunk of a mailbox view, held compact: UIDs as runs of consecutive
//! values, flags as small codes into the chunk's own palette of flag
//! lists, packed a few bits a message.
//!
//! A mailbox's UIDs are mostly consecutive (gaps where messages were
//! expunged), so a run `(first UID, first position)` stands for many
//! messages; most messages of a chunk share a handful of flag lists
//! (`\Seen`, none, `\Seen \Flagged`, ...), so a message's flags cost
//! `ceil(log2(palette size))` bits: none at all when every message of the
//! chunk has the same flags. A chunk is immutable; a change decodes it
//! ([`Chunk::decode`]), edits the plain list and encodes a new one.

use std::collections::HashMap;

/// One message as the view's code handles it: its UID and the index of
/// its flag list in the view's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub uid: u32,
    pub flags: u32,
}

/// Messages in ascending UID order, compact (see the module text).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Chunk {
    len: u32,
    /// Run r holds the UIDs `run_uid[r]..` at positions
    /// `run_pos[r]..run_pos[r + 1]` (the last one up to `len`).
    run_uid: Box<[u32]>,
    run_pos: Box<[u32]>,
    /// The flag lists (indexes into the view's table) used in the chunk.
    palette: Box<[u32]>,
    /// Bits per message code: 0 when the palette has at most one list.
    bits: u8,
    packed: Box<[u64]>,
}

impl Chunk {
    /// A chunk of `entries`, which must be in strictly ascending UID
    /// order.
    pub fn encode(entries: &[Entry]) -> Chunk {
        let mut run_uid = Vec::new();
        let mut run_pos = Vec::new();
        let mut palette: Vec<u32> = Vec::new();
        let mut code_of: HashMap<u32, u32> = HashMap::new();
        let mut codes: Vec<u32> = Vec::with_capacity(entries.len());
        for (p, e) in entries.iter().enumerate() {
            let follows = p > 0 && entries[p - 1].uid.checked_add(1) == Some(e.uid);
            if !follows {
                run_uid.push(e.uid);
                run_pos.push(p as u32);
            }
            let code = *code_of.entry(e.flags).or_insert_with(|| {
                palette.push(e.flags);
                palette.len() as u32 - 1
            });
            codes.push(code);
        }
        let bits = if palette.len() <= 1 {
            0
        } else {
            (32 - (palette.len() as u32 - 1).leading_zeros()) as u8
        };
        let mut packed = vec![0u64; (entries.len() * bits as usize).div_ceil(64)];
        if bits > 0 {
            for (p, &code) in codes.iter().enumerate() {
                let at = p * bits as usize;
                let (w, o) = (at / 64, at % 64);
                packed[w] |= (code as u64) << o;
                if o + bits as usize > 64 {
                    packed[w + 1] |= (code as u64) >> (64 - o);
                }
            }
        }
        Chunk {
            len: entries.len() as u32,
            run_uid: run_uid.into(),
            run_pos: run_pos.into(),
            palette: palette.into(),
            bits,
            packed: packed.into(),
        }
    }

    /// The number of messages.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// The plain list.
    pub fn decode(&self) -> Vec<Entry> {
        self.iter_from(0).collect()
    }

    fn code(&self, p: usize) -> usize {
        if self.bits == 0 {
            return 0;
        }
        let bits = self.bits as usize;
        let at = p * bits;
        let (w, o) = (at / 64, at % 64);
        let mut v = self.packed[w] >> o;
        if o + bits > 64 {
            v |= self.packed[w + 1] << (64 - o);
        }
        (v & ((1u64 << bits) - 1)) as usize
    }

    fn run_end(&self, r: usize) -> usize {
        self.run_pos.get(r + 1).map_or(self.len(), |&p| p as usize)
    }

    /// The message at position `p`, if any.
    pub fn get(&self, p: usize) -> Option<Entry> {
        if p >= self.len() {
            return None;
        }
        let r = self.run_pos.partition_point(|&s| s as usize <= p) - 1;
        Some(Entry {
            uid: self.run_uid[r] + (p - self.run_pos[r] as usize) as u32,
            flags: self.palette[self.code(p)],
        })
    }

    /// The largest UID, if any.
    pub fn last_uid(&self) -> Option<u32> {
        let r = self.run_uid.len().checked_sub(1)?;
        Some(self.run_uid[r] + (self.len() - 1 - self.run_pos[r] as usize) as u32)
    }

    /// The position of the first message whose UID is at least `uid`
    /// (the length if none).
    pub fn lower_bound(&self, uid: u32) -> usize {
        let r = self.run_uid.partition_point(|&u| u <= uid);
        if r == 0 {
            return 0;
        }
        let r = r - 1;
        let (start, end) = (self.run_pos[r] as usize, self.run_end(r));
        let off = (uid - self.run_uid[r]) as usize;
        if off < end - start {
            start + off
        } else {
            end
        }
    }

    /// The messages from position `p` on.
    pub fn iter_from(&self, p: usize) -> ChunkIter<'_> {
        let r = self
            .run_pos
            .partition_point(|&s| s as usize <= p)
            .saturating_sub(1);
        ChunkIter {
            chunk: self,
            p: p.min(self.len()),
            r,
        }
    }

    /// The flag list index of each message, in order.
    pub fn flag_ids(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len()).map(|p| self.palette[self.code(p)])
    }

    /// Heap bytes held (for tests and figures).
    pub fn heap_bytes(&self) -> usize {
        self.run_uid.len() * 4
            + self.run_pos.len() * 4
            + self.palette.len() * 4
            + self.packed.len() * 8
    }
}

/// The messages of a chunk in order.
pub(crate) struct ChunkIter<'a> {
    chunk: &'a Chunk,
    p: usize,
    r: usize,
}

impl Iterator for ChunkIter<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        let c = self.chunk;
        if self.p >= c.len() {
            return None;
        }
        while self.r + 1 < c.run_pos.len() && c.run_pos[self.r + 1] as usize <= self.p {
            self.r += 1;
        }
        let e = Entry {
            uid: c.run_uid[self.r] + (self.p - c.run_pos[self.r] as usize) as u32,
            flags: c.palette[c.code(self.p)],
        };
        self.p += 1;
        Some(e)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.chunk.len() - self.p;
        (n, Some(n))
    }
}
