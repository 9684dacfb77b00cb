"""The ``optlaw`` console script: one command, several subcommands.

Each subcommand lives in its own module of the entry layer and is imported only
when used, so ``optlaw fit`` does not pay for importing torch models and vice versa.
Every handler takes the remaining argv and returns an exit code.
"""

from __future__ import annotations

import errno
import importlib
import signal
import sys

from optlaw.errors import UserError, disk_error

DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)

# name -> ("module:function", one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("optlaw.entry.train_cmd:main", "train one grid point: optlaw train model=llama/1m optimizer=adamw ..."),
    "data": ("optlaw.entry.data_cmd:main", "tokenize a corpus once into the cache: optlaw data data=text 'data.files=[...]'"),
    "sweep": ("optlaw.entry.sweep_cmd:main_sweep", "expand a sweep grid and launch it (local or SLURM)"),
    "status": ("optlaw.entry.sweep_cmd:main_status", "print the state of every point of a sweep"),
    "fit": ("optlaw.entry.fit_cmd:main", "fit scaling laws to run records or a CSV and write a report"),
    "proxy": ("optlaw.entry.proxy_cmd:main", "run a proxy study: random_features or quadratic"),
    "demo": ("optlaw.entry.demo:main", "the main job: a CPU sweep on the embedded corpus, fits and report"),
}


def _usage() -> str:
    lines = ["usage: optlaw <command> [args...]", "", "commands:"]
    for name, (_, help_text) in SUBCOMMANDS.items():
        lines.append(f"  {name:<8} {help_text}")
    lines.append("")
    lines.append("Run 'optlaw <command> --help' for the options of one command.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"error: unknown command {name!r}; choose one of: {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return 2
    target, _ = SUBCOMMANDS[name]
    module_name, func_name = target.split(":")
    try:
        handler = getattr(importlib.import_module(module_name), func_name)
        code = handler(rest)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # 128 + the signal, as a shell reports it: 130 for Ctrl-C, 143 for a SIGTERM a launcher forwarded.
        print("interrupted", file=sys.stderr)
        return 128 + getattr(exc, "signum", signal.SIGINT)
    except OSError as exc:
        # A full disk, a read-only folder or no permission is the user's to fix: one line, any command.
        if exc.errno not in DISK_ERRNOS:
            raise
        print(f"error: {disk_error(exc)}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
