//! Faster primitives for libssh2's `chacha20-poly1305@openssh.com`.
//!
//! libssh2 (bundled by the ssh2 crate) implements this cipher with the
//! portable reference ChaCha20 and Poly1305 from OpenSSH (`chacha.c`,
//! `poly1305.c`). Measured on the 2-core CI machine kind, they took about
//! 80% of the SSH I/O thread's CPU and capped a transfer near 130 MiB/s per
//! core, while OpenSSL (already linked for libssh2's other ciphers) does
//! ChaCha20-Poly1305 at about 2 GB/s there (`openssl speed`).
//!
//! libssh2's `cipher-chachapoly.c` calls four C functions. This module
//! defines them with the same names and ABI, so the static link resolves
//! them here and never takes `chacha.o` and `poly1305.o` from libssh2's
//! archive (`link()` below is referenced from `main` to make sure this
//! object is linked first). The state layout is libssh2's `struct
//! chacha_ctx` (16 words: constants, key, 64-bit block counter, 64-bit
//! nonce). ChaCha20 runs on OpenSSL's `EVP_chacha20`, whose 16-byte IV is
//! the same four words with a 32-bit counter: identical output as long as
//! the counter's low word does not wrap within a call (an SSH packet is at
//! most a few thousand blocks); otherwise, and for 128-bit keys, the
//! portable code below is used. Poly1305 is OpenSSL's `EVP_MAC` "POLY1305".
//! Any OpenSSL failure falls back to the portable code, so the output never
//! depends on which path ran (tests compare them).
//!
//! Guard rails: Cargo.toml pins `libssh2-sys` exactly and build.rs checks
//! the bundled libssh2's version and these four prototypes; [`self_test`]
//! runs the RFC 8439 vectors through the exported functions before the first
//! connection (on failure the session prefers other ciphers); [`calls`]
//! counts calls so tests can see libssh2 really uses the override. Built only
//! with the `openssl-chacha` feature (default).

use std::cell::RefCell;
use std::ffi::c_int;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use openssl_sys as ossl;

/// libssh2's `struct chacha_ctx`.
#[repr(C)]
pub struct ChachaCtx {
    input: [u32; 16],
}

const SIGMA: &[u8; 16] = b"expand 32-byte k";
const TAU: &[u8; 16] = b"expand 16-byte k";

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Calls of `chacha_encrypt_bytes` and `poly1305_auth` (the per-packet
/// functions) since start, including the self-test's.
static CALLS: AtomicU64 = AtomicU64::new(0);

/// How many times libssh2 (or the self-test) called the override.
pub fn calls() -> u64 {
    CALLS.load(Ordering::Relaxed)
}

/// Whether this build overrides libssh2's ChaCha20-Poly1305 primitives.
pub const ENABLED: bool = true;

/// The RFC 8439 known answers through the exported functions (the code
/// libssh2 calls), run once; later calls return the first result. An error
/// names the vector that failed.
pub fn self_test() -> Result<(), String> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT.get_or_init(run_self_test).clone()
}

