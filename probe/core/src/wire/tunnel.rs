//! Tunnel headers: GRE (and NVGRE), ERSPAN I/II/III, VXLAN, Geneve, GTP-U and IP-in-IP.
//!
//! Each header is a view in the smoltcp manner: its field offsets are named once (`mod field`
//! in each view's module), `new_checked` validates what the accessors read, and the accessors
//! cannot fail. [`next_layer`] looks at one IP packet's transport bytes and, when they carry
//! a tunnel the [`Decap`] configuration enables, says what is inside. Like Zeek's packet
//! analyzers, each encapsulation only finds the next layer; the walk and the bookkeeping are
//! in `wire::decode_frame`.
//!
//! A port is not proof: a UDP datagram to the VXLAN, Geneve or GTP-U port whose header does
//! not validate is ordinary UDP ([`next_layer`] returns `Ok(None)`). Nor is a header that
//! validates: VXLAN's receive rule (RFC 7348 §5) ignores every bit but the I flag, so half
//! of all random payloads pass it. What tells a tunnel from a datagram that only looks like
//! one is that the inner frame decodes cleanly: [`Layer::guessed`] marks the layers named by
//! a UDP port, and when what is inside one does not decode, `wire::decode_frame` meters the
//! datagram as the UDP flow it is and the books count it (`port_not_tunnel`). GRE and
//! IP-in-IP are named by the IP protocol number, so a broken header there is a malformed
//! frame.

pub use super::decap::{
    Decap, TunnelKind, GENEVE_PORT, GTPU_PORT, LINUX_VXLAN_PORT, VXLAN_GPE_PORT, VXLAN_PORT,
};
use super::ethernet::{
    ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_MPLS_MULTICAST, ETHERTYPE_MPLS_UNICAST,
};
use super::MalformedReason;

/// IP protocol numbers that carry tunnels.
pub const PROTO_IPIP: u8 = 4;
pub const PROTO_IPV6_IN_IP: u8 = 41;
pub const PROTO_GRE: u8 = 47;

/// GRE protocol types (ethertypes) we follow.
pub const GRE_PROTO_TEB: u16 = 0x6558;
pub const GRE_PROTO_ERSPAN_II: u16 = 0x88be;
pub const GRE_PROTO_ERSPAN_III: u16 = 0x22eb;

/// Most tunnel layers one frame may carry; the next one is `tunnel_too_deep`. Four covers the
/// deepest feed we know of in practice (VXLAN in ERSPAN in GRE over an MPLS core is three).
pub const MAX_TUNNEL_DEPTH: u8 = 4;

/// Most GTP-U extension headers followed.
const MAX_GTP_EXTENSIONS: usize = 8;

