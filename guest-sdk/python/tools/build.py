"""Builds one Python plugin into a component of Switchyard's `plugin` world (run by ../build).

Steps: install the pinned componentize-py into a virtual environment under the workspace's
target folder when it is missing; stage the plugin's entry module and the `switchyard`
package; run componentize-py on `wit/` (it generates the bindings and pre-initialises the
plugin: plugin.py's top level runs at build time); write the component. The result is cached
by the hash of every input, so an unchanged plugin is copied, not rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, List, NoReturn

#: The componentize-py release every plugin is built with; changing it rebuilds every plugin.
COMPONENTIZE_PY = "0.25.0"
#: The world Python plugins target (never `raw-plugin`: its async export needs more).
WORLD = "plugin"
#: Bound on installing componentize-py (about 20 MB); past it PyPI counts as unreachable.
INSTALL_TIMEOUT_S = 600
#: Exit status when PyPI cannot be reached (EX_TEMPFAIL, as tests/setup-common.sh uses it).
EXIT_UNREACHABLE = 75
#: pip's wording for a registry out of reach.
UNREACHABLE = re.compile(
    r"Temporary failure in name resolution|Name or service not known|Failed to establish a new "
    r"connection|Network is unreachable|No route to host|Connection refused|Connection timed out|"
    r"ConnectTimeoutError|ReadTimeoutError|ProxyError|Max retries exceeded"
)
#: The module componentize-py loads; it imports the author's plugin.py.
ENTRY = "switchyard_entry"
ENTRY_SOURCE = '''"""Entry module of a Switchyard Python plugin (written by guest-sdk/python/build)."""
import plugin  # noqa: F401  (the author's plugin.py; it calls switchyard.export)
from switchyard.plugin import exported
from switchyard._exports import Handler, Events  # noqa: F401  (what the bindings call)

if exported() is None:
    raise SystemExit("SWITCHYARD: plugin.py does not call switchyard.export(<plugin object>)")
'''

SDK = Path(__file__).resolve().parent.parent
WORKSPACE = SDK.parent.parent


def fail(message: str, status: int = 1) -> NoReturn:
    print(f"build: {message}", file=sys.stderr)
    sys.exit(status)


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR") or WORKSPACE / "target").resolve() / "python"


def toolchain() -> Path:
    """componentize-py from the pinned venv, installed first if missing."""
    venv = target_dir() / f"componentize-py-{COMPONENTIZE_PY}"
    tool = venv / "bin" / "componentize-py"
    # Written last, so a half-finished install is redone. (A venv cannot be built elsewhere and
    # renamed into place: its scripts name their interpreter by absolute path.)
    ready = venv / "installed"
    if ready.is_file() and tool.is_file():
        return tool
    print(f"build: installing componentize-py {COMPONENTIZE_PY} into {venv} ...", file=sys.stderr)
    partial = venv
    shutil.rmtree(partial, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    made = subprocess.run([sys.executable, "-m", "venv", str(partial)], capture_output=True, text=True)
    if made.returncode != 0:
        fail(f"could not make a virtual environment (is python3-venv installed?):\n{made.stderr}")
    log = venv.parent / "install.log"
    command = [
        str(partial / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
        "--retries", "2", "--timeout", "30", f"componentize-py=={COMPONENTIZE_PY}",
    ]
    try:
        installed = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        fail(f"installing componentize-py took over {INSTALL_TIMEOUT_S}s: PyPI unreachable or too slow", EXIT_UNREACHABLE)
    log.write_text(installed.stdout + installed.stderr)
    if installed.returncode != 0:
        unreachable = UNREACHABLE.search(installed.stdout + installed.stderr)
        if unreachable:
            fail(f"PyPI is unreachable ({unreachable.group(0)}); log: {log}", EXIT_UNREACHABLE)
        fail(f"installing componentize-py failed; log: {log}\n{installed.stderr[-2000:]}")
    ready.write_text(f"componentize-py {COMPONENTIZE_PY}\n")
    return tool


def files_under(root: Path) -> Iterable[Path]:
    """Every file under `root` (symlinks followed), in a stable order, skipping caches."""
    for path in sorted(root.rglob("*")):
        if "__pycache__" in path.parts or path.name.startswith("."):
            continue
        if path.is_file():
            yield path


def inputs_hash(plugin_dir: Path) -> str:
    digest = hashlib.sha256()
    digest.update(f"componentize-py {COMPONENTIZE_PY} world {WORLD}\n".encode())
    digest.update(ENTRY_SOURCE.encode())
    for label, root in (("wit", WORKSPACE / "wit"), ("sdk", SDK / "switchyard"), ("plugin", plugin_dir)):
        for path in files_under(root):
            digest.update(f"{label}/{path.relative_to(root)}\0".encode())
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()


def explain(output: str, path_dirs: List[Path]) -> str:
    """componentize-py's error, with the build's mount points (`/0/`, `/1/` ...) turned back
    into the folders they stand for and the Rust backtrace left out."""
    lines = []
    for line in output.splitlines():
        if line.startswith("Stack backtrace:"):
            break
        lines.append(line)
    text = "\n".join(lines).strip()
    # The plugin's own traceback is wrapped in componentize-py's: keep the inner one only.
    inner = text.find("AssertionError: Traceback")
    if inner >= 0:
        text = text[inner + len("AssertionError: ") :].split("\n\nCaused by:")[0].strip()
    for index, folder in enumerate(path_dirs):
        text = text.replace(f'"/{index}/', f'"{folder}/')
    return text


def componentize(tool: Path, plugin_dir: Path, out: Path, stage: Path) -> None:
    (stage / f"{ENTRY}.py").write_text(ENTRY_SOURCE)
    ignore = shutil.ignore_patterns("__pycache__", ".*")
    shutil.copytree(SDK / "switchyard", stage / "switchyard", ignore=ignore)
    # A copy with symbolic links replaced by what they point to: componentize-py's sandbox
    # would not follow a link out of the folder (chat-py shares the Rust chat's page this way).
    plugin_copy = stage.parent / "plugin"
    shutil.copytree(plugin_dir, plugin_copy, symlinks=False, ignore=ignore)
    path_dirs = [plugin_copy, stage]
    command = [str(tool), "-d", str(WORKSPACE / "wit"), "-w", WORLD, "componentize", ENTRY, "-o", str(out)]
    for folder in path_dirs:
        command += ["-p", str(folder)]
    env = dict(os.environ, RUST_BACKTRACE="0")
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=stage)
    if done.returncode == 0:
        return
    output = done.stdout + done.stderr
    detail = explain(output, [plugin_dir, SDK])
    if "SWITCHYARD: plugin.py does not call" in output:
        fail(f"{plugin_dir}/plugin.py does not call switchyard.export(<plugin object>)")
    if re.search(r"No module named '?plugin'?", output):
        fail(f"{plugin_dir} has no plugin.py (the module that calls switchyard.export)")
    syntax = re.search(r"^(?:SyntaxError|IndentationError|TabError): (.*)$", detail, re.MULTILINE)
    if syntax:
        # The innermost frame before the error names the file and line.
        where = re.findall(r'File "([^"]+)", line (\d+)', detail[: syntax.start()])
        file, line = where[-1] if where else ("?", "?")
        fail(f"syntax error in {file}, line {line}: {syntax.group(1)}\n\n{detail}")
    fail(f"componentize-py could not build {plugin_dir}:\n\n{detail}")


def main(argv: List[str]) -> None:
    if argv == ["--install"]:
        print(toolchain())
        return
    if len(argv) != 2:
        fail("usage: guest-sdk/python/build <plugin-dir> <out.wasm>   (or: build --install)", 2)
    plugin_dir, out = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    if not (plugin_dir / "plugin.py").is_file():
        fail(f"{plugin_dir} has no plugin.py (the module that calls switchyard.export)")
    started = time.monotonic()
    tool = toolchain()
    cache = target_dir() / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    cached = cache / f"{inputs_hash(plugin_dir)}.wasm"
    if cached.is_file():
        how = "cached"
    else:
        with tempfile.TemporaryDirectory(dir=cache) as stage:
            built = Path(stage) / "out.wasm"
            staged = Path(stage) / "sdk"
            staged.mkdir()
            componentize(tool, plugin_dir, built, staged)
            os.replace(built, cached)
        how = "built"
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    shutil.copyfile(cached, partial)
    os.replace(partial, out)
    print(f"build: {how} {out} from {plugin_dir} in {time.monotonic() - started:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
