"""Event contract and schema registry: versions v1..v3, header detection, parsing, migration.

Flow for one input file (pure functions; the caller does the I/O):
``detection.detect_file`` (the header, and ``file_checks`` on the name and bytes)
-> if ingestible, ``csv_records.read_records(contents, match.columns)`` (all strings)
-> ``migration.to_latest(raw, match.version)``. Nothing is re-exported here so that importing
``contract`` (the generator does) does not import Arrow.
"""
