"""The host profile over several loads: a server's batch-independent probe adds to it (a later full load measures
only what is missing, `info` shows it), and the probe holds one candidate's session at a time beside fp32's."""

from __future__ import annotations

import gc
import json
import shutil
import weakref
from pathlib import Path

import pytest

from edge_sent.contract import read_manifest
from edge_sent.runtime.classifier import Classifier
from edge_sent.runtime.engine import Engine
from edge_sent.runtime.host.probe import cached_result
from edge_sent.runtime.session import SessionConfig

from .conftest import run_cli


@pytest.fixture()
def bundle(tiny_bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    return copy


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("EDGE_SENT_CACHE", str(folder))
    monkeypatch.delenv("EDGE_SENT_PROBE", raising=False)
    return folder


def _profile(cache: Path) -> dict:
    (path,) = (cache / "host").glob("*.json")
    return json.loads(path.read_text(encoding="utf-8"))["variants"]


def test_a_servers_probe_adds_to_the_profile_and_info_shows_it(
    bundle: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = read_manifest(bundle)
    served = {n for n in manifest.variants if manifest.batch_independent(n)}
    dependent = sorted(n for n in ("int8", "int8-block") if n not in served)
    assert dependent == ["int8"] and "int8-block" in served  # what this test relies on
    Classifier.load(bundle, provider="cpu", threads=1, batch_independent=True)  # what `serve --threads 1` loads
    after_serve = _profile(cache)
    assert "int8" not in after_serve and "int8-block" in after_serve
    config = SessionConfig(provider="cpu", threads=1)
    assert cached_result(manifest, "cpu", config, serving=True) is not None
    info = run_cli("info", str(bundle), "--threads", "1", "--json", env={"EDGE_SENT_CACHE": str(cache)})
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["host_serve"]["variant"] in served  # what serve measured, at its threads
    capsys.readouterr()
    Classifier.load(bundle, provider="cpu", threads=1)  # then `predict --threads 1`: measures int8 only
    note = capsys.readouterr().err
    assert "measuring the speed and fidelity of int8 against" in note, note
    after_predict = _profile(cache)
    assert after_predict["int8-block"]["ms"] == after_serve["int8-block"]["ms"]  # kept, not measured again
    assert set(after_predict) >= {"fp32", "int8", "int8-block"}
    capsys.readouterr()
    Classifier.load(bundle, provider="cpu", threads=1, batch_independent=True)  # serve again: all cached
    assert "first use" not in capsys.readouterr().err
    assert set(_profile(cache)) >= {"fp32", "int8", "int8-block"}  # the server's load kept predict's int8
    assert cached_result(manifest, "cpu", config) is not None


def test_the_probe_holds_one_candidates_session_at_a_time(
    bundle: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live: weakref.WeakSet[Engine] = weakref.WeakSet()
    most = [0]
    real_init = Engine.__init__

    def counting_init(self: Engine, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        gc.collect()
        live.add(self)
        most[0] = max(most[0], len(live))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "__init__", counting_init)
    clf = Classifier.load(bundle, provider="cpu", threads=1)
    profile = _profile(cache)
    assert {"fp32", "int8", "int8-block"} <= set(profile)  # two candidates measured...
    assert most[0] == 2  # ...but never more than fp32 and one of them alive at once
    gc.collect()
    assert list(live) == [clf.engine]  # after the load: only the classifier's session


def test_saving_merges_into_the_cached_profile(cache: Path) -> None:
    """Two processes that probe different variants (a server and a `predict`) both keep what they measured."""
    from edge_sent.fidelity import HostMeasure
    from edge_sent.runtime.host import cache as host_cache

    key = {"schema": "test", "bundle": "b"}
    fast = {"1 text": 2.0}
    host_cache.save_profile(key, {"int8-block": HostMeasure("int8-block", {"1 text": 1.0}, fast)}, 1.0)
    host_cache.save_profile(key, {"int8": HostMeasure("int8", {"1 text": 1.0}, fast, 0.99, counts=(99, 100))}, 1.0)
    assert set(host_cache.load_profile(key)) == {"int8-block", "int8"}
