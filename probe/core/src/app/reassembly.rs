//! Putting together a hello that one packet does not hold: a TLS ClientHello over several
//! TCP segments, or one a QUIC client spread over several Initial packets (post-quantum key
//! shares make hellos of about 1.8 KB; Chrome also shuffles its CRYPTO frames).
//!
//! Bounds, stated: each decoder follows at most [`PENDING_FLOWS`] unfinished hellos at once,
//! each up to [`MAX_HELLO`] bytes of stream; one that is not finished within
//! [`PENDING_TIMEOUT_NS`] of its last packet, or that is pushed out by a newer one when all
//! slots are busy, is given up (counted). Memory: 18 KiB per slot (the bytes and a bitmap of
//! which are there), allocated the first time a slot is used: at most 1.1 MiB per decoder.

use super::tls::MAX_HELLO;

/// Unfinished hellos followed at once by one decoder.
pub const PENDING_FLOWS: usize = 64;
/// A hello whose flow sends nothing more for this long is given up.
pub const PENDING_TIMEOUT_NS: u64 = 10_000_000_000;

/// Stream bytes at offsets from 0, with a record of which arrived.
pub struct Assembly {
    buf: Vec<u8>,
    have: Vec<u64>,
}

impl Default for Assembly {
    fn default() -> Self {
        Assembly {
            buf: vec![0; MAX_HELLO],
            have: vec![0; MAX_HELLO / 64],
        }
    }
}

impl Assembly {
    pub fn clear(&mut self) {
        self.have.iter_mut().for_each(|w| *w = 0);
    }

    /// Places `data` at stream offset `offset`; what lies past [`MAX_HELLO`] is left out.
    pub fn put(&mut self, offset: u64, data: &[u8]) {
        let Ok(start) = usize::try_from(offset) else {
            return;
        };
        if start >= MAX_HELLO {
            return;
        }
        let end = start.saturating_add(data.len()).min(MAX_HELLO);
        self.buf[start..end].copy_from_slice(&data[..end - start]);
        // Mark [start, end) a word at a time.
        let mut i = start;
        while i < end {
            let bit = i % 64;
            let n = (64 - bit).min(end - i);
            let mask = if n == 64 {
                u64::MAX
            } else {
                ((1u64 << n) - 1) << bit
            };
            self.have[i / 64] |= mask;
            i += n;
        }
    }

    /// The bytes from offset 0 up to the first one missing.
    pub fn prefix(&self) -> &[u8] {
        let mut n = 0;
        for w in &self.have {
            if *w == u64::MAX {
                n += 64;
            } else {
                n += w.trailing_ones() as usize;
                break;
            }
        }
        &self.buf[..n]
    }
}

/// Which flow (and direction) a pending hello belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowId {
    pub addrs: [u8; 32],
    pub ports: [u16; 2],
    pub protocol: u8,
    pub vlan: u16,
}

impl FlowId {
    pub fn of(s: &crate::wire::FrameSummary) -> FlowId {
        let mut addrs = [0u8; 32];
        addrs[..16].copy_from_slice(&s.src_addr);
        addrs[16..].copy_from_slice(&s.dst_addr);
        FlowId {
            addrs,
            ports: [s.src_port, s.dst_port],
            protocol: s.protocol,
            vlan: s.vlan_id,
        }
    }
}

/// One unfinished hello.
pub struct Slot {
    pub id: FlowId,
    /// The TCP sequence number of stream offset 0 (0 for QUIC, whose frames carry offsets).
    pub base: u32,
    pub bytes: Assembly,
    /// Packets that brought bytes of this hello.
    pub packets: u32,
    touched_ns: u64,
    live: bool,
}

/// The unfinished hellos of one decoder.
pub struct Pending {
    slots: Vec<Slot>,
    index: hashbrown::HashMap<FlowId, usize>,
    /// Hellos given up because every slot was busy with a newer one.
    pub evicted: u64,
    /// Hellos given up because their flow went quiet.
    pub expired: u64,
    /// Hellos put together from more than one packet.
    pub completed: u64,
    /// The last flows whose hello was finished: a QUIC client's later Initials (its ACKs)
    /// are not decrypted again.
    finished: [Option<FlowId>; RECENT],
    next_finished: usize,
}

/// Finished flows remembered.
const RECENT: usize = 32;

impl Default for Pending {
    fn default() -> Self {
        Pending {
            slots: Vec::new(),
            index: hashbrown::HashMap::new(),
            evicted: 0,
            expired: 0,
            completed: 0,
            finished: [None; RECENT],
            next_finished: 0,
        }
    }
}

