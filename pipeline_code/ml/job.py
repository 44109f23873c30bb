"""The training job every cloud runs: one entrypoint, three platforms' contracts.

    python -m pipeline_code.ml.job                                  # SageMaker (reads SM_* and /opt/ml)
    python -m pipeline_code.ml.job --training-data /gcs/B/training \\
        --production /gcs/B/models/production                       # Vertex AI custom job (AIP_MODEL_DIR)
    python -m pipeline_code.ml.job --training-data ${{inputs.training_data}} \\
        --production ${{inputs.production}} --model-out ${{outputs.model}}   # Azure ML command job

It reads the scheduled export of the warehouse (``ml.export.export_sql`` as
Parquet), scores the production model on the candidate's holdout, trains and
writes the version with the gate's decision (``ml.train.train_on``): the
version's files (``metadata.json``, ``model.npz``) at the root of the model
output, and ``decision.json`` (the version, the decision, the numbers and the
reason) beside them and in the platform's output folder. With
``--registry`` it then publishes the version to the model registry
(``ml.publish``) and, if promoted and ``ROLLOUT`` names a target, rolls it
out with the platform's safe deployment (``ml.deploy``). ``--rollback``
serves and rolls out the version that served before the current one,
without training: the cloud's one rollback command. With ``WAREHOUSE``
(``ml.record``) the decision and the served version are written to the
warehouse's ``model_versions``.

Where each input comes from, first match wins:

- training data: ``--training-data``, ``SM_CHANNEL_TRAINING``, SageMaker's
  ``/opt/ml/input/data/training``;
- production model (optional: none on the first run): ``--production``,
  ``SM_CHANNEL_PRODUCTION``, ``/opt/ml/input/data/production``; a folder of
  the served version's files;
- model output: ``--model-out``, ``SM_MODEL_DIR``, ``AIP_MODEL_DIR`` (a
  ``gs://`` URI is written through Vertex AI's Cloud Storage FUSE mount,
  ``/gcs/BUCKET/...``), SageMaker's ``/opt/ml/model``;
- settings: the flags, else SageMaker's ``hyperparameters.json`` (strings,
  as SageMaker writes them), else the defaults.

A failure exits 1 with one line on stderr; under SageMaker the same line goes
to ``/opt/ml/output/failure``, which SageMaker shows as the job's
FailureReason.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from pipeline_code.ml.data import TrainingDataError, read_exported
from pipeline_code.ml.registry import DEFAULT_TOLERANCE, Registry
from pipeline_code.ml.train import TrainingError, TrainResult, TrainSettings, train_on

SAGEMAKER = Path("/opt/ml")
DECISION_FILE = "decision.json"
HYPERPARAMETERS = ("factors", "iterations", "holdout_days", "tolerance")


class JobError(Exception):
    """The job cannot run as configured; the message names the input."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pipeline_code.ml.job")
    p.add_argument("--training-data", default=None)
    p.add_argument("--production", default=None)
    p.add_argument("--model-out", default=None)
    p.add_argument("--factors", type=int, default=None)
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--holdout-days", dest="holdout_days", type=float, default=None)
    p.add_argument("--tolerance", type=float, default=None)
    p.add_argument(
        "--registry", default=None, help="publish here ($REGISTRY): s3://, gs:// (its /gcs mount) or a folder"
    )
    p.add_argument(
        "--artifact-base", default=None, help="the registry as the platform names it (default --registry)"
    )
    p.add_argument(
        "--rollback", action="store_true", help="serve and roll out the previous version; no training"
    )
    # Vertex AI and Azure ML may pass their own flags; unknown ones are ignored.
    args, _ = p.parse_known_args(argv)
    return args


def _gcs_path(uri: str) -> Path:
    """``gs://bucket/path`` -> Vertex AI's FUSE mount of it."""
    return Path("/gcs") / uri.removeprefix("gs://")


