//! Bounded fuzzing of every decoder that reads server bytes.
//!
//! The server is untrusted input. These tests feed each decoder valid
//! replies, random mutations of them (bit flips, cut ends, length fields set
//! to huge values, spliced bytes) and pure noise, for a fixed number of
//! cases from a fixed seed (so a failure reproduces), and check two things:
//! no panic, and no allocation larger than a small multiple of the input
//! (a length or count field must never size a buffer by itself).
//!
//! The allocation bound is measured by a counting global allocator that
//! records, per thread, the largest single request while armed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use super::*;

struct Counting;

thread_local! {
    /// Largest allocation on this thread since `arm()`; `None` when unarmed.
    static LARGEST: Cell<Option<usize>> = const { Cell::new(None) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|c| {
        if let Some(m) = c.get() {
            c.set(Some(m.max(size)));
        }
    });
}

// SAFETY: defers every call to the system allocator unchanged; only records
// sizes in a const-initialised thread-local (which itself never allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns the largest single allocation it made.
fn largest_allocation(f: impl FnOnce()) -> usize {
    LARGEST.with(|c| c.set(Some(0)));
    f();
    LARGEST.with(|c| c.replace(None)).unwrap_or(0)
}

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn put_u32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_be_bytes());
}

fn put_str(v: &mut Vec<u8>, s: &[u8]) {
    put_u32(v, s.len() as u32);
    v.extend_from_slice(s);
}

fn full_attrs(v: &mut Vec<u8>) {
    put_u32(
        v,
        attr_flags::SIZE
            | attr_flags::UIDGID
            | attr_flags::PERMISSIONS
            | attr_flags::ACMODTIME
            | attr_flags::EXTENDED,
    );
    v.extend_from_slice(&4096u64.to_be_bytes());
    put_u32(v, 1000);
    put_u32(v, 1000);
    put_u32(v, 0o100644);
    put_u32(v, 1_700_000_000);
    put_u32(v, 1_700_000_001);
    put_u32(v, 1);
    put_str(v, b"acl@example");
    put_str(v, b"data");
}

/// Valid reply packets (type byte onward), one per shape the client decodes.
fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut p = vec![fxp::STATUS];
    put_u32(&mut p, 7);
    put_u32(&mut p, status::NO_SUCH_FILE);
    put_str(&mut p, b"No such file");
    put_str(&mut p, b"en");
    out.push(p);
    let mut p = vec![fxp::HANDLE];
    put_u32(&mut p, 8);
    put_str(&mut p, b"\0\0\0\x01");
    out.push(p);
    let mut p = vec![fxp::DATA];
    put_u32(&mut p, 9);
    put_str(&mut p, &[0x55; 300]);
    out.push(p);
    let mut p = vec![fxp::NAME];
    put_u32(&mut p, 10);
    put_u32(&mut p, 3);
    for name in [&b"a.csv"[..], b"..", b"Invoices"] {
        put_str(&mut p, name);
        put_str(&mut p, b"-rw-r--r-- 1 u g 4096 Jan 1 00:00 x");
        full_attrs(&mut p);
    }
    out.push(p);
    let mut p = vec![fxp::ATTRS];
    put_u32(&mut p, 11);
    full_attrs(&mut p);
    out.push(p);
    let mut p = vec![fxp::EXTENDED_REPLY];
    put_u32(&mut p, 12);
    for i in 0..11u64 {
        p.extend_from_slice(&(i * 4096).to_be_bytes());
    }
    out.push(p);
    let mut p = vec![fxp::VERSION];
    put_u32(&mut p, 3);
    put_str(&mut p, ext::POSIX_RENAME.as_bytes());
    put_str(&mut p, b"1");
    put_str(&mut p, ext::STATVFS.as_bytes());
    put_str(&mut p, b"2");
    out.push(p);
    out
}

/// One random mutation of `seed`.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            // Flip a bit.
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            // Cut the end.
            1 => v.truncate(rng.below(v.len() + 1)),
            // A 32-bit field (length or count) set to a huge or edge value.
            2 if v.len() >= 4 => {
                let i = rng.below(v.len() - 3);
                let x = [u32::MAX, 0x7fff_ffff, 0x0100_0000, 0xffff, 0][rng.below(5)];
                v[i..i + 4].copy_from_slice(&x.to_be_bytes());
            }
            // Insert random bytes.
            3 => {
                let i = rng.below(v.len() + 1);
                let n = rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(i..i, bytes);
            }
            // Change the packet type.
            4 if !v.is_empty() => v[0] = rng.next() as u8,
            // Duplicate a slice.
            _ if !v.is_empty() => {
                let a = rng.below(v.len());
                let b = a + rng.below(v.len() - a + 1);
                let copy = v[a..b].to_vec();
                v.extend_from_slice(&copy);
            }
            _ => {}
        }
    }
    v
}

