"""The `edge-sent` command line. Runtime commands never import torch; train/export load it lazily."""

from __future__ import annotations

import os

# onnxruntime's official builds send usage telemetry and keep a device id under HOME (a warning on stderr where
# HOME is read-only). The command line turns it off before onnxruntime is first imported, unless the user set it.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import typer

from edge_sent import __version__
from edge_sent.cli.common import readable_help
from edge_sent.cli.eval_cmd import eval_cmd
from edge_sent.cli.runtime_cmds import info_cmd, predict_cmd, verify_cmd

readable_help()
app = typer.Typer(
    name="edge-sent",
    help="Frozen BERT + linear head sentiment classifier: train, export one fused ONNX graph, serve without torch.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edge-sent {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """edge-sent: train → export → predict."""


from edge_sent.cli.bench_cmd import bench_cmd  # noqa: E402
from edge_sent.cli.build import export_cmd, train_cmd  # noqa: E402
from edge_sent.cli.score_cmd import score_cmd  # noqa: E402
from edge_sent.cli.serve_cmd import serve_cmd  # noqa: E402
from edge_sent.cli.tune_cmd import tune_cmd  # noqa: E402

app.command("train")(train_cmd)
app.command("export")(export_cmd)
app.command("predict")(predict_cmd)
app.command("eval")(eval_cmd)
app.command("info")(info_cmd)
app.command("verify")(verify_cmd)
app.command("bench")(bench_cmd)
app.command("score")(score_cmd)
app.command("serve")(serve_cmd)
app.command("tune")(tune_cmd)


def main() -> None:
    app()
