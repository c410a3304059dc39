//! Mode-based execute control at stage 2: which guest pages the guest's
//! kernel (EL1) and its user programs (EL0) may execute, as FEAT_XNX
//! expresses it in one stage-2 tree, and as a hypervisor emulates it with
//! a tree per executable class on a CPU without FEAT_XNX (Cortex-A53, A57,
//! A72). Pure logic,
//! host-tested: which execute bits a page gets, which tree a vCPU needs in
//! which mode, and what a stage-2 instruction abort means.
//!
//! # FEAT_XNX
//!
//! A stage-2 descriptor's `XN[1:0]` (bits 54:53) says, per translation
//! regime's EL, whether a fetch may execute: `00` both, `01` EL0 only,
//! `10` neither, `11` EL1 only ([`Exec::xnx_bits`]).
//!
//! # The emulation
//!
//! Without FEAT_XNX, `XN[0]` is RES0 and `XN[1]` forbids execution at every
//! EL, so one tree cannot tell the modes apart. The emulation keeps one
//! tree per executable class ([`Tree`]): the *kernel* tree executes only
//! kernel-only pages, the *user* tree only user-only pages, the *shared*
//! tree only pages both may execute ([`emulated_xn`]). Every other page is
//! execute-never in each. A fetch outside the loaded tree's class is an
//! instruction abort at stage 2, and the abort says which EL fetched
//! ([`on_exec_fault`]): if that mode may execute the page, the vCPU loads
//! the page's class's tree and retries; otherwise the guest gets the
//! permission fault FEAT_XNX would have given it. So the guest's own entry
//! into its kernel (its vector is kernel code) and its return to user code
//! each exit to the hypervisor once: the seed's switch of hierarchy on the
//! exit an escalation causes.
//!
//! # Where it is not exact
//!
//! A change of mode does not exit by itself: only a fetch outside the
//! loaded class does. So a mode change that lands on a page of the same
//! class as the code it left runs as the tree allows ([`matches_xnx`]
//! names the two cases; every other page, mode and loaded tree gives
//! FEAT_XNX's result):
//!
//! - an EL0 fetch of a kernel-only page with the kernel tree loaded: the
//!   kernel returns (`ERET`) straight to a kernel-only page that its own
//!   stage 1 lets EL0 execute. Linux never builds such a stage 1 (kernel
//!   text is privileged and `UXN`); closing it for any stage 1 needs a trap
//!   on `ERET` (FEAT_FGT's `HFGITR_EL2.ERET`), which these CPUs lack;
//! - an EL1 fetch of a user-only page with the user tree loaded: an
//!   exception from user code into a vector table in user-only pages.
//!   With `VBAR_EL1` in kernel code, the first fetch at EL1 always leaves
//!   the user tree; once the kernel's code is locked, the hypervisor checks
//!   at every entry into the user tree that `VBAR_EL1` is not in user-only
//!   memory, and stops the VM if it is.

/// How a VM with kernel integrity gets per-mode execute permission: the
/// `integrity` command-line word and `hv,kernel-integrity` property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// FEAT_XNX where the CPU has it, else the emulation (`integrity`,
    /// `hv,kernel-integrity` empty).
    Auto,
    /// The emulation even where the CPU has FEAT_XNX, to compare the two on
    /// one CPU (`integrity=emulate`, `hv,kernel-integrity = "emulate"`).
    Emulated,
}

/// What a page's fetches may do, per mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exec {
    /// The kernel and user programs.
    Both = 0,
    /// The kernel only (its code, once locked).
    KernelOnly = 1,
    /// User programs only.
    UserOnly = 2,
    /// Nobody (data).
    Neither = 3,
}

/// The guest's mode at a fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// EL1.
    Kernel,
    /// EL0.
    User,
}

/// Stage-2 `XN[1]` (bit 54): execute-never, at every EL without FEAT_XNX.
pub const XN1: u64 = 1 << 54;
/// Stage-2 `XN[0]` (bit 53): with FEAT_XNX, flips execute permission for
/// EL1 (`XN[1:0]` = `01`: EL0 only; `11`: EL1 only).
pub const XN0: u64 = 1 << 53;

impl Exec {
    pub const ALL: [Self; 4] = [Self::Both, Self::KernelOnly, Self::UserOnly, Self::Neither];

    /// Its number in the `INTEGRITY SET_EXEC` call.
    pub const fn code(self) -> u64 {
        self as u64
    }

    pub const fn from_code(code: u64) -> Option<Self> {
        match code {
            0 => Some(Self::Both),
            1 => Some(Self::KernelOnly),
            2 => Some(Self::UserOnly),
            3 => Some(Self::Neither),
            _ => None,
        }
    }