/// Every decoder of server bytes, on one input.
fn decode_all(input: &[u8]) {
    let _ = decode_response(input);
    let _ = decode_version(input);
    let _ = decode_attrs(input);
    let _ = decode_statvfs(input);
}

/// Largest allocation a decoder may make for `n` input bytes: the copied
/// fields plus a vector of entries no longer than the bytes could hold.
fn bound(n: usize) -> usize {
    64 * n + 4096
}

#[test]
fn decoders_survive_mutated_replies_without_big_allocations() {
    let seeds = seeds();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // Fixed case count, fixed seed: bounded time, reproducible failures.
    for case in 0..40_000 {
        let seed = &seeds[case % seeds.len()];
        let input = if case % 10 == 9 {
            (0..rng.below(64)).map(|_| rng.next() as u8).collect()
        } else {
            mutate(&mut rng, seed)
        };
        let big = largest_allocation(|| decode_all(&input));
        assert!(
            big <= bound(input.len()),
            "case {case}: allocation of {big} bytes for a {}-byte input {input:02x?}",
            input.len()
        );
    }
}

#[test]
fn valid_seeds_decode() {
    // The seeds must be valid, or the mutations explore nothing useful.
    let seeds = seeds();
    for s in &seeds[..5] {
        decode_response(s).unwrap_or_else(|e| panic!("{e}: {s:02x?}"));
    }
    let (_, ext_reply) = decode_response(&seeds[5]).expect("extended reply");
    let Response::ExtendedReply(data) = ext_reply else {
        panic!("not an extended reply");
    };
    decode_statvfs(&data).expect("statvfs");
    let v = decode_version(&seeds[6]).expect("version");
    assert!(v.has_extension(ext::POSIX_RENAME));
}

#[test]
fn huge_counts_and_lengths_fail_without_allocating_them() {
    // NAME with a count of 4 billion and nothing behind it.
    let mut p = vec![fxp::NAME];
    put_u32(&mut p, 1);
    put_u32(&mut p, u32::MAX);
    let big = largest_allocation(|| assert!(decode_response(&p).is_err()));
    assert!(big <= bound(p.len()), "{big}");
    // DATA announcing 2 GiB.
    let mut p = vec![fxp::DATA];
    put_u32(&mut p, 1);
    put_u32(&mut p, 0x7fff_ffff);
    let big = largest_allocation(|| assert!(decode_response(&p).is_err()));
    assert!(big <= bound(p.len()), "{big}");
    // ATTRS with 4 billion extended pairs.
    let mut p = vec![fxp::ATTRS];
    put_u32(&mut p, 1);
    put_u32(&mut p, attr_flags::EXTENDED);
    put_u32(&mut p, u32::MAX);
    assert!(decode_response(&p).is_err());
}

#[test]
fn framer_survives_any_stream_split_anywhere() {
    let mut rng = Rng(42);
    let seeds = seeds();
    for _ in 0..2_000 {
        // A stream of framed packets, some with bogus lengths.
        let mut stream = Vec::new();
        for _ in 0..1 + rng.below(6) {
            let pick = rng.below(seeds.len());
            let body = mutate(&mut rng, &seeds[pick]);
            let len = if rng.below(8) == 0 {
                rng.next() as u32
            } else {
                body.len() as u32
            };
            stream.extend_from_slice(&len.to_be_bytes());
            stream.extend_from_slice(&body);
        }
        let mut framer = Framer::new();
        let mut at = 0;
        let big = largest_allocation(|| {
            while at < stream.len() {
                let n = 1 + rng.below(stream.len() - at);
                framer.push(&stream[at..at + n]);
                at += n;
                while let Ok(Some(p)) = framer.next_packet() {
                    decode_all(&p);
                }
            }
        });
        // The framer buffers at most what it was given, and a bogus length
        // (over MAX_PACKET) fails before anything is buffered for it.
        assert!(big <= bound(stream.len()), "{big} for {}", stream.len());
    }
}
