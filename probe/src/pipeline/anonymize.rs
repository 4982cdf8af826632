//! `--anonymize KEYFILE`: prefix-preserving address anonymization (Crypto-PAn) of exported
//! flows.
//!
//! Crypto-PAn (Xu, Fan, Ammar, Moon, ICNP 2002) maps each address one to one so that two
//! addresses sharing a k-bit prefix map to addresses sharing a k-bit prefix: subnets stay
//! subnets and top-talker analyses still work, but the real addresses need the key. Bit i of
//! the output is bit i of the input XOR the first bit of AES(key, the input's first i bits
//! followed by the secret pad's remaining bits). IPv6 uses the same construction over 128 bits.
//!
//! The key file holds 32 bytes (or 64 hex digits): an AES-128 key, then the pad's seed, as in
//! the reference implementation, so the same key gives the same mapping as other Crypto-PAn
//! tools. MAC addresses, which identify hosts too, are zeroed in anonymized records. The PCAP
//! ring is not anonymized: it is evidence, kept under its own access rules.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;
use ipfix_export::FlowRecord;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// A Crypto-PAn key, ready to map addresses.
pub struct CryptoPan {
    aes: Aes128,
    /// AES(key, seed): the bits that fill each block after the input's prefix.
    pad: [u8; 16],
}

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the anonymization key {path}: {source} (make one with: head -c 32 /dev/urandom > {path}; chmod 600 {path})")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the anonymization key {path} must hold 32 bytes or 64 hex digits, not {len} bytes")]
    Length { path: String, len: usize },
}

impl CryptoPan {
    pub fn new(key: &[u8; 32]) -> CryptoPan {
        let aes = Aes128::new_from_slice(&key[..16]).expect("16-byte key");
        let mut pad = aes::Block::clone_from_slice(&key[16..]);
        aes.encrypt_block(&mut pad);
        CryptoPan {
            aes,
            pad: pad.into(),
        }
    }

