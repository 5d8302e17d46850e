"""The cost estimate (`pdd estimate`, `benchmarks/project_cost.py`): projected model image-passes and FLOPs of a
whole config run, per rule. One job per module: `passes` (measuring), `width` (width scaling), `store` (measurements
kept on disk), `bench` (each job kind measured), `rows` (the config's jobs as rows), `prefetch` (measurements taken
in worker processes; the projection), `render` (Markdown).

Image-passes are what the cost ledger counts (`pdd.evaluation.cost_meter.CostMeter`):
images through an ensemble's forward and
through a backward pass that reaches an ensemble output (a second-order loss counts each pass). Nothing here is
guessed: each job kind's passes per unit are MEASURED by running the job's own code (the training step, ART's
attacks through `pdd.evaluation.attacks.run_attack`, `pdd.evaluation.strong`, `pdd.evaluation.diversity`,
`pdd.evaluation.member_transfer`,
`pdd.step_timing`) on `--images` synthetic images at paper scale (real widths, K, image sizes and classes; random
initial weights), then multiplied by the counts the config implies:

- the jobs: every job of the run that has a benchmark file, as Snakemake plans it (`pdd.plan.dag`);
- images: the datasets' real sizes (TRAIN_IMAGES / TEST_IMAGES) or the config's `num_images`; per training
  epoch floor(N / batch) * batch images (the last partial batch is dropped) and one pass over the test set;
- iterations: where passes grow exactly linearly with an iteration count (PGD / BIM steps, adversarial
  training's PGD steps, TRS's and DVERGE's inner steps, C&W iterations and binary-search steps, APGD iterations
  and restarts, member-transfer PGD steps, timing steps), the passes are measured at two small counts and the
  line through them is evaluated at the config's count; the arithmetic is printed.

Widths: the passes do not depend on the members' width where no loop depends on the data, and every counted
operator's FLOPs are proportional to the product of one weight-shaped tensor's dimensions (`WidthScale`). So each
measurement runs once, at a narrow width step (a step of the configured widths' greatest common divisor: the
first above the images per measurement at which every weight shape names its real one unambiguously, 3 or 4 for
a width-64 config), and each operator's FLOPs are scaled to the real widths as counted (exact integers). Only
from a width step of NARROW_FROM = 16 up: below, a narrower run gains little. An operator that cannot be scaled
sends its measurement to the real widths (listed in the output). Data-dependent loops (C&W's line search) run
as often as on the narrow model; their count on random weights is an illustration either way.
`Bench(narrow=False)` measures everything at the real widths (`benchmarks/project_cost.py --full-width`).

Data-dependent loops are marked in the output: JSMA stops when an image reaches its target or its budget of
gamma * features changed features (projected at floor(gamma * features / 2) + 1 iterations: two new features
per iteration); C&W's line search runs 1-11 extra forwards per iteration (measured mean on these images); the
strong evaluation's restarts run only on images still unbroken (projected as if none broke: an upper bound).

Images the target misclassifies are not attacked (`run_attack`, the strong evaluation, member transfer craft only
on the initially correct ones). The synthetic images here are labelled with the model's own predictions, so every
image is correct and the passes above are those of an error-free model. The saving is reported beside them, not
measured: with a clean error e, a job saves e x (its passes that scale with the crafted images), e being the
paper's own baseline clean error (Table 2, K = 3: `CLEAN_ERROR`); a dataset the paper reports none for gets none.
"""


from pdd.estimate.bench import Bench, strong_formula
from pdd.estimate.passes import CLEAN_ERROR, CPU, TEST_IMAGES, TINY_EPS, TRAIN_IMAGES, Passes, line, measure
from pdd.estimate.prefetch import prefetch, project, requests
from pdd.estimate.render import Rate, details, markdown, report, totals
from pdd.estimate.rows import (
    Row,
    attack_passes,
    attack_rows,
    clean_saving,
    diversity_rows,
    eval_images,
    group,
    job_count,
    jobs_of,
    member_transfer_rows,
    sci,
    strong_rows,
    time_steps_rows,
    train_rows,
)
from pdd.estimate.store import Missing, Store, code_version
from pdd.estimate.width import NARROW_FROM, WidthDependent, WidthScale, parameter_shapes

__all__ = ["CLEAN_ERROR", "CPU", "NARROW_FROM", "TEST_IMAGES", "TINY_EPS", "TRAIN_IMAGES", "Bench", "Missing",
           "Passes", "Rate", "Row", "Store", "WidthDependent", "WidthScale", "attack_passes", "attack_rows",
           "clean_saving", "code_version", "details", "diversity_rows", "eval_images", "group", "job_count", "jobs_of",
           "line", "markdown", "measure", "member_transfer_rows", "parameter_shapes", "prefetch", "project", "report",
           "requests", "sci", "strong_formula", "strong_rows", "time_steps_rows", "totals", "train_rows"]
