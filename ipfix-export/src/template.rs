//! The fixed record layouts and their templates.
//!
//! Eight layouts cover every flow: IPv4 or IPv6, with or without nanosecond times, with ports
//! or (ICMP, ICMPv6) with the ICMP type and code. Each layout is a constant list of fields;
//! [`encode_record`] writes the fields in that order, and a unit test checks that the bytes
//! written equal the length the template announces, so the two cannot drift.
//!
//! Why ICMP flows have layouts of their own: the fourth field is destinationTransportPort for
//! port-carrying protocols and icmpTypeCodeIPv4/IPv6 for ICMP. A record carrying both crashes
//! pmacct's nfacctd 1.7.7 (Debian 12), and a port is meaningless for ICMP anyway. nfdump and
//! Wireshark read the type and code from either place.

use crate::ie::{self, FieldSpec};
use crate::record::{FlowRecord, TimePrecision};
use crate::{SET_HEADER_LEN, TEMPLATE_SET_ID};

/// One of the record layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    v6: bool,
    nanos: bool,
    icmp: bool,
    /// A biflow record: the reverse direction's elements follow (RFC 5103).
    bi: bool,
    /// The flow came through a tunnel: 1 with IPv4 endpoints, 2 with IPv6; its elements
    /// follow the flow's own (before the reverse ones).
    outer: u8,
    /// The application groups the record carries ([`crate::app::group`]), last of all; 0 for
    /// the 48 fixed layouts. Layouts with groups get template IDs from the encoder, in the
    /// order they are first used.
    pub(crate) app: u8,
    /// An aggregate's layout ([`crate::aggregate`]): 1 keeps the destination, 2 the source;
    /// 0 for every flow. Announced on first use, like the application layouts.
    agg: u8,
}

impl Layout {
    pub const ALL: [Layout; 48] = {
        let mut all = [Layout {
            v6: false,
            nanos: false,
            icmp: false,
            bi: false,
            outer: 0,
            app: 0,
            agg: 0,
        }; 48];
        let mut i = 0;
        while i < 48 {
            all[i] = Layout {
                v6: i & 1 != 0,
                nanos: i & 2 != 0,
                icmp: i & 4 != 0,
                bi: i & 8 != 0,
                outer: (i / 16) as u8,
                app: 0,
                agg: 0,
            };
            i += 1;
        }
        all
    };

    /// The layout of `rec`; every record of a biflow exporter is a biflow record (without a
    /// reverse direction, its reverse counters are zero, as RFC 5103 §5.3 allows).
    /// Without `tunnels` a tunnelled record is encoded in the plain layout (its inner flow).
    pub fn of(rec: &FlowRecord, biflow: bool, tunnels: bool) -> Layout {
        let agg = crate::aggregate::code_of(rec);
        if agg != 0 {
            return Layout {
                v6: rec.is_ipv6(),
                nanos: false,
                icmp: matches!(rec.protocol, 1 | 58),
                bi: false,
                outer: 0,
                app: 0,
                agg,
            };
        }
        Layout {
            v6: rec.is_ipv6(),
            nanos: rec.time_precision == TimePrecision::Nanos,
            icmp: matches!(rec.protocol, 1 | 58),
            // A biflow whose reverse direction never appeared leaves in the uniflow layout
            // (RFC 5103 lets uniflow and biflow records share a session): reverse elements of zero would
            // read as "reverse started on 1 January 1970".
            bi: biflow && rec.reverse.is_some_and(|r| r.packets > 0),
            outer: match rec.tunnel {
                _ if !tunnels => 0,
                None => 0,
                Some(t) if t.outer_src.is_ipv4() => 1,
                Some(_) => 2,
            },
            app: crate::app::groups_of(rec),
            agg: 0,
        }
    }

    /// Whether the layout is announced the first time a record uses it, with a template ID
    /// the encoder gives it (application fields, aggregates), rather than in the fixed set.
    pub fn announced_on_first_use(self) -> bool {
        self.app != 0 || self.agg != 0
    }

