"""The device matrix: how each variant's answers move across CPUs and runtimes (answers only, never speed).

    .venv/bin/python benchmarks/devices.py BUNDLE [--n 200] [--arm64-root .emu/arm64] [--record] \
        [--json benchmarks/devices.json] [--md benchmarks/DEVICES.md]

The same bundle files, the same texts (the first N of ChnSentiCorp's test split), one text at a time, on:
x86-64 natively (the reference: this machine's class, e.g. AVX-512 VNNI), x86-64 without AVX-512
(`qemu-x86_64-static -cpu Haswell`, when this machine has AVX-512; when it has not, it *is* that class), aarch64
(a Debian arm64 root under qemu-user: `scripts/arm64-root.sh`), Node.js (onnxruntime-node through
transformers.js, `js/classify.mjs`) and the browser (onnxruntime-web WebAssembly in headless Chromium,
`js/browser.mjs`). Every platform runs `benchmarks/answers.py` (or the JS equivalents); each
graph's answers are compared with the same graph's on the reference: labels identical, max |Δprob|.
Emulation tells answers and operator support, never speed. `--record` writes the result into the bundle's
manifest (`platforms`), where `edge-sent info` flags a variant whose labels move.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TEST_TSV = ROOT / "data" / "chnsenticorp" / "test.tsv"
ANSWERS = Path(__file__).with_name("answers.py")  # run on every platform, where only the runtime is installed
EMULATED = "emulated (qemu-user): answers and operator support only, no speed"


def x86_class(flags: list[str]) -> str:
    if "avx512_vnni" in flags:
        return "x86-64 AVX-512 VNNI"
    if "avx512f" in flags:
        return "x86-64 AVX-512"
    return "x86-64 AVX2" if "avx2" in flags else "x86-64"


def read_texts(n: int) -> list[str]:
    sys.path.insert(0, str(ROOT))
    from edge_sent.readers import read_records

    texts = []
    for record in read_records(TEST_TSV, text_field="text_a"):
        text = " ".join(record.text.split())  # one text a line for every runner
        if text:
            texts.append(text)
        if len(texts) >= n:
            break
    return texts


def run_answers(command: list[str], out: Path, timeout: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    if proc.returncode != 0 or not out.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{' '.join(command[:3])}…: exit {proc.returncode}: {' | '.join(tail)}")
    record = json.loads(out.read_text(encoding="utf-8"))
    record["wall_s"] = round(time.perf_counter() - started, 1)
    return record


def python_platform(
    prefix: list[str], work: Path, bundle: Path, ort_dir: Path, timeout: int, batch: int, threads: int = 0
) -> dict[str, Any]:
    out = work / f"answers-{os.getpid()}-{time.monotonic_ns()}.json"
    module = [*prefix, str(ANSWERS), str(bundle), str(work / "texts.txt"), str(out)]
    module += ["--ort", str(ort_dir), "--batch-size", str(batch)] + (["--threads", str(threads)] if threads else [])
    return run_answers(module, out, timeout)


def arm64_platform(
    root: Path, work: Path, bundle: Path, ort_dir: Path, timeout: int, batch: int, cpu: str | None = None
) -> dict[str, Any]:
    """Copy the inputs into the arm64 root and run the answers module there (chroot, binfmt qemu-aarch64), on one
    thread; `cpu`: the emulated CPU model (QEMU_CPU; default qemu's `max`: NEON, dotprod, i8mm, bf16, SVE)."""
    at = Path("/tmp") / f"edge-sent-devices-{cpu or 'max'}-{os.getpid()}-{time.monotonic_ns()}"  # runs may overlap
    inside = root / at.relative_to("/")
    shutil.rmtree(inside, ignore_errors=True)
    shutil.copytree(bundle, inside / "bundle")
    shutil.copytree(ort_dir, inside / "ort")
    shutil.copy(work / "texts.txt", inside / "texts.txt")
    shutil.copy(ANSWERS, inside / ANSWERS.name)
    command = [str(ROOT / "scripts" / "in-arm64.sh"), str(root), "/opt/venv/bin/python", str(at / ANSWERS.name)]
    command += [str(at / "bundle"), str(at / "texts.txt"), str(at / "answers.json")]
    command += ["--ort", str(at / "ort"), "--batch-size", str(batch), "--threads", "1"]
    try:
        return run_answers(command, inside / "answers.json", timeout, {"QEMU_CPU": cpu} if cpu else None)
    finally:
        shutil.rmtree(inside, ignore_errors=True)


def emulated_jobs(
    args: argparse.Namespace, flags: list[str], work: Path, bundle: Path, ort_dir: Path
) -> tuple[dict[str, Any], dict[str, str]]:
    """The emulated platforms this machine can run (name -> a call giving its answers), and notes on the rest."""
    jobs: dict[str, Any] = {}
    notes: dict[str, str] = {}
    timeout, batch = args.timeout, args.emulated_batch
    haswell = "x86-64 AVX2 (Haswell)"
    if "haswell" in args.platforms and "avx512f" in flags:
        if shutil.which("qemu-x86_64-static"):
            prefix = [str(ROOT / "scripts" / "in-haswell.sh"), sys.executable]
            jobs[haswell] = lambda: python_platform(prefix, work, bundle, ort_dir, timeout, batch, threads=1)
            notes[haswell] = EMULATED
        else:
            notes[haswell] = "not run: qemu-x86_64-static is not installed"
    root = args.arm64_root.resolve() if args.arm64_root else None
    arms = {"arm64": ("aarch64", None, "qemu's `max` CPU (NEON, dotprod, i8mm, bf16, SVE)")}
    arms["arm64-a72"] = ("aarch64 Cortex-A72", "cortex-a72", "NEON only (no dotprod, no i8mm), a Raspberry Pi 4's core")
    for key, (name, cpu, what) in arms.items():
        if key not in args.platforms:
            continue
        if root is None or not (root / ".emu-complete").is_file():
            notes[name] = "not run: no arm64 root (scripts/arm64-root.sh)"
            continue
        jobs[name] = lambda cpu=cpu: arm64_platform(root, work, bundle, ort_dir, timeout, batch, cpu)
        notes[name] = f"{EMULATED}; {what}"
    return jobs, notes


def node_platform(bundle: Path, texts: list[str], variants: list[str]) -> dict[str, Any]:
    answers, errors = {}, {}
    for variant in variants:
        command = ["node", str(ROOT / "js" / "classify.mjs"), str(bundle), variant]
        proc = subprocess.run(command, input="\n".join(texts), capture_output=True, text=True, timeout=1200)
        if proc.returncode != 0:
            errors[variant] = (proc.stderr.strip().splitlines() or ["failed"])[-1][:300]
            continue
        got = json.loads(proc.stdout)
        answers[variant] = {"probabilities": [p["probabilities"] for p in got["predictions"]]}
    version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "platform": {"node": version, "runtime": "onnxruntime-node (transformers.js)"},
        "answers": answers,
        "errors": errors,
    }


