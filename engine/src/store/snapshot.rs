//! Snapshots: a built [`Cube`] in a folder, read back equal to the one written — every level's
//! members, every cuboid cell and value, the member sets of distinct measures, each fact's base
//! rows, the index and the encoding — so a server can start from disk instead of rebuilding,
//! and answer a question no cuboid covers from the base rows as the built cube does.
//!
//! ```text
//! <dir>/manifest.json          version, definition sha256, statistics, shape, file checksums,
//!                              the sources' fingerprints
//! <dir>/levels.arrow           member names per level
//! <dir>/cuboid-0000.arrow      one per cuboid: a code column per level, a column per measure
//! <dir>/base-<f>-<p>.arrow     one per part of fact f's base rows: a code column per key and
//!                              the period, a column per measure
//! <dir>/parents.arrow, present.arrow, dim-<d>-*.arrow, via.arrow, ...   index and encoding
//! ```
//!
//! Columns are Arrow IPC files, member sets roaring's portable serialization. The model is not
//! stored: the reader takes the one parsed from the same definition and refuses a snapshot whose
//! definition hash differs. The sources are not stored either: the writer is given their
//! fingerprints (files, sizes, modification times; `source::load::fingerprint`, which the store
//! may not call, so they come as JSON) and the reader refuses a snapshot whose recorded sources
//! differ from the ones it is given. `docs/snapshots.md` describes the format, the write
//! protocol and the compatibility rule.
//!
//! Writing goes to `.<name>.tmp-<pid>` beside `dir`, every file fsynced, then the folder is
//! renamed into place and the parent fsynced: a reader sees the old snapshot or the new one.
//! Reading checks the version first, then every file's size and checksum before parsing it,
//! then the definition's hash, then the sources. Files are memory-mapped, and the columns of a
//! read cube are Arrow buffers over the mappings: nothing is copied but the member sets, which
//! roaring deserializes.

mod columns;
mod manifest;
#[cfg(test)]
mod tests;
pub mod versions;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use lattice_defs::Model;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use twox_hash::XxHash3_128;

use super::Cube;
use crate::error::{EngineError, Result};
use manifest::{FileEntry, Manifest};

/// The format version this build writes. 2: the manifest records the sources (`sources`).
/// 3: each fact's base rows are stored (`base-<fact>-<part>.arrow`, the manifest's `bases`).
/// 4: files are checked by XXH3-128 (`xxh3_128`) instead of sha256, and a base's distinct
/// values are stored without nulls (a row without one holds [`super::cuboid::NO_VALUE`]), so
/// that every base column is read in place.
pub const FORMAT_VERSION: u32 = 4;
/// The format versions this build reads. Not 2: its cube would come back without base rows
/// and answer questions no cuboid covers through the slow fallback; it is rebuilt instead.
pub const KNOWN_VERSIONS: &[u32] = &[3, 4];
/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";

/// What a written snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub dir: PathBuf,
    pub cuboids: usize,
    pub cells: u64,
    /// What the cuboids take in memory.
    pub memory_bytes: u64,
    /// What the files take on disk, the manifest aside.
    pub file_bytes: u64,
    /// Files besides the manifest.
    pub files: usize,
    pub definition_sha256: String,
}

/// Writes `cube`, built from `definition_text`, as the snapshot folder `dir` (replacing one
/// that is there). `sources` describes the data it was built from, and is recorded as is as the
/// manifest's `sources`: the JSON of `source::load::fingerprint`, an array of objects each with
/// a `name` (taken before the build, so that data changed during it is not taken for the data
/// built from).
pub fn write(
    cube: &Cube,
    definition_text: &str,
    sources: &Value,
    dir: &Path,
) -> Result<SnapshotInfo> {
    let (parent, name) = split(dir)?;
    fs::create_dir_all(&parent).map_err(|e| io(&parent, e))?;
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    remove_dir_if_there(&tmp)?;
    fs::create_dir(&tmp).map_err(|e| io(&tmp, e))?;
    let written = write_into(cube, definition_text, sources, &tmp)
        .and_then(|manifest| publish(&tmp, dir, &parent, &name).map(|()| manifest));
    let manifest = written.inspect_err(|_| {
        // Best effort: the error that stopped the write is the one to report.
        let _ = fs::remove_dir_all(&tmp);
    })?;
    Ok(SnapshotInfo {
        dir: dir.to_path_buf(),
        cuboids: manifest.stats.cuboids,
        cells: manifest.stats.cells,
        memory_bytes: manifest.stats.memory_bytes,
        file_bytes: manifest.stats.file_bytes,
        files: manifest.files.len(),
        definition_sha256: manifest.definition_sha256,
    })
}