def resolve(args: argparse.Namespace, env: Mapping[str, str], sagemaker: Path = SAGEMAKER) -> dict:
    """Every input and output path, and the settings, per the module doc."""
    on_sagemaker = (sagemaker / "input" / "data").is_dir()

    def channel(name: str) -> str | None:
        folder = sagemaker / "input" / "data" / name
        return env.get(f"SM_CHANNEL_{name.upper()}") or (str(folder) if folder.is_dir() else None)

    data = args.training_data or channel("training")
    if not data:
        raise JobError("no training data: pass --training-data, or give a SageMaker job a 'training' channel")
    production = args.production or channel("production")
    out = (
        args.model_out
        or env.get("SM_MODEL_DIR")
        or env.get("AIP_MODEL_DIR")
        or (str(sagemaker / "model") if on_sagemaker else None)
    )
    if not out:
        raise JobError("no model output: pass --model-out, or set SM_MODEL_DIR or AIP_MODEL_DIR")
    out_path = _gcs_path(out) if out.startswith("gs://") else Path(out)
    hyper: dict[str, str] = {}
    hp_file = sagemaker / "input" / "config" / "hyperparameters.json"
    if hp_file.is_file():
        try:
            hyper = json.loads(hp_file.read_text())
        except ValueError as exc:
            raise JobError(f"{hp_file} is not JSON: {exc}") from exc
    values: dict[str, float | int] = {}
    for name in HYPERPARAMETERS:
        flag = getattr(args, name)
        raw = flag if flag is not None else hyper.get(name.replace("_", "-"), hyper.get(name))
        if raw is None:
            continue
        kind = int if name in ("factors", "iterations") else float
        try:
            values[name] = kind(raw)
        except (TypeError, ValueError):
            raise JobError(f"hyperparameter {name} must be a number, got {raw!r}") from None
    output_data = env.get("SM_OUTPUT_DATA_DIR") or (
        str(sagemaker / "output" / "data") if on_sagemaker else None
    )
    return {
        "data": Path(data),
        "production": Path(production) if production else None,
        "out": out_path,
        "tolerance": float(values.pop("tolerance", DEFAULT_TOLERANCE)),
        "settings": values,
        "output_data": Path(output_data) if output_data else None,
    }


def _registry_with(production: Path | None, work: Path) -> Registry:
    """A scratch registry whose served version is the production model's files."""
    registry = Registry(work)
    if production is not None and (production / "metadata.json").is_file():
        version = json.loads((production / "metadata.json").read_text())["model_version"]
        shutil.copytree(production, work / version)
        (work / "LATEST").write_text(version + "\n")
    return registry


def run(args: argparse.Namespace, env: Mapping[str, str], sagemaker: Path = SAGEMAKER) -> TrainResult:
    """Train once under the resolved contract; write the version and its decision."""
    where = resolve(args, env, sagemaker)
    try:
        settings = TrainSettings(**where["settings"])
    except ValueError as exc:
        raise JobError(str(exc)) from exc
    data = read_exported(str(where["data"]))
    with tempfile.TemporaryDirectory(prefix="registry-") as work:
        registry = _registry_with(where["production"], Path(work))
        result = train_on(data, registry, settings, tolerance=where["tolerance"])
        out: Path = where["out"]
        out.mkdir(parents=True, exist_ok=True)
        for path in result.directory.iterdir():
            shutil.copy2(path, out / path.name)
    decision = {
        "model_version": result.version,
        **result.decision.as_dict(),  # type: ignore[union-attr]
        "decided_at": result.model_metadata["gate"]["decided_at"],
    }
    text = json.dumps(decision, indent=2, sort_keys=True) + "\n"
    (out / DECISION_FILE).write_text(text)
    result = dataclasses.replace(result, directory=out)
    if where["output_data"] is not None:
        where["output_data"].mkdir(parents=True, exist_ok=True)
        (where["output_data"] / DECISION_FILE).write_text(text)
    return result


def artifact_of(base: str, version: str, platform: str) -> str:
    """Where the platform takes the version's files from: SageMaker the tarball, the others the folder."""
    base = base if base.endswith("/") else base + "/"
    return f"{base}{version}.tar.gz" if platform == "sagemaker" else f"{base}{version}/"


