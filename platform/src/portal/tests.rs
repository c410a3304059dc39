use super::*;

const DOORBELL_AND_DATA: [u32; 2] = [0b11, 0b01];

fn model() -> PortalModel {
    PortalModel::new(3, DOORBELL_AND_DATA)
}

#[test]
fn identity_and_rights_read_back() {
    let m = model();
    assert_eq!(m.read(0, reg::ID, 4, PeerState::Running), 0x504f_0003);
    assert_eq!(m.read(1, reg::ID, 4, PeerState::Running), 0x504f_0103);
    assert_eq!(m.read(1, reg::ID + 2, 2, PeerState::Running), 0x504f);
    assert_eq!(m.read(0, reg::ALLOWED, 4, PeerState::Off), 0b11);
    assert_eq!(m.read(0, reg::PEER_ALLOWED, 4, PeerState::Off), 0b01);
    assert_eq!(m.read(1, reg::PEER_STATE, 4, PeerState::Stopping), 2);
    assert_eq!(m.read(0, reg::RESULT, 4, PeerState::Running), Outcome::None as u64);
    // Unused offsets read 0, and a read across a register's end reads 0.
    assert_eq!(m.read(0, 0x3c, 4, PeerState::Running), 0);
    assert_eq!(m.read(0, 0xffc, 4, PeerState::Running), 0);
    assert_eq!(m.read(0, reg::ID + 2, 4, PeerState::Running), 0);
}

#[test]
fn a_doorbell_reaches_the_peer_with_its_argument() {
    let mut m = model();
    assert_eq!(m.write(0, reg::ARGUMENT, 8, 0x1122_3344_5566_7788, true), Effect::default());
    assert_eq!(m.read(0, reg::ARGUMENT + 4, 4, PeerState::Running), 0x1122_3344);
    let effect = m.write(0, reg::REQUEST, 4, 1, true);
    assert_eq!(effect.level_changed, [false, true]);
    assert_eq!(m.read(0, reg::RESULT, 4, PeerState::Running), Outcome::Delivered as u64);
    assert!(m.level(1) && !m.level(0));
    assert_eq!(m.read(1, reg::INT_STATUS, 4, PeerState::Running), 0b10);
    assert_eq!(m.read(1, reg::RECEIVED_ARG + 8, 8, PeerState::Running), 0x1122_3344_5566_7788);
    assert_eq!(m.read(1, reg::RECEIVED_ARG + 12, 4, PeerState::Running), 0x1122_3344);
    // The doorbell register carries no argument.
    m.write(0, reg::DOORBELL, 4, 1, true);
    assert_eq!(m.read(1, reg::RECEIVED_ARG + 8, 8, PeerState::Running), 0);
    assert_eq!(m.counters(0), Counters { sent: 2, ..Counters::default() });
    assert_eq!(m.counters(1), Counters { received: 2, ..Counters::default() });
    // Acknowledging clears only the bits written.
    m.write(1, reg::INT_STATUS, 4, 0b01, true);
    assert!(m.level(1));
    assert_eq!(m.write(1, reg::INT_STATUS, 4, 0b10, true).level_changed, [false, true]);
    assert!(!m.level(1));
}

#[test]
fn refused_requests_never_reach_the_peer() {
    let mut m = model();
    // End 1 may request operation 0 only.
    for (op, outcome) in [
        (1, Outcome::Refused),
        (31, Outcome::Refused),
        (32, Outcome::NoSuchOperation),
        (u32::MAX, Outcome::NoSuchOperation),
    ] {
        m.write(1, reg::ARGUMENT, 8, 0xdead, true);
        assert_eq!(m.write(1, reg::REQUEST, 4, u64::from(op), true), Effect::default());
        assert_eq!(m.read(1, reg::RESULT, 4, PeerState::Running), outcome as u64, "operation {op}");
    }
    assert_eq!(m.counters(1), Counters { refused: 4, ..Counters::default() });
    assert_eq!(m.read(1, reg::REFUSED, 4, PeerState::Running), 4);
    assert!(!m.level(0));
    assert_eq!(m.read(0, reg::INT_STATUS, 4, PeerState::Running), 0);
    assert_eq!(m.counters(0), Counters::default());
    assert_eq!(m.read(0, reg::RECEIVED_ARG + 8, 8, PeerState::Running), 0);
}

#[test]
fn a_stopped_peer_gets_nothing_and_the_requester_is_told() {
    let mut m = model();
    m.write(0, reg::DOORBELL, 4, 0, false);
    assert_eq!(m.read(0, reg::RESULT, 4, PeerState::Off), Outcome::PeerDown as u64);
    assert_eq!(m.counters(0), Counters { peer_down: 1, ..Counters::default() });
    assert!(!m.level(1));
    // A refusal is a refusal whatever the peer's state.
    m.write(0, reg::DOORBELL, 4, 2, false);
    assert_eq!(m.read(0, reg::RESULT, 4, PeerState::Off), Outcome::Refused as u64);
}

