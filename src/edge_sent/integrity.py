"""A bundle's integrity: every file hashed into the manifest when it is written, and checked against it when read.

`write_manifest` hashes the folder's files into the record (the manifest is written last); `check_file` and
`check_graph` check what a loader is about to read, `verify_bundle` checks everything (`edge-sent verify`).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge_sent.contract import MANIFEST, FileEntry, Manifest, parse_manifest, read_manifest, sha256_file, write_json
from edge_sent.errors import BundleError
from edge_sent.external_data import check_external_data


def file_entry(path: Path) -> dict[str, Any]:
    return asdict(FileEntry.of(path))


def write_manifest(directory: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Hash every file in the directory into the record, validate it as a reader would, write it (last)."""
    data = dict(record) | {
        "files": {p.name: file_entry(p) for p in sorted(directory.iterdir()) if p.is_file() and p.name != MANIFEST}
    }
    parse_manifest(directory, data, directory / MANIFEST)
    write_json(directory / MANIFEST, data)
    return data


def check_file(manifest: Manifest, name: str) -> Path:
    """Check one bundle file against its manifest entry; return its path or raise naming the file."""
    if Path(name).name != name or name in ("", ".", ".."):
        raise BundleError(f"{manifest.root / MANIFEST}: file name {name!r} points outside the bundle")
    entry = manifest.files.get(name)
    path = manifest.root / name
    if entry is None:
        raise BundleError(f"{path}: not listed in the manifest")
    if not path.is_file():
        raise BundleError(f"{path}: missing")
    size = path.stat().st_size
    if size != entry.bytes:
        raise BundleError(f"{path}: altered (size {size} bytes, manifest says {entry.bytes})")
    if sha256_file(path) != entry.sha256:
        raise BundleError(f"{path}: altered (sha256 does not match the manifest)")
    return path


def check_graph(manifest: Manifest, name: str) -> Path:
    """Check a graph file and every external-data file it references against the manifest; return its path."""
    path = check_file(manifest, name)
    for data_file in check_external_data(path, set(manifest.files)):
        check_file(manifest, data_file)
    return path


def verify_bundle(bundle_dir: Path | str) -> list[str]:
    """Check every file of the manifest; return the problems found (empty when the bundle is intact)."""
    manifest = read_manifest(bundle_dir)
    problems = []
    for name in sorted(manifest.files):
        try:
            check_file(manifest, name)
        except BundleError as exc:
            problems.append(str(exc))
    for variant in sorted(manifest.variants):
        path = manifest.root / manifest.variant_file(variant)
        if path.is_file():
            try:
                check_external_data(path, set(manifest.files))
            except BundleError as exc:
                problems.append(str(exc))
    return problems