def release(args: argparse.Namespace, env: Mapping[str, str], result: TrainResult | None) -> str:
    """Publish the trained version to ``--registry`` and roll it out if promoted;
    with ``--rollback``, serve and roll out the previous version instead."""
    from pipeline_code.ml.deploy import target_from_env
    from pipeline_code.ml.publish import store_for

    args.registry = args.registry or env.get("REGISTRY")
    if not args.registry:
        if args.rollback:
            raise JobError("--rollback needs --registry, the registry to roll back")
        return "not published (no --registry)"
    store = store_for(args.registry)
    rollout = target_from_env(env)
    try:
        return _release(args, env, result, store, rollout)
    finally:
        if not args.rollback:
            emit_health(store, env)


def emit_health(store, env: Mapping[str, str]) -> None:
    """One JSON line for log-based alerts (Cloud Logging), and metrics where
    ``TRAINING_METRICS`` says: ``cloudwatch`` (SageMaker), ``appinsights``
    (Azure ML, to ``APPLICATIONINSIGHTS_CONNECTION_STRING``)."""
    from pipeline_code.host import CLOUDWATCH_NAMESPACE
    from pipeline_code.ml.publish import HEALTH_KEY, health

    values = health(store)
    print(json.dumps({HEALTH_KEY: values}, sort_keys=True))
    if env.get("TRAINING_METRICS") == "appinsights" and env.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        from pipeline_code.host import post_metrics

        post_metrics(
            env["APPLICATIONINSIGHTS_CONNECTION_STRING"], env.get("TRAINING_NAME", "dataflow"), values
        )
    if env.get("TRAINING_METRICS") == "cloudwatch":
        import boto3

        dims = [{"Name": "Registry", "Value": env.get("TRAINING_NAME", "dataflow")}]
        boto3.client("cloudwatch").put_metric_data(
            Namespace=CLOUDWATCH_NAMESPACE,
            MetricData=[{"MetricName": k, "Dimensions": dims, "Value": v} for k, v in sorted(values.items())],
        )


def _release(args, env, result, store, rollout) -> str:
    from pipeline_code.ml.deploy import deploy
    from pipeline_code.ml.publish import previous_version, publish, serve, served

    before = served(store)

    def recorded(version: str) -> None:
        """The decision and who serves, in the warehouse's model_versions (``WAREHOUSE``)."""
        if not env.get("WAREHOUSE"):
            return
        import datetime as dt

        from pipeline_code.ml.record import record, rows_for

        now = dt.datetime.now(dt.UTC)
        rows = rows_for(store, version, before, served(store), now)
        record(env["WAREHOUSE"], rows, int(now.timestamp() * 1e6), store)

    if args.rollback:
        version = previous_version(store)
        if version is None:
            raise JobError(f"nothing to roll back to in {args.registry}")
        entry = serve(store, version, "rollback", "rolled back by hand")
        recorded(version)
        what = f"rolled back to {version} (was {entry['previous']})"
    else:
        assert result is not None and result.decision is not None
        decision = json.loads((result.directory / DECISION_FILE).read_text())
        promoted = publish(store, result.directory, decision) is not None
        recorded(result.version)
        if not promoted:
            why = "already served" if decision["decision"] == "promoted" else "refused"
            return f"published {result.version}, {why}: not rolled out"
        version, what = result.version, f"published and promoted {result.version}"
    if rollout is None:
        return what + "; no ROLLOUT target"
    platform, target, canary, bake = rollout
    deploy(
        platform,
        target,
        version,
        artifact_of(args.artifact_base or args.registry, version, platform),
        canary,
        bake,
    )
    return what + f"; rolled out on {platform}"


def main(
    argv: list[str] | None = None, env: Mapping[str, str] | None = None, sagemaker: Path = SAGEMAKER
) -> int:
    from pipeline_code.ml.deploy import DeployError
    from pipeline_code.ml.record import RecordError

    env = os.environ if env is None else env
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        result = None if args.rollback else run(args, env, sagemaker)
        released = release(args, env, result)
    except (JobError, TrainingError, TrainingDataError, DeployError, RecordError, ValueError) as exc:
        line = f"training failed: {exc}"
        print(line, file=sys.stderr)
        if (sagemaker / "output").is_dir():
            (sagemaker / "output" / "failure").write_text(line + "\n")
        return 1
    if result is not None:
        print(f"model {result.version}: {result.decision.decision}: {result.decision.reason}")  # type: ignore[union-attr]
    print(released)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
