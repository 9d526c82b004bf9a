//! macOS: libproc for process facts, sysctl for the boot.
//!
//! Not compiled on the project's machines (Linux only, no macOS target installed): every call
//! below was checked line by line against
//! - `libproc.h` and `libproc.c` (xnu, `libsyscall/wrappers/libproc/`): `proc_pidinfo` returns
//!   the number of bytes it filled (the struct's size on success, 0 or -1 on failure);
//!   `proc_listallpids` returns a number of pids, not bytes, and with a NULL buffer how many there
//!   are now;
//! - `sys/proc_info.h` (xnu, `bsd/sys/`): `struct proc_bsdinfo` and `PROC_PIDTBSDINFO` (3), as
//!   the `libc` crate declares them; `pbi_status` is the kernel's `p_stat`, `SZOMB` (5) for a
//!   zombie;
//! - `proc_info.c` (xnu, `bsd/kern/`, `proc_pidinfo_internal` and `proc_pidbsdinfo`):
//!   `PROC_PIDTBSDINFO` answers for a zombie only when its `arg` is non-zero (else ESRCH, and
//!   `proc_pidinfo` returns 0); `pbi_start_tvsec`/`pbi_start_tvusec` are the process's
//!   `p_start`; `pbi_pgid` is filled only while the process has a session (a zombie's may be 0);
//! - `sysctlbyname(3)`: `kern.bootsessionuuid` is a NUL-terminated string, new at each boot.

use std::mem::{MaybeUninit, size_of};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::ProcInfo;

fn bsdinfo(pid: u32) -> Option<libc::proc_bsdinfo> {
    let pid = libc::c_int::try_from(pid).ok()?;
    let mut info = MaybeUninit::<libc::proc_bsdinfo>::zeroed();
    let size = size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: the buffer is a proc_bsdinfo of `size` bytes, which PROC_PIDTBSDINFO fills.
    // `arg` 1: zombies answer too, so that `is_zombie` can see them (as /proc does on Linux).
    let n = unsafe {
        libc::proc_pidinfo(
            pid,
            libc::PROC_PIDTBSDINFO,
            1,
            info.as_mut_ptr().cast(),
            size,
        )
    };
    // SAFETY: a full-size answer initialised the whole struct (and zeroed() did before).
    (n == size).then(|| unsafe { info.assume_init() })
}

/// Microseconds since the epoch of the process's start.
pub fn start_mark(pid: u32) -> Option<u64> {
    let i = bsdinfo(pid)?;
    Some(i.pbi_start_tvsec * 1_000_000 + i.pbi_start_tvusec)
}

pub fn started_at(pid: u32) -> Option<SystemTime> {
    let i = bsdinfo(pid)?;
    UNIX_EPOCH.checked_add(
        Duration::new(i.pbi_start_tvsec, 0) + Duration::from_micros(i.pbi_start_tvusec),
    )
}

/// `PROC_PIDTASKINFO` (`sys/proc_info.h`): `pti_total_user` and `pti_total_system` are in
/// Mach absolute time units (nanoseconds on Intel, 125/3 ns per unit on Apple silicon), turned
/// into time with `mach_timebase_info`; `pti_resident_size` is bytes.
#[allow(deprecated)] // libc's Mach bindings point to the mach2 crate; these two calls are stable.
pub fn usage(pid: u32) -> Option<crate::Usage> {
    static TIMEBASE: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
    let (numer, denom) = *TIMEBASE.get_or_init(|| {
        let mut tb = libc::mach_timebase_info { numer: 0, denom: 0 };
        // SAFETY: fills the struct it is given.
        let rc = unsafe { libc::mach_timebase_info(&mut tb) };
        if rc == 0 && tb.denom != 0 {
            (u64::from(tb.numer), u64::from(tb.denom))
        } else {
            (1, 1)
        }
    });
    let mark = start_mark(pid)?;
    let pid_c = libc::c_int::try_from(pid).ok()?;
    let mut info = MaybeUninit::<libc::proc_taskinfo>::zeroed();
    let size = size_of::<libc::proc_taskinfo>() as libc::c_int;
    // SAFETY: the buffer is a proc_taskinfo of `size` bytes, which PROC_PIDTASKINFO fills.
    let n = unsafe {
        libc::proc_pidinfo(
            pid_c,
            libc::PROC_PIDTASKINFO,
            0,
            info.as_mut_ptr().cast(),
            size,
        )
    };
    if n != size {
        return None;
    }
    // SAFETY: a full-size answer initialised the whole struct (and zeroed() did before).
    let info = unsafe { info.assume_init() };
    let units = u128::from(info.pti_total_user.saturating_add(info.pti_total_system));
    let nanos = units * u128::from(numer) / u128::from(denom);
    Some(crate::Usage {
        mark,
        cpu: Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)),
        rss: info.pti_resident_size,
    })
}

pub fn is_zombie(pid: u32) -> bool {
    bsdinfo(pid).is_some_and(|i| i.pbi_status == libc::SZOMB)
}

pub fn boot_id() -> String {
    let mut buf = [0u8; 64];
    let mut len: libc::size_t = buf.len();
    // SAFETY: a NUL-terminated name, and a buffer whose size is passed in `len`.
    let rc = unsafe {
        libc::sysctlbyname(
            c"kern.bootsessionuuid".as_ptr(),
            buf.as_mut_ptr().cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        return String::new();
    }
    let text = &buf[..len.min(buf.len())];
    let text = text.split(|b| *b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(text).into_owned()
}

pub fn process_table() -> Vec<ProcInfo> {
    // SAFETY: a NULL buffer asks only for the current count.
    let count = unsafe { libc::proc_listallpids(std::ptr::null_mut(), 0) };
    if count <= 0 {
        return Vec::new();
    }
    // Room for processes started between the two calls.
    let mut pids = vec![0 as libc::c_int; count as usize + 64];
    let bytes = (pids.len() * size_of::<libc::c_int>()) as libc::c_int;
    // SAFETY: `pids` holds `bytes` bytes of c_int.
    let n = unsafe { libc::proc_listallpids(pids.as_mut_ptr().cast(), bytes) };
    if n <= 0 {
        return Vec::new();
    }
    pids.truncate(n as usize);
    pids.into_iter()
        .filter(|pid| *pid > 0)
        .filter_map(|pid| {
            let i = bsdinfo(pid as u32)?;
            Some(ProcInfo {
                pid: i.pbi_pid,
                ppid: i.pbi_ppid,
                pgid: i.pbi_pgid,
            })
        })
        .collect()
}

/// macOS pipes grow by themselves (up to 64 KiB); there is no call to ask for more.
pub fn grow_pipe(_fd: std::os::fd::BorrowedFd<'_>, _bytes: usize) {}

/// Where this thread's `errno` lives (`__error` in macOS's libc), for a signal handler that
/// must leave it as it found it.
pub fn errno_location() -> *mut libc::c_int {
    // SAFETY: no preconditions; the pointer is valid for the calling thread's lifetime.
    unsafe { libc::__error() }
}
