use super::*;

fn id(vm: u16, vcpu: u16) -> VcpuId {
    VcpuId { vm, vcpu }
}

fn entry(vm: u16, vruntime: u64, urgent: bool) -> Entry {
    Entry { id: id(vm, 0), vruntime, slice: 1000, urgent, seq: 0 }
}

#[test]
fn queue_runs_least_virtual_time_first_and_fifo_among_equals() {
    let mut q = RunQueue::new();
    q.push(entry(1, 500, false)).unwrap();
    q.push(entry(2, 100, false)).unwrap();
    q.push(entry(3, 100, false)).unwrap();
    assert_eq!(q.len(), 3);
    assert_eq!(q.pop().unwrap().id.vm, 2);
    assert_eq!(q.pop().unwrap().id.vm, 3);
    assert_eq!(q.pop().unwrap().id.vm, 1);
    assert!(q.pop().is_none());
    assert!(q.is_empty());
}

#[test]
fn queue_refuses_twice_and_when_full() {
    let mut q = RunQueue::new();
    q.push(entry(1, 0, false)).unwrap();
    assert_eq!(q.push(entry(1, 5, false)), Err(QueueError::Queued));
    for vm in 2..(MAX_QUEUED as u16 + 1) {
        q.push(entry(vm, 0, false)).unwrap();
    }
    assert_eq!(q.push(entry(999, 0, false)), Err(QueueError::Full));
    assert!(q.remove(id(1, 0)).is_some());
    assert!(q.remove(id(1, 0)).is_none());
    q.push(entry(999, 0, false)).unwrap();
}

#[test]
fn urgent_entry_gets_one_slice_of_credit() {
    let mut q = RunQueue::new();
    q.push(entry(1, 1500, false)).unwrap();
    q.push(entry(2, 2400, true)).unwrap();
    // 2400 - 1000 = 1400 < 1500.
    assert_eq!(q.best().unwrap().id.vm, 2);
    q.push(entry(3, 1300, false)).unwrap();
    assert_eq!(q.best().unwrap().id.vm, 3);
}

#[test]
fn weights_share_a_cpu_in_proportion() {
    // Simulates one CPU with two always-runnable vCPUs of weights 1 and 2
    // and 10-tick slices: each slice goes to the least virtual time.
    let weights = [1u32, 2];
    let mut vruntime = [0u64; 2];
    let mut ran = [0u64; 2];
    for _ in 0..3000 {
        let next = if vruntime[0] <= vruntime[1] { 0 } else { 1 };
        vruntime[next] = charge(vruntime[next], 10, weights[next]);
        ran[next] += 10;
    }
    assert_eq!(ran[0] + ran[1], 30_000);
    assert_eq!(ran[1], 2 * ran[0]);
}

#[test]
fn charge_scales_by_weight_and_saturates() {
    assert_eq!(charge(0, 100, 256), 100);
    assert_eq!(charge(0, 100, 512), 50);
    assert_eq!(charge(7, 100, 128), 207);
    assert_eq!(charge(0, 100, 0), 100 * 256);
    assert_eq!(charge(u64::MAX - 1, 100, 1), u64::MAX);
    assert_eq!(charge(0, u64::MAX, 1), u64::MAX);
}

#[test]
fn sleepers_keep_at_most_one_slice_of_credit() {
    assert_eq!(on_wake(100, 10_000, 1000), 9000);
    assert_eq!(on_wake(9500, 10_000, 1000), 9500);
    assert_eq!(on_wake(0, 500, 1000), 0);
}

#[test]
fn preemption_rules() {
    let running = Running { vruntime: 10_000, slice: 1000, latency_sensitive: false };
    // Ordinary: needs to be ahead by a quarter slice.
    assert!(!preempts(&entry(1, 9800, false), &running));
    assert!(preempts(&entry(1, 9700, false), &running));
    // Urgent: its credit counts, no margin.
    assert!(preempts(&entry(1, 10_900, true), &running));
    assert!(!preempts(&entry(1, 11_000, true), &running));
    // Never preempts another latency-sensitive vCPU on a wake-up.
    let sensitive = Running { latency_sensitive: true, ..running };
    assert!(!preempts(&entry(1, 0, true), &sensitive));
    assert!(preempts(&entry(1, 0, false), &sensitive));
}

