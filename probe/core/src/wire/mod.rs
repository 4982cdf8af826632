//! Frame decoding: zero-copy views over untrusted bytes, and the one summary the flow cache
//! consumes.
//!
//! Each protocol has a module with its field offsets named once and a view type whose checked
//! constructor validates lengths, after which accessors cannot fail. [`decode_frame`] walks a
//! frame from its link layer to the transport header and fills a [`FrameSummary`]; it never
//! allocates and never panics, whatever the input. A frame that cannot be metered gets a
//! [`NotMetered`] reason, which the books count.
//!
//! Tunnels (`tunnel.rs`) are removed on the way: the summary describes the innermost IP
//! packet, and [`TunnelSummary`] keeps what the flow record says about the way it came.

pub mod decap;
pub mod ethernet;
pub mod ip;
pub mod link;
pub mod transport;
pub mod tunnel;

pub use decap::{Decap, TunnelKind};
pub use link::LinkType;

/// The tunnels a frame came through.
///
/// The record's tunnel is the *outermost* one (the mirror session or overlay the probe was
/// given: its kind, identity and endpoints); the key's segment is the *innermost* address
/// space (the VNI or GRE key right around the inner packet), because that is what separates
/// two tenants' 10.0.0.0/8.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelSummary {
    /// The outermost tunnel removed (PPPoE is not an IP tunnel and only shows in `kinds`).
    /// This field, `id`, the endpoints and `inner_*` mean something only when `depth` is not
    /// zero: a plain frame leaves them as the last tunnelled frame set them.
    pub kind: TunnelKind,
    /// Its identity: VNI, GRE key, GTP TEID or ERSPAN session id.
    pub id: u32,
    /// Its endpoints: the IP header that carried it.
    pub outer_version: u8,
    pub outer_src: [u8; 16],
    pub outer_dst: [u8; 16],
    /// The innermost tunnel's kind and identity (the same as `kind`/`id` with one tunnel).
    pub inner_kind: TunnelKind,
    pub inner_id: u32,
    /// Tunnel layers removed (PPPoE excluded).
    pub depth: u8,
    /// Every encapsulation passed, one bit per [`TunnelKind`] code.
    pub kinds: u16,
    /// The innermost address-space identity (VXLAN/Geneve VNI, NVGRE VSID, GRE key), keyed.
    pub segment: u32,
    /// The kind that gave `segment` (`None`: no segment).
    pub segment_kind: TunnelKind,
    /// One more than the depth at which the innermost layer named only by a UDP port was
    /// entered (0: none), so a frame whose inside does not decode can be metered as that
    /// datagram instead (see `tunnel`'s module doc).
    guessed_at: u8,
    /// The frame was metered as an ordinary UDP datagram to a tunnel port because what
    /// looked like the tunnel's inner frame did not decode (`port_not_tunnel` in the books).
    pub port_not_tunnel: bool,
}

/// Everything the flow cache needs to know about one frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameSummary {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Outer VLAN id (0 when untagged).
    pub vlan_id: u16,
    /// Inner VLAN id of a QinQ frame.
    pub customer_vlan_id: u16,
    /// First three octets of the top MPLS label stack entry (zero without MPLS).
    pub mpls_top: [u8; 3],
    /// 4 or 6.
    pub ip_version: u8,
    /// IPv4 addresses use the first four octets; the rest stay zero.
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    /// The upper-layer protocol (for IPv6, after the extension headers).
    pub protocol: u8,
    /// IPv4 TOS or IPv6 traffic class.
    pub class_of_service: u8,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IP-layer length: IPv4 total length, or the IPv6 header plus payload length.
    pub ip_octets: u32,
    pub src_port: u16,
    /// For ICMP/ICMPv6: type * 256 + code.
    pub dst_port: u16,
    pub tcp_flags: u16,
    pub icmp_type_code: u16,
    /// Set when the IP packet is a fragment (not for IPv6 atomic fragments).
    pub fragment: Option<Fragment>,
    /// The tunnels removed to reach this packet.
    pub tunnel: TunnelSummary,
    /// PPPoE session id (0 without PPPoE).
    pub pppoe_session: u16,
    /// Where the innermost IP header starts in the frame (duplicate detection hashes from it;
    /// 65535 beyond that).
    pub ip_offset: u16,
    /// Where its transport header starts (the application parsers read from it; 65535
    /// beyond, or for a fragment after the first).
    pub l4_offset: u16,
    /// The ifindex of the interface the frame came in on (0 for capture files); set by the
    /// decoding stage, not by the wire decoders.
    pub ingress_if: u32,
}

