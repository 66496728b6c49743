//! [`SimStorage`]: an in-memory disk that keeps the durable image apart from the volatile one,
//! for power-loss tests and fast fuzzing.
//!
//! Model (the contract of [`super`], and nothing more generous):
//! - Every file is an inode with its *volatile* bytes (what reads see) and its *durable* bytes
//!   (what a power cut keeps). `sync_data`/`sync_all` copies the volatile bytes into the durable
//!   ones. Writes and length changes since the last sync are logged, in order.
//! - Every directory is an inode with its volatile entries (name -> inode) and its durable
//!   entries. `sync_dir` copies the volatile entries into the durable ones. Creations, renames
//!   and removals since the last sync are logged, in order.
//! - [`SimStorage::restart`] builds the disk a machine would find after a power cut: the durable
//!   tree from the root. In [`CutMode::Torn`] it also keeps a random subset of the logged,
//!   unsynced changes: each write's 4 KiB pages independently, each length change and each
//!   directory change independently (a rename whole or not at all). So an unsynced rename may
//!   survive while an earlier one is lost, as on real file systems.
//! - A cut ([`SimStorage::set_cut_after`] or [`SimStorage::cut_power`]) makes the disk refuse
//!   every later call: the machine is off. What the workload did before is what `restart` sees.
//!
//! Cut points count the calls that change something (open with create, write, set_len, sync,
//! rename, remove, create and remove of directories); reads are not cut points, since a cut
//! before a read equals a cut after the last change.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io;
use std::mem;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{
    DirEntry, EntryKind, FileBytes, FileRef, Metadata, OpenMode, Storage, StorageFile, StorageLock,
    SyncSite,
};

/// Granularity of torn writes: a page is kept whole or lost whole.
const PAGE_BYTES: u64 = 4096;

/// What a power cut keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutMode {
    /// Only what was synced.
    Durable,
    /// What was synced, plus a random subset of what was not: pages of unsynced writes, unsynced
    /// length changes and unsynced directory entries, each kept or lost independently.
    Torn,
}

/// Counters of a [`SimStorage`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStorageStats {
    /// Calls that changed something (the cut points so far).
    pub mutations: u64,
    /// Syncs of files and directories that made something durable.
    pub syncs: u64,
    /// Syncs skipped because their site was disabled.
    pub skipped_syncs: u64,
    /// Bytes written.
    pub bytes_written: u64,
}

type Inode = u64;

const ROOT: Inode = 0;

#[derive(Clone, Debug)]
enum FileChange {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Clone, Debug)]
enum DirChange {
    Insert(String, Inode),
    Remove(String),
    /// A rename within this directory: atomic.
    Rename {
        from: String,
        to: String,
    },
}

#[derive(Clone, Debug, Default)]
struct FileNode {
    volatile: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<FileChange>,
}

impl FileNode {
    /// Makes the volatile bytes durable. Every change to `volatile` is logged in `unsynced`,
    /// so replaying the log onto `durable` yields `volatile`: a sync costs the bytes written
    /// since the last one, not the file's size (a translog generation is preallocated to
    /// megabytes and synced after every write).
    fn sync(&mut self) {
        for change in self.unsynced.drain(..) {
            match change {
                FileChange::SetLen(len) => self.durable.resize(len as usize, 0),
                FileChange::Write { offset, bytes } => {
                    let start = offset as usize;
                    let end = start + bytes.len();
                    if self.durable.len() < end {
                        self.durable.resize(end, 0);
                    }
                    self.durable[start..end].copy_from_slice(&bytes);
                }
            }
        }
        debug_assert!(
            self.durable == self.volatile,
            "a change to a file was not logged"
        );
    }
}

#[derive(Clone, Debug, Default)]
struct DirNode {
    volatile: BTreeMap<String, Inode>,
    durable: BTreeMap<String, Inode>,
    unsynced: Vec<DirChange>,
}

#[derive(Clone, Debug)]
enum Node {
    File(FileNode),
    Dir(DirNode),
}

/// One change to the disk: what every mutating call is turned into before it is applied, and
/// what a journal records, so that replaying a journal rebuilds the same disk (inode numbers
/// included: they are handed out in order).
#[derive(Clone, Debug)]
pub(super) enum Change {
    CreateFile {
        dir: Inode,
        name: String,
    },
    Truncate {
        file: Inode,
    },
    Write {
        file: Inode,
        offset: u64,
        bytes: Vec<u8>,
    },
    SetLen {
        file: Inode,
        len: u64,
    },
    SyncFile {
        file: Inode,
        site: SyncSite,
    },
    Rename {
        from_dir: Inode,
        from: String,
        to_dir: Inode,
        to: String,
    },
    Remove {
        dir: Inode,
        name: String,
    },
    CreateDir {
        dir: Inode,
        name: String,
    },
    SyncDir {
        dir: Inode,
        site: SyncSite,
    },
}