/// Reads the snapshot folder `dir` back as the cube of `model`, which must be parsed from
/// `definition_text`, the definition the snapshot was written from; `expected_sources` must be
/// what the snapshot recorded as its sources (the same fingerprints, taken now), else the
/// snapshot is refused naming the first source that changed.
pub fn read(
    dir: &Path,
    model: Model,
    definition_text: &str,
    expected_sources: &Value,
) -> Result<Cube> {
    let path = dir.join(MANIFEST);
    let text = fs::read_to_string(&path).map_err(|e| io(&path, e))?;
    let manifest = manifest::parse(&path, &text)?;
    let started = std::time::Instant::now();
    let folder = Folder::verify(dir, &manifest.files)?;
    tracing::debug!(
        dir = %dir.display(),
        files = manifest.files.len(),
        seconds = started.elapsed().as_secs_f64(),
        "snapshot files mapped and checked"
    );
    let now = definition_hash(definition_text);
    if now != manifest.definition_sha256 {
        return Err(bad(
            &path,
            format!(
                "the definition changed since this snapshot was written (its sha256 is now {now}, \
                 the snapshot's is {}); rebuild the snapshot from the current definition",
                manifest.definition_sha256
            ),
        ));
    }
    let recorded = recorded_sources(&path, &text)?;
    if let Some(change) = sources_change(&recorded, expected_sources) {
        return Err(bad(
            &path,
            format!("{change}; rebuild the snapshot from the current data"),
        ));
    }
    let started = std::time::Instant::now();
    let cube = columns::read_cube(&folder, &manifest, model)?;
    tracing::debug!(
        dir = %dir.display(),
        seconds = started.elapsed().as_secs_f64(),
        "snapshot columns read"
    );
    Ok(cube)
}

/// The manifest's `sources`, as written.
fn recorded_sources(path: &Path, text: &str) -> Result<Value> {
    let mut value: Value = serde_json::from_str(text)
        .map_err(|e| bad(path, format!("is not a snapshot manifest (JSON: {e})")))?;
    value
        .get_mut("sources")
        .map(Value::take)
        .ok_or_else(|| bad(path, "has no sources: not a complete manifest".to_string()))
}

