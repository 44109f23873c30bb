"""The streams: the local event log, each cloud stream's publisher and record
decoding, and the offsets every engine stores (``source_offset``).

One module per stream: ``eventlog`` (local), ``pubsub``, ``kinesis``,
``eventhubs``; ``publish`` is the collector's publisher interface with its
spill, and ``records`` what all partitioned streams share. Cloud SDKs are
imported on use, so a collector or job image installs only its cloud's.
"""
