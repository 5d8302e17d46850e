"""How ensembles are attacked and measured: the attacks (their registry lives in pdd.settings.attacks), the strong
evaluation, diversity, member transfer, Grad-CAM and Figures 1 and 5's jobs, external models, result records and
the cost meter."""