    /// Reads a key file: 32 raw bytes, or 64 hex digits (whitespace ignored).
    pub fn from_file(path: &Path) -> Result<CryptoPan, KeyError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
            path: shown.clone(),
            source,
        })?;
        let text: String = String::from_utf8_lossy(&bytes)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let key: Vec<u8> = if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex"))
                .collect()
        } else {
            bytes
        };
        let key: [u8; 32] = key.as_slice().try_into().map_err(|_| KeyError::Length {
            path: shown,
            len: key.len(),
        })?;
        Ok(CryptoPan::new(&key))
    }

    /// Maps the top `bits` bits of `addr` (a 128-bit value, IPv4 in the top 32 bits).
    fn map(&self, addr: u128, bits: u32) -> u128 {
        let pad = u128::from_be_bytes(self.pad);
        let mut flips = 0u128;
        for i in 0..bits {
            // The input's first i bits, then the pad's bits from position i on.
            let keep = if i == 0 { 0 } else { u128::MAX << (128 - i) };
            let block = (addr & keep) | (pad & !keep);
            let mut b = aes::Block::from(block.to_be_bytes());
            self.aes.encrypt_block(&mut b);
            flips |= u128::from(b[0] >> 7) << (127 - i);
        }
        addr ^ flips
    }

    pub fn ipv4(&self, a: Ipv4Addr) -> Ipv4Addr {
        let v = (u32::from(a) as u128) << 96;
        Ipv4Addr::from((self.map(v, 32) >> 96) as u32)
    }

    pub fn ipv6(&self, a: Ipv6Addr) -> Ipv6Addr {
        Ipv6Addr::from(self.map(u128::from(a), 128))
    }

    pub fn ip(&self, a: IpAddr) -> IpAddr {
        match a {
            IpAddr::V4(a) => self.ipv4(a).into(),
            IpAddr::V6(a) => self.ipv6(a).into(),
        }
    }

    /// Anonymizes a record's addresses and clears its MAC addresses.
    pub fn record(&self, r: &mut FlowRecord) {
        // An aggregate's "any address" side (0.0.0.0/0) says nothing about anyone: it stays.
        let any = r
            .aggregate
            .as_deref()
            .map(|a| a.prefix_lengths(r.is_ipv6()));
        if any.is_none_or(|(src_len, _)| src_len != 0) {
            r.src_addr = self.ip(r.src_addr);
        }
        if any.is_none_or(|(_, dst_len)| dst_len != 0) {
            r.dst_addr = self.ip(r.dst_addr);
        }
        r.src_mac = [0; 6];
        r.dst_mac = [0; 6];
        if let Some(t) = &mut r.tunnel {
            t.outer_src = self.ip(t.outer_src);
            t.outer_dst = self.ip(t.outer_dst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of the Crypto-PAn reference distribution's sample trace.
    const KEY: [u8; 32] = [
        21, 34, 23, 141, 51, 164, 207, 128, 19, 10, 91, 22, 73, 144, 125, 16, 216, 152, 143, 131,
        121, 121, 101, 39, 98, 87, 76, 45, 42, 132, 34, 2,
    ];

    #[test]
    fn matches_the_reference_sample_trace() {
        // Address pairs from the reference distribution's sample_trace_raw/sanitized files.
        let c = CryptoPan::new(&KEY);
        for (raw, anon) in [
            ("128.11.68.132", "135.242.180.132"),
            ("129.118.74.4", "134.136.186.123"),
            ("130.132.252.244", "133.68.164.234"),
            ("141.223.7.43", "141.167.8.160"),
            ("141.233.145.108", "141.129.237.235"),
            ("152.163.225.39", "151.140.114.167"),
            ("156.29.3.236", "147.225.12.42"),
            ("165.247.96.84", "162.9.99.234"),
            ("166.107.77.190", "160.132.178.185"),
            ("192.102.249.13", "252.138.62.131"),
        ] {
            assert_eq!(c.ipv4(raw.parse().unwrap()).to_string(), anon, "{raw}");
        }
    }

    #[test]
    fn ipv6_matches_another_implementation() {
        // The vectors of Yawning Angel's Go implementation (cryptopan_test.go), same key.
        let c = CryptoPan::new(&KEY);
        for (raw, anon) in [
            ("::1", "78ff:f001:9fc0:20df:8380:b1f1:704:ed"),
            ("::2", "78ff:f001:9fc0:20df:8380:b1f1:704:ef"),
            ("::ffff", "78ff:f001:9fc0:20df:8380:b1f1:704:f838"),
            ("2001:db8::1", "4401:2bc:603f:d91d:27f:ff8e:e6f1:dc1e"),
            ("2001:db8::2", "4401:2bc:603f:d91d:27f:ff8e:e6f1:dc1c"),
        ] {
            assert_eq!(c.ipv6(raw.parse().unwrap()).to_string(), anon, "{raw}");
        }
    }

    #[test]
    fn prefixes_are_preserved_in_both_families() {
        let c = CryptoPan::new(&KEY);
        let common = |a: u128, b: u128| (a ^ b).leading_zeros();
        let pairs: [(&str, &str); 3] = [
            ("10.1.2.3", "10.1.9.200"),
            ("2001:db8:1::1", "2001:db8:1:ffff::2"),
            ("2001:db8::1", "fe80::1"),
        ];
        for (a, b) in pairs {
            let (a, b): (IpAddr, IpAddr) = (a.parse().unwrap(), b.parse().unwrap());
            let v = |x: IpAddr| match x {
                IpAddr::V4(x) => (u32::from(x) as u128) << 96,
                IpAddr::V6(x) => u128::from(x),
            };
            assert_eq!(
                common(v(a), v(b)),
                common(v(c.ip(a)), v(c.ip(b))),
                "{a} {b}"
            );
            assert_ne!(c.ip(a), a);
        }
    }
}
