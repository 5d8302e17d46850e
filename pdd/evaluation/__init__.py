"""How ensembles are attacked and measured: the attacks and their registry, the strong evaluation, diversity,
member transfer, Grad-CAM, external models, result records and the cost meter."""
