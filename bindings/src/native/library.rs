//! Opening a plugin library: a private copy, the version handshake, the
//! hook table.
//!
//! The host never loads the file cargo writes. It copies it into a new
//! folder of its own under the system temp dir (`$TMPDIR`; the folder is
//! created fresh, readable by this user only, so nobody can swap the file
//! between the copy and the load) and loads the copy. A rebuild, which
//! rewrites the original in place, can then never change code that is
//! running, and each load gets new code even where the loader caches by
//! path. On Unix the copy and its folder are deleted as soon as the library
//! is loaded (the mapping stays valid); elsewhere when it is unloaded.
//!
//! The ABI version is read before anything else; a mismatch is refused with
//! both versions, the SDK version that built the plugin, and the file.

use std::ffi::{CStr, c_char};
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use plughost_sdk::abi::{
    ABI_VERSION, ABI_VERSION_SYMBOL, AbiVersionFn, PluginVTable, SDK_VERSION, SDK_VERSION_SYMBOL,
    SdkVersionFn, VTABLE_SYMBOL, VTableFn,
};

use crate::{ErrorKind, HookName, ScriptError};

/// A loaded plugin library. Instances made from it hold it (in an `Rc`),
/// so it is unloaded only after the last of them is destroyed.
pub(crate) struct Library {
    /// The hook table, a static inside `lib`.
    vtable: *const PluginVTable,
    /// The SDK version the plugin was built with.
    pub sdk_version: String,
    /// The private copy, when it must be deleted after unloading.
    copy: Option<PrivateCopy>,
    /// Unloaded in `drop`, before the copy is deleted.
    lib: ManuallyDrop<libloading::Library>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("sdk_version", &self.sdk_version)
            .finish_non_exhaustive()
    }
}

/// Numbers the private copy folders of this process.
static COPIES: AtomicU64 = AtomicU64::new(0);

impl Library {
    /// Loads a private copy of `path` and checks its versions. `shown` is
    /// the path as messages show it.
    pub fn open(path: &Path, shown: &str) -> Result<Library, ScriptError> {
        let fail = |message: String| {
            ScriptError::new(ErrorKind::Load, message)
                .or_file(shown)
                .in_hook(HookName::Load)
        };
        let copy = PrivateCopy::make(path).map_err(fail)?;
        // A library still being written (a rebuild caught midway) must fail
        // to load, not crash the host: mapping an ELF file cut short makes
        // the loader touch pages past its end (SIGBUS).
        if let Err(message) = complete(&copy.file) {
            copy.remove();
            return Err(fail(message));
        }
        // SAFETY: loading a library runs its initialisers. A native plugin is
        // code the operator chose to run in the host, as a script is; the
        // file is our private copy, so nobody rewrites it while it is mapped.
        let loaded = unsafe { libloading::Library::new(&copy.file) };
        let keep = if cfg!(unix) {
            // The mapping outlives the name; a crash leaves no copy behind.
            copy.remove();
            None
        } else {
            Some(copy)
        };
        let lib = loaded.map_err(|e| {
            fail(format!(
                "cannot load the library: {e} (it is loaded from a private copy under {}; \
                 if that is mounted noexec, point TMPDIR elsewhere)",
                std::env::temp_dir().display()
            ))
        })?;
        let mut library = Library {
            vtable: std::ptr::null(),
            sdk_version: String::new(),
            copy: keep,
            lib: ManuallyDrop::new(lib),
        };
        library.handshake().map_err(fail)?;
        Ok(library)
    }