fn run_self_test() -> Result<(), String> {
    // RFC 8439 2.4.2: key 00..1f, 32-bit counter 1, nonce 00000000
    // 0000004a 00000000, i.e. DJB counter words (1, 0), IV 0000004a00000000.
    let key: Vec<u8> = (0u8..32).collect();
    let iv = [0u8, 0, 0, 0x4a, 0, 0, 0, 0];
    let counter = [1u8, 0, 0, 0, 0, 0, 0, 0];
    let mut buf = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.".to_vec();
    const CIPHER_HEAD: [u8; 16] = [
        0x6e, 0x2e, 0x35, 0x9a, 0x25, 0x68, 0xf9, 0x80, 0x41, 0xba, 0x07, 0x28, 0xdd, 0x0d, 0x69,
        0x81,
    ];
    const CIPHER_TAIL: [u8; 2] = [0x87, 0x4d];
    let mut x = ChachaCtx { input: [0; 16] };
    // SAFETY: buffers of the documented sizes; in place, as libssh2 does.
    unsafe {
        chacha_keysetup(&mut x, key.as_ptr(), 256);
        chacha_ivsetup(&mut x, iv.as_ptr(), counter.as_ptr());
        chacha_encrypt_bytes(&mut x, buf.as_ptr(), buf.as_mut_ptr(), buf.len());
    }
    if buf[..16] != CIPHER_HEAD || buf[buf.len() - 2..] != CIPHER_TAIL {
        return Err("ChaCha20 gives a wrong answer for the RFC 8439 2.4.2 vector".into());
    }
    // RFC 8439 2.5.2.
    const POLY_KEY: [u8; 32] = [
        0x85, 0xd6, 0xbe, 0x78, 0x57, 0x55, 0x6d, 0x33, 0x7f, 0x44, 0x52, 0xfe, 0x42, 0xd5, 0x06,
        0xa8, 0x01, 0x03, 0x80, 0x8a, 0xfb, 0x0d, 0xb2, 0xfd, 0x4a, 0xbf, 0xf6, 0xaf, 0x41, 0x49,
        0xf5, 0x1b,
    ];
    const TAG: [u8; 16] = [
        0xa8, 0x06, 0x1d, 0xc1, 0x30, 0x51, 0x36, 0xc6, 0xc2, 0x2b, 0x8b, 0xaf, 0x0c, 0x01, 0x27,
        0xa9,
    ];
    let msg = b"Cryptographic Forum Research Group";
    let mut tag = [0u8; 16];
    // SAFETY: 16-byte output, 32-byte key.
    unsafe { poly1305_auth(tag.as_mut_ptr(), msg.as_ptr(), msg.len(), POLY_KEY.as_ptr()) };
    if tag != TAG {
        return Err("Poly1305 gives a wrong answer for the RFC 8439 2.5.2 vector".into());
    }
    Ok(())
}

/// Referenced from `main` so the linker takes this object (and with it the
/// definitions below) before it scans libssh2's archive.
#[inline(never)]
pub fn link() -> usize {
    chacha_keysetup as *const () as usize
        ^ chacha_ivsetup as *const () as usize
        ^ chacha_encrypt_bytes as *const () as usize
        ^ poly1305_auth as *const () as usize
}

/// # Safety
/// `x` points to a `ChachaCtx`, `k` to `kbits / 8` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn chacha_keysetup(x: *mut ChachaCtx, k: *const u8, kbits: u32) {
    let x = &mut *x;
    let key = std::slice::from_raw_parts(k, if kbits == 256 { 32 } else { 16 });
    for i in 0..4 {
        x.input[4 + i] = le32(&key[4 * i..]);
    }
    let (rest, constants) = if kbits == 256 {
        (&key[16..], SIGMA)
    } else {
        (&key[..16], TAU)
    };
    for i in 0..4 {
        x.input[8 + i] = le32(&rest[4 * i..]);
        x.input[i] = le32(&constants[4 * i..]);
    }
}

/// # Safety
/// `x` points to a `ChachaCtx`, `iv` to 8 bytes, `counter` to 8 or is null.
#[no_mangle]
pub unsafe extern "C" fn chacha_ivsetup(x: *mut ChachaCtx, iv: *const u8, counter: *const u8) {
    let x = &mut *x;
    let iv = std::slice::from_raw_parts(iv, 8);
    if counter.is_null() {
        x.input[12] = 0;
        x.input[13] = 0;
    } else {
        let c = std::slice::from_raw_parts(counter, 8);
        x.input[12] = le32(c);
        x.input[13] = le32(&c[4..]);
    }
    x.input[14] = le32(iv);
    x.input[15] = le32(&iv[4..]);
}

/// # Safety
/// `x` points to a `ChachaCtx`; `m` and `c` to `bytes` bytes each (they
/// may be the same buffer, as libssh2 encrypts in place).
#[no_mangle]
pub unsafe extern "C" fn chacha_encrypt_bytes(
    x: *mut ChachaCtx,
    m: *const u8,
    c: *mut u8,
    bytes: usize,
) {
    CALLS.fetch_add(1, Ordering::Relaxed);
    if bytes == 0 {
        return;
    }
    let x = &mut *x;
    let blocks = bytes.div_ceil(64) as u64;
    let sigma = x.input[..4]
        == [
            le32(SIGMA),
            le32(&SIGMA[4..]),
            le32(&SIGMA[8..]),
            le32(&SIGMA[12..]),
        ];
    let no_wrap = u64::from(x.input[12]) + blocks <= u64::from(u32::MAX) + 1;
    if !(sigma && no_wrap && openssl_chacha(&x.input, m, c, bytes)) {
        portable_chacha(&x.input, m, c, bytes);
    }
    let counter = (u64::from(x.input[13]) << 32 | u64::from(x.input[12])).wrapping_add(blocks);
    x.input[12] = counter as u32;
    x.input[13] = (counter >> 32) as u32;
}

