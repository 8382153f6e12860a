#!/usr/bin/env python3
"""A pass-through FUSE file system whose operations fail on demand, and which can lose power.

    faulty-fs.py BACKING_DIR MOUNT_POINT CONTROL_FILE STASH_DIR

Every file operation under MOUNT_POINT is done on BACKING_DIR. Before each read, write and
sync it reads CONTROL_FILE (outside the mount): a line "ERRNO OP,OP,..." (for example
"EIO fsync,write") makes those operations fail with that errno until the file changes;
"delay=MS OP,..." makes them take MS milliseconds longer (a slow disk); an empty or missing
file fails nothing. The kernel hands the error to the process that made the call, as a
failing disk would.

A power loss: it also remembers what a disk's cache would still hold, that is what is not yet
durable in the strict POSIX sense:
- file data written since the file's last fsync or fdatasync (after a write through a
  descriptor opened with O_SYNC or O_DSYNC, the kernel syncs the file: all of its data, as it
  cannot tell a FUSE file system which range). Before a write or truncation first changes a
  page of what was durable, the page is kept aside; the durable size is kept;
- creations, removals and renames of directory entries since the last fsync of the directory
  that holds them (both directories, for a rename across two). What a removal or a rename
  replaced is kept through a hard link in STASH_DIR.
From the moment CONTROL_FILE says "powerloss" (the power is cut) no sync makes anything
durable, not even one that was waiting when it was cut: each fails with EIO, so the dying
process cannot report anything durable that is not. When it is unmounted, it undoes all
of that on BACKING_DIR (the pages put back and the files cut to their durable sizes, then the
directory operations undone newest first), prints what it undid as one JSON line and exits:
the disk as the machine would find it after the power came back. "powerloss torn SEED": the
disk had written part of it, chosen at random (see lose_unsynced). Renaming a directory with
files whose data is not durable inside is not followed (the product never does). Runs in the
foreground until the mount point is unmounted. Started by @chorus/testing's mountFaultyFs.
"""
import errno
import json
import os
import random
import shutil
import sys
import threading
import time

from fusepy import FUSE, FuseOSError, Operations

PAGE = 4096


