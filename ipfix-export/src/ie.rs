//! The IANA information elements we export, named as IANA spells them
//! (<https://www.iana.org/assignments/ipfix/ipfix.xhtml>).

/// An information element identifier with the length we encode it at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub id: u16,
    pub length: u16,
    /// Private enterprise number; 0 for IANA elements.
    pub pen: u32,
}

impl FieldSpec {
    /// Bytes of this field's specifier in a template record (RFC 7011 §3.2): 4, or 8 with an
    /// enterprise number.
    pub const fn specifier_len(&self) -> usize {
        if self.pen == 0 {
            4
        } else {
            8
        }
    }

    /// Writes the field specifier; returns its length.
    pub fn write_specifier(&self, out: &mut [u8]) -> usize {
        let id = if self.pen == 0 {
            self.id
        } else {
            self.id | 0x8000
        };
        out[0..2].copy_from_slice(&id.to_be_bytes());
        out[2..4].copy_from_slice(&self.length.to_be_bytes());
        if self.pen != 0 {
            out[4..8].copy_from_slice(&self.pen.to_be_bytes());
        }
        self.specifier_len()
    }
}

pub(crate) const fn f(id: u16, length: u16) -> FieldSpec {
    FieldSpec { id, length, pen: 0 }
}

/// The enterprise number RFC 5103 reserves for reverse information elements.
pub const REVERSE_PEN: u32 = 29305;

/// The reverse-direction twin of an IANA element (RFC 5103 §6.1).
const fn reverse(e: FieldSpec) -> FieldSpec {
    FieldSpec {
        id: e.id,
        length: e.length,
        pen: REVERSE_PEN,
    }
}

pub const OCTET_DELTA_COUNT: FieldSpec = f(1, 8);
pub const PACKET_DELTA_COUNT: FieldSpec = f(2, 8);
pub const PROTOCOL_IDENTIFIER: FieldSpec = f(4, 1);
pub const IP_CLASS_OF_SERVICE: FieldSpec = f(5, 1);
/// RFC 7125: tcpControlBits is 16 bits wide (flags plus NS/CWR/ECE in the high bits).
pub const TCP_CONTROL_BITS: FieldSpec = f(6, 2);
pub const SOURCE_TRANSPORT_PORT: FieldSpec = f(7, 2);
pub const SOURCE_IPV4_ADDRESS: FieldSpec = f(8, 4);
pub const DESTINATION_TRANSPORT_PORT: FieldSpec = f(11, 2);
pub const DESTINATION_IPV4_ADDRESS: FieldSpec = f(12, 4);
pub const SOURCE_IPV6_ADDRESS: FieldSpec = f(27, 16);
pub const DESTINATION_IPV6_ADDRESS: FieldSpec = f(28, 16);
pub const ICMP_TYPE_CODE_IPV4: FieldSpec = f(32, 2);
pub const MINIMUM_TTL: FieldSpec = f(52, 1);
pub const MAXIMUM_TTL: FieldSpec = f(53, 1);
pub const SOURCE_MAC_ADDRESS: FieldSpec = f(56, 6);
/// ingressInterface: the ifindex of the capture interface (0: unknown, a capture file).
pub const INGRESS_INTERFACE: FieldSpec = f(10, 4);
pub const VLAN_ID: FieldSpec = f(58, 2);
pub const IP_VERSION: FieldSpec = f(60, 1);
pub const MPLS_TOP_LABEL_STACK_SECTION: FieldSpec = f(70, 3);
pub const DESTINATION_MAC_ADDRESS: FieldSpec = f(80, 6);
pub const FLOW_END_REASON: FieldSpec = f(136, 1);

// Aggregated flows (RFC 7015, issue #28): the prefix of the side rolled away, and the counts.
/// deltaFlowCount (3): original flows in an aggregate (nfdump reads it as its flow count).
pub const DELTA_FLOW_COUNT: FieldSpec = f(3, 8);
pub const SOURCE_IPV4_PREFIX_LENGTH: FieldSpec = f(9, 1);
pub const DESTINATION_IPV4_PREFIX_LENGTH: FieldSpec = f(13, 1);
pub const SOURCE_IPV6_PREFIX_LENGTH: FieldSpec = f(29, 1);
pub const DESTINATION_IPV6_PREFIX_LENGTH: FieldSpec = f(30, 1);
pub const SOURCE_IPV4_PREFIX: FieldSpec = f(44, 4);
pub const DESTINATION_IPV4_PREFIX: FieldSpec = f(45, 4);
pub const SOURCE_IPV6_PREFIX: FieldSpec = f(170, 16);
pub const DESTINATION_IPV6_PREFIX: FieldSpec = f(171, 16);
pub const ORIGINAL_FLOWS_PRESENT: FieldSpec = f(375, 8);
pub const DISTINCT_COUNT_OF_SOURCE_IP_ADDRESS: FieldSpec = f(378, 8);
pub const DISTINCT_COUNT_OF_DESTINATION_IP_ADDRESS: FieldSpec = f(379, 8);
pub const ICMP_TYPE_CODE_IPV6: FieldSpec = f(139, 2);
pub const FLOW_START_MILLISECONDS: FieldSpec = f(152, 8);
pub const FLOW_END_MILLISECONDS: FieldSpec = f(153, 8);
pub const FLOW_START_NANOSECONDS: FieldSpec = f(156, 8);
pub const FLOW_END_NANOSECONDS: FieldSpec = f(157, 8);
/// dot1qVlanId (243): the outer tag's VLAN (the S-VLAN of a QinQ frame). IANA pairs
/// dot1qCustomerVlanId (245, the C-VLAN) with it; vlanId (58) carries the same outer VLAN for
/// collectors that read only that one (nfdump 1.7 maps 58 to its VLAN, ignores 243/245).
pub const DOT1Q_VLAN_ID: FieldSpec = f(243, 2);
pub const DOT1Q_CUSTOMER_VLAN_ID: FieldSpec = f(245, 2);
/// tunnelTechnology (289), a string; we send the probe's short name ("vxlan", "erspan3")
/// NUL-padded to eight octets, which tshark and nfdump read as the plain name.
pub const TUNNEL_TECHNOLOGY: FieldSpec = f(289, 8);
/// layer2SegmentId (351): 0x01 VXLAN or 0x02 NVGRE in the top octet over the 24-bit segment.
pub const LAYER2_SEGMENT_ID: FieldSpec = f(351, 8);

