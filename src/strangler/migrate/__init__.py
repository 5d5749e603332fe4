"""Moving the data: backfill (legacy documents → the new store, with a report of what it
repaired or quarantined), verify (a diff of both stores) and repair (make them match)."""
