"""The provider as a running service: the entry points that compose the layers below.

`actor` hosts the head (`provider.head.ProviderHead`) as a named Ray actor and starts its telemetry
(`telemetry.head_source.HeadTelemetry`) beside it; `runner` is `etrid-ray provider run` / `stop` and the
Ray Jobs entrypoint. They live above both `provider` and `telemetry` because they wire the two together:
the telemetry reads the head (it imports `provider`), so the head's package must never import the
telemetry, and whatever starts both sits on top of them. Only `demo` and `cli` import this package.
"""
