"""``LocalRunOptions``: views made once behave as Beam's views do."""

from __future__ import annotations

import pickle

from apache_beam.options.pipeline_options import (
    DebugOptions,
    PipelineOptions,
    StandardOptions,
    TypeOptions,
)

from pipeline_code.beam.pipeline import LocalRunOptions, ProcessingOptions


def test_a_view_is_made_once_and_shares_every_value():
    opts = LocalRunOptions(pipeline_type_check=False)
    assert opts.view_as(StandardOptions) is opts.view_as(StandardOptions)
    assert opts.view_as(TypeOptions).pipeline_type_check is False
    opts.view_as(StandardOptions).streaming = True
    opts.view_as(DebugOptions).add_experiment("x")
    # What one view set, every view of these options reads, as with Beam's own.
    assert PipelineOptions.view_as(opts, StandardOptions).streaming is True
    assert opts.view_as(DebugOptions).lookup_experiment("x")
    assert opts.get_all_options()["streaming"] is True
    assert opts.view_as(ProcessingOptions).shards == PipelineOptions([]).view_as(ProcessingOptions).shards


def test_pickled_options_keep_their_values_and_remake_their_views():
    opts = LocalRunOptions()
    opts.view_as(StandardOptions).streaming = True
    copy = pickle.loads(pickle.dumps(opts))
    assert copy.view_as(StandardOptions).streaming is True
    assert copy.view_as(StandardOptions) is copy.view_as(StandardOptions)
    assert copy.view_as(StandardOptions) is not opts.view_as(StandardOptions)
