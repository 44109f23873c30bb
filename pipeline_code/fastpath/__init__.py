"""The fast path: each event, as it arrives, updates its user's state in the online store.

One handler (``handler.FastPath``) runs the core's parse and validation and
merges each valid event into its user's ``Activity`` (``core.userstate``);
around it, one thin adapter per delivery:

- ``pubsub_push``: GCP, a Cloud Run service behind a Pub/Sub push
  subscription (``python -m pipeline_code.fastpath``);
- ``aws_lambda``: AWS, a Lambda behind a Kinesis event source mapping;
- ``azure_function``: Azure, a Function with an Event Hubs trigger;
- ``local``: ``dataflow fresh``, the same over the local event log.

A bad event is acknowledged, counted and logged with its reason, and never
blocks a partition; its one record is the processing link's row in
``dead_letters``, which reads the same stream with the same parse (a second
row from here would count the same arrival twice). Only a store that fails
makes a delivery fail, so the platform retries it and, past its retries,
sets it aside in the chain's dead letters.
"""
