//! Gives back the pages of a thread's stack that loading a plugin touched.
//!
//! Loading is the deepest point of an idle plugin's life: Lua's parser and
//! mlua's glue touch stack pages below `init`'s frame that stay resident for
//! as long as the thread lives, although an idle plugin never goes that deep
//! again (measured: 24 KB resident per plugin thread, 20 KB after this; the
//! host's own frames above `init` are most of it). [`release_below_here`]
//! tells the kernel (`madvise(MADV_DONTNEED)`) that the pages more than
//! [`MARGIN`] below the current frame are free: they read as zeros and cost
//! nothing until touched again (a later deep call simply faults them back
//! in). Everything below the stack pointer is dead by definition, so this
//! changes no value; the guard page is outside the range asked about.
//! Linux only; a no-op elsewhere and on the main thread (whose reported
//! bounds are the rlimit's, not a mapping of its own).

/// What is left untouched below the current frame: the callee frames of
/// the calls that follow (and x86-64's red zone) stay resident.
pub(crate) const MARGIN: usize = 4 * 1024;

/// Releases this thread's stack pages more than [`MARGIN`] below the caller.
#[inline(never)]
pub(crate) fn release_below_here() {
    #[cfg(target_os = "linux")]
    {
        if std::thread::current().name() == Some("main") {
            return;
        }
        let marker = 0u8;
        let sp = std::hint::black_box(&marker) as *const u8 as usize;
        if let Some(low) = linux::stack_low() {
            let page = linux::page_size();
            let end = sp.saturating_sub(MARGIN) & !(page - 1);
            let start = (low + page - 1) & !(page - 1);
            if end > start {
                linux::dont_need(start, end - start);
            }
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::mem::MaybeUninit;

    /// The lowest usable address of this thread's stack (above its guard).
    pub(super) fn stack_low() -> Option<usize> {
        let mut attr = MaybeUninit::<libc::pthread_attr_t>::uninit();
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size = 0usize;
        // SAFETY: `pthread_getattr_np` initialises `attr` when it returns 0;
        // it is read only then, and destroyed once.
        unsafe {
            if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
                return None;
            }
            let got = libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size);
            libc::pthread_attr_destroy(attr.as_mut_ptr());
            (got == 0 && !addr.is_null()).then_some(addr as usize)
        }
    }

    /// The size of a memory page.
    pub(super) fn page_size() -> usize {
        // SAFETY: `sysconf` reads a constant of the system.
        match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            n if n > 0 => n as usize,
            _ => 4096,
        }
    }

    /// `madvise(start, len, MADV_DONTNEED)`: the range is page-aligned and
    /// lies in this thread's stack, below its stack pointer.
    pub(super) fn dont_need(start: usize, len: usize) {
        // SAFETY: the range is dead stack of the calling thread (below its
        // stack pointer, above its guard page): nothing refers to it, and
        // the kernel hands back zeroed pages when it is touched again.
        unsafe {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Touches about `kb` KB of stack below the caller.
    #[inline(never)]
    fn deep(kb: usize) -> u8 {
        let mut buf = [0u8; 1024];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i ^ kb) as u8;
        }
        let below = if kb > 1 { deep(kb - 1) } else { 0 };
        std::hint::black_box(&buf)[kb % 1024].wrapping_add(below)
    }

    /// Resident KB of the mapping that holds `addr` (from /proc/self/smaps).
    fn resident_kb(addr: usize) -> usize {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_whitespace().next().unwrap_or("");
            if let Some((Ok(a), Ok(b))) = range
                .split_once('-')
                .map(|(a, b)| (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)))
            {
                inside = a <= addr && addr < b;
                continue;
            }
            if inside && line.starts_with("Rss:") {
                return line.split_whitespace().nth(1).unwrap().parse().unwrap();
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    #[test]
    fn the_pages_a_deep_call_touched_are_given_back() {
        let (before, after) = std::thread::Builder::new()
            .name("deep".into())
            .stack_size(4 << 20)
            .spawn(|| {
                let marker = 0u8;
                let here = std::hint::black_box(&marker) as *const u8 as usize;
                std::hint::black_box(deep(512));
                let before = resident_kb(here);
                release_below_here();
                (before, resident_kb(here))
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(
            before >= 512,
            "the deep call touched its stack: {before} KB"
        );
        assert!(
            after + 400 <= before,
            "the pages below the frame are given back: {before} KB, then {after} KB"
        );
    }
}
