//! The few operating-system calls the standard library does not offer, made
//! directly (the C library is linked into every Rust program already; the
//! project takes no `libc` dependency for four functions). Each is wrapped
//! in a safe function and used once, at start-up.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// `rlim_t`: an unsigned long on Linux (32 bits on 32-bit targets), 64
/// bits on macOS and the BSDs.
#[cfg(target_os = "linux")]
type RlimT = std::ffi::c_ulong;
#[cfg(not(target_os = "linux"))]
type RlimT = u64;

#[repr(C)]
struct Rlimit {
    current: RlimT,
    maximum: RlimT,
}

#[cfg(all(target_os = "linux", any(target_arch = "mips", target_arch = "mips64")))]
const RLIMIT_NOFILE: i32 = 5;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "sparc", target_arch = "sparc64")
))]
const RLIMIT_NOFILE: i32 = 6;
#[cfg(all(
    target_os = "linux",
    not(any(
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "sparc",
        target_arch = "sparc64"
    ))
))]
const RLIMIT_NOFILE: i32 = 7;
#[cfg(not(target_os = "linux"))]
const RLIMIT_NOFILE: i32 = 8; // macOS and the BSDs

/// macOS reports an unlimited hard limit but refuses a soft limit above
/// OPEN_MAX: ask for at most this.
const OPEN_FILES_WANTED_MAX: RlimT = 10240;

pub const SIGINT: i32 = 2;
pub const SIGTERM: i32 = 15;

extern "C" {
    fn listen(socket: i32, backlog: i32) -> i32;
    fn getrlimit(resource: i32, limit: *mut Rlimit) -> i32;
    fn setrlimit(resource: i32, limit: *const Rlimit) -> i32;
    fn signal(signal: i32, handler: extern "C" fn(i32)) -> usize;
    fn write(fd: i32, buffer: *const u8, count: usize) -> isize;
    fn _exit(status: i32) -> !;
    #[cfg(target_os = "linux")]
    fn __errno_location() -> *mut i32;
    #[cfg(not(target_os = "linux"))]
    #[link_name = "__error"]
    fn __errno_location() -> *mut i32;
}

/// Sets the accept queue of a listening socket. mio and the standard
/// library listen with 128; calling listen again on a listening socket
/// changes the queue (Linux, macOS, the BSDs), capped by the kernel
/// (`net.core.somaxconn`).
pub fn set_listen_backlog(listener: &impl AsRawFd, backlog: i32) -> io::Result<()> {
    // SAFETY: listen takes a descriptor and an int; the descriptor is a
    // socket the caller owns for the duration of the call.
    let result = unsafe { listen(listener.as_raw_fd(), backlog) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raises the soft limit on open descriptors to the hard limit, and
/// returns the soft limit now in force.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut limit = Rlimit {
        current: 0,
        maximum: 0,
    };
    // SAFETY: getrlimit writes one struct rlimit (two 64-bit rlim_t on
    // every 64-bit target) into the memory we pass, which we own.
    if unsafe { getrlimit(RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let wanted = match cfg!(target_os = "linux") {
        true => limit.maximum,
        false => limit.maximum.min(OPEN_FILES_WANTED_MAX),
    };
    if limit.current < wanted {
        let raised = Rlimit {
            current: wanted,
            maximum: limit.maximum,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { setrlimit(RLIMIT_NOFILE, &raised) } == 0 {
            #[allow(clippy::useless_conversion)] // u32 on 32-bit Linux
            return Ok(u64::from(raised.current));
        }
    }
    #[allow(clippy::useless_conversion)] // u32 on 32-bit Linux
    Ok(u64::from(limit.current))
}

static SHUTDOWN_REQUESTED: AtomicBool = AtomicBool::new(false);
static SHUTDOWN_SIGNAL: AtomicI32 = AtomicI32::new(0);
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_shutdown_signal(number: i32) {
    // Only async-signal-safe work here: atomics, write(2) and _exit(2).
    if SHUTDOWN_REQUESTED.swap(true, Ordering::SeqCst) {
        // A second signal: the clean stop is stuck (a disk that hangs);
        // stop now, as the shell's convention for a signal has it.
        // SAFETY: _exit is async-signal-safe and never returns.
        unsafe { _exit(128 + number) };
    }
    SHUTDOWN_SIGNAL.store(number, Ordering::SeqCst);
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: errno is the calling thread's; the handler must leave it
        // as it found it. The write is of one byte from a live stack
        // variable to a descriptor that stays open for the whole process.
        unsafe {
            let errno = __errno_location();
            let saved = *errno;
            write(fd, &byte, 1);
            *errno = saved;
        }
    }
}

/// Makes SIGTERM and SIGINT ask for a clean stop: the handler writes one
/// byte to `wake_fd` (one end of a socket pair whose other end the event
/// loop polls), so the loop wakes and shuts down in its own time; a second
/// signal ends the process at once. The descriptor must stay open for the
/// rest of the process.
pub fn on_shutdown_signals(wake_fd: RawFd) {
    WAKE_FD.store(wake_fd, Ordering::SeqCst);
    for number in [SIGTERM, SIGINT] {
        // SAFETY: the handler is an extern "C" fn that only touches atomics
        // and calls write(2), both async-signal-safe.
        unsafe { signal(number, on_shutdown_signal) };
    }
}

/// The signal that asked for a stop, if one did.
pub fn shutdown_signal() -> Option<i32> {
    SHUTDOWN_REQUESTED
        .load(Ordering::SeqCst)
        .then(|| SHUTDOWN_SIGNAL.load(Ordering::SeqCst))
}

pub fn signal_name(number: i32) -> &'static str {
    match number {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        _ => "a signal",
    }
}
