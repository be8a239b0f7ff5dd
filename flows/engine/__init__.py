"""What the flows run on.

A temporary Prefect API (prefect_server) and Dask workers forked from one warmed-up process
(forkserver, forkserver_preload).
"""
