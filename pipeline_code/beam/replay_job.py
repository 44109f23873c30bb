"""The replay Dataflow runs: the batch chain over an archive range or the
stored dead letters, from the streaming job's Flex Template.

    gcloud dataflow flex-template run replay-$(date +%s) --template-file-gcs-location gs://.../template.json \
        --parameters replay=archive,replay_from=2026-11-01,replay_to=2026-11-02,...

``pipeline_code/dataflow/main.py`` runs this instead of the streaming job
when the launch names ``--replay``. The graph is the batch chain
(``build_graph``) with the warehouse asked about the input's ids and users
(``LookupSnapshot`` over ``BigQueryLookup``) rather than a snapshot, and a
sink that commits once (``BigQueryReplaySink``: JSON lines in Cloud Storage,
one BigQuery transaction guarded by the replay's key). Its input:

- ``archive``: the Cloud Storage subscription's Avro files of the range's
  hour folders (``--archive_uri``), records filtered by publish time;
- ``dead_letters``: the ``dead_letters`` view's rows of the re-run's stage
  and since, read by one worker at the start (the snapshot time is taken
  when the job is built, so the rows it reads are the rows it resolves).
"""

from __future__ import annotations

import uuid

import apache_beam as beam
from apache_beam.options.pipeline_options import GoogleCloudOptions, StandardOptions

from pipeline_code import host
from pipeline_code.beam.io import ReadArchive
from pipeline_code.beam.pipeline import ProcessingOptions, build_graph, settings_from_options
from pipeline_code.core.parse import now_us
from pipeline_code.core.ports import Replay, ReplayLookup
from pipeline_code.host import ReplayRequest
from pipeline_code.streams.archive import Kind

ROWS_PER_BATCH = 2000


def _dead_letter_batches(replay: Replay, lookup: ReplayLookup):
    lookup.open()
    try:
        raws = lookup.dead_letters(replay)
    finally:
        lookup.close()
    for i in range(0, len(raws), ROWS_PER_BATCH):
        yield raws[i : i + ROWS_PER_BATCH]


class ReplayInput(beam.PTransform):
    """What a replay runs over, as batches of ``RawEvent``."""

    def __init__(
        self,
        request: ReplayRequest,
        replay: Replay,
        archive_uri: str | None,
        kind: Kind,
        lookup: ReplayLookup,
    ) -> None:
        super().__init__()
        self.request, self.replay, self.archive_uri, self.kind, self.lookup = (
            request, replay, archive_uri, kind, lookup,
        )  # fmt: skip

    def expand(self, pbegin):
        if self.request.mode == "archive":
            if not self.archive_uri:
                raise ValueError(f"--replay archive needs --archive_uri, got {self.archive_uri!r}")
            return pbegin | "ReadArchive" >> ReadArchive(
                self.archive_uri,
                self.kind,
                self.request.start_us,
                self.request.end_us,  # type: ignore[arg-type]
            )
        return (
            pbegin
            | "Rerun" >> beam.Create([self.replay])
            | "ReadDeadLetters" >> beam.FlatMap(_dead_letter_batches, self.lookup)
            # Spread the batches over the workers (they were read by one).
            | "Spread" >> beam.Reshuffle()
        )


def replay_of(request: ReplayRequest, snapshot_us: int) -> Replay:
    """The commit's ``Replay`` for a request taken at ``snapshot_us``."""
    if request.mode == "archive":
        return Replay()
    return Replay(rerun_before_us=snapshot_us, stage=request.stage, since_us=request.since_us)


def run_replay(argv: list[str] | None = None):
    """Build and run a replay on Dataflow (batch), into the BigQuery dataset."""
    from pipeline_code.beam.streaming import split_dataset
    from pipeline_code.warehouses.bigquery import BigQueryLookup, BigQueryReplaySink

    opts = ProcessingOptions(argv)
    opts.view_as(StandardOptions).streaming = False
    flags = opts.view_as(ProcessingOptions)
    request = host.replay_from_arguments(flags)
    if not flags.output_dataset:
        raise ValueError(f"--output_dataset is required by a replay, got {flags.output_dataset!r}")
    project, dataset = split_dataset(flags.output_dataset)
    temp = opts.view_as(GoogleCloudOptions).temp_location
    staging = flags.replay_staging or (f"{temp.rstrip('/')}/replay" if temp else None)
    if not staging:
        raise ValueError("a replay needs --replay_staging or --temp_location (gs://...), got neither")
    replay = replay_of(request, now_us())
    lookup = BigQueryLookup(project, dataset)
    p = beam.Pipeline(options=opts)
    raw = p | "ReplayInput" >> ReplayInput(request, replay, flags.archive_uri, "pubsub", lookup)
    sink = BigQueryReplaySink(project, dataset, staging, f"replay:{uuid.uuid4().hex}", replay)
    build_graph(raw, None, None, sink, settings_from_options(opts), lookup=lookup)
    return p.run()
