"""Operating the pipeline: log files, batch records, alerts and health."""