/// What a tunnel header carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inner<'a> {
    /// A whole Ethernet frame.
    Ethernet(&'a [u8]),
    /// A payload named by an ethertype (GRE, Geneve): IPv4, IPv6, MPLS, or anything else.
    Ethertype(u16, &'a [u8]),
    /// An IP packet, version from its first nibble (GTP-U, ERSPAN III frame type IP).
    Ip(&'a [u8]),
    /// IPv4 or IPv6 directly (IP-in-IP, by protocol number; VXLAN-GPE Next Protocol 1, 2).
    Ipv4(&'a [u8]),
    Ipv6(&'a [u8]),
    /// A Network Service Header (VXLAN-GPE Next Protocol 4): not decoded, the frame is
    /// counted as filtered by that name.
    Nsh,
}

/// One tunnel layer found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layer<'a> {
    pub kind: TunnelKind,
    /// The tunnel's identity: VNI, GRE key, TEID or ERSPAN session id (0 without one).
    pub id: u32,
    /// Whether `id` separates address spaces (VXLAN/Geneve VNI, NVGRE VSID, GRE key) and so
    /// belongs in the flow key.
    pub segment: bool,
    pub inner: Inner<'a>,
}

impl Layer<'_> {
    /// Whether only a UDP port named this layer (VXLAN, VXLAN-GPE, Geneve, GTP-U): then its
    /// inner frame must decode cleanly for the datagram to be taken for a tunnel.
    pub fn guessed(&self) -> bool {
        matches!(
            self.kind,
            TunnelKind::Vxlan | TunnelKind::Geneve | TunnelKind::GtpU
        )
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// GRE (RFC 2784, key and sequence number from RFC 2890).
pub mod gre {
    use super::{be16, be32, MalformedReason};

    mod field {
        pub const FLAGS: usize = 0;
        pub const PROTOCOL: usize = 2;
        pub const FIXED_LEN: usize = 4;
        pub const CHECKSUM_PRESENT: u8 = 0x80;
        /// RFC 1701's routing bit: RFC 2784 receivers treat it like the checksum field.
        pub const ROUTING_PRESENT: u8 = 0x40;
        pub const KEY_PRESENT: u8 = 0x20;
        pub const SEQUENCE_PRESENT: u8 = 0x10;
        pub const VERSION_MASK: u8 = 0x07;
    }

    /// A GRE header whose optional fields are all present in the buffer.
    pub struct GreHeader<'a> {
        buf: &'a [u8],
        header_len: usize,
    }

    impl<'a> GreHeader<'a> {
        /// `Ok(None)` for a GRE version other than 0 (PPTP's enhanced GRE carries PPP, which
        /// we do not follow: the packet is metered by its outer header).
        pub fn new_checked(buf: &'a [u8]) -> Result<Option<Self>, MalformedReason> {
            if buf.len() < field::FIXED_LEN {
                return Err(MalformedReason::TruncatedTunnelHeader);
            }
            let flags = buf[field::FLAGS];
            if buf[1] & field::VERSION_MASK != 0 {
                return Ok(None);
            }
            let mut len = field::FIXED_LEN;
            if flags & (field::CHECKSUM_PRESENT | field::ROUTING_PRESENT) != 0 {
                len += 4;
            }
            if flags & field::KEY_PRESENT != 0 {
                len += 4;
            }
            if flags & field::SEQUENCE_PRESENT != 0 {
                len += 4;
            }
            if buf.len() < len {
                return Err(MalformedReason::TruncatedTunnelHeader);
            }
            Ok(Some(GreHeader {
                buf,
                header_len: len,
            }))
        }
        pub fn protocol(&self) -> u16 {
            be16(self.buf, field::PROTOCOL)
        }
        fn has_checksum(&self) -> bool {
            self.buf[field::FLAGS] & (field::CHECKSUM_PRESENT | field::ROUTING_PRESENT) != 0
        }
        pub fn key(&self) -> Option<u32> {
            (self.buf[field::FLAGS] & field::KEY_PRESENT != 0).then(|| {
                be32(
                    self.buf,
                    field::FIXED_LEN + if self.has_checksum() { 4 } else { 0 },
                )
            })
        }
        pub fn has_sequence(&self) -> bool {
            self.buf[field::FLAGS] & field::SEQUENCE_PRESENT != 0
        }
        pub fn payload(&self) -> &'a [u8] {
            &self.buf[self.header_len..]
        }
    }
}

/// ERSPAN type II and III headers (draft-foschiano-erspan).
pub mod erspan {
    use super::{be16, MalformedReason};

    mod field {
        pub const VER_VLAN: usize = 0;
        pub const SESSION: usize = 2;
        pub const TYPE_II_LEN: usize = 8;
        pub const TYPE_III_LEN: usize = 12;
        /// Type III: the last octet holds the frame type (bits 5 of 0x7c) and the O flag.
        pub const III_FLAGS: usize = 10;
        pub const III_FRAME_TYPE_SHIFT: u16 = 10;
        pub const III_FRAME_TYPE_MASK: u16 = 0x1f;
        pub const III_OPTIONAL: u16 = 0x0001;
        pub const PLATFORM_SUBHEADER_LEN: usize = 8;
        pub const SESSION_MASK: u16 = 0x03ff;
    }

    /// ERSPAN III frame types: an Ethernet frame, or an IP packet.
    pub const FRAME_TYPE_ETHERNET: u16 = 0;
    pub const FRAME_TYPE_IP: u16 = 2;

    /// An ERSPAN II or III header, with III's platform-specific sub-header skipped.
    pub struct ErspanHeader<'a> {
        buf: &'a [u8],
        header_len: usize,
    }

    impl<'a> ErspanHeader<'a> {
        /// `version` is 1 for type II (GRE 0x88BE) and 2 for type III (GRE 0x22EB); a header
        /// that says otherwise is broken.
        pub fn new_checked(buf: &'a [u8], version: u8) -> Result<Self, MalformedReason> {
            let fixed = if version == 1 {
                field::TYPE_II_LEN
            } else {
                field::TYPE_III_LEN
            };
            if buf.len() < fixed {
                return Err(MalformedReason::TruncatedTunnelHeader);
            }
            if buf[field::VER_VLAN] >> 4 != version {
                return Err(MalformedReason::BadTunnelHeader);
            }
            let mut header_len = fixed;
            if version == 2 && be16(buf, field::III_FLAGS) & field::III_OPTIONAL != 0 {
                header_len += field::PLATFORM_SUBHEADER_LEN;
                if buf.len() < header_len {
                    return Err(MalformedReason::TruncatedTunnelHeader);
                }
            }
            Ok(ErspanHeader { buf, header_len })
        }
        pub fn session_id(&self) -> u16 {
            be16(self.buf, field::SESSION) & field::SESSION_MASK
        }
        /// Type III only.
        pub fn frame_type(&self) -> u16 {
            (be16(self.buf, field::III_FLAGS) >> field::III_FRAME_TYPE_SHIFT)
                & field::III_FRAME_TYPE_MASK
        }
        pub fn payload(&self) -> &'a [u8] {
            &self.buf[self.header_len..]
        }
    }
}

