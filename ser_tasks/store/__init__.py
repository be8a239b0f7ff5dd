"""The feature store.

The Zarr layout (zarr_store), its row plan (plan), the writer lease (lease), and the body of one
extraction task (extraction).
"""