/// What differs between the sources a snapshot recorded and the ones it is read against, or
/// `None` when they are the same. Sources are matched by `name`; the first recorded source
/// that changed or went is named, then the first new one.
fn sources_change(recorded: &Value, now: &Value) -> Option<String> {
    if recorded == now {
        return None;
    }
    let (Some(was), Some(is)) = (recorded.as_array(), now.as_array()) else {
        return Some(format!(
            "the sources changed since the snapshot: {recorded} -> {now}"
        ));
    };
    let name = |v: &Value| v.get("name").map(shown);
    for old in was {
        let label = name(old).unwrap_or_else(|| old.to_string());
        match is.iter().find(|new| name(new) == name(old)) {
            None => {
                return Some(format!(
                    "source '{label}' is in the snapshot but no longer a source"
                ));
            }
            Some(new) if new != old => {
                return Some(format!(
                    "source '{label}' changed since the snapshot: {}",
                    fields_changed(old, new)
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(new) = is
        .iter()
        .find(|new| !was.iter().any(|old| name(old) == name(new)))
    {
        let label = name(new).unwrap_or_else(|| new.to_string());
        return Some(format!("source '{label}' is not in the snapshot"));
    }
    Some("the sources changed since the snapshot (their order or duplicates)".to_string())
}

/// `field old -> new` for each field that differs, in the recorded order, then new fields.
fn fields_changed(old: &Value, new: &Value) -> String {
    let (Some(o), Some(n)) = (old.as_object(), new.as_object()) else {
        return format!("{old} -> {new}");
    };
    let show = |v: Option<&Value>| v.map_or_else(|| "absent".to_string(), shown);
    o.keys()
        .chain(n.keys().filter(|k| !o.contains_key(*k)))
        .filter(|k| o.get(*k) != n.get(*k))
        .map(|k| format!("{k} {} -> {}", show(o.get(k)), show(n.get(k))))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A JSON value for a person: strings without their quotes.
fn shown(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// sha256 of a definition's text, lowercase hex: what a snapshot records and checks.
pub fn definition_hash(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// The manifest as written: its fields, then `sources`.
#[derive(Serialize)]
struct Written<'a> {
    #[serde(flatten)]
    manifest: &'a Manifest,
    sources: &'a Value,
}

/// Writes every file and the manifest into `tmp`, each fsynced, then fsyncs `tmp`.
fn write_into(cube: &Cube, definition_text: &str, sources: &Value, tmp: &Path) -> Result<Manifest> {
    let mut out = FolderWriter {
        dir: tmp.to_path_buf(),
        files: BTreeMap::new(),
    };
    let mut manifest = columns::write_cube(&mut out, cube)?;
    manifest.definition_sha256 = definition_hash(definition_text);
    manifest.stats.file_bytes = out.files.values().map(|f| f.bytes).sum();
    manifest.files = out.files;
    let path = tmp.join(MANIFEST);
    let written = Written {
        manifest: &manifest,
        sources,
    };
    let text = serde_json::to_string_pretty(&written)
        .map_err(|e| bad(&path, format!("cannot be written: {e}")))?;
    write_synced(&path, text.as_bytes())?;
    sync_dir(tmp)?;
    Ok(manifest)
}

/// Renames `tmp` to `dir` (moving an older snapshot aside first, then removing it), and
/// fsyncs the parent so the rename is durable.
fn publish(tmp: &Path, dir: &Path, parent: &Path, name: &str) -> Result<()> {
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    let replacing = dir.exists();
    if replacing {
        remove_dir_if_there(&old)?;
        fs::rename(dir, &old).map_err(|e| io(dir, e))?;
    }
    if let Err(e) = fs::rename(tmp, dir) {
        if replacing {
            // Put the older snapshot back; the rename's error is the one to report.
            let _ = fs::rename(&old, dir);
        }
        return Err(io(dir, e));
    }
    sync_dir(parent)?;
    if replacing {
        fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
    }
    Ok(())
}

/// The parent folder and the name of `dir`.
fn split(dir: &Path) -> Result<(PathBuf, String)> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| bad(dir, "is not a folder name a snapshot can have".to_string()))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

fn remove_dir_if_there(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(dir, e)),
        _ => Ok(()),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).map_err(|e| io(path, e))?;
    file.write_all(bytes).map_err(|e| io(path, e))?;
    file.sync_all().map_err(|e| io(path, e))
}

/// fsync of a folder, so the names in it (a new file, a rename) are durable. Unix only: other
/// systems cannot open a folder as a file.
fn sync_dir(dir: &Path) -> Result<()> {
    if cfg!(unix) {
        File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(dir, e))?;
    }
    Ok(())
}

/// The folder being written: each file is one Arrow IPC record batch, hashed as it is written.
#[derive(Debug)]
struct FolderWriter {
    dir: PathBuf,
    files: BTreeMap<String, FileEntry>,
}

impl FolderWriter {
    /// Writes `batch` as the IPC file `name`, fsynced, and records its size and checksum.
    fn batch(&mut self, name: &str, batch: &RecordBatch) -> Result<()> {
        test_write_delay();
        let path = self.dir.join(name);
        let file = File::create(&path).map_err(|e| io(&path, e))?;
        let out = Hashing {
            inner: BufWriter::new(file),
            hasher: PieceHasher::new(PIECE),
            bytes: 0,
        };
        let arrow_err = |e: arrow::error::ArrowError| bad(&path, format!("arrow: {e}"));
        let mut writer =
            arrow::ipc::writer::FileWriter::try_new(out, &batch.schema()).map_err(arrow_err)?;
        writer.write(batch).map_err(arrow_err)?;
        writer.finish().map_err(arrow_err)?;
        let out = writer.into_inner().map_err(arrow_err)?;
        let file = out
            .inner
            .into_inner()
            .map_err(|e| io(&path, e.into_error()))?;
        file.sync_all().map_err(|e| io(&path, e))?;
        let entry = FileEntry {
            bytes: out.bytes,
            xxh3_128: Some(out.hasher.finish()),
            sha256: None,
        };
        self.files.insert(name.to_string(), entry);
        Ok(())
    }
}

/// A test hook, in debug builds only: `LATTICE_SNAPSHOT_WRITE_DELAY_MS` makes the writer sleep
/// that long before each file, so that the crash-safety test (`tests/it/snapshots.rs`) can kill
/// a writer in the middle of a snapshot.
fn test_write_delay() {
    if cfg!(debug_assertions)
        && let Some(ms) = std::env::var("LATTICE_SNAPSHOT_WRITE_DELAY_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// The bytes a file's checksum hashes at a time: a file's `xxh3_128` is the XXH3-128 of the
/// XXH3-128 digests (16 bytes each, big-endian) of its pieces of this size, the last one
/// shorter, so that a reader checks the pieces of one large file on every core.
const PIECE: usize = 64 << 20;

/// A file's checksum ([`PIECE`]) of bytes that come in any slices.
struct PieceHasher {
    size: usize,
    piece: XxHash3_128,
    in_piece: usize,
    digests: Vec<u8>,
}

impl PieceHasher {
    /// Pieces of `size` bytes ([`PIECE`] but in tests).
    fn new(size: usize) -> PieceHasher {
        PieceHasher {
            size,
            piece: XxHash3_128::new(),
            in_piece: 0,
            digests: Vec::new(),
        }
    }

    fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let take = bytes.len().min(self.size - self.in_piece);
            self.piece.write(&bytes[..take]);
            self.in_piece += take;
            bytes = &bytes[take..];
            if self.in_piece == self.size {
                let piece = std::mem::take(&mut self.piece);
                self.digests.extend(piece.finish_128().to_be_bytes());
                self.in_piece = 0;
            }
        }
    }

    /// The checksum, lowercase hex.
    fn finish(mut self) -> String {
        if self.in_piece > 0 {
            self.digests.extend(self.piece.finish_128().to_be_bytes());
        }
        of_pieces(&self.digests)
    }
}

/// The digest of piece `at` of `data` (pieces of `size` bytes).
fn piece_digest(data: &[u8], size: usize, at: usize) -> [u8; 16] {
    let start = (at * size).min(data.len());
    let end = start.saturating_add(size).min(data.len());
    XxHash3_128::oneshot(&data[start..end]).to_be_bytes()
}

/// The checksum of a file from its pieces' digests, in order (none: an empty file).
fn of_pieces(digests: &[u8]) -> String {
    let empty = XxHash3_128::oneshot(&[]).to_be_bytes();
    let digests = if digests.is_empty() {
        &empty[..]
    } else {
        digests
    };
    format!("{:032x}", XxHash3_128::oneshot(digests))
}

/// A writer that hashes and counts what goes through it.
struct Hashing<W> {
    inner: W,
    hasher: PieceHasher,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The files of a snapshot being read, each checked against the manifest before it is parsed.
#[derive(Debug)]
struct Folder {
    dir: PathBuf,
    /// Each checked file, mapped: record batches are decoded over it without a copy (Arrow's
    /// `FileDecoder`), and the cube's columns stay Arrow buffers over it.
    bytes: BTreeMap<String, arrow::buffer::Buffer>,
}

impl Folder {
    /// Maps every file of the manifest and checks its size and checksum, on every core (the
    /// pieces of a large file too); the first file at fault, in name order, is the error.
    fn verify(dir: &Path, files: &BTreeMap<String, FileEntry>) -> Result<Folder> {
        let listed: Vec<(&String, &FileEntry)> = files.iter().collect();
        // Mapped, their sizes checked (and a format 3 file's sha256, whole).
        let mapped = on_every_core(&listed, |(name, entry)| {
            let path = dir.join(name);
            if Path::new(name).file_name() != Some(name.as_ref()) {
                return Err(bad(
                    &path,
                    "is not a file of the snapshot folder".to_string(),
                ));
            }
            let data = map_file(&path)?;
            check_size(&path, &data, entry)?;
            if entry.xxh3_128.is_none() {
                check_sha256(&path, &data, entry)?;
            }
            Ok(data)
        });
        let mapped: Vec<Result<arrow::buffer::Buffer>> = listed
            .iter()
            .zip(mapped)
            .map(|((name, _), r)| {
                r.unwrap_or_else(|| Err(bad(&dir.join(name), "could not be read".to_string())))
            })
            .collect();
        // Every piece of every file hashed, on every core.
        let pieces: Vec<(usize, usize)> = mapped
            .iter()
            .enumerate()
            .filter(|(i, data)| data.is_ok() && listed[*i].1.xxh3_128.is_some())
            .flat_map(|(i, data)| {
                let len = data.as_ref().map_or(0, |d| d.len());
                (0..len.div_ceil(PIECE)).map(move |p| (i, p))
            })
            .collect();
        let digests = on_every_core(&pieces, |&(i, p)| match &mapped[i] {
            Ok(data) => piece_digest(data, PIECE, p).to_vec(),
            Err(_) => Vec::new(),
        });
        let mut of_file: Vec<Vec<u8>> = vec![Vec::new(); listed.len()];
        for (&(i, _), digest) in pieces.iter().zip(digests) {
            // A piece whose worker panicked leaves its file's checksum wrong: refused below.
            of_file[i].extend(digest.unwrap_or_default());
        }
        let mut bytes = BTreeMap::new();
        for (((name, entry), data), digests) in listed.iter().zip(mapped).zip(of_file) {
            let data = data?;
            if let Some(recorded) = &entry.xxh3_128 {
                mismatch(&dir.join(name), "xxh3_128", &of_pieces(&digests), recorded)?;
            }
            bytes.insert((*name).clone(), data);
        }
        Ok(Folder {
            dir: dir.to_path_buf(),
            bytes,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The one record batch of the checked file `name`, its arrays over the file's bytes.
    fn batch(&self, name: &str) -> Result<RecordBatch> {
        use arrow::ipc::reader::{FileDecoder, read_footer_length};
        let path = self.path(name);
        let data = self
            .bytes
            .get(name)
            .ok_or_else(|| bad(&path, "is not listed in the manifest".to_string()))?;
        let arrow_err = |e: arrow::error::ArrowError| bad(&path, format!("arrow: {e}"));
        let malformed = || bad(&path, "is not an Arrow IPC file".to_string());
        let trailer = data.len().checked_sub(10).ok_or_else(malformed)?;
        let tail: [u8; 10] = data[trailer..].try_into().map_err(|_| malformed())?;
        let footer_len = read_footer_length(tail).map_err(arrow_err)?;
        let footer_at = trailer.checked_sub(footer_len).ok_or_else(malformed)?;
        let footer = arrow::ipc::root_as_footer(&data[footer_at..trailer])
            .map_err(|e| bad(&path, format!("arrow footer: {e}")))?;
        let schema = footer
            .schema()
            .map(arrow::ipc::convert::fb_to_schema)
            .ok_or_else(malformed)?;
        let mut decoder = FileDecoder::new(Arc::new(schema), footer.version());
        let block_data = |block: &arrow::ipc::Block| {
            let offset = usize::try_from(block.offset()).map_err(|_| malformed())?;
            let len = usize::try_from(block.bodyLength())
                .ok()
                .and_then(|b| b.checked_add(usize::try_from(block.metaDataLength()).ok()?))
                .ok_or_else(malformed)?;
            match offset.checked_add(len) {
                Some(end) if end <= data.len() => Ok(data.slice_with_length(offset, len)),
                _ => Err(malformed()),
            }
        };
        for block in footer.dictionaries().iter().flatten() {
            decoder
                .read_dictionary(block, &block_data(block)?)
                .map_err(arrow_err)?;
        }
        let blocks = footer.recordBatches().ok_or_else(malformed)?;
        if blocks.len() != 1 {
            return Err(bad(
                &path,
                format!("holds {} record batches, not 1", blocks.len()),
            ));
        }
        let block = blocks.get(0);
        decoder
            .read_record_batch(block, &block_data(block)?)
            .map_err(arrow_err)?
            .ok_or_else(malformed)
    }
}

/// `f` of every item, on every core (the items dealt out in turn), in the items' order; `None`
/// for an item whose worker panicked.
fn on_every_core<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<Option<R>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, items.len().max(1));
    let mut results: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let f = &f;
                scope.spawn(move || {
                    (w..items.len())
                        .step_by(workers)
                        .map(|i| (i, f(&items[i])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            for (i, r) in handle.join().unwrap_or_default() {
                results[i] = Some(r);
            }
        }
    });
    results
}

/// The file at `path`, memory-mapped read-only, as an Arrow buffer that keeps the mapping while
/// any column of it lives. Its pages are read in as the checksum reads them, on every core.
#[allow(unsafe_code)]
fn map_file(path: &Path) -> Result<arrow::buffer::Buffer> {
    let file = File::open(path).map_err(|e| io(path, e))?;
    if file.metadata().map_err(|e| io(path, e))?.len() == 0 {
        // A mapping may not be empty; the size check reports the file.
        return Ok(arrow::buffer::Buffer::from_vec(Vec::<u8>::new()));
    }
    // SAFETY: a mapping is undefined behaviour if the file changes under it. Snapshot files
    // never do: a writer makes them under a temporary folder name and renames the folder into
    // place, and nothing writes into a published snapshot; removing an old one (which a reader
    // may still map) unlinks its files, which leaves a mapping intact. What a person or a fault
    // does to the bytes on disk before they are read in is what the checksum catches.
    let map = unsafe { memmap2::MmapOptions::new().map(&file) }.map_err(|e| io(path, e))?;
    Ok(arrow::buffer::Buffer::from(bytes::Bytes::from_owner(map)))
}

fn check_size(path: &Path, data: &[u8], entry: &FileEntry) -> Result<()> {
    if data.len() as u64 != entry.bytes {
        return Err(bad(
            path,
            format!(
                "is {} bytes where the manifest says {}: truncated or replaced",
                data.len(),
                entry.bytes
            ),
        ));
    }
    Ok(())
}

/// A format 3 file's checksum, its bytes' sha256 (one without is refused).
fn check_sha256(path: &Path, data: &[u8], entry: &FileEntry) -> Result<()> {
    let Some(recorded) = &entry.sha256 else {
        return Err(bad(
            path,
            "has no checksum in the manifest (neither xxh3_128 nor sha256)".to_string(),
        ));
    };
    mismatch(path, "sha256", &hex(&Sha256::digest(data)), recorded)
}

fn mismatch(path: &Path, kind: &str, found: &str, recorded: &str) -> Result<()> {
    if found != recorded {
        return Err(bad(
            path,
            format!(
                "checksum mismatch ({kind} {found}, the manifest says {recorded}): the file is \
                 corrupt"
            ),
        ));
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn io(path: &Path, source: std::io::Error) -> EngineError {
    EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A snapshot error about `path`.
fn bad(path: &Path, message: String) -> EngineError {
    EngineError::Snapshot {
        path: path.to_path_buf(),
        message,
    }
}
