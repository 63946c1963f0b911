//! Compiled plugins on disk, so that restarts and reloads of a known version skip
//! the JIT. An entry is filed under the wasm's SHA-256 and the engine's key
//! (wasmtime version and settings), and starts with a checksum that binds its
//! bytes to both: SHA-256 of (wasm digest, engine key, payload). An entry that
//! does not match the wasm being loaded (corrupt, or another plugin's entry
//! copied under this name) is recompiled, never handed to `Module::deserialize`.
//!
//! The directory belongs to the daemon: it is created private (0700), a
//! directory that others may write to is not used, and neither is an entry file
//! that is not the daemon's own or that others may write.

use std::hash::{Hash, Hasher};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

/// What the cache keeps: a compiled core module or component.
pub trait Compiled: Sized {
    /// Bound into each entry's checksum, so one kind is never read as the other.
    const KIND: &'static str;
    /// The compiled code, as wasmtime writes it.
    ///
    /// # Errors
    /// When wasmtime cannot serialize it.
    fn to_bytes(&self) -> wasmtime::Result<Vec<u8>>;
    /// # Safety
    /// `bytes` must be what [`Compiled::to_bytes`] wrote, for an engine with
    /// the same settings (see `Module::deserialize`).
    unsafe fn from_bytes(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Self>;
}

impl Compiled for Module {
    const KIND: &'static str = "module";
    fn to_bytes(&self) -> wasmtime::Result<Vec<u8>> {
        self.serialize()
    }
    unsafe fn from_bytes(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Self> {
        // SAFETY: as the caller promises.
        unsafe { Module::deserialize(engine, bytes) }
    }
}

impl Compiled for Component {
    const KIND: &'static str = "component";
    fn to_bytes(&self) -> wasmtime::Result<Vec<u8>> {
        self.serialize()
    }
    unsafe fn from_bytes(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Self> {
        // SAFETY: as the caller promises.
        unsafe { Component::deserialize(engine, bytes) }
    }
}

/// Where compiled modules are kept.
#[derive(Debug, Clone)]
pub struct ModuleCache {
    dir: PathBuf,
    engine_key: String,
}

impl ModuleCache {
    /// Opens (creating it, private) the cache directory.
    ///
    /// # Errors
    /// A message when the directory cannot be made or is not the daemon's own.
    pub fn open(dir: &Path, engine: &Engine) -> Result<ModuleCache, String> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(format!(
                "{} belongs to uid {}, not to this daemon (uid {me})",
                dir.display(),
                meta.uid()
            ));
        }
        if meta.permissions().mode() & 0o022 != 0 {
            return Err(format!(
                "{} is writable by others; make it private (chmod 700)",
                dir.display()
            ));
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(ModuleCache {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", h.finish()),
        })
    }

    fn entry(&self, digest: &[u8]) -> PathBuf {
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}-{}.cwasm", self.engine_key))
    }

    /// The checksum an entry for the wasm with `digest` must start with.
    fn seal(&self, kind: &str, digest: &[u8], payload: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(kind.as_bytes());
        h.update(digest);
        h.update(self.engine_key.as_bytes());
        h.update(payload);
        h.finalize().into()
    }