impl TunnelSummary {
    /// Whether the frame came through a tunnel of one of `kinds` with identity `id` (the
    /// outermost, the innermost or the keyed segment).
    pub fn has(&self, kinds: &[TunnelKind], id: u32) -> bool {
        self.depth != 0
            && ((kinds.contains(&self.kind) && self.id == id)
                || (kinds.contains(&self.inner_kind) && self.inner_id == id)
                || (kinds.contains(&self.segment_kind) && self.segment == id))
    }
}

impl FrameSummary {
    /// Clears the summary for the next frame. The tunnel's endpoints and identities are only
    /// read when `depth` says a tunnel was entered, so they are left for the next tunnel to
    /// overwrite: the plain path clears 48 bytes fewer (measured: BENCHMARKS.md, tunnels).
    #[inline(always)]
    fn reset(&mut self) {
        let tunnel = TunnelSummary {
            depth: 0,
            kinds: 0,
            segment: 0,
            segment_kind: TunnelKind::None,
            guessed_at: 0,
            port_not_tunnel: false,
            ..self.tunnel
        };
        *self = FrameSummary {
            tunnel,
            ..FrameSummary::default()
        };
    }

    /// Starts the summary of the packet inside a tunnel: the outer packet's fields go, the
    /// tunnel's are kept and extended.
    fn enter_tunnel(&mut self, kind: TunnelKind, id: u32, segment: bool) {
        let mut t = self.tunnel;
        if t.depth == 0 {
            t.kind = kind;
            t.id = id;
            t.outer_version = self.ip_version;
            t.outer_src = self.src_addr;
            t.outer_dst = self.dst_addr;
        }
        t.inner_kind = kind;
        t.inner_id = id;
        if segment {
            t.segment = id;
            t.segment_kind = kind;
        }
        t.depth += 1;
        t.kinds |= 1 << kind as u16;
        let pppoe_session = self.pppoe_session;
        *self = FrameSummary {
            tunnel: t,
            pppoe_session,
            ..FrameSummary::default()
        };
    }
}

/// Where an IP fragment sits in its datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// IPv4 identification (16 bits) or IPv6 fragment identification (32 bits).
    pub id: u32,
    /// Offset zero: this fragment carries the transport header and its ports.
    pub first: bool,
    /// More fragments follow.
    pub more: bool,
}

/// Why a frame was not metered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotMetered {
    Filtered(FilterReason),
    Malformed(MalformedReason),
}

/// Frames that are well formed but outside what the probe meters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FilterReason {
    /// Not IP: ARP, LLDP, STP, 802.3/LLC and every other ethertype.
    NonIp,
    /// An MPLS payload that is not IP (a pseudowire, say).
    MplsNonIp,
    /// A pcapng interface whose link type the probe does not decode.
    UnsupportedLinkType,
    /// VXLAN-GPE carrying a Network Service Header (Next Protocol 4), which the probe does
    /// not decode.
    VxlanGpeNsh,
    /// From or to a prefix of the ignore-list (`--ignore`), found in user space: the frame's
    /// innermost addresses, where the XDP program could not look (a tunnel inside a tunnel,
    /// GTP-U with extension headers, IPv6 extension headers before a tunnel).
    IgnoreList,
    /// Sampled out by address pair (`--sample-mode flow`) in user space: the frames whose
    /// innermost packet the XDP program could not read and passed up (`sample_deferred`).
    SampledOut,
}

