//! Frame decoding: zero-copy views over untrusted bytes, and the one summary the flow cache
//! consumes.
//!
//! Each protocol has a module with its field offsets named once and a view type whose checked
//! constructor validates lengths, after which accessors cannot fail. [`decode_frame`] walks a
//! frame from its link layer to the transport header and fills a [`FrameSummary`]; it never
//! allocates and never panics, whatever the input. A frame that cannot be metered gets a
//! [`NotMetered`] reason, which the books count.

pub mod ethernet;
pub mod ip;
pub mod link;
pub mod transport;

pub use link::LinkType;

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
}

impl FilterReason {
    pub const ALL: [FilterReason; 3] = [
        FilterReason::NonIp,
        FilterReason::MplsNonIp,
        FilterReason::UnsupportedLinkType,
    ];
    pub fn name(self) -> &'static str {
        match self {
            FilterReason::NonIp => "non_ip",
            FilterReason::MplsNonIp => "mpls_non_ip",
            FilterReason::UnsupportedLinkType => "unsupported_link_type",
        }
    }
}

impl MalformedReason {
    pub const ALL: [MalformedReason; 9] = [
        MalformedReason::TruncatedLink,
        MalformedReason::TruncatedIp,
        MalformedReason::TruncatedTransport,
        MalformedReason::BadIpVersion,
        MalformedReason::BadIpHeaderLength,
        MalformedReason::BadIpTotalLength,
        MalformedReason::BadIpv6ExtensionChain,
        MalformedReason::TooManyVlanTags,
        MalformedReason::TooManyMplsLabels,
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

/// Decodes one frame of `link` type into `out` (which is reset first).
#[inline]
pub fn decode_frame(
    link: LinkType,
    frame: &[u8],
    out: &mut FrameSummary,
) -> Result<(), NotMetered> {
    *out = FrameSummary::default();
    let (ethertype, payload) = link::decode_link(link, frame, out)?;
    let payload = ethernet::decode_ethertype_chain(ethertype, payload, out)?;
    match payload {
        ethernet::Network::Ipv4(p) => ip::decode_ipv4(p, out),
        ethernet::Network::Ipv6(p) => ip::decode_ipv6(p, out),
    }
}

#[cfg(test)]
mod tests;
