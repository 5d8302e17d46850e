"""What the workflow asks: the config mapped to each job's settings, the result-path layout, the output registry,
input functions, job lists and the config checks."""