/// The changes a [`SimStorage`] recorded (see [`SimStorage::record_journal`]), to rebuild the
/// disk as it was after any number of them ([`SimStorage::replay`]).
#[derive(Clone, Debug, Default)]
pub struct SimJournal {
    changes: Arc<Vec<Change>>,
}

impl SimJournal {
    /// The number of changes: the cut points of the recorded run.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

#[derive(Debug)]
struct State {
    nodes: HashMap<Inode, Node>,
    /// The changes applied so far, when recording.
    journal: Option<Vec<Change>>,
    /// The process using the disk: handles of an earlier one (killed by
    /// [`SimStorage::crash_process`]) fail.
    epoch: u64,
    next_inode: Inode,
    /// Mutating calls left before the power goes; `None`: no cut planned.
    cut_after: Option<u64>,
    cut: bool,
    disabled: HashSet<SyncSite>,
    locks: HashSet<PathBuf>,
    stats: SimStorageStats,
}

/// The simulated disk (see the module documentation). A cheap handle: clones share the disk.
#[derive(Clone)]
pub struct SimStorage {
    state: Arc<Mutex<State>>,
    /// The process this handle belongs to.
    epoch: u64,
}

impl fmt::Debug for SimStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimStorage").finish_non_exhaustive()
    }
}

impl Default for SimStorage {
    fn default() -> Self {
        SimStorage::new()
    }
}

fn power_off() -> io::Error {
    io::Error::other("simulated power loss: the disk is off")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

fn not_a_directory(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotADirectory,
        format!("{}: not a directory", path.display()),
    )
}

/// The normal components of `path` (`/a/./b` -> `[a, b]`); `..` is refused (Tandem never
/// writes one, and it would need a parent map).
fn components(path: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::Normal(name) => names.push(
                name.to_str()
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidInput, "a path must be UTF-8")
                    })?
                    .to_owned(),
            ),
            Component::ParentDir => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the simulated disk does not follow `..`",
                ))
            }
        }
    }
    Ok(names)
}

impl State {
    fn dir(&self, inode: Inode) -> Option<&DirNode> {
        match self.nodes.get(&inode) {
            Some(Node::Dir(dir)) => Some(dir),
            _ => None,
        }
    }

    fn dir_mut(&mut self, inode: Inode) -> Option<&mut DirNode> {
        match self.nodes.get_mut(&inode) {
            Some(Node::Dir(dir)) => Some(dir),
            _ => None,
        }
    }

    fn file(&self, inode: Inode) -> io::Result<&FileNode> {
        match self.nodes.get(&inode) {
            Some(Node::File(file)) => Ok(file),
            _ => Err(io::Error::other("a file handle names no file")),
        }
    }

    fn is_file(&self, inode: Inode) -> bool {
        matches!(self.nodes.get(&inode), Some(Node::File(_)))
    }

    /// Refuses a call when the power is off or the calling process was killed.
    fn read_check(&self, epoch: u64) -> io::Result<()> {
        if self.cut {
            Err(power_off())
        } else if epoch != self.epoch {
            Err(io::Error::other(
                "simulated process crash: this process was killed",
            ))
        } else {
            Ok(())
        }
    }

    /// Makes one mutating call: refuses it when the power is (or now goes) off, else records
    /// and applies `change`. Returns the inode a creation made.
    fn commit(&mut self, epoch: u64, change: Change) -> io::Result<Inode> {
        self.read_check(epoch)?;
        if let Some(left) = self.cut_after.as_mut() {
            if *left == 0 {
                self.cut = true;
                return Err(power_off());
            }
            *left -= 1;
        }
        self.stats.mutations += 1;
        let inode = self.apply(&change);
        if let Some(journal) = self.journal.as_mut() {
            journal.push(change);
        }
        Ok(inode)
    }