/// VXLAN (RFC 7348) and VXLAN-GPE (draft-ietf-nvo3-vxlan-gpe), read as RFC 7348 §5 tells a
/// receiver to: the I flag must be set, every other flag bit and reserved field is ignored
/// (group policy, GPE's version bits, vendor uses), except GPE's P bit, which says the fourth
/// octet names what follows instead of Ethernet.
pub mod vxlan {
    use super::be32;

    mod field {
        pub const FLAGS: usize = 0;
        pub const NEXT_PROTOCOL: usize = 3;
        pub const VNI: usize = 4;
        pub const HEADER_LEN: usize = 8;
        pub const FLAG_I: u8 = 0x08;
        /// VXLAN-GPE: the Next Protocol octet is present.
        pub const FLAG_P: u8 = 0x04;
    }

    /// VXLAN-GPE Next Protocol values.
    pub const NEXT_IPV4: u8 = 1;
    pub const NEXT_IPV6: u8 = 2;
    pub const NEXT_ETHERNET: u8 = 3;
    pub const NEXT_NSH: u8 = 4;

    pub struct VxlanHeader<'a> {
        buf: &'a [u8],
    }

    /// Whether `b` starts with an NSH base header (RFC 8300 §2.2): version 0, a length of
    /// at least the base and service path headers that fits, MD type 1 or 2, and a next
    /// protocol RFC 8300 names (IPv4, IPv6, Ethernet, NSH, MPLS).
    pub fn plausible_nsh(b: &[u8]) -> bool {
        let [b0, b1, b2, b3, ..] = *b else {
            return false;
        };
        let words = (b1 & 0x3f) as usize;
        b0 >> 6 == 0
            && words >= 2
            && words * 4 <= b.len()
            && matches!(b2 & 0x0f, 1 | 2)
            && (1..=5).contains(&b3)
    }

    impl<'a> VxlanHeader<'a> {
        /// `None` unless the I flag is set (the only bit a receiver checks).
        pub fn new_checked(buf: &'a [u8]) -> Option<Self> {
            if buf.len() < field::HEADER_LEN {
                return None;
            }
            (buf[field::FLAGS] & field::FLAG_I != 0).then_some(VxlanHeader { buf })
        }
        pub fn vni(&self) -> u32 {
            be32(self.buf, field::VNI) >> 8
        }
        /// VXLAN-GPE's Next Protocol when the P bit is set; `None`: Ethernet follows.
        pub fn next_protocol(&self) -> Option<u8> {
            (self.buf[field::FLAGS] & field::FLAG_P != 0).then_some(self.buf[field::NEXT_PROTOCOL])
        }
        pub fn payload(&self) -> &'a [u8] {
            &self.buf[field::HEADER_LEN..]
        }
    }
}

/// Geneve (RFC 8926).
pub mod geneve {
    use super::{be16, be32};