#[test]
fn slice_end_yields_unless_strictly_ahead() {
    let running = Running { vruntime: 1000, slice: 100, latency_sensitive: false };
    assert!(yields_to(&entry(1, 1000, false), &running));
    assert!(!yields_to(&entry(1, 1001, false), &running));
}

#[test]
fn latency_buckets() {
    assert_eq!(bucket(0), 0);
    assert_eq!(bucket(999), 0);
    assert_eq!(bucket(1000), 1);
    assert_eq!(bucket(1999), 1);
    assert_eq!(bucket(2000), 2);
    assert_eq!(bucket(1_000_000), 10);
    assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    for ns in [0u64, 1500, 3000, 70_000, 900_000, 40_000_000] {
        let b = bucket(ns);
        assert!(bucket_floor_us(b) * 1000 <= ns, "{ns} in bucket {b}");
        if b + 1 < BUCKETS {
            assert!(ns < bucket_floor_us(b + 1) * 1000, "{ns} in bucket {b}");
        }
    }
}

#[test]
fn percentiles() {
    assert_eq!(percentile_bucket(&[0; BUCKETS], 500), None);
    let mut counts = [0u64; BUCKETS];
    counts[2] = 3;
    counts[5] = 1;
    assert_eq!(percentile_bucket(&counts, 500), Some(2));
    assert_eq!(percentile_bucket(&counts, 750), Some(2));
    assert_eq!(percentile_bucket(&counts, 1000), Some(5));
    assert_eq!(percentile_bucket(&counts, 0), Some(2));
}

#[test]
fn figures_read_back_what_they_print() {
    let mut latency = [0u64; BUCKETS];
    latency[3] = 7;
    latency[15] = 1;
    let figures = Figures { run_us: 1_234_567, wait_us: 89, switches: 12, wakeups: 8, latency, worst_us: 40_000 };
    let text = std::format!("{figures}");
    assert_eq!(Figures::parse(&text), Some(figures));
    assert_eq!(figures.median_bucket(), Some(3));
    assert_eq!(Figures::parse("run 1 us"), None);
    assert_eq!(Figures::parse(&std::format!("{text} 9")), None);
    assert_eq!(Figures::parse(&text.replace("wait", "wiat")), None);
}

#[test]
fn switch_cost_reads_back() {
    let cost = SwitchCost { count: 17, min_ns: 1234, mean_ns: 2345 };
    let text = std::format!("{cost}");
    assert_eq!(SwitchCost::parse(&text), Some(cost));
    assert_eq!(SwitchCost::parse("17 of them, min x ns, mean 1 ns"), None);
}

#[test]
fn removal_keeps_the_queue_packed() {
    let mut q = RunQueue::new();
    for vm in 0..5u16 {
        q.push(entry(vm, u64::from(vm) * 10, false)).unwrap();
    }
    assert_eq!(q.remove(id(1, 0)).unwrap().id.vm, 1);
    assert_eq!(q.remove(id(4, 0)).unwrap().id.vm, 4);
    assert_eq!(q.len(), 3);
    let mut left: std::vec::Vec<u16> = q.iter().map(|e| e.id.vm).collect();
    left.sort_unstable();
    assert_eq!(left, [0, 2, 3]);
    q.push(entry(9, 1, false)).unwrap();
    assert_eq!(q.pop().unwrap().id.vm, 0);
    assert_eq!(q.pop().unwrap().id.vm, 9);
    assert_eq!(q.pop().unwrap().id.vm, 2);
    assert_eq!(q.pop().unwrap().id.vm, 3);
    assert!(q.pop().is_none() && q.is_empty());
}
