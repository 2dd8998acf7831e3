"""Scans on a Dask cluster (``pip install 'chainwatch[dask]'``).

``task.py`` is what runs on a worker: a pure function of (target spec, options) that returns
the verdict or a failure record; it is handed no database connection and no client, only
strings and plain data, and builds what it needs once per worker process. ``cluster.py`` is
the client side: it connects to a scheduler (or starts a ``LocalCluster``), submits one task
per target with retries, and turns whatever comes back, a failure included, into one outcome
per target. Verdict memory and the known-bad store are written by the client process only.
"""
