"""The shell commands the user's guide (README.md, docs/*.md) shows, and how the tests run them.

Shared by tests/test_readme_commands.py and tests/test_docs_commands.py. A command is found in:

- every line of a ```bash / ```sh block (backslash continuations joined, `# comments` dropped);
- a line of an untyped ``` block or of a 4-space indented code block that is a command (below),
  with the indented lines after it as its continuation (usage synopses among program output);
- an inline `code span` outside code blocks that is a command; `cmd --a x | --b y` is two
  alternatives, `cmd --a x` and `cmd --b y` (unless the span groups them in parentheses, as
  in a usage line, where the span is kept whole).

A command starts with `optlaw`, `bash`, `sbatch`, `torchrun`, `python`, `python3`, a path under
`.venv/bin/` or `scripts/`, optionally after `VAR=value` environment assignments, and has at
least one argument; `optlaw`'s first argument is an option or one of its subcommands. A program
named alone (`torchrun`, `scripts/test.sh`, `.venv/bin/optlaw`) or `optlaw <subcommand>` alone
(`optlaw fit`) names it in prose and is not a command.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from optlaw.entry.cli import SUBCOMMANDS

REPO_ROOT = Path(__file__).resolve().parent.parent
README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
BIN = Path(sys.executable).parent  # the venv running the tests: its optlaw, torchrun and python

COMMAND_WORDS = ("optlaw", "bash", "sbatch", "torchrun", "python", "python3")
COMMAND_PATH_PREFIXES = (".venv/bin/", "scripts/")
ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")
SHELL_LANGUAGES = ("bash", "sh")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[^\n]*$", re.M | re.S)


# --------------------------------------------------------------------------------------
# Finding the commands


def strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a `#` after whitespace, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def normalise(command: str) -> str:
    return " ".join(command.split())


def is_command(text: str) -> bool:
    words = text.split()
    while words and ENV_ASSIGNMENT.match(words[0]):
        words = words[1:]
    if not words:
        return False
    program, args = words[0], words[1:]
    if program not in COMMAND_WORDS and not program.startswith(COMMAND_PATH_PREFIXES):
        return False
    if program.split("/")[-1] == "optlaw":
        # `optlaw fit` alone is the subcommand's name; `optlaw / bare ...` is program output
        return bool(args) and (args[0].startswith("-") or (args[0] in SUBCOMMANDS and len(args) > 1))
    return bool(args)


def inline_alternatives(code: str) -> list[str]:
    """One inline command, or several written as alternatives: `cmd --a x | --b y --c z`."""
    if " | " not in code or "(" in code:
        return [code]
    first, *alternatives = [part.strip() for part in code.split(" | ")]
    tokens = first.split()
    prefix = " ".join(tokens[: next((i for i, t in enumerate(tokens) if t.startswith("--")), len(tokens))])
    return [first] + [f"{prefix} {alt}" for alt in alternatives]


def _commands_among(lines: list[str]) -> list[str]:
    """Lines that are commands, each joined with the more deeply indented lines after it."""
    found: list[str] = []
    current, indent = None, 0
    for line in lines:
        depth = len(line) - len(line.lstrip())
        if current is not None and line.strip() and depth > indent:
            current += " " + strip_comment(line)
            continue
        if current is not None:
            found.append(normalise(current))
            current = None
        text = strip_comment(line).strip()
        if is_command(text):
            current, indent = text, depth
    if current is not None:
        found.append(normalise(current))
    return found


def _indented_blocks(prose: str) -> list[list[str]]:
    """The lines of each 4-space indented code block (after a blank line, outside fences)."""
    blocks: list[list[str]] = []
    block: list[str] | None = None
    previous_blank = True
    for line in prose.splitlines():
        if not line.strip():
            previous_blank = True
            continue
        if line.startswith("    ") and (block is not None or previous_blank):
            if block is None:
                block = []
                blocks.append(block)
            block.append(line)
        else:
            block = None
        previous_blank = False
    return blocks


def guide_commands(text: str) -> list[str]:
    """Every command a Markdown page shows (see the module docstring), in page order per kind."""
    commands: list[str] = []
    for language, body in FENCE.findall(text):
        joined = re.sub(r"\\\n", " ", body)
        if language in SHELL_LANGUAGES:
            commands.extend(c for c in (normalise(strip_comment(line)) for line in joined.splitlines()) if c)
        elif not language:
            commands.extend(_commands_among(joined.splitlines()))
    prose = FENCE.sub("", text)
    for block in _indented_blocks(prose):
        commands.extend(_commands_among(block))
    for span in re.findall(r"`([^`]+)`", prose):
        code = normalise(span.replace("\\|", "|"))  # `\|` is a pipe inside a Markdown table cell
        if is_command(code):
            commands.extend(normalise(c) for c in inline_alternatives(code))
    return commands


# --------------------------------------------------------------------------------------
# Checking a registry (command -> the ways it is exercised)


def registry_problems(registry: dict[str, tuple[str, ...]], commands: list[str], not_runnable_allowed: set[str],
                      local_tests: dict) -> list[str]:
    """What is wrong with ``registry`` for a page showing ``commands`` (empty when nothing is)."""
    problems = [f"no test exercises {c!r}: run it in a test and add it to the REGISTRY"
                for c in dict.fromkeys(commands) if c not in registry]
    problems += [f"the REGISTRY names {c!r}, which the page no longer shows" for c in registry if c not in commands]
    for command, ways in registry.items():
        if not ways:
            problems.append(f"{command!r} has no way of being exercised")
        for way in ways:
            if way.startswith("not runnable here: "):
                if command not in not_runnable_allowed:
                    problems.append(f"{command!r} must be run, not excused")
            elif "::" in way:
                path, name = way.split("::")
                source = (REPO_ROOT / path).read_text()
                if not re.search(rf"^def {re.escape(name)}\(", source, re.M):
                    problems.append(f"{way} does not exist")
            elif not (way.startswith("test_") and callable(local_tests.get(way))):
                problems.append(f"no test {way} in this file")
    return problems


# --------------------------------------------------------------------------------------
# Running them


def cli_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment of a guide command: offline, caches under ``root`` (never in the repo)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPTLAW_EXTRA_CONFIGS", "OPTLAW_CACHE_DIR")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(root / "wandb"), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OPTLAW_CACHE_DIR=str(root / "cache"))
    env.update(extra)
    return env


def command_argv(command: str, extra: list[str] | tuple[str, ...] = ()) -> tuple[list[str], dict[str, str]]:
    """argv and leading `VAR=value` assignments of a command; its programs taken from the test venv."""
    argv = shlex.split(command) + list(extra)
    assignments = {}
    while argv and ENV_ASSIGNMENT.match(argv[0]):
        name, _, value = argv.pop(0).partition("=")
        assignments[name] = value
    if argv[0] in ("optlaw", "torchrun", "python"):
        argv[0] = str(BIN / argv[0])
    elif argv[0].startswith(".venv/bin/"):  # the repository's venv is the one running the tests
        argv[0] = str(BIN / argv[0].removeprefix(".venv/bin/"))
    return argv, assignments


def run_command(command: str, cwd: Path, extra: list[str] | tuple[str, ...] = (), env: dict | None = None,
                timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a guide command verbatim (plus ``extra`` arguments appended) with the venv's executables."""
    argv, assignments = command_argv(command, extra)
    env = {**(env or cli_env(cwd)), **assignments}
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (f"`{command}` (+ {extra}) exited {proc.returncode}:\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def only_run_dir(root: Path) -> Path:
    runs = sorted(p for p in (root / "runs").iterdir() if p.is_dir())
    assert len(runs) == 1, runs
    return runs[0]


# Tiny shapes for runs whose command names a real-size preset (llama/20m: 7 layers,
# d_model 512, seq_len 2048): one layer of width 64 at seq_len 64 keeps a step well under a second.
TINY_MODEL = ["model.n_layers=1", "model.d_model=64", "model.n_heads=2", "model.n_kv_heads=2", "model.head_dim=32",
              "model.ffn_hidden=128", "model.seq_len=64"]
# Fewer validation tokens (131072 by default), no intermediate evaluations, one timed step-cost repeat.
QUICK_EVAL = ["eval.tokens=4096", "eval.fractions=[]", "step_cost.repeats=1"]
# `optlaw proxy random_features` shrunk from the full study (~4 min): N 16-128, input_dim 512, 3 seeds,
# s in {1.0, 1.5}, 200 bootstrap resamples, one worker, one sensitivity variant (steps=12)
# (as tests/test_proxy_random_features.py).
PROXY_RF_SHRINK = ["N_values=[16,32,64,128]", "input_dim=512", "seeds=[0,1,2]", "s_values=[1.0,1.5]", "workers=1",
                   "bootstrap_samples=200", "progress=false", "sensitivity.steps=[12]", "sensitivity.damping=[]",
                   "sensitivity.source_r=[]", "sensitivity.input_dim=[]", "sensitivity.n_samples=[]"]


def write_jsonl_corpus(folder: Path) -> None:
    """JSON lines with a `text` field (docs/data.md), ~85k tokens over 1,200 documents in two files."""
    rng = np.random.default_rng(0)
    syllables = ["ka", "to", "ri", "me", "su", "la", "no", "vi", "de", "po", "an", "el", "ur", "is", "ob", "ex"]
    words = ["".join(rng.choice(syllables, size=rng.integers(1, 5))) for _ in range(3000)]
    folder.mkdir()
    for part in range(2):
        with open(folder / f"part{part}.jsonl", "w") as fh:
            for i in range(600):
                body = " ".join(rng.choice(words, size=rng.integers(20, 120)))
                fh.write(json.dumps({"text": body, "id": i}) + "\n")