fn words_to_bytes<const N: usize>(words: &[u32]) -> [u8; N] {
    let mut out = [0u8; N];
    for (o, w) in out.chunks_exact_mut(4).zip(words) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// One OpenSSL cipher context per thread, set to ChaCha20 once and
/// re-keyed for every call (no cipher lookup per packet), freed when the
/// thread ends (an I/O thread ends with its connection).
struct CipherCtx {
    ctx: *mut ossl::EVP_CIPHER_CTX,
    /// The context holds ChaCha20: later calls pass only key and IV.
    keyed: bool,
}

impl Drop for CipherCtx {
    fn drop(&mut self) {
        if !self.ctx.is_null() {
            // SAFETY: allocated by EVP_CIPHER_CTX_new, freed once, here.
            unsafe { ossl::EVP_CIPHER_CTX_free(self.ctx) };
        }
    }
}

/// One Poly1305 MAC context per thread, re-keyed for every call.
struct MacCtx(*mut ossl::EVP_MAC_CTX);

impl Drop for MacCtx {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: allocated by EVP_MAC_CTX_new, freed once, here.
            unsafe { ossl::EVP_MAC_CTX_free(self.0) };
        }
    }
}

thread_local! {
    static CIPHER_CTX: RefCell<CipherCtx> = const {
        RefCell::new(CipherCtx {
            ctx: ptr::null_mut(),
            keyed: false,
        })
    };
    static MAC_CTX: RefCell<MacCtx> = const { RefCell::new(MacCtx(ptr::null_mut())) };
}

/// ChaCha20 of `bytes` bytes with OpenSSL; false if OpenSSL failed.
unsafe fn openssl_chacha(state: &[u32; 16], m: *const u8, c: *mut u8, bytes: usize) -> bool {
    let Ok(len) = c_int::try_from(bytes) else {
        return false;
    };
    let key: [u8; 32] = words_to_bytes(&state[4..12]);
    let iv: [u8; 16] = words_to_bytes(&state[12..16]);
    CIPHER_CTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.ctx.is_null() {
            slot.ctx = ossl::EVP_CIPHER_CTX_new();
            slot.keyed = false;
        }
        let ctx = slot.ctx;
        if ctx.is_null() {
            return false;
        }
        // Naming the cipher costs OpenSSL 3 a fetch by name on every call;
        // once the context holds it, a null cipher keeps it.
        let cipher = if slot.keyed {
            ptr::null()
        } else {
            ossl::EVP_chacha20()
        };
        if ossl::EVP_EncryptInit_ex(ctx, cipher, ptr::null_mut(), key.as_ptr(), iv.as_ptr()) != 1 {
            slot.keyed = false;
            return false;
        }
        slot.keyed = true;
        let mut out_len: c_int = 0;
        ossl::EVP_EncryptUpdate(ctx, c, &mut out_len, m, len) == 1 && out_len == len
    })
}

fn quarter(s: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(16);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(12);
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(8);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(7);
}

/// The reference algorithm (DJB's ChaCha20: 64-bit counter in words 12-13).
unsafe fn portable_chacha(state: &[u32; 16], m: *const u8, c: *mut u8, bytes: usize) {
    let mut input = *state;
    let mut done = 0;
    while done < bytes {
        let mut s = input;
        for _ in 0..10 {
            quarter(&mut s, 0, 4, 8, 12);
            quarter(&mut s, 1, 5, 9, 13);
            quarter(&mut s, 2, 6, 10, 14);
            quarter(&mut s, 3, 7, 11, 15);
            quarter(&mut s, 0, 5, 10, 15);
            quarter(&mut s, 1, 6, 11, 12);
            quarter(&mut s, 2, 7, 8, 13);
            quarter(&mut s, 3, 4, 9, 14);
        }
        let mut stream = [0u8; 64];
        for i in 0..16 {
            stream[4 * i..4 * i + 4].copy_from_slice(&s[i].wrapping_add(input[i]).to_le_bytes());
        }
        let n = (bytes - done).min(64);
        for (i, k) in stream.iter().enumerate().take(n) {
            // Byte by byte through raw pointers: `m` and `c` may alias.
            *c.add(done + i) = *m.add(done + i) ^ k;
        }
        done += n;
        let counter = (u64::from(input[13]) << 32 | u64::from(input[12])).wrapping_add(1);
        input[12] = counter as u32;
        input[13] = (counter >> 32) as u32;
    }
}

