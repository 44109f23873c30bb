"""The Data-Flow policy pack: rules in ``rules.py``, the pack in ``__main__.py``."""
