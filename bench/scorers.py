"""What judging a study costs beside generating it: seconds per image of each scorer, as a ratio to the
generation of that image, measured side by side in one run.

    .venv/bin/python bench/scorers.py [--images 8] [--requirements 5] [--steps 25] [--size 64] [--json]
    RDM_BENCH_REAL=1 .venv/bin/python bench/scorers.py --size 768   # the real weights, on a GPU machine

By default the tiny random-weight models (Kandinsky 2.2, clip:tiny, vqa:tiny) on this CPU: their ratio says
how the pipeline's overheads compare, not what the real models cost. With RDM_BENCH_REAL=1 it loads Kandinsky
2.2 and the default scorers (open_clip ViT-L-14, BLIP VQA base) from the caches: the ratio a user plans with.
Each image is scored against the full prompt and --requirements requirements, as a study does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from rdm.generate import GenerationSettings, KandinskyGenerator  # noqa: E402
from rdm.plan import prompt_only_plan  # noqa: E402
from rdm.settings import DEFAULT_DECODER_ID, DEFAULT_PRIOR_ID  # noqa: E402
from rdm.study.scorers import make_scorer  # noqa: E402
from rdm.generate.tiny import ensure_tiny_kandinsky  # noqa: E402

PROMPT = "A cute dog wearing a yellow hoodie sits on a stylish sofa in a warm and cozy living room"
REQUIREMENTS = ["a dog", "a yellow hoodie", "a stylish sofa", "a cozy living room", "soft lighting", "cushions",
                "a window", "a rug"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--requirements", type=int, default=5)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    real = os.environ.get("RDM_BENCH_REAL") == "1"
    if not torch.cuda.is_available():
        torch.set_num_threads(1)
    # 1. the models
    if real:
        generator = KandinskyGenerator(DEFAULT_PRIOR_ID, DEFAULT_DECODER_ID)
        scorers = [make_scorer("clip"), make_scorer("vqa")]
    else:
        tiny = ensure_tiny_kandinsky()
        generator = KandinskyGenerator(str(tiny.prior), str(tiny.decoder))
        scorers = [make_scorer("clip:tiny"), make_scorer("vqa:tiny")]
    settings = GenerationSettings(n_images=args.images, steps=args.steps, prior_steps=min(args.steps, 25),
                                  size=(args.size, args.size))
    requirements = REQUIREMENTS[: args.requirements]
    plan = prompt_only_plan(PROMPT)
    generator.generate(plan, settings)  # warm-up: loading and first-call costs are not what is compared
    # 2. generation and each scorer, in turns, so a noisy neighbour hits them alike
    times: dict[str, list[float]] = {"generation": []}
    images = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        images = generator.generate(plan, settings)
        times["generation"].append((time.perf_counter() - start) / len(images))
        for scorer in scorers:
            start = time.perf_counter()
            scorer.score(images, PROMPT, requirements)
            times.setdefault(scorer.name, []).append((time.perf_counter() - start) / len(images))
    per_image = {name: statistics.median(values) for name, values in times.items()}
    ratios = {name: round(value / per_image["generation"], 3) for name, value in per_image.items()}
    if args.json:
        print(json.dumps({"real_weights": real, "device": str(generator.device) if hasattr(generator, "device")
                          else "cpu", "seconds_per_image": per_image, "ratio_to_generation": ratios}, indent=2))
        return
    print(f"{'models':<12}{'real weights' if real else 'tiny random-weight models'}; {args.images} images of "
          f"{args.size}px, {args.steps} steps; 1 prompt + {len(requirements)} requirements per image")
    for name, seconds in per_image.items():
        print(f"{name:<28}{seconds * 1000:>10.1f} ms/image{ratios[name]:>10.3f}x generation")


if __name__ == "__main__":
    main()