def browser_platform(bundle: Path, texts: list[str], variants: list[str], chromium: str) -> dict[str, Any]:
    """The examples/web page per variant; the page reports the label and its probability only."""
    sys.path.insert(0, str(ROOT))
    from tests.test_js import Server

    answers, errors = {}, {}
    for variant in variants:
        server = Server(bundle)
        try:
            command = ["node", str(ROOT / "js" / "browser.mjs"), f"{server.url}?variant={variant}", chromium]
            proc = subprocess.run(command, input="\n".join(texts), capture_output=True, text=True, timeout=1800)
        finally:
            server.stop()
        got = json.loads(proc.stdout or "{}")
        if proc.returncode != 0 or got.get("error") or len(got.get("predictions", [])) != len(texts):
            errors[variant] = str(got.get("error") or proc.stderr.strip()[-300:] or "no answers")
            continue
        answers[variant] = {
            "labels": [p["label"] for p in got["predictions"]],
            "label_probability": [p["probability"] for p in got["predictions"]],
        }
    return {
        "platform": {"runtime": "onnxruntime-web (WebAssembly) in headless Chromium"},
        "answers": answers,
        "errors": errors,
    }


def compare(reference: dict[str, Any], other: dict[str, Any], labels: list[str]) -> dict[str, Any]:
    """Labels identical and max |Δprob| of one graph on one platform against the reference platform."""
    ref = np.asarray(reference["probabilities"], dtype=np.float64)
    if "probabilities" in other:
        probs = np.asarray(other["probabilities"], dtype=np.float64)
        same = ref.argmax(axis=1) == probs.argmax(axis=1)
        delta = float(np.abs(ref - probs).max())
    else:  # the browser page: its label and that label's probability
        index = np.asarray([labels.index(str(label)) for label in other["labels"]])
        same = ref.argmax(axis=1) == index
        delta = float(np.abs(ref[np.arange(len(ref)), index] - np.asarray(other["label_probability"])).max())
    return {"labels_identical": float(same.mean()), "max_abs_dprob": delta, "n_texts": len(ref)}