    mod field {
        pub const VER_OPTLEN: usize = 0;
        pub const PROTOCOL: usize = 2;
        pub const VNI: usize = 4;
        pub const FIXED_LEN: usize = 8;
        pub const OPTLEN_MASK: u8 = 0x3f;
    }

    pub struct GeneveHeader<'a> {
        buf: &'a [u8],
        header_len: usize,
    }

    impl<'a> GeneveHeader<'a> {
        /// `None` unless version 0 with its options inside the datagram.
        pub fn new_checked(buf: &'a [u8]) -> Option<Self> {
            if buf.len() < field::FIXED_LEN || buf[field::VER_OPTLEN] >> 6 != 0 {
                return None;
            }
            let header_len =
                field::FIXED_LEN + (buf[field::VER_OPTLEN] & field::OPTLEN_MASK) as usize * 4;
            (buf.len() >= header_len).then_some(GeneveHeader { buf, header_len })
        }
        pub fn protocol(&self) -> u16 {
            be16(self.buf, field::PROTOCOL)
        }
        pub fn vni(&self) -> u32 {
            be32(self.buf, field::VNI) >> 8
        }
        pub fn payload(&self) -> &'a [u8] {
            &self.buf[self.header_len..]
        }
    }
}

/// GTP-U version 1 (3GPP TS 29.281): G-PDUs only.
pub mod gtpu {
    use super::{be32, MalformedReason, MAX_GTP_EXTENSIONS};

    mod field {
        pub const FLAGS: usize = 0;
        pub const MESSAGE_TYPE: usize = 1;
        pub const TEID: usize = 4;
        pub const FIXED_LEN: usize = 8;
        pub const OPTIONAL_LEN: usize = 4;
        /// The next-extension-header type, last octet of the optional fields.
        pub const NEXT_EXTENSION: usize = 11;
        pub const VERSION_PT: u8 = 0x30;
        pub const VERSION_1_GTP: u8 = 0x30;
        pub const E_S_PN: u8 = 0x07;
        pub const FLAG_E: u8 = 0x04;
    }

    /// Message type of a G-PDU: a user's packet.
    pub const G_PDU: u8 = 0xff;

    pub struct GtpuHeader<'a> {
        buf: &'a [u8],
        header_len: usize,
    }

    impl<'a> GtpuHeader<'a> {
        /// `Ok(None)` when the datagram is not a GTPv1-U G-PDU (echo, end marker, error
        /// indication, or not GTP at all): it is metered as the UDP it is. A G-PDU whose
        /// extension headers run past the datagram is broken.
        pub fn new_checked(buf: &'a [u8]) -> Result<Option<Self>, MalformedReason> {
            if buf.len() < field::FIXED_LEN
                || buf[field::FLAGS] & field::VERSION_PT != field::VERSION_1_GTP
                || buf[field::FLAGS] >> 5 != 1
                || buf[field::MESSAGE_TYPE] != G_PDU
            {
                return Ok(None);
            }
            let mut header_len = field::FIXED_LEN;
            if buf[field::FLAGS] & field::E_S_PN != 0 {
                header_len += field::OPTIONAL_LEN;
                if buf.len() < header_len {
                    return Err(MalformedReason::TruncatedTunnelHeader);
                }
                if buf[field::FLAGS] & field::FLAG_E != 0 {
                    let mut next = buf[field::NEXT_EXTENSION];
                    let mut n = 0;
                    while next != 0 {
                        if n == MAX_GTP_EXTENSIONS {
                            return Err(MalformedReason::BadTunnelHeader);
                        }
                        // Length in 4-octet units, its own octet and the next type included.
                        let units = *buf
                            .get(header_len)
                            .ok_or(MalformedReason::TruncatedTunnelHeader)?
                            as usize;
                        if units == 0 {
                            return Err(MalformedReason::BadTunnelHeader);
                        }
                        header_len += units * 4;
                        if buf.len() < header_len {
                            return Err(MalformedReason::TruncatedTunnelHeader);
                        }
                        next = buf[header_len - 1];
                        n += 1;
                    }
                }
            }
            Ok(Some(GtpuHeader { buf, header_len }))
        }
        pub fn teid(&self) -> u32 {
            be32(self.buf, field::TEID)
        }
        pub fn payload(&self) -> &'a [u8] {
            &self.buf[self.header_len..]
        }
    }
}