    /// This layout without application fields (its fixed part).
    pub fn without_app(self) -> Layout {
        Layout { app: 0, ..self }
    }

    /// The application groups the layout carries.
    pub fn app_groups(self) -> u8 {
        self.app
    }

    /// The layouts an exporter announces: the uniflow ones always (with biflows too, for
    /// flows whose reverse never appeared), the biflow ones when `biflow`, the tunnel ones
    /// when `tunnels`.
    pub fn announced(biflow: bool, tunnels: bool) -> impl Iterator<Item = Layout> {
        Layout::ALL
            .into_iter()
            .filter(move |l| (biflow || !l.bi) && (tunnels || l.outer == 0))
    }

    /// Template ID (256 and up are data templates, RFC 7011 §3.4.1): 256-259 with ports
    /// (IPv4, IPv6, IPv4 ns, IPv6 ns), 264-267 the same for ICMP, and 16 more for the biflow
    /// layouts (272-275, 280-283). 260-263 and 268 are the options templates. Tunnelled flows add 256
    /// (IPv4 endpoints: 512-539) or 512 (IPv6 endpoints: 768-795). Layouts with application
    /// fields are numbered by the encoder from [`FIRST_APP_TEMPLATE_ID`]; this is their fixed
    /// part's ID.
    pub fn template_id(self) -> u16 {
        256 + self.v6 as u16
            + 2 * self.nanos as u16
            + 8 * self.icmp as u16
            + 16 * self.bi as u16
            + 256 * self.outer as u16
    }

    pub fn from_template_id(id: u16) -> Option<Layout> {
        Layout::ALL.into_iter().find(|l| l.template_id() == id)
    }

    fn is_ipv6(self) -> bool {
        self.v6
    }

    fn has_nanos(self) -> bool {
        self.nanos
    }

    /// The fields of this layout, in wire order.
    pub fn fields(self) -> impl Iterator<Item = &'static FieldSpec> + Clone {
        // Three runs of fields, then the application ones: a flow's own fields, its tunnel's
        // and its reverse direction's; or an aggregate's three runs.
        let [base, tunnel, reverse] = if self.agg != 0 {
            crate::aggregate::fields(self.agg, self.v6, self.icmp)
        } else {
            let all: &'static [FieldSpec; 24] = match (self.v6, self.icmp) {
                (false, false) => &IPV4_FIELDS,
                (false, true) => &IPV4_ICMP_FIELDS,
                (true, false) => &IPV6_FIELDS,
                (true, true) => &IPV6_ICMP_FIELDS,
            };
            let base: &'static [FieldSpec] = if self.nanos {
                &all[..]
            } else {
                &all[..all.len() - 2]
            };
            let tunnel: &'static [FieldSpec] = match self.outer {
                0 => &[],
                1 => &ie::TUNNEL_V4_FIELDS,
                _ => &ie::TUNNEL_V6_FIELDS,
            };
            let reverse: &'static [FieldSpec] = if self.bi { &ie::REVERSE_FIELDS } else { &[] };
            [base, tunnel, reverse]
        };
        base.iter()
            .chain(tunnel)
            .chain(reverse)
            .chain(crate::app::fields(self.app))
    }

    /// Length of one data record in this layout without its application fields (all of it for
    /// the fixed layouts; the application fields vary in length).
    #[inline]
    pub fn record_len(self) -> usize {
        if self.agg != 0 {
            return crate::aggregate::record_len(self.v6);
        }
        let base = if self.v6 { 101 } else { 77 };
        let tunnel = match self.outer {
            0 => 0,
            1 => TUNNEL_LEN + 8,
            _ => TUNNEL_LEN + 32,
        };
        base + if self.nanos { 16 } else { 0 } + tunnel + if self.bi { REVERSE_LEN } else { 0 }
    }

    /// Length of this layout's template record (template ID, field count, field specifiers).
    pub fn template_record_len(self) -> usize {
        4 + self.fields().map(|f| f.specifier_len()).sum::<usize>()
    }

    /// Writes this layout's template record; returns its length.
    pub fn write_template_record(self, out: &mut [u8]) -> usize {
        self.write_template_record_as(self.template_id(), out)
    }

    /// Writes this layout's template record under template ID `id`; returns its length.
    pub fn write_template_record_as(self, id: u16, out: &mut [u8]) -> usize {
        let count = self.fields().count() as u16;
        out[0..2].copy_from_slice(&id.to_be_bytes());
        out[2..4].copy_from_slice(&count.to_be_bytes());
        let mut pos = 4;
        for field in self.fields() {
            pos += field.write_specifier(&mut out[pos..]);
        }
        pos
    }
}