    /// Applies `change` (checked by the caller, or replayed from a journal of checked ones).
    fn apply(&mut self, change: &Change) -> Inode {
        match change {
            Change::CreateFile { dir, name } => {
                let inode = self.new_inode(Node::File(FileNode::default()));
                self.insert_entry(*dir, name.clone(), inode);
                inode
            }
            Change::CreateDir { dir, name } => {
                let inode = self.new_inode(Node::Dir(DirNode::default()));
                self.insert_entry(*dir, name.clone(), inode);
                inode
            }
            Change::Truncate { file } => {
                if let Some(Node::File(node)) = self.nodes.get_mut(file) {
                    node.volatile.clear();
                    node.unsynced.push(FileChange::SetLen(0));
                }
                *file
            }
            Change::Write {
                file,
                offset,
                bytes,
            } => {
                self.stats.bytes_written += bytes.len() as u64;
                if let Some(Node::File(node)) = self.nodes.get_mut(file) {
                    let start = *offset as usize;
                    let end = start + bytes.len();
                    if node.volatile.len() < end {
                        node.volatile.resize(end, 0);
                    }
                    node.volatile[start..end].copy_from_slice(bytes);
                    node.unsynced.push(FileChange::Write {
                        offset: *offset,
                        bytes: bytes.clone(),
                    });
                }
                *file
            }
            Change::SetLen { file, len } => {
                if let Some(Node::File(node)) = self.nodes.get_mut(file) {
                    node.volatile.resize(*len as usize, 0);
                    node.unsynced.push(FileChange::SetLen(*len));
                }
                *file
            }
            Change::SyncFile { file, site } => {
                if self.disabled.contains(site) {
                    self.stats.skipped_syncs += 1;
                } else if let Some(Node::File(node)) = self.nodes.get_mut(file) {
                    self.stats.syncs += 1;
                    node.sync();
                }
                *file
            }
            Change::SyncDir { dir, site } => {
                if self.disabled.contains(site) {
                    self.stats.skipped_syncs += 1;
                } else if let Some(Node::Dir(node)) = self.nodes.get_mut(dir) {
                    self.stats.syncs += 1;
                    node.durable.clone_from(&node.volatile);
                    node.unsynced.clear();
                }
                *dir
            }
            Change::Rename {
                from_dir,
                from,
                to_dir,
                to,
            } => {
                let inode = self
                    .dir(*from_dir)
                    .and_then(|dir| dir.volatile.get(from).copied())
                    .unwrap_or(ROOT);
                if from_dir == to_dir {
                    if let Some(dir) = self.dir_mut(*from_dir) {
                        dir.volatile.remove(from);
                        dir.volatile.insert(to.clone(), inode);
                        dir.unsynced.push(DirChange::Rename {
                            from: from.clone(),
                            to: to.clone(),
                        });
                    }
                } else {
                    self.remove_entry(*from_dir, from);
                    self.insert_entry(*to_dir, to.clone(), inode);
                }
                inode
            }
            Change::Remove { dir, name } => {
                // The entry goes; the inode stays (open handles keep working) and is
                // unreachable unless the removal is lost in a cut.
                self.remove_entry(*dir, name);
                *dir
            }
        }
    }

    /// The inode at `path` in the volatile tree.
    fn resolve(&self, path: &Path) -> io::Result<Inode> {
        let mut inode = ROOT;
        for name in components(path)? {
            let dir = self.dir(inode).ok_or_else(|| not_a_directory(path))?;
            inode = *dir.volatile.get(&name).ok_or_else(|| not_found(path))?;
        }
        Ok(inode)
    }

    /// The directory inode holding `path` and the last name of `path`.
    fn parent_of(&self, path: &Path) -> io::Result<(Inode, String)> {
        let mut names = components(path)?;
        let name = names
            .pop()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the root has no parent"))?;
        let mut inode = ROOT;
        for part in names {
            let dir = self.dir(inode).ok_or_else(|| not_a_directory(path))?;
            inode = *dir.volatile.get(&part).ok_or_else(|| not_found(path))?;
        }
        if self.dir(inode).is_none() {
            return Err(not_a_directory(path));
        }
        Ok((inode, name))
    }

    fn new_inode(&mut self, node: Node) -> Inode {
        let inode = self.next_inode;
        self.next_inode += 1;
        self.nodes.insert(inode, node);
        inode
    }

    fn insert_entry(&mut self, dir: Inode, name: String, inode: Inode) {
        if let Some(dir) = self.dir_mut(dir) {
            dir.volatile.insert(name.clone(), inode);
            dir.unsynced.push(DirChange::Insert(name, inode));
        }
    }

    fn remove_entry(&mut self, dir: Inode, name: &str) {
        if let Some(dir) = self.dir_mut(dir) {
            dir.volatile.remove(name);
            dir.unsynced.push(DirChange::Remove(name.to_owned()));
        }
    }

