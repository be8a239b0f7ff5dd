"""Runtime: the processes the pipeline runs in.

The process environment (process_env), Dask worker set-up (worker_setup), and the local service
stack that tests and benchmarks start (devstack; the pipeline itself never imports it).
"""