/// The first template ID the encoder gives a layout with application fields (above every
/// fixed layout's and options template's).
pub const FIRST_APP_TEMPLATE_ID: u16 = 1024;

/// Bytes of the tunnel elements before the endpoints (name, type, id, segment, keying segment).
const TUNNEL_LEN: usize = 8 + 1 + 4 + 8 + 1 + 4;

/// The tunnelTechnology string of a tunnelType code.
fn tunnel_technology(kind: u8) -> [u8; 8] {
    let name: &[u8] = match kind {
        1 => b"gre",
        2 => b"erspan1",
        3 => b"erspan2",
        4 => b"erspan3",
        5 => b"vxlan",
        6 => b"geneve",
        7 => b"gtpu",
        8 => b"ipip",
        9 => b"nvgre",
        _ => b"unknown",
    };
    let mut out = [0u8; 8];
    out[..name.len()].copy_from_slice(name);
    out
}

/// Bytes of the reverse elements of a biflow record.
const REVERSE_LEN: usize = 8 + 8 + 2 + 1 + 1 + 1 + 8 + 8 + 4;

macro_rules! layout {
    ($src:expr, $dst:expr, $fourth:expr) => {
        [
            $src,
            $dst,
            ie::SOURCE_TRANSPORT_PORT,
            // destinationTransportPort, or the ICMP type and code (same length, same offset).
            $fourth,
            ie::PROTOCOL_IDENTIFIER,
            ie::IP_VERSION,
            ie::IP_CLASS_OF_SERVICE,
            ie::TCP_CONTROL_BITS,
            ie::MINIMUM_TTL,
            ie::MAXIMUM_TTL,
            ie::FLOW_END_REASON,
            ie::VLAN_ID,
            ie::DOT1Q_VLAN_ID,
            ie::DOT1Q_CUSTOMER_VLAN_ID,
            ie::MPLS_TOP_LABEL_STACK_SECTION,
            ie::SOURCE_MAC_ADDRESS,
            ie::DESTINATION_MAC_ADDRESS,
            ie::INGRESS_INTERFACE,
            ie::PACKET_DELTA_COUNT,
            ie::OCTET_DELTA_COUNT,
            ie::FLOW_START_MILLISECONDS,
            ie::FLOW_END_MILLISECONDS,
            // The last two are present only in the nanosecond layouts.
            ie::FLOW_START_NANOSECONDS,
            ie::FLOW_END_NANOSECONDS,
        ]
    };
}

const IPV4_FIELDS: [FieldSpec; 24] = layout!(
    ie::SOURCE_IPV4_ADDRESS,
    ie::DESTINATION_IPV4_ADDRESS,
    ie::DESTINATION_TRANSPORT_PORT
);
const IPV4_ICMP_FIELDS: [FieldSpec; 24] = layout!(
    ie::SOURCE_IPV4_ADDRESS,
    ie::DESTINATION_IPV4_ADDRESS,
    ie::ICMP_TYPE_CODE_IPV4
);
const IPV6_FIELDS: [FieldSpec; 24] = layout!(
    ie::SOURCE_IPV6_ADDRESS,
    ie::DESTINATION_IPV6_ADDRESS,
    ie::DESTINATION_TRANSPORT_PORT
);
const IPV6_ICMP_FIELDS: [FieldSpec; 24] = layout!(
    ie::SOURCE_IPV6_ADDRESS,
    ie::DESTINATION_IPV6_ADDRESS,
    ie::ICMP_TYPE_CODE_IPV6
);

