"""The build cache: a fence's output, keyed by everything that can change it.

A key hashes the fence spec (with the plugin's defaults filled in), the theme, model-trace's
version and source, torch's version, and the source of every package the fence imports: an
installed package counts by its version, a local one (the zoo, a project's own models) by the
content of all its files. Editing a model's code therefore re-traces exactly the fences that
import it, and nothing needs torch to decide that.

Entries live in memory (for ``mkdocs serve``'s rebuilds) and in cache folders (``DiskStore``:
the site's own, and any other a front end adds), one JSON file per key written atomically
(temporary file, then ``os.replace``), so a build killed half way leaves only whole entries
behind. An entry is checked against its schema when read; anything else is a miss.
``manifest.json`` lists the entries the last build used; a full build removes the others
from a store that is pruned.

Traces are also shared between the sites of one machine (``SharedTraces``, in the user's
cache folder, ``user_cache_dir``): a site's first build of a figure whose trace another site
(or an earlier version of the page) made reuses it. Their key (``trace_key``) holds the
fields that decide the trace instead of the whole fence, with the same versions and sources.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import site
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import model_trace
from model_trace.spec import EXPORT_FORMATS

MANIFEST = "manifest.json"
SCHEMA = 1
PREFIX_PLACEHOLDER = "model-trace-prefix-5f1d3a"
"""Stands for the figure's id prefix in cached HTML; each page puts its own prefix in."""


@dataclass(frozen=True)
class FenceOutput:
    """What one fence produced: the figure HTML (ids prefixed with ``PREFIX_PLACEHOLDER``)
    and the export files' contents by format."""

    html: str
    exports: dict[str, bytes] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    """Lines a build logs as warnings each time it shows the figure (assumed values,
    Python warnings the model raised)."""
    notes: tuple[str, ...] = ()
    """Lines a build logs as information each time it shows the figure (FLOPs without a
    formula, experts run densely: ``caveats.build_notes``)."""


@dataclass(frozen=True)
class PackageSource:
    """Where a fence's code comes from: a package's version, or the hash of its files."""

    name: str
    fingerprint: str
    local_path: Path | None = None
    """The folder (or file) of a package that is not installed: what ``mkdocs serve`` watches."""


class SourceHasher:
    """Fingerprints of top-level packages; a file is re-read only when its size or mtime
    changed, so checking an unchanged project costs one ``stat`` per file."""

    def __init__(self) -> None:
        self._digests: dict[str, tuple[int, int, str]] = {}
        self._versions: dict[str, str] = {}
        installed = [*site.getsitepackages(), site.getusersitepackages()]
        installed += [sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib",
                                                              "purelib", "platlib")]
        self._installed = tuple(os.path.abspath(p) + os.sep for p in installed if p)

    def package(self, module: str) -> PackageSource:
        """The source of the top-level package of ``module`` (no module is imported)."""
        top = module.split(".")[0]
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            return PackageSource(top, "missing")
        locations = list(spec.submodule_search_locations or [])
        if not locations and spec.origin not in (None, "built-in", "frozen"):
            locations = [spec.origin]
        if not locations:
            return PackageSource(top, f"python {sys.version.split()[0]}")
        paths = [Path(p) for p in locations]
        if all(str(p.resolve()).startswith(self._installed) for p in paths):
            return PackageSource(top, self._version(top))
        digest = hashlib.sha256()
        for path in paths:
            digest.update(self.files_digest(path).encode())
        return PackageSource(top, digest.hexdigest(), paths[0])

    def files_digest(self, root: Path) -> str:
        """Hash of every file under ``root`` (or of ``root`` itself), bytecode left out."""
        files = [root] if root.is_file() else sorted(
            path for path in root.rglob("*")
            if path.is_file() and path.suffix != ".pyc"
            and not any(part.startswith(".") or part == "__pycache__"
                        for part in path.relative_to(root).parts)
        )
        digest = hashlib.sha256()
        for path in files:
            digest.update(f"{path.relative_to(root) if path != root else path.name}\0".encode())
            digest.update(self._file_digest(path).encode())
        return digest.hexdigest()

    def _file_digest(self, path: Path) -> str:
        stat = path.stat()
        known = self._digests.get(str(path))
        if known is not None and known[:2] == (stat.st_mtime_ns, stat.st_size):
            return known[2]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        self._digests[str(path)] = (stat.st_mtime_ns, stat.st_size, digest)
        return digest

    def _version(self, top: str) -> str:
        if top not in self._versions:
            if top in sys.stdlib_module_names:
                self._versions[top] = f"python {sys.version.split()[0]}"
            else:
                self._versions[top] = _distribution_version(top)
        return self._versions[top]

    def toolchain(self) -> str:
        """model-trace's version and source, and torch's version: part of every key."""
        own = Path(model_trace.__file__).parent
        return "|".join([model_trace.__version__, self.files_digest(own), self._version("torch")])


