//! The exported flow: what the metering process hands to the exporting process.

use std::net::IpAddr;

/// Why a flow record was exported (IANA flowEndReason, element 136).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EndReason {
    IdleTimeout = 1,
    ActiveTimeout = 2,
    EndOfFlowDetected = 3,
    ForcedEnd = 4,
    LackOfResources = 5,
}

impl EndReason {
    /// The IANA name, as collectors and Wireshark print it.
    pub fn name(self) -> &'static str {
        match self {
            EndReason::IdleTimeout => "idleTimeout",
            EndReason::ActiveTimeout => "activeTimeout",
            EndReason::EndOfFlowDetected => "endOfFlowDetected",
            EndReason::ForcedEnd => "forcedEnd",
            EndReason::LackOfResources => "lackOfResources",
        }
    }
}

/// Resolution of the clock that timed a flow's packets. Nanosecond sources also get the
/// flowStart/EndNanoseconds elements; millisecond elements are always present because every
/// collector understands them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimePrecision {
    Micros,
    Nanos,
}

/// How a flow's packets reached the probe when they came inside a tunnel: the outermost
/// tunnel's kind, identity and endpoints (see README, "Tunnels").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tunnel {
    /// The probe's tunnelType code: 1 GRE, 2-4 ERSPAN I-III, 5 VXLAN, 6 Geneve, 7 GTP-U,
    /// 8 IP-in-IP, 9 NVGRE.
    pub kind: u8,
    /// VNI, GRE key, GTP TEID or ERSPAN session id (0 without one).
    pub id: u32,
    /// IANA layer2SegmentId: type octet (0x01 VXLAN, 0x02 NVGRE) over the 24-bit segment of
    /// the innermost overlay; 0 when there is none of those two.
    pub layer2_segment_id: u64,
    /// The segment that keys the flow, whatever its kind: the tunnelType code of the innermost
    /// layer with a VNI, VSID or GRE key (0: none), and that value. With one tunnel it is the
    /// tunnel's own; in a stack (a cloud mirror in VXLAN around a Geneve overlay) it is the
    /// inner overlay's, which layer2SegmentId cannot name when it is Geneve or a GRE key.
    pub key_kind: u8,
    pub key: u32,
    /// The tunnel's endpoints (the IP header that carried it); both of one family.
    pub outer_src: IpAddr,
    pub outer_dst: IpAddr,
}

/// One unidirectional flow (or one active-timeout delta of it).
///
/// Addresses of both ends have the same family. Fields that do not apply are zero: ports for
/// protocols without ports, `icmp_type_code` outside ICMP, VLAN ids on untagged frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    pub src_addr: IpAddr,
    pub dst_addr: IpAddr,
    pub src_port: u16,
    /// For ICMP and ICMPv6: type * 256 + code, as NetFlow collectors expect.
    pub dst_port: u16,
    pub protocol: u8,
    pub class_of_service: u8,
    /// OR of the TCP flags of all packets (RFC 7125 layout).
    pub tcp_flags: u16,
    pub min_ttl: u8,
    pub max_ttl: u8,
    /// ICMP type * 256 + code (0 for other protocols).
    pub icmp_type_code: u16,
    /// Outer 802.1Q/802.1ad VLAN id, 0 when untagged.
    pub vlan_id: u16,
    /// Inner (customer) VLAN id of a QinQ frame, 0 otherwise.
    pub customer_vlan_id: u16,
    /// The top MPLS label stack entry's first three octets (label, traffic class, bottom flag).
    pub mpls_top_label: [u8; 3],
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub packets: u64,
    /// IP-layer octets: the sum of the IP total lengths.
    pub octets: u64,
    /// First packet, nanoseconds since the UNIX epoch.
    pub start_ns: u64,
    /// Last packet, nanoseconds since the UNIX epoch.
    pub end_ns: u64,
    pub end_reason: EndReason,
    pub time_precision: TimePrecision,
    /// The opposite direction, when the metering process pairs directions into biflows
    /// (RFC 5103); this record's own fields are the initiator's.
    pub reverse: Option<Reverse>,
    /// The tunnel the flow's first packet came through, if any.
    pub tunnel: Option<Tunnel>,
    /// ingressInterface: the ifindex of the capture interface the flow's first packet came in
    /// on (0: unknown, e.g. a capture file).
    pub ingress_interface: u32,
    /// What the flow carried at the application layer, when `--app` asked and a parser
    /// recognised it (issue #15). Boxed: most records have none.
    pub app: Option<Box<AppRecord>>,
    /// The flow's Community ID v1 (`--community-id`), held inline: every record gets one.
    pub community_id: Option<CommunityId>,
    /// Set when this record is not one flow but many one-packet flows rolled up under a flood
    /// (RFC 7015 aggregation; see [`Aggregate`]). Boxed: almost every record is a flow.
    pub aggregate: Option<Box<Aggregate>>,
}