    /// Whether a fetch in `mode` may execute the page.
    pub const fn allows(self, mode: Mode) -> bool {
        matches!((self, mode), (Self::Both, _) | (Self::KernelOnly, Mode::Kernel) | (Self::UserOnly, Mode::User))
    }

    /// The descriptor's `XN[1:0]` with FEAT_XNX: `00` both, `01` EL0 only,
    /// `10` neither, `11` EL1 only.
    pub const fn xnx_bits(self) -> u64 {
        match self {
            Self::Both => 0,
            Self::UserOnly => XN0,
            Self::Neither => XN1,
            Self::KernelOnly => XN1 | XN0,
        }
    }

    /// What FEAT_XNX makes of stage-2 bits `xn` (bits 54:53 of a
    /// descriptor; the others ignored).
    pub const fn from_xnx_bits(xn: u64) -> Self {
        match (xn & XN1 != 0, xn & XN0 != 0) {
            (false, false) => Self::Both,
            (false, true) => Self::UserOnly,
            (true, false) => Self::Neither,
            (true, true) => Self::KernelOnly,
        }
    }
}

/// One of the emulation's trees: the class of pages it executes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Tree {
    /// Kernel-only pages.
    Kernel,
    /// User-only pages.
    User,
    /// Pages both modes may execute; where every vCPU starts.
    Shared,
}

impl Tree {
    pub const ALL: [Self; 3] = [Self::Kernel, Self::User, Self::Shared];

    /// The tree that executes pages of class `exec`, if any does.
    pub const fn of(exec: Exec) -> Option<Self> {
        match exec {
            Exec::KernelOnly => Some(Self::Kernel),
            Exec::UserOnly => Some(Self::User),
            Exec::Both => Some(Self::Shared),
            Exec::Neither => None,
        }
    }

    /// The class of pages it executes.
    pub const fn class(self) -> Exec {
        match self {
            Self::Kernel => Exec::KernelOnly,
            Self::User => Exec::UserOnly,
            Self::Shared => Exec::Both,
        }
    }

    /// Its place in a VM's array of trees.
    pub const fn index(self) -> usize {
        match self {
            Self::Kernel => 0,
            Self::User => 1,
            Self::Shared => 2,
        }
    }
}

/// The page's stage-2 execute bits in `tree`, without FEAT_XNX: `XN[1]`
/// unless the page is of the tree's class (`XN[0]` stays 0, RES0 there).
pub const fn emulated_xn(exec: Exec, tree: Tree) -> u64 {
    if exec as u8 == tree.class() as u8 {
        0
    } else {
        XN1
    }
}

/// What to do with an instruction abort at stage 2 (a permission fault on
/// a fetch) taken in `mode` while `tree` was loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The mode may execute the page, whose class another tree executes:
    /// load that one and retry the fetch.
    Switch(Tree),
    /// The loaded tree executes the page: a stale translation (the page's
    /// class just changed); retry after invalidating.
    Retry,
    /// The mode may not execute the page: the guest's own permission
    /// fault, as FEAT_XNX would raise it.
    Fault,
}

/// [`Verdict`] for a stage-2 instruction abort.
pub const fn on_exec_fault(exec: Exec, mode: Mode, tree: Tree) -> Verdict {
    if !exec.allows(mode) {
        return Verdict::Fault;
    }
    match Tree::of(exec) {
        Some(wanted) if wanted as u8 == tree as u8 => Verdict::Retry,
        Some(wanted) => Verdict::Switch(wanted),
        None => Verdict::Fault,
    }
}