/// Frames whose headers are broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MalformedReason {
    /// Shorter than its link-layer header (Ethernet, VLAN tag, MPLS entry, cooked header).
    TruncatedLink,
    /// Shorter than the fixed IP header or its stated header length.
    TruncatedIp,
    /// IP datagram too short for the ports or ICMP type/code the flow key needs.
    TruncatedTransport,
    /// The IP version nibble does not match the ethertype (or is neither 4 nor 6).
    BadIpVersion,
    /// IPv4 IHL below 5.
    BadIpHeaderLength,
    /// IPv4 total length below the header length.
    BadIpTotalLength,
    /// An IPv6 extension header runs past the packet, or the chain is longer than we follow.
    BadIpv6ExtensionChain,
    /// More VLAN tags than we follow.
    TooManyVlanTags,
    /// More MPLS labels than we follow.
    TooManyMplsLabels,
    /// A tunnel header (GRE, ERSPAN, GTP-U extensions, PPPoE) cut short.
    TruncatedTunnelHeader,
    /// A tunnel header that contradicts itself: ERSPAN version, ERSPAN III frame type, GTP-U
    /// extension length, PPPoE version/type.
    BadTunnelHeader,
    /// More tunnels inside each other than [`tunnel::MAX_TUNNEL_DEPTH`].
    TunnelTooDeep,
}

impl FilterReason {
    pub const ALL: [FilterReason; 6] = [
        FilterReason::NonIp,
        FilterReason::MplsNonIp,
        FilterReason::UnsupportedLinkType,
        FilterReason::VxlanGpeNsh,
        FilterReason::IgnoreList,
        FilterReason::SampledOut,
    ];
    pub fn name(self) -> &'static str {
        match self {
            FilterReason::NonIp => "non_ip",
            FilterReason::MplsNonIp => "mpls_non_ip",
            FilterReason::UnsupportedLinkType => "unsupported_link_type",
            FilterReason::VxlanGpeNsh => "vxlan_gpe_nsh",
            FilterReason::IgnoreList => "ignore_list",
            FilterReason::SampledOut => "sampled_out_by_pair",
        }
    }
}

impl MalformedReason {
    pub const ALL: [MalformedReason; 12] = [
        MalformedReason::TruncatedLink,
        MalformedReason::TruncatedIp,
        MalformedReason::TruncatedTransport,
        MalformedReason::BadIpVersion,
        MalformedReason::BadIpHeaderLength,
        MalformedReason::BadIpTotalLength,
        MalformedReason::BadIpv6ExtensionChain,
        MalformedReason::TooManyVlanTags,
        MalformedReason::TooManyMplsLabels,
        MalformedReason::TruncatedTunnelHeader,
        MalformedReason::BadTunnelHeader,
        MalformedReason::TunnelTooDeep,
    ];
    pub fn name(self) -> &'static str {
        match self {
            MalformedReason::TruncatedLink => "truncated_link_header",
            MalformedReason::TruncatedIp => "truncated_ip_header",
            MalformedReason::TruncatedTransport => "truncated_transport_header",
            MalformedReason::BadIpVersion => "bad_ip_version",
            MalformedReason::BadIpHeaderLength => "bad_ip_header_length",
            MalformedReason::BadIpTotalLength => "bad_ip_total_length",
            MalformedReason::BadIpv6ExtensionChain => "bad_ipv6_extension_chain",
            MalformedReason::TooManyVlanTags => "too_many_vlan_tags",
            MalformedReason::TooManyMplsLabels => "too_many_mpls_labels",
            MalformedReason::TruncatedTunnelHeader => "truncated_tunnel_header",
            MalformedReason::BadTunnelHeader => "bad_tunnel_header",
            MalformedReason::TunnelTooDeep => "tunnel_too_deep",
        }
    }
}

impl From<MalformedReason> for NotMetered {
    fn from(r: MalformedReason) -> Self {
        NotMetered::Malformed(r)
    }
}

impl From<FilterReason> for NotMetered {
    fn from(r: FilterReason) -> Self {
        NotMetered::Filtered(r)
    }
}

