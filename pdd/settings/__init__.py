"""The typed settings and data-only registries every wing reads (datasets, attacks, training methods, the
settings dataclasses with their defaults and help): free of torch and numpy, so that the workflow plans its DAG
without them. The torch modules import from here, never the other way."""
