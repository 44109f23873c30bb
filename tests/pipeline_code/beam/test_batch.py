"""RecordBatch and BatchTuple: Beam's default coder carries them whole and sizes them without walking them."""

from __future__ import annotations

import pickle

from apache_beam.coders.typecoders import registry
from apache_beam.typehints import Any

from pipeline_code.beam.batch import BatchTuple, RecordBatch, batched
from pipeline_code.core.parse import RawEvent


def records(n: int) -> list[dict]:
    return [{"event_id": f"e{i}", "items": [{"item_id": "a", "price": 1.5}], "value": None} for i in range(n)]


def test_beams_default_coder_round_trips_a_batch_as_a_batch():
    coder = registry.get_coder(Any)  # what an untyped PCollection gets
    for batch in (RecordBatch(records(3)), RecordBatch([RawEvent(7, 123, b'{"a": 1}')]), RecordBatch()):
        back = coder.decode(coder.encode(batch))
        assert type(back) is RecordBatch and back == batch


def test_the_sampled_size_does_not_grow_with_the_batch():
    impl = registry.get_coder(Any).get_impl()
    small, large = RecordBatch(records(1)), RecordBatch(records(5000))
    plain = impl.get_estimated_size_and_observables(list(large))[0]
    assert plain > 100_000  # a plain list is measured by encoding all of it
    assert (
        impl.get_estimated_size_and_observables(large)[0] == impl.get_estimated_size_and_observables(small)[0]
    )


def test_a_batch_beam_observed_still_pickles_to_its_items():
    batch = RecordBatch(records(2))
    batch.register_observer(lambda value: None)  # Beam's sampler does this; a lambda cannot pickle
    assert pickle.loads(pickle.dumps(batch)) == batch
    as_batch = batched(lambda b: [x * 2 for x in b])
    assert as_batch([1, 2]) == [2, 4] and type(as_batch([1])) is RecordBatch


def test_a_tuple_of_batches_round_trips_and_is_sized_without_walking_it():
    impl = registry.get_coder(Any).get_impl()
    large = (RecordBatch(records(5000)), RecordBatch(records(10)))
    assert impl.get_estimated_size_and_observables(large)[0] > 100_000  # a plain tuple: encoded whole
    element = BatchTuple(large)
    assert impl.get_estimated_size_and_observables(element)[0] < 10
    element.register_observer(lambda value: None)
    for back in (impl.decode(impl.encode(element)), pickle.loads(pickle.dumps(element))):
        assert type(back) is BatchTuple and back == large
    records_, history = element
    assert type(records_) is RecordBatch and len(history) == 10