/// UDP header length: tunnels over UDP start after it.
const UDP_HEADER_LEN: usize = 8;

/// Finds the tunnel, if any, in the transport bytes `l4` of an IP packet with `protocol` and
/// UDP destination port `dst_port`.
///
/// `Ok(None)`: no tunnel (or one `decap` does not enable): meter the packet as it is.
/// `Err`: a tunnel named by its protocol number whose header is broken.
#[inline]
pub fn next_layer<'a>(
    protocol: u8,
    dst_port: u16,
    l4: &'a [u8],
    decap: &Decap,
) -> Result<Option<Layer<'a>>, MalformedReason> {
    match protocol {
        PROTO_GRE => gre_layer(l4, decap),
        PROTO_IPIP if decap.is_enabled(TunnelKind::IpInIp) => Ok(Some(Layer {
            kind: TunnelKind::IpInIp,
            id: 0,
            segment: false,
            inner: Inner::Ipv4(l4),
        })),
        PROTO_IPV6_IN_IP if decap.is_enabled(TunnelKind::IpInIp) => Ok(Some(Layer {
            kind: TunnelKind::IpInIp,
            id: 0,
            segment: false,
            inner: Inner::Ipv6(l4),
        })),
        super::transport::PROTO_UDP if l4.len() > UDP_HEADER_LEN => {
            // A layer only a port names must carry something that starts like a frame.
            Ok(
                udp_layer(dst_port, &l4[UDP_HEADER_LEN..], decap)?.filter(|l| match l.inner {
                    Inner::Ethernet(f) => super::ethernet::plausible_inner_ethernet(f),
                    _ => true,
                }),
            )
        }
        _ => Ok(None),
    }
}

#[inline(never)]
fn udp_layer<'a>(
    dst_port: u16,
    payload: &'a [u8],
    decap: &Decap,
) -> Result<Option<Layer<'a>>, MalformedReason> {
    if decap.is_enabled(TunnelKind::Vxlan) && decap.is_vxlan_port(dst_port) {
        let Some(h) = vxlan::VxlanHeader::new_checked(payload) else {
            return Ok(None);
        };
        let inner = match h.next_protocol() {
            None | Some(vxlan::NEXT_ETHERNET) => Inner::Ethernet(h.payload()),
            Some(vxlan::NEXT_IPV4) => Inner::Ipv4(h.payload()),
            Some(vxlan::NEXT_IPV6) => Inner::Ipv6(h.payload()),
            Some(vxlan::NEXT_NSH) if vxlan::plausible_nsh(h.payload()) => Inner::Nsh,
            // A Next Protocol no draft names: not VXLAN-GPE, an ordinary datagram.
            Some(_) => return Ok(None),
        };
        return Ok(Some(Layer {
            kind: TunnelKind::Vxlan,
            id: h.vni(),
            segment: true,
            inner,
        }));
    }
    if decap.is_enabled(TunnelKind::Geneve) && decap.is_geneve_port(dst_port) {
        return Ok(geneve::GeneveHeader::new_checked(payload).map(|h| Layer {
            kind: TunnelKind::Geneve,
            id: h.vni(),
            segment: true,
            inner: if h.protocol() == GRE_PROTO_TEB {
                Inner::Ethernet(h.payload())
            } else {
                Inner::Ethertype(h.protocol(), h.payload())
            },
        }));
    }
    if decap.is_enabled(TunnelKind::GtpU) && dst_port == GTPU_PORT {
        return Ok(gtpu::GtpuHeader::new_checked(payload)?.map(|h| Layer {
            kind: TunnelKind::GtpU,
            id: h.teid(),
            segment: false,
            inner: Inner::Ip(h.payload()),
        }));
    }
    Ok(None)
}