def convert_to_ort(bundle: Path, variants: list[str], out: Path) -> None:
    """The README's mobile conversion (ARM target, fixed optimizations) of every variant the CPU runs."""
    from edge_sent.contract import read_manifest

    manifest = read_manifest(bundle)
    for variant in variants:
        source = out / manifest.variant_file(variant)
        shutil.copy(bundle / manifest.variant_file(variant), source)
        command = [sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", str(source)]
        command += ["--output_dir", str(out), "--optimization_style", "Fixed", "--target_platform", "arm"]
        subprocess.run(command, capture_output=True, text=True, timeout=900, check=True)
        source.unlink()
    for leftover in out.iterdir():
        if leftover.suffix != ".ort":
            leftover.unlink()


def matrix(args: argparse.Namespace) -> dict[str, Any]:
    from answers import platform_record

    from edge_sent.contract import read_manifest
    from edge_sent.variants import VARIANTS

    bundle = args.bundle.resolve()
    manifest = read_manifest(bundle)
    cpu_variants = [v for v in manifest.variants if v not in VARIANTS or VARIANTS[v].runs_on_provider("cpu")]
    texts = read_texts(args.n)
    here = platform_record()
    reference_name = x86_class(here["cpu_flags"]) if here["machine"] in ("x86_64", "amd64") else here["machine"]
    platforms: dict[str, dict[str, Any]] = {}
    notes: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="edge-sent-devices-") as tmp:
        work = Path(tmp)
        (work / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
        ort_dir = work / "ort"
        ort_dir.mkdir()
        convert_to_ort(bundle, cpu_variants if args.ort_all else [v for v in cpu_variants if v == "int8"], ort_dir)
        timeout, batch = args.timeout, args.emulated_batch
        # the reference twice: one text at a time (what Node.js and the page do) and at the emulated platforms'
        # batch (same texts, same length-sorted batches: comparable for batch-dependent variants too)
        one_by_one = python_platform([sys.executable], work, bundle, ort_dir, timeout, 1)
        batched = python_platform([sys.executable], work, bundle, ort_dir, timeout, batch)
        platforms[reference_name] = one_by_one
        notes[reference_name] = "reference: native, this machine"
        if "avx512f" not in here["cpu_flags"] and "haswell" in args.platforms:
            notes[reference_name] += "; this machine has no AVX-512: it is the AVX2 class itself"
        jobs, emulated_notes = emulated_jobs(args, here["cpu_flags"], work, bundle, ort_dir)
        notes |= emulated_notes
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:  # one thread each, side by side
            futures = {name: pool.submit(job) for name, job in jobs.items()}
            platforms |= {name: future.result() for name, future in futures.items()}
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        has_js = (ROOT / "js" / "node_modules").is_dir() and shutil.which("node")
        if "node" in args.platforms and has_js:
            platforms["Node.js"] = node_platform(bundle, texts, cpu_variants)
            notes["Node.js"] = "native x86, onnxruntime-node's own build"
        if "browser" in args.platforms and has_js and chromium:
            platforms["browser"] = browser_platform(bundle, texts, cpu_variants, chromium)
            notes["browser"] = "WebAssembly (SIMD) kernels, single thread; the page reports the label's probability"
    rows = []
    for name, result in platforms.items():
        if name == reference_name:
            continue
        reference = (batched if result.get("batch_size", 1) == batch else one_by_one)["answers"]
        for graph, ref in reference.items():
            if graph in result["answers"]:
                rows.append(
                    {"graph": graph, "platform": name} | compare(ref, result["answers"][graph], manifest.labels)
                )
            elif graph in result.get("errors", {}):
                rows.append({"graph": graph, "platform": name, "error": result["errors"][graph]})
    return {
        "bundle": str(args.bundle),
        "random_weights": manifest.random_weights,
        "n_texts": len(texts),
        "texts": f"first {len(texts)} of data/chnsenticorp/test.tsv",
        "reference": reference_name,
        "platforms": {
            name: {
                "record": r["platform"],
                "note": notes.get(name, ""),
                "wall_s": r.get("wall_s"),
                "batch_size": r.get("batch_size", 1),
            }
            for name, r in platforms.items()
        },
        "not_run": {name: note for name, note in notes.items() if name not in platforms},
        "reference_errors": platforms[reference_name].get("errors", {}),
        "rows": rows,
    }


def markdown(report: dict[str, Any]) -> str:
    names = [n for n in report["platforms"] if n != report["reference"]]
    graphs = list(dict.fromkeys(row["graph"] for row in report["rows"]))
    cells = {(row["graph"], row["platform"]): row for row in report["rows"]}
    lines = [
        f"Against **{report['reference']}** (native), same files, {report['texts']} (emulated platforms: the same "
        "length-sorted batches on both sides); each cell: labels identical / max |Δprob| (bold: some label differs).",
        "",
        "| graph | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for graph in graphs:
        row = []
        for name in names:
            cell = cells.get((graph, name))
            if cell is None:
                row.append("—")
            elif "error" in cell:
                row.append(f"error: {cell['error'][:60]}")
            else:
                text = f"{cell['labels_identical']:.1%} / {cell['max_abs_dprob']:.1e}"
                row.append(f"**{text}**" if cell["labels_identical"] < 1 else text)
        lines.append(f"| {graph} | " + " | ".join(row) + " |")
    lines.append("")
    for name, platform in report["platforms"].items():
        record = platform["record"]
        what = ", ".join(f"{k} {v}" for k, v in record.items() if k not in ("cpu_flags", "cpu_source"))
        if "cpu_flags" in record:  # the CPU the answers module ran on (the emulated one under qemu), and from where
            features = " ".join(record["cpu_flags"]) or "none of the tracked ones"
            what += f"; CPU features ({record.get('cpu_source', 'cpuinfo')}): {features}"
        batch = "one text at a time" if platform["batch_size"] == 1 else f"batches of {platform['batch_size']}"
        wall = f"; {platform['wall_s']} s" if platform.get("wall_s") is not None else ""
        lines.append(f"- {name}: {platform['note']}; {batch}{wall} ({what})")
    for name, note in report["not_run"].items():
        lines.append(f"- {name}: {note}")
    return "\n".join(lines) + "\n"


def record_in_manifest(bundle: Path, report: dict[str, Any]) -> None:
    """`platforms` in the manifest: per variant and platform, how its answers compared (atomic rewrite)."""
    path = bundle / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    variants: dict[str, dict[str, Any]] = {}
    for row in report["rows"]:
        if row["graph"] in data["variants"]:
            keep = {k: v for k, v in row.items() if k not in ("graph", "platform")}
            variants.setdefault(row["graph"], {})[row["platform"]] = keep
    data["platforms"] = {
        "reference": report["reference"],
        "n_texts": report["n_texts"],
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "variants": variants,
    }
    tmp = path.with_name(".manifest.json.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--n", type=int, default=200, help="texts (the first N of the test split)")
    parser.add_argument("--arm64-root", type=Path, default=ROOT / ".emu" / "arm64")
    parser.add_argument(
        "--platforms", default="haswell,arm64,arm64-a72,node,browser", help="which platforms to run (comma-separated)"
    )
    parser.add_argument("--ort-all", action="store_true", help="convert every variant to .ort (default: int8 only)")
    parser.add_argument(
        "--emulated-batch", type=int, default=16, help="texts per batch on the emulated platforms (speed only)"
    )
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per platform")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="emulated platforms run at once")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--md", type=Path, help="write the markdown table here")
    parser.add_argument("--record", action="store_true", help="record the result in the bundle's manifest")
    args = parser.parse_args(argv)
    args.platforms = set(args.platforms.split(","))
    report = matrix(args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(report)
    print(table)
    if args.md:
        args.md.write_text(table, encoding="utf-8")
    if args.record:
        record_in_manifest(args.bundle, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