impl Pending {
    /// Whether `id`'s hello was one of the last ones finished.
    pub fn recently_finished(&self, id: &FlowId) -> bool {
        self.finished.iter().any(|f| f.as_ref() == Some(id))
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether a hello of `id` is pending (not touching it).
    pub fn has(&self, id: &FlowId) -> bool {
        !self.index.is_empty() && self.index.contains_key(id)
    }

    /// The pending hello of `id`, touched at `now_ns`.
    pub fn get(&mut self, id: &FlowId, now_ns: u64) -> Option<&mut Slot> {
        let &i = self.index.get(id)?;
        let s = &mut self.slots[i];
        if now_ns.saturating_sub(s.touched_ns) > PENDING_TIMEOUT_NS {
            self.expired += 1;
            self.free(i);
            return None;
        }
        s.touched_ns = now_ns;
        Some(&mut self.slots[i])
    }

    /// A fresh slot for `id` (emptied): a free one, else the least recently touched one (an
    /// expired or an evicted hello).
    pub fn start(&mut self, id: FlowId, base: u32, now_ns: u64) -> &mut Slot {
        if let Some(&i) = self.index.get(&id) {
            self.free(i);
        }
        let i = match self.slots.iter().position(|s| !s.live) {
            Some(i) => i,
            None if self.slots.len() < PENDING_FLOWS => {
                self.slots.push(Slot {
                    id,
                    base,
                    bytes: Assembly::default(),
                    packets: 0,
                    touched_ns: now_ns,
                    live: false,
                });
                self.slots.len() - 1
            }
            None => {
                let (i, oldest) = self
                    .slots
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, s)| s.touched_ns)
                    .expect("PENDING_FLOWS > 0");
                if now_ns.saturating_sub(oldest.touched_ns) > PENDING_TIMEOUT_NS {
                    self.expired += 1;
                } else {
                    self.evicted += 1;
                }
                self.free(i);
                i
            }
        };
        let s = &mut self.slots[i];
        s.id = id;
        s.base = base;
        s.touched_ns = now_ns;
        s.live = true;
        s.packets = 0;
        s.bytes.clear();
        self.index.insert(id, i);
        s
    }

    /// The hello of `id` is finished (or not a hello after all).
    pub fn finish(&mut self, id: &FlowId, completed: bool) {
        if let Some(&i) = self.index.get(id) {
            self.completed += (completed && self.slots[i].packets > 1) as u64;
            self.free(i);
        }
        if completed {
            self.finished[self.next_finished] = Some(*id);
            self.next_finished = (self.next_finished + 1) % RECENT;
        }
    }

    fn free(&mut self, i: usize) {
        let s = &mut self.slots[i];
        s.live = false;
        self.index.remove(&s.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_pieces_make_a_prefix() {
        let mut a = Assembly::default();
        a.put(5, b"fgh");
        assert_eq!(a.prefix(), b"");
        a.put(0, b"abcd");
        assert_eq!(a.prefix(), b"abcd");
        a.put(4, b"e");
        assert_eq!(a.prefix(), b"abcdefgh");
        a.put(MAX_HELLO as u64 - 2, b"xyz");
        a.put(u64::MAX, b"x");
        a.clear();
        assert_eq!(a.prefix(), b"");
        let big = vec![7u8; MAX_HELLO + 10];
        a.put(0, &big);
        assert_eq!(a.prefix().len(), MAX_HELLO);
    }

    #[test]
    fn slots_are_bounded_and_losses_counted() {
        let mut p = Pending::default();
        let id = |n: u16| FlowId {
            addrs: [0; 32],
            ports: [n, 443],
            protocol: 6,
            vlan: 0,
        };
        for n in 0..PENDING_FLOWS as u16 + 5 {
            p.start(id(n), 0, n as u64);
        }
        assert_eq!(p.evicted, 5);
        assert!(p.get(&id(0), 100).is_none(), "the oldest went first");
        assert!(p.get(&id(10), 100).is_some());
        assert!(p.get(&id(11), 100 + PENDING_TIMEOUT_NS + 1).is_none());
        assert_eq!(p.expired, 1);
        p.get(&id(13), 200).unwrap().packets = 1;
        p.finish(&id(13), true);
        assert_eq!(p.completed, 0, "one packet: nothing was put together");
        p.get(&id(12), 200).unwrap().packets = 2;
        p.finish(&id(12), true);
        assert_eq!(p.completed, 1);
        assert!(p.get(&id(12), 200).is_none());
    }
}
