//! The IANA information elements we export, named as IANA spells them
//! (<https://www.iana.org/assignments/ipfix/ipfix.xhtml>).

/// An information element identifier with the length we encode it at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub id: u16,
    pub length: u16,
}

const fn f(id: u16, length: u16) -> FieldSpec {
    FieldSpec { id, length }
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
pub const VLAN_ID: FieldSpec = f(58, 2);
pub const IP_VERSION: FieldSpec = f(60, 1);
pub const MPLS_TOP_LABEL_STACK_SECTION: FieldSpec = f(70, 3);
pub const DESTINATION_MAC_ADDRESS: FieldSpec = f(80, 6);
pub const FLOW_END_REASON: FieldSpec = f(136, 1);
pub const ICMP_TYPE_CODE_IPV6: FieldSpec = f(139, 2);
pub const FLOW_START_MILLISECONDS: FieldSpec = f(152, 8);
pub const FLOW_END_MILLISECONDS: FieldSpec = f(153, 8);
pub const FLOW_START_NANOSECONDS: FieldSpec = f(156, 8);
pub const FLOW_END_NANOSECONDS: FieldSpec = f(157, 8);
pub const DOT1Q_CUSTOMER_VLAN_ID: FieldSpec = f(245, 2);
