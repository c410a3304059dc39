//! Mode-based execute control at stage 2: which guest pages the guest's
//! kernel (EL1) and its user programs (EL0) may execute, as FEAT_XNX
//! expresses it in one stage-2 tree, and as a hypervisor emulates it with
//! two trees on a CPU without FEAT_XNX (Cortex-A53, A57, A72). Pure logic,
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
//! EL. Two trees map the same memory and differ only there: in the
//! *kernel* tree a page is executable if EL1 may execute it, in the *user*
//! tree if EL0 may ([`emulated_xn`]). The vCPU runs in the tree of its
//! mode, and a fetch the loaded tree forbids is an instruction abort at
//! stage 2 ([`on_exec_fault`]): if the fetching mode may execute the page,
//! the mode changed under the tree (an exception entry into EL1 from user
//! code, a return to EL0 from the kernel) and the vCPU switches trees and
//! retries; otherwise the guest gets the permission fault FEAT_XNX would
//! have given it. Any exit the vCPU makes for another reason also brings
//! the tree in line with its mode ([`on_exit`]).
//!
//! # Where it is not exact
//!
//! Mode changes do not exit by themselves, so a fetch that the loaded
//! tree allows runs even when the tree is the other mode's. Two cases give
//! another result than FEAT_XNX ([`matches_xnx`] names them; every other
//! page, mode and loaded tree gives FEAT_XNX's):
//!
//! - an EL0 fetch of a kernel-only page in the kernel tree, after a return
//!   from EL1, until the vCPU's next exit. It takes a stage 1 that lets EL0
//!   fetch kernel code, which Linux never builds (its text is privileged
//!   and `UXN`); closing it for any stage 1 needs a trap on `ERET`
//!   (FEAT_FGT's `HFGITR_EL2.ERET`), which these CPUs lack;
//! - an EL1 fetch of a user-only page in the user tree. An exception from
//!   EL0 enters EL1 at its vector, so this takes a vector table in a page
//!   user programs may execute: with `VBAR_EL1` in kernel-only pages the
//!   first fetch at EL1 always switches trees, which is what makes the
//!   kernel's own entry the seed's "exit on escalation".

/// What a page's fetches may do, per mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exec {
    /// The kernel and user programs.
    Both,
    /// The kernel only (its code, once locked).
    KernelOnly,
    /// User programs only.
    UserOnly,
    /// Nobody (data).
    Neither,
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

/// One of the emulation's two trees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tree {
    /// Executable: what the kernel may execute.
    Kernel,
    /// Executable: what user programs may execute.
    User,
}

impl Tree {
    /// The tree a vCPU in `mode` runs in.
    pub const fn of(mode: Mode) -> Self {
        match mode {
            Mode::Kernel => Self::Kernel,
            Mode::User => Self::User,
        }
    }

    /// The mode whose fetches the tree's execute bits are for.
    pub const fn mode(self) -> Mode {
        match self {
            Self::Kernel => Mode::Kernel,
            Self::User => Mode::User,
        }
    }
}

/// The page's stage-2 execute bits in `tree`, without FEAT_XNX: `XN[1]`
/// unless the tree's mode may execute it (`XN[0]` stays 0, RES0 there).
pub const fn emulated_xn(exec: Exec, tree: Tree) -> u64 {
    if exec.allows(tree.mode()) {
        0
    } else {
        XN1
    }
}

/// What to do with an instruction abort at stage 2 (a permission fault on
/// a fetch) taken in `mode` while `tree` was loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The mode may execute the page but the loaded tree is the other
    /// mode's: load this one and retry the fetch.
    Switch(Tree),
    /// The loaded tree allows the fetch: a stale translation (another CPU
    /// changed the tree); retry after invalidating.
    Retry,
    /// The mode may not execute the page: the guest's own permission
    /// fault, as FEAT_XNX would raise it.
    Fault,
}

/// [`Verdict`] for a stage-2 instruction abort.
pub const fn on_exec_fault(exec: Exec, mode: Mode, tree: Tree) -> Verdict {
    if !exec.allows(mode) {
        Verdict::Fault
    } else if exec.allows(tree.mode()) {
        Verdict::Retry
    } else {
        Verdict::Switch(Tree::of(mode))
    }
}

