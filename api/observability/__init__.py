"""What an operator sees of the API: Prometheus metrics (`metrics`, served at /metrics by
`router`), log lines for Cloud Logging (`logs`), and the trace each request belongs to
(`tracing`), all set up per request by `middleware`."""
