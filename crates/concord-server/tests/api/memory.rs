//! The allocator settings are accepted, and memory a burst on several threads freed is
//! handed back to the system. Alone in its test binary: it reads the process's RSS.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

use concord_server::memory;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[test]
fn freed_memory_of_a_burst_on_many_threads_is_returned() {
    assert!(memory::configure(), "glibc accepts the allocator settings");
    let before = rss_kib();
    // 4 threads x 16 MiB in 1 KiB blocks (each below the mmap threshold: heap memory).
    // Each thread keeps one block allocated after every burst is done, so the freed memory
    // is not at the top of the heap, where free() alone would give it back.
    let all_done = std::sync::Arc::new(std::sync::Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let all_done = all_done.clone();
            std::thread::spawn(move || {
                let burst: Vec<Box<[u8; 1024]>> =
                    (0..16 * 1024).map(|_| Box::new([1u8; 1024])).collect();
                all_done.wait();
                let pin = Box::new([1u8; 1024]);
                all_done.wait();
                drop(burst);
                pin
            })
        })
        .collect();
    let pins: Vec<Box<[u8; 1024]>> = threads
        .into_iter()
        .map(|t| t.join().expect("burst thread"))
        .collect();
    let freed_but_kept = rss_kib();
    assert!(
        freed_but_kept > before + 32 * 1024,
        "the burst is still resident before the release ({before} -> {freed_but_kept} KiB)"
    );
    memory::release_free_memory();
    let after = rss_kib();
    assert!(
        after < before + 8 * 1024,
        "released: {before} KiB before the burst, {freed_but_kept} after it, {after} after the release"
    );
    assert_eq!(pins.len(), 4);
}
