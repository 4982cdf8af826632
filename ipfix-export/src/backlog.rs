//! What waits for one collector while its pace is spent: a bounded backlog that sends the
//! records most worth having first and drops those least worth having (issue #28).
//!
//! Three priorities, each a FIFO:
//! 1. **conversations**: a flow with more than one packet, or with an answer (a biflow's
//!    reverse side): what the analyst reconstructs a session from;
//! 2. **aggregates**: a flood rolled up ([`crate::Aggregate`]), few and each worth many flows;
//! 3. **single packets**: one packet in one direction, the bulk of a flood or a scan.
//!
//! The backlog holds at most `capacity` records. A record that finds it full takes the place
//! of the oldest record of the lowest priority below its own; when there is none, the record
//! itself is dropped. Either way the drop is counted by priority, with its packets and octets.
//! Sans I/O: the exporter decides when records leave.

use crate::options::FlowTotals;
use crate::record::FlowRecord;
use std::collections::VecDeque;

/// A record's export priority; lower sends first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Conversation = 0,
    Aggregate = 1,
    SinglePacket = 2,
}

impl Priority {
    pub const ALL: [Priority; 3] = [
        Priority::Conversation,
        Priority::Aggregate,
        Priority::SinglePacket,
    ];

    pub fn of(rec: &FlowRecord) -> Priority {
        if rec.aggregate.is_some() {
            Priority::Aggregate
        } else if rec.packets > 1 || rec.reverse.is_some_and(|r| r.packets > 0) {
            Priority::Conversation
        } else {
            Priority::SinglePacket
        }
    }

    /// The name the books use.
    pub fn name(self) -> &'static str {
        match self {
            Priority::Conversation => "conversations",
            Priority::Aggregate => "aggregates",
            Priority::SinglePacket => "single_packet",
        }
    }
}

/// A bounded backlog of records in three priorities (see the module doc).
#[derive(Debug)]
pub struct Backlog {
    queues: [VecDeque<FlowRecord>; 3],
    len: usize,
    capacity: usize,
    peak: usize,
    /// What was dropped for lack of room, by priority.
    dropped: [FlowTotals; 3],
}

impl Backlog {
    pub fn new(capacity: usize) -> Backlog {
        Backlog {
            queues: Default::default(),
            len: 0,
            capacity: capacity.max(1),
            peak: 0,
            dropped: Default::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most records it held at once.
    pub fn peak(&self) -> usize {
        self.peak
    }

    /// What was dropped for lack of room, by [`Priority`] (index = priority).
    pub fn dropped(&self) -> [FlowTotals; 3] {
        self.dropped
    }

    /// Queues a record; when full, drops the oldest record of the lowest priority below the
    /// record's own, or else the record (see the module doc).
    pub fn push(&mut self, rec: FlowRecord) {
        let p = Priority::of(&rec);
        if self.len >= self.capacity {
            let lower = Priority::ALL
                .into_iter()
                .rev()
                .take_while(|&q| q > p)
                .find(|&q| !self.queues[q as usize].is_empty());
            match lower {
                Some(q) => {
                    let old = self.queues[q as usize]
                        .pop_front()
                        .expect("chosen because it is not empty");
                    self.dropped[q as usize] += FlowTotals::of(&old);
                    self.len -= 1;
                }
                None => {
                    self.dropped[p as usize] += FlowTotals::of(&rec);
                    return;
                }
            }
        }
        self.queues[p as usize].push_back(rec);
        self.len += 1;
        self.peak = self.peak.max(self.len);
    }

    /// The next record to send: the oldest of the highest priority.
    pub fn pop(&mut self) -> Option<FlowRecord> {
        let rec = self.queues.iter_mut().find_map(VecDeque::pop_front)?;
        self.len -= 1;
        Some(rec)
    }

    /// Drops everything still queued (the end came first), counted like a lack of room.
    pub fn abandon(&mut self) {
        for (i, q) in self.queues.iter_mut().enumerate() {
            for rec in q.drain(..) {
                self.dropped[i] += FlowTotals::of(&rec);
            }
        }
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::tests::sample;
    use crate::TimePrecision;

    fn rec(packets: u64, tag: u16) -> FlowRecord {
        FlowRecord {
            packets,
            src_port: tag,
            ..sample(false, TimePrecision::Micros)
        }
    }

    fn aggregate(tag: u16) -> FlowRecord {
        FlowRecord {
            aggregate: Some(Box::new(crate::Aggregate {
                flows: 10,
                distinct: 10,
                kept: crate::Kept::Destination,
            })),
            ..rec(10, tag)
        }
    }

    #[test]
    fn sends_conversations_then_aggregates_then_single_packets_each_in_order() {
        let mut b = Backlog::new(10);
        b.push(rec(1, 1));
        b.push(aggregate(2));
        b.push(rec(5, 3));
        b.push(rec(1, 4));
        b.push(rec(7, 5));
        let order: Vec<u16> = std::iter::from_fn(|| b.pop()).map(|r| r.src_port).collect();
        assert_eq!(order, [3, 5, 2, 1, 4]);
        assert!(b.is_empty());
    }

    #[test]
    fn a_full_backlog_drops_the_oldest_single_packet_first_then_the_newcomer() {
        let mut b = Backlog::new(3);
        b.push(rec(1, 1));
        b.push(rec(1, 2));
        b.push(rec(2, 3));
        // A conversation takes the place of the oldest single packet.
        b.push(rec(4, 4));
        assert_eq!(b.dropped()[2].flows, 1);
        assert_eq!(b.dropped()[2].packets, 1);
        // An aggregate takes the place of the last single packet.
        b.push(aggregate(5));
        assert_eq!(b.dropped()[2].flows, 2);
        // A single packet finds nothing below it: it is dropped itself.
        b.push(rec(1, 6));
        assert_eq!(b.dropped()[2].flows, 3);
        // A conversation takes the aggregate's place; the next finds only its equals.
        b.push(rec(3, 7));
        assert_eq!(b.dropped()[1].flows, 1);
        assert_eq!(b.dropped()[1].packets, 10);
        b.push(rec(3, 8));
        assert_eq!(b.dropped()[0].flows, 1);
        let left: Vec<u16> = std::iter::from_fn(|| b.pop()).map(|r| r.src_port).collect();
        assert_eq!(left, [3, 4, 7]);
        assert_eq!(b.peak(), 3);
    }

    #[test]
    fn abandoning_counts_what_was_left() {
        let mut b = Backlog::new(10);
        b.push(rec(2, 1));
        b.push(rec(1, 2));
        b.abandon();
        assert!(b.is_empty());
        assert_eq!(b.dropped()[0].packets, 2);
        assert_eq!(b.dropped()[2].packets, 1);
        assert!(b.pop().is_none());
    }
}
