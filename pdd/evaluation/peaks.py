"""The accelerators' dense peak FLOP/s, with their sources: plain data, free of torch, so that the CLI can offer
them as choices without importing the FLOP counter (and the triton it pulls in) in every job."""

from __future__ import annotations

# Dense peaks in FLOP/s from the vendors' data sheets (SXM boards; the sheets print tensor-core TF32 / BF16
# "with sparsity", so dense = half of the printed figure). None: the precision has no hardware path (V100:
# no TF32 or BF16 tensor cores; such work runs at the FP32 rate, ask for "fp32").
PEAKS: dict[str, dict[str, float | None]] = {
    "v100": {"fp32": 15.7e12, "tf32": None, "bf16": None},
    "a100": {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12},
    "h100": {"fp32": 67e12, "tf32": 989e12 / 2, "bf16": 1979e12 / 2},
    "h200": {"fp32": 67e12, "tf32": 989e12 / 2, "bf16": 1979e12 / 2},
}
PEAK_SOURCES: dict[str, tuple[str, str]] = {
    "v100": ("NVIDIA Tesla V100 GPU Accelerator data sheet (V100 SXM2: single-precision 15.7 TFLOPS)",
             "https://images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf"),
    "a100": ("NVIDIA A100 Tensor Core GPU data sheet (A100 SXM: FP32 19.5, TF32 156, BF16 312 TFLOPS dense)",
             "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
             "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"),
    "h100": ("NVIDIA H100 Tensor Core GPU data sheet (H100 SXM: FP32 67, TF32 989*, BF16 1,979* TFLOPS, "
             "*with sparsity)", "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet"),
    "h200": ("NVIDIA H200 Tensor Core GPU data sheet (H200 SXM: FP32 67, TF32 989*, BF16 1,979* TFLOPS, "
             "*with sparsity)", "https://nvdam.widen.net/s/nb5zzzsjdf/hpc-datasheet-sc23-h200-datasheet-3002446"),
}
PRECISIONS = ("fp32", "tf32", "bf16")
