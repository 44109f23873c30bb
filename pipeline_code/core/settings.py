"""The processing settings every engine shares (Beam, Spark), engine-free.

Beam reads them from ``ProcessingOptions`` flags
(``pipeline_code.beam.pipeline.settings_from_options``), the Spark adapter
from its job arguments; both hand the same values to the same core.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessingSettings:
    """Shards for keyed work, the popularity window and its lateness, and the session gap."""

    shards: int = 8
    window_minutes: int = 60
    allowed_lateness_minutes: int = 24 * 60
    session_gap_minutes: int = 30

    def __post_init__(self) -> None:
        for name in ("shards", "window_minutes", "session_gap_minutes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.allowed_lateness_minutes < 0:
            raise ValueError(f"allowed_lateness_minutes must be >= 0, got {self.allowed_lateness_minutes}")

    @property
    def window_us(self) -> int:
        return self.window_minutes * 60_000_000

    @property
    def allowed_lateness_us(self) -> int:
        return self.allowed_lateness_minutes * 60_000_000

    @property
    def session_gap_us(self) -> int:
        return self.session_gap_minutes * 60_000_000


def add_arguments(parser) -> None:
    """The settings as ``--name value`` flags of a job's argparse parser
    (the Glue and Synapse jobs; Beam has its own ``ProcessingOptions``)."""
    defaults = ProcessingSettings()
    for name in ("shards", "window_minutes", "allowed_lateness_minutes", "session_gap_minutes"):
        parser.add_argument(f"--{name}", type=int, default=getattr(defaults, name))


def from_arguments(args) -> ProcessingSettings:
    """Parsed flags -> settings (``ValueError`` names a bad one)."""
    return ProcessingSettings(
        args.shards, args.window_minutes, args.allowed_lateness_minutes, args.session_gap_minutes
    )