    fn empty() -> State {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::Dir(DirNode::default()));
        State {
            nodes,
            journal: None,
            epoch: 0,
            next_inode: ROOT + 1,
            cut_after: None,
            cut: false,
            disabled: HashSet::new(),
            locks: HashSet::new(),
            stats: SimStorageStats::default(),
        }
    }
}

impl SimStorage {
    /// An empty disk holding only the root directory.
    pub fn new() -> SimStorage {
        SimStorage {
            state: Arc::new(Mutex::new(State::empty())),
            epoch: 0,
        }
    }

    /// This disk as a [`StorageRef`](super::StorageRef).
    pub fn as_storage(&self) -> super::StorageRef {
        Arc::new(self.clone())
    }

    /// Records every change from now on (see [`SimStorage::take_journal`]).
    pub fn record_journal(&self) {
        self.state.lock().journal.get_or_insert_with(Vec::new);
    }

    /// The changes recorded since [`SimStorage::record_journal`] (recording goes on, afresh).
    pub fn take_journal(&self) -> SimJournal {
        let mut state = self.state.lock();
        let changes = state.journal.as_mut().map(mem::take).unwrap_or_default();
        SimJournal {
            changes: Arc::new(changes),
        }
    }

    /// Applies the changes `range` of `journal` to this disk, as the recorded run made them
    /// (this disk must be where that run was when it made the first of them: a new disk for
    /// `0..`, or one that replayed the changes before). Disabled sites stay disabled.
    pub fn replay(&self, journal: &SimJournal, range: std::ops::Range<usize>) {
        let mut state = self.state.lock();
        for change in &journal.changes[range] {
            state.apply(change);
            state.stats.mutations += 1;
        }
    }

    /// Plans a power cut: the next `calls` mutating calls succeed, and the one after fails,
    /// as does every call after it.
    pub fn set_cut_after(&self, calls: u64) {
        self.state.lock().cut_after = Some(calls);
    }

    /// Kills the process using the disk (`kill -9`): every handle of this disk made so far
    /// fails from now on, its locks are released, and nothing is lost: what it wrote stays
    /// readable (and no more durable than it was). Returns the disk for the next process.
    pub fn crash_process(&self) -> SimStorage {
        let mut state = self.state.lock();
        state.epoch += 1;
        state.locks.clear();
        SimStorage {
            state: self.state.clone(),
            epoch: state.epoch,
        }
    }

    /// Cuts the power now.
    pub fn cut_power(&self) {
        self.state.lock().cut = true;
    }

    /// True once the power is off.
    pub fn is_cut(&self) -> bool {
        self.state.lock().cut
    }

    /// Turns the sync site `site` into a no-op that reports success (the test switch of the
    /// module documentation).
    pub fn disable_sync(&self, site: SyncSite) {
        self.state.lock().disabled.insert(site);
    }

    /// The counters so far.
    pub fn stats(&self) -> SimStorageStats {
        self.state.lock().stats
    }

    /// Cuts the power (if it is still on) and returns the disk a restarted machine finds: the
    /// durable image, plus in [`CutMode::Torn`] a subset of the unsynced changes drawn from
    /// `seed`. The new disk is powered on, has no cut planned and records no journal; sites
    /// disabled stay disabled (the restarted machine runs the same code).
    pub fn restart(&self, mode: CutMode, seed: u64) -> SimStorage {
        let mut state = self.state.lock();
        state.cut = true;
        self.survivor(&state, mode, seed)
    }

    /// The disk a power cut now would leave, without cutting this one (for a replayed disk
    /// that goes on to the next cut point).
    pub fn snapshot_after_cut(&self, mode: CutMode, seed: u64) -> SimStorage {
        let state = self.state.lock();
        self.survivor(&state, mode, seed)
    }

    /// The disk a process killed now (`kill -9`) leaves to the next one, without touching this
    /// one: everything written stays readable, and only what was synced is durable (a power
    /// cut of the returned disk still loses the rest).
    pub fn snapshot_after_process_crash(&self) -> SimStorage {
        let state = self.state.lock();
        let mut copy = State::empty();
        copy.nodes = state.nodes.clone();
        copy.next_inode = state.next_inode;
        copy.disabled = state.disabled.clone();
        SimStorage {
            state: Arc::new(Mutex::new(copy)),
            epoch: 0,
        }
    }