/// OpenSSL's Poly1305 MAC implementation, fetched once.
fn poly1305_mac() -> *mut ossl::EVP_MAC {
    static MAC: OnceLock<usize> = OnceLock::new();
    *MAC.get_or_init(|| {
        // SAFETY: a plain fetch from the default library context.
        unsafe { ossl::EVP_MAC_fetch(ptr::null_mut(), c"POLY1305".as_ptr(), ptr::null()) as usize }
    }) as *mut ossl::EVP_MAC
}

/// # Safety
/// `out` points to 16 writable bytes, `m` to `inlen` bytes, `key` to 32.
#[no_mangle]
pub unsafe extern "C" fn poly1305_auth(out: *mut u8, m: *const u8, inlen: usize, key: *const u8) {
    CALLS.fetch_add(1, Ordering::Relaxed);
    if !openssl_poly1305(out, m, inlen, key) {
        portable_poly1305(out, m, inlen, key);
    }
}

unsafe fn openssl_poly1305(out: *mut u8, m: *const u8, inlen: usize, key: *const u8) -> bool {
    let mac = poly1305_mac();
    if mac.is_null() {
        return false;
    }
    MAC_CTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.0.is_null() {
            slot.0 = ossl::EVP_MAC_CTX_new(mac);
        }
        let ctx = slot.0;
        if ctx.is_null() {
            return false;
        }
        // EVP_MAC_init with a key starts a new MAC on the same context.
        let mut out_len = 0usize;
        ossl::EVP_MAC_init(ctx, key, 32, ptr::null()) == 1
            && (inlen == 0 || ossl::EVP_MAC_update(ctx, m, inlen) == 1)
            && ossl::EVP_MAC_final(ctx, out, &mut out_len, 16) == 1
            && out_len == 16
    })
}

