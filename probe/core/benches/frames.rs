//! The benches' frames: `n` Ethernet frames in `flows` flows (a quarter IPv6/UDP to port 53,
//! the rest IPv4/TCP to 443), payloads of 0 to 1,399 bytes. Shared with `probe`'s `handoff`
//! bench, which includes this file, so both measure the same traffic.

use etherparse::PacketBuilder;

pub fn frames(n: u32, flows: u32) -> Vec<Vec<u8>> {
    let payload = [0u8; 1400];
    (0..n)
        .map(|i| {
            let f = i % flows;
            let mut v = vec![];
            let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
            let len = (i as usize * 37) % 1400;
            if f.is_multiple_of(4) {
                let mut s = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                s[12..].copy_from_slice(&f.to_be_bytes());
                b.ipv6(s, [0xfd; 16], 64)
                    .udp(1000 + (f % 5000) as u16, 53)
                    .write(&mut v, &payload[..len])
                    .unwrap();
            } else {
                b.ipv4((0x0a00_0000 | f).to_be_bytes(), [172, 16, 0, 1], 64)
                    .tcp(1024 + (f % 60000) as u16, 443, 1, 1000)
                    .ack(1)
                    .write(&mut v, &payload[..len])
                    .unwrap();
            }
            v
        })
        .collect()
}
