//! Which encapsulations the decoder removes ([`Decap`], from `--decap` and the port options)
//! and the tunnel kinds' names and codes ([`TunnelKind`]). Settings, not header views: the
//! link layer (PPPoE) and the tunnel headers both read them.

pub const VXLAN_PORT: u16 = 4789;
/// VXLAN-GPE's port (draft-ietf-nvo3-vxlan-gpe); the same header, read by its P bit.
pub const VXLAN_GPE_PORT: u16 = 4790;
/// The port Linux's own VXLAN devices use unless told otherwise.
pub const LINUX_VXLAN_PORT: u16 = 8472;
pub const GENEVE_PORT: u16 = 6081;
pub const GTPU_PORT: u16 = 2152;

/// An encapsulation the decoder removes. The values are the `tunnelType` codes the probe
/// exports (README, "Tunnels"), and bit positions in [`Decap`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TunnelKind {
    #[default]
    None = 0,
    Gre = 1,
    ErspanI = 2,
    ErspanII = 3,
    ErspanIII = 4,
    Vxlan = 5,
    Geneve = 6,
    GtpU = 7,
    IpInIp = 8,
    Nvgre = 9,
    Pppoe = 10,
}

impl TunnelKind {
    pub const ALL: [TunnelKind; 10] = [
        TunnelKind::Gre,
        TunnelKind::ErspanI,
        TunnelKind::ErspanII,
        TunnelKind::ErspanIII,
        TunnelKind::Vxlan,
        TunnelKind::Geneve,
        TunnelKind::GtpU,
        TunnelKind::IpInIp,
        TunnelKind::Nvgre,
        TunnelKind::Pppoe,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TunnelKind::None => "none",
            TunnelKind::Gre => "gre",
            TunnelKind::ErspanI => "erspan1",
            TunnelKind::ErspanII => "erspan2",
            TunnelKind::ErspanIII => "erspan3",
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Geneve => "geneve",
            TunnelKind::GtpU => "gtpu",
            TunnelKind::IpInIp => "ipip",
            TunnelKind::Nvgre => "nvgre",
            TunnelKind::Pppoe => "pppoe",
        }
    }

    pub fn from_code(code: u8) -> TunnelKind {
        TunnelKind::ALL
            .into_iter()
            .find(|k| *k as u8 == code)
            .unwrap_or(TunnelKind::None)
    }

    fn bit(self) -> u16 {
        1 << (self as u8)
    }
}

/// Which encapsulations the decoder removes, and the UDP ports that announce them.
///
/// `Copy` and small: every worker holds one and reads it for every frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decap {
    enabled: u16,
    vxlan_ports: [u16; 4],
    geneve_ports: [u16; 4],
}

/// The `--decap` names, each with the kinds it enables.
pub const DECAP_NAMES: [(&str, &[TunnelKind]); 8] = [
    (
        "erspan",
        &[
            TunnelKind::ErspanI,
            TunnelKind::ErspanII,
            TunnelKind::ErspanIII,
        ],
    ),
    ("gre", &[TunnelKind::Gre, TunnelKind::Nvgre]),
    ("vxlan", &[TunnelKind::Vxlan]),
    ("geneve", &[TunnelKind::Geneve]),
    ("gtpu", &[TunnelKind::GtpU]),
    ("ipip", &[TunnelKind::IpInIp]),
    ("pppoe", &[TunnelKind::Pppoe]),
    ("all", &TunnelKind::ALL),
];

impl Default for Decap {
    /// Everything, on the standard ports plus Linux's VXLAN port.
    fn default() -> Self {
        Decap::all()
    }
}

impl Decap {
    pub fn all() -> Decap {
        let mut d = Decap::none();
        for k in TunnelKind::ALL {
            d.enable(k);
        }
        d
    }

    /// Outer headers only: the probe meters tunnels as the flows between their endpoints.
    pub fn none() -> Decap {
        Decap {
            enabled: 0,
            vxlan_ports: [VXLAN_PORT, LINUX_VXLAN_PORT, VXLAN_GPE_PORT, 0],
            geneve_ports: [GENEVE_PORT, 0, 0, 0],
        }
    }

    pub fn enable(&mut self, k: TunnelKind) {
        self.enabled |= k.bit();
    }

    #[inline(always)]
    pub fn is_enabled(&self, k: TunnelKind) -> bool {
        self.enabled & k.bit() != 0
    }

    pub fn is_none(&self) -> bool {
        self.enabled == 0
    }

    /// Parses `--decap`: `all`, `none`, or a comma-separated list of the names in
    /// [`DECAP_NAMES`].
    pub fn parse(list: &str) -> Result<Decap, String> {
        let mut d = Decap::none();
        if list.trim() == "none" {
            return Ok(d);
        }
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let kinds = DECAP_NAMES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, k)| *k)
                .ok_or_else(|| {
                    let names: Vec<&str> = DECAP_NAMES.iter().map(|(n, _)| *n).collect();
                    format!(
                        "unknown encapsulation '{name}': use 'none' or a comma-separated list of {}",
                        names.join(", ")
                    )
                })?;
            for k in kinds {
                d.enable(*k);
            }
        }
        Ok(d)
    }

    /// Adds UDP ports that carry VXLAN (besides 4789, 8472 and 4790); at most four in all.
    pub fn add_vxlan_port(&mut self, port: u16) -> Result<(), String> {
        add_port(&mut self.vxlan_ports, port, "--vxlan-port")
    }

    /// Adds UDP ports that carry Geneve (besides 6081); at most four in all.
    pub fn add_geneve_port(&mut self, port: u16) -> Result<(), String> {
        add_port(&mut self.geneve_ports, port, "--geneve-port")
    }

    /// Whether UDP port `port` announces VXLAN (or VXLAN-GPE).
    #[inline]
    pub fn is_vxlan_port(&self, port: u16) -> bool {
        self.vxlan_ports.contains(&port)
    }

    /// Whether UDP port `port` announces Geneve.
    #[inline]
    pub fn is_geneve_port(&self, port: u16) -> bool {
        self.geneve_ports.contains(&port)
    }

    pub fn vxlan_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.vxlan_ports.iter().copied().filter(|p| *p != 0)
    }

    pub fn geneve_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.geneve_ports.iter().copied().filter(|p| *p != 0)
    }

    /// The names of the enabled encapsulations, for the start-up line.
    pub fn describe(&self) -> String {
        if self.is_none() {
            return "none".into();
        }
        let names: Vec<&str> = TunnelKind::ALL
            .iter()
            .filter(|k| self.is_enabled(**k))
            .map(|k| k.name())
            .collect();
        names.join(",")
    }
}

fn add_port(ports: &mut [u16; 4], port: u16, flag: &str) -> Result<(), String> {
    if port == 0 {
        return Err(format!("{flag} 0 is not a port"));
    }
    if ports.contains(&port) {
        return Ok(());
    }
    match ports.iter_mut().find(|p| **p == 0) {
        Some(slot) => {
            *slot = port;
            Ok(())
        }
        None => Err(format!(
            "{flag}: at most four ports in all, the defaults included"
        )),
    }
}
