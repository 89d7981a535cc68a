"""Head refit on the deployed encoder: the encoder is frozen, so a quantized variant's head can be fitted
on the features that *its* graph produces (on the runtime that will run it) instead of the fp32 ones.

Every graph of a bundle names the head's input `pooled` (export/graph.py), so the refit
1. adds `pooled` as a graph output and runs the variant over the training texts,
2. fits a new `Linear(hidden, n)` with the run's own hyperparameters (train/head.py),
3. replaces everything downstream of `pooled` with a float32 Gemm + Softmax carrying the new head.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge_sent import calibration_choice
from edge_sent.contract import OUTPUT_NAMES
from edge_sent.errors import EdgeSentError
from edge_sent.export.graph import POOLED
from edge_sent.labeled import DataConfig, LabeledData, label_ids, load_labeled
from edge_sent.rundir import RunDir, RunMeta
from edge_sent.runtime.measure import MeasureRequest
from edge_sent.train.head import HeadConfig, fit_head


@dataclass(frozen=True)
class RefitData:
    train: LabeledData
    train_ids: np.ndarray
    dev: LabeledData | None
    dev_ids: np.ndarray | None
    n_labels: int
    head_weight: np.ndarray  # the fp32 pipeline's head: the "before" of the refit
    head_bias: np.ndarray


def load_refit_data(
    run_dir: Path, meta: RunMeta, override: Path | None, data: DataConfig, head: tuple[np.ndarray, np.ndarray]
) -> RefitData:
    """The training set the run was fitted on (recorded in RUN_DIR, or --refit-data) and the run's dev copy."""
    recorded = meta.data
    path = override or (Path(recorded.train) if recorded else None)
    if path is None:
        raise EdgeSentError(f"{run_dir}: the run does not record its training data; pass --refit-data TRAIN_FILE")
    if not path.is_file():
        raise EdgeSentError(f"refit training data not found: {path} (pass --refit-data TRAIN_FILE)")
    columns = data if override or recorded is None else DataConfig(recorded.text_column, recorded.label_column)
    train = load_labeled(path, columns)
    limit = None if override or recorded is None else recorded.limit
    if limit:
        train = LabeledData(train.path, train.texts[:limit], train.labels[:limit], train.skipped_empty)
    labels, aliases = list(meta.labels), [meta.data_labels]
    dev = dev_ids = None
    dev_path = RunDir(run_dir).file(meta.dev_file) if meta.dev_file else None
    if dev_path is not None and dev_path.is_file():
        dev = load_labeled(dev_path, DataConfig("text", "label"))
        dev_ids = label_ids(dev, labels, aliases, known_from="the run's labels")
    train_ids = label_ids(train, labels, aliases, known_from="the run's labels")
    return RefitData(train, train_ids, dev, dev_ids, len(labels), head[0], head[1])


def variants_to_refit(requested: tuple[str, ...], built: tuple[str, ...]) -> tuple[str, ...]:
    names = built if "all" in requested else requested
    stray = [n for n in names if n not in built]
    if stray:
        raise EdgeSentError(
            f"--refit-head {stray[0]!r}: not a variant of this export (--quantize {','.join(built)}; or 'all')"
        )
    return tuple(names)


def head_config(meta: RunMeta) -> HeadConfig:
    """The run's own head hyperparameters (head.json), so the refit trains the head the same way."""
    known = HeadConfig.__dataclass_fields__
    return HeadConfig(**{k: v for k, v in meta.hyperparameters.items() if k in known})


def _pooled_type(model: onnx.ModelProto) -> int:
    """float16 in the fp16 variant (its head weights are float16), float32 elsewhere."""
    inits = {i.name: i.data_type for i in model.graph.initializer}
    for node in model.graph.node:
        if POOLED in node.input and any(inits.get(name) == TensorProto.FLOAT16 for name in node.input):
            return TensorProto.FLOAT16
    return TensorProto.FLOAT


def with_pooled_output(src: Path, dst: Path) -> None:
    model = onnx.load(str(src))
    if not any(POOLED in node.output for node in model.graph.node):
        raise EdgeSentError(f"{src.name}: the graph has no '{POOLED}' tensor (exported by an older edge-sent?)")
    model.graph.output.append(helper.make_tensor_value_info(POOLED, _pooled_type(model), None))
    onnx.save(model, str(dst))