#[inline(never)]
fn gre_layer<'a>(l4: &'a [u8], decap: &Decap) -> Result<Option<Layer<'a>>, MalformedReason> {
    let erspan = decap.is_enabled(TunnelKind::ErspanI)
        || decap.is_enabled(TunnelKind::ErspanII)
        || decap.is_enabled(TunnelKind::ErspanIII);
    if !erspan && !decap.is_enabled(TunnelKind::Gre) && !decap.is_enabled(TunnelKind::Nvgre) {
        return Ok(None);
    }
    let Some(g) = gre::GreHeader::new_checked(l4)? else {
        return Ok(None);
    };
    let layer = |kind, id, segment, inner| {
        Ok(decap.is_enabled(kind).then_some(Layer {
            kind,
            id,
            segment,
            inner,
        }))
    };
    match g.protocol() {
        // Type I has no ERSPAN header and no sequence number; type II has both.
        GRE_PROTO_ERSPAN_II if !g.has_sequence() => {
            layer(TunnelKind::ErspanI, 0, false, Inner::Ethernet(g.payload()))
        }
        GRE_PROTO_ERSPAN_II => {
            let e = erspan::ErspanHeader::new_checked(g.payload(), 1)?;
            layer(
                TunnelKind::ErspanII,
                e.session_id() as u32,
                false,
                Inner::Ethernet(e.payload()),
            )
        }
        GRE_PROTO_ERSPAN_III => {
            let e = erspan::ErspanHeader::new_checked(g.payload(), 2)?;
            let inner = match e.frame_type() {
                erspan::FRAME_TYPE_ETHERNET => Inner::Ethernet(e.payload()),
                erspan::FRAME_TYPE_IP => Inner::Ip(e.payload()),
                _ => return Err(MalformedReason::BadTunnelHeader),
            };
            layer(TunnelKind::ErspanIII, e.session_id() as u32, false, inner)
        }
        // NVGRE (RFC 7637): Ethernet with a key whose upper 24 bits are the VSID.
        GRE_PROTO_TEB => match g.key() {
            Some(key) if decap.is_enabled(TunnelKind::Nvgre) => layer(
                TunnelKind::Nvgre,
                key >> 8,
                true,
                Inner::Ethernet(g.payload()),
            ),
            key => layer(
                TunnelKind::Gre,
                key.unwrap_or(0),
                key.is_some(),
                Inner::Ethernet(g.payload()),
            ),
        },
        // IP and MPLS; anything else (keepalives, Cisco metadata, PPP, WCCP) is metered as
        // the GRE packet it is rather than lost as "not IP" inside.
        proto @ (ETHERTYPE_IPV4
        | ETHERTYPE_IPV6
        | ETHERTYPE_MPLS_UNICAST
        | ETHERTYPE_MPLS_MULTICAST) => {
            let key = g.key();
            layer(
                TunnelKind::Gre,
                key.unwrap_or(0),
                key.is_some(),
                Inner::Ethertype(proto, g.payload()),
            )
        }
        // Cisco MetaData (TrustSec SGT) in GRE: the payload's ethertype, version 1, length 1
        // (one 4-octet option: the SGT), then the payload, as Wireshark reads it.
        GRE_PROTO_CISCO_METADATA => {
            let p = g.payload();
            if p.len() < CISCO_METADATA_LEN || p[2] != 1 || p[3] != 1 {
                return Ok(None);
            }
            let key = g.key();
            layer(
                TunnelKind::Gre,
                key.unwrap_or(0),
                key.is_some(),
                Inner::Ethertype(u16::from_be_bytes([p[0], p[1]]), &p[CISCO_METADATA_LEN..]),
            )
        }
        _ => Ok(None),
    }
}