    fn survivor(&self, state: &State, mode: CutMode, seed: u64) -> SimStorage {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut nodes = HashMap::new();
        // Walk the tree the machine finds from the root, and give every inode reached its
        // surviving content. An inode reached twice (a rename kept in one directory and its
        // removal lost in another) is shared, as a hard link would be.
        let mut pending = vec![ROOT];
        let mut seen = HashSet::new();
        while let Some(inode) = pending.pop() {
            if !seen.insert(inode) {
                continue;
            }
            let Some(node) = state.nodes.get(&inode) else {
                continue;
            };
            let survived = match node {
                Node::File(file) => Node::File(survive_file(file, mode, &mut rng)),
                Node::Dir(dir) => {
                    let entries = survive_dir(dir, mode, &mut rng);
                    pending.extend(entries.values().copied());
                    Node::Dir(DirNode {
                        volatile: entries.clone(),
                        durable: entries,
                        unsynced: Vec::new(),
                    })
                }
            };
            nodes.insert(inode, survived);
        }
        let mut survivor = State::empty();
        survivor.nodes = nodes;
        survivor.next_inode = state.next_inode;
        // The restarted machine runs the same code: a disabled site stays disabled.
        survivor.disabled = state.disabled.clone();
        SimStorage {
            state: Arc::new(Mutex::new(survivor)),
            epoch: 0,
        }
    }
}

fn survive_file(file: &FileNode, mode: CutMode, rng: &mut StdRng) -> FileNode {
    let mut bytes = file.durable.clone();
    if mode == CutMode::Torn {
        for change in &file.unsynced {
            match change {
                FileChange::SetLen(len) => {
                    if rng.random_bool(0.5) {
                        bytes.resize(*len as usize, 0);
                    }
                }
                FileChange::Write {
                    offset,
                    bytes: data,
                } => {
                    let end = offset + data.len() as u64;
                    let mut page_start = *offset;
                    while page_start < end {
                        let page_end = ((page_start / PAGE_BYTES + 1) * PAGE_BYTES).min(end);
                        if rng.random_bool(0.5) {
                            let (from, to) = (page_start as usize, page_end as usize);
                            if bytes.len() < to {
                                bytes.resize(to, 0);
                            }
                            let source = (page_start - offset) as usize;
                            bytes[from..to].copy_from_slice(&data[source..source + (to - from)]);
                        }
                        page_start = page_end;
                    }
                }
            }
        }
    }
    FileNode {
        volatile: bytes.clone(),
        durable: bytes,
        unsynced: Vec::new(),
    }
}

fn survive_dir(dir: &DirNode, mode: CutMode, rng: &mut StdRng) -> BTreeMap<String, Inode> {
    let mut entries = dir.durable.clone();
    if mode == CutMode::Torn {
        // Replaying a change on the durable entries needs the inode a kept rename moves: the
        // volatile state at that point, tracked alongside.
        let mut replay = dir.durable.clone();
        for change in &dir.unsynced {
            let keep = rng.random_bool(0.5);
            match change {
                DirChange::Insert(name, inode) => {
                    replay.insert(name.clone(), *inode);
                    if keep {
                        entries.insert(name.clone(), *inode);
                    }
                }
                DirChange::Remove(name) => {
                    replay.remove(name);
                    if keep {
                        entries.remove(name);
                    }
                }
                DirChange::Rename { from, to } => {
                    if let Some(inode) = replay.remove(from) {
                        replay.insert(to.clone(), inode);
                        if keep {
                            entries.remove(from);
                            entries.insert(to.clone(), inode);
                        }
                    }
                }
            }
        }
    }
    entries
}

/// An open file of a [`SimStorage`].
struct SimFile {
    state: Arc<Mutex<State>>,
    epoch: u64,
    inode: Inode,
    writable: bool,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile")
            .field("inode", &self.inode)
            .finish_non_exhaustive()
    }
}

fn read_only() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "the file was opened read only",
    )
}

fn is_a_directory(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::IsADirectory,
        format!("{}: is a directory", path.display()),
    )
}

fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "beyond what the simulated disk holds in memory",
    )
}

impl SimFile {
    fn sync(&self, site: SyncSite) -> io::Result<()> {
        self.state.lock().commit(
            self.epoch,
            Change::SyncFile {
                file: self.inode,
                site,
            },
        )?;
        Ok(())
    }
}