    fn handshake(&mut self) -> Result<(), String> {
        // SAFETY: `plughost_abi_version` has this signature in every ABI version.
        let abi_version =
            unsafe { self.lib.get::<AbiVersionFn>(ABI_VERSION_SYMBOL) }.map_err(|_| {
                "not a plughost plugin: the library exports no `plughost_abi_version`; \
                 export the plugin with `plughost_sdk::export_plugin!`"
                    .to_owned()
            })?;
        // SAFETY: as above; the function takes nothing and returns a number.
        let theirs = unsafe { abi_version() };
        // SAFETY: `plughost_sdk_version` has this signature in every ABI version.
        self.sdk_version = match unsafe { self.lib.get::<SdkVersionFn>(SDK_VERSION_SYMBOL) } {
            // SAFETY: it returns a static NUL-terminated string (or null).
            Ok(f) => unsafe { c_text(f()) },
            Err(_) => None,
        }
        .unwrap_or_else(|| "of unknown version".to_owned());
        if theirs != ABI_VERSION {
            return Err(version_mismatch(theirs, &self.sdk_version));
        }
        // SAFETY: the ABI versions match, so the symbol has this signature.
        let table = unsafe { self.lib.get::<VTableFn>(VTABLE_SYMBOL) }
            .map_err(|_| "the library exports no `plughost_plugin_v1`".to_owned())?;
        // SAFETY: as above; it returns a pointer to a static table.
        let vtable = unsafe { table() };
        if vtable.is_null() {
            return Err(
                "the library's plugin table is missing (`plughost_plugin_v1` returned null)".into(),
            );
        }
        // SAFETY: checked non-null; the table is static in the library. It
        // is read with every entry nullable: a `PluginVTable` with a null
        // entry is not a valid value, so none is made before they are checked.
        let nullable = unsafe { &*vtable.cast::<NullableTable>() };
        nullable.check()?;
        self.vtable = vtable;
        Ok(())
    }

    /// The plugin's hooks.
    pub fn vtable(&self) -> &PluginVTable {
        // SAFETY: checked non-null in `handshake`; it is a static in `lib`,
        // which lives as long as `self`.
        unsafe { &*self.vtable }
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        // SAFETY: dropped once, here, and never used again; every instance
        // made from this library holds it, so none is left to run its code.
        unsafe { ManuallyDrop::drop(&mut self.lib) };
        // Unloaded first: Windows refuses to delete a loaded file.
        if let Some(copy) = self.copy.take() {
            copy.remove();
        }
    }
}

/// [`PluginVTable`]'s layout with every entry nullable: how the host reads
/// a library's table before it trusts it (a table written in C may leave an
/// entry null, which calling would crash the host on).
#[repr(C)]
struct NullableTable {
    abi_version: u32,
    /// The entries in [`ENTRIES`]' order, as untyped nullable pointers
    /// (only compared with null, never called).
    entries: [Option<unsafe extern "C" fn()>; ENTRIES.len()],
}

/// The names of [`PluginVTable`]'s entries, in order.
const ENTRIES: [&str; 8] = [
    "create",
    "init",
    "on_event",
    "on_config",
    "on_timer",
    "shutdown",
    "destroy",
    "free",
];

const _: () = assert!(
    std::mem::size_of::<NullableTable>() == std::mem::size_of::<PluginVTable>()
        && std::mem::align_of::<NullableTable>() == std::mem::align_of::<PluginVTable>()
);

impl NullableTable {
    /// Whether the table is of this ABI version with every entry set.
    fn check(&self) -> Result<(), String> {
        if self.abi_version != ABI_VERSION {
            return Err(format!(
                "the library's plugin table is of ABI version {}, not {ABI_VERSION}",
                self.abi_version
            ));
        }
        match self.entries.iter().position(Option::is_none) {
            Some(i) => Err(format!(
                "the library's plugin table is incomplete: `{}` is a null pointer",
                ENTRIES[i]
            )),
            None => Ok(()),
        }
    }
}

/// The message for a library of another ABI version.
fn version_mismatch(theirs: u32, their_sdk: &str) -> String {
    let ours: Vec<&str> = SDK_VERSION.split('.').collect();
    let series = match ours.as_slice() {
        [major, minor, ..] => format!("{major}.{minor}.x"),
        _ => SDK_VERSION.to_owned(),
    };
    let built = if their_sdk.starts_with(|c: char| c.is_ascii_digit()) {
        format!("plughost-sdk {their_sdk} built it")
    } else {
        "built by a plughost-sdk of unknown version".to_owned()
    };
    format!(
        "ABI version {theirs}, but this host speaks ABI version {ABI_VERSION} \
         ({built}; rebuild the plugin against plughost-sdk {series})"
    )
}