/// At any other exit: the tree the vCPU's mode needs, if not the loaded
/// one.
pub const fn on_exit(mode: Mode, tree: Tree) -> Option<Tree> {
    let wanted = Tree::of(mode);
    if matches!((wanted, tree), (Tree::Kernel, Tree::Kernel) | (Tree::User, Tree::User)) {
        None
    } else {
        Some(wanted)
    }
}

/// Whether the emulation gives a fetch in `mode` of a page `exec` with
/// `tree` loaded the result FEAT_XNX gives: executes if and only if the
/// mode may. Not so for a page the loaded tree's mode may execute and the
/// fetching mode may not (see the module doc).
pub const fn matches_xnx(exec: Exec, mode: Mode, tree: Tree) -> bool {
    // Under the emulation a fetch runs if the loaded tree allows it, and
    // otherwise, after the switch, if the mode may.
    let runs = exec.allows(tree.mode()) || exec.allows(mode);
    runs == exec.allows(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODES: [Mode; 2] = [Mode::Kernel, Mode::User];
    const TREES: [Tree; 2] = [Tree::Kernel, Tree::User];

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
    fn each_tree_executes_what_its_mode_may() {
        for exec in Exec::ALL {
            assert_eq!(emulated_xn(exec, Tree::Kernel) == 0, exec.allows(Mode::Kernel), "{exec:?}");
            assert_eq!(emulated_xn(exec, Tree::User) == 0, exec.allows(Mode::User), "{exec:?}");
            // Never XN[0]: RES0 without FEAT_XNX.
            assert_eq!(emulated_xn(exec, Tree::Kernel) & XN0, 0);
            assert_eq!(emulated_xn(exec, Tree::User) & XN0, 0);
        }
    }

    #[test]
    fn a_fetch_fault_switches_when_the_mode_may_execute_and_faults_when_not() {
        // Entry into the kernel from user code: kernel text is not
        // executable in the user tree.
        assert_eq!(on_exec_fault(Exec::KernelOnly, Mode::Kernel, Tree::User), Verdict::Switch(Tree::Kernel));
        // The kernel's return to user code: user pages are not executable
        // in the kernel tree.
        assert_eq!(on_exec_fault(Exec::UserOnly, Mode::User, Tree::Kernel), Verdict::Switch(Tree::User));
        // The kernel jumping into user code, user code into the kernel's,
        // anyone into data: the guest's fault, in either tree.
        for tree in TREES {
            assert_eq!(on_exec_fault(Exec::UserOnly, Mode::Kernel, tree), Verdict::Fault);
            assert_eq!(on_exec_fault(Exec::KernelOnly, Mode::User, tree), Verdict::Fault);
            for mode in MODES {
                assert_eq!(on_exec_fault(Exec::Neither, mode, tree), Verdict::Fault);
            }
        }
        // A fault the loaded tree should not have raised: stale.
        assert_eq!(on_exec_fault(Exec::Both, Mode::User, Tree::Kernel), Verdict::Retry);
        assert_eq!(on_exec_fault(Exec::KernelOnly, Mode::Kernel, Tree::Kernel), Verdict::Retry);
    }

    #[test]
    fn exits_bring_the_tree_in_line_with_the_mode() {
        assert_eq!(on_exit(Mode::User, Tree::Kernel), Some(Tree::User));
        assert_eq!(on_exit(Mode::Kernel, Tree::User), Some(Tree::Kernel));
        assert_eq!(on_exit(Mode::User, Tree::User), None);
        assert_eq!(on_exit(Mode::Kernel, Tree::Kernel), None);
    }

    #[test]
    fn the_emulation_matches_xnx_but_where_the_other_modes_tree_allows_more() {
        let mut differ = Vec::new();
        for exec in Exec::ALL {
            for mode in MODES {
                for tree in TREES {
                    if !matches_xnx(exec, mode, tree) {
                        differ.push((exec, mode, tree));
                    }
                }
            }
        }
        assert_eq!(differ, [(Exec::KernelOnly, Mode::User, Tree::Kernel), (Exec::UserOnly, Mode::Kernel, Tree::User)]);
        // In its own mode's tree, every fetch is exact.
        for exec in Exec::ALL {
            for mode in MODES {
                assert!(matches_xnx(exec, mode, Tree::of(mode)), "{exec:?} {mode:?}");
            }
        }
    }
}