/// Cisco MetaData in GRE.
const GRE_PROTO_CISCO_METADATA: u16 = 0x8909;
const CISCO_METADATA_LEN: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decap_parses_names_and_refuses_unknown_ones() {
        let d = Decap::parse("vxlan,erspan").unwrap();
        assert!(d.is_enabled(TunnelKind::Vxlan) && d.is_enabled(TunnelKind::ErspanIII));
        assert!(!d.is_enabled(TunnelKind::Gre));
        assert!(Decap::parse("none").unwrap().is_none());
        assert_eq!(Decap::parse("all").unwrap(), Decap::all());
        let e = Decap::parse("vxlan,mpls").unwrap_err();
        assert!(e.contains("'mpls'") && e.contains("erspan, gre"), "{e}");
        let mut d = Decap::all();
        d.add_vxlan_port(4790).unwrap();
        d.add_vxlan_port(4791).unwrap();
        assert!(d.add_vxlan_port(4792).is_err());
        assert_eq!(
            d.vxlan_ports().collect::<Vec<_>>(),
            [4789, 8472, 4790, 4791]
        );
    }

    #[test]
    fn gtp_extension_chain_is_bounded_and_checked() {
        // G-PDU with E set, one PDU-session extension (length 1 unit), then IPv4.
        let mut g = vec![
            0x34, 0xff, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0x85, 1, 0x10, 0x05, 0,
        ];
        g.extend_from_slice(&[0x45, 0, 0, 20]);
        let h = gtpu::GtpuHeader::new_checked(&g).unwrap().unwrap();
        assert_eq!(h.teid(), 7);
        assert_eq!(h.payload()[0], 0x45);
        // A zero-length extension would loop forever: broken.
        let mut z = g.clone();
        z[12] = 0;
        assert_eq!(
            gtpu::GtpuHeader::new_checked(&z).err(),
            Some(MalformedReason::BadTunnelHeader)
        );
        // An echo request is GTP but not a G-PDU: ordinary UDP.
        let echo = [0x32, 0x01, 0, 4, 0, 0, 0, 0, 0, 1, 0, 0];
        assert!(gtpu::GtpuHeader::new_checked(&echo).unwrap().is_none());
    }

    #[test]
    fn udp_to_a_tunnel_port_without_a_valid_header_is_not_a_tunnel() {
        let d = Decap::all();
        // UDP header, VXLAN header, then an Ethernet header carrying IPv4.
        let mut udp = vec![0, 1, 0x12, 0xb5, 0, 42, 0, 0];
        udp.extend_from_slice(&[0x00; 8]); // no I flag
        udp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00]);
        udp.extend_from_slice(&[0x45, 0, 0, 20]);
        assert_eq!(next_layer(17, VXLAN_PORT, &udp, &d), Ok(None));
        // RFC 7348 §5: reserved flag bits and fields are ignored on receipt.
        udp[8] = 0x08 | 0x80 | 0x02;
        udp[9..12].copy_from_slice(&[0xab, 0xcd, 0xef]);
        udp[15] = 0x5a;
        udp[12..15].copy_from_slice(&[0, 0x30, 0x39]);
        let l = next_layer(17, VXLAN_PORT, &udp, &d).unwrap().unwrap();
        assert_eq!((l.kind, l.id, l.segment), (TunnelKind::Vxlan, 12345, true));
        assert!(l.guessed());
        // What follows does not start like an Ethernet frame: not a tunnel.
        udp[28..30].copy_from_slice(&[0x12, 0x34]);
        assert_eq!(next_layer(17, VXLAN_PORT, &udp, &d), Ok(None));
        // VXLAN-GPE (P bit): the Next Protocol names the inner packet.
        udp[28..30].copy_from_slice(&[0x08, 0x00]);
        udp[8] = 0x0c;
        // (An NSH base header: version 0, length 2 words, MD type 2, next protocol IPv4.)
        udp[16..20].copy_from_slice(&[0x0f, 0xc2, 0x02, 0x01]);
        for (next, want) in [
            (1u8, "ipv4"),
            (2, "ipv6"),
            (3, "ethernet"),
            (4, "nsh"),
            (9, "none"),
        ] {
            udp[11] = next;
            let got = match next_layer(17, VXLAN_GPE_PORT, &udp, &d).unwrap() {
                Some(Layer {
                    inner: Inner::Ipv4(_),
                    ..
                }) => "ipv4",
                Some(Layer {
                    inner: Inner::Ipv6(_),
                    ..
                }) => "ipv6",
                Some(Layer {
                    inner: Inner::Ethernet(_),
                    ..
                }) => "ethernet",
                Some(Layer {
                    inner: Inner::Nsh, ..
                }) => "nsh",
                Some(_) => "other",
                None => "none",
            };
            assert_eq!(got, want, "next protocol {next}");
        }
        // Geneve version 1 does not exist.
        let mut gen = vec![
            0, 1, 0x17, 0xc1, 0, 20, 0, 0, 0x40, 0, 0x65, 0x58, 0, 0, 1, 0,
        ];
        assert_eq!(next_layer(17, GENEVE_PORT, &gen, &d), Ok(None));
        // Options longer than the datagram: not Geneve either.
        gen[8] = 0x05;
        assert_eq!(next_layer(17, GENEVE_PORT, &gen, &d), Ok(None));
    }
}