def _distribution_version(top: str) -> str:
    """'name version' of the distribution that installs the top-level package ``top``."""
    try:  # usually the distribution is named like the package (torch): no scan needed
        return f"{top} {importlib.metadata.version(top)}"
    except importlib.metadata.PackageNotFoundError:
        pass
    # scanning every installed distribution's file list takes a good part of a second
    names = importlib.metadata.packages_distributions().get(top, [])
    try:
        return f"{names[0]} {importlib.metadata.version(names[0])}"
    except (IndexError, importlib.metadata.PackageNotFoundError):
        return "unknown version"


def cache_key(spec_identity: dict[str, Any], theme: str, toolchain: str,
              sources: list[PackageSource], policy: Any = None) -> str:
    """The key of one fence's output; ``policy`` is what the site allows fences to import
    (a dataclass, or None), so a change of what is allowed re-checks the fences."""
    text = json.dumps({"spec": spec_identity, "theme": theme, "toolchain": toolchain,
                       "sources": [(s.name, s.fingerprint) for s in sources],
                       "policy": _policy_identity(policy)},
                      sort_keys=True, default=list)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _policy_identity(policy: Any) -> Any:
    if policy is None:
        return None
    return {f.name: getattr(policy, f.name) for f in dataclasses.fields(policy) if f.compare}


def trace_key(trace_identity: dict[str, Any], toolchain: str, sources: list[PackageSource],
              policy: Any = None) -> str:
    """The key of a trace shared between sites: ``cache_key`` of the fence's trace fields."""
    return cache_key({"trace": trace_identity}, "", toolchain, sources, policy)


USER_CACHE_VARIABLE = "MODEL_TRACE_CACHE_DIR"
"""Environment variable naming the folder of traces shared between sites."""


def user_cache_dir() -> Path:
    """Where traces shared between the sites of this user live: ``$MODEL_TRACE_CACHE_DIR``,
    else ``model-trace/traces`` in ``$XDG_CACHE_HOME`` (``~/.cache`` when unset)."""
    chosen = os.environ.get(USER_CACHE_VARIABLE)
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "model-trace" / "traces"


@dataclass(frozen=True)
class SharedTraces:
    """One trace's entry in the folder of traces shared between sites: the graph JSON and the
    Python warnings its model raised. Entries are written atomically and never pruned (no
    site knows what the others use); one that does not read back is a miss."""

    directory: Path
    key: str

    @property
    def path(self) -> Path:
        return self.directory / f"{self.key}.json"

    def read(self) -> tuple[str, tuple[str, ...]] | None:
        """(graph JSON, warnings), or None."""
        try:
            entry = json.loads(self.path.read_bytes())
        except (OSError, ValueError, RecursionError):
            return None
        if not (_is_entry(entry, self.key) and isinstance(entry.get("graph"), str)
                and _is_lines(entry.get("warnings"))):
            return None
        return entry["graph"], tuple(entry["warnings"])

    def write(self, graph_json: str, warnings: tuple[str, ...] | list[str]) -> None:
        entry = {"schema": SCHEMA, "key": self.key, "graph": graph_json,
                 "warnings": list(warnings)}
        with contextlib.suppress(OSError):  # a read-only or full home: the site still builds
            write_atomic(self.path, json.dumps(entry).encode("utf-8"))