impl StorageFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let state = self.state.lock();
        state.read_check(self.epoch)?;
        let file = state.file(self.inode)?;
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        if start >= file.volatile.len() {
            return Ok(0);
        }
        let count = buf.len().min(file.volatile.len() - start);
        buf[..count].copy_from_slice(&file.volatile[start..start + count]);
        Ok(count)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !self.writable {
            return Err(read_only());
        }
        if usize::try_from(offset + buf.len() as u64).is_err() {
            return Err(too_large());
        }
        self.state.lock().commit(
            self.epoch,
            Change::Write {
                file: self.inode,
                offset,
                bytes: buf.to_vec(),
            },
        )?;
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let state = self.state.lock();
        state.read_check(self.epoch)?;
        Ok(state.file(self.inode)?.volatile.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if !self.writable {
            return Err(read_only());
        }
        if usize::try_from(len).is_err() {
            return Err(too_large());
        }
        self.state.lock().commit(
            self.epoch,
            Change::SetLen {
                file: self.inode,
                len,
            },
        )?;
        Ok(())
    }

    fn sync_data(&self, site: SyncSite) -> io::Result<()> {
        self.sync(site)
    }

    fn sync_all(&self, site: SyncSite) -> io::Result<()> {
        self.sync(site)
    }
}

/// A held lock of the simulated disk.
struct SimLock {
    state: Arc<Mutex<State>>,
    epoch: u64,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self.state.lock();
        // A killed process's locks went with it; the name may be another's now.
        if state.epoch == self.epoch {
            state.locks.remove(&self.path);
        }
    }
}