/// Poly1305 with 26-bit limbs (the "donna" 32-bit scheme).
unsafe fn portable_poly1305(out: *mut u8, m: *const u8, inlen: usize, key: *const u8) {
    let key = std::slice::from_raw_parts(key, 32);
    let msg = std::slice::from_raw_parts(m, inlen);
    let r0 = le32(&key[0..]) & 0x3ff_ffff;
    let r1 = (le32(&key[3..]) >> 2) & 0x3ff_ff03;
    let r2 = (le32(&key[6..]) >> 4) & 0x3ff_c0ff;
    let r3 = (le32(&key[9..]) >> 6) & 0x3f0_3fff;
    let r4 = (le32(&key[12..]) >> 8) & 0x00f_ffff;
    let (s1, s2, s3, s4) = (r1 * 5, r2 * 5, r3 * 5, r4 * 5);
    let (mut h0, mut h1, mut h2, mut h3, mut h4) = (0u32, 0u32, 0u32, 0u32, 0u32);
    for chunk in msg.chunks(16) {
        let mut block = [0u8; 17];
        block[..chunk.len()].copy_from_slice(chunk);
        let hibit: u32 = if chunk.len() == 16 { 1 << 24 } else { 0 };
        if chunk.len() < 16 {
            block[chunk.len()] = 1;
        }
        h0 = h0.wrapping_add(le32(&block[0..]) & 0x3ff_ffff);
        h1 = h1.wrapping_add((le32(&block[3..]) >> 2) & 0x3ff_ffff);
        h2 = h2.wrapping_add((le32(&block[6..]) >> 4) & 0x3ff_ffff);
        h3 = h3.wrapping_add((le32(&block[9..]) >> 6) & 0x3ff_ffff);
        h4 = h4.wrapping_add((le32(&block[12..]) >> 8) | hibit);
        let m = |a: u32, b: u32| u64::from(a) * u64::from(b);
        let d0 = m(h0, r0) + m(h1, s4) + m(h2, s3) + m(h3, s2) + m(h4, s1);
        let mut d1 = m(h0, r1) + m(h1, r0) + m(h2, s4) + m(h3, s3) + m(h4, s2);
        let mut d2 = m(h0, r2) + m(h1, r1) + m(h2, r0) + m(h3, s4) + m(h4, s3);
        let mut d3 = m(h0, r3) + m(h1, r2) + m(h2, r1) + m(h3, r0) + m(h4, s4);
        let mut d4 = m(h0, r4) + m(h1, r3) + m(h2, r2) + m(h3, r1) + m(h4, r0);
        let mut c = (d0 >> 26) as u32;
        h0 = d0 as u32 & 0x3ff_ffff;
        d1 += u64::from(c);
        c = (d1 >> 26) as u32;
        h1 = d1 as u32 & 0x3ff_ffff;
        d2 += u64::from(c);
        c = (d2 >> 26) as u32;
        h2 = d2 as u32 & 0x3ff_ffff;
        d3 += u64::from(c);
        c = (d3 >> 26) as u32;
        h3 = d3 as u32 & 0x3ff_ffff;
        d4 += u64::from(c);
        c = (d4 >> 26) as u32;
        h4 = d4 as u32 & 0x3ff_ffff;
        h0 = h0.wrapping_add(c * 5);
        c = h0 >> 26;
        h0 &= 0x3ff_ffff;
        h1 = h1.wrapping_add(c);
    }
    // Full carry, then h mod 2^130 - 5.
    const LIMB: u32 = 0x3ff_ffff;
    let mut h = [h0, h1, h2, h3, h4];
    for i in 1..5 {
        let c = h[i] >> 26;
        h[i] &= LIMB;
        // The carry out of the top limb wraps around times 5 (2^130 = 5 mod p).
        if i < 4 {
            h[i + 1] = h[i + 1].wrapping_add(c);
        } else {
            h[0] = h[0].wrapping_add(c * 5);
        }
    }
    let c = h[0] >> 26;
    h[0] &= LIMB;
    h[1] = h[1].wrapping_add(c);
    // g = h + 5 - 2^130; its top bit is set when h < p: keep h then.
    let mut g = [0u32; 5];
    let mut c = 5;
    for i in 0..4 {
        g[i] = h[i].wrapping_add(c);
        c = g[i] >> 26;
        g[i] &= LIMB;
    }
    g[4] = h[4].wrapping_add(c).wrapping_sub(1 << 26);
    let mask = (g[4] >> 31).wrapping_sub(1);
    for (hi, gi) in h.iter_mut().zip(g) {
        *hi = (*hi & !mask) | (gi & mask);
    }
    // Back to four 32-bit words, plus the key's second half (mod 2^128).
    let words = [
        h[0] | (h[1] << 26),
        (h[1] >> 6) | (h[2] << 20),
        (h[2] >> 12) | (h[3] << 14),
        (h[3] >> 18) | (h[4] << 8),
    ];
    let mut tag = [0u32; 4];
    let mut f = 0u64;
    for (i, w) in words.iter().enumerate() {
        f = u64::from(*w) + u64::from(le32(&key[16 + 4 * i..])) + (f >> 32);
        tag[i] = f as u32;
    }
    for (i, w) in tag.iter().enumerate() {
        ptr::copy_nonoverlapping(w.to_le_bytes().as_ptr(), out.add(4 * i), 4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn ctx(key: &[u8], iv: &[u8; 8], counter: Option<[u8; 8]>) -> ChachaCtx {
        let mut x = ChachaCtx { input: [0; 16] };
        // SAFETY: valid buffers of the documented sizes.
        unsafe {
            chacha_keysetup(&mut x, key.as_ptr(), (key.len() * 8) as u32);
            chacha_ivsetup(
                &mut x,
                iv.as_ptr(),
                counter.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
            );
        }
        x
    }

    /// RFC 8439 2.4.2: 32-bit counter 1, nonce 00000000 0000004a 00000000,
    /// which in DJB's layout is counter words (1, 0) and IV 0000004a00000000.
    #[test]
    fn chacha20_matches_the_rfc_vector_on_both_paths() {
        let key: Vec<u8> = (0u8..32).collect();
        let iv = [0, 0, 0, 0x4a, 0, 0, 0, 0];
        let counter = Some([1, 0, 0, 0, 0, 0, 0, 0]);
        let plain = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let want = hex("6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b");
        let mut fast = plain.to_vec();
        let mut x = ctx(&key, &iv, counter);
        // SAFETY: in-place on one buffer, as libssh2 does.
        unsafe { chacha_encrypt_bytes(&mut x, fast.as_ptr(), fast.as_mut_ptr(), fast.len()) };
        assert_eq!(&fast[..32], &want[..]);
        assert_eq!(x.input[12], 1 + 2, "the counter moves by the blocks used");
        let mut slow = plain.to_vec();
        let x = ctx(&key, &iv, counter);
        // SAFETY: as above.
        unsafe { portable_chacha(&x.input, slow.as_ptr(), slow.as_mut_ptr(), slow.len()) };
        assert_eq!(fast, slow);
    }

    #[test]
    fn openssl_and_portable_chacha_agree_on_odd_lengths_and_counter_carry() {
        let key: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37)).collect();
        for (len, counter) in [
            (1usize, 0u64),
            (63, 1),
            (64, 0),
            (65, 7),
            (32768 + 17, 1),
            (300, u64::from(u32::MAX)),
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 13 + 5) as u8).collect();
            let iv = 0x0102_0304_0506_0708u64.to_be_bytes();
            let mut a = data.clone();
            let mut x = ctx(&key, &iv, Some(counter.to_le_bytes()));
            // SAFETY: in place, lengths match.
            unsafe { chacha_encrypt_bytes(&mut x, a.as_ptr(), a.as_mut_ptr(), len) };
            let mut b = data.clone();
            let y = ctx(&key, &iv, Some(counter.to_le_bytes()));
            // SAFETY: as above.
            unsafe { portable_chacha(&y.input, b.as_ptr(), b.as_mut_ptr(), len) };
            assert_eq!(a, b, "len {len} counter {counter}");
            let after = u64::from(x.input[13]) << 32 | u64::from(x.input[12]);
            assert_eq!(after, counter.wrapping_add(len.div_ceil(64) as u64));
        }
    }

    #[test]
    fn self_test_passes_and_counts_its_calls() {
        let before = calls();
        assert_eq!(run_self_test(), Ok(()));
        assert!(
            calls() >= before + 2,
            "the self-test goes through the exported functions"
        );
        assert_eq!(self_test(), Ok(()));
    }

    /// RFC 8439 2.5.2.
    #[test]
    fn poly1305_matches_the_rfc_vector_on_both_paths() {
        let key = hex("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b");
        let msg = b"Cryptographic Forum Research Group";
        let want = hex("a8061dc1305136c6c22b8baf0c0127a9");
        let mut fast = [0u8; 16];
        let mut slow = [0u8; 16];
        // SAFETY: buffers of the documented sizes.
        unsafe {
            poly1305_auth(fast.as_mut_ptr(), msg.as_ptr(), msg.len(), key.as_ptr());
            portable_poly1305(slow.as_mut_ptr(), msg.as_ptr(), msg.len(), key.as_ptr());
        }
        assert_eq!(fast.to_vec(), want);
        assert_eq!(slow.to_vec(), want);
        for len in [0usize, 1, 15, 16, 17, 1000, 32768 + 5] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
            // SAFETY: as above.
            unsafe {
                poly1305_auth(a.as_mut_ptr(), data.as_ptr(), len, key.as_ptr());
                portable_poly1305(b.as_mut_ptr(), data.as_ptr(), len, key.as_ptr());
            }
            assert_eq!(a, b, "len {len}");
        }
    }

    /// One thread keeps one cipher and one MAC context and re-keys them
    /// for every call (as an I/O thread does packet after packet): each
    /// key still gives its own answer.
    #[test]
    fn contexts_reused_on_one_thread_take_each_new_key() {
        let data: Vec<u8> = (0..5000usize).map(|i| (i * 11 + 1) as u8).collect();
        let iv = 0x0a0b_0c0d_0e0f_1011u64.to_be_bytes();
        for seed in [3u8, 101, 3, 250] {
            let key: Vec<u8> = (0u8..32)
                .map(|i| i.wrapping_mul(seed).wrapping_add(seed))
                .collect();
            let mut a = data.clone();
            let mut x = ctx(&key, &iv, Some(5u64.to_le_bytes()));
            let y = ctx(&key, &iv, Some(5u64.to_le_bytes()));
            let mut b = data.clone();
            let (mut ta, mut tb) = ([0u8; 16], [0u8; 16]);
            // SAFETY: in place, lengths match; 16-byte tags, 32-byte keys.
            unsafe {
                chacha_encrypt_bytes(&mut x, a.as_ptr(), a.as_mut_ptr(), a.len());
                portable_chacha(&y.input, b.as_ptr(), b.as_mut_ptr(), b.len());
                poly1305_auth(ta.as_mut_ptr(), data.as_ptr(), data.len(), key.as_ptr());
                portable_poly1305(tb.as_mut_ptr(), data.as_ptr(), data.len(), key.as_ptr());
            }
            assert_eq!(a, b, "ChaCha20 with key seed {seed}");
            assert_eq!(ta, tb, "Poly1305 with key seed {seed}");
        }
    }

    // libssh2's own chacha.c and poly1305.c, compiled by build.rs with these
    // names.
    extern "C" {
        fn coupafs_ref_chacha_keysetup(x: *mut ChachaCtx, k: *const u8, kbits: u32);
        fn coupafs_ref_chacha_ivsetup(x: *mut ChachaCtx, iv: *const u8, counter: *const u8);
        fn coupafs_ref_chacha_encrypt_bytes(
            x: *mut ChachaCtx,
            m: *const u8,
            c: *mut u8,
            bytes: usize,
        );
        fn coupafs_ref_poly1305_auth(out: *mut u8, m: *const u8, inlen: usize, key: *const u8);
    }

    /// A small deterministic generator (xorshift64*), for varied inputs.
    fn bytes(seed: &mut u64, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                *seed ^= *seed >> 12;
                *seed ^= *seed << 25;
                *seed ^= *seed >> 27;
                (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn override_matches_libssh2s_own_chacha_and_poly1305() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let counters = [
            0u64,
            1,
            7,
            u64::from(u32::MAX) - 2,
            u64::from(u32::MAX),
            u64::MAX,
        ];
        for (round, len) in [0usize, 1, 4, 63, 64, 65, 200, 4096, 32768 + 13, 70_000]
            .into_iter()
            .enumerate()
        {
            let key = bytes(&mut seed, 32);
            let iv = bytes(&mut seed, 8);
            let counter = counters[round % counters.len()].to_le_bytes();
            let msg = bytes(&mut seed, len);
            let (mut ours, mut theirs) =
                (ChachaCtx { input: [0; 16] }, ChachaCtx { input: [0; 16] });
            let (mut a, mut b) = (msg.clone(), msg.clone());
            // SAFETY: buffers of the documented sizes; in place as libssh2
            // does. Two calls in a row check the carried-over counter.
            unsafe {
                chacha_keysetup(&mut ours, key.as_ptr(), 256);
                coupafs_ref_chacha_keysetup(&mut theirs, key.as_ptr(), 256);
                assert_eq!(ours.input, theirs.input, "keysetup");
                let ctr = if round % 2 == 0 {
                    counter.as_ptr()
                } else {
                    ptr::null()
                };
                chacha_ivsetup(&mut ours, iv.as_ptr(), ctr);
                coupafs_ref_chacha_ivsetup(&mut theirs, iv.as_ptr(), ctr);
                assert_eq!(ours.input, theirs.input, "ivsetup");
                for _ in 0..2 {
                    chacha_encrypt_bytes(&mut ours, a.as_ptr(), a.as_mut_ptr(), len);
                    coupafs_ref_chacha_encrypt_bytes(&mut theirs, b.as_ptr(), b.as_mut_ptr(), len);
                    assert!(a == b, "chacha20 output differs, len {len} round {round}");
                }
            }
            let (mut t1, mut t2) = ([0u8; 16], [0u8; 16]);
            // SAFETY: 16-byte tags, 32-byte key, `len` message bytes.
            unsafe {
                poly1305_auth(t1.as_mut_ptr(), msg.as_ptr(), len, key.as_ptr());
                coupafs_ref_poly1305_auth(t2.as_mut_ptr(), msg.as_ptr(), len, key.as_ptr());
            }
            assert_eq!(t1, t2, "poly1305 tag differs, len {len}");
        }
    }
}