/// What an aggregated record (RFC 7015) adds to a flow's fields: many one-packet flows that
/// share a destination (or, for a flooded server's answers, a source), port, protocol and TCP
/// flags, rolled into one record per interval when the flow cache was under a flood.
///
/// The record's addresses and ports are those of the side kept; the other side's are zero, and
/// its prefix length 0 says "any address" (sourceIPv4Prefix/Length 0 in the template).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aggregate {
    /// The original flows rolled in: deltaFlowCount (3) and originalFlowsPresent (375). Each
    /// was one packet in one interval, so the conservative and the plain count are the same.
    pub flows: u64,
    /// An estimate of the distinct addresses of the side rolled away (a HyperLogLog sketch,
    /// about 3% standard error): distinctCountOfSourceIPAddress (378), or
    /// distinctCountOfDestinationIPAddress (379) when the source was kept.
    pub distinct: u64,
    pub kept: Kept,
}

/// Which side of the original flows an aggregate keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kept {
    /// The destination address and port (a flood's victim); the sources are counted.
    Destination,
    /// The source address and port (a flooded server answering SYN-ACK or RST to spoofed
    /// sources); the destinations are counted.
    Source,
    /// Neither: the aggregate table was full, so flows of this protocol and family went into
    /// one record with both prefix lengths 0.
    Neither,
}

impl Aggregate {
    /// The prefix lengths of the source and the destination (full length or 0).
    pub fn prefix_lengths(&self, v6: bool) -> (u8, u8) {
        let full = if v6 { 128 } else { 32 };
        match self.kept {
            Kept::Destination => (0, full),
            Kept::Source => (full, 0),
            Kept::Neither => (0, 0),
        }
    }
}

/// A Community ID v1: "1:" and the base64 of a SHA-1, 30 ASCII characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommunityId(pub [u8; 30]);

impl CommunityId {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// The text fields of an [`AppRecord`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Text {
    DnsQueryName,
    TlsServerName,
    /// The ALPN protocols offered, comma-separated.
    TlsAlpn,
    TlsJa4,
    HttpMethod,
    HttpHost,
    HttpTarget,
    HttpUserAgent,
}

impl Text {
    pub const ALL: [Text; 8] = [
        Text::DnsQueryName,
        Text::TlsServerName,
        Text::TlsAlpn,
        Text::TlsJa4,
        Text::HttpMethod,
        Text::HttpHost,
        Text::HttpTarget,
        Text::HttpUserAgent,
    ];
}

/// Application-layer fields of a flow (DNS, TLS or QUIC, HTTP), each present when seen: the
/// first value of each wins (a flow's first question, first request), as a flow cache fills
/// it packet by packet.
///
/// The texts share one string (one allocation for all of a flow's names, paths and
/// fingerprints), so a flow's fields cost two allocations whatever they hold.
#[derive(Clone, Debug, Default)]
pub struct AppRecord {
    text: String,
    /// Where each [`Text`] is in `text`: start and length + 1 (0: absent).
    spans: [(u32, u32); 8],
    pub dns_query_type: Option<u16>,
    pub dns_query_class: Option<u16>,
    pub dns_rcode: Option<u8>,
    pub dns_answers: Option<u16>,
    /// The highest TLS version the client offered.
    pub tls_client_version: Option<u16>,
    /// The version and cipher suite the server selected.
    pub tls_server_version: Option<u16>,
    pub tls_cipher_suite: Option<u16>,
    pub http_status: Option<u16>,
}

impl PartialEq for AppRecord {
    fn eq(&self, o: &AppRecord) -> bool {
        Text::ALL.iter().all(|&t| self.text(t) == o.text(t))
            && (
                self.dns_query_type,
                self.dns_query_class,
                self.dns_rcode,
                self.dns_answers,
                self.tls_client_version,
                self.tls_server_version,
                self.tls_cipher_suite,
                self.http_status,
            ) == (
                o.dns_query_type,
                o.dns_query_class,
                o.dns_rcode,
                o.dns_answers,
                o.tls_client_version,
                o.tls_server_version,
                o.tls_cipher_suite,
                o.http_status,
            )
    }
}