/// Whether the emulation gives a fetch in `mode` of a page `exec` with
/// `tree` loaded the result FEAT_XNX gives: executes if and only if the
/// mode may. Not so for a page of the loaded tree's class that the
/// fetching mode may not execute (see the module doc).
pub const fn matches_xnx(exec: Exec, mode: Mode, tree: Tree) -> bool {
    // A fetch of the loaded class runs without an exit; any other goes
    // through `on_exec_fault`, which runs it exactly when the mode may.
    let runs = exec as u8 == tree.class() as u8 || exec.allows(mode);
    runs == exec.allows(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODES: [Mode; 2] = [Mode::Kernel, Mode::User];

    #[test]
    fn xnx_encoding_round_trips_and_means_what_the_architecture_says() {
        assert_eq!(Exec::Both.xnx_bits(), 0);
        assert_eq!(Exec::UserOnly.xnx_bits(), 1 << 53);
        assert_eq!(Exec::Neither.xnx_bits(), 1 << 54);
        assert_eq!(Exec::KernelOnly.xnx_bits(), 3 << 53);
        for exec in Exec::ALL {
            assert_eq!(Exec::from_xnx_bits(exec.xnx_bits() | 0x7ff), exec);
        }
        let table = [
            (Exec::Both, [true, true]),
            (Exec::KernelOnly, [true, false]),
            (Exec::UserOnly, [false, true]),
            (Exec::Neither, [false, false]),
        ];
        for (exec, [kernel, user]) in table {
            assert_eq!([exec.allows(Mode::Kernel), exec.allows(Mode::User)], [kernel, user], "{exec:?}");
        }
    }

    #[test]
    fn each_tree_executes_its_class_only() {
        for tree in Tree::ALL {
            for exec in Exec::ALL {
                assert_eq!(emulated_xn(exec, tree) == 0, exec == tree.class(), "{exec:?} in {tree:?}");
                // Never XN[0]: RES0 without FEAT_XNX.
                assert_eq!(emulated_xn(exec, tree) & XN0, 0);
            }
            assert_eq!(Tree::of(tree.class()), Some(tree));
        }
        assert_eq!(Tree::of(Exec::Neither), None);
        let indices: Vec<usize> = Tree::ALL.iter().map(|t| t.index()).collect();
        assert_eq!(indices, [0, 1, 2]);
    }

    #[test]
    fn a_fetch_fault_switches_when_the_mode_may_execute_and_faults_when_not() {
        // Entry into the kernel from user code: kernel text is not
        // executable in the user tree.
        assert_eq!(on_exec_fault(Exec::KernelOnly, Mode::Kernel, Tree::User), Verdict::Switch(Tree::Kernel));
        // The kernel's return to user code.
        assert_eq!(on_exec_fault(Exec::UserOnly, Mode::User, Tree::Kernel), Verdict::Switch(Tree::User));
        // Shared code, from either mode, out of either other tree.
        for mode in MODES {
            assert_eq!(on_exec_fault(Exec::Both, mode, Tree::Kernel), Verdict::Switch(Tree::Shared));
            assert_eq!(on_exec_fault(Exec::Both, mode, Tree::User), Verdict::Switch(Tree::Shared));
        }
        assert_eq!(on_exec_fault(Exec::KernelOnly, Mode::Kernel, Tree::Shared), Verdict::Switch(Tree::Kernel));
        assert_eq!(on_exec_fault(Exec::UserOnly, Mode::User, Tree::Shared), Verdict::Switch(Tree::User));
        // The kernel jumping into user code, user code into the kernel's,
        // anyone into data: the guest's fault, in every tree.
        for tree in Tree::ALL {
            assert_eq!(on_exec_fault(Exec::UserOnly, Mode::Kernel, tree), Verdict::Fault);
            assert_eq!(on_exec_fault(Exec::KernelOnly, Mode::User, tree), Verdict::Fault);
            for mode in MODES {
                assert_eq!(on_exec_fault(Exec::Neither, mode, tree), Verdict::Fault);
            }
        }
        // A fault the loaded tree should not have raised: stale.
        assert_eq!(on_exec_fault(Exec::Both, Mode::User, Tree::Shared), Verdict::Retry);
        assert_eq!(on_exec_fault(Exec::KernelOnly, Mode::Kernel, Tree::Kernel), Verdict::Retry);
    }

    #[test]
    fn the_emulation_matches_xnx_except_for_a_mode_change_within_a_class() {
        let mut differ = Vec::new();
        for exec in Exec::ALL {
            for mode in MODES {
                for tree in Tree::ALL {
                    if !matches_xnx(exec, mode, tree) {
                        differ.push((exec, mode, tree));
                    }
                }
            }
        }
        assert_eq!(differ, [(Exec::KernelOnly, Mode::User, Tree::Kernel), (Exec::UserOnly, Mode::Kernel, Tree::User)]);
        // From the shared tree, where code both modes run lives, every
        // fetch is exact: the guest-stub's matrix runs from there.
        for exec in Exec::ALL {
            for mode in MODES {
                assert!(matches_xnx(exec, mode, Tree::Shared), "{exec:?} {mode:?}");
            }
        }
    }

    #[test]
    fn codes_round_trip() {
        for exec in Exec::ALL {
            assert_eq!(Exec::from_code(exec.code()), Some(exec));
        }
        assert_eq!(Exec::from_code(4), None);
        assert_eq!(Exec::from_code(u64::MAX), None);
    }
}