/// Length of a template set announcing the layouts of a uniflow or a biflow exporter.
pub fn template_set_len(biflow: bool) -> usize {
    SET_HEADER_LEN
        + Layout::announced(biflow, false)
            .map(|l| l.template_record_len())
            .sum::<usize>()
}

/// Writes one template set announcing the layouts; returns the bytes written.
///
/// `out` must hold at least [`template_set_len`] bytes.
pub fn write_template_set(out: &mut [u8], biflow: bool) -> usize {
    let len = template_set_len(biflow);
    let out = &mut out[..len];
    out[0..2].copy_from_slice(&TEMPLATE_SET_ID.to_be_bytes());
    out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    let mut pos = SET_HEADER_LEN;
    for layout in Layout::announced(biflow, false) {
        pos += layout.write_template_record(&mut out[pos..]);
    }
    debug_assert_eq!(pos, len);
    len
}

/// Seconds between the NTP epoch (1900) and the UNIX epoch (1970).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// dateTimeNanoseconds (RFC 7011 §6.1.10): NTP seconds and a 2^-32 fraction.
fn ntp_timestamp(unix_ns: u64) -> u64 {
    let secs = unix_ns / 1_000_000_000 + NTP_UNIX_OFFSET_SECS;
    let nanos = unix_ns % 1_000_000_000;
    let frac = (nanos << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// A bounds-checked cursor over a record's bytes; the layout's length is checked once up front,
/// so the compiler can drop most per-field checks.
struct Cursor<'a> {
    out: &'a mut [u8],
    pos: usize,
}

impl Cursor<'_> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        self.out[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }
}

/// Encodes `rec` in `layout` into `out`, returning the bytes written ([`Layout::record_len`]):
/// every field but the application ones, which [`crate::app::encode`] appends.
///
/// `out` must hold at least `layout.record_len()` bytes. `layout` must be [`Layout::of`]`(rec, _)`.
#[inline]
pub fn encode_record(rec: &FlowRecord, layout: Layout, out: &mut [u8]) -> usize {
    if layout.agg != 0 {
        return crate::aggregate::encode(rec, layout.agg, layout.v6, layout.icmp, out);
    }
    let len = layout.record_len();
    let mut c = Cursor {
        out: &mut out[..len],
        pos: 0,
    };
    match (rec.src_addr, rec.dst_addr) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) if !layout.is_ipv6() => {
            c.put(&s.octets());
            c.put(&d.octets());
        }
        (s, d) => {
            c.put(&to_v6(s));
            c.put(&to_v6(d));
        }
    }
    c.put(&rec.src_port.to_be_bytes());
    let fourth = if layout.icmp {
        rec.icmp_type_code
    } else {
        rec.dst_port
    };
    c.put(&fourth.to_be_bytes());
    c.put(&[
        rec.protocol,
        if layout.is_ipv6() { 6 } else { 4 },
        rec.class_of_service,
    ]);
    c.put(&rec.tcp_flags.to_be_bytes());
    c.put(&[rec.min_ttl, rec.max_ttl, rec.end_reason as u8]);
    c.put(&rec.vlan_id.to_be_bytes());
    c.put(&rec.vlan_id.to_be_bytes());
    c.put(&rec.customer_vlan_id.to_be_bytes());
    c.put(&rec.mpls_top_label);
    c.put(&rec.src_mac);
    c.put(&rec.dst_mac);
    c.put(&rec.ingress_interface.to_be_bytes());
    c.put(&rec.packets.to_be_bytes());
    c.put(&rec.octets.to_be_bytes());
    c.put(&(rec.start_ns / 1_000_000).to_be_bytes());
    c.put(&(rec.end_ns / 1_000_000).to_be_bytes());
    if layout.has_nanos() {
        c.put(&ntp_timestamp(rec.start_ns).to_be_bytes());
        c.put(&ntp_timestamp(rec.end_ns).to_be_bytes());
    }
    if layout.outer != 0 {
        let t = rec
            .tunnel
            .expect("a tunnel layout is chosen only for a record with a tunnel");
        c.put(&tunnel_technology(t.kind));
        c.put(&[t.kind]);
        c.put(&t.id.to_be_bytes());
        c.put(&t.layer2_segment_id.to_be_bytes());
        c.put(&[t.key_kind]);
        c.put(&t.key.to_be_bytes());
        match (t.outer_src, t.outer_dst) {
            (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) if layout.outer == 1 => {
                c.put(&s.octets());
                c.put(&d.octets());
            }
            (s, d) => {
                c.put(&to_v6(s));
                c.put(&to_v6(d));
            }
        }
    }
    if layout.bi {
        let r = rec.reverse.unwrap_or_default();
        c.put(&r.packets.to_be_bytes());
        c.put(&r.octets.to_be_bytes());
        c.put(&r.tcp_flags.to_be_bytes());
        c.put(&[r.class_of_service, r.min_ttl, r.max_ttl]);
        c.put(&(r.start_ns / 1_000_000).to_be_bytes());
        c.put(&(r.end_ns / 1_000_000).to_be_bytes());
        c.put(&r.ingress_interface.to_be_bytes());
    }
    debug_assert_eq!(c.pos, len);
    len
}

