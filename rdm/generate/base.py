"""The generator interface shared by the local and remote backends, and the pictures a plan needs."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Collection, Mapping

from PIL import Image

from rdm.errors import BadImage, BadRequestError, MissingImageError, StoreError
from rdm.generate.settings import GenerationSettings, GeneratorInfo
from rdm.plan import ConditioningPlan, PlanItem, validate_weights
from rdm.generate.product import ProductLock, place_product
from rdm.common.sources import decode_image

MAX_PRIOR_ROWS = 256  # text items (and a negative prompt) x images: the batch of the one prior call
# progress(stage, step, total): stage is "prior", "decoder" or "worker"
Progress = Callable[[str, int, int], None]


def image_key(item: PlanItem) -> str:
    """The key under which an image item's picture travels: ``db:<id>`` or ``file:<path>``."""
    return f"db:{item.image_id}" if item.image_id is not None else f"file:{item.path}"


def resolve_images(plan: ConditioningPlan, open_image: Callable[[int], Image.Image] | None = None,
                   loaded: Mapping[str, Image.Image] | None = None) -> dict[str, Image.Image]:
    """Load every image the plan refers to: DB references via ``open_image(id)``, inputs from disk;
    pictures already in ``loaded`` (e.g. from another mode of a comparison) are reused."""
    images: dict[str, Image.Image] = {}
    for item in plan.image_items:
        key = image_key(item)
        if key in images:  # a reference may answer several sub-queries
            continue
        if loaded and key in loaded:
            images[key] = loaded[key]
            continue
        if item.image_id is not None:
            if open_image is None:
                raise MissingImageError(f"plan refers to DB image #{item.image_id} but no DB was given: pass --db")
            try:
                images[image_key(item)] = open_image(item.image_id).convert("RGB")
            except (LookupError, OSError, StoreError) as exc:
                raise MissingImageError(
                    f"reference image #{item.image_id} cannot be loaded from the DB: {exc}") from exc
        else:
            images[image_key(item)] = load_input_image(item.path)
    return images


def load_input_image(path: str | Path) -> Image.Image:
    """An advertiser's photo, decoded like a DB upload (EXIF orientation, transparency on white)."""
    try:
        data = Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise MissingImageError(f"input image {path} not found: check the path") from exc
    except OSError as exc:
        raise MissingImageError(f"input image {path} cannot be read: {exc}") from exc
    try:
        return decode_image(data, str(path))
    except BadImage as exc:
        raise MissingImageError(f"input image {path} cannot be read as an image: {exc}") from exc


class BaseGenerator:
    """Checks a request (plan weights, pictures, settings, product) and hands it to the backend's ``_generate``."""

    info: GeneratorInfo

    def generate(self, plan: ConditioningPlan, settings: GenerationSettings = GenerationSettings(), *,
                 images: Mapping[str, Image.Image] | None = None, init_image: Image.Image | None = None,
                 product: ProductLock | None = None, progress: Progress | None = None) -> list[Image.Image]:
        """Images for ``plan``. ``images`` holds every picture the plan refers to (``image_key``); with
        ``init_image`` the images are img2img variations of that photo; with ``product`` the product is
        placed, kept pixel-identical, and only what is around it is generated."""
        images = images or {}
        check_request(plan, settings, images.keys(), variation=init_image is not None, product=product is not None)
        if product is not None:  # refuse a product that does not fit before any model runs or anything is uploaded
            place_product(product, settings.size)
        return self._generate(plan, settings, images, init_image, product, progress)

    def _generate(self, plan: ConditioningPlan, settings: GenerationSettings, images: Mapping[str, Image.Image],
                  init_image: Image.Image | None, product: ProductLock | None,
                  progress: Progress | None) -> list[Image.Image]:
        raise NotImplementedError


def check_request(plan: ConditioningPlan, settings: GenerationSettings, supplied: Collection[str], *,
                  variation: bool = False, product: bool = False) -> None:
    """Every check of a request that needs no pixel, so a worker refuses a bad one before decoding any picture:
    the plan's weights, its pictures supplied (``supplied``: their keys), the prior's work, and what a variation
    or a product lock can be combined with."""
    validate_weights([item.weight for item in plan.items], what=f"plan '{plan.mode}'")
    missing = [image_key(i) for i in plan.image_items if image_key(i) not in supplied]
    if missing:
        raise MissingImageError(f"plan '{plan.mode}' needs images that were not supplied: {', '.join(missing)}")
    prior_rows = (len(plan.text_items) + bool(settings.negative_prompt)) * settings.n_images
    if prior_rows > MAX_PRIOR_ROWS:  # every text item runs through the prior once per image
        raise BadRequestError(f"{len(plan.text_items)} text item(s) x {settings.n_images} image(s) make "
                              f"{prior_rows} prior runs, over the {MAX_PRIOR_ROWS} one request may use: "
                              "lower the number of images or of sub-queries")
    if variation and product:
        raise BadRequestError("a variation of a photo and a locked product cannot be combined: "
                              "drop the variation photo or the product")
    if variation and int(settings.steps * settings.strength) < 1:
        raise BadRequestError(f"a variation with strength {settings.strength} and {settings.steps} steps runs "
                              "no denoising step: raise steps or strength")
