"""Beam's signature lookups, remembered: a third of a pipeline's fixed cost.

Beam asks ``inspect.signature`` about every method of every DoFn each time it
checks whether the DoFn keeps state (``userstate.get_dofn_specs``): when a
``ParDo`` is applied, when the pipeline is turned into its proto, and again
when the runner builds each bundle processor. A local run builds and runs a
fresh pipeline of about 45 DoFns (per worker, per run of the log), and those
lookups were 0.12-0.13 s of its 0.39-0.41 s fixed cost here (a one-event
run, six runs each way), paid again by every ``dataflow up`` micro-batch.

A function's signature does not change, and a bound method's is its
function's without the first parameter whatever the instance, so
``install`` puts a cache keyed by the function object (held weakly) in
front of Beam's ``get_signature``, in each Beam module that imported it.
Anything else (builtins, classes, partials) is asked of Beam every time.
``tests/pipeline_code/beam/test_signatures.py`` fails if a Beam module
binds the uncached lookup, or if a cached answer differs from Beam's.

Installed on import of ``pipeline_code.beam``.
"""

from __future__ import annotations

import inspect
import types
import weakref
from collections.abc import Callable
from typing import Any

from apache_beam.transforms import core, ptransform, util
from apache_beam.typehints import decorators

MODULES = (decorators, core, ptransform, util)
"""The Beam modules that bind ``get_signature`` (the test checks every loaded one)."""

_beams: Callable[[Any], inspect.Signature] = decorators.get_signature
_known: weakref.WeakKeyDictionary[types.FunctionType, dict[bool, inspect.Signature]] = (
    weakref.WeakKeyDictionary()
)


def get_signature(func: Any) -> inspect.Signature:
    """Beam's ``get_signature``, remembered per function (and per bound or not)."""
    if isinstance(func, types.MethodType) and isinstance(func.__func__, types.FunctionType):
        key, bound = func.__func__, True
    elif isinstance(func, types.FunctionType):
        key, bound = func, False
    else:
        return _beams(func)
    answers = _known.get(key)
    if answers is None:
        answers = _known[key] = {}
    signature = answers.get(bound)
    if signature is None:
        signature = answers[bound] = _beams(func)
    return signature


def install() -> None:
    """Put the remembering lookup in every module of ``MODULES`` (idempotent)."""
    for module in MODULES:
        module.get_signature = get_signature