impl Eq for AppRecord {}

/// The responder's side of a biflow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reverse {
    pub packets: u64,
    pub octets: u64,
    pub tcp_flags: u16,
    pub class_of_service: u8,
    pub min_ttl: u8,
    pub max_ttl: u8,
    /// First and last packet, nanoseconds since the UNIX epoch (0 without packets).
    pub start_ns: u64,
    pub end_ns: u64,
    /// The capture interface the responder's first packet came in on.
    pub ingress_interface: u32,
}

impl AppRecord {
    /// A text field, when the flow had it.
    pub fn text(&self, t: Text) -> Option<&str> {
        let (start, len) = self.spans[t as usize];
        (len > 0).then(|| &self.text[start as usize..(start + len - 1) as usize])
    }

    /// Makes room for `n` more bytes of text (one allocation for all of a packet's fields).
    pub fn reserve_text(&mut self, n: usize) {
        self.text.reserve(n);
    }

    /// Sets a text field the record does not have yet (the first value wins).
    pub fn set_text(&mut self, t: Text, v: &str) {
        if self.spans[t as usize].1 == 0 {
            self.spans[t as usize] = (self.text.len() as u32, v.len() as u32 + 1);
            self.text.push_str(v);
        }
    }

    /// Sets a text field from bytes, replacing invalid UTF-8 (the parsers escape what is not
    /// printable, so this is rare).
    pub fn set_text_bytes(&mut self, t: Text, v: &[u8]) {
        match std::str::from_utf8(v) {
            Ok(s) => self.set_text(t, s),
            Err(_) => self.set_text(t, &String::from_utf8_lossy(v)),
        }
    }

    pub fn dns_query_name(&self) -> Option<&str> {
        self.text(Text::DnsQueryName)
    }
    pub fn tls_server_name(&self) -> Option<&str> {
        self.text(Text::TlsServerName)
    }
    pub fn tls_alpn(&self) -> Option<&str> {
        self.text(Text::TlsAlpn)
    }
    pub fn tls_ja4(&self) -> Option<&str> {
        self.text(Text::TlsJa4)
    }
    pub fn http_method(&self) -> Option<&str> {
        self.text(Text::HttpMethod)
    }
    pub fn http_host(&self) -> Option<&str> {
        self.text(Text::HttpHost)
    }
    pub fn http_target(&self) -> Option<&str> {
        self.text(Text::HttpTarget)
    }
    pub fn http_user_agent(&self) -> Option<&str> {
        self.text(Text::HttpUserAgent)
    }

    /// Fills each field this record lacks from `o` (a biflow's reverse side).
    pub fn fill_from(&mut self, o: &AppRecord) {
        for t in Text::ALL {
            if let Some(v) = o.text(t) {
                self.set_text(t, v);
            }
        }
        macro_rules! fill {
            ($($f:ident),*) => {$(
                if self.$f.is_none() {
                    self.$f = o.$f;
                }
            )*};
        }
        fill!(
            dns_query_type,
            dns_query_class,
            dns_rcode,
            dns_answers,
            tls_client_version,
            tls_server_version,
            tls_cipher_suite,
            http_status
        );
    }
}

impl FlowRecord {
    pub fn is_ipv6(&self) -> bool {
        self.src_addr.is_ipv6()
    }

    /// The reverse direction as a record of its own (for formats without biflows), when it
    /// saw packets.
    pub fn reverse_record(&self) -> Option<FlowRecord> {
        let r = self.reverse.filter(|r| r.packets > 0)?;
        let icmp = matches!(self.protocol, 1 | 58);
        Some(FlowRecord {
            src_addr: self.dst_addr,
            dst_addr: self.src_addr,
            src_port: if icmp { 0 } else { self.dst_port },
            dst_port: if icmp { self.dst_port } else { self.src_port },
            class_of_service: r.class_of_service,
            tcp_flags: r.tcp_flags,
            min_ttl: r.min_ttl,
            max_ttl: r.max_ttl,
            src_mac: self.dst_mac,
            dst_mac: self.src_mac,
            packets: r.packets,
            octets: r.octets,
            start_ns: r.start_ns,
            end_ns: r.end_ns,
            reverse: None,
            ingress_interface: r.ingress_interface,
            app: self.app.clone(),
            aggregate: None,
            ..*self
        })
    }
}
