"""The REST API of ``aidp serve`` (FastAPI), beside the CLI: both call only :mod:`aidp.app`.

Importing this package imports the web stack; the CLI imports it only in ``aidp serve``.
"""
