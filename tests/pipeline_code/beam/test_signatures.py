"""Beam's signature lookups, remembered (``pipeline_code.beam.signatures``)."""

from __future__ import annotations

import functools
import sys

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner  # noqa: F401 (loads the runner)
from apache_beam.typehints import decorators

import pipeline_code.beam.pipeline  # noqa: F401 (what a local run loads)
from pipeline_code.beam import signatures
from pipeline_code.beam.transforms import _FirstCopiesFn, _StageFn


def test_every_loaded_beam_module_binds_the_remembering_lookup():
    """If Beam starts importing ``get_signature`` somewhere new, this names the module."""
    stale = [
        name
        for name, module in list(sys.modules.items())
        if name.startswith("apache_beam")
        and getattr(module, "get_signature", None) is not None
        and module.get_signature is not signatures.get_signature
    ]
    assert stale == []


def _plain(a, b=1, *rest, key=None):
    return a


class _Thing:
    def method(self, x, y=beam.DoFn.ElementParam):
        return x


def test_the_answers_are_beams():
    """Functions, lambdas and bound methods are remembered; anything else is
    asked of Beam each time. Every answer is the one Beam gives."""
    beams = signatures._beams
    cases = [
        _plain,
        lambda element, side=None: element,
        _Thing().method,
        _Thing.method,
        _FirstCopiesFn().process,
        _StageFn(None, "events").process,
        str.strip,  # a method descriptor: Beam annotates its first parameter
        int,  # a type: Beam gives its return annotation
        functools.partial(_plain, 1),
        len,
    ]
    for func in cases:
        assert signatures.get_signature(func) == beams(func), func
    # Remembered: a function's answer, and a bound method's whatever the instance, is computed once.
    assert signatures.get_signature(_plain) is signatures.get_signature(_plain)
    assert signatures.get_signature(_Thing().method) is signatures.get_signature(_Thing().method)
    assert decorators.get_signature is signatures.get_signature


def test_a_new_function_is_not_answered_for_an_old_one():
    def make(n):
        if n:
            return lambda a, b: a
        return lambda a: a

    assert list(signatures.get_signature(make(1)).parameters) == ["a", "b"]
    assert list(signatures.get_signature(make(0)).parameters) == ["a"]