fn to_v6(addr: std::net::IpAddr) -> [u8; 16] {
    match addr {
        std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(a) => a.octets(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::record::EndReason;

    pub(crate) fn sample(v6: bool, precision: TimePrecision) -> FlowRecord {
        let (src, dst) = if v6 {
            (
                "2001:db8::1".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
            )
        } else {
            (
                "192.0.2.1".parse().unwrap(),
                "198.51.100.7".parse().unwrap(),
            )
        };
        FlowRecord {
            src_addr: src,
            dst_addr: dst,
            src_port: 40000,
            dst_port: 443,
            protocol: 6,
            class_of_service: 0x28,
            tcp_flags: 0x1b,
            min_ttl: 60,
            max_ttl: 64,
            icmp_type_code: 0,
            vlan_id: 100,
            customer_vlan_id: 7,
            mpls_top_label: [0x01, 0x23, 0x41],
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            packets: 10,
            octets: 5400,
            start_ns: 1_700_000_000_123_456_789,
            end_ns: 1_700_000_001_987_654_321,
            end_reason: EndReason::IdleTimeout,
            time_precision: precision,
            reverse: None,
            tunnel: None,
            ingress_interface: 3,
            app: None,
            community_id: None,
            aggregate: None,
        }
    }

    #[test]
    fn written_length_matches_template_for_every_layout() {
        for v6 in [false, true] {
            for p in [TimePrecision::Micros, TimePrecision::Nanos] {
                for (bi, proto) in [(false, 6), (true, 6), (false, 1), (true, 58)] {
                    let mut rec = sample(v6, p);
                    rec.protocol = proto;
                    let layout = Layout::of(&rec, bi, false);
                    let mut buf = [0u8; 256];
                    assert_eq!(encode_record(&rec, layout, &mut buf), layout.record_len());
                    let from_fields: usize = layout.fields().map(|f| f.length as usize).sum();
                    assert_eq!(from_fields, layout.record_len(), "{layout:?}");
                }
            }
        }
    }

    #[test]
    fn tunnel_layouts_write_what_their_templates_announce() {
        for (v6, outer) in [
            (false, "192.0.2.9"),
            (true, "2001:db8::9"),
            (false, "2001:db8::9"),
        ] {
            let mut rec = sample(v6, TimePrecision::Micros);
            let o: std::net::IpAddr = outer.parse().unwrap();
            rec.tunnel = Some(crate::record::Tunnel {
                kind: 5,
                id: 4242,
                layer2_segment_id: (1 << 56) | 4242,
                key_kind: 5,
                key: 4242,
                outer_src: o,
                outer_dst: o,
            });
            for bi in [false, true] {
                let layout = Layout::of(&rec, bi, true);
                assert_eq!(layout.outer, if o.is_ipv4() { 1 } else { 2 });
                let mut buf = [0u8; 512];
                assert_eq!(encode_record(&rec, layout, &mut buf), layout.record_len());
                let from_fields: usize = layout.fields().map(|f| f.length as usize).sum();
                assert_eq!(from_fields, layout.record_len(), "{layout:?}");
                assert!(Layout::from_template_id(layout.template_id()) == Some(layout));
                let mut off = 0;
                for f in layout.fields() {
                    if f.id == 289 {
                        assert_eq!(&buf[off..off + 8], b"vxlan\0\0\0");
                    }
                    if f.id == 106 && f.pen == crate::ie::NTOP_PEN {
                        assert_eq!(&buf[off..off + 4], &4242u32.to_be_bytes());
                    }
                    off += f.length as usize;
                }
            }
            // An encoder without tunnel templates sends the inner flow in the plain layout.
            assert_eq!(Layout::of(&rec, false, false).outer, 0);
        }
        let ids: std::collections::HashSet<u16> =
            Layout::ALL.iter().map(|l| l.template_id()).collect();
        assert_eq!(ids.len(), Layout::ALL.len());
        let options: Vec<u16> = crate::options::announced(true).map(|t| t.id).collect();
        assert!(ids.iter().all(|id| !options.contains(id)), "{options:?}");
    }

    #[test]
    fn record_fields_land_at_template_offsets() {
        let rec = sample(false, TimePrecision::Nanos);
        let layout = Layout::of(&rec, false, false);
        let mut buf = [0u8; 256];
        encode_record(&rec, layout, &mut buf);
        // Walk the template and pick fields by id, as a collector would.
        let mut off = 0;
        let mut by_id = std::collections::HashMap::new();
        for f in layout.fields() {
            by_id.insert(f.id, &buf[off..off + f.length as usize]);
            off += f.length as usize;
        }
        assert_eq!(by_id[&8], &[192, 0, 2, 1]);
        assert_eq!(by_id[&11], &443u16.to_be_bytes());
        assert_eq!(by_id[&2], &10u64.to_be_bytes());
        assert_eq!(by_id[&152], &1_700_000_000_123u64.to_be_bytes());
        assert_eq!(by_id[&153], &1_700_000_001_987u64.to_be_bytes());
        let ntp = u64::from_be_bytes(by_id[&156].try_into().unwrap());
        assert_eq!(ntp >> 32, 1_700_000_000 + NTP_UNIX_OFFSET_SECS);
        // 0.123456789 s as a 2^-32 fraction, to within one unit.
        let frac = (ntp & 0xffff_ffff) as f64 / 4294967296.0;
        assert!((frac - 0.123456789).abs() < 1e-9);
        assert_eq!(by_id[&136], &[1]);
        assert_eq!(by_id[&58], &100u16.to_be_bytes());
        assert_eq!(
            by_id[&243],
            &100u16.to_be_bytes(),
            "dot1qVlanId: the outer (S-)VLAN"
        );
        assert_eq!(
            by_id[&245],
            &7u16.to_be_bytes(),
            "dot1qCustomerVlanId: the C-VLAN"
        );
    }

    #[test]
    fn template_set_is_self_consistent() {
        let mut buf = vec![0u8; template_set_len(false)];
        let n = write_template_set(&mut buf, false);
        assert_eq!(n, buf.len());
        assert_eq!(u16::from_be_bytes([buf[2], buf[3]]) as usize, n);
        assert_eq!(u16::from_be_bytes([buf[4], buf[5]]), 256);
        assert_eq!(u16::from_be_bytes([buf[6], buf[7]]), 22);
    }
}