#[test]
fn state_changes_and_resets() {
    let mut m = model();
    m.write(0, reg::DOORBELL, 4, 0, true);
    assert_eq!(m.peer_changed(0).level_changed, [false, true]);
    assert_eq!(m.read(1, reg::EVENTS, 4, PeerState::Running), u64::from(EVENT_PEER_STATE));
    m.write(1, reg::INT_STATUS, 4, u64::from(u32::MAX), true);
    assert!(m.level(1), "EVENTS still set");
    m.write(1, reg::EVENTS, 4, u64::from(EVENT_PEER_STATE), true);
    assert!(!m.level(1));
    m.write(1, reg::DOORBELL, 4, 0, true);
    assert!(m.level(0));
    // End 0 restarts: its registers start afresh, its record stays.
    m.write(0, reg::ARGUMENT, 8, 5, true);
    m.reset_end(0);
    assert!(!m.level(0));
    assert_eq!(m.read(0, reg::ARGUMENT, 8, PeerState::Running), 0);
    assert_eq!(m.read(0, reg::RESULT, 4, PeerState::Running), 0);
    assert_eq!(m.counters(0), Counters { sent: 1, received: 1, ..Counters::default() });
}

#[test]
fn partial_writes_only_where_the_layout_allows_them() {
    let mut m = model();
    m.write(0, reg::ARGUMENT, 4, 0xaaaa_bbbb, true);
    m.write(0, reg::ARGUMENT + 4, 4, 0xcccc_dddd, true);
    assert_eq!(m.read(0, reg::ARGUMENT, 8, PeerState::Running), 0xcccc_dddd_aaaa_bbbb);
    // A byte or halfword write to REQUEST is not a request.
    m.write(0, reg::REQUEST, 1, 0, true);
    m.write(0, reg::DOORBELL, 2, 0, true);
    m.write(0, reg::ARGUMENT, 2, 0, true);
    assert_eq!(m.counters(0), Counters::default());
    assert_eq!(m.read(0, reg::ARGUMENT, 8, PeerState::Running), 0xcccc_dddd_aaaa_bbbb);
    // Read-only registers ignore writes.
    m.write(0, reg::SENT, 4, 7, true);
    m.write(0, reg::ID, 4, 7, true);
    assert_eq!(m.read(0, reg::SENT, 4, PeerState::Running), 0);
    assert_eq!(m.read(0, reg::ID, 4, PeerState::Running), 0x504f_0003);
}

#[test]
fn counters_print_and_parse() {
    let c = Counters { sent: 10, refused: 3, peer_down: 1, received: 11 };
    let text = c.to_string();
    assert_eq!(text, "sent 10, refused 3, peer down 1, received 11");
    assert_eq!(Counters::parse(&text), Some(c));
    assert_eq!(Counters::parse("sent 10, refused 3, peer down 1"), None);
    assert_eq!(Counters::parse("sent 10, refused 3, peer down 1, received 11, x 2"), None);
    assert_eq!(Counters::parse("sent x, refused 3, peer down 1, received 11"), None);
}

proptest::proptest! {
    /// Whatever an end writes, the peer only ever sees operations this end
    /// may request, and every request is counted exactly once.
    #[test]
    fn only_allowed_operations_are_delivered(
        allowed in proptest::array::uniform2(proptest::num::u32::ANY),
        writes in proptest::collection::vec((0usize..2, 0u64..0x210, 1u8..9, proptest::num::u64::ANY, proptest::bool::ANY), 0..64),
    ) {
        let mut m = PortalModel::new(0, allowed);
        for (end, offset, size, value, running) in writes {
            let before = m.counters(end);
            let peer_status = m.read(1 - end, reg::INT_STATUS, 4, PeerState::Running) as u32;
            m.write(end, offset, size, value, running);
            let after = m.counters(end);
            let new_bits = (m.read(1 - end, reg::INT_STATUS, 4, PeerState::Running) as u32) & !peer_status;
            proptest::prop_assert_eq!(new_bits & !allowed[end], 0);
            let counted = (after.sent - before.sent) + (after.refused - before.refused) + (after.peer_down - before.peer_down);
            let is_request = size == 4 && (offset == reg::REQUEST || offset == reg::DOORBELL);
            proptest::prop_assert_eq!(counted, u32::from(is_request));
        }
    }
}

#[test]
fn bench_reports_print_and_parse() {
    let r = BenchReport {
        end: 0,
        rounds: 101,
        total: 505_000,
        guest: 1_000,
        median: 5_000,
        min: 4_900,
        max: 7_000,
        refused: 800,
    };
    let line = format!("pa| guest-stub: {r}");
    assert_eq!(BenchReport::find(&line), Some(r));
    assert_eq!(BenchReport::find("portal bench: end 0 rounds 1 total 2"), None);
    assert_eq!(BenchReport::find(&format!("{r} extra")), None);
}
