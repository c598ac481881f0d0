"""splunkd and the host: REST connection, conf, credentials, KV store cache, budget files, job state, logs."""