/// Decodes one frame of `link` type into `out` (which is reset first), removing the tunnels
/// `decap` enables, up to [`tunnel::MAX_TUNNEL_DEPTH`] of them.
///
/// A layer named only by a UDP port (VXLAN, Geneve, GTP-U) counts as a tunnel only if what
/// is inside decodes: when it does not, the frame is decoded again stopping at that layer,
/// metered as the UDP datagram it is, and marked `port_not_tunnel`. The second pass runs only
/// for such frames.
#[inline]
pub fn decode_frame(
    link: LinkType,
    frame: &[u8],
    decap: &Decap,
    out: &mut FrameSummary,
) -> Result<(), NotMetered> {
    match decode_walk(link, frame, decap, out, u8::MAX) {
        // A clean frame that is not IP (ARP in VXLAN) is a tunnel's content like any other;
        // a malformed one says the port lied.
        Err(NotMetered::Malformed(_)) if out.tunnel.guessed_at != 0 => {
            let stop = out.tunnel.guessed_at - 1;
            decode_walk(link, frame, decap, out, stop)?;
            out.tunnel.port_not_tunnel = true;
            Ok(())
        }
        r => r,
    }
}

/// One walk down the frame; a UDP-port-named layer at depth `stop_guess_at` is not entered.
#[inline]
fn decode_walk(
    link: LinkType,
    frame: &[u8],
    decap: &Decap,
    out: &mut FrameSummary,
    stop_guess_at: u8,
) -> Result<(), NotMetered> {
    out.reset();
    let (ethertype, payload) = link::decode_link(link, frame, out)?;
    let mut net = ethernet::decode_ethertype_chain(ethertype, payload, decap, out)?;
    loop {
        let (ip, l4) = match net {
            ethernet::Network::Ipv4(p) => (p, ip::decode_ipv4(p, out)?),
            ethernet::Network::Ipv6(p) => (p, ip::decode_ipv6(p, out)?),
        };
        // A fragment's tunnel header is incomplete or absent: such packets are metered as
        // what they are (the outer flow).
        let layer = if out.fragment.is_none() {
            tunnel::next_layer(out.protocol, out.dst_port, l4, decap)?
                .filter(|l| !(l.guessed() && out.tunnel.depth == stop_guess_at))
        } else {
            None
        };
        let Some(layer) = layer else {
            let at = |p: &[u8]| {
                u16::try_from(p.as_ptr() as usize - frame.as_ptr() as usize).unwrap_or(u16::MAX)
            };
            out.ip_offset = at(ip);
            out.l4_offset = if l4.is_empty() { u16::MAX } else { at(l4) };
            return Ok(());
        };
        if out.tunnel.depth == tunnel::MAX_TUNNEL_DEPTH {
            return Err(MalformedReason::TunnelTooDeep.into());
        }
        if layer.guessed() {
            out.tunnel.guessed_at = out.tunnel.depth + 1;
        }
        out.enter_tunnel(layer.kind, layer.id, layer.segment);
        net = match layer.inner {
            tunnel::Inner::Ethernet(f) => {
                let eth = ethernet::EthernetFrame::new_checked(f)?;
                out.dst_mac = eth.dst_mac();
                out.src_mac = eth.src_mac();
                ethernet::decode_ethertype_chain(eth.ethertype(), eth.payload(), decap, out)?
            }
            tunnel::Inner::Ethertype(t, p) => ethernet::decode_ethertype_chain(t, p, decap, out)?,
            tunnel::Inner::Ipv4(p) => ethernet::Network::Ipv4(p),
            tunnel::Inner::Ipv6(p) => ethernet::Network::Ipv6(p),
            tunnel::Inner::Nsh => return Err(FilterReason::VxlanGpeNsh.into()),
            tunnel::Inner::Ip(p) => match p.first().map(|b| b >> 4) {
                Some(4) => ethernet::Network::Ipv4(p),
                Some(6) => ethernet::Network::Ipv6(p),
                Some(_) => return Err(FilterReason::NonIp.into()),
                None => return Err(MalformedReason::TruncatedIp.into()),
            },
        };
    }
}

#[cfg(test)]
mod tests;
