"""The bottom layer, with no I/O: errors, models, ids, normalisation, stages, the value
types every layer shares (``records``) and the ports the backends implement (``ports``)."""