class DiskStore:
    """One cache folder: a JSON file per entry, and the manifest of what the last build used.

    ``prune``: a full build may remove the entries it did not use (a site's own cache; a cache
    shared between sites would not prune)."""

    def __init__(self, directory: Path, *, prune: bool = True) -> None:
        self.directory = directory
        self.prune = prune

    def read(self, key: str) -> FenceOutput | None:
        """The entry, or None; an entry that is partial, corrupt or of another schema is
        removed and is a miss."""
        path = self.directory / f"{key}.json"
        try:
            output = _entry_output(json.loads(path.read_bytes()), key)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError):
            output = None
        if output is None:
            path.unlink(missing_ok=True)  # written by something else: rebuild it
        return output

    def write(self, key: str, output: FenceOutput, about: dict[str, Any]) -> None:
        entry = {"schema": SCHEMA, "key": key, "about": about, "html": output.html,
                 "exports": {fmt: base64.b64encode(data).decode("ascii")
                             for fmt, data in output.exports.items()},
                 "warnings": list(output.warnings), "notes": list(output.notes)}
        write_atomic(self.directory / f"{key}.json", json.dumps(entry).encode("utf-8"))

    def finish_build(self, used: dict[str, dict[str, Any]], prune: bool) -> None:
        """Record the entries a build used (``used``: key -> what it is, {} if not known);
        with ``prune`` (and a pruned store), remove the others."""
        manifest = self._read_manifest()
        entries = {key: about or manifest.get(key, {}) for key, about in sorted(used.items())}
        if prune and self.prune:
            for path in self.directory.glob("*.json"):
                if path.name != MANIFEST and path.stem not in used:
                    path.unlink(missing_ok=True)
            self._remove_stale_temporaries()
        else:
            entries = manifest | entries
        write_atomic(self.directory / MANIFEST,
                     json.dumps({"schema": SCHEMA, "entries": entries}, indent=1).encode())

    def _read_manifest(self) -> dict[str, Any]:
        try:
            entries = json.loads((self.directory / MANIFEST).read_bytes())["entries"]
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            return {}
        return entries if isinstance(entries, dict) else {}

    def _remove_stale_temporaries(self, older_than_s: float = 600.0) -> None:
        """Temporary files of builds that were killed (not of builds running right now)."""
        for path in self.directory.glob("*.tmp"):
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime > older_than_s:
                    path.unlink()


def _is_entry(entry: Any, key: str) -> bool:
    """Whether a file's JSON is an entry of this schema under ``key`` (a site's cache or the
    shared traces)."""
    return isinstance(entry, dict) and entry.get("schema") == SCHEMA and entry.get("key") == key


def _is_lines(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(line, str) for line in value)


def _entry_output(entry: Any, key: str) -> FenceOutput | None:
    """The output an entry file holds, if it has this schema: {schema, key, about, html,
    exports: {format: base64}}."""
    if not (_is_entry(entry, key) and isinstance(entry.get("html"), str)
            and isinstance(entry.get("exports"), dict)):
        return None
    exports: dict[str, bytes] = {}
    for fmt, data in entry["exports"].items():
        if fmt not in EXPORT_FORMATS or not isinstance(data, str):
            return None
        try:
            exports[fmt] = base64.b64decode(data, validate=True)
        except binascii.Error:
            return None
    lines = {name: entry.get(name, []) for name in ("warnings", "notes")}
    if not all(_is_lines(value) for value in lines.values()):
        return None
    return FenceOutput(html=entry["html"], exports=exports, warnings=tuple(lines["warnings"]),
                       notes=tuple(lines["notes"]))


class TraceCache:
    """Fence outputs by key, in memory and in the disk stores (the first is the site's own
    ``directory``; ``add_store`` adds more, looked up in order)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.stores: list[DiskStore] = [DiskStore(directory)] if directory is not None else []
        self._memory: dict[str, FenceOutput] = {}
        self._about: dict[str, dict[str, Any]] = {}
        self._used: set[str] = set()
        self._lock = threading.Lock()

    def add_store(self, store: DiskStore) -> None:
        """Another folder to look entries up in (after the ones before) and to write to."""
        self.stores.append(store)

    def get(self, key: str) -> FenceOutput | None:
        """The cached output, or None; a missing, partial or corrupt entry is a miss."""
        with self._lock:
            self._used.add(key)
            output = self._memory.get(key)
        for store in self.stores:
            if output is not None:
                break
            output = store.read(key)
            if output is not None:
                with self._lock:
                    self._memory[key] = output
        return output

    def put(self, key: str, output: FenceOutput, about: dict[str, Any]) -> None:
        """Store an output in memory and, atomically, in every disk store."""
        with self._lock:
            self._memory[key] = output
            self._about[key] = about
            self._used.add(key)
        for store in self.stores:
            store.write(key, output, about)

    def finish_build(self, prune: bool) -> None:
        """Write the manifests of the entries this build used; with ``prune``, forget the rest
        (a full, successful build knows every fence of the site)."""
        with self._lock:
            used, self._used = self._used, set()
            if prune:
                self._memory = {k: v for k, v in self._memory.items() if k in used}
            about = {key: self._about.get(key, {}) for key in used}
        for store in self.stores:
            store.finish_build(about, prune)


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old content or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