impl Storage for SimStorage {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        let mut state = self.state.lock();
        state.read_check(self.epoch)?;
        let existing = match state.resolve(path) {
            Ok(inode) => Some(inode),
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => return Err(error),
        };
        if existing.is_some_and(|inode| !state.is_file(inode)) {
            return Err(is_a_directory(path));
        }
        let inode = match (mode, existing) {
            (OpenMode::Read | OpenMode::ReadWrite, None) => return Err(not_found(path)),
            (OpenMode::Read | OpenMode::ReadWrite, Some(inode)) => inode,
            (OpenMode::CreateNew, Some(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{}: exists", path.display()),
                ))
            }
            (OpenMode::CreateTruncate, Some(inode)) => {
                state.commit(self.epoch, Change::Truncate { file: inode })?
            }
            (OpenMode::CreateNew | OpenMode::CreateTruncate, None) => {
                let (dir, name) = state.parent_of(path)?;
                state.commit(self.epoch, Change::CreateFile { dir, name })?
            }
        };
        Ok(Box::new(SimFile {
            state: self.state.clone(),
            epoch: self.epoch,
            inode,
            writable: mode != OpenMode::Read,
        }))
    }

    fn map(&self, path: &Path) -> io::Result<FileBytes> {
        let state = self.state.lock();
        state.read_check(self.epoch)?;
        let inode = state.resolve(path)?;
        let file = state.file(inode).map_err(|_| is_a_directory(path))?;
        Ok(FileBytes::Owned(file.volatile.as_slice().into()))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.read_check(self.epoch)?;
        let (from_dir, from) = state.parent_of(from)?;
        let (to_dir, to_name) = state.parent_of(to)?;
        if state
            .dir(from_dir)
            .is_none_or(|dir| !dir.volatile.contains_key(&from))
        {
            return Err(not_found(Path::new(&from)));
        }
        state.commit(
            self.epoch,
            Change::Rename {
                from_dir,
                from,
                to_dir,
                to: to_name,
            },
        )?;
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.read_check(self.epoch)?;
        let (dir, name) = state.parent_of(path)?;
        let inode = state.resolve(path)?;
        if !state.is_file(inode) {
            return Err(is_a_directory(path));
        }
        state.commit(self.epoch, Change::Remove { dir, name })?;
        Ok(())
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.read_check(self.epoch)?;
        let (dir, name) = state.parent_of(path)?;
        if state
            .dir(dir)
            .is_some_and(|node| node.volatile.contains_key(&name))
        {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: exists", path.display()),
            ));
        }
        state.commit(self.epoch, Change::CreateDir { dir, name })?;
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.read_check(self.epoch)?;
        let (dir, name) = state.parent_of(path)?;
        let inode = state.resolve(path)?;
        if state.dir(inode).is_none() {
            return Err(not_a_directory(path));
        }
        state.commit(self.epoch, Change::Remove { dir, name })?;
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let state = self.state.lock();
        state.read_check(self.epoch)?;
        let inode = state.resolve(dir)?;
        let node = state.dir(inode).ok_or_else(|| not_a_directory(dir))?;
        Ok(node
            .volatile
            .iter()
            .map(|(name, child)| DirEntry {
                name: name.clone(),
                kind: if state.is_file(*child) {
                    EntryKind::File
                } else {
                    EntryKind::Dir
                },
            })
            .collect())
    }

    fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        let state = self.state.lock();
        state.read_check(self.epoch)?;
        let inode = state.resolve(path)?;
        Ok(match state.file(inode) {
            Ok(file) => Metadata {
                kind: EntryKind::File,
                len: file.volatile.len() as u64,
            },
            Err(_) => Metadata {
                kind: EntryKind::Dir,
                len: 0,
            },
        })
    }

    fn sync_dir(&self, dir: &Path, site: SyncSite) -> io::Result<()> {
        let mut state = self.state.lock();
        state.read_check(self.epoch)?;
        let inode = state.resolve(dir)?;
        if state.dir(inode).is_none() {
            return Err(not_a_directory(dir));
        }
        state.commit(self.epoch, Change::SyncDir { dir: inode, site })?;
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<StorageLock>> {
        let mut state = self.state.lock();
        state.read_check(self.epoch)?;
        let key = PathBuf::from_iter(components(path)?);
        if !state.locks.insert(key.clone()) {
            return Ok(None);
        }
        Ok(Some(Box::new(SimLock {
            state: self.state.clone(),
            epoch: self.epoch,
            path: key,
        })))
    }

    fn disk_space(&self, _path: &Path) -> io::Result<Option<super::DiskSpace>> {
        self.state.lock().read_check(self.epoch)?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_file(storage: &SimStorage, path: &str, bytes: &[u8], sync: bool) {
        let file = storage
            .open(Path::new(path), OpenMode::CreateTruncate)
            .unwrap();
        file.write_all_at(bytes, 0).unwrap();
        if sync {
            file.sync_data(SyncSite::StateFileContent).unwrap();
        }
    }

    #[test]
    fn only_synced_data_and_synced_entries_survive_a_cut() {
        let disk = SimStorage::new();
        disk.create_dir(Path::new("/d")).unwrap();
        disk.sync_dir(Path::new("/"), SyncSite::CreateDir).unwrap();
        write_file(&disk, "/d/synced", b"kept", true);
        write_file(&disk, "/d/unsynced", b"lost", false);
        disk.sync_dir(Path::new("/d"), SyncSite::StateFileRename)
            .unwrap();
        write_file(&disk, "/d/no-entry", b"lost", true);
        let file = disk
            .open(Path::new("/d/synced"), OpenMode::ReadWrite)
            .unwrap();
        file.write_all_at(b"more", 4).unwrap();

        let after = disk.restart(CutMode::Durable, 1);
        assert_eq!(after.read(Path::new("/d/synced")).unwrap(), b"kept");
        assert_eq!(after.read(Path::new("/d/unsynced")).unwrap(), b"");
        assert!(!after.exists(Path::new("/d/no-entry")).unwrap());
        assert!(disk.is_cut());
        assert!(file.write_all_at(b"x", 0).is_err(), "the old disk is off");
    }

    #[test]
    fn a_cut_after_n_mutations_refuses_everything_after() {
        let disk = SimStorage::new();
        disk.set_cut_after(2);
        disk.create_dir(Path::new("/a")).unwrap();
        disk.create_dir(Path::new("/b")).unwrap();
        assert!(disk.create_dir(Path::new("/c")).is_err());
        assert!(disk.list(Path::new("/")).is_err(), "reads fail too");
        assert_eq!(disk.stats().mutations, 2);
    }

    #[test]
    fn a_renamed_file_survives_only_after_its_directory_is_synced() {
        let disk = SimStorage::new();
        write_file(&disk, "/state", b"old", true);
        disk.sync_dir(Path::new("/"), SyncSite::StateFileRename)
            .unwrap();
        write_file(&disk, "/state.tmp", b"new", true);
        disk.rename(Path::new("/state.tmp"), Path::new("/state"))
            .unwrap();
        assert_eq!(disk.read(Path::new("/state")).unwrap(), b"new");
        let before_sync = disk.restart(CutMode::Durable, 7);
        assert_eq!(before_sync.read(Path::new("/state")).unwrap(), b"old");

        write_file(&before_sync, "/state.tmp", b"new", true);
        before_sync
            .rename(Path::new("/state.tmp"), Path::new("/state"))
            .unwrap();
        before_sync
            .sync_dir(Path::new("/"), SyncSite::StateFileRename)
            .unwrap();
        let after_sync = before_sync.restart(CutMode::Durable, 7);
        assert_eq!(after_sync.read(Path::new("/state")).unwrap(), b"new");
        assert!(!after_sync.exists(Path::new("/state.tmp")).unwrap());
    }

    #[test]
    fn torn_mode_keeps_subsets_of_pages_and_renames_whole() {
        let mut seen_partial = false;
        let mut seen_rename_kept = false;
        let mut seen_rename_lost = false;
        for seed in 0..64 {
            let disk = SimStorage::new();
            write_file(&disk, "/a", &[0u8; 3 * 4096], true);
            disk.sync_dir(Path::new("/"), SyncSite::CreateDir).unwrap();
            let file = disk.open(Path::new("/a"), OpenMode::ReadWrite).unwrap();
            file.write_all_at(&[1u8; 3 * 4096], 0).unwrap();
            write_file(&disk, "/b.tmp", b"b", true);
            disk.rename(Path::new("/b.tmp"), Path::new("/b")).unwrap();
            let after = disk.restart(CutMode::Torn, seed);
            let bytes = after.read(Path::new("/a")).unwrap();
            assert_eq!(bytes.len(), 3 * 4096);
            for page in bytes.chunks(4096) {
                assert!(page.iter().all(|&b| b == page[0]), "pages are whole");
            }
            seen_partial |=
                bytes.chunks(4096).any(|p| p[0] == 1) && bytes.chunks(4096).any(|p| p[0] == 0);
            let b = after.exists(Path::new("/b")).unwrap();
            let tmp = after.exists(Path::new("/b.tmp")).unwrap();
            if b {
                seen_rename_kept = true;
                assert_eq!(after.read(Path::new("/b")).unwrap(), b"b");
            } else {
                seen_rename_lost = true;
            }
            assert!(!(b && tmp), "a rename is atomic");
        }
        assert!(seen_partial && seen_rename_kept && seen_rename_lost);
    }

    #[test]
    fn a_disabled_site_makes_nothing_durable() {
        let disk = SimStorage::new();
        disk.disable_sync(SyncSite::TranslogRecords);
        write_file(&disk, "/f", b"x", true);
        disk.sync_dir(Path::new("/"), SyncSite::CreateDir).unwrap();
        let file = disk.open(Path::new("/f"), OpenMode::ReadWrite).unwrap();
        file.write_all_at(b"y", 1).unwrap();
        file.sync_data(SyncSite::TranslogRecords).unwrap();
        assert_eq!(disk.stats().skipped_syncs, 1);
        let after = disk.restart(CutMode::Durable, 0);
        assert_eq!(after.read(Path::new("/f")).unwrap(), b"x");
    }

    #[test]
    fn locks_are_exclusive_and_a_restart_holds_none() {
        let disk = SimStorage::new();
        let held = disk.try_lock(Path::new("/lock")).unwrap();
        assert!(held.is_some());
        assert!(disk.try_lock(Path::new("/lock")).unwrap().is_none());
        let after = disk.restart(CutMode::Durable, 0);
        assert!(after.try_lock(Path::new("/lock")).unwrap().is_some());
    }
    #[test]
    fn a_replayed_journal_leaves_the_disk_a_cut_at_that_point_leaves() {
        let workload = |disk: &SimStorage| {
            let _ = disk.create_dir(Path::new("/d"));
            let _ = disk.sync_dir(Path::new("/"), SyncSite::CreateDir);
            for round in 0..4u8 {
                let name = format!("/d/f{round}");
                if let Ok(file) = disk.open(Path::new(&name), OpenMode::CreateNew) {
                    let _ = file.write_all_at(&[round; 5000], 0);
                    let _ = file.sync_data(SyncSite::StateFileContent);
                }
                let _ = disk.rename(Path::new(&name), Path::new("/d/current"));
                if round % 2 == 0 {
                    let _ = disk.sync_dir(Path::new("/d"), SyncSite::StateFileRename);
                }
            }
        };
        let recorded = SimStorage::new();
        recorded.record_journal();
        workload(&recorded);
        let journal = recorded.take_journal();
        assert_eq!(journal.len() as u64, recorded.stats().mutations);
        let replayed = SimStorage::new();
        for cut in 0..=journal.len() {
            if cut > 0 {
                replayed.replay(&journal, cut - 1..cut);
            }
            let cut_run = SimStorage::new();
            cut_run.set_cut_after(cut as u64);
            workload(&cut_run);
            for mode in [CutMode::Durable, CutMode::Torn] {
                let expected = cut_run.restart(mode, cut as u64);
                let actual = replayed.snapshot_after_cut(mode, cut as u64);
                let current = |disk: &SimStorage| disk.read(Path::new("/d/current")).ok();
                assert_eq!(current(&expected), current(&actual), "cut {cut} {mode:?}");
                let names = |disk: &SimStorage| disk.list(Path::new("/d")).ok();
                assert_eq!(names(&expected), names(&actual), "cut {cut} {mode:?}");
            }
        }
    }
}
