"""The ``ser`` command line: the layer above the library (:mod:`ser_tasks`) and the flows (:mod:`flows`).

Neither of those imports it; the console script ``ser`` runs :data:`ser_cli.app.app`.
"""
