"""Errors a user can act on.

``UserError`` carries a one-line message that names the problem and the fix; the
CLI prints it without a traceback and exits with status 2, before any compute.
"""


class UserError(Exception):
    """Bad input (config, data, paths). The message names the key and the fix."""


class ConfigError(UserError):
    """A config key or value is wrong."""


def disk_error(exc: OSError, what: str = "cannot write") -> UserError:
    """A one-line ``UserError`` for an OS error on a path (disk full, read-only, no permission), naming both.

    The message keeps the OS's words ("No space left on device"), so a record's reason
    built from it says them too.
    """
    import errno

    name = errno.errorcode.get(exc.errno or 0, "")
    where = f" {exc.filename}" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free some space (or raise the quota), or point run_dir/sweep_dir at a filesystem with room, then rerun"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = "point run_dir/sweep_dir at a writable folder, or fix its permissions, then rerun"
    else:
        fix = "fix the path or the device, then rerun"
    return UserError(f"{what}{where}: {exc.strerror or exc} ({name}); {fix}")
