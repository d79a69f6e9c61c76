"""Cost of batched conditioning: 1 prompt + 5 sub-queries + 3 references vs a prompt-only plan.

Both plans run with the same steps and size; the goal is at most 1.5x the prompt-only time, which
holds when all text items share one prior call and all images one encoder pass. Runs the tiny
random-weight Kandinsky on CPU, and the same on CUDA when a GPU is present (set RDM_BENCH_REAL=1
to time the real Kandinsky 2.2 weights there instead of the tiny model).

    python bench/generate.py [--repeats 5] [--steps 25] [--size 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from rdm.generate import GenerationSettings, KandinskyGenerator  # noqa: E402
from rdm.plan import ConditioningPlan, PlanItem, prompt_only_plan  # noqa: E402
from rdm.settings import DEFAULT_DECODER_ID, DEFAULT_PRIOR_ID  # noqa: E402
from rdm.generate.tiny import ensure_tiny_kandinsky  # noqa: E402

PROMPT = ("A cute dog wearing yellow hoodie sits on a stylish sofa, gazing around in a warm and cozy "
          "living room. Soft lighting fills the space, casting gentle shadows on the plush cushions.")
SUBQUERIES = ["A cute dog wearing a yellow hoodie", "A stylish sofa", "A warm and cozy living room",
              "Soft lighting casting gentle shadows", "Plush cushions"]


def rich_plan() -> ConditioningPlan:
    """1 prompt + 5 sub-queries + 3 references: weights 0.4 / 5 x 0.06 / 3 x 0.1."""
    items = [PlanItem(kind="text", weight=0.4, source="prompt", text=PROMPT)]
    items += [PlanItem(kind="text", weight=0.06, source="subquery", text=q) for q in SUBQUERIES]
    items += [PlanItem(kind="image", weight=0.1, source="reference", image_id=i, subquery=SUBQUERIES[i])
              for i in range(3)]
    return ConditioningPlan(prompt=PROMPT, items=tuple(items), mode="subquery")


def references() -> dict[str, Image.Image]:
    colours = [(230, 200, 40), (120, 80, 50), (240, 230, 210)]
    return {f"db:{i}": Image.new("RGB", (640, 480), c) for i, c in enumerate(colours)}


def timed(generator: KandinskyGenerator, cases: dict, repeats: int, settings: GenerationSettings) -> dict[str, float]:
    """Median seconds per case; cases alternate so load from other processes hits both alike."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for seed in range(-1, repeats):  # seed -1: warm-up (lazy init, kernel selection), not timed
        for name, (plan, images) in cases.items():
            _sync(generator)
            start = time.perf_counter()
            generator.generate(plan, replace(settings, seed=max(seed, 0)), images=images)
            _sync(generator)
            if seed >= 0:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _sync(generator: KandinskyGenerator) -> None:
    if generator.device.startswith("cuda"):
        torch.cuda.synchronize()


def bench(device: str, prior_id: str, decoder_id: str, label: str, args: argparse.Namespace) -> None:
    generator = KandinskyGenerator(prior_id, decoder_id, device=device)
    settings = GenerationSettings(steps=args.steps, prior_steps=args.prior_steps, size=(args.size, args.size))
    cases = {"prompt-only": (prompt_only_plan(PROMPT), {}), "rich": (rich_plan(), references())}
    median = timed(generator, cases, args.repeats, settings)
    prompt_only, rich = median["prompt-only"], median["rich"]
    print(f"{label} on {generator.info.gpu_name or device} ({generator.info.dtype}), steps {args.steps}, "
          f"prior steps {args.prior_steps}, {args.size}x{args.size}, median of {args.repeats}:")
    print(f"  prompt-only plan:                         {prompt_only * 1000:8.1f} ms")
    print(f"  1 prompt + 5 sub-queries + 3 references:  {rich * 1000:8.1f} ms")
    print(f"  ratio {rich / prompt_only:.2f}x (goal <= 1.5x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--prior-steps", type=int, default=25)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: steady timings on shared cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tiny = ensure_tiny_kandinsky()
    bench("cpu", str(tiny.prior), str(tiny.decoder), "tiny Kandinsky 2.2 (random weights)", args)
    if torch.cuda.is_available():
        if os.environ.get("RDM_BENCH_REAL") == "1":
            bench("cuda", DEFAULT_PRIOR_ID, DEFAULT_DECODER_ID, "Kandinsky 2.2", args)
        else:
            bench("cuda", str(tiny.prior), str(tiny.decoder), "tiny Kandinsky 2.2 (random weights)", args)
    else:
        print("no CUDA GPU here: GPU timing skipped")


if __name__ == "__main__":
    main()
