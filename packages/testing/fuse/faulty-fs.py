#!/usr/bin/env python3
"""A pass-through FUSE file system whose operations fail on demand, for tests of failing disks.

    faulty-fs.py BACKING_DIR MOUNT_POINT CONTROL_FILE

Every file operation under MOUNT_POINT is done on BACKING_DIR. Before each read, write and
sync it reads CONTROL_FILE (outside the mount): a line "ERRNO OP,OP,..." (for example
"EIO fsync,write") makes those operations fail with that errno until the file changes; an
empty or missing file fails nothing. The kernel hands the error to the process that made the
call, as a failing disk would. Runs in the foreground until the mount point is unmounted.
Started by @chorus/testing's mountFaultyFs.
"""
import errno
import os
import sys

from fusepy import FUSE, FuseOSError, Operations


class FaultyFs(Operations):
    def __init__(self, root, control):
        self.root = root
        self.control = control

    def _path(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def _maybe_fail(self, op):
        try:
            with open(self.control) as f:
                words = f.read().split()
        except FileNotFoundError:
            return
        if len(words) == 2 and op in words[1].split(","):
            raise FuseOSError(getattr(errno, words[0], errno.EIO))

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
        os.mkdir(self._path(path), mode)

    def rmdir(self, path):
        os.rmdir(self._path(path))

    def unlink(self, path):
        os.unlink(self._path(path))

    def rename(self, old, new):
        os.rename(self._path(old), self._path(new))

    def chmod(self, path, mode):
        os.chmod(self._path(path), mode)

    def utimens(self, path, times=None):
        os.utime(self._path(path), times)

    def truncate(self, path, length, fh=None):
        self._maybe_fail("write")
        os.truncate(self._path(path), length)

    def open(self, path, flags):
        return os.open(self._path(path), flags)

    def create(self, path, mode, fi=None):
        return os.open(self._path(path), os.O_RDWR | os.O_CREAT, mode)

    def read(self, path, size, offset, fh):
        self._maybe_fail("read")
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        self._maybe_fail("write")
        return os.pwrite(fh, data, offset)

    def fsync(self, path, datasync, fh):
        self._maybe_fail("fsync")
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)

    def fsyncdir(self, path, datasync, fh):
        self._maybe_fail("fsync")
        fd = os.open(self._path(path), os.O_RDONLY)
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
    backing, mount_point, control = sys.argv[1:4]
    FUSE(FaultyFs(backing, control), mount_point, foreground=True, nothreads=False)