/// Reads a NUL-terminated string of at most 64 bytes.
///
/// # Safety
///
/// `ptr` must be null or point to a NUL-terminated string.
unsafe fn c_text(ptr: *const c_char) -> Option<String> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees a NUL-terminated string.
    let text = unsafe { CStr::from_ptr(ptr) }.to_string_lossy();
    Some(text.chars().take(64).collect())
}

/// Whether an ELF file holds every byte its headers say it has: each
/// loaded segment and the section header table. A file cut short (a linker
/// or a copy still writing it) is refused with a message saying so. Files
/// in other formats (Mach-O, PE) are left to the platform's loader.
fn complete(file: &Path) -> Result<(), String> {
    use std::io::{Read, Seek, SeekFrom};

    let incomplete = |needed: u64, len: u64| {
        format!(
            "the library file is incomplete ({len} bytes, its headers need {needed}): \
             is it still being written?"
        )
    };
    let mut f = std::fs::File::open(file).map_err(|e| format!("cannot read the library: {e}"))?;
    let len = f
        .metadata()
        .map_err(|e| format!("cannot read the library: {e}"))?
        .len();
    let mut header = [0u8; 64];
    let got = f
        .read(&mut header)
        .map_err(|e| format!("cannot read the library: {e}"))?;
    if got < 4 || header[..4] != *b"\x7fELF" {
        return Ok(());
    }
    let wide = header[4] == 2;
    let big = header[5] == 2;
    let header_len: u64 = if wide { 64 } else { 52 };
    if len < header_len || (got as u64) < header_len {
        return Err(incomplete(header_len, len));
    }
    let num = |bytes: &[u8]| {
        bytes.iter().enumerate().fold(0u64, |n, (i, b)| {
            let shift = if big { bytes.len() - 1 - i } else { i } * 8;
            n | (u64::from(*b) << shift)
        })
    };
    // (e_phoff, e_shoff, e_phentsize, e_phnum, e_shentsize, e_shnum)
    let (phoff, shoff, phentsize, phnum, shentsize, shnum) = if wide {
        (
            num(&header[0x20..0x28]),
            num(&header[0x28..0x30]),
            num(&header[0x36..0x38]),
            num(&header[0x38..0x3a]),
            num(&header[0x3a..0x3c]),
            num(&header[0x3c..0x3e]),
        )
    } else {
        (
            num(&header[0x1c..0x20]),
            num(&header[0x20..0x24]),
            num(&header[0x2a..0x2c]),
            num(&header[0x2c..0x2e]),
            num(&header[0x2e..0x30]),
            num(&header[0x30..0x32]),
        )
    };
    let end = |offset: u64, size: u64| offset.saturating_add(size);
    let sections_end = if shoff == 0 {
        0
    } else {
        end(shoff, shentsize.saturating_mul(shnum))
    };
    let phdrs_end = end(phoff, phentsize.saturating_mul(phnum));
    let needed = sections_end.max(phdrs_end);
    if needed > len {
        return Err(incomplete(needed, len));
    }
    // (p_offset, p_filesz) of each program header.
    let (min_entry, offset_at, size_at): (u64, std::ops::Range<usize>, std::ops::Range<usize>) =
        if wide {
            (56, 8..16, 32..40)
        } else {
            (32, 4..8, 16..20)
        };
    if phnum == 0 || phentsize < min_entry {
        return Ok(());
    }
    let mut table = vec![0u8; usize::try_from(phdrs_end - phoff).unwrap_or(0)];
    f.seek(SeekFrom::Start(phoff))
        .and_then(|_| f.read_exact(&mut table))
        .map_err(|e| format!("cannot read the library: {e}"))?;
    let step = usize::try_from(phentsize).unwrap_or(usize::MAX);
    for entry in table.chunks_exact(step) {
        let segment_end = end(num(&entry[offset_at.clone()]), num(&entry[size_at.clone()]));
        if segment_end > len {
            return Err(incomplete(segment_end, len));
        }
    }
    Ok(())
}