/// ntop's enterprise number; its elements are the ones nProbe exports and tshark names.
pub const NTOP_PEN: u32 = 35632;
/// ntop UPSTREAM_TUNNEL_ID (35632/106): "upstream tunnel identifier (e.g. GTP TEID, VXLAN
/// VNI)", which is exactly our tunnel id: VNI, GRE key, TEID or ERSPAN session id.
pub const NTOP_UPSTREAM_TUNNEL_ID: FieldSpec = FieldSpec {
    id: 106,
    length: 4,
    pen: NTOP_PEN,
};

/// The enterprise number of the probe's own elements: RFC 5612's number for documentation,
/// until the project registers its own (README, "Tunnels", lists them). IANA has no element
/// for a tunnel's kind as a number or for its outer endpoints.
pub const PROBE_PEN: u32 = 32473;
pub(crate) const fn probe_element(id: u16, length: u16) -> FieldSpec {
    FieldSpec {
        id,
        length,
        pen: PROBE_PEN,
    }
}
/// tunnelType (32473/1): the probe's tunnel code (1 GRE, 2-4 ERSPAN I-III, 5 VXLAN, 6 Geneve,
/// 7 GTP-U, 8 IP-in-IP, 9 NVGRE).
pub const TUNNEL_TYPE: FieldSpec = probe_element(1, 1);
/// tunnelSourceIPv4Address, tunnelDestinationIPv4Address (32473/2, /3) and the IPv6 pair
/// (32473/4, /5): the endpoints of the outermost tunnel.
pub const TUNNEL_SOURCE_IPV4_ADDRESS: FieldSpec = probe_element(2, 4);
pub const TUNNEL_DESTINATION_IPV4_ADDRESS: FieldSpec = probe_element(3, 4);
pub const TUNNEL_SOURCE_IPV6_ADDRESS: FieldSpec = probe_element(4, 16);
pub const TUNNEL_DESTINATION_IPV6_ADDRESS: FieldSpec = probe_element(5, 16);
/// tunnelKeyType (32473/6) and tunnelKey (32473/7): the segment that keys the flow, as the
/// tunnelType code of its layer and its VNI, VSID or GRE key (0 and 0: none).
pub const TUNNEL_KEY_TYPE: FieldSpec = probe_element(6, 1);
pub const TUNNEL_KEY: FieldSpec = probe_element(7, 4);

/// Tunnel elements of records whose tunnel has IPv4 endpoints, then IPv6 endpoints.
pub const TUNNEL_V4_FIELDS: [FieldSpec; 8] = [
    TUNNEL_TECHNOLOGY,
    TUNNEL_TYPE,
    NTOP_UPSTREAM_TUNNEL_ID,
    LAYER2_SEGMENT_ID,
    TUNNEL_KEY_TYPE,
    TUNNEL_KEY,
    TUNNEL_SOURCE_IPV4_ADDRESS,
    TUNNEL_DESTINATION_IPV4_ADDRESS,
];
pub const TUNNEL_V6_FIELDS: [FieldSpec; 8] = [
    TUNNEL_TECHNOLOGY,
    TUNNEL_TYPE,
    NTOP_UPSTREAM_TUNNEL_ID,
    LAYER2_SEGMENT_ID,
    TUNNEL_KEY_TYPE,
    TUNNEL_KEY,
    TUNNEL_SOURCE_IPV6_ADDRESS,
    TUNNEL_DESTINATION_IPV6_ADDRESS,
];

/// The reverse direction's counters, times, flags and TTLs, appended to biflow records.
pub const REVERSE_FIELDS: [FieldSpec; 9] = [
    reverse(PACKET_DELTA_COUNT),
    reverse(OCTET_DELTA_COUNT),
    reverse(TCP_CONTROL_BITS),
    reverse(IP_CLASS_OF_SERVICE),
    reverse(MINIMUM_TTL),
    reverse(MAXIMUM_TTL),
    reverse(FLOW_START_MILLISECONDS),
    reverse(FLOW_END_MILLISECONDS),
    reverse(INGRESS_INTERFACE),
];
