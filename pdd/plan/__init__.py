"""What the workflow asks, free of torch: the config mapped to each job's settings, the result-path layout, the
output registry, the attack-job grouping, the config checks, and Snakemake's own DAG read back (`dag`)."""
