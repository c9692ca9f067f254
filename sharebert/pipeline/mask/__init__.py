"""`sharebert mask`: prepared shards to duplicated, statically masked HDF5 samples (docs/mask.md)."""