class FaultyFs(Operations):
    def __init__(self, root, control, stash):
        self.root = os.path.normpath(os.path.abspath(root))
        self.control = control
        self.stash = stash
        self.mutex = threading.RLock()
        # Inode -> {"size": durable size, "pages": {page: durable bytes}, "writes": n}.
        self.unsynced = {}
        # Inode -> where its file is on BACKING_DIR (or in STASH_DIR once removed).
        self.paths = {}
        # Directory operations not yet durable, oldest first:
        # {"dirs": set of directories still to sync, "undo": [...], "stashed": [...]}.
        self.pending = []
        self.stashes = 0
        self.power_off = False

    def _path(self, path):
        return os.path.normpath(os.path.join(self.root, path.lstrip("/")))

    def _words(self):
        try:
            with open(self.control) as f:
                return f.read().split()
        except FileNotFoundError:
            return []

    def _power_is_off(self):
        """Whether the power was cut ("powerloss ..."): from then on nothing becomes durable."""
        self.power_off = self.power_off or self._words()[:1] == ["powerloss"]
        return self.power_off

    def _maybe_fail(self, op):
        words = self._words()
        if len(words) == 2 and op in words[1].split(","):
            if words[0].startswith("delay="):
                time.sleep(int(words[0][len("delay="):]) / 1000)
                return
            raise FuseOSError(getattr(errno, words[0], errno.EIO))

    # ---- what a power loss would lose

    def _keep_durable(self, fd, path, offset, end):
        """Before bytes [offset, end) of file `fd` change: keeps aside the durable pages there."""
        st = os.fstat(fd)
        f = self.unsynced.get(st.st_ino)
        if f is None:
            f = self.unsynced[st.st_ino] = {"size": st.st_size, "pages": {}, "writes": 0}
        self.paths[st.st_ino] = path
        f["writes"] += 1
        for page in range(offset // PAGE, (min(end, f["size"]) + PAGE - 1) // PAGE):
            if page not in f["pages"]:
                f["pages"][page] = os.pread(fd, PAGE, page * PAGE)

    def _stash(self, path):
        """A hard link to `path` in STASH_DIR (what a removal or a rename over it would lose)."""
        self.stashes += 1
        kept = os.path.join(self.stash, f"{os.getpid()}-{self.stashes}")
        os.link(path, kept, follow_symlinks=False)
        ino = os.lstat(kept).st_ino
        if ino in self.unsynced:
            self.paths[ino] = kept
        return kept

    def _dir_op(self, dirs, undo, stashed=()):
        self.pending.append({"dirs": set(dirs), "undo": undo, "stashed": list(stashed)})

    def lose_unsynced(self, torn=None):
        """
        Undoes on BACKING_DIR everything a power loss would lose; returns what it undid. With
        `torn` (a random.Random), the disk had written some of it: each changed page of what
        was durable is lost or kept at random, a random length of what was appended reached
        the disk (its pages each kept or zeros), and of the directory operations a random
        prefix reached the disk (a journal keeps their order).
        """
        files = writes = kept = 0
        lost = lambda: torn is None or torn.random() < 0.5
        for ino, f in self.unsynced.items():
            try:
                fd = os.open(self.paths[ino], os.O_RDWR)
            except (FileNotFoundError, KeyError):
                continue
            try:
                if os.fstat(fd).st_ino != ino:
                    continue
                durable, now = f["size"], os.fstat(fd).st_size
                size = durable
                if torn is not None and now > durable:
                    size = torn.randint(durable, now)
                elif torn is not None and now < durable and torn.random() < 0.5:
                    size = now  # the truncation reached the disk
                for page, before in f["pages"].items():
                    if page * PAGE >= size:
                        continue
                    if lost():
                        os.pwrite(fd, before, page * PAGE)
                    else:
                        kept += 1
                for page in range(durable // PAGE, (size + PAGE - 1) // PAGE):
                    start = max(page * PAGE, durable)
                    end = min((page + 1) * PAGE, size)
                    if start >= end or page in f["pages"]:
                        continue
                    if torn.random() < 0.5:
                        os.pwrite(fd, bytes(end - start), start)
                    else:
                        kept += 1
                os.ftruncate(fd, size)
                files += 1
                writes += f["writes"]
            finally:
                os.close(fd)
        undone = 0
        first_lost = 0 if torn is None else torn.randint(0, len(self.pending))
        for op in reversed(self.pending[first_lost:]):
            applied = False
            for step in op["undo"]:
                kind, args = step[0], step[1:]
                try:
                    if kind == "remove":
                        os.unlink(args[0])
                    elif kind == "rmtree":
                        shutil.rmtree(args[0])
                    elif kind == "mkdir":
                        os.mkdir(args[0])
                    elif kind == "rename":
                        os.rename(args[0], args[1])
                    elif kind == "restore":
                        if os.path.lexists(args[1]):
                            os.unlink(args[1])
                        os.link(args[0], args[1], follow_symlinks=False)
                    applied = True
                except FileNotFoundError:
                    # (In a directory whose removal is durable: gone with it.)
                    pass
            undone += applied
        for name in os.listdir(self.stash):
            os.unlink(os.path.join(self.stash, name))
        return {"files": files, "writes": writes, "directoryOps": undone, "keptPages": kept}

    # ---- the file system

    def access(self, path, mode):
        if not os.access(self._path(path), mode):
            raise FuseOSError(errno.EACCES)

    def getattr(self, path, fh=None):
        st = os.lstat(self._path(path))
        keys = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid")
        return {k: getattr(st, k) for k in keys}

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._path(path))

    def mkdir(self, path, mode):
        p = self._path(path)
        with self.mutex:
            os.mkdir(p, mode)
            self._dir_op([os.path.dirname(p)], [("rmtree", p)])

    def rmdir(self, path):
        p = self._path(path)
        with self.mutex:
            os.rmdir(p)
            self._dir_op([os.path.dirname(p)], [("mkdir", p)])

    def unlink(self, path):
        p = self._path(path)
        with self.mutex:
            kept = self._stash(p)
            os.unlink(p)
            self._dir_op([os.path.dirname(p)], [("restore", kept, p)], [kept])

    def rename(self, old, new):
        o, n = self._path(old), self._path(new)
        with self.mutex:
            # (A directory renamed over an empty one is not kept: the product never does that.)
            kept = self._stash(n) if os.path.lexists(n) and not os.path.isdir(n) else None
            os.rename(o, n)
            ino = os.lstat(n).st_ino
            if ino in self.unsynced:
                self.paths[ino] = n
            undo = [("rename", n, o)] + ([("restore", kept, n)] if kept else [])
            self._dir_op([os.path.dirname(o), os.path.dirname(n)], undo, [kept] if kept else [])

    def chmod(self, path, mode):
        os.chmod(self._path(path), mode)

    def utimens(self, path, times=None):
        os.utime(self._path(path), times)

    def truncate(self, path, length, fh=None):
        self._maybe_fail("write")
        p = self._path(path)
        with self.mutex:
            fd = os.open(p, os.O_RDWR)
            try:
                self._keep_durable(fd, p, length, os.fstat(fd).st_size)
                os.ftruncate(fd, length)
            finally:
                os.close(fd)

    def open(self, path, flags):
        p = self._path(path)
        with self.mutex:
            if flags & os.O_TRUNC:
                self.truncate(path, 0)
            # Write-only descriptors are opened read-write: a write reads what it replaces first.
            if flags & os.O_ACCMODE == os.O_WRONLY:
                flags = flags & ~os.O_ACCMODE | os.O_RDWR
            return os.open(p, flags)

    def create(self, path, mode, fi=None):
        p = self._path(path)
        with self.mutex:
            existed = os.path.lexists(p)
            fh = os.open(p, os.O_RDWR | os.O_CREAT, mode)
            if not existed:
                self._dir_op([os.path.dirname(p)], [("remove", p)])
            return fh

    def read(self, path, size, offset, fh):
        self._maybe_fail("read")
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        self._maybe_fail("write")
        with self.mutex:
            self._keep_durable(fh, self._path(path), offset, offset + len(data))
            return os.pwrite(fh, data, offset)

    def fsync(self, path, datasync, fh):
        self._maybe_fail("fsync")
        if self._power_is_off():
            raise FuseOSError(errno.EIO)
        with self.mutex:
            # Durable from here: a power loss during the sync may keep it all, as a disk may.
            self.unsynced.pop(os.fstat(fh).st_ino, None)
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)

    def fsyncdir(self, path, datasync, fh):
        self._maybe_fail("fsync")
        if self._power_is_off():
            raise FuseOSError(errno.EIO)
        p = self._path(path)
        with self.mutex:
            still = []
            for op in self.pending:
                op["dirs"].discard(p)
                if op["dirs"]:
                    still.append(op)
                    continue
                for kept in op["stashed"]:
                    self.unsynced.pop(os.lstat(kept).st_ino, None)
                    os.unlink(kept)
            self.pending = still
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def flush(self, path, fh):
        return None

    def release(self, path, fh):
        os.close(fh)

    def statfs(self, path):
        st = os.statvfs(self._path(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
                "f_flag", "f_frsize", "f_namemax")
        return {k: getattr(st, k) for k in keys}


if __name__ == "__main__":
    backing, mount_point, control, stash = sys.argv[1:5]
    fs = FaultyFs(backing, control, stash)
    FUSE(fs, mount_point, foreground=True, nothreads=False)
    try:
        with open(control) as f:
            words = f.read().split()
    except FileNotFoundError:
        words = []
    if words[:1] == ["powerloss"]:
        torn = random.Random(int(words[2])) if words[1:2] == ["torn"] else None
        print(json.dumps(fs.lose_unsynced(torn)), flush=True)