def replace_head(src: Path, dst: Path, weight: np.ndarray, bias: np.ndarray) -> None:
    """Drop the nodes downstream of `pooled`, then add a float32 Gemm + Softmax with the given head."""
    model = onnx.load(str(src))
    graph = model.graph
    pooled_type = _pooled_type(model)
    tainted, kept = {POOLED}, []
    for node in graph.node:  # nodes are topologically sorted
        if tainted.intersection(node.input):
            tainted.update(node.output)
        else:
            kept.append(node)
    source = POOLED
    if pooled_type != TensorProto.FLOAT:
        kept.append(helper.make_node("Cast", [POOLED], ["pooled_fp32"], name="/head_refit/Cast", to=TensorProto.FLOAT))
        source = "pooled_fp32"
    kept.append(
        helper.make_node(
            "Gemm",
            [source, "head_refit.weight", "head_refit.bias"],
            [OUTPUT_NAMES[0]],
            name="/head_refit/Gemm",
            transB=1,
        )
    )
    kept.append(helper.make_node("Softmax", [OUTPUT_NAMES[0]], [OUTPUT_NAMES[1]], name="/head_refit/Softmax", axis=-1))
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input}
    inits = [i for i in graph.initializer if i.name in used]
    inits += [
        numpy_helper.from_array(weight.astype(np.float32), "head_refit.weight"),
        numpy_helper.from_array(bias.astype(np.float32), "head_refit.bias"),
    ]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    for output in graph.output:  # the fp16 variant declared float outputs already (keep_io_types)
        output.type.tensor_type.elem_type = TensorProto.FLOAT
    del graph.value_info[:]
    onnx.save(model, str(dst))


def features(runner, model: Path, base: MeasureRequest, texts: list[str]) -> tuple[np.ndarray, dict]:
    results, info = runner.outputs(replace(base, model=str(model), texts=texts, outputs=(POOLED,)))
    return results[POOLED], info


def refit_head(
    runner,
    variant_file: Path,
    work: Path,
    base: MeasureRequest,
    data: RefitData,
    config: HeadConfig,
    calibrate: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Weights and bias of the head refitted on `variant_file`'s own features, plus what was done. `calibrate`
    (a calibrated run): the calibration is chosen on the dev features by cross-validation, as train does for fp32,
    and folded into the weights; without dev features the refitted head is not calibrated, and says so."""
    probe = work / f"{variant_file.stem}.pooled.onnx"
    with_pooled_output(variant_file, probe)
    try:
        x_train, ran = features(runner, probe, base, data.train.texts)
        x_dev = features(runner, probe, base, data.dev.texts)[0] if data.dev is not None else None
    finally:
        probe.unlink(missing_ok=True)
    result = fit_head(x_train, data.train_ids, data.n_labels, config, x_dev, data.dev_ids)
    weight = result.head.weight.detach().numpy()
    bias = result.head.bias.detach().numpy()
    info = {
        "features_on": ran["providers"][0],
        "precision": ran["precision"],
        "onnxruntime": ran["onnxruntime"],
        "n_train": len(data.train.texts),
        "n_dev": len(data.dev.texts) if data.dev is not None else 0,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
    }
    if x_dev is not None and data.dev_ids is not None:
        before = (x_dev @ data.head_weight.T + data.head_bias).argmax(axis=1)
        info["dev_accuracy_before"] = float((before == data.dev_ids).mean())
        dev_logits = x_dev @ weight.T + bias
        info["dev_accuracy"] = float((dev_logits.argmax(axis=1) == data.dev_ids).mean())
        if calibrate:
            choice = calibration_choice.choose(dev_logits, data.dev_ids)
            weight, bias = choice.chosen.fold(weight, bias)
            info["calibration"] = choice.chosen.to_json() | {"chosen_because": choice.reason}
            info["temperature"] = choice.chosen.temperature
    if calibrate and "calibration" not in info:
        info["calibration"] = {"method": "none", "temperature": 1.0, "skipped": "no dev split to choose on"}
    return weight, bias, info


def calibrates(meta: RunMeta) -> bool:
    """Whether a refitted head chooses its own calibration: when train chose one for the run (not
    --no-calibrate, and a dev split), whichever it chose."""
    return meta.calibration is not None and not meta.calibration.get("skipped")
