"""The ``atnl`` command line: ``app`` (service.cli.app) registers every command explicitly.

One module per command group: ``train``, ``evaluate``, ``serve`` (serve and worker);
the benchmarks' sub-app comes from ``benchmarks.cli``. ``console`` holds the shared
console, progress bars and logging setup.
"""