/// A copy of a library in a folder of its own.
struct PrivateCopy {
    dir: PathBuf,
    file: PathBuf,
}

impl PrivateCopy {
    /// Copies `path` into a new folder under the temp dir.
    fn make(path: &Path) -> Result<PrivateCopy, String> {
        let mut original = std::fs::File::open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("native library not found: {}", super::build_hint(path))
            } else {
                format!("cannot read the library: {e}")
            }
        })?;
        let dir = new_private_dir()?;
        let name = path.file_name().unwrap_or(path.as_os_str());
        let copy = PrivateCopy {
            file: dir.join(name),
            dir,
        };
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&copy.file)
            .and_then(|mut to| std::io::copy(&mut original, &mut to));
        if let Err(e) = written {
            let message = format!("cannot copy the library to {}: {e}", copy.file.display());
            copy.remove();
            return Err(message);
        }
        Ok(copy)
    }

    fn remove(&self) {
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A folder that did not exist before, only this user may write to.
fn new_private_dir() -> Result<PathBuf, String> {
    let base = std::env::temp_dir();
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    let mut last = None;
    for _ in 0..16 {
        let n = COPIES.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!(
            "plughost-native-{}-{n}-{nanos:08x}",
            std::process::id()
        ));
        match builder.create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) => last = Some(e),
        }
    }
    Err(format!(
        "cannot create a folder for a private copy of the library in {}: {}",
        base.display(),
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mismatch_names_both_versions_and_the_sdk() {
        let m = version_mismatch(1, "0.9.0");
        assert!(
            m.starts_with(&format!(
                "ABI version 1, but this host speaks ABI version {ABI_VERSION}"
            )),
            "{m}"
        );
        assert!(m.contains("plughost-sdk 0.9.0 built it"), "{m}");
        assert!(
            m.contains("rebuild the plugin against plughost-sdk 0.1.x"),
            "{m}"
        );
    }

    #[test]
    fn a_library_cut_short_is_refused_and_a_whole_one_passes() {
        // This test binary is an ELF file on Linux (and not one elsewhere,
        // where `complete` leaves the judgement to the loader).
        let me = std::env::current_exe().unwrap();
        let bytes = std::fs::read(&me).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let whole = tmp.path().join("whole");
        std::fs::write(&whole, &bytes).unwrap();
        assert_eq!(complete(&whole), Ok(()));
        if !bytes.starts_with(b"\x7fELF") {
            return;
        }
        for cut in [10, bytes.len() / 10, bytes.len() / 2, bytes.len() - 1] {
            let short = tmp.path().join(format!("short{cut}"));
            std::fs::write(&short, &bytes[..cut]).unwrap();
            let e = complete(&short).unwrap_err();
            assert!(e.contains("incomplete"), "{cut}: {e}");
        }
        let other = tmp.path().join("script");
        std::fs::write(&other, "#!/bin/sh\n").unwrap();
        assert_eq!(complete(&other), Ok(()));
    }

    #[test]
    fn a_table_with_a_null_entry_is_refused_naming_it() {
        unsafe extern "C" fn entry() {}
        let mut table = NullableTable {
            abi_version: ABI_VERSION,
            entries: [Some(entry as unsafe extern "C" fn()); ENTRIES.len()],
        };
        assert_eq!(table.check(), Ok(()));
        table.entries[4] = None;
        assert_eq!(
            table.check(),
            Err("the library's plugin table is incomplete: `on_timer` is a null pointer".into())
        );
        table.abi_version = 2;
        assert!(table.check().unwrap_err().contains("of ABI version 2, not"));
    }

    #[test]
    fn a_missing_file_is_not_found() {
        let e = Library::open(Path::new("/nonexistent/libx.so"), "x/libx.so").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Load);
        assert!(
            e.to_string()
                .starts_with("x/libx.so: native library not found"),
            "{e}"
        );
    }
}
