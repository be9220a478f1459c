"""The project's embedded synthetic cloth-changing dataset (drawn people in PRCC's layout)."""
from .dataset import SyntheticSpec, generate, read_parts
from .figure import COCO17, PART_LABELS

__all__ = ["SyntheticSpec", "generate", "read_parts", "COCO17", "PART_LABELS"]
