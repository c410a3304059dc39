//! What a device tree does not say about starting the secondary CPUs, by
//! the SoC its root `compatible` names: the one place in the board
//! description where register addresses come from a table instead of the
//! DTB, and why.
//!
//! A DTB says *that* a CPU is started through PSCI (`enable-method =
//! "psci"`), not how the firmware that implements PSCI gets it going:
//! that is the SoC's business. On QEMU `virt` (and any board like it) every
//! CPU leaves reset with the boot CPU and waits in the monitor's holding
//! pen ([`CpuRelease::AtReset`]). The Zynq UltraScale+ MPSoC holds APU
//! cores 1 to 3 in reset until someone releases them; on hardware that is
//! the PMU firmware, which is also why Linux's tree for the SoC has no node
//! for the two register blocks involved. The monitor does it itself, with
//! the SoC's documented registers ([`ZynqMpApu`]).
//!
//! Each entry is selected by a root `compatible` string and holds only what
//! that SoC's register reference fixes for every board built on it.

/// How the CPUs other than the boot CPU reach the monitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuRelease {
    /// They leave reset together with the boot CPU and wait for it.
    AtReset,
    /// Zynq UltraScale+ MPSoC (root `compatible` `xlnx,zynqmp`): held in
    /// reset until released through the APU and CRF_APB registers.
    ZynqMpApu(ZynqMpApu),
}

impl CpuRelease {
    /// The release method of the SoC whose root `compatible` strings
    /// `compatible` holds (NUL-separated, as in the DTB).
    pub(super) fn for_root(compatible: &[u8]) -> Self {
        if super::compatible_with(compatible, &[ZynqMpApu::COMPATIBLE]) {
            Self::ZynqMpApu(ZynqMpApu::REGISTERS)
        } else {
            Self::AtReset
        }
    }
}

/// The Zynq UltraScale+ MPSoC's APU reset control: the two register blocks
/// that start APU core `n` at an address of the firmware's choosing.
///
/// 1. `APU.RVBARADDRnL`/`RVBARADDRnH` hold the core's reset vector (bits
///    [31:2] and [39:32] of the address).
/// 2. Clearing `CRF_APB.RST_FPD_APU.ACPUn_RESET` (bit `n`) and
///    `ACPUn_PWRON_RESET` (bit `10 + n`) takes the core out of reset; it
///    starts at its reset vector, at EL3.
///
/// Addresses from the Zynq UltraScale+ register reference (UG1087, modules
/// `APU` and `CRF_APB`). QEMU's `xlnx-zcu102` models both
/// (`hw/misc/xlnx-zynqmp-apu-ctrl.c`: a write to RVBAR sets the CPU's
/// reset address; `hw/misc/xlnx-zynqmp-crf.c`: clearing `ACPUn_RESET` powers
/// CPU `n` on through a reset). On hardware the cores' power islands must
/// also be up, which the PMU firmware sees to before the APU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZynqMpApu {
    /// The `CRF_APB` block (FPD clock and reset control).
    pub crf_apb: u64,
    /// The `APU` block (APU control: reset vectors, power control).
    pub apu: u64,
}

impl ZynqMpApu {
    /// The root `compatible` of every Zynq UltraScale+ MPSoC board.
    pub const COMPATIBLE: &'static str = "xlnx,zynqmp";
    /// The SoC's register blocks (UG1087).
    pub const REGISTERS: Self = Self { crf_apb: 0xfd1a_0000, apu: 0xfd5c_0000 };
    /// APU cores on the SoC.
    pub const CORES: u64 = 4;
    /// `CRF_APB.RST_FPD_APU`.
    pub const RST_FPD_APU: u64 = 0x104;
    /// `APU.RVBARADDR0L`; core `n`'s pair is 8 bytes further on per core.
    pub const RVBARADDR0L: u64 = 0x40;

    /// The APU core number of the CPU with affinity `mpidr`: Aff0 within
    /// cluster 0, the only cluster the SoC has. `None` for any other MPIDR.
    pub const fn core(mpidr: u64) -> Option<u64> {
        if mpidr < Self::CORES {
            Some(mpidr)
        } else {
            None
        }
    }

    /// The two reset-vector register writes (address, value) that make core
    /// `core` start at `entry`: low word, then high word (`entry` bits
    /// [39:32]). `entry` must be 4-byte aligned.
    pub const fn rvbar_writes(&self, core: u64, entry: u64) -> [(u64, u32); 2] {
        let low = self.apu.wrapping_add(Self::RVBARADDR0L).wrapping_add(core.wrapping_mul(8));
        [(low, (entry & 0xffff_fffc) as u32), (low.wrapping_add(4), ((entry >> 32) & 0xff) as u32)]
    }

    /// The address of `CRF_APB.RST_FPD_APU`.
    pub const fn rst_fpd_apu(&self) -> u64 {
        self.crf_apb.wrapping_add(Self::RST_FPD_APU)
    }

    /// `RST_FPD_APU` with cores `cores` (a bit mask, bit `n` for core `n`)
    /// out of reset and every other bit as in `current`.
    pub const fn released(current: u32, cores: u32) -> u32 {
        let cores = cores & 0xf;
        current & !(cores | (cores << 10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_compatible_picks_the_method() {
        let zcu102 = b"xlnx,zynqmp-zcu102-rev1.0\0xlnx,zynqmp-zcu102\0xlnx,zynqmp\0";
        assert_eq!(CpuRelease::for_root(zcu102), CpuRelease::ZynqMpApu(ZynqMpApu::REGISTERS));
        assert_eq!(CpuRelease::for_root(b"linux,dummy-virt\0"), CpuRelease::AtReset);
        // A prefix is not a match.
        assert_eq!(CpuRelease::for_root(b"xlnx,zynqmp-zcu102\0"), CpuRelease::AtReset);
        assert_eq!(CpuRelease::for_root(b""), CpuRelease::AtReset);
    }

    #[test]
    fn zynqmp_registers_follow_ug1087() {
        let apu = ZynqMpApu::REGISTERS;
        assert_eq!(apu.rst_fpd_apu(), 0xfd1a_0104);
        assert_eq!(apu.rvbar_writes(0, 0xfffc_0000), [(0xfd5c_0040, 0xfffc_0000), (0xfd5c_0044, 0)]);
        assert_eq!(apu.rvbar_writes(3, 0x12_3456_789c), [(0xfd5c_0058, 0x3456_789c), (0xfd5c_005c, 0x12)]);
        // The reset value (every core and its power-on reset asserted, the
        // L2 too): releasing cores 1-3 leaves core 0's bits and the rest.
        assert_eq!(ZynqMpApu::released(0x3d0f, 0b1110), 0x0501);
        assert_eq!(ZynqMpApu::released(0x3d0f, 0b0010), 0x350d);
        assert_eq!(ZynqMpApu::released(0x3d0f, 0xffff_fff0), 0x3d0f, "only four cores");
    }

    #[test]
    fn only_cluster_zero_cores_are_apu_cores() {
        assert_eq!(ZynqMpApu::core(0), Some(0));
        assert_eq!(ZynqMpApu::core(3), Some(3));
        assert_eq!(ZynqMpApu::core(4), None);
        assert_eq!(ZynqMpApu::core(0x100), None);
    }
}