    /// The compiled module or component for `wasm`: from the cache when a sound
    /// entry exists, else compiled with `compile` and stored.
    ///
    /// # Errors
    /// Whatever `compile` returns.
    pub fn get_or_compile<T: Compiled, E>(
        &self,
        engine: &Engine,
        wasm: &[u8],
        compile: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let digest = Sha256::digest(wasm);
        let path = self.entry(&digest);
        if let Ok(bytes) = read_own(&path) {
            match self.load(engine, &digest, &bytes) {
                Ok(m) => {
                    tracing::debug!(entry = %path.display(), "Compiled plugin taken from the cache");
                    return Ok(m);
                }
                Err(why) => {
                    tracing::warn!(entry = %path.display(), "Cache entry not used ({why}); compiling again");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let module = compile()?;
        if let Err(e) = self.store(&path, &digest, &module) {
            tracing::warn!(entry = %path.display(), "Cannot write the compiled plugin to the cache: {e}");
        }
        Ok(module)
    }

    fn load<T: Compiled>(&self, engine: &Engine, digest: &[u8], bytes: &[u8]) -> Result<T, String> {
        let (sum, payload) = bytes.split_at_checked(32).ok_or("truncated")?;
        if self.seal(T::KIND, digest, payload).as_slice() != sum {
            return Err("its checksum does not match this wasm file and engine".into());
        }
        // SAFETY: the payload is exactly what `to_bytes` wrote into this private
        // directory for this very wasm and kind (the checksum binds it to the wasm's
        // digest and proves it intact), for an engine with these settings.
        unsafe { T::from_bytes(engine, payload) }.map_err(|e| format!("{e:#}"))
    }

    fn store<T: Compiled>(&self, path: &Path, digest: &[u8], compiled: &T) -> Result<(), String> {
        let payload = compiled.to_bytes().map_err(|e| format!("{e:#}"))?;
        let mut bytes = self.seal(T::KIND, digest, &payload).to_vec();
        bytes.extend_from_slice(&payload);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| e.to_string())?;
        std::io::Write::write_all(&mut f, &bytes).map_err(|e| e.to_string())?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| e.to_string())
    }
}

/// Reads an entry only if it is a regular file of this user that no one else may write.
fn read_own(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !meta.file_type().is_file() || meta.uid() != me || meta.permissions().mode() & 0o022 != 0 {
        return Err("not a private file of this daemon".into());
    }
    std::fs::read(path).map_err(|e| e.to_string())
}

/// The default cache directory: `$XDG_CACHE_HOME/collector` or `~/.cache/collector`.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("collector").join("modules"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAT: &str = r#"(module (func (export "f") (result i32) (i32.const 7)))"#;

    #[test]
    fn stores_loads_and_refuses_corrupt_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::default();
        let cache = ModuleCache::open(&dir.path().join("c"), &engine).expect("cache");
        let wasm = wat_bytes();
        let mut compiled = 0;
        let mut get = || {
            cache
                .get_or_compile(&engine, &wasm, || {
                    compiled += 1;
                    Module::new(&engine, &wasm)
                })
                .expect("module")
        };
        get();
        get();
        assert_eq!(compiled, 1, "second load came from the cache");
        // Flip a byte of the entry: it must be recompiled, not deserialized.
        let entry = cache.entry(&Sha256::digest(&wasm));
        let mut bytes = std::fs::read(&entry).expect("entry");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&entry, &bytes).expect("corrupt");
        let mut compiled_again = 0;
        cache
            .get_or_compile(&engine, &wasm, || {
                compiled_again += 1;
                Module::new(&engine, &wasm)
            })
            .expect("module");
        assert_eq!(compiled_again, 1);
        let mode = std::fs::metadata(dir.path().join("c"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn an_entry_filed_under_another_wasm_is_not_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::default();
        let cache = ModuleCache::open(&dir.path().join("c"), &engine).expect("cache");
        let a = br#"(module (func (export "a") (result i32) (i32.const 1)))"#.to_vec();
        let b = br#"(module (func (export "b") (result i32) (i32.const 2)))"#.to_vec();
        for w in [&a, &b] {
            cache
                .get_or_compile(&engine, w, || Module::new(&engine, w))
                .expect("module");
        }
        // Swap: a's compiled code filed under b's name.
        let (ea, eb) = (
            cache.entry(&Sha256::digest(&a)),
            cache.entry(&Sha256::digest(&b)),
        );
        std::fs::copy(&ea, &eb).expect("swap entries");
        let mut compiled = 0;
        let m = cache
            .get_or_compile(&engine, &b, || {
                compiled += 1;
                Module::new(&engine, &b)
            })
            .expect("module");
        assert_eq!(compiled, 1, "the swapped entry was refused");
        assert!(m.get_export("b").is_some() && m.get_export("a").is_none());
        // An entry others may write is not used either.
        std::fs::set_permissions(&ea, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let mut compiled = 0;
        cache
            .get_or_compile(&engine, &a, || {
                compiled += 1;
                Module::new(&engine, &a)
            })
            .expect("module");
        assert_eq!(compiled, 1, "a world-writable entry was refused");
    }

    #[test]
    fn refuses_a_directory_others_can_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = dir.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = ModuleCache::open(&open, &Engine::default()).expect_err("world-writable");
        assert!(err.contains("writable by others"), "{err}");
    }

    fn wat_bytes() -> Vec<u8> {
        wasmtime::Module::new(&Engine::default(), WAT)
            .map(|_| ())
            .expect("valid wat");
        WAT.as_bytes().to_vec()
    }
}
